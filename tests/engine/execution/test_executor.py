"""Executors: the Ray executor survives a host killed mid-batch (Ray restarts it and runs the batch again), and
each model loads once per run however many stages use it."""

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.executor import LocalExecutor, RayExecutor
from engine.execution.pipeline import Pipeline
from engine.stages.base import Stage


def config(tmp_path, run_dir, **options):
    model = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
             "batch_size": 4, "options": options}
    return config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "builtin", "per_category": 1}, "n": 3,
        "strategies": ["temperature"], "generators": [model], "judges": [model], "quality": {"enabled": False},
        "accuracy": {"enabled": False}, "execution": {"executor": "ray", "shard_size": 4},
    })


def kill_when_started(marker, killed):
    """SIGKILL the Ray host that is running a batch once the judge's backend has started one (the marker appears):
    the only host busy then is the judge's."""
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.exists(marker):
        time.sleep(0.05)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "StageHost.run" in cmdline:
            os.kill(proc.info["pid"], signal.SIGKILL)
            killed.append(proc.info["pid"])
            return


def test_an_actor_killed_mid_batch_is_restarted_and_its_batch_retried(ray_session, tmp_path):
    expected = Pipeline(config(tmp_path, tmp_path / "local"), executor=LocalExecutor(), progress=False).run()
    marker = tmp_path / "judge-started"
    killed: list[int] = []
    watcher = threading.Thread(target=kill_when_started, args=(str(marker), killed), daemon=True)
    watcher.start()
    cfg = config(tmp_path, tmp_path / "ray", start_marker=str(marker), delay_s=2.0)
    # Only the judge's backend writes the marker: the earlier stages' backends get no start_marker.
    cfg.generators[0].options = {}
    result = Pipeline(cfg, executor=RayExecutor(), progress=False).run()
    watcher.join(timeout=10)
    assert killed, "the judge actor was never found to kill"
    assert not Pipeline.failed_shards(result)
    for name in ("judgments", "components"):
        assert result.tables[name].equals(expected.tables[name]), name
    # Embeddings in another process may differ in the last float bits (thread count): compare the counts exactly.
    got, want = result.tables["groups"].to_pylist(), expected.tables["groups"].to_pylist()
    assert [g["unique_mean"] for g in got] == [g["unique_mean"] for g in want]
    assert [round(g["embed_div"], 5) for g in got] == [round(g["embed_div"], 5) for g in want]
    judge = next(r for r in result.stages if r.stage.startswith("judge"))
    assert judge.rows == expected.tables["components"].num_rows


def test_a_stage_needing_more_gpus_than_the_cluster_has_fails_at_once_with_a_hint(ray_session, tmp_path,
                                                                                monkeypatch):
    # A vLLM model without `device: cpu` reserves one GPU per actor (TP×PP); this Ray has none, so the run stops
    # before any actor is started instead of waiting forever for a GPU — and says how to run vLLM's CPU build.
    # (This Python may lack vLLM, which preflight refuses first: the check here is the one after it, as in the vLLM
    # environment, so vLLM is said to be importable.)
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else find_spec(name, *a))
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1}, "n": 2,
        "generators": [{"name": "v", "backend": "vllm", "model": "smollm2-135m"}],
        "judges": [{"name": "v", "backend": "vllm", "model": "smollm2-135m"}],
        "execution": {"executor": "ray"},
    })
    with pytest.raises(ConfigError, match=r"generators\[0\] \(v\): one actor needs 0.25 CPU and 1 GPU on one "
                                           r"node.*a vLLM model served by vLLM's CPU build needs `options: "
                                           r"\{device: cpu\}`"):
        Pipeline(cfg, executor=RayExecutor(), progress=False).run()


def test_models_are_checked_again_on_the_nodes_that_would_run_them(ray_session, tmp_path, monkeypatch):
    # On a cluster the driver (the head) is not where models run: an API key in the driver's environment but not in
    # the one `ray start` gave the workers passed preflight and failed every request. The Ray workers here were
    # started before the key was set, as a cluster's workers are started without the driver's environment.
    monkeypatch.setenv("TASKDIV_DRIVER_ONLY_KEY", "sk-driver-only")
    judge = {"name": "api", "backend": "http", "model": "gpt-4o",
             "options": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "TASKDIV_DRIVER_ONLY_KEY"}}
    cfg = config_from_dict({"run_dir": str(tmp_path / "run"), "judges": [judge], "quality": {"enabled": False},
                            "accuracy": {"enabled": False}})
    pipeline = Pipeline(cfg, executor=RayExecutor(), progress=False)
    try:
        from engine.execution.preflight import preflight

        preflight(cfg)  # the driver has the key
        pipeline.executor._joined = True  # as if joined: the node check runs only on a cluster it joined
        checks = [(where, plan, (role, m.backend, m.model, m.options)) for where, role, m, plan in
                  pipeline.resource_needs()]
        with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.api_key_env: the environment variable "
                                              r"TASKDIV_DRIVER_ONLY_KEY is not set.*\(on node 127\.0\.0\.1\)") as info:
            pipeline.executor.check_models(checks, offline=True)
        assert "sk-driver-only" not in str(info.value)
        assert [c[0] for c in checks] == ["generators[0]", "judges[0]", "embedder"]
    finally:
        pipeline.executor._joined = False
        pipeline.close()


def test_an_embedded_ray_starts_only_the_actors_it_can_hold(caplog):
    # Four actors of 2 CPUs on 4 CPUs: two started, the others stayed pending for ever, and the batches handed to
    # them with them (the stage wrote half its units, then waited). A joined cluster may add nodes: all are started.
    from engine.execution.executor import StagePlan, actors_that_fit

    assert actors_that_fit({"CPU": 2, "GPU": 0}, [{"CPU": 4.0}, {"CPU": 3.0, "GPU": 1.0}]) == 3
    assert actors_that_fit({"CPU": 1, "GPU": 1}, [{"CPU": 4.0}, {"CPU": 3.0, "GPU": 2.0}]) == 2

    class OneNode:
        def nodes(self):
            return [{"Alive": True, "Resources": {"CPU": 4.0, "memory": 1e9}},
                    {"Alive": False, "Resources": {"CPU": 8.0}}]  # a dead node holds nothing

    executor = RayExecutor.__new__(RayExecutor)
    executor._ray, executor._joined, executor._actor_counts = OneNode(), False, {}
    wide = StagePlan(Stage, {}, num_actors=4, num_cpus=2, label="judge[wide]")
    assert executor._actor_count(wide) == 2 and "4 actors of 2 CPU do not fit" in caplog.text
    assert executor._actor_count(StagePlan(Stage, {}, num_actors=3, num_cpus=1, label="fits")) == 3
    assert executor._actor_count(StagePlan(Stage, {}, num_actors=2, num_cpus=8, label="none fits")) == 1
    executor._joined, executor._actor_counts = True, {}
    assert executor._actor_count(wide) == 4


class Sleepy:
    """A stage whose batch takes two minutes (a long generation)."""

    name = "sleepy"

    def __call__(self, batch):
        time.sleep(120)
        return batch


def test_hosts_with_batches_running_are_stopped_in_seconds(ray_session, monkeypatch):
    # Ctrl-C mid-batch: release asked each busy host for its load times and then to close, 60 s each and one host
    # after the other, behind the running batches (two busy hosts: 180 s) while their GPUs stayed held.
    from engine.execution import executor as executor_module
    from engine.execution.executor import StagePlan

    monkeypatch.setattr(executor_module, "STRANDED_CHECK_S", 0.1)
    executor = RayExecutor(node_wait_s=0.0)
    plan = StagePlan(Sleepy, {}, num_actors=2, num_cpus=0.25, label="sleepy")
    futures = [executor.submit(plan, pa.table({"x": [k]})) for k in range(2)]
    try:
        deadline = time.monotonic() + 120  # both hosts started (a replica still starting while the other runs is
        while executor._states(executor._hosts["sleepy"], fresh=True) != ["ALIVE", "ALIVE"]:  # stopped past the
            assert time.monotonic() < deadline, "the hosts did not start"                   # minimum)
            time.sleep(0.2)
        monkeypatch.setattr(executor_module, "STRANDED_MIN_S", 0.3)
        deadline = time.monotonic() + 3  # both hosts running their batch
        while time.monotonic() < deadline:
            executor.fail_stranded()  # hosts busy with a long batch are never given up
            time.sleep(0.1)
        assert not any(f.done() for f in futures) and len(executor._hosts["sleepy"].actors) == 2
        start = time.monotonic()
        executor.release(set())
        assert time.monotonic() - start < 30
    finally:  # a failed assertion must not leave the session's Ray a host holding CPUs (later tests count on them)
        executor.close()
    assert not any(f.done() and f.exception() is None for f in futures)  # killed, not finished


def test_a_host_ray_cannot_place_fails_its_batches_after_node_wait_s(ray_session, tmp_path, monkeypatch, caplog):
    # A host whose node is lost is restarted by Ray only on a node that can hold it; with none left, Ray kept it
    # restarting, and its batches waiting, for ever: the run hung without a word after every other stage had
    # finished. An actor no node can hold waits the same way (here 64 CPUs on a Ray of 4); the node lost for real:
    # test_a_host_whose_node_is_lost_fails_its_batches_and_the_run_ends.
    from engine.execution import executor as executor_module
    from engine.execution.dataflow import StageRun
    from engine.execution.executor import StagePlan
    from engine.execution.store import Store
    from tests.engine.execution.test_dataflow import Double, _units, run_one_lane

    monkeypatch.setattr(executor_module, "STRANDED_MIN_S", 1.0)
    monkeypatch.setattr(executor_module, "STRANDED_CHECK_S", 0.2)
    plan = StagePlan(Double, {}, batch_size=2, num_cpus=64, label="judge[far]")
    run = StageRun(Store(tmp_path), "judge[far]", "judgments", plan, Double.output_schema, 0, progress=False)
    executor = RayExecutor(node_wait_s=0.0)
    start = time.monotonic()
    run_one_lane(executor, run, _units([[1, 2], [3, 4], [5, 6]], "far"))  # closes the executor
    assert time.monotonic() - start < 60
    reasons = list(run.close().failed.values())
    assert len(reasons) == 3
    assert "HostStranded: stage judge[far]: a host has not run for" in reasons[0], reasons
    assert "(no node can hold it: one actor needs 64 CPU on one node; the cluster's nodes have 4 CPUs" in reasons[0]
    assert "its batches fail, for a rerun to compute" in caplog.text
    # The classification phases (Pipeline._run_stage) are watched too.
    from tests.engine.execution.test_dataflow import bare_pipeline

    executor = RayExecutor(node_wait_s=0.0)
    pipeline = bare_pipeline(tmp_path / "classify", executor)
    try:
        pipeline._run_stage("classify[far]", "classify", plan, _units([[1, 2, 3]], "c"), Double.output_schema)
        (reason,) = pipeline.records[0].failed.values()
        assert "HostStranded: stage judge[far]: a host has not run for" in reason
        assert not executor._hosts  # given up: a later batch of the model starts its host again
    finally:
        executor.close()


NODE_LOSS = r"""
import os, sys, threading, time
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
sys.path.insert(0, sys.argv[1])
from ray.cluster_utils import Cluster
from engine.execution import executor as executor_module
from engine.execution.dataflow import StageRun
from engine.execution.executor import RayExecutor, StagePlan
from engine.execution.store import Store
from tests.engine.execution.test_dataflow import _units, run_one_lane
from tests.engine.execution.test_executor import Stalled

executor_module.STRANDED_MIN_S, executor_module.STRANDED_CHECK_S = 5.0, 1.0
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
gpu_node = cluster.add_node(num_cpus=2, num_gpus=1)  # the only node with a GPU (a logical one)
executor = RayExecutor(address=cluster.address, node_wait_s=0.0, env={"PYTHONPATH": sys.argv[1],
                                                                     "TASKDIV_STALL_MARKER": sys.argv[2]})
plan = StagePlan(Stalled, {}, batch_size=2, num_cpus=0.25, num_gpus=1, label="sample[gpu]")
run = StageRun(Store(sys.argv[3]), "sample[gpu]", "samples", plan, Stalled.output_schema, 0, progress=False)

def lose_the_node():
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.1)
    cluster.remove_node(gpu_node, allow_graceful=False)

threading.Thread(target=lose_the_node, daemon=True).start()
start = time.monotonic()
run_one_lane(executor, run, _units([[1, 2], [3, 4]], "gpu"))
print("ENDED", round(time.monotonic() - start))
for reason in run.close().failed.values():
    print("FAILED", reason)
cluster.shutdown()
"""


class Stalled(Stage):
    """A stage whose batch takes five minutes; it writes the marker TASKDIV_STALL_MARKER names once started."""

    name = "stalled"
    required_inputs = {"x": "a number"}
    output_schema = pa.schema([("x", pa.int64())])

    def process(self, rows):
        open(os.environ["TASKDIV_STALL_MARKER"], "w").close()
        time.sleep(300)
        yield from ()


@pytest.mark.slow
def test_a_host_whose_node_is_lost_fails_its_batches_and_the_run_ends(tmp_path):
    # Two Ray nodes on this machine (ray.cluster_utils), the GPU on the second only; it is lost mid-batch. Ray then
    # keeps the host restarting, with no node to restart it on: without a deadline the run never ended.
    import shutil
    import subprocess
    import sys
    import tempfile

    repo = str(Path(__file__).resolve().parents[3])
    # A Ray temporary folder of its own (short: Ray's socket paths must fit 107 bytes): the address file the two-node
    # Ray leaves in /tmp/ray would make every later ray.init() of this session try to join it.
    ray_tmp = tempfile.mkdtemp(prefix="td-ray-", dir="/tmp")
    try:
        done = subprocess.run([sys.executable, "-c", NODE_LOSS, repo, str(tmp_path / "started"),
                               str(tmp_path / "run")], capture_output=True, text=True, timeout=240,
                              env={**os.environ, "RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = done.stdout
    assert "ENDED" in out, done.stderr[-3000:]
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and all("HostStranded: stage sample[gpu]: a host has not run for" in f for f in failed)
    assert "(its node was lost, and no node left can hold it: one actor needs 0.25 CPU and 1 GPU" in failed[0]


def test_ray_that_cannot_start_or_be_reached_is_a_config_error_naming_the_key(tmp_path):
    # An address where nothing listens: ray.init waited on it for minutes with no word of ours; an object store
    # larger than the machine: a ValueError traceback. Each is now one ConfigError naming its key. (A process of
    # its own: this session's Ray is already up, and the executor would join it.)
    import subprocess
    import sys

    code = ("from engine.execution.executor import RayExecutor\n"
            "from engine.errors import ConfigError\n"
            "for kwargs in ({'address': '127.0.0.1:1'}, {'object_store_memory': 10**15}):\n"
            "    try:\n"
            "        RayExecutor(**kwargs)\n"
            "    except ConfigError as exc:\n"
            "        print('ConfigError:', str(exc)[:160])\n")
    import tempfile

    short = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # a socket path under pytest's tmp_path passes 107 bytes
    env = {**os.environ, "RAY_TMPDIR": short, "RAY_ADDRESS": ""}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                              cwd=Path(__file__).resolve().parents[3])
    finally:
        import shutil

        shutil.rmtree(short, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ConfigError:")]
    assert len(lines) == 2, proc.stdout + proc.stderr[-2000:]
    assert "execution.ray_address: no Ray cluster answers at 127.0.0.1:1" in lines[0]
    assert "execution.object_store_memory (1,000,000,000,000,000 bytes): the embedded Ray cannot start" in lines[1]
