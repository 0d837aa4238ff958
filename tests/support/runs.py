"""Small pipeline runs on the deterministic backend (tests.support.doubles.ScriptedChat) in this process: the
config every pipeline-logic test starts from, and running it."""

from __future__ import annotations

from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline
from tests.support.doubles import ScriptedChat

SCRIPTED = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
            "batch_size": 64}


def make_config(tmp_path, **over):
    data = {
        "run_dir": str(tmp_path / "run"),
        "prompts": {"source": "builtin", "per_category": 1},
        "n": 4,
        "generators": [SCRIPTED],
        "judges": [SCRIPTED],
        "sampling": {"max_tokens": 8},
        "execution": {"executor": "local", "shard_size": 3},
    }
    for k, v in over.items():
        data[k] = v
    return config_from_dict(data)


def run(cfg, executor=None):
    ScriptedChat.calls.clear()
    p = Pipeline(cfg, executor=executor or LocalExecutor(), progress=False)
    try:
        return p.run()
    finally:
        p.close()
