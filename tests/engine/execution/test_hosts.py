"""One load per model per run: every stage using a model runs in the same hosts, released when no later stage needs
them — under Ray (hosts are actors in other processes) and in this process.

The backend double writes "load <model>" / "close <model>" to a shared file from whichever process builds it, so
the order of loads and closes across stages is observed, not assumed.
"""

import threading
from pathlib import Path

import orjson
import pytest

from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor, RayExecutor
from engine.execution.pipeline import Pipeline
from engine.report import write_report


def _model(name, life_log, **pool):
    return {"name": name, "backend": "python:tests.support.doubles:ScriptedChat", "model": name, "batch_size": 4,
            "options": {"life_log": str(life_log)}, **pool}


def config(run_dir, life_log, executor, gen_pool=None, judge_pool=None):
    # One prompt without a gold category: the reference classification (by the judge) runs first, then the
    # generator classifies and samples, then the judge judges, grades and checks accuracy (the gold answer).
    prompts = Path(run_dir).parent / "prompts.jsonl"
    prompts.write_text(orjson.dumps({"text": "Write a haiku about rain."}).decode() + "\n"
                       + orjson.dumps({"text": "What is 2+2?", "gold_category": "A", "gold_answer": "4"}).decode()
                       + "\n")
    return config_from_dict({
        "run_dir": str(run_dir), "prompts": {"source": "jsonl", "path": str(prompts)}, "n": 3,
        "strategies": ["temperature", "regen_general"],
        "generators": [_model("gen", life_log, **(gen_pool or {}))],
        "judges": [_model("jud", life_log, **(judge_pool or {}))],
        "execution": {"executor": executor, "shard_size": 4},
    })


def events(life_log):
    return Path(life_log).read_text().split("\n")[:-1]


# The Ray variant (~18 s of actors on 2 cores) runs with the slow tests, to keep the default run under 10 minutes;
# the default run keeps the local one, and Ray's hosts through tests/test_integration.py.
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_each_model_loads_once_and_is_released_after_its_last_stage(tmp_path, executor, request):
    if executor == "ray":
        request.getfixturevalue("ray_session")
    life = tmp_path / "life.log"
    cfg = config(tmp_path / "run", life, executor)
    pipeline = Pipeline(cfg, executor=LocalExecutor() if executor == "local" else RayExecutor(), progress=False)
    try:
        result = pipeline.run()
        stages = [r.stage.split("[")[0] for r in result.stages]
        # Six stages used a chat model (classify twice, sample, judge, checklist, grade, accuracy)...
        assert {"classify", "sample", "judge", "checklist", "grade", "accuracy"} <= set(stages)
        # ...and each model was built once: the judge for the reference classification (kept for judging and
        # grading), the generator for classify and sample, closed before judging started.
        assert events(life) == ["load jud", "load gen", "close gen", "close jud"]
        loads = result.model_load_s
        assert {k for k in loads if k.startswith("chat:")} == {
            "chat:python:tests.support.doubles:ScriptedChat:gen", "chat:python:tests.support.doubles:ScriptedChat:jud"}
        assert all(len(v) == 1 and v[0] >= 0 for v in loads.values())  # one load each, timed
        assert any(k.startswith("embed:") for k in loads)
        write_report(result, cfg)
        stats = orjson.loads((tmp_path / "run" / "run_stats.json").read_bytes())
        assert set(stats["model_load_s"]) == set(loads)
        assert "load s" in (tmp_path / "run" / "report.md").read_text()
    finally:
        pipeline.close()


@pytest.mark.slow  # ~21 s of Ray actors on 2 cores; the default run keeps the one-load-per-model test above
def test_a_kept_model_makes_room_when_the_next_one_would_not_fit(ray_session, tmp_path):
    # The session's Ray has 4 CPUs. Each model's host reserves 2.5: the judge's (kept after the reference
    # classification for judging) must make room for the generator's, or the run would wait forever for resources.
    life = tmp_path / "life.log"
    cfg = config(tmp_path / "run", life, "ray", gen_pool={"num_cpus": 2.5}, judge_pool={"num_cpus": 2.5})
    cfg.quality.enabled = False
    cfg.accuracy.enabled = False
    pipeline = Pipeline(cfg, executor=RayExecutor(), progress=False)
    outcome = {}

    def run():
        try:
            outcome["result"] = pipeline.run()
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=240)
    try:
        assert not worker.is_alive(), "the run waited for resources a kept host held"
        assert "error" not in outcome, outcome.get("error")
        # The judge was stopped to make room and loaded again for judging: honest, and recorded.
        assert events(life) == ["load jud", "close jud", "load gen", "close gen", "load jud", "close jud"]
        assert not Pipeline.failed_shards(outcome["result"])
        assert len(outcome["result"].model_load_s["chat:python:tests.support.doubles:ScriptedChat:jud"]) == 2
    finally:
        pipeline.close()
