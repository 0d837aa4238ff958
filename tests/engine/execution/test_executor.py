"""Executors: the Ray executor survives a host killed mid-batch (Ray restarts it and runs the batch again), and
each model loads once per run however many stages use it."""

import os
import signal
import threading
import time

import psutil
import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.executor import LocalExecutor, RayExecutor
from engine.execution.pipeline import Pipeline


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
    from engine.stages.base import Stage

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


def test_hosts_with_batches_running_are_stopped_in_seconds(ray_session):
    # Ctrl-C mid-batch: release asked each busy host for its load times and then to close, 60 s each and one host
    # after the other, behind the running batches (two busy hosts: 180 s) while their GPUs stayed held.
    import pyarrow as pa

    from engine.execution.executor import StagePlan

    executor = RayExecutor()
    plan = StagePlan(Sleepy, {}, num_actors=2, num_cpus=0.25, label="sleepy")
    futures = [executor.submit(plan, pa.table({"x": [k]})) for k in range(2)]
    time.sleep(3)  # both hosts started and running their batch
    start = time.monotonic()
    executor.release(set())
    assert time.monotonic() - start < 30
    assert not any(f.done() and f.exception() is None for f in futures)  # killed, not finished
