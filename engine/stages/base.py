"""The batch contract every stage follows, written once.

A stage is a per-worker callable (heavy state such as a model is built in its constructor, once per Ray actor)
over a batch of rows, in the manner of Ray's `ray.data.llm` stages (`stages/base.py` there):

- it declares the input columns it needs, each with a one-line description; a missing column is an error naming
  the stage and the columns;
- `process(rows)` yields exactly one output per input row, tagged with the row's index in the batch under
  `IDX`; outputs may come out of order (a row whose answer arrives first is yielded first); the base rejects
  untagged, out-of-range, duplicate and missing outputs;
- the base returns the outputs in input order as an Arrow table of the stage's declared output schema, plus the
  `SHARD` and `ROW` columns copied from each input row, so that the driver can write each shard as soon as it is
  complete, in its input order;
- a row whose backend call failed in a way that may not recur (ChatOutput.transient: retries exhausted, a timed-out
  generation) keeps its output (an error status, an unresolved verdict) and comes back with `RETRY` set: the
  driver writes it with the rest of its shard and a rerun computes that row again, alone (execution.row_retries);
- a BackendError (the backend gave up for the whole batch: bad key, wrong URL, server gone) does not kill the
  worker or the run: every row of the batch comes back with `ERROR` set and no outputs, the driver leaves their
  shards unwritten and reports them, and a rerun computes them.

Stages do no file I/O and parse no flags; the pipeline builds their constructor arguments from the config and the
store persists what they return.

`BackendStage` is the base of the stages that hold a chat model: it builds the backend once per worker through
`actors.registry` and runs the method's programs with `engine.method.programs.drive`.

Imports: actors.base and actors.registry (never a specific backend), engine.method.programs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar, Iterable, Sequence

import pyarrow as pa

from actors.base import BackendError
from engine.method.programs import DriveStats, Program, drive

log = logging.getLogger(__name__)

IDX = "__idx"
SHARD = "_shard"  # the shard key a row belongs to (copied through every stage)
ROW = "_row"  # the row's position in its shard's input (copied through, so shards are written in input order)
ERROR = "_error"  # set on every row of a batch whose backend failed for good (retries exhausted); else null
# A group's key: one prompt's responses from one generator under one strategy, as output columns and as inputs.
GROUP_KEY = [("prompt_id", pa.string()), ("model", pa.string()), ("strategy", pa.string())]
GROUP_INPUTS = {"prompt_id": "stable prompt id", "model": "the generator", "strategy": "the sampling strategy"}
TELEMETRY = "_telemetry"  # JSON counters of the batch (backend requests, retries, tokens) on its first row only
RETRY = "_retry"  # set on a row whose backend call failed in a way that may not recur: a rerun computes it again
# A row sent again after such a failure carries, to a stage that sets `reads_prior = True`, the output it was stored
# with (JSON): what that output holds that was paid for (a judge's answered pairs) is not asked again.
PRIOR = "_prior"


class StageContractError(RuntimeError):
    """A stage broke the one-output-per-row contract (a bug in the stage, never the data's fault)."""


class Stage:
    """Base of all stages; see the module docstring for the contract.

    Subclasses set `name`, `required_inputs` ({column: description}) and `output_schema`, and implement
    `process`.
    """

    name: ClassVar[str] = "stage"
    required_inputs: ClassVar[dict[str, str]] = {}
    output_schema: ClassVar[pa.Schema] = pa.schema([])

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def begin_batch(self) -> None:
        """Called before each batch (BackendStage snapshots its counters here)."""

    def batch_telemetry(self) -> dict[str, float]:
        """Counters of the batch just processed; they ride back to the driver for the run's throughput report."""
        return {}

    def transient_rows(self) -> dict[int, str]:
        """Rows of the batch just processed whose backend failure may not recur: row index → the error."""
        return {}

    def __call__(self, batch: pa.Table | dict[str, list]) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        missing = [c for c in self.required_inputs if c not in table.column_names]
        if missing:
            raise ValueError(
                f"stage {self.name!r} is missing input columns {missing}; it needs: "
                + "; ".join(f"{k} ({v})" for k, v in self.required_inputs.items())
            )
        rows = table.to_pylist()
        self.begin_batch()
        try:
            results = self._collect(rows)
        except StageContractError:
            raise  # a stage's own bug: loud
        except Exception as exc:
            if not isinstance(exc, BackendError):
                # A backend's own error that is no BackendError (a tokenizer's or chat template's ValueError, CUDA
                # out of memory) raised out of the run, a traceback: it fails the batch too, its trace logged.
                log.warning("stage %s: a batch of %d rows failed: %s: %s", self.name, len(rows), type(exc).__name__,
                            exc, exc_info=True)
            results = [{ERROR: f"{type(exc).__name__}: {exc}"} for _ in rows]
        else:
            for k, error in self.transient_rows().items():
                results[k][RETRY] = error
        if results:
            results[0][TELEMETRY] = json.dumps(self.batch_telemetry())
        schema = self.output_schema
        for column in (ERROR, TELEMETRY, RETRY):
            schema = schema.append(pa.field(column, pa.string()))
        for column, kind in ((SHARD, pa.string()), (ROW, pa.int64())):
            if column in table.column_names:
                for row, out in zip(rows, results):
                    out[column] = row[column]
                schema = schema.append(pa.field(column, kind))
        return pa.Table.from_pylist(results, schema=schema)

    def _collect(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The outputs of `process`, checked against the contract and put in input order."""
        results: list[dict[str, Any] | None] = [None] * len(rows)
        for out in self.process(rows):
            if IDX not in out:
                raise StageContractError(f"stage {self.name!r} yielded an output without its {IDX!r} tag")
            idx = out.pop(IDX)
            if not isinstance(idx, int) or not 0 <= idx < len(rows):
                raise StageContractError(f"stage {self.name!r} yielded index {idx!r} outside the batch of {len(rows)}")
            if results[idx] is not None:
                raise StageContractError(f"stage {self.name!r} yielded row {idx} twice")
            results[idx] = out
        lost = [k for k, r in enumerate(results) if r is None]
        if lost:
            raise StageContractError(f"stage {self.name!r} yielded no output for rows {lost[:10]} of {len(rows)}")
        return results  # type: ignore[return-value]


class BackendStage(Stage):
    """A stage that holds a chat backend, built once per worker from a plain spec (picklable for Ray).

    Args:
        model: {"name", "backend", "model", "options"} as in engine.config.ModelConfig.spec().
    """

    def __init__(self, model: dict[str, Any]) -> None:
        from actors.registry import make_chat_backend

        self.model_name = model["name"]
        self.backend = make_chat_backend(model["backend"], model["model"], model.get("options"))
        self.stats = DriveStats()
        self._before: dict[str, float] = {}
        self._transient: dict[int, str] = {}

    def drive(self, programs: Sequence[Program], owners: Sequence[int] | None = None) -> list[Any]:
        """Run `programs`; `owners[i]` is the batch row program i works for (default: program i is row i), so that
        a transient backend failure marks that row for a rerun."""
        failed: dict[int, str] = {}
        results = drive(self.backend, programs, self.stats, transient=failed)
        for k, error in failed.items():
            self._transient.setdefault(owners[k] if owners is not None else k, error)
        return results

    def transient_rows(self) -> dict[int, str]:
        return dict(self._transient)

    def _counters(self) -> dict[str, float]:
        counters = {"rounds": self.stats.rounds, "calls": self.stats.calls}
        backend_stats = getattr(self.backend, "stats", None)
        if callable(backend_stats):
            counters.update({k: v for k, v in backend_stats().items() if isinstance(v, (int, float))})
        return counters

    def begin_batch(self) -> None:
        self._before = self._counters()
        self._transient = {}

    def batch_telemetry(self) -> dict[str, float]:
        return {k: v - self._before.get(k, 0) for k, v in self._counters().items()}
