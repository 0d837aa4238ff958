"""Model hosts: the workers that hold a run's models, started once per model and shared by every stage using it.

A `StageHost` is one worker process (a Ray actor under RayExecutor, this process under LocalExecutor). It runs any
stage's batches: the first batch of a stage builds the stage object inside `actors.registry.sharing`, so stages
that use the same model find it already loaded. The executor keeps one pool of hosts per model (`StagePlan.host`)
for the whole run and lets the pipeline release a pool when no later stage needs it.

Why not Ray Data actor pools: a Dataset's actor pool lives as long as that Dataset, so each stage would load its
model again (about 14 s on transformers and 19 s on vLLM's CPU build per stage for the packaged 135M model; minutes
for an 8B engine on a GPU). Hosts are plain Ray actors that outlive a stage; the executor gives them batches as the
pipeline's dataflow cuts them (engine.execution.dataflow), up to two in flight per host so a host starts its next
batch the moment one ends.

Imports: actors.registry (sharing), engine.stages.base.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pyarrow as pa

from actors.registry import SharedBackends, sharing
from engine.stages.base import Stage


def stage_key(stage: type[Stage], kwargs: dict[str, Any]) -> bytes:
    """One stage object per (class, constructor arguments) in a host."""
    return orjson.dumps([f"{stage.__module__}.{stage.__qualname__}", kwargs], option=orjson.OPT_SORT_KEYS,
                        default=str)


class StageHost:
    """Runs stages' batches in one process, sharing each model among the stages that use it."""

    def __init__(self) -> None:
        self.backends = SharedBackends()
        self._stages: dict[bytes, Stage] = {}
        self.started = time.time()

    def stage(self, stage: type[Stage], kwargs: dict[str, Any]) -> Stage:
        key = stage_key(stage, kwargs)
        if key not in self._stages:
            with sharing(self.backends):
                self._stages[key] = stage(**kwargs)
        return self._stages[key]

    def run(self, stage: type[Stage], kwargs: dict[str, Any], batch: pa.Table) -> pa.Table:
        return self.stage(stage, kwargs)(batch)

    def load_seconds(self) -> dict[str, list[float]]:
        """Seconds each build of a model took in this process ("role:backend:model" → [s, …])."""
        return {k: list(v) for k, v in self.backends.load_s.items()}

    def close(self) -> None:
        self.backends.close()
        self._stages.clear()
