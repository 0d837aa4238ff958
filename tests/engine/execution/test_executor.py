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


def test_a_stage_needing_more_gpus_than_the_cluster_has_fails_at_once_with_a_hint(ray_session, tmp_path):
    # A vLLM model without `device: cpu` reserves one GPU per actor (TP×PP); this Ray has none, so the run stops
    # before any actor is started instead of waiting forever for a GPU — and says how to run vLLM's CPU build.
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1}, "n": 2,
        "generators": [{"name": "v", "backend": "vllm", "model": "smollm2-135m"}],
        "judges": [{"name": "v", "backend": "vllm", "model": "smollm2-135m"}],
        "execution": {"executor": "ray"},
    })
    with pytest.raises(ConfigError, match=r"classify\[v\]: one actor needs 1 GPUs, the Ray cluster has 0; "
                                           r"a vLLM model served by vLLM's CPU build needs `options: \{device: cpu\}`"):
        Pipeline(cfg, executor=RayExecutor(), progress=False).run()
