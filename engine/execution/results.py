"""What a run produced: its tables, what each stage did, and reading a finished run back from its directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from engine.config import RunConfig, config_from_dict, lenient_settings, load_yaml
from engine.errors import RunDirError, TaskdivError

log = logging.getLogger(__name__)


@dataclass
class StageRecord:
    """What one stage did, for the report's throughput section."""

    stage: str
    units: int = 0
    units_reused: int = 0
    rows: int = 0
    wall_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # shard key → why it failed (left for a rerun)
    rows_reused: int = 0  # rows of missed shards found finished in earlier shards (never computed twice)
    rows_retried: int = 0  # rows computed again because an earlier run's backend call failed transiently
    rows_transient: int = 0  # rows whose backend call failed transiently in this run (a rerun computes them)
    rows_gave_up: int = 0  # rows still failed after execution.row_retries reruns (kept as failed)
    # Rows failed in this run that a rerun sends again (attempts left under execution.row_retries): rows_transient
    # less those that failed on their last allowed attempt.
    rows_to_retry: int = 0
    # Stored shards whose rows to retry failed again with the whole batch (the backend refused: a revoked key, a
    # server gone): shard key → why. The stored shard stands, its rows still marked for the next rerun.
    retry_failed: dict[str, str] = field(default_factory=dict)
    backend: dict[str, float] = field(default_factory=dict)  # summed batch counters: calls, retries, tokens…
    start_s: float | None = None  # when the stage took its first unit, in seconds since the run started

    def recorded(self) -> dict[str, Any]:
        """This record as run_stats.json keeps it, read back by read_run (the report's throughput adds its rates,
        engine.report.run_stats)."""
        b = self.backend or {}
        return {
            "stage": self.stage, "units": self.units, "units_reused": self.units_reused, "rows": self.rows,
            "wall_s": self.wall_s,
            "start_s": self.start_s,  # stages from sampling on overlap (streaming): start_s + wall_s is when it ended
            "calls": b.get("calls", b.get("requests")), "requests": b.get("requests"),
            "retries": b.get("retries", 0) if b else None, "row_errors": b.get("row_errors"),
            "prompt_tokens": b.get("prompt_tokens"),
            # served from vLLM's prefix cache, or a provider's prompt cache (prompt_tokens_details.cached_tokens)
            "cached_prompt_tokens": b.get("cached_prompt_tokens"),
            # An endpoint that answered without token counts: the generated tokens are unknown, not the counted part.
            "completion_tokens": None if b.get("tokens_missing") else b.get("completion_tokens"),
            # Replies without token usage make the stage's cost unknown, not the priced share that was reported.
            "cost_usd": None if b.get("usage_missing") else b.get("cost_usd"),
            "usage_missing": int(b.get("usage_missing") or 0),
            "failed_shards": len(self.failed),
            # Why, by shard: a report rendered again from the directory (read_run) says what failed, not "nothing".
            "failed": {k: why[:500] for k, why in self.failed.items()},
            "retry_failed": {k: why[:500] for k, why in self.retry_failed.items()},
            **{k: getattr(self, k) for k in ROW_COUNTS},
        }


ROW_COUNTS = ("rows_reused", "rows_retried", "rows_transient", "rows_gave_up", "rows_to_retry")
# The summed backend counters a stage's record keeps in run_stats.json (read back by read_run).
BACKEND_COUNTS = ("calls", "requests", "retries", "row_errors", "prompt_tokens", "cached_prompt_tokens",
                  "completion_tokens", "cost_usd", "usage_missing")


@dataclass
class RunResult:
    """A run's tables (by name), its stage records, skipped inputs and load warnings, wall time and peak memory."""

    run_dir: str
    tables: dict[str, pa.Table]
    stages: list[StageRecord]
    skipped_inputs: list[str]
    wall_s: float
    load_warnings: list[str] = field(default_factory=list)
    peak_rss_bytes: int = 0  # this process and its children (an embedded Ray's workers), summed
    # Seconds each load of each model took ("role:backend:model" → one entry per load): one load per model and
    # worker per run (engine.execution.hosts), more only when a host was restarted or stopped to make room.
    model_load_s: dict[str, list[float]] = field(default_factory=dict)
    # What keys each role's work beside the config: the texts it sends and its stage's version (Pipeline.
    # work_versions); a rerun's cost bound counts a role's stored work as stored only where they are the same.
    work_versions: dict[str, Any] = field(default_factory=dict)

    def failed_shards(self) -> dict[str, dict[str, str]]:
        """Stage → {shard key: reason} for shards that failed for good in this run (a rerun computes them)."""
        return {r.stage: r.failed for r in self.stages if r.failed}

    def records(self) -> dict[str, Any]:
        """What read_run reads back beside the tables: each stage's record (its failed shards and their reasons
        among them), the skipped input rows, load warnings, wall time, peak memory and model loads.

        The run writes it as run_stats.json before its config.yaml, which marks the run finished: a run stopped
        before its report (a kill, a figure that failed to draw) must still say which shards failed — a failed
        sample shard's groups are simply absent from the tables. The report rewrites the file with its throughput
        (engine.report.run_stats), which holds every key of this one."""
        # "records": not the report's schema 1 (benchmarks/collect_runs.py reads its throughput, absent here).
        return {"schema": "records", "run_dir": str(self.run_dir), "wall_s": self.wall_s,
                "peak_rss_bytes": self.peak_rss_bytes,
                "model_load_s": {k: [round(x, 3) for x in v] for k, v in sorted(self.model_load_s.items())},
                "stages": [r.recorded() for r in self.stages], "skipped_inputs": list(self.skipped_inputs),
                "load_warnings": list(self.load_warnings), "work_versions": dict(self.work_versions)}


def finished_groups(run_dir: str | Path) -> tuple[RunConfig, set[tuple[str, str, str]], dict[str, tuple],
                                                   dict[str, Any]] | None:
    """The last finished run in `run_dir` — its config, its complete groups as (prompt_id, model, strategy): every
    response sampled and no judge missing, its prompts' labels by prompt_id, (source, gold_category, gold_answer),
    which key what is judged, graded and checked as much as the prompt's text, and its work versions (what keyed
    each role's work beside the config: {} from a version that did not record them) — or None where there is none,
    or where any of its shards failed or rows wait for a rerun (what it stored is then not all its config asked;
    engine.execution.plan.less_stored)."""
    root = Path(run_dir)
    if not (root / "config.yaml").is_file() or not (root / "groups.parquet").is_file():
        return None
    try:
        config = _finished_config(root)
        stats = orjson.loads((root / "run_stats.json").read_bytes())
        rows = pq.read_table(root / "groups.parquet", columns=["prompt_id", "model", "strategy", "status",
                                                               "n_responses", "missing_judges"]).to_pylist()
        labels = {p["prompt_id"]: (p["source"], p["gold_category"], p["gold_answer"]) for p in pq.read_table(
            root / "prompts.parquet", columns=["prompt_id", "source", "gold_category", "gold_answer"]).to_pylist()}
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException, TaskdivError):
        return None  # an older or damaged directory: nothing taken as stored (the full bound stands)
    if any(st.get("failed") or st.get("failed_shards") or st.get("rows_to_retry") for st in stats.get("stages", [])):
        return None
    return config, {(r["prompt_id"], r["model"], r["strategy"]) for r in rows
                    if r["status"] == "ok" and r["n_responses"] == config.n and not r["missing_judges"]}, labels, \
        _work_versions(stats)


def _work_versions(stats: Any) -> dict[str, Any]:
    """A run_stats.json's work versions ({} from a version that did not record them)."""
    versions = stats.get("work_versions") if isinstance(stats, dict) else None
    return versions if isinstance(versions, dict) else {}


def _finished_config(root: Path) -> RunConfig:
    """The config of the last finished run in `root` (its config.yaml). Raises RunDirError where it is damaged."""
    try:
        data = load_yaml((root / "config.yaml").read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{root / 'config.yaml'}: damaged, not a run's config ({type(exc).__name__})") from None
    with lenient_settings():  # written by an earlier version, which may have taken settings refused since
        return config_from_dict(data, source=str(root / "config.yaml"))


def read_run(run_dir: str | Path, tables: Sequence[str] | None = None) -> tuple[RunResult, RunConfig]:
    """A finished run's RunResult and RunConfig, read from its directory.

    Tables come from <run_dir>/<name>.parquet, the config from config.yaml; stage records (for throughput) from
    run_stats.json, which the run writes before its config (RunResult.records) and its report rewrites (with them
    the failed shards' reasons, the skipped input rows and the load warnings, so that a report rendered again says
    what failed); none where a directory of an older version has no run_stats.json.

    Args:
        run_dir: the run directory.
        tables: read only these tables (those present); None reads all.

    Returns:
        (RunResult, RunConfig).

    Raises:
        RunDirError: the directory is not a finished run (no config.yaml, or no groups or prompts table).
    """
    root = Path(run_dir)
    if not (root / "config.yaml").is_file():
        if (root / "config.running.yaml").is_file():
            raise RunDirError(f"{root}: no finished run here (config.running.yaml is the config of one that did not "
                              "finish, or stopped while writing its tables); run the same command again to finish it")
        raise RunDirError(f"{root}: not a run directory (no config.yaml)")
    for table in ("groups", "prompts"):  # every finished run writes both; explore and compare read the prompts
        if not (root / f"{table}.parquet").is_file():
            raise RunDirError(f"{root}: the run has not finished (no {table}.parquet); run the same command again "
                              "to finish it")
    if (root / "config.running.yaml").is_file():
        # A rerun here that has not finished (or is running now): what is read is the last finished run's, which
        # explore and compare showed without a word.
        log.warning("%s: a later run here is running, or stopped before it finished (config.running.yaml): "
                    "reading the last finished run", root)
    config = _finished_config(root)
    found = {p.stem: p for p in sorted(root.glob("*.parquet"))}
    wanted = found if tables is None else {k: found[k] for k in tables if k in found}
    loaded = {}
    for name, path in wanted.items():
        try:
            loaded[name] = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:  # cut short by a full disk, or not Parquet at all
            raise RunDirError(f"{path}: damaged, not a Parquet table ({str(exc)[:200]}); the same run again "
                              "writes it from its shards") from None
    stages, wall_s, peak, loads, skipped, warnings, versions = [], 0.0, 0, {}, [], [], {}
    stats_path = root / "run_stats.json"
    if stats_path.is_file():
        try:
            stats = orjson.loads(stats_path.read_bytes())
        except orjson.JSONDecodeError:
            raise RunDirError(f"{stats_path}: damaged, not JSON; the same run again writes it") from None
        wall_s, peak = stats.get("wall_s") or 0.0, stats.get("peak_rss_bytes") or 0
        loads = {k: [float(x) for x in v] for k, v in (stats.get("model_load_s") or {}).items()}
        skipped = [str(x) for x in stats.get("skipped_inputs") or []]
        warnings = [str(x) for x in stats.get("load_warnings") or []]
        versions = _work_versions(stats)
        for st in stats.get("stages", []):
            backend = {k: st[k] for k in BACKEND_COUNTS if st.get(k) is not None}
            stages.append(StageRecord(st["stage"], units=st["units"], units_reused=st["units_reused"],
                                      rows=st["rows"], wall_s=st["wall_s"], backend=backend,
                                      start_s=st.get("start_s"),
                                      # Written before the reasons were: the count alone, each reason unknown.
                                      failed=dict(st.get("failed") or {f"shard {k + 1}": "(reason not recorded)"
                                                                       for k in range(int(st.get("failed_shards")
                                                                                          or 0))}),
                                      retry_failed=dict(st.get("retry_failed") or {}),
                                      **{k: int(st.get(k) or 0) for k in ROW_COUNTS}))
    return RunResult(str(root), loaded, stages, skipped, wall_s, load_warnings=warnings, peak_rss_bytes=peak,
                     model_load_s=loads, work_versions=versions), config
