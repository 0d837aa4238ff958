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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.config import RunConfig, config_from_dict
from engine.config import load_config as _load_config

__all__ = ["Audit", "DiversityReward", "build_config", "load_config", "open_run", "run", "score_rewards"]


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
        paths = write_report(result, config) if report else {}  # still under the run directory's lock
    finally:
        pipeline.close()
    return Audit(config, result, paths)


def open_run(run_dir: str | Path) -> Audit:
    """A finished run read back from its directory (tables, config, and the report's paths where written)."""
    from engine.execution.results import read_run

    result, config = read_run(run_dir)
    root = Path(run_dir)
    names = {"html": "report.html", "markdown": "report.md", "json": "report.json", "run_stats": "run_stats.json"}
    paths = {k: root / v for k, v in names.items() if (root / v).is_file()}
    return Audit(config, result, paths)


# -- functional diversity as a training reward (engine.method.rewards) ------------------------------------------------

def score_rewards(config: RunConfig | str | Path, groups: str | Path, out: str | Path | None = None, *,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Per-response diversity rewards for groups of responses, judged by the config's judges.

    The groups file is any responses file the `responses` source reads (ours, lm-eval, Inspect, NoveltyBench). The
    run happens in the config's run directory with quality and accuracy off, so a rerun reuses every finished shard
    (resumable like a run).

    Args:
        config: the run config (its judges, judge settings, classifier, embedder, run_dir), or its path.
        groups: the groups of responses.
        out: where to write the rows as JSONL (optional).

    Returns:
        One row per response: prompt_id, model, strategy, sample_idx, category, reward (None when no judge's
        classes are known for the group), judges (those whose classes entered), classes ({judge: class}).
    """
    import orjson

    from engine.execution.pipeline import Pipeline
    from engine.execution.store import atomic_write_bytes
    from engine.method.rewards import group_rewards

    base = config if isinstance(config, RunConfig) else load_config(config)
    data = base.to_dict(redact=False)
    data["prompts"] = {**data["prompts"], "source": "responses", "path": str(groups), "per_category": None,
                       "limit": None}
    data["quality"] = {**data["quality"], "enabled": False, "reward_model": None}
    data["accuracy"] = {**data["accuracy"], "enabled": False}
    cfg = config_from_dict(data, source="<score_rewards>")
    pipeline = Pipeline(cfg, progress=progress)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    t = result.tables
    by_group: dict[tuple, list[dict[str, Any]]] = {}
    for c in t["components"].to_pylist():
        by_group.setdefault((c["prompt_id"], c["model"], c["strategy"]), []).append(c)
    rows = []
    for g in t["groups"].to_pylist():
        key = (g["prompt_id"], g["model"], g["strategy"])
        judged = by_group.get(key, [])
        rewards, judges = group_rewards(judged, g["n_responses"], g["category"])
        for i, reward in enumerate(rewards):
            rows.append({"prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
                         "sample_idx": i, "category": g["category"], "reward": reward, "judges": judges,
                         "classes": {r["judge"]: r["classes"][i] for r in judged
                                     if r.get("classes") is not None and len(r["classes"]) > i}})
    if out is not None:
        atomic_write_bytes(Path(out), b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return rows


class DiversityReward:
    """Functional diversity as a reward function for TRL (`GRPOTrainer(reward_funcs=[DiversityReward(config)])`).

    Called with a batch of prompts and completions (strings, or TRL's conversational lists of messages), it groups
    the completions by prompt — GRPO samples each prompt `num_generations` times — judges every group with the
    config's judges and returns one reward per completion, in order (None where no judge's classes are known;
    TRL skips None rewards). A `category` column of the dataset (A–H), passed by TRL as a keyword, is used as the
    prompt's category; otherwise prompts are classified, as in a run. Each batch is a run in `config.run_dir`
    (resumed where it overlaps an earlier one).
    """

    __name__ = "functional_diversity"

    def __init__(self, config: RunConfig | str | Path) -> None:
        self.config = config if isinstance(config, RunConfig) else load_config(config)
        self.last_rows: list[dict[str, Any]] = []

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        import orjson

        from engine.execution.store import atomic_write_bytes, claim_run_dir

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        categories = kwargs.get("category") or [None] * len(prompts)
        order: dict[str, int] = {}
        groups: list[dict[str, Any]] = []
        where: list[tuple[int, int]] = []  # each completion's (group, position)
        for prompt, completion, category in zip(prompts, completions, categories):
            text = _message_text(prompt, role="user")
            if text not in order:
                order[text] = len(groups)
                groups.append({"prompt_id": f"p{len(groups)}", "prompt": text, "responses": [],
                               "model": "policy", "strategy": "sampled",
                               **({"category": category} if category else {})})
            g = order[text]
            where.append((g, len(groups[g]["responses"])))
            groups[g]["responses"].append(_message_text(completion, role="assistant"))
        run_dir = Path(self.config.run_dir)
        claim_run_dir(run_dir)  # a run directory of ours (or new): the batch is written beside its tables
        batch = run_dir / "reward-batch.jsonl"
        atomic_write_bytes(batch, b"".join(orjson.dumps(g) + b"\n" for g in groups))
        self.last_rows = score_rewards(self.config, batch)
        reward = {(r["prompt_id"], r["sample_idx"]): r["reward"] for r in self.last_rows}
        return [reward.get((f"p{g}", k)) for g, k in where]


def _message_text(value: Any, role: str) -> str:
    """A plain string, or the text of the last message with `role` in a list of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == role]
        texts = [t for t in texts if isinstance(t, str)]
        if texts:
            return texts[-1]
    raise ValueError(f"expected a string or a list of chat messages with a {role!r} message, got {value!r:.200}")
