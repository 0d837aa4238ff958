"""Stages stream into each other: judging starts while sampling goes on, the tables equal a stage-after-stage run's,
and every stage's output keeps its units' order whatever order they finished in.

The generator and the judge are different models (so different hosts: threads of this process under the local
executor, actors under Ray); the backend double sleeps per call and logs "<kind>" per request, so the interleaving
of sampling and judging is observed in the order of real calls.
"""

import time
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pytest

from engine.config import config_from_dict
from engine.execution.dataflow import Dataflow, StageRun, Unit
from engine.execution.executor import LocalExecutor, RayExecutor, StagePlan
from engine.execution.pipeline import Pipeline
from engine.execution.store import Store
from actors.base import BackendError
from engine.stages.base import IDX, Stage

TABLES = ["samples", "responses", "judgments", "components", "metrics", "checklists", "quality", "accuracy", "groups"]


def _model(name, log, delay_s):
    return {"name": name, "backend": "python:tests.support.doubles:ScriptedChat", "model": name, "batch_size": 1,
            "options": {"call_log": str(log), "delay_s": delay_s}}


def config(run_dir, log, executor, stream):
    # Under Ray the judge's actor takes seconds to start: sampling is made to last longer than that.
    delay_s = 0.05 if executor == "local" else 0.6
    return config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "builtin", "limit": 4}, "n": 3,
        "strategies": ["temperature", "system_general"],
        "generators": [_model("gen", log, delay_s)],
        "judges": [_model("jud", log, 0.0)],
        "execution": {"executor": executor, "shard_size": 1, "stream": stream},
    })


def run(tmp_path, name, executor, stream):
    log = tmp_path / f"{name}.log"
    cfg = config(tmp_path / name, log, executor, stream)
    pipeline = Pipeline(cfg, executor=LocalExecutor() if executor == "local" else RayExecutor(), progress=False)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    return result, Path(log).read_text().split()


def interleaved(calls):
    """Whether some judge call came before the last sample call."""
    last_sample = max(i for i, kind in enumerate(calls) if kind == "sample")
    return any(kind == "judge" for kind in calls[:last_sample])


# Under Ray each run starts three actors (two runs: ~65 s on 2 cores): with the slow tests. The default run covers
# the Ray executor's batches in flight through tests/test_integration.py and test_hosts.py.
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_judging_starts_while_sampling_goes_on_and_the_tables_are_the_same(tmp_path, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_session")
    streamed, stream_calls = run(tmp_path, "stream", executor, stream=True)
    staged, staged_calls = run(tmp_path, "staged", executor, stream=False)
    assert interleaved(stream_calls), "no judge call before sampling had finished"
    assert not interleaved(staged_calls), "stage after stage, yet judging started before sampling ended"
    for name in TABLES:
        assert streamed.tables[name].equals(staged.tables[name]), f"{name} differs between streaming and stages"
    # The same work, call for call.
    assert sorted(stream_calls) == sorted(staged_calls)
    labels = [r.stage for r in streamed.stages]
    assert labels == [r.stage for r in staged.stages]
    assert labels.index("sample[gen]") < labels.index("judge[jud]")


class Double(Stage):
    """Doubles `x`; a batch holding a negative `x` fails whole, as a batch whose backend gave up does (ERROR)."""

    name = "double"
    required_inputs = {"x": "a number"}
    output_schema = pa.schema([("x", pa.int64()), ("y", pa.int64())])

    def process(self, rows):
        if any(r["x"] < 0 for r in rows):
            raise BackendError("negative")
        for k, r in enumerate(rows):
            yield {IDX: k, "x": r["x"], "y": 2 * r["x"]}


def _units(values_per_unit, tag):
    return [Unit.of([tag], pa.table({"x": pa.array(v, pa.int64())})) for v in values_per_unit]


def test_a_chain_of_lanes_feeds_units_on_keeps_order_and_reports_failures(tmp_path):
    store = Store(tmp_path)
    plan = StagePlan(Double, {}, batch_size=2, label="double", host="h")  # one batch per unit of the first lane
    first = StageRun(store, "first", "first", plan, Double.output_schema, 0, progress=False)
    second = StageRun(store, "second", "second", StagePlan(Double, {}, batch_size=2, label="d2", host="h2"),
                      Double.output_schema, 0, progress=False)
    heard = []
    units = _units([[1, 2], [3, 4], [-1, 5], [6, 7]], "a")

    def listener(lane, key, ok):
        heard.append((lane, key, ok))
        if lane == "first":
            if ok:
                out = store.read_shards("first", [key], Double.output_schema)
                flow.add("second", Unit.of(["b"], pa.table({"x": out["y"]})), order=keys.index(key))
            if sum(1 for h in heard if h[0] == "first") == len(units):
                flow.close_input("second")

    executor = LocalExecutor()
    flow = Dataflow(executor, listener)
    flow.lane("first", first, 0)
    flow.lane("second", second, 1)
    keys = [u.key for u in units]
    for k, u in enumerate(units):
        flow.add("first", u, k)
    flow.close_input("first")
    try:
        flow.run()
    finally:
        executor.close()
    assert [h[2] for h in heard if h[0] == "first"].count(False) == 1
    assert first.close().failed == {units[2].key: "BackendError: negative"}
    assert first.output()["y"].to_pylist() == [2, 4, 6, 8, 12, 14]  # the failed unit left out, order kept
    assert second.output()["y"].to_pylist() == [4, 8, 12, 16, 24, 28]

    # A rerun takes every written unit from the store and computes only the failed one again.
    again = StageRun(store, "first", "first", plan, Double.output_schema, 0, progress=False)
    assert [again.add(u) is None for u in units] == [True, True, False, True]
    assert again.record.units_reused == 3


def test_a_lane_left_open_is_an_error_not_a_hang(tmp_path):
    store = Store(tmp_path)
    run = StageRun(store, "first", "first", StagePlan(Double, {}, batch_size=8, label="d", host="h"),
                   Double.output_schema, 0, progress=False)
    executor = LocalExecutor()
    flow = Dataflow(executor, lambda *a: None)
    flow.lane("first", run, 0)  # never closed: nothing will ever come
    try:
        with pytest.raises(RuntimeError, match="stalled"):
            flow.run()
    finally:
        executor.close()


def test_batches_are_cut_in_arrival_order_across_units_and_only_the_head_is_joined():
    # _cut joined (and copied) the lane's whole backlog to cut every batch: quadratic while units kept arriving behind
    # a slow judge. It joins the tables that fill one batch; rows, order and counts are as before.
    from collections import deque
    from types import SimpleNamespace

    from engine.execution.dataflow import Lane

    sizes = [3, 1, 7, 2, 5]
    tables = [pa.table({"v": list(range(sum(sizes[:k]), sum(sizes[:k + 1])))}) for k in range(len(sizes))]
    lane = SimpleNamespace(waiting=deque(tables), waiting_rows=sum(sizes), plan=SimpleNamespace(batch_size=4))
    assert isinstance(Lane.__dataclass_fields__["waiting"].default_factory(), deque)
    batches = []
    while lane.waiting_rows:
        batches.append(Dataflow._cut(lane)["v"].to_pylist())
        assert lane.waiting_rows == sum(t.num_rows for t in lane.waiting)
        # The backlog behind the batch is the tables that arrived, not one table joined from all of them.
        assert len(lane.waiting) <= len(tables)
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [16, 17]]


def run_one_lane(executor, run, units, listener=None, **options):
    """Run one lane of `units` to its end (stage after stage; `listener` hears each unit, `options` go to the
    Dataflow), then close the executor. Returns the Dataflow."""
    flow = Dataflow(executor, listener or (lambda lane, key, ok: None), stream=False, **options)
    flow.lane("lane", run, 0)
    for k, u in enumerate(units):
        flow.add("lane", u, k)
    flow.close_input("lane")
    try:
        flow.run()
    finally:
        executor.close()
    return flow


class PricedDouble(Double):
    """Double, each batch reported as costing $1 (as an HTTP backend with prices reports its tokens priced), and
    taking a moment, as a request does (a batch done at once frees its host before the driver has read its cost)."""

    def process(self, rows):
        time.sleep(0.2)
        yield from super().process(rows)

    def batch_telemetry(self):
        return {"cost_usd": 1.0}


def test_no_batch_is_sent_once_the_reported_cost_reaches_max_cost_usd_and_a_rerun_finishes(tmp_path):
    # The cap was checked once, against the plan's estimate (4 characters a token; a denser tokenizer, re-sent
    # requests): nothing stopped a run spending past it. Batches are refused unsent once it is reached; their units
    # are failed shards, and a rerun (with a higher cap) computes only those.
    store = Store(tmp_path)
    plan = StagePlan(PricedDouble, {}, batch_size=2, label="priced", host="h", priced=True)
    units = _units([[1, 2], [3, 4], [5, 6], [7, 8]], "p")

    def flow_over(cap, plan=plan, store=store):
        run = StageRun(store, "priced", "priced", plan, Double.output_schema, 0, progress=False)
        heard = []
        flow = run_one_lane(LocalExecutor(), run, units, lambda lane, key, ok: heard.append(ok), spend_cap=cap)
        return run, heard, flow

    run, heard, flow = flow_over(1.5)
    record = run.close()
    # $1 spent, a second batch sent; then nothing. (A batch sent while the last one's cost is on its way may add one:
    # the cap stops what is sent after the cost it has read, batches in flight finish.)
    sent = int(flow.spent())
    assert 2 <= sent <= 3 and heard.count(True) == sent and heard.count(False) == 4 - sent
    assert all("execution.max_cost_usd ($1.50) reached" in why for why in record.failed.values())
    # A cap of 0 (free models only) refuses nothing that costs nothing.
    free, heard_free, _ = flow_over(0.0, StagePlan(Double, {}, batch_size=2, label="free", host="f"),
                                    Store(tmp_path / "free"))
    assert heard_free.count(True) == 4 and not free.close().failed
    again, heard, flow = flow_over(None)
    assert again.record.units_reused == sent and heard.count(True) == 4 and flow.spent() == 4 - sent
    assert again.output()["y"].to_pylist() == [2, 4, 6, 8, 10, 12, 14, 16]


class WideExecutor(LocalExecutor):
    """Up to `width` batches of one host in flight at once, as the Ray executor allows (num_actors ×
    BATCHES_PER_ACTOR); its capacity frees a slot the moment a batch ends, before the driver has read its cost."""

    def __init__(self, width):
        super().__init__()
        from concurrent.futures import ThreadPoolExecutor

        self.width, self.pool, self.busy, self.sent = width, ThreadPoolExecutor(width), [], 0

    def submit(self, plan, batch):
        future = self.pool.submit(plan.stage(**plan.kwargs), batch)
        self.busy.append(future)
        self.sent += 1
        return future

    def capacity(self, plan):
        self.busy = [f for f in self.busy if not f.done()]
        return self.width - len(self.busy)

    def close(self):
        self.pool.shutdown()
        super().close()


@pytest.mark.parametrize("width, cap, most", [(8, 1.5, 2), (2, 3.5, 4)])
def test_the_cost_cap_is_passed_by_one_batch_at_most(tmp_path, width, cap, most):
    # Eight batches may be in flight: every slot that freed used to be filled again before the driver had read the
    # cost of the batch that freed it ($13-16 spent under a $1.50 cap), and the first wave went out whole before any
    # cost was known ($8). One batch goes until a cost is known ($1), then one more ($2 passes the cap), then none.
    # Two in flight under $3.50: $1, then two at once ($3), then one at a time ($4 passes it), then nothing.
    run = StageRun(Store(tmp_path), "priced", "priced", StagePlan(PricedDouble, {}, batch_size=2, label="priced",
                                                                  host="h", priced=True), Double.output_schema, 0,
                   progress=False)
    executor = WideExecutor(width)
    flow = run_one_lane(executor, run, _units([[2 * k, 2 * k + 1] for k in range(20)], "p"), spend_cap=cap)
    assert flow.spent() == executor.sent == most
    assert len(run.close().failed) == 20 - most


def test_a_cap_over_replies_without_usage_is_said_to_hold_on_what_was_reported(tmp_path, caplog):
    class Unpriced(PricedDouble):
        def batch_telemetry(self):
            return {"cost_usd": 1.0, "usage_missing": 1}

    run = StageRun(Store(tmp_path), "u", "u", StagePlan(Unpriced, {}, batch_size=2, label="u", host="h"),
                   Double.output_schema, 0, progress=False)
    run_one_lane(LocalExecutor(), run, _units([[1, 2], [3, 4], [5, 6]], "u"), spend_cap=10.0)
    assert not run.close().failed
    warnings = [r.getMessage() for r in caplog.records if "max_cost_usd" in r.getMessage()]
    assert len(warnings) == 1 and "priced replies carried none" in warnings[0], warnings


def test_lanes_whose_cost_is_not_yet_known_send_one_batch_at_a_time_under_a_cap(tmp_path):
    # Counted as free until a batch came back, two judges' lanes each sent their first batches together: $0.33 spent
    # under a $0.05 cap in a loopback run. Under a cap, one batch of a cost not yet known is in flight at a time.
    executor = WideExecutor(8)
    flow = Dataflow(executor, lambda lane, key, ok: None, spend_cap=1.5)
    runs = []
    for name in ("j1", "j2"):
        plan = StagePlan(PricedDouble, {}, batch_size=2, label=name, host=name, priced=True)
        runs.append(StageRun(Store(tmp_path), name, name, plan, Double.output_schema, 0, progress=False))
        flow.lane(name, runs[-1], 0)
    for k, u in enumerate(_units([[2 * k, 2 * k + 1] for k in range(6)], "p")):
        for name in ("j1", "j2"):
            flow.add(name, u, k)
    for name in ("j1", "j2"):
        flow.close_input(name)
    try:
        flow.run()
    finally:
        executor.close()
    assert flow.spent() == executor.sent == 2  # the first lane's batch ($1), then the other's ($2: past the cap)
    assert sum(len(r.close().failed) for r in runs) == 10


class SlowFree(Double):
    """Double taking a moment a batch, costing nothing (a local or vLLM model)."""

    def process(self, rows):
        time.sleep(0.3)
        yield from super().process(rows)


def test_free_lanes_are_not_held_one_at_a_time_under_a_cap(tmp_path):
    # Under any cap, every lane's first batch waited for the others' (a vLLM generator's load waiting for another's,
    # its GPU idle): only a priced lane's cost is unknown before a batch comes back.
    class Counting(WideExecutor):
        most = 0

        def submit(self, plan, batch):
            future = super().submit(plan, batch)
            self.most = max(self.most, len([f for f in self.busy if not f.done()]))
            return future

    executor = Counting(8)
    flow = Dataflow(executor, lambda lane, key, ok: None, spend_cap=0.0)
    for name in ("g1", "g2", "g3"):
        run = StageRun(Store(tmp_path), name, name, StagePlan(SlowFree, {}, batch_size=2, label=name, host=name),
                       Double.output_schema, 0, progress=False)
        flow.lane(name, run, 0)
        flow.add(name, _units([[1, 2]], name)[0], 0)
        flow.close_input(name)
    try:
        flow.run()
    finally:
        executor.close()
    assert executor.most == 3 and flow.spent() == 0


def _three_units_through(executor, lanes: list[tuple[str, StageRun, int]], stream: bool = False) -> list:
    """Three units of two rows through each lane (name, run, depth), the executor closed after; (lane, ok) per
    unit, as the flow told them."""
    heard = []
    flow = Dataflow(executor, lambda lane, key, ok: heard.append((lane, ok)), stream=stream)
    for name, run, depth in lanes:
        flow.lane(name, run, depth)
    for k, u in enumerate(_units([[1, 2], [3, 4], [5, 6]], "u")):
        for name, _, _ in lanes:
            flow.add(name, u, k)
    for name, _, _ in lanes:
        flow.close_input(name)
    try:
        flow.run()
    finally:
        executor.close()
    return heard


class Unbuildable(Double):
    """A stage whose model cannot be built in its host (weights missing on that node): its constructor raises."""

    builds = 0

    def __init__(self):
        type(self).builds += 1
        time.sleep(0.2)  # loading, then failing: the host is busy meanwhile (the local executor sends it no more)
        raise BackendError("weights not found on this worker")


def test_a_stage_its_host_cannot_build_fails_its_units_and_the_other_lanes_finish(tmp_path, caplog):
    # The exception raised out of Dataflow.run (a traceback from the command line), and every batch in flight on
    # the healthy lanes was thrown away.
    store = Store(tmp_path)
    broken = StageRun(store, "broken", "broken", StagePlan(Unbuildable, {}, batch_size=2, label="broken", host="b"),
                      Double.output_schema, 0, progress=False)
    healthy = StageRun(store, "healthy", "healthy", StagePlan(Double, {}, batch_size=2, label="healthy", host="h"),
                       Double.output_schema, 0, progress=False)
    heard = _three_units_through(LocalExecutor(), [("broken", broken, 0), ("healthy", healthy, 0)], stream=True)
    assert heard.count(("healthy", True)) == 3 and heard.count(("broken", False)) == 3
    assert healthy.output()["y"].to_pylist() == [2, 4, 6, 8, 10, 12]
    reasons = list(broken.close().failed.values())
    assert Unbuildable.builds == 1  # the first batch's failure: the others were not sent to fail alike
    assert "the batch failed in its host: BackendError: weights not found on this worker" in reasons[0]
    assert all("not sent: an earlier batch of this stage failed in its host" in r for r in reasons[1:]), reasons


class FailsSome(LocalExecutor):
    """The local executor, but the batches holding a value of `raising` fail as their host would make them fail
    (`raising[x]`: the exception), without running."""

    def __init__(self, raising):
        super().__init__()
        self.raising, self.sent = raising, []

    def submit(self, plan, batch):
        self.sent.append(batch["x"].to_pylist())
        exc = next((self.raising[x] for x in batch["x"].to_pylist() if x in self.raising), None)
        if exc is None:
            return super().submit(plan, batch)
        future = Future()
        future.set_exception(exc)
        return future


def bare_pipeline(tmp_path, executor):
    """A Pipeline with only what _run_stage reads."""
    from engine.execution.pipeline import Pipeline
    from tests.support.runs import make_config

    pipeline = Pipeline.__new__(Pipeline)
    pipeline.store, pipeline.config, pipeline.progress = Store(tmp_path), make_config(tmp_path), False
    pipeline._clock_zero, pipeline.records, pipeline._to_retry, pipeline._executor = time.monotonic(), [], {}, \
        executor
    return pipeline


def test_a_classification_batch_that_fails_in_its_host_fails_its_units_and_the_stage_goes_no_further(tmp_path):
    # The classification phases run before the streaming stages (Pipeline._run_stage): a host failure there raised
    # out of the run too; then every row not back was failed, batches in flight included (test_executor_failures).
    executor = FailsSome({3: RuntimeError("the actor died past its restarts")})
    pipeline = bare_pipeline(tmp_path, executor)
    units = _units([[1, 2], [3, 4], [5, 6]], "c")
    try:
        out = pipeline._run_stage("classify[x]", "classify", StagePlan(Double, {}, batch_size=2, label="classify[x]"),
                                  units, Double.output_schema)
    finally:
        executor.close()
    assert out["y"].to_pylist() == [2, 4]
    (record,) = pipeline.records
    assert set(record.failed) == {units[1].key, units[2].key}
    assert "the batch failed in its host: RuntimeError: the actor died" in record.failed[units[1].key]
    # The stage could not run there: its last batch would have failed alike, and was not sent.
    assert executor.sent == [[1, 2], [3, 4]]
    assert "not sent: an earlier batch of this stage failed in its host" in record.failed[units[2].key]


def test_the_classification_stages_are_held_under_the_cost_cap_with_what_was_spent_before(tmp_path):
    # The classification phases ran without the cap: reference classification by API judges over prompts without a
    # gold category spent 5 times it (a loopback run) before sampling, the first stage under it, was refused.
    import dataclasses

    pipeline = bare_pipeline(tmp_path, LocalExecutor())
    config = pipeline.config
    pipeline.config = dataclasses.replace(config, execution=dataclasses.replace(config.execution, max_cost_usd=2.5))
    plan = StagePlan(PricedDouble, {}, batch_size=2, label="classify[j1]", host="h", priced=True)
    try:
        pipeline._run_stage("classify[j1]", "classify", plan, _units([[1, 2], [3, 4], [5, 6], [7, 8]], "a"),
                            Double.output_schema)
        pipeline._run_stage("classify[j2]", "classify", dataclasses.replace(plan, label="classify[j2]"),
                            _units([[9, 10], [11, 12]], "b"), Double.output_schema)
    finally:
        pipeline.executor.close()
    first, second = pipeline.records
    assert first.backend["cost_usd"] == 3.0 and len(first.failed) == 1  # $1, $2, then $3 passes $2.50
    assert "execution.max_cost_usd ($2.50) reached" in next(iter(first.failed.values()))
    assert len(second.failed) == 2  # what the first spent counts: nothing more is sent


def test_a_batch_that_killed_its_host_fails_alone_and_two_in_a_row_stop_the_stage(tmp_path):
    # A batch under which its host died again and again (HostCrashed: an oversized batch, the OOM killer) fails its
    # units only: the stage's other batches run. Two such batches in a row say the model, not a batch: the rest of
    # the stage is failed unsent instead of loading the model again for each batch.
    from engine.execution.executor import HostCrashed

    crashed = HostCrashed("stage x: its host died 2 times running this batch")
    executor = FailsSome({-1: crashed, -2: crashed, -3: crashed})
    run = StageRun(Store(tmp_path), "x", "x", StagePlan(Double, {}, batch_size=1, label="x", host="h"),
                   Double.output_schema, 0, progress=False)
    units = _units([[-1], [1], [-2], [-3], [4], [5]], "k")
    run_one_lane(executor, run, units)
    failed = run.close().failed
    assert executor.sent == [[-1], [1], [-2], [-3]]
    assert set(failed) == {units[k].key for k in (0, 2, 3, 4, 5)}
    assert all("HostCrashed: stage x: its host died 2 times" in failed[units[k].key] for k in (0, 2, 3)), failed
    assert all("not sent: an earlier batch of this stage failed in its host (HostCrashed" in failed[units[k].key]
               for k in (4, 5)), failed
    assert run.output()["y"].to_pylist() == [2]


def test_hosts_that_cannot_start_mid_run_fail_their_lane_and_the_other_lanes_finish(tmp_path, caplog):
    # A model's hosts started again mid-run (its node lost) on a cluster that no longer holds them: the executor's
    # ConfigError raised out of Dataflow.run, every lane abandoned and the command line saying "a config mistake".
    from engine.errors import ConfigError

    class NoRoom(LocalExecutor):
        def submit(self, plan, batch):
            if plan.host_key() == "gpu":
                raise ConfigError(f"stage {plan.label}: one actor needs 1 GPUs, the Ray cluster has 0")
            return super().submit(plan, batch)

    store = Store(tmp_path)
    gpu = StageRun(store, "judge[j]", "j", StagePlan(Double, {}, batch_size=2, label="judge[j]", host="gpu"),
                   Double.output_schema, 0, progress=False)
    cpu = StageRun(store, "metrics", "m", StagePlan(Double, {}, batch_size=2, label="metrics", host="cpu"),
                   Double.output_schema, 0, progress=False)
    heard = _three_units_through(NoRoom(), [("judge[j]", gpu, 1), ("metrics", cpu, 0)])
    assert heard.count(("metrics", True)) == 3 and heard.count(("judge[j]", False)) == 3
    assert cpu.output()["y"].to_pylist() == [2, 4, 6, 8, 10, 12]
    reasons = list(gpu.close().failed.values())
    assert len(reasons) == 3
    assert "not sent: its hosts could not start: ConfigError: stage judge[j]: one actor needs 1 GPUs" in reasons[0]
    assert all("not sent: an earlier batch of this stage failed in its host (ConfigError" in r for r in reasons[1:])
    assert "judge[j]: its hosts could not start" in caplog.text
