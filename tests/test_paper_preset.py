"""The paper's composition through every stage (configs/paper.yaml), with the models swapped for the test double.

Slow (about 1,250 groups); run with `-m slow`. What it shows: the sources imported into a fresh cache with
`fetch --from ../shared/datasets`, the preset draws its 250 available prompts (the two Hugging Face-only sources are
absent here: `missing_sources: skip`), every stage runs over them, and quality and accuracy are filled.
"""

import collections
from pathlib import Path

import pytest

from engine.config import load_config
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SCRIPTED = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
            "batch_size": 256}


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_paper_preset_runs_every_stage(tmp_path, monkeypatch):
    from engine.cli import main

    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    assert main(["fetch", "--from", str(SHARED)]) == 0
    cfg = load_config(REPO / "configs" / "paper.yaml", {
        "run_dir": str(tmp_path / "paper"), "generators": [SCRIPTED], "judges": [SCRIPTED],
        "quality.grader": "scripted", "execution.executor": "local", "execution.shard_size": 64,
        "prompts.missing_sources": "skip", "models.offline": True,
    })
    result = Pipeline(cfg, executor=LocalExecutor(), progress=False).run()
    t = result.tables
    sources = collections.Counter(t["prompts"].column("source").to_pylist())
    assert sources == {"simpleqa": 50, "math500": 50, "macgyver": 50, "noveltybench": 100}
    assert t["groups"].num_rows == 250 * 5
    groups = t["groups"].to_pylist()
    assert all(g["quality_mean"] is not None for g in groups if g["status"] == "ok")
    checked = [g for g in groups if g["n_checked"]]
    by_category = collections.Counter(g["category"] for g in checked)
    assert set(by_category) == {"A", "D"} and all(g["accuracy"] is not None for g in checked)
    assert any("community_alignment" in w for w in result.load_warnings)
