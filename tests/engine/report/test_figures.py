"""engine.report.figures: every figure draws PNG bytes from report data, including from empty and undefined inputs."""

import io
import math
import struct

import numpy as np
import pytest
from matplotlib.image import imread

from engine.report import figures as F

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def ink(png: bytes) -> float:
    """Share of pixels that are not (near) white: 0 for a blank image."""
    rgb = imread(io.BytesIO(png))[..., :3]
    return float((rgb.min(axis=2) < 0.9).mean())


def est(value, low=None, high=None):
    return {"value": value, "low": low, "high": high, "n": 3, "clusters": 3, "note": ""}


STRATEGIES = ["temperature", "system_general", "regen_anchored"]


def cells():
    out = []
    for m in ("model-a", "model-b"):
        for k, cat in enumerate("ADG"):
            for j, s in enumerate(STRATEGIES):
                v = 1.0 + k + 0.3 * j
                out.append({"model": m, "category": cat, "strategy": s, "estimate": est(v, v - 0.2, v + 0.3),
                            "groups": 3})
    return out


def test_figure2_has_one_panel_per_model_and_draws_bars():
    one = F.figure2_unique([c for c in cells() if c["model"] == "model-a"], models=["model-a"],
                           strategies=STRATEGIES, categories=list("ADG"), n=5)
    two = F.figure2_unique(cells(), models=["model-a", "model-b"], strategies=STRATEGIES, categories=list("ADG"),
                           n=5)
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert w1 == w2 and h2 > 1.5 * h1  # a second panel below the first
    assert ink(one) > 0.05


def test_figure2_marks_a_cell_without_a_value_not_a_zero_bar():
    # A cell whose groups all went unresolved was drawn as a bar of height 0, like a count of 0.
    def drawn(value):
        cs = [c for c in cells() if c["model"] == "model-a"]
        for c in cs:
            if c["category"] == "G" and c["strategy"] == "temperature":
                c["estimate"] = est(value, value, value)
        return F.figure2_unique(cs, models=["model-a"], strategies=STRATEGIES, categories=list("ADG"), n=5)

    assert ink(drawn(None)) > ink(drawn(0.0))


def test_figures_are_deterministic():
    kwargs = dict(models=["model-a"], strategies=STRATEGIES, categories=list("ADG"), n=5)
    assert F.figure2_unique(cells(), **kwargs) == F.figure2_unique(cells(), **kwargs)


def test_tradeoff_figures_draw_points_with_intervals_and_survive_missing_values():
    pts = [{"model": "m", "strategy": s, "groups": 4, "x": est(0.5 + 0.1 * k, 0.45 + 0.1 * k, 0.55 + 0.1 * k),
            "y": est(4.0 - 0.2 * k, 3.8 - 0.2 * k, 4.1 - 0.2 * k)} for k, s in enumerate(STRATEGIES)]
    pts.append({"model": "m", "strategy": "regen_general", "groups": 0, "x": est(None), "y": est(None)})
    a = F.figure3a_general(pts, strategies=STRATEGIES, quality_label="checklist quality (1–5)", likert=True)
    b = F.figure3b_functional(pts, strategies=STRATEGIES, n=5)
    empty = F.figure3b_functional([], strategies=STRATEGIES, n=5)
    for png in (a, b, empty):
        png_size(png)
    assert ink(a) > ink(empty)


def test_confusion_heatmap_one_panel_per_model_and_empty_matrix():
    counts = np.diag([2, 1, 3]).tolist()
    m = {"rows": list("ABC"), "columns": list("ABC"), "counts": counts}
    one = F.confusion_heatmap([{"model": "a", **m}])
    two = F.confusion_heatmap([{"model": "a", **m}, {"model": "b", **m}])
    assert png_size(two)[0] > 1.5 * png_size(one)[0]
    png_size(F.confusion_heatmap([{"model": "a", "rows": ["A"], "columns": ["A"], "counts": [[0]]}]))
    png_size(F.confusion_heatmap([]))


def test_spearman_bars_mark_undefined_values():
    rows = [{"category": c, "metric": m, "estimate": est(r, r - 0.2, min(r + 0.2, 1.0)) if r is not None
             else est(None)}
            for c, r in (("A", 0.5), ("G", None), ("all", -0.3)) for m in ("vocabulary", "embedding")]
    png = F.spearman_bars(rows, metrics=["vocabulary", "embedding"], categories=["A", "G", "all"])
    assert ink(png) > 0.02


@pytest.mark.parametrize("kappa", [0.4, None])
def test_judge_agreement_heatmap(kappa):
    png = F.judge_agreement(["j1", "j2", "j3"], [
        {"a": "j1", "b": "j2", "verdict_agreement": 0.8, "kappa": kappa},
        {"a": "j1", "b": "j3", "verdict_agreement": 0.7, "kappa": 0.2},
        {"a": "j2", "b": "j3", "verdict_agreement": None, "kappa": None},
    ])
    assert ink(png) > 0.02


def test_throughput_and_compare_figures():
    stages = [{"stage": "sample[m]", "wall_s": 12.0, "rows_per_s": 3.5}, {"stage": "metrics", "wall_s": 0.0,
                                                                            "rows_per_s": None}]
    png_size(F.stage_throughput(stages))
    png_size(F.stage_throughput([]))
    forest = F.compare_forest([{"category": "A", "estimate": est(0.5, 0.1, 0.9)},
                               {"category": "G", "estimate": est(None)}], label_a="a", label_b="b")
    assert ink(forest) > 0.01
    png_size(F.compare_forest([], label_a="a", label_b="b"))


def test_error_bar_lengths_come_from_the_interval():
    assert F._err(est(1.0, 0.5, 1.75)) == (0.5, 0.75)
    assert F._err(est(1.0)) == (0.0, 0.0)
    assert math.isnan(F._num(None))


def test_a_sweep_of_temperature_and_top_p_draws_a_line_per_top_p():
    def cell(strategy, t, p, value):
        return {"base": "m", "category": "all", "strategy": strategy, "temperature": t, "top_p": p,
                "unique": {"value": value, "low": value - 0.5, "high": value + 0.5}}

    cells = [cell("temperature", t, p, 1 + t + p) for t in (0.5, 1.0) for p in (0.9, 1.0)]
    lines = F.sweep_series(cells, ["temperature", "regen_general"], "temperature")
    # Two lines, one per top_p, each over the temperatures — not one line through all four points.
    assert [(s["label"], s["dash"], s["xs"], s["ys"]) for s in lines] == [
        ("temperature, p=0.9", 0, [0.5, 1.0], [2.4, 2.9]), ("temperature, p=1", 1, [0.5, 1.0], [2.5, 3.0])]
    assert lines[0]["lo"] == lines[0]["hi"] == [0.5, 0.5]
    # One swept setting: one line per strategy, labelled by the strategy alone.
    single = [c for c in cells if c["top_p"] == 0.9]
    assert [s["label"] for s in F.sweep_series(single, ["temperature"], "temperature")] == ["temperature"]
    png = F.sweep_lines(cells, strategies=["temperature"], categories=["all"], x="temperature", n=5)
    assert png.startswith(b"\x89PNG")
    # A value without an estimate breaks the line (it was left out, and the line joined its neighbours).
    gap = [cell("temperature", t, 1.0, 2.0) for t in (0.5, 1.5)] + [
        {**cell("temperature", 1.0, 1.0, 0.0), "unique": {"value": None, "low": None, "high": None}}]
    (line,) = F.sweep_series(gap, ["temperature"], "temperature")
    assert line["xs"] == [0.5, 1.0, 1.5] and math.isnan(line["ys"][1]) and line["lo"][1] == line["hi"][1] == 0.0
    assert F.sweep_lines(gap, strategies=["temperature"], categories=["all"], x="temperature", n=5)[:4] == b"\x89PNG"
    # Quality against the value too (the README promised it; only unique responses were drawn): a row of its own.
    graded = [{**c, "quality": {"value": 4 - c["temperature"], "low": 3.5 - c["temperature"], "high": 4.5}}
              for c in gap]
    (line,) = F.sweep_series(graded, ["temperature"], "temperature", "quality")
    assert line["ys"] == [3.5, 3.0, 2.5] and line["lo"] == [0.5, 0.5, 0.5] and line["hi"] == [1.0, 1.5, 2.0]
    one, two = (F.sweep_lines(cs, strategies=["temperature"], categories=["all"], x="temperature", n=5)
                for cs in (gap, graded))
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(two)).size[1] > 1.5 * Image.open(io.BytesIO(one)).size[1]


def test_names_with_dollar_signs_are_drawn_as_text():
    # Model, strategy and judge names come from configs and audited files: matplotlib read "$…$" in them as math,
    # and a malformed one raised at save time, losing every file of the report.
    models = ["gpt$x^{$y"]
    rows = [{**c, "model": models[0], "strategy": "cost-$5-to-$10"} for c in cells() if c["model"] == "model-a"]
    png = F.figure2_unique(rows, models=models, strategies=["cost-$5-to-$10"], categories=list("ADG"), n=5)
    assert ink(png) > 0.02
    assert ink(F.judge_agreement(["a$\\x$", "b"], [{"a": "a$\\x$", "b": "b", "kappa": 0.5, "unique_exact": 0.8}])) > 0
    import matplotlib

    assert matplotlib.rcParams["text.parse_math"] is True  # the caller's setting is left as it was
