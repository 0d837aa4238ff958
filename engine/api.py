"""A short Python API for notebooks and scripts: load (or build) a config, run it, read the tables and the report.

    from engine.api import load_config, run

    config = load_config("configs/demo.yaml", {"prompts.per_category": 1, "strategies": ["temperature"]})
    audit = run(config)
    audit.tables["groups"].to_pandas()[["category", "strategy", "unique_mean"]]
    audit.report_html          # path of the self-contained report

`run` does what `python engine/run.py --config …` does (preflight, every stage, resume from the run directory,
the report) and returns an `Audit` instead of printing a summary. `open_run` reads a finished run back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.config import RunConfig, config_from_dict
from engine.config import load_config as _load_config

__all__ = ["Audit", "build_config", "load_config", "open_run", "run"]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run config from a YAML file, with dotted overrides ({"n": 3, "judges.0.backend": "http"})."""
    return _load_config(path, overrides)


def build_config(data: dict[str, Any] | None = None, **keys: Any) -> RunConfig:
    """A run config built in code, checked like a file: `build_config({"n": 3}, run_dir="runs/x")`."""
    return config_from_dict({**(data or {}), **keys}, source="<build_config>")


@dataclass
class Audit:
    """A finished run.

    Attributes:
        config: the run's config.
        result: the RunResult (tables, stage records, wall time, peak memory).
        paths: the report's files by name ("html", "markdown", "json", "figures", "run_stats").
    """

    config: RunConfig
    result: Any
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def tables(self) -> dict[str, pa.Table]:
        """The run's tables by name (prompts, classifications, samples, responses, judgments, components, metrics,
        groups, and quality/accuracy/rewards where measured), as Arrow tables (`.to_pandas()` for pandas)."""
        return self.result.tables

    @property
    def run_dir(self) -> Path:
        return Path(self.result.run_dir)

    @property
    def report_html(self) -> Path | None:
        return self.paths.get("html")

    @property
    def failed_shards(self) -> dict[str, dict[str, str]]:
        """Stage → {shard: reason} for shards that failed for good (rerun to compute them)."""
        return self.result.failed_shards()


def run(config: RunConfig | str | Path, *, overrides: dict[str, Any] | None = None, progress: bool = False,
        report: bool = True) -> Audit:
    """Run an audit.

    Args:
        config: a RunConfig, or the path of a YAML config.
        overrides: dotted keys applied to a config loaded from a path.
        progress: show per-stage progress bars.
        report: write the report (report.html, report.md, report.json, run_stats.json).

    Returns:
        The Audit. Shards that failed for good are in `failed_shards` (the run itself does not raise for them).

    Raises:
        TaskdivError: a config, input or preflight problem, before any model is called.
    """
    from engine.execution.pipeline import Pipeline
    from engine.report import write_report

    if not isinstance(config, RunConfig):
        config = load_config(config, overrides)
    elif overrides:
        raise ValueError("overrides apply to a config loaded from a path; edit the RunConfig or use build_config")
    pipeline = Pipeline(config, progress=progress)
    try:
        result = pipeline.run()
        paths = write_report(result, config) if report else {}  # still under the run directory's lock
    finally:
        pipeline.close()
    return Audit(config, result, paths)


def open_run(run_dir: str | Path) -> Audit:
    """A finished run read back from its directory (tables, config, and the report's paths where written)."""
    from engine.execution.results import read_run

    result, config = read_run(run_dir)
    root = Path(run_dir)
    names = {"html": "report.html", "markdown": "report.md", "json": "report.json", "run_stats": "run_stats.json"}
    paths = {k: root / v for k, v in names.items() if (root / v).is_file()}
    return Audit(config, result, paths)
