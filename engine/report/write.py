"""Writing a run's report into its run directory: report.json, report.md with figures/*.png, report.html
(self-contained), and run_stats.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from engine.execution.store import Store, atomic_write_bytes, check_no_links
from engine.report.data import report_data
from engine.report.explore import write_explorer
from engine.report.html import render_html
from engine.report.markdown import render_markdown
from engine.report.sections import build_sections

def build_figures(data: dict[str, Any]) -> dict[str, bytes]:
    """Every figure the sections reference, as PNG bytes by name (see engine.report.figures)."""
    # Imported here: matplotlib is only needed to draw, not to read settings or compute numbers.
    from engine.report import figures as F

    u, t, sp, j = data["unique"], data["tradeoff"], data["spearman"], data["judging"]
    figs = {
        "figure2_unique": F.figure2_unique([c for c in u["cells"] if c["category"] in u["categories"]],
                                           models=data["models"], strategies=data["strategies"],
                                           categories=u["categories"], n=data["n"]),
        "spearman": F.spearman_bars(sp["rows"], metrics=sp["metrics"], categories=sp["categories"]),
    }
    if data.get("sweep"):
        sw = data["sweep"]
        figs["sweep"] = F.sweep_lines(sw["cells"], strategies=data["strategies"], categories=sw["categories"],
                                      x=sw["x"], n=data["n"])
    if data["classification"]:
        figs["confusion"] = F.confusion_heatmap([{"model": c["model"], **c["confusion"]}
                                                 for c in data["classification"]])
    if data["throughput"]["stages"]:
        figs["throughput"] = F.stage_throughput(data["throughput"]["stages"])
    if not t.get("note"):
        figs["figure3a_general"] = F.figure3a_general(t["points_3a"], strategies=data["strategies"],
                                                      quality_label=t["quality_3a"],
                                                      likert=not t["reward_available"])
        figs["figure3b_functional"] = F.figure3b_functional(t["points_3b"], strategies=data["strategies"],
                                                            n=data["n"])
    if not j["single_judge"]:
        figs["judge_agreement"] = F.judge_agreement(j["judges"], j["agreement"])
    return figs


def write_report(result, config) -> dict[str, Path]:
    """Write the report into the run directory.

    Args:
        result: the RunResult.
        config: its RunConfig.

    Returns:
        Paths by name: "markdown" (report.md), "html" (report.html, self-contained), "json" (report.json, every
        number), "figures" (the folder of PNG files), "explore" (explore.html, every group), and "run_stats"
        (run_stats.json, throughput) when the result has stage records.
    """
    check_no_links(result.run_dir)  # stale figures are deleted: never where a link points
    store = Store(result.run_dir)
    data = report_data(result, config)
    figs = build_figures(data)
    figure_dir = Path(result.run_dir) / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for stale in figure_dir.glob("*.png"):
        if stale.stem not in figs:  # e.g. judge_agreement.png of an earlier report with two judges
            stale.unlink()
    for name, png in figs.items():
        atomic_write_bytes(figure_dir / f"{name}.png", png)
    paths = {
        "json": store.write_text("report.json", orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()),
        "markdown": store.write_text("report.md", render_markdown(data)),
        "html": store.write_text("report.html", render_html(build_sections(data), figs,
                                                            title=f"taskdiv report — {Path(result.run_dir).name}")),
        "figures": figure_dir,
        "explore": write_explorer(result.tables, result.run_dir),
    }
    # Without stage records (a report re-rendered from a directory that had none) there is no throughput to
    # record, and an empty run_stats.json would read as a run that took no time.
    if result.stages:
        paths["run_stats"] = store.write_text("run_stats.json",
                                              orjson.dumps(data["throughput"], option=orjson.OPT_INDENT_2).decode())
    return paths
