"""Executors run one stage over blocks of rows and stream its output batches back to the driver.

- RayExecutor: Ray Data `map_batches` with an actor pool per stage (the model loads once per actor), on an
  embedded local Ray or an existing cluster. Actor pools restart dead actors and retry their batches: Ray Data
  gives its map actors max_restarts = max_task_retries = -1 unless told otherwise (actor_pool_map_operator.py),
  and we rely on that (tests/engine/execution/test_executor.py kills an actor mid-batch).
- LocalExecutor: the same stage objects called in this process, one batch after another; for debugging and for
  tests that exercise pipeline logic without Ray's start-up cost.

Both yield Arrow tables carrying the stage's output columns plus the shard column, in any order.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa

from engine.errors import ConfigError
from engine.stages.base import Stage

log = logging.getLogger(__name__)

# Environment every worker needs, on a laptop or a cluster node: never compile transformers' decode loop on CPU.
WORKER_ENV = {
    "TORCHDYNAMO_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# Where the Hugging Face cache is and which hub to reach: the driver's settings travel to every worker. HF_TOKEN
# does not travel this way: Ray logs the runtime environment it sets up (runtime_env_agent.log), and a token must
# never be written anywhere. An embedded Ray's workers inherit the driver's environment, token included; on a
# cluster each node's environment holds it, as it holds API keys (docs/cluster.md).
HUB_SETTINGS = ("HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER")


def hub_environment(offline: bool) -> dict[str, str]:
    """The hub settings of a run, for this process and every worker: offline or not, and the cache's location."""
    flag = "1" if offline else "0"
    env = {"HF_HUB_OFFLINE": flag, "TRANSFORMERS_OFFLINE": flag}
    env.update({k: os.environ[k] for k in HUB_SETTINGS if os.environ.get(k)})
    return env


@dataclass
class StagePlan:
    """How one stage runs.

    Attributes:
        stage: the Stage class (instantiated once per worker).
        kwargs: its constructor arguments (plain, picklable values).
        batch_size: rows per call.
        num_actors: workers in the pool.
        num_cpus / num_gpus: resources per worker.
        label: for progress and logs, e.g. "judge[gpt-4o]".
        env: extra environment variables for the workers.
        placement_group: {"bundles": [...], "strategy": "PACK"}: each actor gets a placement group of its own
            (vLLM with tensor × pipeline parallelism > 1; see actors.registry.scheduling).
        max_restarts: restarts of a dead actor, and re-runs of its batch, before the stage fails.
    """

    stage: type[Stage]
    kwargs: dict[str, Any]
    batch_size: int = 32
    num_actors: int = 1
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    label: str = ""
    env: dict[str, str] = field(default_factory=dict)
    placement_group: dict[str, Any] | None = None
    max_restarts: int | None = None  # None: Ray Data's default (unlimited); API models get a finite number

    def gpus_per_actor(self) -> float:
        if self.placement_group:
            return sum(b.get("GPU", 0) for b in self.placement_group["bundles"])
        return self.num_gpus


class LocalExecutor:
    """Runs stages in this process. Stage instances are cached per (class, arguments), so a model loads once."""

    def __init__(self) -> None:
        self._instances: dict[str, Stage] = {}

    def map(self, plan: StagePlan, blocks: list[pa.Table]) -> Iterator[pa.Table]:
        key = f"{plan.stage.__module__}.{plan.stage.__qualname__}:{sorted(plan.kwargs.items())!r}"
        if key not in self._instances:
            self._instances[key] = plan.stage(**plan.kwargs)
        udf = self._instances[key]
        for block in blocks:
            for start in range(0, block.num_rows, plan.batch_size):
                yield udf(block.slice(start, plan.batch_size))

    def close(self) -> None:
        for udf in self._instances.values():
            backend = getattr(udf, "backend", None)
            if backend is not None:
                backend.close()
        self._instances.clear()


class RayExecutor:
    """Runs stages as Ray Data actor pools.

    Args:
        address: None joins RAY_ADDRESS or the cluster `ray start` set up on this node (what `ray submit` runs
            under) and otherwise starts an embedded local Ray; "local" always starts an embedded one; other values go
            to ray.init(address=...).
        num_cpus: logical CPUs of an embedded Ray (default: the machine's, at least 4 — logical CPUs are a
            scheduling budget, and Ray Data's read/map/write tasks need some beside the actors).
        object_store_memory: bytes for an embedded Ray's object store.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 object_store_memory: int = 512 * 1024 * 1024, env: dict[str, str] | None = None) -> None:
        # Must be set before Ray starts: otherwise a local Ray binds the machine's interface address, not loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        from actors.registry import ALLOW_PYTHON_ENV, python_backends_allowed

        self._ray = ray
        self._owns_ray = False
        self.env = {**WORKER_ENV, **(env or {})}
        if python_backends_allowed():  # the user's opt-in reaches the workers that load those backends
            self.env[ALLOW_PYTHON_ENV] = "1"
        if ray.is_initialized():
            self._quiet()
            return
        runtime_env = {"env_vars": dict(self.env)}
        if address not in (None, "local"):
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
            self._quiet(cluster=True)
            return
        if address is None:
            existing = running_cluster_address()
            if existing:
                # Joining must fail loudly: silently starting an embedded Ray beside an unreachable cluster would run
                # a cluster-sized job on the head node's CPUs.
                ray.init(address=existing, runtime_env=runtime_env)
                log.info("joined the Ray cluster at %s", existing)
                self._quiet(cluster=True)
                return
        _loopback_only(ray)
        ray.init(
            _node_ip_address="127.0.0.1",
            num_cpus=num_cpus or max(4, os.cpu_count() or 1),
            object_store_memory=object_store_memory,
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
        self._owns_ray = True
        self._quiet()

    def _quiet(self, cluster: bool = False) -> None:
        """Locally the driver shows one progress bar per stage (rate and ETA) and Ray Data's INFO lines would bury
        it; on a cluster Ray Data's own progress bars show what each actor pool is doing, so they stay on
        (TASKDIV_RAY_PROGRESS=1 turns them on locally too)."""
        ctx = self._ray.data.DataContext.get_current()
        ctx.enable_progress_bars = cluster or bool(os.environ.get("TASKDIV_RAY_PROGRESS"))
        # Ray Data's high-memory detector warns every 30 s, with a 12-line block, that a model actor uses more
        # memory than its (zero) request: true of every model actor, and the executor runs one stage's pool at a
        # time, so the warning says nothing new and buries the progress bar. The run's peak memory is measured and
        # reported instead (PeakMemory, run_stats.json).
        detectors = getattr(ctx, "issue_detectors_config", None)
        if detectors is not None:
            detectors.detectors = [d for d in detectors.detectors if d.__name__ != "HighMemoryIssueDetector"]
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if not ctx.enable_progress_bars:
            # Ray Data warns once per run that its bars are off; ours replace them, so the warning is noise.
            logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)

    def map(self, plan: StagePlan, blocks: list[pa.Table]) -> Iterator[pa.Table]:
        ray = self._ray
        if not blocks:
            return
        self._check_gpus(plan)
        ds = ray.data.from_arrow(blocks)
        kwargs = dict(
            fn_constructor_kwargs=plan.kwargs,
            batch_size=plan.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=plan.num_actors),
            num_cpus=plan.num_cpus,
            num_gpus=plan.num_gpus,
            runtime_env={"env_vars": {**self.env, **plan.env}},
        )
        if plan.max_restarts is not None:
            # Finite for API models: an actor that keeps dying (a reply too large for its memory, say) must not
            # re-send its batch, billed again, forever — Ray Data's default is unlimited.
            kwargs.update(max_restarts=plan.max_restarts, max_task_retries=plan.max_restarts)
        groups = None
        if plan.placement_group:
            from actors.registry import placement_groups

            # A placement group per actor needs a per-actor function; Ray 2.60's public map_batches only has the
            # deprecated ray_remote_args_fn, ray.data.llm uses this DeveloperAPI twin, and so do we.
            groups = placement_groups(plan.placement_group["bundles"], plan.placement_group.get("strategy", "PACK"))
            ds = ds.map_batches_internal(plan.stage, ray_remote_args_fn=groups, **kwargs)
        else:
            ds = ds.map_batches(plan.stage, **kwargs)
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                yield batch
        finally:
            if groups is not None:
                groups.remove()  # groups outlive their actors: free the GPUs for the next stage

    def _check_gpus(self, plan: StagePlan) -> None:
        """Fail at once, not hang, when the cluster cannot hold even one actor of the stage."""
        need = plan.gpus_per_actor()
        if need <= 0:
            return
        have = self._ray.cluster_resources().get("GPU", 0)
        if have < need:
            hint = ("; a vLLM model served by vLLM's CPU build needs `options: {device: cpu}`"
                    if plan.kwargs.get("model", {}).get("backend") == "vllm" else "")
            raise ConfigError(f"stage {plan.label}: one actor needs {need:g} GPUs, the Ray cluster has {have:g}{hint}")
        if have < need * plan.num_actors:
            log.warning("stage %s: %d actors × %g GPUs exceed the cluster's %g GPUs; fewer will run at once",
                        plan.label, plan.num_actors, need, have)

    def close(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()


def _loopback_only(ray: Any) -> None:
    """Keep an embedded Ray on loopback whatever imported ray first.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (set above) makes Ray use 127.0.0.1 as the node address, but Ray reads it
    once, into ray._private.ray_constants.ENABLE_RAY_CLUSTER, when ray is first imported; a notebook that imported
    ray before the engine gets the machine's interface address, and even `_node_ip_address="127.0.0.1"` is turned
    back into it (services.resolve_ip_for_localhost). No public setting does this, so the constant is set here;
    tests/test_hardening.py checks the node address with ray imported first, and fails if a Ray release moves it.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False


def running_cluster_address(address_file: str | None = None) -> str | None:
    """The cluster this process should join: RAY_ADDRESS (set by `ray job submit`, or by the user), else the address
    `ray start` recorded on this node (what `ray submit` relies on) when that file is this user's own, else None.

    Deliberately not `ray.init(address="auto")`: "auto" also finds Ray instances by scanning the process list, so on
    a shared machine it would join another user's or another test's embedded Ray. For the same reason the address
    file (in Ray's shared temporary folder, which Ray makes writable by everyone) is trusted only when this user owns
    it and nobody else may write it: a cluster started by someone else would see the run's data, and the driver
    unpickles what its workers send back.
    """
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    if address_file is None:
        try:
            from ray._common.utils import get_ray_address_file  # where `ray start` writes; no public API reads it

            address_file = get_ray_address_file(None)
        except Exception:  # a future Ray may move it; then only RAY_ADDRESS joins
            return None
    try:
        fd = os.open(address_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)  # the file actually read, not the name (which anyone may replace in a shared folder)
        why = None
        if st.st_uid != os.getuid():
            why = f"it belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
        elif st.st_mode & 0o022:
            why = f"others may write it (mode {st.st_mode & 0o777:o})"
        if why:
            log.warning("not joining the Ray cluster named in %s: %s; starting an embedded Ray instead (name the "
                        "cluster with RAY_ADDRESS or execution.ray_address to join it)", address_file, why)
            return None
        return os.read(fd, 4096).decode("utf-8", "replace").strip() or None
    finally:
        os.close(fd)


def make_executor(kind: str, **kwargs: Any) -> LocalExecutor | RayExecutor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(**kwargs)
    raise ValueError(f"unknown executor {kind!r}")
