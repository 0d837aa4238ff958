"""The report of a run, and comparisons of runs.

`data` computes every number as plain data (report.json), `run_stats` the throughput record (run_stats.json),
`run_shape` what a run's groups hold (the group size its means are over, its strategies: an audited file's own),
`sections` turns the numbers into a small document model that `markdown` and `html` both render (so the two formats
show the same numbers), `figures` draws the PNGs, `stats` holds the bootstrap and agreement statistics, `compare`
pairs two runs. `write_report` writes all of it into the run directory.

May import: engine.config, engine.errors, engine.method.taxonomy, engine.execution (results, store). Never
engine.cli, and no model backend.
"""

from __future__ import annotations

from engine.report.write import write_report

__all__ = ["write_report"]
