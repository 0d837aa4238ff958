"""The calibrated cheap judge as a judge of its own (`backend: calibrated`): every pair scored from the responses'
features with the shipped coefficients, no LLM call, beside LLM judges; what it cannot do (generate, classify,
grade, judge traces) is refused before any model call."""

import numpy as np
import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.plan import make_plan
from engine.method.calibrated import CalibratedJudge
from engine.method.pair_features import labelled_features
from tests.support.runs import SCRIPTED, run

CHEAP = {"name": "cheap", "backend": "calibrated"}


def _config(tmp_path, **over):
    data = {"run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "limit": 3}, "n": 3,
            "strategies": ["temperature", "regen_general"], "generators": [SCRIPTED],
            "judges": [SCRIPTED, CHEAP], "execution": {"executor": "local", "shard_size": 4}}
    data.update(over)
    return config_from_dict(data)


def test_a_run_with_the_calibrated_judge_beside_an_llm_judge(tmp_path):
    cfg = _config(tmp_path)
    assert cfg.judges[1].model == "default" and [j.name for j in cfg.llm_judges] == ["scripted"]
    assert cfg.graders[0].name == "scripted" and [v.name for v in cfg.voters] == ["scripted"]
    result = run(cfg)
    t = result.tables
    comps = [c for c in t["components"].to_pylist() if c["judge"] == "cheap"]
    assert len(comps) == t["groups"].num_rows == 6
    judgments = [j for j in t["judgments"].to_pylist() if j["judge"] == "cheap"]
    assert len(judgments) == 6 * 3  # every pair, no pruning
    assert all(j["calls"] == 0 and j["decided_by"] == "calibrated" for j in judgments)
    # The probabilities are the shipped coefficients' on these responses' features.
    judge = CalibratedJudge.load()
    from actors.registry import make_embedder

    embed = make_embedder("local", cfg.embedder.model).embed
    responses = {(r["prompt_id"], r["strategy"], r["sample_idx"]): r["text"] for r in t["responses"].to_pylist()}
    category = {(g["prompt_id"], g["strategy"]): g["category"] for g in t["groups"].to_pylist()}
    prompts = {p["prompt_id"]: p["text"] for p in t["prompts"].to_pylist()}
    expected = [judge.predict(labelled_features([prompts[j["prompt_id"]]],
                                                [(responses[(j["prompt_id"], j["strategy"], j["i"])],
                                                  responses[(j["prompt_id"], j["strategy"], j["j"])])],
                                                embed, judge.features),
                              [category[(j["prompt_id"], j["strategy"])]])[0] for j in judgments]
    assert np.allclose([j["p_equivalent"] for j in judgments], expected, atol=1e-5)
    groups = t["groups"].to_pylist()
    assert all(set(g["judges_in_mean"]) == {"scripted", "cheap"} for g in groups)
    # Its counts are in the means, and it decides from the general metrics' own features: the report says so and
    # gives ρ with the LLM judge's counts alone (before, neither: the demo's ρ was partly built in, unsaid).
    from engine.report.data import _spearman_section, report_data

    data = report_data(result, cfg)
    assert any("calibrated judge (cheap)" in d and "partly built in" in d for d in data["deviations"])
    sp = data["spearman"]
    assert sp["calibrated_judges"] == ["cheap"] and sp["other_judges_groups"] == 6
    alone = [dict(g, unique_mean=dict(g["unique_per_judge"])["scripted"]) for g in groups]
    expected = _spearman_section(alone, cfg.n, cfg.report)["rows"]
    assert [(r["category"], r["metric"], r["estimate"]["value"]) for r in sp["rows_other_judges"]] == \
        [(r["category"], r["metric"], r["estimate"]["value"]) for r in expected]
    # No model call of the calibrated judge in the plan.
    plan = make_plan(cfg, _prompts(cfg))
    assert [r.model for r in plan.roles if r.role == "judge"] == ["scripted"]
    # Switching the cascade on re-judges with the LLM judge only: the calibrated judge's shards do not depend on it.
    again = run(_config(tmp_path, judge={"cascade": {"enabled": True}}))
    records = {r.stage: r for r in again.stages}
    assert records["judge[cheap]"].units and records["judge[cheap]"].units_reused == records["judge[cheap]"].units
    assert records["judge[scripted]"].units_reused == 0


def test_the_metrics_and_the_calibrated_judge_embed_each_text_once(tmp_path, monkeypatch):
    # Both run in the embedder's host on the same responses: the second reads the first's vectors (EmbeddingMemo).
    from actors.embed import LocalEmbedder

    embedded = []
    real = LocalEmbedder.embed
    monkeypatch.setattr(LocalEmbedder, "embed", lambda self, texts: embedded.extend(texts) or real(self, texts))
    t = run(_config(tmp_path, judges=[SCRIPTED, CHEAP])).tables
    texts = {r["text"] for r in t["responses"].to_pylist()} | {p["text"] for p in t["prompts"].to_pylist()}
    assert len(embedded) == len(set(embedded)) and set(embedded) <= texts
    assert {r["text"] for r in t["responses"].to_pylist()} <= set(embedded)
    assert t["metrics"].num_rows == 6 and len([j for j in t["judgments"].to_pylist() if j["judge"] == "cheap"]) == 18


def _prompts(cfg):
    from engine.execution.pipeline import load_run_prompts
    from engine.inputs.loaders.paper import PresetReport

    prompts, _ = load_run_prompts(cfg, PresetReport(), offline=True)
    return prompts


@pytest.mark.parametrize("over, message", [
    ({"generators": [CHEAP]}, "cannot generate or classify"),
    ({"classifier": CHEAP}, "cannot generate or classify"),
    ({"judges": [CHEAP]}, "quality and accuracy are graded by an LLM judge"),
    ({"judges": [SCRIPTED, CHEAP], "quality": {"grader": "cheap"}}, "not one of the LLM judges"),
    ({"judges": [CHEAP], "quality": {"enabled": False}, "accuracy": {"enabled": False}, "judge": {"target": "both"}},
     r"judge\.target: 'both' judges reasoning traces, which only an LLM judge can"),
    ({"judges": [CHEAP], "quality": {"enabled": False}, "accuracy": {"enabled": False}, "judge": {"target": "trace"}},
     r"judge\.target: 'trace' judges reasoning traces"),
    ({"judges": [SCRIPTED, {**CHEAP, "verdict": "text"}]}, r"verdict: a calibrated judge \('cheap'\) takes no verdict"),
    ({"judges": [SCRIPTED, {**CHEAP, "options": {"base_url": "x"}}]}, "takes no options"),
])
def test_what_the_calibrated_judge_cannot_do_is_refused(tmp_path, over, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **over)


def test_missing_coefficients_fail_in_preflight(tmp_path):
    from engine.execution.preflight import preflight

    cfg = _config(tmp_path, judges=[SCRIPTED, {**CHEAP, "model": str(tmp_path / "none.json")}])
    with pytest.raises(ConfigError, match=r"judges\[1\]\.model: .*none.json: calibrated-judge coefficients not found"):
        preflight(cfg)


def test_alone_with_gold_categories_it_runs_to_the_report(tmp_path):
    from engine.report import write_report

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "Write a poem about rain.", "gold_category": "G"}\n'
                    '{"text": "Name a colour.", "gold_category": "H"}\n'
                    '{"text": "Solve 3x + 4 = 19 two ways.", "gold_category": "D"}\n')
    cfg = _config(tmp_path, judges=[CHEAP], quality={"enabled": False}, accuracy={"enabled": False},
                  prompts={"source": "jsonl", "path": str(path)})
    assert cfg.graders == []  # nobody grades: quality is off, and no judge could
    result = run(cfg)
    write_report(result, cfg)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Functionally unique responses" in report and "graded by" not in report
    assert {c["judge"] for c in result.tables["components"].to_pylist()} == {"cheap"}
    # Its labelled pairs hold B, C, G and H: on D it never saw "the same strategy, whatever the answer", and the
    # report says so beside its counts (before, they stood for D's criterion, unsaid).
    d_groups = sum(1 for g in result.tables["groups"].to_pylist() if g["category"] == "D")
    assert d_groups and (f"cheap was fitted on labelled pairs of categories B, C, G, H only: on D ({d_groups} "
                         "groups here) it never saw the category's criterion") in " ".join(report.split())


def test_alone_without_gold_categories_it_asks_for_a_classifier(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt_id": "rain", "text": "Write a poem about rain."}\n')
    cfg = _config(tmp_path, judges=[CHEAP], quality={"enabled": False}, accuracy={"enabled": False},
                  prompts={"source": "jsonl", "path": str(path)})
    with pytest.raises(ConfigError, match="add an LLM judge or a `classifier`"):
        run(cfg)


def test_the_stages_get_the_coefficients_the_driver_read_not_their_path(tmp_path):
    # On a cluster the stages run on other nodes: given the path, a node without the file failed the stage after
    # the paid stages before it (and one with another file there judged with coefficients the shards were not
    # keyed by). The driver sends what it read; the stages never open the file.
    import shutil

    from engine.execution.pipeline import Pipeline
    from engine.method.calibrated import DEFAULT_COEFFICIENTS
    from engine.stages.judge import CalibratedJudgeStage, JudgeStage

    path = tmp_path / "coef.json"
    shutil.copy(DEFAULT_COEFFICIENTS, path)
    cfg = _config(tmp_path, judges=[SCRIPTED, {**CHEAP, "model": str(path)}],
                  judge={"cascade": {"enabled": True, "coefficients": str(path)}})
    pipeline = Pipeline(cfg, progress=False)
    try:
        plan = pipeline.calibrated_plan(cfg.judges[1])
        settings = pipeline.judge_settings()
    finally:
        pipeline.close()
    path.unlink()  # as on a node that lacks it
    stage = CalibratedJudgeStage(**plan.kwargs)
    assert stage.judge == CalibratedJudge.load()
    cascade = JudgeStage(cfg.judges[0].spec(), **settings)
    assert cascade.calibrated == CalibratedJudge.load()
