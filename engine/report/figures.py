"""The report's figures, one function each, every one returning PNG bytes.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot: no global
figure registry, no GUI backend, nothing left open between calls. The inputs are the plain dicts of
`engine.report.data.report_data` (an estimate is {"value", "low", "high", ...} with None where undefined), so a figure
can be redrawn from report.json.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import functools

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974",
           "#64B5CD")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _plain_text(draw):
    """Draw with every label as plain text: names come from configs and audited files (untrusted), and matplotlib
    reads "$…$" as math — "gpt$x^{$y" raised at save time and lost every file of the report; "cost-$5-to-$10" was
    drawn as math."""
    @functools.wraps(draw)
    def plain(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)
    return plain


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" metadata: the same data gives the same bytes across matplotlib patch versions.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _err(est: dict[str, Any]) -> tuple[float, float]:
    """Distances from the value to the interval bounds (0 where there is no interval, so no bar is drawn)."""
    v, lo, hi = _num(est.get("value")), _num(est.get("low")), _num(est.get("high"))
    if math.isnan(v) or math.isnan(lo) or math.isnan(hi):
        return 0.0, 0.0
    return max(v - lo, 0.0), max(hi - v, 0.0)


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


@_plain_text
def figure2_unique(cells: Sequence[dict[str, Any]], *, models: Sequence[str], strategies: Sequence[str],
                   categories: Sequence[str], n: int) -> bytes:
    """The paper's Figure 2: mean functionally unique responses per category × strategy, one panel per model.

    Args:
        cells: {"model", "category", "strategy", "estimate": {"value", "low", "high"}, "groups"} per cell.
        models: panel order.
        strategies: bar order within a category (and legend).
        categories: x-axis order (letters; "?" for groups without a category).
        n: responses per group (the y axis runs 0..n).

    Returns:
        PNG bytes.
    """
    models = list(models) or ["(no model)"]
    fig = Figure(figsize=(max(7.0, 1.1 * len(categories) + 2), 3.2 * len(models) + 0.6))
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    by_key = {(c["model"], c["category"], c["strategy"]): c for c in cells}
    width = 0.8 / max(len(strategies), 1)
    x = np.arange(len(categories))
    for ax, model in zip(axes, models):
        drawn = False
        for k, strategy in enumerate(strategies):
            vals, errs = [], [[], []]
            for cat in categories:
                cell = by_key.get((model, cat, strategy))
                est = cell["estimate"] if cell else {}
                vals.append(_num(est.get("value")))
                lo, hi = _err(est)
                errs[0].append(lo)
                errs[1].append(hi)
            if all(math.isnan(v) for v in vals):
                continue
            drawn = True
            positions = x + (k - (len(strategies) - 1) / 2) * width
            ax.bar(positions, np.nan_to_num(vals, nan=0.0), width,
                   yerr=errs, capsize=2, label=strategy, color=PALETTE[k % len(PALETTE)],
                   error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
            for p, v in zip(positions, vals):  # no value (no complete group with a count): said, never a 0 bar
                if math.isnan(v):
                    ax.text(p, 0.02 * n, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="#666666")
        ax.set_title(f"{model}: functionally unique responses (of {n})", fontsize=10)
        ax.set_xticks(x, list(categories))
        ax.set_ylim(0, n)
        ax.axhline(1, color="#999999", lw=0.6, ls=":")
        ax.set_ylabel("unique responses")
        if drawn:
            ax.legend(fontsize=7, ncol=min(len(strategies), 5), loc="upper left", frameon=False)
        else:
            _no_data(ax, "no complete groups")
    axes[-1].set_xlabel("task category (bars: mean over prompts; whiskers: bootstrap CI; n/a: no complete group "
                        "with a resolved count)")
    fig.tight_layout()
    return _png(fig)


def _tradeoff(points: Sequence[dict[str, Any]], *, xlabel: str, ylabel: str, title: str,
              strategies: Sequence[str], likert: bool) -> bytes:
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    models = sorted({p["model"] for p in points})
    drawn = 0
    for p in points:
        xv, yv = _num(p["x"].get("value")), _num(p["y"].get("value"))
        if math.isnan(xv) or math.isnan(yv):
            continue
        k = list(strategies).index(p["strategy"]) if p["strategy"] in strategies else len(strategies)
        xe, ye = _err(p["x"]), _err(p["y"])
        ax.errorbar([xv], [yv], xerr=[[xe[0]], [xe[1]]], yerr=[[ye[0]], [ye[1]]], fmt=MARKERS[
            models.index(p["model"]) % len(MARKERS)], color=PALETTE[k % len(PALETTE)], capsize=3, ms=7,
            label=f"{p['strategy']}" + (f" ({p['model']})" if len(models) > 1 else ""))
        drawn += 1
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if drawn:
        ax.legend(fontsize=7, frameon=False)
        ax.margins(0.15)
        if likert:
            # The whole 1–5 scale, as in the paper: a 0.1 difference must not look like a cliff.
            ax.set_ylim(0.8, 5.2)
    else:
        _no_data(ax, "no groups with both values")
    fig.tight_layout()
    return _png(fig)


@_plain_text
def figure3a_general(points: Sequence[dict[str, Any]], *, strategies: Sequence[str], quality_label: str,
                     likert: bool) -> bytes:
    """The paper's Figure 3a: a general metric (vocabulary diversity) against quality, one point per strategy.

    Args:
        points: {"model", "strategy", "x": estimate of vocabulary diversity, "y": estimate of quality}.
        strategies: colour order.
        quality_label: the y axis (reward-model score, or checklist quality where no reward model ran).
        likert: the y axis is the 1–5 checklist scale (drawn whole); False for a reward score (auto range).

    Returns:
        PNG bytes.
    """
    return _tradeoff(points, xlabel="vocabulary diversity (mean pairwise Jaccard distance)", ylabel=quality_label,
                     title="General diversity vs quality (Fig. 3a)", strategies=strategies, likert=likert)


@_plain_text
def figure3b_functional(points: Sequence[dict[str, Any]], *, strategies: Sequence[str], n: int) -> bytes:
    """The paper's Figure 3b: task-anchored functional diversity against checklist quality, per strategy.

    Args:
        points: {"model", "strategy", "x": estimate of unique responses, "y": estimate of checklist quality}.
        strategies: colour order.
        n: responses per group (for the axis label).

    Returns:
        PNG bytes.
    """
    return _tradeoff(points, xlabel=f"functionally unique responses (of {n})", ylabel="checklist quality (1–5)",
                     title="Functional diversity vs checklist quality (Fig. 3b)", strategies=strategies,
                     likert=True)


@_plain_text
def confusion_heatmap(matrices: Sequence[dict[str, Any]]) -> bytes:
    """Classification confusion matrices, one panel per model: rows gold, columns predicted.

    Args:
        matrices: {"model", "rows": [gold labels], "columns": [predicted labels], "counts": [[int]]}.

    Returns:
        PNG bytes.
    """
    matrices = list(matrices)
    fig = Figure(figsize=(5.6 * max(len(matrices), 1), 5.0))
    axes = fig.subplots(1, max(len(matrices), 1), squeeze=False)[0]
    for ax, m in zip(axes, matrices):
        counts = np.asarray(m["counts"], dtype=float)
        if counts.size == 0 or counts.sum() == 0:
            _no_data(ax, "no prompts with gold labels")
            ax.set_title(m["model"], fontsize=10)
            continue
        # Colour by row share so that small categories are as readable as large ones; the numbers are counts.
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(m["columns"])), m["columns"])
        ax.set_yticks(range(len(m["rows"])), m["rows"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{m['model']}: task classification", fontsize=10)
    if not matrices:
        _no_data(axes[0], "no classifications")
    fig.tight_layout()
    return _png(fig)


@_plain_text
def spearman_bars(rows: Sequence[dict[str, Any]], *, metrics: Sequence[str], categories: Sequence[str]) -> bytes:
    """Spearman's rho of each general metric with functional diversity, per category, with bootstrap CIs.

    Args:
        rows: {"category", "metric", "estimate": {"value", "low", "high"}}.
        metrics: bar order (and legend) within a category.
        categories: x-axis order ("all" for the pooled row).

    Returns:
        PNG bytes; undefined correlations are marked "n/a" at zero.
    """
    fig = Figure(figsize=(max(7.0, 1.0 * len(categories) + 2), 3.8))
    ax = fig.subplots()
    by_key = {(r["category"], r["metric"]): r["estimate"] for r in rows}
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(categories))
    for k, metric in enumerate(metrics):
        vals, errs = [], [[], []]
        for cat in categories:
            est = by_key.get((cat, metric), {})
            vals.append(_num(est.get("value")))
            lo, hi = _err(est)
            errs[0].append(lo)
            errs[1].append(hi)
        pos = x + (k - (len(metrics) - 1) / 2) * width
        ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, yerr=errs, capsize=2, label=metric,
               color=PALETTE[k % len(PALETTE)], error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for p, v in zip(pos, vals):
            if math.isnan(v):
                ax.text(p, 0.02, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="#666666")
    ax.axhline(0, color="#333333", lw=0.7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(x, list(categories))
    ax.set_ylabel("Spearman ρ with unique responses")
    ax.set_title("Do general metrics track functional diversity? (per category)", fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=len(metrics))
    fig.tight_layout()
    return _png(fig)


@_plain_text
def judge_agreement(judges: Sequence[str], pairs: Sequence[dict[str, Any]]) -> bytes:
    """Judge-judge agreement: the share of groups with the same unique count (upper triangle) and Cohen's kappa
    over the agreement sample's pairs (lower triangle).

    Args:
        judges: the judges, in axis order.
        pairs: {"a", "b", "unique_exact", "kappa"} per judge pair (values may be None).

    Returns:
        PNG bytes.
    """
    k = len(judges)
    fig = Figure(figsize=(1.3 * k + 3, 1.1 * k + 2))
    ax = fig.subplots()
    grid = np.full((k, k), np.nan)
    pos = {j: i for i, j in enumerate(judges)}
    for p in pairs:
        i, j = sorted((pos[p["a"]], pos[p["b"]]))
        grid[i, j] = _num(p.get("unique_exact"))
        grid[j, i] = _num(p.get("kappa"))
    np.fill_diagonal(grid, 1.0)
    ax.imshow(np.nan_to_num(grid, nan=0.0), cmap="Greens", vmin=-0.2, vmax=1, aspect="auto")
    for i in range(k):
        for j in range(k):
            text = "–" if i == j else ("n/a" if math.isnan(grid[i, j]) else f"{grid[i, j]:.2f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(k), list(judges), rotation=30, ha="right")
    ax.set_yticks(range(k), list(judges))
    ax.set_title("Judge agreement: same unique count (upper), Cohen's κ on the agreement sample (lower)",
                 fontsize=9)
    fig.tight_layout()
    return _png(fig)


@_plain_text
def stage_throughput(stages: Sequence[dict[str, Any]]) -> bytes:
    """Each stage's span on the run's clock (from its start when known: streaming stages overlap), annotated with
    its wall time and rows per second.

    Args:
        stages: {"stage", "wall_s", "rows_per_s", "start_s" (optional)} per stage, in run order.

    Returns:
        PNG bytes.
    """
    stages = list(stages)
    fig = Figure(figsize=(7.0, 0.45 * max(len(stages), 1) + 1.2))
    ax = fig.subplots()
    if not stages:
        _no_data(ax, "no stages")
        return _png(fig)
    y = np.arange(len(stages))[::-1]
    walls = [s["wall_s"] for s in stages]
    timed = all(s.get("start_s") is not None for s in stages)
    starts = [s["start_s"] if timed else 0.0 for s in stages]
    ax.barh(y, walls, left=starts, color=PALETTE[0])
    for yy, s, x0 in zip(y, stages, starts):
        rate = s.get("rows_per_s")
        ax.text(x0 + s["wall_s"], yy, f"  {s['wall_s']:.1f} s" + (f", {rate:.2f} rows/s" if rate else ""),
                va="center", fontsize=7)
    ax.set_yticks(y, [s["stage"] for s in stages], fontsize=8)
    ax.set_xlabel("seconds since the run started" if timed else "wall time (s)")
    ax.set_xlim(0, max([a + b for a, b in zip(starts, walls)] + [1e-3]) * 1.45)
    ax.set_title("Run throughput by stage", fontsize=10)
    fig.tight_layout()
    return _png(fig)


@_plain_text
def compare_forest(rows: Sequence[dict[str, Any]], *, label_a: str, label_b: str) -> bytes:
    """Paired differences B − A of unique responses per category, with bootstrap CIs (a forest plot).

    Args:
        rows: {"category", "estimate": {"value", "low", "high"}} per category, top to bottom.
        label_a, label_b: the two runs' names (for the axis label).

    Returns:
        PNG bytes.
    """
    rows = list(rows)
    fig = Figure(figsize=(6.4, 0.45 * max(len(rows), 1) + 1.4))
    ax = fig.subplots()
    if not rows:
        _no_data(ax, "no paired groups")
        return _png(fig)
    y = np.arange(len(rows))[::-1]
    for yy, r in zip(y, rows):
        v = _num(r["estimate"].get("value"))
        if math.isnan(v):
            ax.text(0, yy, "n/a", ha="center", va="center", fontsize=7, color="#666666")
            continue
        lo, hi = _err(r["estimate"])
        ax.errorbar([v], [yy], xerr=[[lo], [hi]], fmt="o", color=PALETTE[0], capsize=3)
    ax.axvline(0, color="#333333", lw=0.7)
    ax.set_yticks(y, [r["category"] for r in rows])
    ax.set_xlabel(f"unique responses: {label_b} − {label_a} (> 0: B more diverse)")
    ax.set_title("Paired per-prompt differences (bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def sweep_series(cells: Sequence[dict[str, Any]], strategies: Sequence[str], x: str,
                 measure: str = "unique") -> list[dict[str, Any]]:
    """The lines of one panel of `sweep_lines`: one per strategy, and per value of the other setting when both were
    swept (temperature and top_p: a line that joined both would zig-zag between unlabelled points at each x). Each:
    strategy, label, dash (0, 1, … by the other setting's value), xs, ys, lo, hi (error bar lengths) of the cells'
    `measure` ("unique" or "quality"). A value without an estimate is NaN in ys, so that the line breaks there
    (joined across it, the line said the measure moved straight from one neighbour to the other)."""
    other = "top_p" if x == "temperature" else "temperature"
    others = sorted({c[other] for c in cells if c.get(other) is not None})
    out = []
    for strategy in strategies:
        for k, value in enumerate(others or [None]):
            line = sorted((c for c in cells if c["strategy"] == strategy
                           and (value is None or c.get(other) == value)), key=lambda c: c[x])
            est = [c.get(measure) or {} for c in line]
            if all(e.get("value") is None for e in est):
                continue
            ys = [e["value"] if e.get("value") is not None else math.nan for e in est]
            out.append({
                "strategy": strategy, "dash": k,
                "label": strategy if len(others) < 2 else f"{strategy}, {'p' if other == 'top_p' else 't'}={value:g}",
                "xs": [c[x] for c in line], "ys": ys,
                "lo": [y - e["low"] if e.get("low") is not None and not math.isnan(y) else 0.0
                       for y, e in zip(ys, est)],
                "hi": [e["high"] - y if e.get("high") is not None and not math.isnan(y) else 0.0
                       for y, e in zip(ys, est)],
            })
    return out


@_plain_text
def sweep_lines(cells: Sequence[dict[str, Any]], *, strategies: Sequence[str], categories: Sequence[str], x: str,
                n: int) -> bytes:
    """Unique responses and quality against a swept sampling setting, one panel per category (and all), one line per
    strategy (and per value of the other setting when both were swept: `sweep_series`), with the intervals as error
    bars; per base model a row of panels of unique responses, and one of quality where any cell has a grade.

    Args:
        cells: {"base", "category", "strategy", "temperature", "top_p", "x" (the base's swept setting),
            "unique": estimate, "quality": estimate (optional)}.
        strategies: colour order.
        categories: panel order ("all" first).
        x: "temperature" or "top_p", for cells without their own "x".
        n: responses per group (the y axis's top).

    Returns:
        PNG bytes.
    """
    cells = list(cells)
    bases = sorted({c["base"] for c in cells}) or ["–"]
    panels = ["all", *[c for c in categories if c != "all"]]
    rows = [(base, "unique") for base in bases]
    for base in bases:
        if any((c.get("quality") or {}).get("value") is not None for c in cells if c["base"] == base):
            rows.insert(rows.index((base, "unique")) + 1, (base, "quality"))
    fig = Figure(figsize=(2.6 * len(panels) + 1.0, 2.6 * len(rows) + 0.8))
    axes = fig.subplots(len(rows), len(panels), squeeze=False)
    colour = {s: PALETTE[k % len(PALETTE)] for k, s in enumerate(strategies)}
    dashes = ["-", "--", ":", "-."]
    labelled: dict[str, Any] = {}  # legend entries, each line once (the quality rows repeat the unique rows')
    for row, (base, measure) in zip(axes, rows):
        # Each model's own swept setting (models may sweep different ones); `x` where the cells do not say.
        bx = next((c["x"] for c in cells if c["base"] == base and c.get("x")), x)
        for ax, cat in zip(row, panels):
            mine = [c for c in cells if c["base"] == base and c["category"] == cat]
            if not mine:
                _no_data(ax)
            for line in sweep_series(mine, strategies, bx, measure):
                drawn = ax.errorbar(line["xs"], line["ys"], yerr=[line["lo"], line["hi"]], marker="o", ms=3, lw=1,
                                    capsize=2, color=colour[line["strategy"]],
                                    linestyle=dashes[line["dash"] % len(dashes)], label=line["label"])
                labelled.setdefault(line["label"], drawn)
            ax.set_ylim(*((0.8, n + 0.2) if measure == "unique" else (0.8, 5.2)))
            title = f"{base} · {cat}" if len(bases) > 1 else cat
            ax.set_title(title if measure == "unique" else f"{title} · quality", fontsize=9)
            ax.set_xlabel(bx, fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel(f"unique (of {n})" if measure == "unique" else "quality (1–5)", fontsize=8)
    handles, labels = list(labelled.values()), list(labelled)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _png(fig)
