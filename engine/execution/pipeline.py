"""The run: prompts → classify → sample → judge → components → metrics → quality → groups → report.

Each stage runs over *units* (one shard of prompts for one model, strategy or judge). A unit's key hashes its
input rows and every setting that affects its output, so a rerun skips finished units and a changed setting
recomputes exactly the units that depend on it. The executor streams a stage's output back; the driver writes
each unit's shard as soon as all its rows have arrived (atomically), so a crash loses only the units in flight.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from actors.registry import scheduling
from engine.method import taxonomy
from engine.config import ModelConfig, RunConfig, dump_yaml
from engine.errors import ConfigError, TaskdivError
from engine.execution.executor import LocalExecutor, RayExecutor, StagePlan, hub_environment, make_executor
from engine.inputs.loaders.paper import PresetReport
from engine.inputs.prompts import Prompt, select
from engine.inputs.responses import ExternalGroup, load_responses
from engine.method.accuracy import ACCURACY_VERSION, accuracy_method
from engine.method.classification import majority
from engine.stages.accuracy import AccuracyStage
from engine.execution.plan import Plan, make_plan, render_plan
from engine.execution.preflight import preflight
from engine.execution.resources import PeakMemory
from engine.execution.results import RunResult, StageRecord
from engine.inputs.sources import load_prompts
from engine.stages.base import ERROR, RETRY, ROW, SHARD, TELEMETRY, Stage
from engine.stages.checklist import ChecklistStage
from engine.stages.classify import ClassifyStage
from engine.stages.grade import GradeStage
from engine.stages.judge import FEATURE_COLUMNS, JudgeStage
from engine.stages.metrics import MetricsStage
from engine.stages.reward import RewardStage
from engine.stages.sample import SampleStage
from engine.execution.store import RunDirLock, Store, claim_run_dir, content_key, table_digest
from engine.execution import tables as T

log = logging.getLogger(__name__)

# Restarts of a dead API-model actor (each re-sends its batch, billed again) before its stage fails.
HTTP_ACTOR_RESTARTS = 3


@dataclass
class Unit:
    """One shard of one stage: its key, its input rows, and the salt of its rows' keys.

    The shard's key hashes its settings (`parts`) and its rows; each row's own key hashes the same settings and
    that row alone, so a row computed in any earlier shard of the stage is found again when the shards are cut
    differently or one of their rows changed (see Pipeline._run_stage)."""

    key: str
    rows: pa.Table
    salt: str = ""

    @classmethod
    def of(cls, parts: list[Any], rows: pa.Table) -> "Unit":
        return cls(content_key(*parts, table_digest(rows, rows.column_names)), rows, content_key(*parts))

    def row_keys(self) -> list[str]:
        return [content_key(self.salt, row) for row in self.rows.to_pylist()]


class Pipeline:
    """Runs one config end to end.

    Args:
        config: the run config.
        executor: an executor to use instead of the one the config names (tests pass a LocalExecutor).
        progress: show a progress bar per stage.
    """

    def __init__(self, config: RunConfig, executor: LocalExecutor | RayExecutor | None = None,
                 progress: bool = True) -> None:
        self.config = config
        claim_run_dir(config.run_dir)
        self.store = Store(config.run_dir)
        self.lock = RunDirLock(config.run_dir)
        self._executor = executor
        self.progress = progress
        self.records: list[StageRecord] = []
        self._schedule_cache: list[tuple[str, set[str]]] = []  # the run's stages and their hosts (_schedule)
        # Fingerprints of every text each stage sends (engine.method.taxonomy): in every shard key of that stage.
        self.versions = taxonomy.prompt_versions()
        # Hub access (models.offline) for this process and every worker, and where the Hugging Face cache is.
        self.offline = config.models.resolved_offline()
        self.hub_env = hub_environment(self.offline)
        os.environ.update(self.hub_env)

    @property
    def executor(self) -> LocalExecutor | RayExecutor:
        if self._executor is None:
            ex = self.config.execution
            if ex.executor == "ray":
                self._executor = make_executor(
                    "ray", address=ex.ray_address, num_cpus=ex.num_cpus, object_store_memory=ex.object_store_memory,
                    env=self.hub_env)
            else:
                self._executor = make_executor("local")
        return self._executor

    # -- the run ------------------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the config. The run directory stays locked until close(), so that the caller can write the report
        into it before another run may start there."""
        self.lock.acquire()
        self.store.remove_leftovers()
        with PeakMemory() as memory:
            result = self._run()
        result.peak_rss_bytes = memory.peak_bytes
        return result

    def _run(self) -> RunResult:
        start = time.perf_counter()
        cfg = self.config
        preflight(cfg, offline=self.offline)
        self.store.write_text("config.yaml", dump_yaml(cfg.to_dict()))
        load_report = PresetReport()
        prompts, groups = load_run_prompts(cfg, load_report, offline=self.offline)
        external = groups is not None
        if cfg.execution.max_cost_usd is not None:
            check_cost(cfg, prompts, groups)
        prompts_table = pa.Table.from_pylist([p.to_row() for p in prompts], schema=T.PROMPTS)
        self.store.write_table("prompts", prompts_table)
        shards = self._shard(prompts)
        self._schedule_cache = self._schedule(external)

        # The yardstick category is never the model under test's own: gold where present, else one reference
        # classification per prompt (the classifier, default the judges' majority), the same for every generator.
        reference = self.reference_classify(shards)
        self._release_after("reference")
        if external:
            classifications = reference
            frame = self.external_frame(shards, groups, reference)
        else:
            own = self.classify(shards, cfg.generators, role="own")
            classifications = pa.concat_tables([own, reference])
            self._release_after("classify")
            frame = self.sample(shards, own, reference)
            self._release_after("sample")
        metrics = self.metrics(frame)
        self._release_after("metrics")
        judged = self.judge(frame, metrics)
        self._release_after("judge")
        comps = T.components_table(judged, cfg.judge.threshold)
        checklists, grades = None, None
        if cfg.quality.enabled:
            checklists, grades = self.quality(frame)
            self._release_after("quality")
        accuracy = None
        if cfg.accuracy.enabled:
            accuracy = self.accuracy(frame)
            self._release_after("accuracy")
        rewards = None
        if cfg.quality.reward_model is not None:
            rewards = self.reward(frame)
            self._release_after("reward")
        load_s = self.executor.load_seconds()

        tables = {
            "prompts": prompts_table,
            "classifications": classifications,
            "samples": frame.select(T.SAMPLES.names).cast(T.SAMPLES),
            "responses": T.explode_responses(frame),
            "judgments": T.explode_judgments(judged),
            "components": comps,
            "metrics": metrics,
        }
        if checklists is not None:
            tables["checklists"] = checklists
            tables["quality"] = T.explode_grades(grades)
        if accuracy is not None:
            tables["accuracy"] = T.explode_accuracy(accuracy)
        if rewards is not None:
            tables["rewards"] = T.explode_rewards(rewards)
        tables["groups"] = T.groups_table(frame, comps, metrics, tables.get("quality"), tables.get("accuracy"),
                                          tables.get("rewards"), judges=[j.name for j in cfg.judges])
        for name, table in tables.items():
            self.store.write_table(name, table)
        skipped = [str(e) for e in load_report.skipped]
        return RunResult(cfg.run_dir, tables, self.records, skipped, time.perf_counter() - start,
                         load_warnings=list(load_report.warnings), model_load_s=load_s)

    @staticmethod
    def failed_shards(result: RunResult) -> dict[str, dict[str, str]]:
        """Stage → {shard key: reason} for shards that failed for good in this run (a rerun computes them)."""
        return result.failed_shards()

    def close(self) -> None:
        try:
            if self._executor is not None:
                self._executor.close()
        finally:
            self.lock.release()

    # -- stages -------------------------------------------------------------------------------------------------

    def reference_classify(self, shards: list[pa.Table]) -> pa.Table:
        """The reference classification of every prompt without a gold category: each classifier's vote (the
        `classifier`, else every judge) and the majority letter (rows with role "reference", model "reference")."""
        cfg = self.config
        voters = [cfg.classifier] if cfg.classifier is not None else list(cfg.judges)
        unlabelled = [s.filter(pc.is_null(s["gold_category"])) for s in shards]
        if not any(s.num_rows for s in unlabelled):
            return T.CLASSIFICATIONS.empty_table()
        votes = self.classify(unlabelled, voters, role="vote")
        by_prompt: dict[str, dict[str, dict]] = defaultdict(dict)
        for row in votes.to_pylist():
            by_prompt[row["prompt_id"]][row["model"]] = row
        rows = []
        for shard in unlabelled:
            for prompt_id in shard["prompt_id"].to_pylist():
                ballots = [by_prompt[prompt_id].get(v.name) for v in voters]
                letters = [b["category"] if b else None for b in ballots]
                raw = "; ".join(f"{v.name}: {c or 'unparsed' if b else 'missing'}"
                                for v, b, c in zip(voters, ballots, letters))
                rows.append({"prompt_id": prompt_id, "model": REFERENCE, "category": majority(letters),
                             "raw": f"majority of {raw}", "calls": 0, "role": "reference"})
        return pa.concat_tables([votes, pa.Table.from_pylist(rows, schema=T.CLASSIFICATIONS)])

    def classify(self, shards: list[pa.Table], models: list[ModelConfig], role: str = "own") -> pa.Table:
        """Each model classifies the prompts of `shards`: the generators their own prompts (role "own", the
        paper's self-classification), or the reference classifiers (role "vote")."""
        parts = []
        for model in models:
            units = [
                Unit.of(["classify", self.versions["classify"], model.identity()], s.select(["prompt_id", "text"]))
                for s in shards
            ]
            out = self._run_stage(f"classify[{model.name}]", "classify", self._plan(ClassifyStage, model, {}),
                                  units, ClassifyStage.output_schema)
            parts.append(out.append_column("role", pa.array([role] * out.num_rows, pa.string())))
        return pa.concat_tables(parts).cast(T.CLASSIFICATIONS) if parts else T.CLASSIFICATIONS.empty_table()

    def sample(self, shards: list[pa.Table], own: pa.Table, reference: pa.Table) -> pa.Table:
        """Generate every group; returns the driver's frame of groups (see `_frame`)."""
        cfg = self.config
        classified = {(r["prompt_id"], r["model"]): r["category"] for r in own.to_pylist()}
        yardstick = _reference_categories(reference)
        frames = []
        for model in cfg.generators:
            temperature = model.temperature if model.temperature is not None else cfg.sampling.temperature
            settings = {"n": cfg.n, "temperature": temperature, "top_p": cfg.sampling.top_p,
                        "max_tokens": cfg.sampling.max_tokens, "system_parse": cfg.sampling.system_parse}
            units, context = [], []
            for k, shard in enumerate(shards):
                for strategy in cfg.strategies:
                    rows, ctx = [], []
                    for p in shard.to_pylist():
                        own = classified.get((p["prompt_id"], model.name))
                        anchor = p["gold_category"] if cfg.category_source == "gold" and p["gold_category"] else own
                        seed = int(content_key(cfg.sampling.seed, p["prompt_id"], model.name, strategy)[:8], 16)
                        rows.append({"prompt_id": p["prompt_id"], "text": p["text"], "strategy": strategy,
                                     "category": anchor, "seed": seed})
                        ctx.append({PSHARD: k, "text": p["text"], "source": p["source"],
                                    "gold_category": p["gold_category"], "gold_answer": p["gold_answer"],
                                    "classified": own, **_judging_category(p, yardstick)})
                    table = pa.Table.from_pylist(rows, schema=T.SAMPLE_INPUT)
                    unit = Unit.of(["sample", self.versions["sample"], model.identity(), settings], table)
                    key = unit.key
                    units.append(unit)
                    context.extend({**c, UNIT: key} for c in ctx)
            out = self._run_stage(f"sample[{model.name}]", "sample", self._plan(SampleStage, model, settings),
                                  units, SampleStage.output_schema)
            failed = self.records[-1].failed
            context = [c for c in context if c[UNIT] not in failed]
            frames.append(_with_columns(out, pa.Table.from_pylist(context, schema=T.GROUP_CONTEXT)))
        return pa.concat_tables(frames)

    def external_frame(self, shards: list[pa.Table], groups: list[ExternalGroup],
                       reference: pa.Table) -> pa.Table:
        """The frame of groups for responses generated elsewhere (what `sample` returns for generated ones)."""
        yardstick = _reference_categories(reference)
        by_prompt: dict[str, list[ExternalGroup]] = defaultdict(list)
        for g in groups:
            by_prompt[g.prompt_id].append(g)
        rows = []
        for k, shard in enumerate(shards):
            for p in shard.to_pylist():
                for g in by_prompt[p["prompt_id"]]:
                    texts = [t for _, t in g.responses]
                    rows.append({
                        "prompt_id": p["prompt_id"], "model": g.model, "strategy": g.strategy, "anchored_as": None, "parse_mode": None,
                        "responses": texts, "finish_reasons": ["external"] * len(texts),
                        "n_tokens": [None] * len(texts), "status": "ok", "raw": None, "calls": 0, "error": None,
                        PSHARD: k, "text": p["text"], "source": p["source"], "gold_category": p["gold_category"],
                        "gold_answer": p["gold_answer"], "classified": None,
                        **_judging_category(p, yardstick),
                        UNIT: f"external:{k}:{g.model}:{g.strategy}",
                    })
        schema = SampleStage.output_schema
        for f in T.GROUP_CONTEXT:
            if f.name not in schema.names:
                schema = schema.append(f)
        return pa.Table.from_pylist(rows, schema=schema)

    def accuracy(self, frame: pa.Table) -> pa.Table:
        """Correctness of responses to prompts with a gold answer (math-verify or the grader)."""
        grader = self.config.grader
        methods = [accuracy_method(s, c, g) for s, c, g in zip(frame["source"].to_pylist(),
                                                              frame["judge_category"].to_pylist(),
                                                              frame["gold_answer"].to_pylist())]
        checkable = frame.filter(pa.array([m is not None for m in methods]))
        units = self._group_units(checkable, "accuracy", [self.versions["accuracy"], grader.identity(),
                                                         ACCURACY_VERSION], T.ACCURACY_INPUT.names, T.ACCURACY_INPUT)
        plan = self._plan(AccuracyStage, grader, {"math_timeout_s": self.config.accuracy.math_timeout_s})
        return self._run_stage(f"accuracy[{grader.name}]", "accuracy", plan, units, AccuracyStage.output_schema)

    def reward(self, frame: pa.Table) -> pa.Table:
        """Reward-model scores of every response."""
        rm = self.config.quality.reward_model
        units = self._group_units(frame, "reward", [rm.identity()], T.REWARD_INPUT.names, T.REWARD_INPUT)
        plan = StagePlan(RewardStage, {"reward": rm.spec()},
                         batch_size=rm.batch_size, num_actors=rm.num_actors, num_cpus=rm.num_cpus,
                         num_gpus=rm.num_gpus, label="reward", host=self._host(rm))
        return self._run_stage("reward", "reward", plan, units, RewardStage.output_schema)

    def _group_units(self, frame: pa.Table, tag: str, identity: Any, columns: list[str],
                     schema: pa.Schema) -> list[Unit]:
        """Units over groups, one per sample unit, keyed by the groups' content and `identity`."""
        units = []
        for key in _unique(frame[UNIT]):
            table = frame.filter(pc.equal(frame[UNIT], key)).select(columns).cast(schema)
            units.append(Unit.of([tag, identity], table))
        return units

    def judge(self, frame: pa.Table, metrics: pa.Table) -> pa.Table:
        cfg = self.config
        settings = asdict(cfg.judge)
        schema, identity = T.JUDGE_INPUT, [self.versions["judge"], JudgeStage.version, settings]
        if cfg.judge.cascade.enabled:
            # The cheap judge reads the metrics stage's pairwise matrices; its coefficients and the embedder behind
            # the cosine feature decide its verdicts, so both key the judge's shards.
            from engine.method.calibrated import CalibratedJudge

            cheap = CalibratedJudge.load(cfg.judge.cascade.coefficients)
            if cheap.embedder != cfg.embedder.model:
                raise ConfigError(f"judge.cascade: the coefficients were fitted with embedder {cheap.embedder!r} but "
                                  f"embedder.model is {cfg.embedder.model!r}")
            identity += [asdict(cheap), cfg.embedder.model]
            frame = _join_features(frame, metrics)
            schema = T.JUDGE_INPUT_WITH_FEATURES
        parts = []
        for judge in cfg.judges:
            units = self._group_units(frame, "judge", [*identity, judge.identity()], schema.names, schema)
            parts.append(self._run_stage(f"judge[{judge.name}]", "judge",
                                         self._plan(JudgeStage, judge, {"settings": settings}),
                                         units, JudgeStage.output_schema))
        return pa.concat_tables(parts)

    def metrics(self, frame: pa.Table) -> pa.Table:
        emb = self.config.embedder
        units = self._group_units(frame, "metrics", [emb.identity(), MetricsStage.version], T.METRICS_INPUT.names,
                                  T.METRICS_INPUT)
        plan = StagePlan(MetricsStage, {"embedder": emb.spec()}, batch_size=emb.batch_size,
                         num_actors=emb.num_actors, num_cpus=emb.num_cpus, num_gpus=emb.num_gpus, label="metrics",
                         host=self._host(emb))
        return self._run_stage("metrics", "metrics", plan, units, MetricsStage.output_schema)

    def quality(self, frame: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Each grader's checklists, once per (prompt, category), then its grade for every response."""
        parts = [self._quality_by(frame, grader) for grader in self.config.graders]
        return pa.concat_tables([c for c, _ in parts]), pa.concat_tables([g for _, g in parts])

    def _quality_by(self, frame: pa.Table, grader: ModelConfig) -> tuple[pa.Table, pa.Table]:
        cfg = self.config
        units = []
        for k in _unique(frame[PSHARD]):
            part = frame.filter(pc.equal(frame[PSHARD], k)).select(T.CHECKLIST_INPUT.names).to_pylist()
            rows = list({(r["prompt_id"], r["judge_category"]): r for r in part}.values())
            table = pa.Table.from_pylist(rows, schema=T.CHECKLIST_INPUT)
            units.append(Unit.of(["checklist", self.versions["checklist"], grader.identity(),
                                  cfg.quality.checklist_max_tokens], table))
        plan = self._plan(ChecklistStage, grader, {"max_tokens": cfg.quality.checklist_max_tokens})
        checklists = self._run_stage(f"checklist[{grader.name}]", "checklist", plan, units,
                                     ChecklistStage.output_schema)
        criteria = {(r["prompt_id"], r["judge_category"]): r["criteria"] for r in checklists.to_pylist()}
        with_criteria = frame.append_column("criteria", pa.array(
            [criteria.get((p, c)) for p, c in zip(frame["prompt_id"].to_pylist(), frame["judge_category"].to_pylist())],
            pa.list_(pa.string())))
        grade_units = self._group_units(with_criteria, "grade", [self.versions["grade"], grader.identity()],
                                        T.GRADE_INPUT.names, T.GRADE_INPUT)
        grades = self._run_stage(f"grade[{grader.name}]", "grade", self._plan(GradeStage, grader, {}), grade_units,
                                 GradeStage.output_schema)
        return checklists, grades

    # -- machinery ----------------------------------------------------------------------------------------------

    def _shard(self, prompts: list[Prompt]) -> list[pa.Table]:
        size = self.config.execution.shard_size
        return [
            pa.Table.from_pylist([p.to_row() for p in prompts[k : k + size]], schema=T.PROMPTS)
            for k in range(0, len(prompts), size)
        ]

    def _plan(self, stage: type[Stage], model: ModelConfig, kwargs: dict[str, Any]) -> StagePlan:
        # GPU needs follow from the backend (vLLM: TP×PP GPUs, in a placement group when it spreads over Ray).
        need = scheduling(model.backend, model.options, model.num_gpus)
        num_gpus, placement_group = need["num_gpus"], need["placement_group"]
        return StagePlan(
            stage,
            {"model": model.spec(), **kwargs},
            batch_size=model.batch_size,
            num_actors=model.num_actors,
            num_cpus=model.num_cpus,
            num_gpus=num_gpus,
            label=f"{stage.name}[{model.name}]",
            placement_group=placement_group,
            max_restarts=HTTP_ACTOR_RESTARTS if model.backend == "http" else None,
            host=self._host(model),
        )

    def _host(self, model: ModelConfig) -> str:
        """The host key of a model: its spec (without its display name) and the resources of its workers. Every
        stage using the same model on the same resources runs in the same hosts, which load it once."""
        spec = {k: v for k, v in model.spec().items() if k != "name"}
        # Chat models reserve what their backend needs (vLLM: TP×PP GPUs, a placement group), as in _plan; the
        # embedder and the reward model reserve their configured GPUs, as in their stages' plans.
        need = scheduling(model.backend, model.options, model.num_gpus) if isinstance(model, ModelConfig) else {}
        return content_key("host", spec, model.num_actors, model.num_cpus, need.get("num_gpus", model.num_gpus),
                           need.get("placement_group"))

    def _schedule(self, external: bool) -> list[tuple[str, set[str]]]:
        """The run's stages in order with the host keys each uses, to release hosts no later stage needs."""
        cfg = self.config
        voters = [cfg.classifier] if cfg.classifier is not None else list(cfg.judges)
        phases = [("reference", {self._host(m) for m in voters})]
        if not external:
            phases += [("classify", {self._host(m) for m in cfg.generators}),
                       ("sample", {self._host(m) for m in cfg.generators})]
        phases += [("metrics", {self._host(cfg.embedder)}), ("judge", {self._host(m) for m in cfg.judges})]
        if cfg.quality.enabled:
            phases.append(("quality", {self._host(m) for m in cfg.graders}))
        if cfg.accuracy.enabled:
            phases.append(("accuracy", {self._host(cfg.grader)}))
        if cfg.quality.reward_model is not None:
            phases.append(("reward", {self._host(cfg.quality.reward_model)}))
        return phases

    def _release_after(self, phase: str) -> None:
        """Stop the hosts of models that no stage after `phase` uses (their memory and GPUs go to the next)."""
        phases = self._schedule_cache
        names = [name for name, _ in phases]
        later = set().union(*(keys for _, keys in phases[names.index(phase) + 1:]))
        self.executor.release(later)

    def _run_stage(self, label: str, table_name: str, plan: StagePlan, units: list[Unit],
                   schema: pa.Schema) -> pa.Table:
        """Run the units not yet in the store, write each unit's shard when complete, return all units' rows.

        Nothing finished is computed twice: a missed unit first takes every row already finished in an earlier
        shard of the stage (same row, same settings: its row key), and only its other rows go to the executor. A
        row whose backend call failed transiently (RETRY) is written with its shard, marked, and computed again by
        the next `execution.row_retries` reruns; after those its failure is kept and reported.
        """
        record = StageRecord(label, units=len(units))
        start = time.perf_counter()
        limit = self.config.execution.row_retries
        # A unit is done when its shard is written and holds no row still to retry.
        todo = []
        for u in units:
            if not self.store.has([table_name], u.key):
                todo.append(u)
                continue
            attempts_so_far = self.store.retries(table_name, u.key)
            if any(a <= limit for a in attempts_so_far):
                todo.append(u)
            else:
                record.rows_gave_up += len(attempts_so_far)
        record.units_reused = len(units) - len(todo)
        index = self.store.read_row_index(table_name) if todo else {}
        row_keys = {u.key: u.row_keys() for u in todo}
        reuse: dict[str, dict[int, tuple[str, int]]] = {}  # unit → {row: (shard, row) of its finished copy}
        attempts: dict[str, dict[int, int]] = defaultdict(dict)  # unit → {row: earlier transient failures}
        send: dict[str, list[int]] = {}
        gave_up_here = 0
        for u in todo:
            reuse[u.key], send[u.key] = {}, []
            for k, row_key in enumerate(row_keys[u.key]):
                found = index.get(row_key)
                if found is not None and (found[2] is None or found[2].get("attempts", 1) > limit):
                    reuse[u.key][k] = found[:2]
                    gave_up_here += found[2] is not None
                else:
                    if found is not None:
                        attempts[u.key][k] = int(found[2].get("attempts", 1))
                        record.rows_retried += 1
                    send[u.key].append(k)
        record.rows_reused = sum(len(v) for v in reuse.values()) - gave_up_here
        record.rows_gave_up += gave_up_here
        wanted: dict[str, list[int]] = defaultdict(list)
        for mapping in reuse.values():
            for shard, row in mapping.values():
                wanted[shard].append(row)
        old_rows = self.store.read_rows(table_name, wanted) if wanted else {}
        old_retry = {(shard, row): info for shard, row, info in index.values() if info is not None}

        def finish(key: str, computed: list[dict[str, Any]]) -> None:
            """Write unit `key` from its reused rows and its computed rows (each carrying ROW and RETRY)."""
            rows: dict[int, dict[str, Any]] = {}
            retry: dict[str, dict[str, Any]] = {}
            for k, (shard, row) in reuse[key].items():
                rows[k] = old_rows[(shard, row)]
                if (shard, row) in old_retry:  # gave up: kept as failed, still marked
                    retry[str(k)] = old_retry[(shard, row)]
            for r in computed:
                k = r.pop(ROW)
                error = r.pop(RETRY, None)
                rows[k] = r
                if error is not None:
                    retry[str(k)] = {"error": error[:500], "attempts": attempts[key].get(k, 0) + 1}
                    record.rows_transient += 1
            table = pa.Table.from_pylist([rows[k] for k in range(len(rows))], schema=schema)
            self.store.write_shard({table_name: table}, key, rows={"keys": row_keys[key], "retry": retry})

        expected = {u.key: len(send[u.key]) for u in todo}
        blocks = []
        for u in todo:
            if not send[u.key]:
                finish(u.key, [])
                continue
            picked = pa.array(send[u.key], pa.int64())
            blocks.append(u.rows.take(picked).append_column(SHARD, pa.array([u.key] * len(picked), pa.string()))
                          .append_column(ROW, picked))
        buffers: dict[str, list[pa.Table]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        bar = _progress(label, sum(expected.values()), self.progress)
        try:
            for batch in self.executor.map(plan, blocks):
                for counters in batch[TELEMETRY].drop_null().to_pylist():
                    for name, value in json.loads(counters).items():
                        record.backend[name] = record.backend.get(name, 0) + value
                for key in pc.unique(batch[SHARD]).to_pylist():
                    part = batch.filter(pc.equal(batch[SHARD], key))
                    bar.update(part.num_rows)
                    errors = [e for e in part[ERROR].to_pylist() if e is not None]
                    if errors or key in record.failed:
                        record.failed.setdefault(key, errors[0] if errors else "")
                        buffers.pop(key, None)
                        continue
                    buffers[key].append(part)
                    counts[key] += part.num_rows
                    if counts[key] == expected[key]:
                        done = pa.concat_tables(buffers.pop(key))
                        keep = [c for c in schema.names] + [ROW, RETRY]
                        finish(key, done.select(keep).to_pylist())
        finally:
            bar.refresh()
            bar.close()
        lost = [k for k in expected if k not in record.failed and not self.store.has([table_name], k)]
        if lost:
            raise RuntimeError(f"stage {label}: {len(lost)} shards came back incomplete from the executor")
        record.rows = sum(u.rows.num_rows for u in todo)
        record.wall_s = time.perf_counter() - start
        self.records.append(record)
        if record.failed:
            log.warning("stage %s: %d of %d shards failed and are left for a rerun: %s", label,
                        len(record.failed), len(units), next(iter(record.failed.values())))
        if record.rows_transient:
            log.warning("stage %s: %d rows failed in a way that may not recur; they are kept as failed and a rerun "
                        "computes them again (execution.row_retries: %d)", label, record.rows_transient, limit)
        done_units = [u for u in units if u.key not in record.failed]
        return self.store.read_shards(table_name, [u.key for u in done_units], schema)

# Columns of the driver's frame of groups only (never written): the sample unit and the prompt shard of a group.
UNIT = "_unit"
PSHARD = "_pshard"


def load_run_prompts(cfg: RunConfig, report: PresetReport, *, offline: bool | None = None,
                     skip_missing: bool = False) -> tuple[list[Prompt], list[ExternalGroup] | None]:
    """The run's prompts, and its groups of responses when they come from elsewhere (else None).

    Args:
        offline: whether named sources may be fetched (default: the config's models.offline).
        skip_missing: draw the paper's mix from the sources there are even when the config says to fail (plan).

    Raises:
        TaskdivError: no prompts at all (every row skipped, or none selected).
    """
    groups = None
    if cfg.prompts.source == "responses":
        prompts, groups = load_responses(_require_path(cfg), on_error=cfg.prompts.on_error, report=report)
        prompts = select(prompts, per_category=cfg.prompts.per_category, limit=cfg.prompts.limit)
        kept = {p.prompt_id for p in prompts}
        groups = [g for g in groups if g.prompt_id in kept]
    else:
        offline = cfg.models.resolved_offline() if offline is None else offline
        prompts = load_prompts(cfg.prompts, report=report, offline=offline, skip_missing=skip_missing)
    prompts, groups = _within_size_caps(cfg, prompts, groups, report)
    if not prompts:
        raise TaskdivError(f"no prompts to run (source {cfg.prompts.source!r}: all rows skipped or none selected)")
    return prompts, groups


def _within_size_caps(cfg: RunConfig, prompts: list[Prompt], groups: list[ExternalGroup] | None,
                      report: PresetReport) -> tuple[list[Prompt], list[ExternalGroup] | None]:
    """Prompts over prompts.max_prompt_chars, and groups with a response over prompts.max_response_chars, are bad
    rows: an error under on_error: fail, skipped and listed under skip."""
    from engine.errors import InputError

    pc_ = cfg.prompts
    bad: dict[str, InputError] = {}
    if pc_.max_prompt_chars:
        for p in prompts:
            if len(p.text) > pc_.max_prompt_chars:
                bad[p.prompt_id] = InputError(p.source, (p.meta or {}).get("line"), "text",
                                              f"prompt {p.prompt_id} has {len(p.text)} characters, over "
                                              f"prompts.max_prompt_chars ({pc_.max_prompt_chars})")
    if pc_.max_response_chars and groups is not None:
        for g in groups:
            longest = max((len(text) for _, text in g.responses), default=0)
            if longest > pc_.max_response_chars and g.prompt_id not in bad:
                bad[g.prompt_id] = InputError(pc_.path or "responses", None, "responses",
                                              f"a response to prompt {g.prompt_id} ({g.model}, {g.strategy}) has "
                                              f"{longest} characters, over prompts.max_response_chars "
                                              f"({pc_.max_response_chars})")
    if not bad:
        return prompts, groups
    if pc_.on_error == "fail":
        raise next(iter(bad.values()))
    for error in bad.values():
        report.add(error)
    prompts = [p for p in prompts if p.prompt_id not in bad]
    return prompts, None if groups is None else [g for g in groups if g.prompt_id not in bad]


def check_cost(cfg: RunConfig, prompts: list[Prompt], groups: list[ExternalGroup] | None) -> Plan:
    """Refuse to start (ConfigError, with the plan) when the plan's upper bound exceeds execution.max_cost_usd."""
    plan = make_plan(cfg, prompts, None if groups is None else len(groups))
    cap = cfg.execution.max_cost_usd
    high = plan.cost_high
    if high is None:
        raise ConfigError(f"execution.max_cost_usd: the run's cost is unknown — no prices for "
                          f"{', '.join(plan.unpriced())} — so it cannot be held under ${cap:,.2f}; give those models "
                          f"options.prices. The plan:\n{render_plan(plan)}")
    if high > cap:
        raise ConfigError(f"execution.max_cost_usd: the plan's upper bound ${high:,.2f} exceeds the cap "
                          f"${cap:,.2f}; nothing was run. The plan:\n{render_plan(plan)}")
    return plan


# The `model` of the reference classification's rows in the classifications table.
REFERENCE = "reference"


def _reference_categories(reference: pa.Table) -> dict[str, str | None]:
    return {r["prompt_id"]: r["category"] for r in reference.to_pylist() if r["role"] == "reference"}


def _judging_category(prompt: dict[str, Any], reference: dict[str, str | None]) -> dict[str, Any]:
    """The category a group is judged under (gold, else the reference classification) and where it came from."""
    if prompt["gold_category"]:
        return {"judge_category": prompt["gold_category"], "category_source": "gold"}
    category = reference.get(prompt["prompt_id"])
    return {"judge_category": category, "category_source": "reference" if category else None}


def _require_path(cfg: RunConfig) -> str:
    if not cfg.prompts.path:
        raise ConfigError("prompts.path: the responses source needs the file of responses")
    return cfg.prompts.path


def _join_features(frame: pa.Table, metrics: pa.Table) -> pa.Table:
    """The frame with each group's pairwise matrices from the metrics table (null where a group has none)."""
    by_group = {tuple(m[k] for k in T.KEYS): m for m in metrics.select([*T.KEYS, *FEATURE_COLUMNS]).to_pylist()}
    keys = [tuple(r[k] for k in T.KEYS) for r in frame.select(list(T.KEYS)).to_pylist()]
    for column in FEATURE_COLUMNS:
        values = [by_group.get(key, {}).get(column) for key in keys]
        frame = frame.append_column(pa.field(column, pa.list_(pa.float64())), pa.array(values, pa.list_(pa.float64())))
    return frame


def _unique(column: pa.ChunkedArray) -> list:
    seen: dict = {}
    for v in column.to_pylist():
        seen.setdefault(v, None)
    return list(seen)


def _with_columns(table: pa.Table, extra: pa.Table) -> pa.Table:
    for name in extra.column_names:
        if name not in table.column_names:
            table = table.append_column(extra.schema.field(name), extra[name])
    return table


def _progress(label: str, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="row", disable=not enabled or total == 0, leave=False,
                dynamic_ncols=True)
