"""The run: prompts → classify → sample → judge → components → metrics → quality → groups → report.

Each stage runs over *units* (one shard of prompts for one model, strategy or judge). A unit's key hashes its
input rows and every setting that affects its output, so a rerun skips finished units and a changed setting
recomputes exactly the units that depend on it. The driver writes each unit's shard as soon as all its rows have
arrived (atomically), so a crash loses only the units in flight.

The classification phases run one after another (one short call per prompt; sampling needs their categories).
From sampling on, stages stream into each other (engine.execution.dataflow): as soon as a sample unit is written,
its groups go on to metrics, judging, grading, accuracy and reward while later units are still sampling; a
checklist waits for every group of its prompts. Only the tables and the report wait for everything.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from actors.base import split_reasoning
from actors.registry import scheduling
from engine.method import taxonomy
from engine.config import CALIBRATED, CascadeConfig, ModelConfig, RunConfig, dump_yaml
from engine.errors import ConfigError, TaskdivError
from engine.execution.dataflow import Dataflow, StageRun, Unit
from engine.execution.executor import (LocalExecutor, RayExecutor, StagePlan, hub_environment, joins_cluster,
                                       make_executor)
from engine.inputs.loaders.paper import PresetReport
from engine.inputs.prompts import Prompt, over_prompt_cap, select
from engine.inputs.responses import ExternalGroup, load_responses
from engine.method.accuracy import ACCURACY_VERSION, accuracy_method
from engine.method.math import MATH_EXTRACTION_VERSION
from engine.method.classification import PENDING, PENDING_PREFIX, majority, majority_settled
from engine.method.judges import in_agreement_sample
from engine.method.metrics import GENERAL_METRICS
from engine.method.strategies import SYSTEM_STRATEGIES
from engine.stages.accuracy import AccuracyStage
from engine.execution.plan import Plan, less_stored, make_plan, render_plan, work_versions
from engine.execution.preflight import (PROBE_CONVERSATION, checked_options, endpoint_probes, model_roles,
                                       pin_weights, preflight)
from engine.execution.resources import PeakMemory
from engine.execution.results import RunResult, StageRecord, finished_groups
from engine.inputs.sources import load_prompts
from engine.stages.base import Stage
from engine.stages.checklist import ChecklistStage
from engine.stages.classify import ClassifyStage
from engine.stages.grade import GradeStage
from engine.stages.judge import CalibratedJudgeStage, JudgeStage
from engine.stages.metrics import MetricsStage
from engine.stages.reward import RewardStage
from engine.stages.sample import SampleStage
from engine.execution.store import RunDirLock, Store, claim_run_dir, content_key, unclaim_run_dir
from engine.execution import tables as T

log = logging.getLogger(__name__)

# Restarts of a dead API-model actor (each re-sends its batch, billed again) before its stage fails.
HTTP_ACTOR_RESTARTS = 3


# Both orders split on the threshold are unresolved ("order_split", 2026-12-02), no longer equivalent: keys the answer
# and trace judges' shards only where both orders are judged, so that other runs keep their judgments.
ORDER_SPLIT_RULE = "order-split-unresolved"


def run_executor(config: RunConfig, hub_env: dict[str, str] | None = None) -> LocalExecutor | RayExecutor:
    """The executor a config names (execution.executor and its Ray settings); `hub_env`: the hub access its workers
    get (default: the config's models.offline)."""
    ex = config.execution
    if ex.executor == "ray":
        env = hub_env if hub_env is not None else hub_environment(config.models.resolved_offline())
        return make_executor("ray", address=ex.ray_address, num_cpus=ex.num_cpus,
                             object_store_memory=ex.object_store_memory, env=env, node_wait_s=ex.node_wait_s)
    return make_executor("local")


class Pipeline:
    """Runs one config end to end.

    Args:
        config: the run config.
        executor: an executor to use instead of the one the config names (tests pass a LocalExecutor).
        progress: show a progress bar per stage.
        keep_executor: the executor outlives this run (a reward function judging batch after batch): its model
            hosts are not stopped as the stages finish nor at close — the next run on it finds its models loaded —
            and the caller closes it. An executor still stops hosts itself to make room for a model that does not
            fit beside them.
    """

    def __init__(self, config: RunConfig, executor: LocalExecutor | RayExecutor | None = None,
                 progress: bool = True, keep_executor: bool = False, lock: RunDirLock | None = None,
                 audit: bool = True) -> None:
        if keep_executor and executor is None:
            raise ValueError("keep_executor needs the executor that outlives the run (run_executor(config))")
        self.config = config
        # As given: run() pins its models (preflight.pin_weights) into self.config; the calibrated judge's embedder
        # is checked against this one, as written when `calibrate` recorded it.
        self.written = config
        self.keep_executor = keep_executor
        self.audit = audit  # False: a rewards run (engine.api.score_rewards), whose groups of one get None
        self._made_dir = not os.path.lexists(config.run_dir)  # removed at close if nothing was written there
        claim_run_dir(config.run_dir)
        self.store = Store(config.run_dir)
        # A caller that writes into the run directory before the run (a reward batch: engine.api) holds its lock
        # from then on and passes it here; it releases it, not close().
        self.lock = lock if lock is not None else RunDirLock(config.run_dir)
        self._own_lock = lock is None
        self._executor = executor
        self.progress = progress
        self.records: list[StageRecord] = []
        self._to_retry: dict[str, list[dict[str, Any]]] = {}  # classification stage → rows a rerun computes again
        self._retrying_votes: set[tuple[str, str]] = set()  # (prompt, voter) whose vote a rerun asks again
        # Classify stages run in this invocation, by label and unit keys: a generator that also votes (the default
        # config's one model) builds the same units twice, and a second run of them re-sent the rows the first had
        # marked for a rerun — paid again, and counted as a rerun, so execution.row_retries ran out within one run.
        self._classified: dict[tuple[str, tuple[str, ...]], pa.Table] = {}
        # (prompt, generator) whose own classification a rerun asks again (its request failed transiently): held out
        # of the anchored strategies like an absent one.
        self._retrying_own: set[tuple[str, str]] = set()
        self._schedule_cache: list[tuple[str, set[str]]] = []  # the run's stages and their hosts (_schedule)
        self._clock_zero = time.perf_counter()  # stage records' start_s count from here (reset when the run starts)
        # Fingerprints of every text each stage sends (engine.method.taxonomy): in every shard key of that stage.
        self.versions = taxonomy.prompt_versions()
        self._coefficients: dict[str, Any] = {}  # calibrated-judge coefficients by path, read once (`_calibrated`)
        # Hub access (models.offline) for this process and every worker, and where the Hugging Face cache is.
        self.offline = config.models.resolved_offline()
        self.hub_env = hub_environment(self.offline)
        os.environ.update(self.hub_env)

    @property
    def executor(self) -> LocalExecutor | RayExecutor:
        if self._executor is None:
            self._executor = run_executor(self.config, self.hub_env)
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
        # The stage records (failed shards among them), then the config that marks the run finished: a run
        # stopped before its report still says what failed (engine.execution.results.RunResult.records).
        self.store.write_text("run_stats.json", orjson.dumps(result.records(), option=orjson.OPT_INDENT_2).decode())
        self.store.write_text("config.yaml", dump_yaml(self.config.to_dict()))
        self.store.remove_file(RUNNING_CONFIG)
        return result

    def _run(self) -> RunResult:
        start = self._clock_zero = time.perf_counter()
        cfg = self.config
        # On a cluster the run joins, a model this machine cannot find may be on the nodes that run it: each model
        # is checked again on those nodes once they are known (below), and only there refused.
        deferred: list[str] | None = [] if cfg.execution.executor == "ray" and joins_cluster(
            cfg.execution.ray_address) else None
        preflight(cfg, offline=self.offline, deferred=deferred)
        # From here on the run uses (and its config.yaml records) its models pinned to the weights they load now.
        cfg, notes = pin_weights(cfg, self.offline)
        self.config = cfg
        for note in notes:
            log.warning("%s", note)
        load_report = PresetReport()
        prompts, groups = load_run_prompts(cfg, load_report, offline=self.offline)
        if self.audit:
            refuse_groups_of_one(cfg, groups)
        refuse_unclassifiable(cfg, prompts)
        external = groups is not None
        if cfg.execution.max_cost_usd is not None:
            check_cost(cfg, prompts, groups)
        # The config the tables are from goes down with them, at the end: a run that stops part-way must not leave
        # its new config beside the tables of the last one that finished (read_run would pair them). Meanwhile the
        # running config is kept apart, for a look at what the unfinished run was doing — written once the run
        # passed its checks (a run refused for its prompts or its cost left one, read as a run that stopped).
        self.store.write_text(RUNNING_CONFIG, dump_yaml(cfg.to_dict()))
        prompts_table = pa.Table.from_pylist([p.to_row() for p in prompts], schema=T.PROMPTS)
        shards = self._shard(prompts)
        self._schedule_cache = self._schedule(external)

        # Before the first model call: every model's actors fit a node, and (on a cluster) each is found where it runs.
        needs = self.resource_needs()
        self.executor.check_fits([(f"{where} ({getattr(m, 'name', m.model)})", plan) for where, _, m, plan in needs],
                                 cfg.execution.node_wait_s)
        if deferred and not self.executor.joined:  # a Ray the caller started: the driver's check stands
            raise ConfigError(deferred[0])
        for note in deferred or []:
            log.warning("%s — checked on the cluster's nodes that run it instead", note)
        self.executor.check_models([(where, plan, (role, m.backend, m.model, checked_options(role, m)))
                                    for where, role, m, plan in needs], self.offline)
        if cfg.execution.probe_endpoints:
            plans = {where: plan for where, _, _, plan in needs}
            self.executor.probe_endpoints([
                (where, plans[where], (role, m.backend, m.model, m.options, samplings, list(PROBE_CONVERSATION)))
                for where, role, m, samplings in endpoint_probes(cfg) if where in plans])
        # The yardstick category is never the model under test's own: gold where present, else one reference
        # classification per prompt (the classifier, default the judges' majority), the same for every generator.
        reference = self.reference_classify(shards, generating=not external)
        self._release_after("reference")
        held: dict[str, int] = defaultdict(int)  # generator → anchored groups held back (classification failed)
        if external:
            classifications = reference
            flow = _Flow(self, frame=self.external_frame(shards, groups, reference))
        else:
            own = self.classify(shards, cfg.generators, role="own")
            classifications = pa.concat_tables([own, reference])
            self._release_after("classify")
            flow = _Flow(self, samples=self.sample_units(shards, own, reference, held=held))
        flow.run()
        frame, metrics, judged = flow.frame(), flow.output("metrics"), flow.judged()
        comps = T.components_table(judged, cfg.judge.threshold)
        judged_traces = flow.output("judge_trace") if flow.traces else None
        checklists, grades = flow.quality() if cfg.quality.enabled else (None, None)
        accuracy = flow.output("accuracy") if cfg.accuracy.enabled else None
        rewards = flow.output("reward") if cfg.quality.reward_model is not None else None
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
        answered = T.answering(frame)  # a response that gives no answer has no grade nor reward
        if checklists is not None:
            tables["checklists"] = checklists
            tables["quality"] = T.explode_grades(grades, answered)
            tables["components"] = comps = T.with_utility(comps, tables["quality"])
        if accuracy is not None:
            tables["accuracy"] = T.explode_accuracy(accuracy, answered)
        if rewards is not None:
            tables["rewards"] = T.explode_rewards(rewards, answered)
        if judged_traces is not None:
            tables["trace_judgments"] = T.explode_judgments(judged_traces)
            tables["trace_components"] = T.components_table(judged_traces, cfg.judge.threshold)
        tables["groups"] = T.groups_table(frame, comps, metrics, tables.get("quality"), tables.get("accuracy"),
                                          tables.get("rewards"),
                                          judges=[j.name for j in cfg.judges] if flow.answers else [],
                                          trace_components=tables.get("trace_components"),
                                          trace_judges=[j.name for j in cfg.llm_judges] if flow.traces else [])
        # In an order a crash (a kill, a full disk) cannot leave mixed: the last run's config, stage records and
        # report go first — read_run refuses a directory without config.yaml — then this run's tables, its stage
        # records and its config last (run). Tables of the last run kept beside a config of this one, or this run's
        # beside the last one's config, would be read together by explore, compare and open_run; the last run's
        # report beside this run's tables would be read as this run's.
        for name in ("config.yaml", "run_stats.json", *REPORT_FILES):
            self.store.remove_file(name)
        for figure in (self.store.root / "figures").glob("*.png"):
            figure.unlink(missing_ok=True)
        for name in sorted(OPTIONAL_TABLES - set(tables)):
            # A run in this directory with quality, accuracy, a reward model or traces on wrote these; read beside
            # this run's groups (explore, compare, open_run) they would join its responses by prompt, model and
            # strategy. Their shards stay in shards/ for a run that turns the stage on again.
            self.store.remove_table(name)
        for name, table in tables.items():
            self.store.write_table(name, table)
        skipped = [str(e) for e in load_report.skipped]
        return RunResult(cfg.run_dir, tables, self.records, skipped, time.perf_counter() - start,
                         work_versions=work_versions(),
                         load_warnings=list(load_report.warnings) + [
                             f"{k} anchored groups of {name} held back: the generator's own classification of their "
                             "prompts failed (a failed shard of its classify stage, or rows a rerun asks again); a "
                             "rerun samples them"
                             for name, k in held.items()] + ([
                             f"{flow.pending} groups not judged, graded or checked for accuracy: their prompts' "
                             "reference classification is missing a classifier's answer (see the classify stage's "
                             "failed shards); a rerun classifies and judges them"] if flow.pending else []) + ([
                             f"{flow.failed_groups} groups whose sampling failed (status error) not judged, graded or "
                             "checked for accuracy: they count toward no mean, and a rerun samples again those whose "
                             "failure may not recur"] if flow.failed_groups else []),
                         model_load_s=load_s)

    @staticmethod
    def failed_shards(result: RunResult) -> dict[str, dict[str, str]]:
        """Stage → {shard key: reason} for shards that failed for good in this run (a rerun computes them)."""
        return result.failed_shards()

    def close(self) -> None:
        try:
            if self._executor is not None and not self.keep_executor:
                self._executor.close()
        finally:
            if self._own_lock:
                if self._made_dir:
                    unclaim_run_dir(self.config.run_dir, self.lock)
                self.lock.release()

    # -- stages -------------------------------------------------------------------------------------------------

    def reference_classify(self, shards: list[pa.Table], generating: bool = False) -> pa.Table:
        """The reference classification of every prompt without a gold category: each classifier's vote (the
        `classifier`, else every judge) and the majority letter (rows with role "reference", model "reference").

        `generating`: the generators classify every prompt next (their own classification). A classifier that is
        also a generator (the default config's one model) then classifies every prompt here, in the units its own
        classification runs again (reused within the run: Pipeline._classified), and its vote is read from them: in
        units of the unlabelled prompts alone, each of those was sent twice, and a row that failed transiently in the
        vote was sent again — paid again, and counted as a rerun — by the own classification."""
        cfg = self.config
        voters = cfg.voters
        unlabelled = [s.filter(pc.is_null(s["gold_category"])) for s in shards]
        if not any(s.num_rows for s in unlabelled):
            return T.CLASSIFICATIONS.empty_table()
        if not voters:
            missing = sum(s.num_rows for s in unlabelled)
            raise ConfigError(f"judges: {missing} prompts have no gold category and every judge is calibrated (it "
                              "cannot classify prompts): add an LLM judge or a `classifier`")
        own_units = {content_key(g.classify_identity()) for g in cfg.generators} if generating else set()
        also_own = [v for v in voters if content_key(v.classify_identity()) in own_units]
        others = [v for v in voters if v not in also_own]
        wanted = pa.array([p for s in unlabelled for p in s["prompt_id"].to_pylist()], pa.string())
        votes = pa.concat_tables(
            ([self.classify(unlabelled, others, role="vote")] if others else [])
            + ([self.classify(shards, also_own, role="vote").filter(
                pc.is_in(pc.field("prompt_id"), value_set=wanted))] if also_own else []))
        by_prompt: dict[str, dict[str, dict]] = defaultdict(dict)
        for row in votes.to_pylist():
            by_prompt[row["prompt_id"]][row["model"]] = row
        rows = []
        for shard in unlabelled:
            for prompt_id in shard["prompt_id"].to_pylist():
                ballots = [by_prompt[prompt_id].get(v.name) for v in voters]
                # A classifier whose shard failed has no ballot, and one whose call failed in a way a rerun retries
                # has none yet: when they could still change the majority, the category is unknown (never the
                # generic criterion's "uncategorised"): its groups are not judged under a category a rerun may
                # change — that would pay for every pair twice.
                missing = [b is None or (prompt_id, v.name) in self._retrying_votes for v, b in zip(voters, ballots)]
                letters = [None if gone else b["category"] for b, gone in zip(ballots, missing)]
                raw = "; ".join(f"{v.name}: {'missing' if gone else c or 'unparsed'}"
                                for v, gone, c in zip(voters, missing, letters))
                if majority_settled(letters, missing):
                    category, raw = majority(letters), f"majority of {raw}"
                else:
                    category, raw = None, f"{PENDING_PREFIX}a classifier's answer is missing ({raw})"
                rows.append({"prompt_id": prompt_id, "model": REFERENCE, "category": category,
                             "raw": raw, "calls": 0, "role": "reference"})
        return pa.concat_tables([votes, pa.Table.from_pylist(rows, schema=T.CLASSIFICATIONS)])

    def classify(self, shards: list[pa.Table], models: list[ModelConfig], role: str = "own") -> pa.Table:
        """Each model classifies the prompts of `shards`: the generators their own prompts (role "own", the
        paper's self-classification), or the reference classifiers (role "vote")."""
        parts = []
        by_base: dict[str, pa.Table] = {}  # a sweep's generators classify greedily, alike: once for all its values
        for model in models:
            base = model.sweep.get("base") if model.sweep else None
            label = f"classify[{base or model.name}]"
            if base is None or base not in by_base:
                identity = model.classify_identity()
                units = [Unit.of(["classify", self.versions["classify"], ClassifyStage.version, identity],
                                 s.select(["prompt_id", "text"])) for s in shards]
                ran = (label, tuple(u.key for u in units))
                if ran not in self._classified:
                    self._classified[ran] = self._run_stage(label, "classify", self._plan(ClassifyStage, model, {}),
                                                            units, ClassifyStage.output_schema)
                out = self._classified[ran]
                if base is not None:
                    by_base[base] = out
            else:
                out = by_base[base]
            retrying = {(r["prompt_id"], model.name) for r in self._to_retry.get(label, [])}
            if role == "vote":
                self._retrying_votes |= retrying
            else:
                self._retrying_own |= retrying
            out = out.set_column(out.schema.get_field_index("model"), "model",
                                 pa.array([model.name] * out.num_rows, pa.string()))
            parts.append(out.append_column("role", pa.array([role] * out.num_rows, pa.string())))
        return pa.concat_tables(parts).cast(T.CLASSIFICATIONS) if parts else T.CLASSIFICATIONS.empty_table()

    def sample_units(self, shards: list[pa.Table], own: pa.Table, reference: pa.Table,
                     held: dict[str, int] | None = None
                     ) -> list[tuple[ModelConfig, dict[str, Any], list[tuple[Unit, pa.Table]]]]:
        """Every generator's sample units, each with the context of its groups (see GROUP_CONTEXT).

        A prompt whose own classification is absent (its classify shard failed) or failed transiently (a rerun asks
        again; an unread answer is present, as None, and stands) is held out of the anchored strategies' units,
        counted in `held` by generator: sampled with the general wording it would be stored under the anchored
        strategy's name, and sampled again — paid again — once a rerun classifies it."""
        cfg = self.config
        classified = {(r["prompt_id"], r["model"]): r["category"] for r in own.to_pylist()}
        yardstick = _reference_categories(reference)
        out = []
        for model in cfg.generators:
            # After RunConfig's sweep expansion, a swept value is the generator's own; otherwise these are scalars.
            temperature = model.temperature if model.temperature is not None else cfg.sampling.temperature
            top_p = model.top_p if model.top_p is not None else cfg.sampling.top_p
            settings = {"n": cfg.n, "temperature": temperature, "top_p": top_p,
                        "max_tokens": cfg.sampling.max_tokens, "system_parse": cfg.sampling.system_parse}
            units = []
            for k, shard in enumerate(shards):
                for strategy in cfg.strategies:
                    rows, ctx = [], []
                    for p in shard.to_pylist():
                        own = classified.get((p["prompt_id"], model.name))
                        anchor = p["gold_category"] if cfg.category_source == "gold" and p["gold_category"] else own
                        if (strategy in ANCHORED_STRATEGIES and anchor is None
                                and ((p["prompt_id"], model.name) not in classified
                                     or (p["prompt_id"], model.name) in self._retrying_own)):
                            if held is not None:
                                held[model.name] += 1
                            continue
                        seed = int(content_key(cfg.sampling.seed, p["prompt_id"], model.name, strategy)[:8], 16)
                        # Only the anchored strategies read the category: in another's row it would re-key (and
                        # resample, at a price) its groups whenever the generator's own classification changed.
                        rows.append({"prompt_id": p["prompt_id"], "text": p["text"], "strategy": strategy,
                                     "category": anchor if strategy in ANCHORED_STRATEGIES else None, "seed": seed})
                        ctx.append({PSHARD: k, "text": p["text"], "source": p["source"],
                                    "gold_category": p["gold_category"], "gold_answer": p["gold_answer"],
                                    "classified": own, **_judging_category(p, yardstick)})
                    if not rows:
                        continue
                    table = pa.Table.from_pylist(rows, schema=T.SAMPLE_INPUT)
                    # Only a system-prompt strategy splits its completion (system_parse): another's groups keyed by
                    # it were sampled again, at a price, when it changed. Keyed there at its default, as stored.
                    keyed = settings if strategy in SYSTEM_STRATEGIES else {**settings, "system_parse": "strict"}
                    unit = Unit.of(["sample", self.versions["sample"], SampleStage.version, model.identity(),
                                    keyed], table)
                    context = pa.Table.from_pylist([{**c, UNIT: unit.key} for c in ctx], schema=T.GROUP_CONTEXT)
                    units.append((unit, context))
            out.append((model, settings, units))
        return out

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
                    texts, traces = [], []
                    for idx, text in g.responses:
                        # A trace the file gave stands; otherwise inline reasoning is split off, as from a backend.
                        answer, trace = (text, g.traces[idx]) if idx in g.traces else split_reasoning(text)
                        texts.append(answer)
                        traces.append(trace)
                    rows.append({
                        "prompt_id": p["prompt_id"], "model": g.model, "strategy": g.strategy, "anchored_as": None,
                        "parse_mode": None,
                        "responses": texts, "traces": traces, "finish_reasons": ["external"] * len(texts),
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

    # -- the units and plans of the stages after sampling, one sample unit's groups at a time ----------------------

    def judge_identity(self) -> list[Any]:
        """What keys every LLM judge's shards besides the judge: the texts it sends, the settings, and with the
        cascade the cheap judge's coefficients and the embedder behind its features."""
        cfg = self.config
        # The target only decides which lanes run (answers, traces): it never changes a verdict (_judge_settings).
        settings = _judge_settings(cfg)
        if not cfg.judge.cascade.enabled:
            settings["cascade"] = OFF_CASCADE  # its band and rates route no pair while it is off: keyed as default
        identity = [self.versions["judge"], JudgeStage.version, settings]
        if cfg.judge.both_orders:
            identity.append(ORDER_SPLIT_RULE)
        if cfg.judge.cascade.enabled:
            from engine.method.calibrated import RULES_VERSION

            cheap = self._calibrated(cfg.judge.cascade.coefficients)
            if cheap.embedder != self.written.embedder.model:
                raise ConfigError(f"judge.cascade: the coefficients were fitted with embedder {cheap.embedder!r} but "
                                  f"embedder.model is {self.written.embedder.model!r}")
            identity += [asdict(cheap), cfg.embedder.identity(), RULES_VERSION]
        return identity

    def judge_settings(self) -> dict[str, Any]:
        """The LLM judges' stage arguments: the settings, and the embedder the cascade's cheap judge reads.

        The cascade embeds a group's responses in the judge's own host, so a local embedder runs there on the CPU
        whatever its `device`: a GPU in that host belongs to the judge's engine (vLLM has claimed its share of the
        memory), and an API judge's host reserved none (Ray 2.60 no longer hides a node's GPUs from an actor that
        asked for none, so one used there would be taken from under another model's actor). The
        cascade's embedder is small (its coefficients name it; the shipped ones MiniLM) and embeds n texts a group.
        """
        out: dict[str, Any] = {"settings": asdict(self.config.judge)}
        if self.config.judge.cascade.enabled:
            spec = self.config.embedder.spec()
            if spec["backend"] == "local":
                spec["options"] = {**spec["options"], "device": "cpu"}
            out["embedder"] = spec
            # The coefficients as the driver read them (and keyed the shards by), not their path: a node without the
            # file failed the stage after the paid stages before it, or read another file at that path.
            out["coefficients"] = asdict(self._calibrated(self.config.judge.cascade.coefficients))
        return out

    def trace_judge_settings(self) -> dict[str, Any]:
        """The `judge:` settings of the lanes that judge reasoning traces: the run's, without the cascade (its cheap
        judge is fitted on answers) and without the target."""
        settings = _judge_settings(self.config)
        settings["cascade"] = OFF_CASCADE  # its band and rates do nothing here, so they key nothing either
        return settings

    def calibrated_plan(self, judge: ModelConfig) -> StagePlan:
        """A calibrated judge's plan: in the embedder's host (the embedding model loads once for it and the
        metrics), with the embedder's resources."""
        emb = self.config.embedder
        # Its coefficients as the driver read them (and keys the shards by), not their path (see judge_settings).
        coefficients = asdict(self._calibrated(judge.model))
        return StagePlan(CalibratedJudgeStage, {"model": judge.spec(), "settings": asdict(self.config.judge),
                                                "embedder": emb.spec(), "coefficients": coefficients},
                         batch_size=judge.batch_size, num_actors=emb.num_actors, num_cpus=emb.num_cpus,
                         num_gpus=emb.num_gpus, label=f"judge[{judge.name}]", host=self._host(emb),
                         priced=_priced(emb))

    def calibrated_identity(self, judge: ModelConfig) -> list[Any]:
        """What keys a calibrated judge's shards besides the judge settings: its coefficients and the embedder."""
        from engine.method.calibrated import RULES_VERSION

        coefficients = self._calibrated(judge.model)
        if coefficients.embedder != self.written.embedder.model:
            raise ConfigError(f"judges: {judge.name!r} (calibrated) was fitted with embedder "
                              f"{coefficients.embedder!r} but embedder.model is {self.written.embedder.model!r}")
        return [asdict(coefficients), self.config.embedder.identity(), RULES_VERSION]

    def _calibrated(self, path: str | None) -> Any:
        """The calibrated-judge coefficients at `path` (None or "default": the shipped ones), read once a run: the
        shards are keyed by what the stages are sent (a second read could find another file)."""
        from engine.method.calibrated import CalibratedJudge

        key = path or "default"
        if key not in self._coefficients:
            self._coefficients[key] = CalibratedJudge.load(None if key == "default" else key)
        return self._coefficients[key]

    def _judge_host(self, judge: ModelConfig) -> str:
        return self._host(self.config.embedder) if judge.backend == CALIBRATED else self._host(judge)

    def metrics_plan(self) -> StagePlan:
        emb = self.config.embedder
        return StagePlan(MetricsStage, {"embedder": emb.spec()}, batch_size=emb.batch_size,
                         num_actors=emb.num_actors, num_cpus=emb.num_cpus, num_gpus=emb.num_gpus, label="metrics",
                         host=self._host(emb), priced=_priced(emb))

    def reward_plan(self) -> StagePlan:
        rm = self.config.quality.reward_model
        return StagePlan(RewardStage, {"reward": rm.spec()},
                         batch_size=rm.batch_size, num_actors=rm.num_actors, num_cpus=rm.num_cpus,
                         num_gpus=rm.num_gpus, label="reward", host=self._host(rm))

    def checklist_unit(self, groups: pa.Table, grader: ModelConfig) -> Unit | None:
        """One checklist per (prompt, category) of a prompt shard's groups (None when it has none)."""
        rows = list({(r["prompt_id"], r["judge_category"]): r
                     for r in groups.select(T.CHECKLIST_INPUT.names).to_pylist()}.values())
        if not rows:
            return None
        return Unit.of(["checklist", self.versions["checklist"], ChecklistStage.version, grader.identity(),
                        self.config.quality.checklist_max_tokens], pa.Table.from_pylist(rows, schema=T.CHECKLIST_INPUT))

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
            priced=_priced(model),
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
        voters = cfg.voters
        phases = [("reference", {self._host(m) for m in voters})]
        if not external:
            phases += [("classify", {self._host(m) for m in cfg.generators}),
                       ("sample", {self._host(m) for m in cfg.generators})]
        phases += [("metrics", {self._host(cfg.embedder)}), ("judge", {self._judge_host(m) for m in cfg.judges})]
        if cfg.quality.enabled:
            phases.append(("quality", {self._host(m) for m in cfg.graders}))
        if cfg.accuracy.enabled:
            phases.append(("accuracy", {self._host(cfg.grader)}))
        if cfg.quality.reward_model is not None:
            phases.append(("reward", {self._host(cfg.quality.reward_model)}))
        return phases

    def resource_needs(self) -> list[tuple[str, str, Any, StagePlan]]:
        """(config key, role, model config, the plan of its actors) of every model the run loads
        (engine.execution.preflight.model_roles): what the executor checks the cluster can hold, and where each
        model is checked again, before the first model call. A calibrated judge runs in the embedder's host."""
        out = []
        for where, role, m in model_roles(self.config):
            plan = (self.metrics_plan() if role == "embed" else self.reward_plan() if role == "reward"
                    else self._plan(ClassifyStage, m, {}))
            out.append((where, role, m, plan))
        return out

    def _release_after(self, phase: str) -> None:
        """Stop the hosts of models that no stage after `phase` uses (their memory and GPUs go to the next)."""
        phases = self._schedule_cache
        names = [name for name, _ in phases]
        later = set().union(*(keys for _, keys in phases[names.index(phase) + 1:]))
        if not self.keep_executor:
            self.executor.release(later)

    def _stage_run(self, label: str, table_name: str, plan: StagePlan, schema: pa.Schema) -> StageRun:
        return StageRun(self.store, label, table_name, plan, schema, self.config.execution.row_retries,
                        progress=self.progress, clock_zero=self._clock_zero)

    def _run_stage(self, label: str, table_name: str, plan: StagePlan, units: list[Unit],
                   schema: pa.Schema) -> pa.Table:
        """Run one stage over units known up front (the classification phases); all units' rows.

        A lane of its own in a dataflow (engine.execution.dataflow), as the later stages run: a batch that fails in
        its host fails its units alone, the batches in flight beside it are waited for and kept (computed, and for
        an API paid for: recording them failed had a rerun pay again), the stage's batches not yet sent fail unsent
        where the host cannot build it, and nothing is left running on the hosts the next stage shares."""
        run = self._stage_run(label, table_name, plan, schema)
        run.begin()
        # Under the cost cap as the later stages are: reference classification by several API judges over prompts
        # without a gold category had none while it ran (a run spent 5 times its cap before sampling was refused).
        spent_before = sum(float(r.backend.get("cost_usd") or 0.0) for r in self.records)
        flow = Dataflow(self.executor, lambda lane, key, ok: None, spend_cap=self.config.execution.max_cost_usd,
                        spent_before=spent_before)
        flow.lane(label, run, 0)
        for unit in units:
            flow.add(label, unit)
        flow.close_input(label)
        flow.run()
        self.records.append(run.close())
        self._to_retry[label] = run.to_retry
        return run.output()


class _Flow:
    """The stages after classification, streaming: one lane per stage and model (engine.execution.dataflow).

    Sample units (or, for responses made elsewhere, the groups already there) feed, unit by unit: metrics, every
    judge (the traces' judges too, with judge.target), accuracy, the reward model, and each grader's
    checklist of a prompt shard once all that shard's groups are in; a unit's grades follow its shard's checklist.
    Every lane's output keeps the sample units' order, so the tables equal those of stages run one after another.
    """

    def __init__(self, pipeline: Pipeline, samples: list | None = None, frame: pa.Table | None = None) -> None:
        self.p = pipeline
        cfg = pipeline.config
        self.cfg = cfg
        # The classification stages before the dataflow spend too (a judges' vote as the reference classifier).
        spent_before = sum(float(r.backend.get("cost_usd") or 0.0) for r in pipeline.records)
        self.flow = Dataflow(pipeline.executor, self._heard, self._lane_done, stream=cfg.execution.stream,
                             spend_cap=cfg.execution.max_cost_usd, spent_before=spent_before)
        self.hosts: dict[str, str] = {}  # lane → host key
        self.order: dict[str, int] = {}  # sample unit → its place in the frame
        self.pshard: dict[str, int] = {}  # sample unit → its prompt shard
        self.context: dict[str, pa.Table] = {}  # sample unit → its groups' context
        self.frames: dict[str, pa.Table] = {}  # sample unit → its groups (completed units only)
        self.open_in_shard: dict[int, int] = defaultdict(int)  # prompt shard → sample units not yet in
        self.sample_lanes: list[str] = []
        self.by_key: dict[tuple[str, str], list[str]] = defaultdict(list)  # (lane, unit key) → sample units
        self.shard_of: dict[tuple[str, str], int] = {}  # (checklist lane, unit key) → prompt shard
        self.criteria: dict[str, dict[tuple[str, str], Any]] = defaultdict(dict)  # grader → checklists
        self.judge_identity = pipeline.judge_identity()
        self.external = frame
        self.pending = 0  # groups held back from judging, grading and accuracy: their category waits for a rerun
        self.failed_groups = 0  # groups whose sampling failed: not judged, graded or checked (no mean reads them)

        depth = 0
        if samples is not None:
            for model, settings, units in samples:
                name = f"sample[{model.name}]"
                self._lane(name, "sample", pipeline._plan(SampleStage, model, settings), SampleStage.output_schema, 0)
                self.sample_lanes.append(name)
                for unit, context in units:
                    self.order.setdefault(unit.key, len(self.order))
                    self.context[unit.key] = context
                    self.pshard[unit.key] = context[PSHARD][0].as_py() if context.num_rows else -1
                    self.open_in_shard[self.pshard[unit.key]] += 1
            depth = 1
        self._lane("metrics", "metrics", pipeline.metrics_plan(), MetricsStage.output_schema, depth)
        # judge.target: the answers (lanes judge[…]) and/or the reasoning traces (lanes judge_trace[…]).
        self.answers = cfg.judge.target in ("answer", "both")
        self.traces = cfg.judge.target in ("trace", "both")
        self.calibrated = {j.name: pipeline.calibrated_identity(j) for j in cfg.judges if j.backend == CALIBRATED}
        if self.answers:
            settings = pipeline.judge_settings()
            for judge in cfg.judges:
                if judge.name in self.calibrated:  # fed by the sample units directly: it needs no matrices
                    self._lane(f"judge[{judge.name}]", "judge", pipeline.calibrated_plan(judge),
                               JudgeStage.output_schema, depth + 1)
                    continue
                self._lane(f"judge[{judge.name}]", "judge", pipeline._plan(JudgeStage, judge, settings),
                           JudgeStage.output_schema, depth + 1)
        if self.traces:
            self.trace_settings = pipeline.trace_judge_settings()
            for judge in cfg.llm_judges:  # the calibrated judge is fitted on answers: it does not judge traces
                self._lane(f"judge_trace[{judge.name}]", "judge_trace",
                           pipeline._plan(JudgeStage, judge, {"settings": self.trace_settings, "target": "trace"}),
                           JudgeStage.output_schema, depth + 1)
        if cfg.quality.enabled:
            for grader in cfg.graders:
                self._lane(f"checklist[{grader.name}]", "checklist",
                           pipeline._plan(ChecklistStage, grader, {"max_tokens": cfg.quality.checklist_max_tokens}),
                           ChecklistStage.output_schema, depth + 1)
                self._lane(f"grade[{grader.name}]", "grade", pipeline._plan(GradeStage, grader, {}),
                           GradeStage.output_schema, depth + 2)
        if cfg.accuracy.enabled:
            grader = cfg.grader
            self._lane(f"accuracy[{grader.name}]", "accuracy",
                       pipeline._plan(AccuracyStage, grader, {"math_timeout_s": cfg.accuracy.math_timeout_s}),
                       AccuracyStage.output_schema, depth + 1)
        if cfg.quality.reward_model is not None:
            self._lane("reward", "reward", pipeline.reward_plan(), RewardStage.output_schema, depth + 1)

        if samples is not None:
            for model, _, units in samples:
                name = f"sample[{model.name}]"
                for unit, _ in units:
                    self.flow.add(name, unit, self.order[unit.key])
                self.flow.close_input(name)
        else:
            for key in _unique(frame[UNIT]):
                self.order[key] = len(self.order)
                self.frames[key] = frame.filter(pc.equal(frame[UNIT], key))
                self.pshard[key] = self.frames[key][PSHARD][0].as_py()
                self.open_in_shard[self.pshard[key]] += 1
            for key in list(self.order):
                self._sample_in(key, ok=True)
            self._upstream_done()

    def _lane(self, name: str, table: str, plan: StagePlan, schema: pa.Schema, depth: int) -> None:
        self.flow.lane(name, self.p._stage_run(name, table, plan, schema), depth)
        self.hosts[name] = plan.host_key()

    def run(self) -> None:
        try:
            self.flow.run()
        except BaseException:
            for lane in self.flow.lanes.values():
                lane.run.abandon()
            raise
        # The records of every lane, in the order of the stages.
        self.p.records.extend(lane.run.close() for lane in self.flow.lanes.values())

    # -- what each completed unit sets going ----------------------------------------------------------------------

    def _heard(self, lane: str, key: str, ok: bool) -> None:
        kind = lane.split("[", 1)[0]
        if kind == "sample":
            self._sample_in(key, ok)
        elif kind == "checklist":
            grader = lane[len("checklist["):-1]
            shard = self.shard_of[(lane, key)]
            if ok:
                table = self.p.store.read_shards("checklist", [key], ChecklistStage.output_schema)
                for r in table.to_pylist():
                    self.criteria[grader][(r["prompt_id"], r["judge_category"])] = r["criteria"]
            self._grades(grader, shard)

    def _sample_in(self, key: str, ok: bool) -> None:
        """A sample unit is in (written, or failed): its groups go on to every stage that reads them."""
        cfg, p = self.cfg, self.p
        if ok and key not in self.frames:
            out = p.store.read_shards("sample", [key], SampleStage.output_schema)
            self.frames[key] = _with_columns(out, self.context.pop(key))
        groups = self.frames.get(key)
        if groups is not None:
            # The metrics computed are in the key: a metric added (README, "Adding a general metric") is computed
            # for stored groups too, not left null in every shard a rerun reuses.
            self._to("metrics", key, groups, ["metrics", [cfg.embedder.identity(), MetricsStage.version,
                                                          sorted(GENERAL_METRICS)]], T.METRICS_INPUT)
            settled = _settled(groups)
            self.pending += groups.num_rows - settled.num_rows
            # A group whose sampling failed (status error: a regeneration turn after the first failed, say) keeps
            # the responses it has, but counts toward no mean and is sampled again by a rerun where the failure was
            # transient (re-keying its judgments): judged and graded now, it was paid for twice, and for nothing.
            sampled = _sampled(settled)
            self.failed_groups += settled.num_rows - sampled.num_rows
            settled = sampled
            if settled.num_rows:
                rate = cfg.judge.agreement_sample_rate
                drawn = [in_agreement_sample(k, rate) for k in zip(settled["prompt_id"].to_pylist(),
                                                                    settled["model"].to_pylist(),
                                                                    settled["strategy"].to_pylist())]
                settled = settled.append_column("agreement_sample", pa.array(drawn, pa.bool_()))
                self._judges(key, settled)
                self._calibrated_judges(key, settled)
                if self.traces:
                    self._trace_judges(key, settled)
            if cfg.accuracy.enabled and settled.num_rows:
                methods = [accuracy_method(s, c, g) for s, c, g in zip(settled["source"].to_pylist(),
                                                                      settled["judge_category"].to_pylist(),
                                                                      settled["gold_answer"].to_pylist())]
                keyed = ["accuracy", [p.versions["accuracy"], cfg.grader.identity(), ACCURACY_VERSION]]
                # Math checks are keyed by their time limit too: one out of time is unknown, and once its reruns
                # (execution.row_retries) are spent, raising accuracy.math_timeout_s must check it again (free: no
                # model call). The grader's rows keep their key, so a new limit asks no grader again.
                # The math checks' answer extraction has its own version (free to check again: no model call).
                math = {"math_timeout_s": cfg.accuracy.math_timeout_s, "extraction": MATH_EXTRACTION_VERSION}
                for method, parts in (("math-verify", [*keyed, math]), ("grader", keyed)):
                    checkable = settled.filter(pa.array([m == method for m in methods], pa.bool_()))
                    if checkable.num_rows:
                        self._to(f"accuracy[{cfg.grader.name}]", key, checkable, parts, T.ACCURACY_INPUT)
            if cfg.quality.reward_model is not None:
                rm = cfg.quality.reward_model
                self._to("reward", key, groups, ["reward", [rm.identity(), RewardStage.version]], T.REWARD_INPUT)
        shard = self.pshard[key]
        self.open_in_shard[shard] -= 1
        if self.open_in_shard[shard] == 0 and cfg.quality.enabled:
            in_shard = [g for k in sorted(self.frames, key=self.order.__getitem__)
                        if self.pshard[k] == shard and (g := _settled(self.frames[k])).num_rows]
            for grader in cfg.graders:
                lane = f"checklist[{grader.name}]"
                unit = p.checklist_unit(pa.concat_tables(in_shard), grader) if in_shard else None
                if unit is None:
                    continue
                self.shard_of[(lane, unit.key)] = shard
                self.flow.add(lane, unit, shard)

    def _trace_judges(self, key: str, groups: pa.Table) -> None:
        """The groups whose every response has a trace of its own go to the trace judges, traces as responses."""
        traced = [T.trace_status(r, t, s) == "traced" for r, t, s in zip(
            groups["responses"].to_pylist(), T.group_traces(groups), T.shared_traces(groups))]
        if not any(traced):
            return
        subset = groups.filter(pa.array(traced, pa.bool_()))
        subset = subset.set_column(subset.schema.get_field_index("responses"), "responses",
                                   pa.array([t for t, keep in zip(T.group_traces(groups), traced) if keep],
                                            pa.list_(pa.string())))
        identity = [self.p.versions["judge_trace"], JudgeStage.version, self.trace_settings]
        if self.trace_settings.get("both_orders"):
            identity.append(ORDER_SPLIT_RULE)
        for judge in self.cfg.llm_judges:
            self._to(f"judge_trace[{judge.name}]", key, subset, ["judge_trace", [*identity, judge.identity()]],
                     T.JUDGE_INPUT)

    def _calibrated_judges(self, key: str, groups: pa.Table) -> None:
        if not self.answers:
            return
        # The cascade routes the LLM judges' pairs; nothing a calibrated judge computes depends on it, so it keys
        # nothing here (switching it on reuses these shards).
        version, stage_version, settings = self.judge_identity[:3]
        settings = {k: v for k, v in settings.items() if k != "cascade"}
        for name, extra in self.calibrated.items():
            judge = next(j for j in self.cfg.judges if j.name == name)
            self._to(f"judge[{name}]", key, groups, ["judge", [version, stage_version, settings, judge.identity(),
                                                               *extra]], T.JUDGE_INPUT)

    def _judges(self, key: str, groups: pa.Table) -> None:
        """The LLM judges' units of one sample unit's groups."""
        if not self.answers:
            return
        for judge in self.cfg.llm_judges:
            self._to(f"judge[{judge.name}]", key, groups, ["judge", [*self.judge_identity, judge.identity()]],
                     T.JUDGE_INPUT)

    def _grades(self, grader: str, shard: int) -> None:
        """A prompt shard's checklists are in: grade every group of the shard against them."""
        cfg = self.cfg
        model = next(g for g in cfg.graders if g.name == grader)
        criteria = self.criteria[grader]
        for key in sorted((k for k in self.frames if self.pshard[k] == shard), key=self.order.__getitem__):
            groups = _sampled(_settled(self.frames[key]))
            if not groups.num_rows:
                continue
            with_criteria = groups.append_column("criteria", pa.array(
                [criteria.get((pid, c)) for pid, c in zip(groups["prompt_id"].to_pylist(),
                                                          groups["judge_category"].to_pylist())],
                pa.list_(pa.string())))
            self._to(f"grade[{grader}]", key, with_criteria,
                     ["grade", [self.p.versions["grade"], GradeStage.version, model.identity()]], T.GRADE_INPUT)

    def _to(self, lane: str, sample_unit: str, groups: pa.Table, parts: list[Any], schema: pa.Schema) -> None:
        """Give `lane` the unit of one sample unit's groups (keyed by their content and `parts`)."""
        unit = Unit.of(parts, groups.select(schema.names).cast(schema))
        self.by_key[(lane, unit.key)].append(sample_unit)
        self.flow.add(lane, unit, self.order[sample_unit])

    # -- closing the lanes ----------------------------------------------------------------------------------------

    def _lane_done(self, name: str) -> None:
        lanes = self.flow.lanes
        if name in self.sample_lanes and all(lanes[s].finished() for s in self.sample_lanes):
            self._upstream_done()
        elif name.startswith("checklist["):
            self.flow.close_input("grade[" + name[len("checklist["):])
        # Stop the hosts of models that no unfinished lane uses (their memory and GPUs go to the others).
        if not self.p.keep_executor:
            self.p.executor.release({self.hosts[n] for n, lane in lanes.items() if not lane.finished()})

    def _upstream_done(self) -> None:
        """Every sample unit is in: the lanes fed by them alone get no more units."""
        for name in self.flow.lanes:
            kind = name.split("[", 1)[0]
            if kind in ("metrics", "judge", "accuracy", "reward", "checklist", "judge_trace"):
                self.flow.close_input(name)

    # -- the tables -----------------------------------------------------------------------------------------------

    def frame(self) -> pa.Table:
        """The driver's frame of groups: every completed sample unit's groups, in the units' order."""
        if self.external is not None:
            return self.external
        keys = sorted(self.frames, key=self.order.__getitem__)
        if not keys:
            schema = SampleStage.output_schema
            for f in T.GROUP_CONTEXT:
                schema = schema.append(f) if f.name not in schema.names else schema
            return schema.empty_table()
        return pa.concat_tables([self.frames[k] for k in keys], promote_options="default")

    def output(self, kind: str) -> pa.Table:
        """The rows of every lane of one stage (e.g. every judge's), lane after lane."""
        runs = [lane.run for name, lane in self.flow.lanes.items() if name.split("[", 1)[0] == kind]
        return pa.concat_tables([run.output() for run in runs])

    def judged(self) -> pa.Table:
        return self.output("judge") if self.answers else JudgeStage.output_schema.empty_table()

    def quality(self) -> tuple[pa.Table, pa.Table]:
        return self.output("checklist"), self.output("grade")


def _judge_settings(cfg: RunConfig) -> dict[str, Any]:
    """The judge settings that key judging: all but the target (each target's stage keys its own) and the agreement
    sample's rate (each group's draw is in its row, JUDGE_INPUT, so a new rate re-judges only the groups it moves)."""
    return {k: v for k, v in asdict(cfg.judge).items() if k not in ("target", "agreement_sample_rate")}


def _without(groups: pa.Table, column: str, value: str) -> pa.Table:
    """The groups whose `column` is not `value` (a null is not it)."""
    drop = pc.fill_null(pc.equal(groups[column], value), False)
    return groups.filter(pc.invert(drop)) if pc.any(drop).as_py() else groups


def _sampled(groups: pa.Table) -> pa.Table:
    """The groups whose sampling did not fail (status error: see _Flow's judging)."""
    return _without(groups, "status", "error")


def _settled(groups: pa.Table) -> pa.Table:
    """The groups whose category is known. Those of a prompt whose reference classification is pending are not
    judged, graded or checked for accuracy in this run (each of those reads the category, and a rerun that
    classifies the prompt would pay for them again); their metrics and rewards need no category."""
    return _without(groups, "category_source", PENDING)


# Columns of the driver's frame of groups only (never written): the sample unit and the prompt shard of a group.
UNIT = "_unit"
PSHARD = "_pshard"


def load_run_prompts(cfg: RunConfig, report: PresetReport, *, offline: bool | None = None,
                     skip_missing: bool = False, empty_ok: bool = False
                     ) -> tuple[list[Prompt], list[ExternalGroup] | None]:
    """The run's prompts, and its groups of responses when they come from elsewhere (else None).

    Args:
        offline: whether named sources may be fetched (default: the config's models.offline).
        skip_missing: draw the paper's mix from the sources there are even when the config says to fail (plan).
        empty_ok: no prompts is an answer, not an error (plan, before anything is fetched).

    Raises:
        TaskdivError: no prompts at all (every row skipped, or none selected), unless empty_ok.
    """
    groups = None
    if cfg.prompts.source == "responses":
        prompts, groups = load_responses(_require_path(cfg), on_error=cfg.prompts.on_error, report=report,
                                         fmt=cfg.prompts.format)
        # The size caps first, as for every source: per_category and limit choose among the prompts the run takes.
        prompts, groups = _within_size_caps(cfg, prompts, groups, report)
        prompts = select(prompts, per_category=cfg.prompts.per_category, limit=cfg.prompts.limit)
        kept = {p.prompt_id for p in prompts}
        groups = [g for g in groups if g.prompt_id in kept]
    else:
        offline = cfg.models.resolved_offline() if offline is None else offline
        prompts = load_prompts(cfg.prompts, report=report, offline=offline, skip_missing=skip_missing)
    if not prompts and not empty_ok:
        where = f" {cfg.prompts.path}" if cfg.prompts.path else ""
        raise TaskdivError(f"no prompts to run (source {cfg.prompts.source!r}{where}: empty, all rows skipped or none "
                           "selected)")
    return prompts, groups


def refuse_groups_of_one(cfg: RunConfig, groups: list[ExternalGroup] | None) -> None:
    """An audit of a responses file whose every group has one response is refused: nothing to compare — every group
    was left out as short after its prompts were classified (paid), and the report gave the file a group size it
    never had. (Rewards score such groups as None: their batches are not audits.)"""
    if groups and all(len(g.responses) < 2 for g in groups):
        raise TaskdivError(f"prompts.path {cfg.prompts.path}: every group ({len(groups)}) has one response; "
                           "diversity is measured over several responses to one prompt — lm-eval: rerun with "
                           "`repeats` above 1 in the task; Inspect: --epochs or num_choices above 1; a file of ours: "
                           "each prompt's responses, by model and strategy")


def _priced(model: Any) -> bool:
    """Whether a model's calls may cost money: an HTTP model with prices (the others are free, or refused under a
    cap for their unknown cost)."""
    return getattr(model, "backend", None) == "http" and bool((getattr(model, "options", None) or {}).get("prices"))


def refuse_unclassifiable(cfg: RunConfig, prompts: list[Prompt]) -> None:
    """Prompts without a gold category need a model to classify them: with every judge calibrated and no
    `classifier`, none can. Refused as the prompts are read — found at the reference classification, it came after
    the running config was written and the endpoints were probed (paid), and `plan` had priced the run."""
    if not cfg.voters and (missing := sum(p.gold_category is None for p in prompts)):
        raise ConfigError(f"judges: {missing} prompts have no gold category and every judge is calibrated (it cannot "
                          "classify prompts): add an LLM judge or a `classifier`, or give the prompts gold "
                          "categories")


def _within_size_caps(cfg: RunConfig, prompts: list[Prompt], groups: list[ExternalGroup] | None,
                      report: PresetReport) -> tuple[list[Prompt], list[ExternalGroup] | None]:
    """Prompts over prompts.max_prompt_chars (with their groups), and groups with a response over
    prompts.max_response_chars (that group only: another model's group of the same prompt stays), are bad rows: an
    error under on_error: fail, skipped and each listed under skip. A prompt left with no group goes too."""
    from engine.errors import InputError

    pc_ = cfg.prompts
    # Prompts of a source are capped as they load (engine.inputs.sources); a responses file's prompts come with their
    # groups, and are capped here with them (before limit and per_category choose, in load_run_prompts).
    bad = over_prompt_cap(prompts, pc_.max_prompt_chars, pc_.path or pc_.source)
    bad_groups: dict[tuple[str, str, str], InputError] = {}
    if pc_.max_response_chars and groups is not None:
        for g in groups:
            longest = max((len(text) for _, text in g.responses), default=0)
            if longest > pc_.max_response_chars and g.prompt_id not in bad:
                bad_groups[(g.prompt_id, g.model, g.strategy)] = InputError(
                    pc_.path or "responses", None, "responses",
                    f"a response to prompt {g.prompt_id} ({g.model}, {g.strategy}) has {longest} characters, over "
                    f"prompts.max_response_chars ({pc_.max_response_chars})"
                    + ("; that group is left out" if pc_.on_error == "skip" else ""))
    if not bad and not bad_groups:
        return prompts, groups
    if pc_.on_error == "fail":
        raise next(iter([*bad.values(), *bad_groups.values()]))
    for error in [*bad.values(), *bad_groups.values()]:
        report.add(error)
    if groups is not None:
        groups = [g for g in groups if g.prompt_id not in bad and (g.prompt_id, g.model, g.strategy) not in bad_groups]
        answered = {g.prompt_id for g in groups}
        return [p for p in prompts if p.prompt_id in answered], groups
    return [p for p in prompts if p.prompt_id not in bad], groups


def check_cost(cfg: RunConfig, prompts: list[Prompt], groups: list[ExternalGroup] | None) -> Plan:
    """Refuse to start (ConfigError, with the plan) when the plan's upper bound exceeds execution.max_cost_usd."""
    plan = make_plan(cfg, prompts, groups)
    stored = finished_groups(cfg.run_dir) if groups is None else None
    if stored is not None:  # what this invocation will not pay for again (the cap holds each invocation's spending)
        plan = less_stored(plan, cfg, prompts, *stored)
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


# The cascade's settings as shard keys hold them while it is off (the defaults: a config that never changed them
# keeps its keys), so that a band or rate edited while it is off does not send every judged pair again.
OFF_CASCADE = asdict(CascadeConfig())
RUNNING_CONFIG = "config.running.yaml"  # the config of a run in progress (or stopped part-way)
# What engine.report.write_report writes from a run's tables (and figures/*.png): removed with the tables they read.
REPORT_FILES = ("report.json", "report.md", "report.html", "explore.html")
# The run's tables that only some settings write (quality, accuracy, a reward model, judge.target trace|both).
OPTIONAL_TABLES = frozenset({"checklists", "quality", "accuracy", "rewards", "trace_judgments", "trace_components"})
ANCHORED_STRATEGIES = ("system_anchored", "regen_anchored")  # the strategies whose wording names the category


def _reference_categories(reference: pa.Table) -> dict[str, str | None]:
    """Prompt → its reference category (None: uncategorised; PENDING: a classifier's answer is missing)."""
    return {r["prompt_id"]: PENDING if (r["raw"] or "").startswith(PENDING_PREFIX) else r["category"]
            for r in reference.to_pylist() if r["role"] == "reference"}


def _judging_category(prompt: dict[str, Any], reference: dict[str, str | None]) -> dict[str, Any]:
    """The category a group is judged under (gold, else the reference classification) and where it came from:
    "gold", "reference", None (uncategorised: the generic criterion) or PENDING (not judged in this run)."""
    if prompt["gold_category"]:
        return {"judge_category": prompt["gold_category"], "category_source": "gold"}
    category = reference.get(prompt["prompt_id"])
    if category == PENDING:
        return {"judge_category": None, "category_source": PENDING}
    return {"judge_category": category, "category_source": "reference" if category else None}


def _require_path(cfg: RunConfig) -> str:
    if not cfg.prompts.path:
        raise ConfigError("prompts.path: the responses source needs the file of responses")
    return cfg.prompts.path


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
