"""The Ray executor when hosts fail or cannot run: every failure ends as failed shards, counted, never a hang or a
crash, and no batch that was computed is computed again.

The stages here log each row they compute (and each crash) to a file from whichever process runs them, so what ran,
and how often, is observed rather than assumed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import ray

from engine.execution import executor as executor_module
from engine.execution.dataflow import StageRun
from engine.execution.executor import BATCHES_PER_ACTOR, RayExecutor, StagePlan
from engine.execution.store import Store
from engine.stages.base import IDX, Stage, StageContractError
from tests.engine.execution.test_dataflow import _units, bare_pipeline, run_one_lane

REPO = Path(__file__).resolve().parents[3]


class Logged(Stage):
    """Doubles `x`, taking `delay_s` a batch; appends "run <x>" for each row it computes to the file `log`."""

    name = "logged"
    required_inputs = {"x": "a number"}
    output_schema = pa.schema([("x", pa.int64()), ("y", pa.int64())])

    def __init__(self, log, delay_s=0.0, marker=""):
        self.log, self.delay_s, self.marker = log, delay_s, marker

    def note(self, rows, what):
        with open(self.log, "a") as f:
            f.write("".join(f"{what} {r['x']}\n" for r in rows))

    def process(self, rows):
        time.sleep(self.delay_s)
        self.note(rows, "run")
        for k, r in enumerate(rows):
            yield {IDX: k, "x": r["x"], "y": 2 * r["x"]}


class Crashy(Logged):
    """Its process dies, as under a segfault or the OOM killer, on a batch holding a negative `x` — each time, or,
    with a `marker` file named, only while that file does not exist (it writes it before dying)."""

    def process(self, rows):
        if any(r["x"] < 0 for r in rows) and not (self.marker and os.path.exists(self.marker)):
            self.note(rows, "crash")
            if self.marker:
                open(self.marker, "w").close()
            os._exit(1)
        yield from super().process(rows)


class Broken(Logged):
    """Raises out of its host on a negative `x` (a bug, not a BackendError: no row of the batch comes back)."""

    def process(self, rows):
        if any(r["x"] < 0 for r in rows):
            raise StageContractError("broken batch")
        yield from super().process(rows)


def lines(path):
    return Path(path).read_text().split("\n")[:-1] if Path(path).exists() else []


def in_thread(fn, timeout_s):
    """Run fn() on a thread of its own for at most timeout_s: (whether it ended, {"value" or "error": …})."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # reported by the caller
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive(), out


def one_lane(executor, run, units, timeout_s):
    """run_one_lane on a thread: whether it ended in time. If not, the executor is closed (its hosts killed), so
    that the lane, on old code that waits for ever, ends and the test can fail."""
    ended, out = in_thread(lambda: run_one_lane(executor, run, units), timeout_s)
    if not ended:
        executor.close()
    assert "error" not in out, out.get("error")
    return ended


def test_an_embedded_ray_never_joins_the_cluster_an_address_file_names(tmp_path):
    # ray.init() without an address read $RAY_TMPDIR/ray/ray_current_cluster (left by anyone's `ray start`, or a
    # cluster that crashed) and tried to join it; with num_cpus given it refused, and the engine said
    # "execution.object_store_memory … lower it". A ValueError that is not about memory is Ray's own, not that hint.
    code = (
        "import ray\n"
        "from engine.execution.executor import RayExecutor\n"
        "for address in ('local', None):\n"
        "    try:\n"
        "        e = RayExecutor(address=address, num_cpus=2)\n"
        "        print('STARTED', address, e._owns_ray, e._ray.get_runtime_context().gcs_address)\n"
        "        e.close()\n"
        "    except Exception as exc:\n"
        "        print('FAILED', address, type(exc).__name__, str(exc)[:300].replace(chr(10), ' '))\n"
        "def refuse(**kwargs):\n"
        "    raise ValueError('the head node has no room for this')\n"
        "ray.init = refuse\n"
        "try:\n"
        "    RayExecutor(address='local', num_cpus=2)\n"
        "except Exception as exc:\n"
        "    print('REFUSED', type(exc).__name__, exc)\n"
    )
    short = tempfile.mkdtemp(prefix="rxa", dir="/tmp")  # Ray's socket paths must fit 107 bytes
    address_file = Path(short) / "ray" / "ray_current_cluster"
    address_file.parent.mkdir()
    address_file.write_text("127.0.0.1:1")  # nothing listens there
    address_file.chmod(0o666)  # running_cluster_address refuses a file others may write: the embedded Ray starts
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "RAY_TMPDIR": short, "RAY_ADDRESS": ""})
    finally:
        shutil.rmtree(short, ignore_errors=True)
    out = [line for line in proc.stdout.splitlines() if line.split(" ")[0] in ("STARTED", "FAILED", "REFUSED")]
    assert len(out) == 3, proc.stdout + proc.stderr[-3000:]
    for line, address in zip(out, ("local", "None")):
        assert line.startswith(f"STARTED {address} True 127.0.0.1:") and not line.endswith(":1"), out
    assert out[2] == "REFUSED ValueError the head node has no room for this", out


def test_a_batch_that_kills_its_host_each_time_fails_alone_and_the_stage_goes_on(ray_session, tmp_path):
    # A local or vLLM model's host is restarted whenever it dies (max_restarts -1), and its batch ran again with it
    # (max_task_retries -1): a batch that killed its host each time (a segfault, the OOM killer on one oversized
    # batch) was run for ever, the model loaded again each time, and the run never ended.
    log = tmp_path / "calls.log"
    plan = StagePlan(Crashy, {"log": str(log)}, batch_size=1, num_cpus=0.25, label="sample[crashy]")
    run = StageRun(Store(tmp_path), "sample[crashy]", "samples", plan, Crashy.output_schema, 0, progress=False)
    units = _units([[1], [-1], [2], [3]], "c")
    ended = one_lane(RayExecutor(), run, units, 240)
    crashes = lines(log).count("crash -1")
    assert ended, f"still running after 240 s: the host died {crashes} times under the same batch"
    failed = run.close().failed
    assert list(failed) == [units[1].key]
    assert "HostCrashed: stage sample[crashy]: its host died 2 times running this batch" in failed[units[1].key]
    assert crashes == executor_module.HOST_DEATHS_PER_BATCH == 2
    # The batch queued behind it on the host when it died was sent again, not failed; each row ran once.
    assert sorted(line for line in lines(log) if line.startswith("run")) == ["run 1", "run 2", "run 3"]
    assert run.output()["y"].to_pylist() == [2, 4, 6]


def test_a_classification_batch_that_raises_keeps_the_batches_in_flight_beside_it(ray_session, tmp_path):
    # One batch raised in its host: executor.map stopped there, the batches still running went on (paid) while
    # _run_stage recorded their rows failed (paid again by the rerun), and their futures stayed on the hosts, which
    # the next stage on the same model then read as full ("dataflow stalled").
    log = tmp_path / "calls.log"
    plan = StagePlan(Broken, {"log": str(log), "delay_s": 3.0}, batch_size=1, num_actors=2, num_cpus=0.25,
                     label="classify[gen]", host="gen")
    # Two hosts, two batches each: the broken batch waits behind one of 3 s; the last batch runs 3 s more.
    units = _units([[1], [2], [3], [-1]], "u")
    executor = RayExecutor()
    try:
        first = bare_pipeline(tmp_path, executor)
        out = first._run_stage("classify[gen]", "classify", plan, units, Broken.output_schema)
        (record,) = first.records
        assert list(record.failed) == [units[3].key]
        assert "the batch failed in its host: StageContractError: broken batch" in record.failed[units[3].key]
        assert out["y"].to_pylist() == [2, 4, 6]
        # Nothing is left running on the hosts that the next stage on this model shares.
        assert executor.capacity(plan) == 2 * BATCHES_PER_ACTOR
        # The rerun sends only the failed unit: no computed row is computed again.
        again = bare_pipeline(tmp_path, executor)
        again._run_stage("classify[gen]", "classify", plan, units, Broken.output_schema)
        assert list(again.records[0].failed) == [units[3].key]
        assert sorted(lines(log)) == ["run 1", "run 2", "run 3"]
    finally:
        executor.close()


def test_placement_group_plans_start_only_the_actors_the_embedded_ray_holds(ray_session, tmp_path, caplog):
    # vLLM with TP × PP > 1 gives each actor a placement group; num_actors of them were all started, those that did
    # not fit stayed pending for ever, and the batches given to them with them: the run never ended.
    log = tmp_path / "calls.log"
    plan = StagePlan(Logged, {"log": str(log)}, batch_size=1, num_actors=2, num_cpus=0.25, label="sample[tp]",
                     placement_group={"bundles": [{"CPU": 1.5}, {"CPU": 1.5}], "strategy": "PACK"})
    run = StageRun(Store(tmp_path), "sample[tp]", "samples", plan, Logged.output_schema, 0, progress=False)
    units = _units([[k] for k in range(6)], "t")
    assert one_lane(RayExecutor(), run, units, 180), "batches waited for a host that can never start"
    assert not run.close().failed and run.output()["y"].to_pylist() == [0, 2, 4, 6, 8, 10]
    assert "2 actors of placement groups of 2 × 1.5 CPU do not fit on this machine's Ray at once; 1 start" \
        in caplog.text


def test_groups_that_fit_counts_placement_groups_as_ray_places_them():
    from engine.execution.executor import groups_that_fit

    def plan(strategy, *bundles):
        return StagePlan(Stage, {}, placement_group={"bundles": list(bundles), "strategy": strategy})

    nodes = [{"CPU": 4.0, "GPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}]
    gpu = {"CPU": 1.0, "GPU": 1.0}
    assert groups_that_fit(plan("PACK", gpu, gpu), nodes, 8) == 1  # three GPUs: one group of two, one left over
    assert groups_that_fit(plan("PACK", gpu), nodes, 8) == 3
    assert groups_that_fit(plan("PACK", gpu), nodes, 2) == 2  # never more than asked
    assert groups_that_fit(plan("STRICT_PACK", gpu, gpu), [{"CPU": 4.0, "GPU": 1.0}] * 2, 8) == 0
    assert groups_that_fit(plan("STRICT_SPREAD", gpu, gpu), [{"CPU": 4.0, "GPU": 1.0}] * 2, 8) == 1
    assert groups_that_fit(plan("PACK", {"CPU": 1.5}, {"CPU": 1.5}), [{"CPU": 4.0}], 2) == 1


def test_batches_go_to_the_hosts_that_run_not_to_one_still_waiting_for_a_node():
    # A host of the pool waiting for a node (num_actors more than the cluster holds; a replica whose node was lost)
    # was given batches as if it ran, and they waited with it.
    states = {"a": "ALIVE", "b": "PENDING_CREATION"}
    executor = RayExecutor.__new__(RayExecutor)
    executor._ray = SimpleNamespace(_private=SimpleNamespace(state=SimpleNamespace(
        actors=lambda actor_id: {"State": states[actor_id]})))
    executor._seen = {}
    actors = [SimpleNamespace(_actor_id=SimpleNamespace(hex=lambda n=n: n)) for n in "ab"]
    plan = StagePlan(Stage, {}, num_actors=2, label="judge[j]")
    hosted = executor_module._RayHosts("judge[j]", plan, actors=actors, busy=[[], []])
    executor._hosts = {"judge[j]": hosted}
    assert executor.capacity(plan) == BATCHES_PER_ACTOR  # the running host's room only
    assert executor._pick(hosted) == 0
    states["b"] = "ALIVE"
    executor._seen.clear()
    assert executor.capacity(plan) == 2 * BATCHES_PER_ACTOR
    states.update(a="RESTARTING", b="RESTARTING")  # none runs: the pool's batches wait for whichever comes back
    executor._seen.clear()
    assert executor.capacity(plan) == 2 * BATCHES_PER_ACTOR
    # Batches parked on a replica still starting do not take the running host's room: it stood idle beside them
    # until the watch withdrew them (60 s).
    states.update(a="ALIVE", b="PENDING_CREATION")
    executor._seen.clear()
    parked = executor_module._Batch(plan, pa.table({"x": [1]}), executor_module._Relayed())
    hosted.busy = [[], [parked, parked]]
    assert executor.capacity(plan) == BATCHES_PER_ACTOR
    # A pool whose batches wait to be sent again (a replica given up: out of `busy` until the next look) is not an
    # idle pool to stop for room: released with them, they failed and broke their stage's lane.
    hosted.busy = [[], []]
    executor._died = deque([(hosted, parked, 1, RuntimeError("given up"), False)])
    assert executor._has_work(hosted)
    parked.finish(exc=RuntimeError("settled"))
    assert not executor._has_work(hosted)


def test_a_kept_pool_lets_go_of_the_batches_it_has_answered(ray_session, tmp_path):
    # Each batch held those queued before it on its host (to tell, if the host died, whether it was running), and
    # they held theirs: a kept pool's every batch — rows, result, and its copy in Ray's object store — stayed
    # reachable until the pool was released.
    executor = RayExecutor(node_wait_s=0.0)
    plan = StagePlan(Logged, {"log": str(tmp_path / "calls.log"), "delay_s": 0.2}, batch_size=1, num_cpus=0.25,
                     label="kept")
    try:
        pending = []
        for k in range(12):
            while executor.capacity(plan) == 0:  # as the dataflow feeds it: a batch sent while one runs
                pending = [f for f in pending if not f.done()]
                executor.fail_stranded()
                time.sleep(0.05)
            pending.append(executor.submit(plan, pa.table({"x": [k]})))
        for future in pending:
            future.result(timeout=120)
        hosted = executor._hosts["kept"]
        longest = 0
        for queue in hosted.busy:
            for job in queue:
                chain, seen = [job], 0
                while chain:
                    seen += 1
                    chain = [b for b, _ in chain.pop().ahead]
                longest = max(longest, seen)
        assert longest <= 1, f"a chain of {longest} answered batches is still held"
        assert all(job.ref is None for queue in hosted.busy for job in queue)
    finally:
        executor.close()


def test_a_replica_that_cannot_start_gives_its_batches_to_the_one_that_runs(ray_session, tmp_path, monkeypatch,
                                                                            caplog):
    # On a cluster the executor joined every actor asked for is started (an autoscaler may add nodes): one that no
    # node takes stays pending, and the batches handed to it waited with it for ever.
    monkeypatch.setattr(executor_module, "STRANDED_MIN_S", 1.0)
    monkeypatch.setattr(executor_module, "STRANDED_CHECK_S", 0.2)
    log = tmp_path / "calls.log"
    plan = StagePlan(Logged, {"log": str(log), "delay_s": 0.5}, batch_size=1, num_actors=2, num_cpus=0.25,
                     label="sample[tp]", placement_group={"bundles": [{"CPU": 1.5}, {"CPU": 1.5}],
                                                          "strategy": "PACK"})
    run = StageRun(Store(tmp_path), "sample[tp]", "samples", plan, Logged.output_schema, 0, progress=False)
    executor = RayExecutor(node_wait_s=0.0)
    executor._joined = True  # as on a cluster it joined: both actors start, one group never fits
    assert one_lane(executor, run, _units([[k] for k in range(6)], "r"), 180), "batches waited for a pending host"
    assert not run.close().failed and run.output()["y"].to_pylist() == [0, 2, 4, 6, 8, 10]
    assert sorted(lines(log)) == [f"run {k}" for k in range(6)]
    assert "stage sample[tp]: a host has not started in" in caplog.text  # given up, its placement group removed


class Holder:
    """An actor of someone else's, waiting for the CPUs it asks for."""

    def ready(self):
        return True


def test_a_host_restarting_where_idle_kept_hosts_hold_its_room_gets_it(ray_session, tmp_path, monkeypatch,
                                                                       caplog):
    # A host with a batch died and Ray restarts it where a node can hold it; but the room it had is taken (on a
    # cluster: its node was lost, and the idle judge, kept for later, holds the only other GPU) — it was waited for
    # for ever: a node can hold it, so it was never "stranded". Idle kept hosts now make room, as before a stage.
    monkeypatch.setattr(executor_module, "STRANDED_MIN_S", 2.0)
    monkeypatch.setattr(executor_module, "STRANDED_CHECK_S", 0.5)
    log = tmp_path / "calls.log"
    gen = StagePlan(Crashy, {"log": str(log), "marker": str(tmp_path / "crashed")}, batch_size=1, num_cpus=2,
                    label="sample[gen]", host="gen")
    jud = StagePlan(Logged, {"log": str(log)}, batch_size=1, num_cpus=2, label="judge[jud]", host="jud")
    executor = RayExecutor(node_wait_s=0.0)
    holder = None

    def settle(future, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            executor.fail_stranded()  # as the dataflow calls it while it waits
            time.sleep(0.1)
        return future.done()

    try:
        assert settle(executor.submit(jud, pa.table({"x": [1]})), 120)  # the judge's host: kept, and idle
        assert settle(executor.submit(gen, pa.table({"x": [2]})), 120)  # the generator's: the session's 4 CPUs used
        holder = ray.remote(num_cpus=2)(Holder).remote()  # waits for 2 CPUs: it takes those the generator frees
        crashing = executor.submit(gen, pa.table({"x": [-3]}))
        assert settle(crashing, 120), "the restarting host waited for room an idle host held"
        assert crashing.result()["y"].to_pylist() == [-6]
        assert lines(log) == ["run 1", "run 2", "crash -3", "run -3"]
        assert "stopping the idle kept hosts of jud to make room" in caplog.text
        assert set(executor._hosts) == {"gen"}
    finally:
        if holder is not None:
            ray.kill(holder)
        executor.close()
