"""A short Python API for notebooks and scripts: load (or build) a config, run it, read the tables and the report.

    from engine.api import load_config, run

    config = load_config("configs/demo.yaml", {"prompts.per_category": 1, "strategies": ["temperature"]})
    audit = run(config)
    audit.tables["groups"].to_pandas()[["category", "strategy", "unique_mean"]]
    audit.report_html          # path of the self-contained report

`run` does what `python engine/run.py --config …` does (preflight, every stage, resume from the run directory,
the report) and returns an `Audit` instead of printing a summary. `open_run` reads a finished run back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.config import RunConfig, config_from_dict, lenient_settings
from engine.config import load_config as _load_config
from engine.errors import ConfigError

__all__ = ["Audit", "DiversityReward", "build_config", "load_config", "open_run", "run", "score_rewards"]

log = logging.getLogger(__name__)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run config from a YAML file, with dotted overrides ({"n": 3, "judges.0.backend": "http"})."""
    return _load_config(path, overrides)


def build_config(data: dict[str, Any] | None = None, **keys: Any) -> RunConfig:
    """A run config built in code, checked like a file: `build_config({"n": 3}, run_dir="runs/x")`."""
    return config_from_dict({**(data or {}), **keys}, source="<build_config>")


@dataclass
class Audit:
    """A finished run.

    Attributes:
        config: the run's config.
        result: the RunResult (tables, stage records, wall time, peak memory).
        paths: the report's files by name ("html", "markdown", "json", "figures", "run_stats").
    """

    config: RunConfig
    result: Any
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def tables(self) -> dict[str, pa.Table]:
        """The run's tables by name (prompts, classifications, samples, responses, judgments, components, metrics,
        groups, and quality/accuracy/rewards where measured), as Arrow tables (`.to_pandas()` for pandas)."""
        return self.result.tables

    @property
    def run_dir(self) -> Path:
        return Path(self.result.run_dir)

    @property
    def report_html(self) -> Path | None:
        return self.paths.get("html")

    @property
    def failed_shards(self) -> dict[str, dict[str, str]]:
        """Stage → {shard: reason} for shards that failed for good (rerun to compute them)."""
        return self.result.failed_shards()


def run(config: RunConfig | str | Path, *, overrides: dict[str, Any] | None = None, progress: bool = False,
        report: bool = True) -> Audit:
    """Run an audit.

    Args:
        config: a RunConfig, or the path of a YAML config.
        overrides: dotted keys applied to a config loaded from a path.
        progress: show per-stage progress bars.
        report: write the report (report.html, report.md, report.json, run_stats.json).

    Returns:
        The Audit. Shards that failed for good are in `failed_shards` (the run itself does not raise for them).

    Raises:
        TaskdivError: a config, input or preflight problem, before any model is called.
    """
    from engine.execution.pipeline import Pipeline
    from engine.report import write_report

    if not isinstance(config, RunConfig):
        config = load_config(config, overrides)
    elif overrides:
        raise ValueError("overrides apply to a config loaded from a path; edit the RunConfig or use build_config")
    pipeline = Pipeline(config, progress=progress)
    try:
        result = pipeline.run()
        # The config as run: its models pinned to the weights they loaded (what config.yaml records).
        paths = write_report(result, pipeline.config) if report else {}  # still under the run directory's lock
    finally:
        pipeline.close()
    return Audit(pipeline.config, result, paths)


def open_run(run_dir: str | Path) -> Audit:
    """A finished run read back from its directory (tables, config, and the report's paths where written)."""
    from engine.execution.results import read_run

    result, config = read_run(run_dir)
    root = Path(run_dir)
    names = {"html": "report.html", "markdown": "report.md", "json": "report.json", "run_stats": "run_stats.json"}
    paths = {k: root / v for k, v in names.items() if (root / v).is_file()}
    return Audit(config, result, paths)


# -- functional diversity as a training reward (engine.method.rewards) ------------------------------------------------

# Scoring rewards judges groups and nothing else: quality and accuracy stay off (a config whose judges are all
# calibrated is valid for rewards only with them off, so a config file is read with these set).
# A batch of groups we write ourselves is read in our format, whole: the config's prompts settings were written for
# the user's own files (an lm-eval format, a size cap), and read with them a batch of ours could fail.
OWN_BATCH_PROMPTS: dict[str, Any] = {"format": "taskdiv", "on_error": "fail", "max_prompt_chars": 0,
                                     "max_response_chars": 0}
REWARDS_OVERRIDES: dict[str, Any] = {"quality.enabled": False, "quality.reward_model": None, "accuracy.enabled": False}


def score_rewards(config: RunConfig | str | Path, groups: str | Path, out: str | Path | None = None, *,
                  progress: bool = False, executor: Any = None) -> list[dict[str, Any]]:
    """Per-response diversity rewards for groups of responses, judged by the config's judges.

    The groups file is any responses file the `responses` source reads (ours, lm-eval, Inspect, NoveltyBench). The
    run happens in the config's run directory with quality and accuracy off, so a rerun reuses every finished shard
    (resumable like a run).

    Args:
        config: the run config (its judges, judge settings, classifier, embedder, run_dir), or its path.
        groups: the groups of responses.
        out: where to write the rows as JSONL (optional).
        executor: one that outlives the run (engine.execution.pipeline.run_executor), its models kept loaded for
            the next call; the caller closes it (default: the run's own, stopped when it ends).

    Returns:
        One row per response: prompt_id, prompt (its text), model, strategy, sample_idx, response (the answer
        judged), trace (the reasoning split off it, or None), category, reward (None when no judge's classes are
        known for the group, or the group has one response), judges (those whose classes entered), classes
        ({judge: class}).
    """
    rows, result = scored_rewards(config, groups, out, progress=progress, executor=executor)
    _warn_failed(result)
    return rows


def _warn_failed(result: Any) -> None:
    failed = result.failed_shards()
    if failed:
        log.warning("rewards: %d shards failed for good (%s); their groups have no reward — the same call again "
                    "computes them", sum(len(v) for v in failed.values()), ", ".join(failed))


def scored_rewards(config: RunConfig | str | Path, groups: str | Path, out: str | Path | None = None, *,
                   progress: bool = False, executor: Any = None, lock: Any = None) -> tuple[list[dict[str, Any]], Any]:
    """score_rewards' rows and the run behind them (its RunResult: failed shards, stages), for the command line.
    `executor`: one that outlives the run (engine.execution.pipeline.run_executor; the caller closes it), so that
    batch after batch finds its judges loaded. `lock`: the run directory's lock, held by a caller that wrote the
    groups file into it (DiversityReward); it stays held."""
    import orjson

    from engine.execution.pipeline import Pipeline
    from engine.execution.store import RunDirLock, atomic_write_bytes, claim_run_dir
    from engine.method.rewards import group_rewards

    cfg = _rewards_config(config, groups)
    claim_run_dir(cfg.run_dir)
    # Held from before the batch of answering responses is written into the run directory until the run has read
    # it: another call on the same directory would overwrite the batch, and this run score the other's responses.
    held = lock if lock is not None else RunDirLock(cfg.run_dir)
    held.acquire()
    try:
        # A response without an answer (empty, or cut off while thinking) leaves its group, whose others are judged
        # and rewarded among themselves, as DiversityReward does: in the group, its pairs were unresolved and every
        # reward of the group unknown. `kept`: each original response's place in the judged group (None: left out).
        batch, kept, left_out, read = _answering_batch(cfg, Path(groups))
        if batch is not None:
            cfg = _rewards_config(cfg, batch, internal=True)
        pipeline = Pipeline(cfg, progress=progress, executor=executor, keep_executor=executor is not None,
                            lock=held, audit=False)
        try:
            result = pipeline.run()
        finally:
            pipeline.close()
    finally:
        if lock is None:
            held.release()
    t = result.tables
    by_group: dict[tuple, list[dict[str, Any]]] = {}
    for c in t["components"].to_pylist():
        by_group.setdefault((c["prompt_id"], c["model"], c["strategy"]), []).append(c)
    prompt_text = {p["prompt_id"]: p["text"] for p in t["prompts"].to_pylist()}
    answers = {(r["prompt_id"], r["model"], r["strategy"], r["sample_idx"]): r for r in t["responses"].to_pylist()}
    rows = []
    for g in t["groups"].to_pylist():
        key = (g["prompt_id"], g["model"], g["strategy"])
        judged = by_group.get(key, [])
        rewards, judges = group_rewards(judged, g["n_responses"], g["category"])
        for i, reward in enumerate(rewards):
            answer = answers.get((*key, i), {})
            rows.append({"prompt_id": g["prompt_id"], "prompt": prompt_text.get(g["prompt_id"]), "model": g["model"],
                         "strategy": g["strategy"], "sample_idx": i, "response": answer.get("text"),
                         "trace": answer.get("trace"), "category": g["category"], "reward": reward, "judges": judges,
                         "classes": {r["judge"]: r["classes"][i] for r in judged
                                     if r.get("classes") is not None and len(r["classes"]) > i}})
    if batch is not None:
        rows = _with_left_out(rows, kept, left_out)
        # The run read our batch: what reading the user's file warned of and skipped is that reading's.
        result.load_warnings[:0] = list(read.warnings)
        result.skipped_inputs[:0] = [str(s) for s in getattr(read, "skipped", [])]
    if out is not None:
        atomic_write_bytes(Path(out), b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return rows, result


def _answering_batch(cfg: RunConfig, groups: Path) -> tuple[Path | None, dict, dict, Any]:
    """The groups file without its responses that give no answer, written in our format beside the run's tables,
    or (None, {}, {}) where every response answers (the file is read as it is). Read with the config's prompts
    settings (format, on_error, size caps), so that its errors name the user's file.

    Returns:
        (the batch, {(prompt_id, model, strategy): [each response's place among the group's kept, or None]},
        {(prompt_id, model, strategy, place in the file's group): (prompt, its text, its trace)} of those left out,
        the reading's LoadReport: its warnings and skipped rows, which the run reading the batch does not see).
    """
    import orjson

    from engine.execution.pipeline import load_run_prompts
    from engine.execution.store import atomic_write_bytes
    from engine.inputs.loaders.paper import PresetReport
    from engine.method.rewards import answers

    report = PresetReport()
    prompts, external = load_run_prompts(cfg, report)
    by_id = {p.prompt_id: p for p in prompts}
    kept: dict[tuple, list[int | None]] = {}
    left_out: dict[tuple, tuple] = {}
    lines = []
    for g in external or []:
        key = (g.prompt_id, g.model, g.strategy)
        texts, traces, places = [], [], []
        for k, (idx, text) in enumerate(sorted(g.responses)):
            trace = g.traces.get(idx)
            if answers(text, trace):
                places.append(len(texts))
                texts.append(text)
                traces.append(trace)
            else:
                places.append(None)
                left_out[(*key, k)] = (by_id[g.prompt_id], text, trace)
        kept[key] = places
        if texts:
            p = by_id[g.prompt_id]
            lines.append(orjson.dumps({"prompt_id": p.prompt_id, "prompt": p.text, "source": p.source,
                                       "category": p.gold_category, "gold_answer": p.gold_answer, "model": g.model,
                                       "strategy": g.strategy, "responses": texts, "traces": traces}) + b"\n")
    if not left_out:
        return None, {}, {}, report
    batch = Path(cfg.run_dir) / "rewards-answering.jsonl"  # beside the tables (claimed and locked by the caller)
    atomic_write_bytes(batch, b"".join(lines))
    log.info("rewards: %d responses give no answer and are left out of their groups (reward null)", len(left_out))
    return batch, kept, left_out, report


def _with_left_out(rows: list[dict[str, Any]], kept: dict, left_out: dict) -> list[dict[str, Any]]:
    """The reward rows of the answering batch put back in the groups file's places, with a null-reward row for each
    response left out (_answering_batch)."""
    scored = {(r["prompt_id"], r["model"], r["strategy"], r["sample_idx"]): r for r in rows}
    by_group: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        by_group.setdefault((r["prompt_id"], r["model"], r["strategy"]), r)
    out = []
    for key, places in kept.items():
        first = by_group.get(key)
        for k, place in enumerate(places):
            if place is not None and (*key, place) in scored:
                out.append({**scored[(*key, place)], "sample_idx": k})
            elif place is None:
                prompt, text, trace = left_out[(*key, k)]
                out.append({"prompt_id": key[0], "prompt": prompt.text, "model": key[1], "strategy": key[2],
                            "sample_idx": k, "response": text, "trace": trace,
                            "category": first["category"] if first else prompt.gold_category, "reward": None,
                            "judges": [], "classes": {}})
    return out


def _rewards_config(config: RunConfig | str | Path, groups: str | Path, internal: bool = False) -> RunConfig:
    """The run that scores `groups`: the config's judges, classifier and embedder over the groups file, no
    generation, quality or accuracy. `internal`: a batch we wrote (our format, already read within the config's
    size caps and error settings), not the user's file."""
    if isinstance(config, RunConfig):
        base = config
    else:
        with lenient_settings():  # its prompts are replaced by the groups file below: another source's keys go
            base = load_config(config, REWARDS_OVERRIDES)
    if base.judge.target != "answer":
        # A reward is read from the classes of the answers: traces judged beside them would be paid for, every batch,
        # and used by nothing; judged alone, no reward would be known (every one null, the cause unsaid).
        raise ConfigError(f"judge.target: {base.judge.target} — rewards come from the judges' classes of the "
                          "answers, so set judge.target: answer (reasoning traces are kept apart, never rewarded)")
    _refuse_an_audits_run_dir(Path(base.run_dir))
    data = base.to_dict(redact=False)
    # The groups file's prompts: a paper config's draw settings mean nothing here; its format and caps apply.
    data["prompts"] = {**data["prompts"], "source": "responses", "path": str(groups), "per_category": None,
                       "limit": None, "paths": {}, "missing_sources": "fail", "seed": 0}
    if internal:
        data["prompts"].update(OWN_BATCH_PROMPTS)
    data["quality"] = {**data["quality"], "enabled": False, "reward_model": None}
    data["accuracy"] = {**data["accuracy"], "enabled": False}
    return config_from_dict(data, source="<score_rewards>")


def _refuse_an_audits_run_dir(run_dir: Path) -> None:
    """Scoring rewards finishes a run in run_dir, which replaces the tables there: in an audit's directory (the
    config an audit ran with, given to `rewards`) it left the audit's report beside the rewards run's tables, and
    `explore`, `compare` and a re-rendered report read the rewards run. A directory whose run is not a rewards run
    (prompts from another source, or quality or accuracy on) is refused before anything runs. An audit of a
    responses file with quality and accuracy off reads like a rewards run and is not told apart."""
    from engine.config import load_yaml

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        data = load_yaml(saved.read_text(encoding="utf-8")) or {}
    except Exception:  # unreadable: the run's own checks say so when it claims the directory
        return
    section = lambda name: data.get(name) if isinstance(data.get(name), dict) else {}  # noqa: E731
    source = section("prompts").get("source")
    graded = [name for name in ("quality", "accuracy") if section(name).get("enabled")]
    if source != "responses" or graded:
        what = f"its prompts from {source}" if source != "responses" else f"{' and '.join(graded)} on"
        raise ConfigError(f"run_dir: {run_dir} holds a run that is not a rewards run ({what}): scoring rewards there "
                          "would replace its tables. Give the rewards a run directory of their own (--run-dir DIR, "
                          "or run_dir in the config)")


# The metric DiversityReward logs through TRL's `log_metric`: the share of the batch's completions with no reward.
UNRESOLVED_METRIC = "functional_diversity/unresolved_frac"


class DiversityReward:
    """Functional diversity as a reward function for TRL (`GRPOTrainer(reward_funcs=[DiversityReward(config)])`).

    Called with a batch of prompts and completions (strings, or TRL's conversational lists of messages), it groups
    the completions by prompt — GRPO samples each prompt `num_generations` times — judges every group with the
    config's judges and returns one reward per completion, in order (None where no judge's classes are known;
    TRL skips None rewards). A `category` column of the dataset (A–H), passed by TRL as a keyword, is used as the
    prompt's category; otherwise prompts are classified, as in a run. Each batch is a run in `config.run_dir`
    (resumed where it overlaps an earlier one).

    - Groups: completions of the same prompt (the whole conversation, system message included); the judges and
      classifier read its user turn, or a conversation of several turns as a transcript (rewards.prompt_text). With
      `num_generations` (pass GRPOConfig's), consecutive runs of that many completions are the groups, as TRL's
      sampler lays them out — two identical dataset rows in one batch stay two groups — and a batch that does not
      split so is an error, never partial groups. With `num_generations_eval` too (GRPOConfig's, where it differs),
      an evaluation batch is grouped by it: the mode is read from TRL's trainer where it shows (its model in train()
      or eval() mode), else the larger size that fits the batch is taken (`_group_size`).
    - Unknown rewards: a completion without an answer gets None and leaves its group. Where TRL passes
      `log_metric`, the share of completions without a reward is logged at every call as
      `functional_diversity/unresolved_frac` (TRL reads a None reward as NaN).
    - Several processes (TRL on several GPUs calls each reward function on each process's slice of the batch, and
      a prompt's generations may be spread over them): when torch.distributed is initialised with more than one
      process, the slices are gathered, the first process scores the whole batch (the only one to write the run
      directory) and every process gets the rewards of its own slice. Every process must call it, as TRL does. The
      others wait in a collective while the first judges: a batch whose judging takes longer than the process
      group's timeout needs a longer one (TRL / transformers: `ddp_timeout`, default 30 min). `last_rows` (the
      rows of the last batch) is filled on the first process only.
    - Reasoning: a completion's inline `<think>` block, or a message's `reasoning_content`, is its trace, never part
      of the answer judged. Where the policy's chat template opens the block in the prompt (DeepSeek-R1 and its
      distills, Qwen3's thinking models), a completion starts inside it and one cut off while thinking has no tag at
      all: `thinking_opened` puts the opening tag back in front of such a text completion — a string, or the one
      message TRL wraps the decoded text in for conversational prompts where the tokenizer has no response template
      (read from the trainer where it shows; a message TRL parsed keeps its parser's split, and unseen, a message is
      taken as parsed) — so that it is no answer (never rewarded as a unique one). None (default): for a
      conversational prompt, read from the trainer's chat template at the first call where TRL shows it (its
      `log_metric` is the trainer's), else False; for a string prompt, read from the prompt itself (TRL tokenizes a
      string prompt as it is, with no template: it opens the block only where the dataset rendered it so).
    - Made, it runs the preflight of its judges, classifier and embedder (ConfigError naming the config key), so a
      trainer stops before it loads its model, not at the first batch.
    """

    __name__ = "functional_diversity"

    def __init__(self, config: RunConfig | str | Path, *, num_generations: int | None = None,
                 num_generations_eval: int | None = None, thinking_opened: bool | None = None) -> None:
        for name, value in (("num_generations", num_generations), ("num_generations_eval", num_generations_eval)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_generations_eval is not None and num_generations is None:
            raise ValueError("num_generations_eval needs num_generations (pass both from GRPOConfig)")
        if not isinstance(config, RunConfig):
            with lenient_settings():  # its prompts become each batch's groups (_rewards_config)
                config = load_config(config, REWARDS_OVERRIDES)
        # Each batch is a file we write, in our format: the config's prompts settings were written for files of its
        # own (an lm-eval format, a size cap), and the first reward call, after the trainer had loaded and generated,
        # failed reading the batch with them.
        data = config.to_dict(redact=False)
        data["prompts"] = {**data["prompts"], "source": "responses", **OWN_BATCH_PROMPTS}
        with lenient_settings():
            self.config = config_from_dict(data, source="<DiversityReward>")
        if thinking_opened is not None and not isinstance(thinking_opened, bool):
            raise ValueError(f"thinking_opened must be True, False or None, got {thinking_opened!r}")
        self.num_generations = num_generations
        self.num_generations_eval = num_generations_eval
        self.thinking_opened = thinking_opened
        self._thinking_told = thinking_opened is not None  # else string prompts are read one by one
        # Whether TRL hands message completions parsed (reasoning split off by the tokenizer's response template) or
        # as decoded text wrapped in a message; read from the trainer where it shows (None: unseen, taken as parsed).
        self.completions_parsed: bool | None = None
        # One executor for every batch (made at the first): its judges, classifier and embedder load once, not at
        # every training step (each batch was a run that loaded and stopped them — with an embedded Ray, started
        # and shut down Ray too). close() stops it; so does the garbage collector, and the interpreter's exit.
        self._executor: Any = None
        self._close_executor: Any = None
        self.last_rows: list[dict[str, Any]] = []
        # Fail before spending: the judges, classifier and embedder are checked now (models resolvable, keys set,
        # options known), not at the first reward call, after the trainer has loaded its model and generated.
        from engine.execution.preflight import preflight

        preflight(_rewards_config(self.config, Path(self.config.run_dir) / "reward-batch.jsonl"))

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        # Training or evaluation, where TRL lets it be seen: its log_metric is a method of the trainer, whose model
        # is in train() mode while training and eval() mode while evaluating. Unseen: told by the batch's shape.
        trainer = getattr(kwargs.get("log_metric"), "__self__", None)
        training = getattr(getattr(trainer, "model", None), "training", None)
        if self.thinking_opened is None and trainer is not None:
            from engine.method.rewards import template_opens_thinking

            # Read once from the policy's chat template (TRL's processing_class), where the trainer shows, rendered
            # with the trainer's own template settings (GRPOConfig.chat_template_kwargs: thinking on or off).
            self.thinking_opened = template_opens_thinking(
                getattr(trainer, "processing_class", None), getattr(trainer, "chat_template", None),
                **(getattr(trainer, "chat_template_kwargs", None) or {}))
        if self.completions_parsed is None and trainer is not None:
            from engine.method.rewards import trainer_parses_completions

            self.completions_parsed = trainer_parses_completions(trainer)
        rewards = self._call(prompts, completions, kwargs.get("category"),
                             training if isinstance(training, bool) else None)
        log_metric = kwargs.get("log_metric")  # TRL's: averaged over processes (equal slices) and logging steps
        if callable(log_metric):
            # An unknown reward is NaN to TRL (out of the advantage when every reward function gave none, else
            # counted as 0 in their weighted sum): its share is logged at every step, by every process (TRL gathers
            # the same metric names from all), so it is seen.
            log_metric(UNRESOLVED_METRIC, sum(r is None for r in rewards) / len(rewards) if rewards else 0.0)
        return rewards

    def _call(self, prompts: list[Any], completions: list[Any], categories: Any,
              training: bool | None) -> list[float | None]:
        dist = _distributed()
        if dist is None:
            return self._score(*_checked(prompts, completions, categories), training)
        # Gather every process's slice, score the whole batch once, hand each process its slice back. Every check
        # runs on process 0, after the gather: a process that raised before it would leave the others waiting.
        slices: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(slices, (list(prompts), list(completions), categories))
        rank = dist.get_rank()
        result: list[Any] = [None]
        failure: BaseException | None = None
        if rank == 0:
            try:
                checked = [_checked(*s) for s in slices]
                result = [("ok", self._score([p for c in checked for p in c[0]], [x for c in checked for x in c[1]],
                                             [k for c in checked for k in c[2]], training))]
            except Exception as exc:  # the other processes wait in the broadcast: tell them, then raise here
                failure, result = exc, [("failed", f"{type(exc).__name__}: {exc}")]
        dist.broadcast_object_list(result, src=0)
        status, value = result[0]
        if failure is not None:
            raise failure
        if status != "ok":
            raise RuntimeError(f"functional_diversity: scoring on process 0 failed ({value})")
        start = sum(len(s[0]) for s in slices[:rank])
        return value[start:start + len(prompts)]

    def _score(self, prompts: list[Any], completions: list[Any], categories: list[Any],
               training: bool | None) -> list[float | None]:
        import orjson

        from engine.execution.store import RunDirLock, atomic_write_bytes, claim_run_dir
        from engine.method.rewards import (answers, completion_parts, opens_thinking, prompt_key, prompt_text,
                                           reopen_thinking)

        prompt_keys = [prompt_key(p) for p in prompts]
        size = self._group_size(prompt_keys, training)
        groups: list[dict[str, Any]] = []
        keys: list[bytes] = []  # each group's prompt
        where: list[tuple[int, int]] = []  # each completion's (group, position)
        for k, (key, prompt, completion, category) in enumerate(zip(prompt_keys, prompts, completions, categories)):
            if size is not None:  # consecutive runs of `size`
                g = k // size
            else:
                g = keys.index(key) if key in keys else len(keys)
            if g == len(groups):
                keys.append(key)
                groups.append({"prompt_id": f"p{g}", "prompt": prompt_text(prompt), "responses": [],
                               "traces": [], "model": "policy", "strategy": "sampled",
                               **({"category": category} if category else {})})
            answer, trace = completion_parts(completion)
            # A string prompt is tokenized as it is (TRL applies the chat template to conversational prompts only):
            # its completions start inside a thinking block where the prompt's own text opens one. Read from the
            # template, every plain-text completion of an R1-style policy was taken as cut off while thinking.
            opened = (opens_thinking(prompt) if isinstance(prompt, str) and not self._thinking_told
                      else self.thinking_opened)
            if opened and (isinstance(completion, str) or (trace is None and self.completions_parsed is False)):
                # TRL's decoded text starts inside the opened block — as a string, or, for conversational prompts
                # without a response template, wrapped as the content of one assistant message. A parsed message
                # (reasoning_content, content) was split by the template's own parser, and a tag put in front of its
                # content would hide it all.
                answer = reopen_thinking(answer, trace)
            if not answers(answer, trace):
                # No answer (cut off while thinking, or empty): no reward — never "unique" for failing to answer —
                # and left out of its group, whose other completions are scored among themselves (in the group, its
                # pairs would be unresolved and every reward of the group unknown).
                where.append(None)
                continue
            where.append((g, len(groups[g]["responses"])))
            groups[g]["responses"].append(answer)
            groups[g]["traces"].append(trace)  # None: inline reasoning is split off when the run reads the batch
        groups = [g for g in groups if g["responses"]]
        self.last_rows = []
        if groups:
            run_dir = Path(self.config.run_dir)
            claim_run_dir(run_dir)  # a run directory of ours (or new): the batch is written beside its tables
            # Locked before the batch is written, until the run has read it: a second reward function (another
            # trainer, another thread) on the same directory overwrote the batch, and this one returned its
            # rewards for the other's completions.
            with RunDirLock(run_dir) as lock:
                batch = run_dir / "reward-batch.jsonl"
                atomic_write_bytes(batch, b"".join(orjson.dumps(g) + b"\n" for g in groups))
                self.last_rows, result = scored_rewards(self.config, batch, executor=self._run_executor(), lock=lock)
            _warn_failed(result)
            if self.config.execution.probe_endpoints:
                # Its endpoints answered this batch's probe: a trainer calls this every step, and later batches
                # need no first requests of their own.
                data = self.config.to_dict(redact=False)
                data["execution"] = {**data["execution"], "probe_endpoints": False}
                self.config = config_from_dict(data, source="<DiversityReward>")
        reward = {(r["prompt_id"], r["sample_idx"]): r["reward"] for r in self.last_rows}
        return [reward.get((f"p{w[0]}", w[1])) if w is not None else None for w in where]

    def _run_executor(self) -> Any:
        if self._executor is None:
            import weakref

            from engine.execution.pipeline import run_executor

            self._executor = run_executor(self.config)
            self._close_executor = weakref.finalize(self, self._executor.close)
        return self._executor

    def close(self) -> None:
        """Stop the judges', classifier's and embedder's model hosts (and an embedded Ray) kept between batches; a
        later call starts them again."""
        if self._close_executor is not None:
            self._close_executor()
        self._executor = self._close_executor = None

    def _group_size(self, keys: list[bytes], training: bool | None) -> int | None:
        """The size of the batch's groups; None without num_generations (groups by prompt). Training:
        num_generations; evaluation: num_generations_eval (TRL samples an evaluation batch's prompts that many
        times). Where the mode is not known, the larger size whose consecutive runs each answer one prompt (a batch
        of runs of the larger size also splits into runs of a size dividing it: the smaller would split its groups).
        A batch that splits into none is an error, never partial groups."""
        if self.num_generations is None:
            return None
        why = []
        named = {"num_generations": self.num_generations,
                 "num_generations_eval": self.num_generations_eval or self.num_generations}
        if training is not None:
            candidates = [("num_generations", named["num_generations"])] if training else \
                [("num_generations_eval", named["num_generations_eval"])]
        else:
            by_size = {v: k for k, v in reversed(named.items())}  # one name per size, num_generations first
            candidates = [(by_size[v], v) for v in sorted(by_size, reverse=True)]
        for name, size in candidates:
            if len(keys) % size:
                why.append(f"{len(keys)} completions do not split into groups of {name}={size}")
                continue
            stray = next((k for k in range(len(keys)) if keys[k] != keys[k - k % size]), None)
            if stray is None:
                return size
            why.append(f"completion {stray} answers another prompt than the others of its group of {name}={size} "
                       f"consecutive completions")
        raise ValueError("; ".join(why))


def _checked(prompts: Any, completions: Any, categories: Any) -> tuple[list, list, list]:
    """One process's prompts, completions and categories (None each where no `category` column), as lists of one
    length."""
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    categories = list(categories) if categories is not None else [None] * len(prompts)
    if len(categories) != len(prompts):
        raise ValueError(f"{len(categories)} categories for {len(prompts)} prompts")
    from engine.method.taxonomy import LETTERS

    for k, category in enumerate(categories):
        # Checked here, by its place in the batch: checked when the run read the batch, the error named the file
        # we write the batch to, not the dataset's column.
        if category and (not isinstance(category, str) or category.strip().upper() not in LETTERS):
            raise ValueError(f"category[{k}] (the dataset's `category` column): expected one of A-H or None, "
                             f"got {category!r}")
    return prompts, completions, categories


def _distributed() -> Any:
    """torch.distributed when it is initialised with more than one process, else None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None
