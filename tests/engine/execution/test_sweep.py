"""Sweeps in one run: sampling.temperature (or top_p, or a generator's own temperature) as a list becomes one set of
groups per value, sharing one load of the model, keyed and resumed like any setting, and reported against the
value."""

import math
from pathlib import Path

import pyarrow as pa
import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline, load_run_prompts
from engine.execution.plan import make_plan
from engine.report import write_report


def test_a_list_expands_into_named_generators_once():
    cfg = config_from_dict({"sampling": {"temperature": [0.5, 1.0]},
                            "generators": [{"name": "g"}, {"name": "h", "temperature": 0.7}]})
    assert [(g.name, g.temperature, g.top_p) for g in cfg.generators] == [
        ("g@t=0.5", 0.5, 0.9), ("g@t=1", 1.0, 0.9), ("h", 0.7, None)]
    assert cfg.generators[0].sweep == {"base": "g", "temperature": 0.5, "top_p": 0.9,
                                       "configured": {"temperature": None, "top_p": None}}
    again = config_from_dict(cfg.to_dict())  # a run's config.yaml read back is not swept twice
    assert [g.name for g in again.generators] == ["g@t=0.5", "g@t=1", "h"] and again.generators == cfg.generators
    both = config_from_dict({"sampling": {"temperature": [0.5, 1.0], "top_p": [0.8, 0.95]}})
    assert [g.name for g in both.generators] == ["smollm2-135m@t=0.5,p=0.8", "smollm2-135m@t=0.5,p=0.95",
                                                  "smollm2-135m@t=1,p=0.8", "smollm2-135m@t=1,p=0.95"]
    # Temperature 0 reads no top_p: sampled once, at the first top_p, not once per top_p.
    greedy = config_from_dict({"sampling": {"temperature": [0.0, 1.0], "top_p": [0.9, 1.0]}})
    assert [g.name for g in greedy.generators] == ["smollm2-135m@t=0,p=0.9", "smollm2-135m@t=1,p=0.9",
                                                    "smollm2-135m@t=1,p=1"]
    # A generator with a temperature of its own beside one that takes sampling's list: the list sweeps that one.
    mixed = config_from_dict({"sampling": {"temperature": [0.3, 1.0]},
                              "generators": [{"name": "a", "temperature": 0.5}, {"name": "b"}]})
    assert [g.name for g in mixed.generators] == ["a", "b@t=0.3", "b@t=1"]
    own = config_from_dict({"generators": [{"name": "g", "temperature": [0.2, 0.9]}]})
    assert [g.name for g in own.generators] == ["g@t=0.2", "g@t=0.9"]
    assert [g.name for g in config_from_dict({}).generators] == ["smollm2-135m"]  # no sweep, no renaming


def test_a_sweep_read_back_from_config_yaml_follows_its_lists():
    # A run's config.yaml holds a sweep's generators one per value. Kept as they were, a sampling list edited there
    # (or by --set on it) swept nothing new: the run sampled the old values, and config.yaml recorded the new list
    # beside them ("compare --values 1.5": no generator has that value).
    from engine.config import dump_yaml, load_yaml

    cfg = config_from_dict({"sampling": {"temperature": [0.5, 1.0]},
                            "generators": [{"name": "g"}, {"name": "h", "temperature": [0.2, 0.4]}]})
    written = load_yaml(dump_yaml(cfg.to_dict()))
    written["sampling"]["temperature"] = [0.5, 1.0, 1.5]
    more = config_from_dict(written)
    assert [(g.name, g.temperature) for g in more.generators] == [
        ("g@t=0.5", 0.5), ("g@t=1", 1.0), ("g@t=1.5", 1.5), ("h@t=0.2", 0.2), ("h@t=0.4", 0.4)]
    assert more.generators[:2] == cfg.generators[:2]  # the values kept are the generators they were (their keys)
    assert more.generator_keys == ["generators[0]"] * 3 + ["generators[2]"] * 2  # places in the file read
    written["sampling"]["top_p"] = [0.8, 0.95]
    assert [g.name for g in config_from_dict(written).generators][:2] == ["g@t=0.5,p=0.8", "g@t=0.5,p=0.95"]
    written["sampling"].update(temperature=0.7, top_p=0.9)  # a list made one value: the generator's own name again
    assert [g.name for g in config_from_dict(written).generators] == ["g", "h@t=0.2", "h@t=0.4"]
    # One value's entry edited apart from the others would be lost to the first's settings: refused, named.
    written = load_yaml(dump_yaml(cfg.to_dict()))
    written["generators"][1]["model"] = "other"
    with pytest.raises(ConfigError, match=r"generators\[1\]: 'g@t=1' is a value of the sweep of 'g' and differs"):
        config_from_dict(written)
    # A record written before `configured` was is kept as it is (its own values cannot be told from sampling's).
    written = load_yaml(dump_yaml(cfg.to_dict()))
    for g in written["generators"]:
        g["sweep"].pop("configured")
    written["sampling"]["temperature"] = [0.5, 1.0, 1.5]
    assert [g.name for g in config_from_dict(written).generators] == ["g@t=0.5", "g@t=1", "h@t=0.2", "h@t=0.4"]


@pytest.mark.parametrize("data, message", [
    ({"sampling": {"temperature": []}}, "at least one value"),
    ({"sampling": {"temperature": [0.5, 0.5]}}, "each value once"),
    ({"sampling": {"temperature": [0.5, -1.0]}}, "temperature"),
    ({"judges": [{"temperature": [0.1, 0.2]}]}, "sweeps generators only"),
    # named alike to 6 significant digits: "generators: model names must be unique", blamed on the file
    ({"sampling": {"temperature": [0.5, 0.5000001]}}, r"sampling\.temperature: two values print alike as 't=0.5'"),
    # greedy decoding reads no top_p: each value sampled (and paid for) the same groups
    ({"sampling": {"temperature": 0.0, "top_p": [0.9, 1.0]}}, r"sampling\.top_p: a list of top_p values at "
                                                             r"temperature 0"),
    # Every generator's own value wins (the paper's presets set each one's temperature): the list swept nothing.
    ({"sampling": {"temperature": [0.5, 1.0]}, "generators": [{"name": "a", "temperature": 0.5},
                                                               {"name": "b", "temperature": 0.7}]},
     r"sampling\.temperature: a list sweeps the generators without a temperature of their own.*would be ignored"),
    ({"sampling": {"top_p": [0.8, 0.95]}, "generators": [{"top_p": 0.9}]},
     r"sampling\.top_p: a list sweeps the generators without a top_p of their own"),
])
def test_bad_sweeps_are_named(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def _config(tmp_path: Path, temperatures: list[float], life: Path):
    model = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
             "batch_size": 8, "options": {"life_log": str(life)}}
    return config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "limit": 3}, "n": 3,
        "strategies": ["temperature", "regen_general"], "sampling": {"temperature": temperatures},
        "generators": [model], "judges": [{**model, "name": "judge", "model": "judge"}],
        "execution": {"executor": "local", "shard_size": 4},
    })


def _run(cfg):
    pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        return pipeline.run()
    finally:
        pipeline.close()


def test_a_sweep_runs_loads_once_resumes_and_is_reported(tmp_path):
    life = tmp_path / "life.log"
    cfg = _config(tmp_path, [0.5, 1.0], life)
    result = _run(cfg)
    groups = result.tables["groups"].to_pylist()
    assert {g["model"] for g in groups} == {"scripted@t=0.5", "scripted@t=1"}
    assert len(groups) == 2 * 3 * 2  # two values × 3 prompts × two strategies
    assert life.read_text().split("\n").count("load scripted") == 1  # one load for every value
    # Classification is greedy, the same for every value: one stage, its rows under every value's name.
    classify = [r for r in result.stages if r.stage.startswith("classify[")]
    assert [r.stage for r in classify] == ["classify[scripted]"] and classify[0].rows == 3
    own = [c for c in result.tables["classifications"].to_pylist() if c["role"] == "own"]
    assert sorted(c["model"] for c in own) == ["scripted@t=0.5"] * 3 + ["scripted@t=1"] * 3
    plan = [r for r in make_plan(cfg, _prompts(cfg)).roles if r.role == "classify (own)"]
    assert [(r.model, r.calls_low, r.calls_high) for r in plan] == [("scripted", 3, 6)]
    paths = write_report(result, cfg)
    text = paths["markdown"].read_text()
    assert "against temperature" in text and (paths["figures"] / "sweep.png").is_file()
    assert "| scripted | all | regen_general | 0.5 |" in text
    import json

    report = json.loads(paths["json"].read_text())
    assert [c["model"] for c in report["classification"]] == ["scripted"]  # once, under the configured name

    # A value added later computes only its own groups; the others are read back, and the cost cap's bound counts
    # them as stored (a sampling list that differed counted the whole run again: a cheap resume was refused).
    from engine.execution.plan import less_stored
    from engine.execution.results import finished_groups

    def reused(c):
        return less_stored(make_plan(c, _prompts(c)), c, _prompts(c), *finished_groups(c.run_dir)).reused_groups

    assert reused(_config(tmp_path, [0.5, 1.0, 1.5], life)) == 12  # two values × 3 prompts × two strategies
    assert reused(_config(tmp_path, [1.0], life)) == 6
    own = _config(tmp_path, 1.0, life)  # the same values as the generator's own list (the presets' form)
    written = {**own.to_dict()["generators"][0], "temperature": [0.5, 1.0, 1.5]}
    own.generators = config_from_dict({**own.to_dict(), "generators": [written]}).generators
    assert [g.name for g in own.generators] == ["scripted@t=0.5", "scripted@t=1", "scripted@t=1.5"]
    assert reused(own) == 12
    assert reused(_config(tmp_path, 1.0, life)) == 0  # unswept: `scripted`, a generator never sampled here
    more = _run(_config(tmp_path, [0.5, 1.0, 1.5], life))
    sample = [r for r in more.stages if r.stage.startswith("sample[")]
    assert [r.units_reused == r.units for r in sample] == [True, True, False]
    assert [r.units_reused == r.units for r in more.stages if r.stage.startswith("classify[")] == [True]
    assert {g["model"] for g in more.tables["groups"].to_pylist()} == {"scripted@t=0.5", "scripted@t=1",
                                                                       "scripted@t=1.5"}


def test_a_sweep_judged_on_traces_alone_reports_its_traces_and_quality_against_the_value(tmp_path, monkeypatch):
    # Judged on traces only, no answer count resolved: every group was left out of the sweep section, which showed
    # its heading, the figure and "(no rows)", while the traces' counts and the grades were there.
    from engine.report.data import report_data

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    gen = {"name": "g", "backend": "python:tests.support.doubles:ScriptedChat", "model": "g", "batch_size": 16,
           "options": {"think": True}}
    judge = {"name": "judge", "backend": "python:tests.support.doubles:ScriptedChat", "model": "judge"}
    cfg = config_from_dict({"run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "limit": 2}, "n": 3,
                            "strategies": ["temperature"], "sampling": {"temperature": [0.5, 1.0]},
                            "generators": [gen], "judges": [judge], "judge": {"target": "trace"},
                            "execution": {"executor": "local", "shard_size": 8}})
    result = _run(cfg)
    cells = [c for c in report_data(result, cfg)["sweep"]["cells"] if c["category"] == "all"]
    assert [c["groups"] for c in cells] == [2, 2]
    assert all(c["unique"]["value"] is None and c["unique_traces"]["value"] is not None
               and c["quality"]["value"] is not None for c in cells)
    text = write_report(result, cfg)["markdown"].read_text()
    assert "No group's answer count is resolved" in text and "| unique traces |" in text


def _prompts(cfg):
    from engine.inputs.loaders.paper import PresetReport

    prompts, _ = load_run_prompts(cfg, PresetReport(), offline=True)
    return prompts


def test_compare_works_within_a_run_across_sweep_values(tmp_path, capsys):
    from engine.cli import main
    from engine.report.compare import CompareError, compare_runs

    cfg = _config(tmp_path, [0.5, 1.0], tmp_path / "life.log")
    result = _run(cfg)
    c = compare_runs(cfg.run_dir, values=("0.5", "t=1"))
    assert c["within_run"] and c["pairs"] == ["scripted@t=0.5 vs scripted@t=1"]
    assert c["paired_groups"] == 3 * 2
    groups = {(g["prompt_id"], g["model"], g["strategy"]): g for g in result.tables["groups"].to_pylist()}
    expected = [groups[(p, "scripted@t=1", s)]["unique_mean"] - groups[(p, "scripted@t=0.5", s)]["unique_mean"]
                for (p, m, s) in groups if m == "scripted@t=0.5"]
    (overall,) = [r for r in c["by_category"] if r["category"] == "all"]
    assert overall["unique"]["value"] == pytest.approx(sum(expected) / len(expected))
    with pytest.raises(CompareError, match="its values are t=0.5, t=1"):
        compare_runs(cfg.run_dir, values=("0.5", "0.7"))
    with pytest.raises(CompareError, match="same generators"):
        compare_runs(cfg.run_dir, values=("0.5", "t=0.5"))

    assert main(["compare", str(cfg.run_dir), "--values", "0.5", "1"]) == 0
    out = capsys.readouterr().out
    assert "@ 1 vs A = run @ 0.5" in out
    assert (Path(cfg.run_dir) / "compare-1-vs-0.5" / "compare.md").is_file()
    assert main(["compare", str(cfg.run_dir)]) == 2
    assert "--values" in capsys.readouterr().err


def test_sweep_values_are_read_as_numbers_whichever_way_they_are_written(tmp_path):
    # "t=1.0" named no generator (its name says t=1), nor "t=0.5, p=0.8" (a space) or "t=.5": matched as text only.
    from engine.report.compare import CompareError, sweep_pairs

    both = config_from_dict({"run_dir": str(tmp_path / "a"), "sampling": {"temperature": [0.5, 1.0],
                                                                          "top_p": [0.8, 0.95]}})
    expected = [("smollm2-135m@t=0.5,p=0.8", "smollm2-135m@t=1,p=0.8")]
    for a, b in [("t=0.5,p=0.8", "t=1,p=0.8"), ("t=0.5,p=0.8", "t=1.0,p=0.8"),
                 ("t=.5, p=.8", "temperature=1,top_p=0.8"), ("p=0.8,t=0.5", "T=1, P=0.80")]:
        assert sweep_pairs(both, a, b) == (expected, {}), (a, b)
    with pytest.raises(CompareError, match=r"--values t=0.5: names several generators .*t=0.5,p=0.8, t=0.5,p=0.95"):
        sweep_pairs(both, "t=0.5", "t=1")
    with pytest.raises(CompareError, match="no generator of 'smollm2-135m' has that value"):
        sweep_pairs(both, "t=0.5,p=0.8", "t=2,p=0.8")
    one = config_from_dict({"run_dir": str(tmp_path / "b"), "sampling": {"temperature": [0.5, 1.0]}})
    assert sweep_pairs(one, "t=0.5", "t=1.0") == ([("smollm2-135m@t=0.5", "smollm2-135m@t=1")], {})


def test_models_sweeping_different_settings_and_values_are_each_reported_and_compared(tmp_path):
    """The paper's per-model temperatures with a top_p sweep, beside a model sweeping its own temperatures: each model
    is drawn against its own swept setting, the table tells every row apart, and `compare --values` pairs the models
    that have both values, saying which it left out."""
    import json

    from engine.report.compare import CompareError, compare_runs

    model = {"backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted", "batch_size": 8}
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "limit": 2}, "n": 3,
        "strategies": ["temperature"], "sampling": {"top_p": [0.8, 0.95]},
        "generators": [{**model, "name": "g", "temperature": 1.0}, {**model, "name": "h", "temperature": 0.5},
                       {**model, "name": "k", "temperature": [0.2, 0.9]}],
        "judges": [{**model, "name": "judge", "model": "judge"}],
        "execution": {"executor": "local", "shard_size": 4},
    })
    assert [g.name for g in cfg.generators] == ["g@p=0.8", "g@p=0.95", "h@p=0.8", "h@p=0.95", "k@t=0.2,p=0.8",
                                                "k@t=0.2,p=0.95", "k@t=0.9,p=0.8", "k@t=0.9,p=0.95"]
    result = _run(cfg)
    paths = write_report(result, cfg)
    sweep = json.loads(paths["json"].read_text())["sweep"]
    x_of = {c["base"]: c["x"] for c in sweep["cells"]}
    assert x_of == {"g": "top_p", "h": "top_p", "k": "temperature"}  # before: temperature for all (0.5 and 1 differ)
    assert sweep["x"] == "temperature / top_p"  # the title's order (it was "top_p / temperature")
    text = paths["markdown"].read_text()
    assert "| g | all | temperature | 1 | 0.8 |" in text and "| g | all | temperature | 1 | 0.95 |" in text
    assert "| k | all | temperature | 0.9 | 0.95 |" in text

    c = compare_runs(cfg.run_dir, values=("p=0.8", "p=0.95"))  # g and h have these; k's names carry t= too
    assert c["pairs"] == ["g@p=0.8 vs g@p=0.95", "h@p=0.8 vs h@p=0.95"]
    assert any("'k'" in why for why in c["left_out"])
    with pytest.raises(CompareError, match="no generator of 'g'.*no generator of 'h'"):
        compare_runs(cfg.run_dir, values=("t=0.2,p=0.8", "0.7"))


def test_a_generators_mistake_is_named_by_its_place_in_the_file_not_in_the_sweep():
    # generators[2] was named for the file's second generator, behind a first swept over two values: an override of
    # the index the message gave was out of range.
    from engine.execution.preflight import check_written_config

    http = {"backend": "http", "model": "m", "options": {"base_url": "http://127.0.0.1:9/v1"}}
    config = config_from_dict({"sampling": {"temperature": [0.5, 1.0]}, "generators": [
        {**http, "name": "g"}, {**http, "name": "h", "options": {**http["options"], "promt_per_mtok": 1}}]})
    assert config.generator_keys == ["generators[0]", "generators[0]", "generators[1]", "generators[1]"]
    with pytest.raises(ConfigError, match=r"^generators\[1\]\.options\.promt_per_mtok"):
        check_written_config(config)


def test_a_swept_models_name_may_not_be_another_generators():
    with pytest.raises(ConfigError, match="'g' twice"):
        config_from_dict({"generators": [{"name": "g", "temperature": [0.5, 1.0]}, {"name": "g", "temperature": 0.7}]})


def test_a_sweep_of_one_value_is_titled_by_its_temperature_not_top_p():
    # `temperature: [1.0]` (the README's way to start a sweep that keeps its groups) was reported "against top_p".
    from types import SimpleNamespace

    from engine.report.data import _sweep_section

    def generator(name, t, p):
        return SimpleNamespace(name=name, sweep={"base": "m", "temperature": t, "top_p": p})

    def boot(values, clusters):
        return SimpleNamespace(to_dict=lambda: {"value": None})

    group = {"model": "m@t=1", "category": "G", "strategy": "s", "prompt_id": "p", "n_responses": 2, "status": "ok",
             "unique_mean": 1.0, "quality_mean": None}
    one = _sweep_section([group], 2, SimpleNamespace(generators=[generator("m@t=1", 1.0, 0.9)]), boot)
    assert one["x"] == "temperature"
    tops = _sweep_section([group], 2, SimpleNamespace(generators=[generator("m@t=1", 1.0, 0.9),
                                                                  generator("m@p=0.5", 1.0, 0.5)]), boot)
    assert tops["x"] == "top_p"
    one_top = {**group, "model": "m@p=0.9"}  # `top_p: [0.9]`: a sweep of top_p, of one value so far
    assert _sweep_section([one_top], 2, SimpleNamespace(generators=[generator("m@p=0.9", 1.0, 0.9)]), boot)["x"] \
        == "top_p"


def test_a_sweep_cell_says_on_how_many_of_its_groups_a_measure_rests():
    # The cell's groups counted every whole group while its unique mean left out the unresolved ones (they lean
    # diverse): 2.25 over 4 of 8 groups read as a mean over all 8, and nothing in the section said otherwise.
    from engine.report.sections import _sweep_view

    def est(value, n):
        bounds = (None, None) if value is None else (value - 0.25, value + 0.25)
        return {"value": value, "low": bounds[0], "high": bounds[1], "n": n, "clusters": n, "note": ""}

    cell = {"base": "m", "category": "all", "strategy": "temperature", "temperature": 0.5, "top_p": 0.9,
            "x": "temperature", "groups": 8, "unique": est(2.25, 4), "unique_traces": est(None, 0),
            "quality": est(3.5, 8)}
    section = _sweep_view({"sweep": {"x": "temperature", "cells": [cell], "categories": []}}, "95%")[0]
    table = next(b for b in section.blocks if hasattr(b, "rows"))
    row = dict(zip(table.headers, table.rows[0]))
    assert row["unique"] == "2.25 [2.00, 2.50] (4 of 8)" and row["quality (1–5)"] == "3.50 [3.25, 3.75]"


def test_the_yardstick_gives_a_sweeps_agreement_with_the_reference_once():
    # A sweep's generators classify once, alike: the yardstick table gave one identical row per value.
    from engine.report.data import _yardstick_section

    prompts = [{"prompt_id": p, "gold_category": None} for p in ("p1", "p2")]
    rows = [{"prompt_id": p, "model": m, "category": "G", "raw": "G", "role": "own"}
            for p in ("p1", "p2") for m in ("m@t=0.5", "m@t=1")]
    rows += [{"prompt_id": p, "model": "reference", "category": c, "raw": "majority", "role": "reference"}
             for p, c in (("p1", "G"), ("p2", "H"))]
    t = {"prompts": pa.Table.from_pylist(prompts), "classifications": pa.Table.from_pylist(rows)}
    section = _yardstick_section(t, ["m@t=0.5", "m@t=1"], None, {"m@t=0.5": "m", "m@t=1": "m"})
    assert section["agreement"] == [{"model": "m", "prompts": 2, "agree": 1, "failed": 0}]


def test_a_swept_value_without_a_whole_group_is_said_and_breaks_the_line():
    # A provider failing at one temperature left that value out of the table, unsaid, and the figure's line joined
    # 0.5 straight to 1.5, as if measured at 1.0 on the way.
    from functools import partial

    from engine.report.data import _sweep_section
    from engine.report.figures import sweep_series
    from engine.report.sections import _sweep_view
    from engine.report.stats import bootstrap_mean_ci

    cfg = config_from_dict({"sampling": {"temperature": [0.5, 1.0, 1.5]}, "generators": [{"name": "g"}]})
    groups = [{"model": f"g@t={t}", "status": "error" if t == "1" else "ok", "n_responses": 0 if t == "1" else 3,
               "category": "G", "strategy": "temperature", "prompt_id": p, "unique_mean": 2.0,
               "unique_trace_mean": None, "quality_mean": 4.0} for t in ("0.5", "1", "1.5") for p in ("p1", "p2")]
    sweep = _sweep_section(groups, 3, cfg, partial(bootstrap_mean_ci, resamples=50))
    cells = [(c["category"], c["temperature"], c["groups"]) for c in sweep["cells"]]
    assert cells == [("G", 0.5, 2), ("G", 1.0, 0), ("G", 1.5, 2), ("all", 0.5, 2), ("all", 1.0, 0), ("all", 1.5, 2)]
    (line,) = sweep_series([c for c in sweep["cells"] if c["category"] == "all"], ["temperature"], "temperature")
    assert line["xs"] == [0.5, 1.0, 1.5] and math.isnan(line["ys"][1])
    table = next(b for b in _sweep_view({"sweep": sweep}, "95%")[0].blocks if hasattr(b, "rows"))
    assert ["g", "all", "temperature", "1", "0.9", "0", "n/a", "n/a"] in table.rows
