"""Executors run one stage over blocks of rows and stream its output batches back to the driver.

Both keep each model loaded for the whole run: a stage's batches run in the hosts (engine.execution.hosts) of its
`StagePlan.host`, started by the first stage that needs them and shared by every later stage with the same host
key — one load per model per run — until the pipeline releases them (`release`).

- RayExecutor: hosts are Ray actors (the plan's CPUs, GPUs and placement group each), on an embedded local Ray or
  an existing cluster. A host that dies is restarted (max_restarts -1, as Ray Data gives its map actors, unless the
  plan says fewer: API models get a finite number) and the executor sends its batches again; a batch whose host
  died under it HOST_DEATHS_PER_BATCH times fails alone (HostCrashed: a segfault, the OOM killer on one oversized
  batch), instead of loading the model again for ever. tests/engine/execution/test_executor.py kills a host
  mid-batch. A host that cannot come back (its node was lost and no node that holds it is left) is given up after
  `node_wait_s`, and its batches fail (`fail_stranded`).
- LocalExecutor: the same hosts in this process, one batch after another; for debugging and for tests that
  exercise pipeline logic without Ray's start-up cost.

Both yield Arrow tables carrying the stage's output columns plus the shard column, in any order.

The pipeline's dataflow (engine.execution.dataflow) drives both, for the classification phases as for the stages
that stream into each other: `submit(plan, batch)` / `capacity(plan)` / `can_start(plan)` feed several stages at
once, each batch a `concurrent.futures.Future`, and `fail_stranded()`, called while it waits, lets the executor act
on hosts that died or cannot run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, InvalidStateError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.errors import ConfigError
from engine.execution.hosts import StageHost
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
        max_restarts: restarts of a dead actor before it stays dead. A batch whose host died under it fails
            alone after HOST_DEATHS_PER_BATCH such deaths, or max_restarts + 1 where that is fewer.
        host: the key of the hosts that run the stage; stages with the same key share them (and their loaded
            models). Empty: the label.
        priced: whether its batches may cost money (an HTTP model with prices): under a cost cap, the dataflow
            sends one such batch of a cost not yet known at a time.
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
    max_restarts: int | None = None  # None: unlimited (Ray Data's default too); API models get a finite number
    host: str = ""
    priced: bool = False

    def host_key(self) -> str:
        return self.host or self.label

    def gpus_per_actor(self) -> float:
        if self.placement_group:
            return sum(b.get("GPU", 0) for b in self.placement_group["bundles"])
        return self.num_gpus


_EPS = 1e-9


def _fits(need: dict[str, float], node: dict[str, float]) -> bool:
    return all(v <= 0 or node.get(r, 0.0) + _EPS >= v for r, v in need.items())


def actors_that_fit(need: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many actors of `need` (CPU, GPU) the nodes hold at once, each node on its own."""
    total = 0
    for node in nodes:
        counts = [int((node.get(r, 0.0) + _EPS) // v) for r, v in need.items() if v > 0]
        total += min(counts) if counts else 1 << 20
    return total


def _shape(need: dict[str, float]) -> str:
    return " and ".join(f"{v:g} {r}" for r, v in need.items() if v > 0) or "nothing"


def unplaceable(plan: StagePlan, nodes: list[dict[str, float]]) -> str | None:
    """Why no actor of `plan` can be placed on a cluster of `nodes` (each node's total resources), or None.

    Ray keeps an actor (or a placement group) that no node can hold pending for ever, without an error, so this is
    checked before the run's first model call. One actor needs its CPUs and GPUs on one node; in a placement group
    it takes its place in one of the group's bundles, and the bundles go on nodes as the group's strategy says
    (PACK and SPREAD: anywhere, several on a node where they fit; STRICT_PACK: all on one node; STRICT_SPREAD: each
    on a node of its own).
    """
    actor = {"CPU": plan.num_cpus, "GPU": plan.num_gpus}
    group = plan.placement_group
    if not group:
        if any(_fits(actor, n) for n in nodes):
            return None
        return f"one actor needs {_shape(actor)} on one node; the cluster's nodes have {_nodes(nodes)}"
    shape = misshapen(plan)
    if shape is not None:
        return shape
    bundles = [dict(b) for b in group["bundles"]]
    strategy = group.get("strategy", "PACK")
    if _place(bundles, strategy, [dict(n) for n in nodes]):
        return None
    if strategy == "STRICT_PACK":
        return (f"its placement group needs {_shape(_total(bundles))} on one node (STRICT_PACK); the nodes have "
                f"{_nodes(nodes)}")
    return (f"its placement group of {len(bundles)} bundles of {_shape(bundles[0])} ({strategy}) does not fit "
            f"the cluster's nodes ({_nodes(nodes)})")


def _total(bundles: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for b in bundles:
        for r, v in b.items():
            total[r] = total.get(r, 0.0) + v
    return total


def _place(bundles: list[dict[str, float]], strategy: str, free: list[dict[str, float]]) -> bool:
    """Place one placement group's bundles on the nodes' `free` resources as its strategy says, taking what it uses
    from `free`; False (with `free` as it may be left part-used) where the group does not fit."""
    if strategy == "STRICT_PACK":
        total = _total(bundles)
        k = next((i for i, n in enumerate(free) if _fits(total, n)), None)
        if k is None:
            return False
        for r, v in total.items():
            free[k][r] = free[k].get(r, 0.0) - v
        return True
    # First fit, largest bundle first: exact for the equal bundles vLLM asks for (one GPU and one CPU each).
    used: set[int] = set()
    for b in sorted(bundles, key=lambda b: (-b.get("GPU", 0), -b.get("CPU", 0))):
        k = next((i for i, n in enumerate(free) if _fits(b, n) and not (strategy == "STRICT_SPREAD" and i in used)),
                 None)
        if k is None:
            return False
        used.add(k)
        for r, v in b.items():
            free[k][r] = free[k].get(r, 0.0) - v
    return True


def groups_that_fit(plan: StagePlan, nodes: list[dict[str, float]], most: int) -> int:
    """How many of the plan's placement groups (one per actor) the nodes hold at once, up to `most`."""
    group = plan.placement_group or {"bundles": []}
    bundles = [dict(b) for b in group["bundles"]]
    free = [dict(n) for n in nodes]
    count = 0
    while count < most and _place(bundles, group.get("strategy", "PACK"), free):
        count += 1
    return count


def misshapen(plan: StagePlan) -> str | None:
    """Why the plan's actor can never start whatever the nodes (it does not fit a bundle of its own placement
    group: Ray refuses it when it is started), or None."""
    group = plan.placement_group
    if not group:
        return None
    actor = {"CPU": plan.num_cpus, "GPU": plan.num_gpus}
    bundles = [dict(b) for b in group["bundles"]]
    if any(_fits(actor, b) for b in bundles):
        return None
    return (f"one actor needs {_shape(actor)} inside its placement group, whose bundles each hold "
            f"{_shape(bundles[0])}: lower num_cpus to at most {bundles[0].get('CPU', 0):g}")


def _demand(plan: StagePlan) -> list[dict[str, float]]:
    """The bundles an autoscaler is asked for so that one actor of the plan can be placed."""
    if plan.placement_group:
        return [dict(b) for b in plan.placement_group["bundles"]]
    return [{r: v for r, v in (("CPU", plan.num_cpus), ("GPU", plan.num_gpus)) if v > 0}]


def _nodes(nodes: list[dict[str, float]]) -> str:
    if not nodes:
        return "none alive"
    return "; ".join(f"{n.get('CPU', 0):g} CPUs, {n.get('GPU', 0):g} GPUs" for n in nodes)


def check_model_here(role: str, backend: str, model: str, options: dict[str, Any], offline: bool) -> str | None:
    """actors.registry.check_model on this machine (a Ray task on a cluster node): "key: why", or None."""
    from actors.registry import ModelCheckError, check_model

    try:
        check_model(role, backend, model, options, offline=offline)
    except ModelCheckError as exc:
        return f"{exc.key}: {exc}"
    return None


def probe_here(role: str, backend: str, model: str, options: dict[str, Any], samplings: list,
               conversation: list[dict[str, str]]) -> tuple[str | None, list[str]]:
    """actors.registry.probe_model from this machine (a Ray task on a cluster node): ("key: why" or None, notes)."""
    from actors.registry import ModelCheckError, probe_model

    try:
        return None, probe_model(role, backend, model, options, samplings, conversation)
    except ModelCheckError as exc:
        return f"{exc.key}: {exc}", []


# How long the probes of a run may take together (they run side by side; each request has its own timeout too).
PROBE_DEADLINE_S = 300.0


def _probe_all_here(probes: list[tuple[str, Any, tuple]]) -> list[tuple[str, str, tuple[str | None, list[str]]]]:
    """probe_here for every (config key, plan, spec) from this machine, side by side, within PROBE_DEADLINE_S: an
    endpoint that does not answer in time is a note (the run goes on; its stage will meet it), not a wait."""
    if not probes:
        return []
    pool = ThreadPoolExecutor(max_workers=min(8, len(probes)), thread_name_prefix="probe")
    futures = [(where, pool.submit(probe_here, *spec)) for where, _, spec in probes]
    deadline = time.monotonic() + PROBE_DEADLINE_S
    results = []
    for where, future in futures:
        try:
            results.append((where, "", future.result(timeout=max(0.0, deadline - time.monotonic()))))
        except FutureTimeout:
            results.append((where, "", (None, [f"no answer within {PROBE_DEADLINE_S:g} s"])))
        except Exception as exc:  # the probe itself broke: its stage will meet whatever this was
            results.append((where, "", (None, [f"the probe could not run ({type(exc).__name__}: {str(exc)[:200]})"])))
    pool.shutdown(wait=False)  # a request still out ends at its own timeout
    return results


def _probe_outcome(results: list[tuple[str, str, tuple[str | None, list[str]]]]) -> None:
    """Refuse the run for every endpoint probe that failed ((config key, where it ran, outcome)); log the notes."""
    problems = []
    for where, place, (why, notes) in results:
        if why:
            problems.append(f"{where}.{why}{place}")
        for note in notes:
            log.warning("%s: a first request to its endpoint was not served (%s); the run goes on, and rows "
                        "that meet this fail and are reported%s", where, note[:300], place)
    if problems:
        raise ConfigError("; ".join(problems) + " — found before the run's first paid call (execution.probe_endpoints: "
                          "false skips these requests)")


class LocalExecutor:
    """Runs stages in this process, in one StageHost per host key (so a model loads once per run).

    Each host runs its batches on a thread of its own, one batch at a time: stages streaming into each other run
    their different models at once (torch and HTTP calls release the GIL), and one model is never entered by two
    batches together."""

    def __init__(self) -> None:
        self._hosts: dict[str, StageHost] = {}
        self._threads: dict[str, ThreadPoolExecutor] = {}
        self._busy: dict[str, list[Future]] = {}
        self._load_s: dict[str, list[float]] = {}

    def _host(self, plan: StagePlan) -> tuple[StageHost, ThreadPoolExecutor]:
        key = plan.host_key()
        if key not in self._hosts:
            self._hosts[key] = StageHost()
            self._threads[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"host-{plan.label}")
            self._busy[key] = []
        return self._hosts[key], self._threads[key]

    def submit(self, plan: StagePlan, batch: pa.Table) -> Future:
        """Run one batch on the plan's host (after the batches already given to it)."""
        host, thread = self._host(plan)
        future = thread.submit(host.run, plan.stage, plan.kwargs, batch)
        self._busy[plan.host_key()].append(future)
        return future

    def capacity(self, plan: StagePlan) -> int:
        """Batches the plan's host may take now: one at a time, so stages sharing a model take turns."""
        busy = [f for f in self._busy.get(plan.host_key(), []) if not f.done()]
        self._busy[plan.host_key()] = busy
        return 0 if busy else 1

    def can_start(self, plan: StagePlan) -> bool:
        return True  # this process holds every model it is given

    def fail_stranded(self) -> None:
        """Nothing to watch: a host in this process cannot lose its node."""

    def check_fits(self, needs: list[tuple[str, StagePlan]], wait_s: float) -> None:
        """Nothing to place: this process runs every model (its devices are checked as they load)."""

    joined = False  # every model runs on this machine, which preflight checked

    def check_models(self, checks: list[tuple[str, StagePlan, tuple]], offline: bool) -> None:
        """Nothing more to check: preflight ran on this machine."""

    def probe_endpoints(self, probes: list[tuple[str, StagePlan, tuple]]) -> None:
        """Send each HTTP model its first requests from here (actors.registry.probe_model), where every model runs.

        Args:
            probes: (config key, the plan of its actors, (role, backend, model, options, samplings, conversation)).
        """
        _probe_outcome(_probe_all_here(probes))

    def release(self, keep: set[str]) -> None:
        """Close the hosts whose key is not in `keep` (no later stage needs their models)."""
        for key in [k for k in self._hosts if k not in keep]:
            host = self._hosts.pop(key)
            self._threads.pop(key).shutdown(wait=True)
            self._busy.pop(key, None)
            _add_loads(self._load_s, host.load_seconds())
            host.close()

    def load_seconds(self) -> dict[str, list[float]]:
        """Seconds each load of each model took over the run ("role:backend:model" → [s, …], every host)."""
        loads = {k: list(v) for k, v in self._load_s.items()}
        for host in self._hosts.values():
            _add_loads(loads, host.load_seconds())
        return loads

    def close(self) -> None:
        self.release(set())


def _add_loads(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for k, v in more.items():
        into.setdefault(k, []).extend(v)


class RayExecutor:
    """Runs stages on model hosts that are Ray actors (one pool per model, kept for the run).

    Args:
        address: None joins RAY_ADDRESS or the cluster `ray start` set up on this node (what `ray submit` runs
            under) and otherwise starts an embedded local Ray; "local" always starts an embedded one; other values go
            to ray.init(address=...).
        num_cpus: logical CPUs of an embedded Ray (default: the machine's, at least 4 — logical CPUs are a
            scheduling budget, and Ray Data's read/map/write tasks need some beside the actors).
        object_store_memory: bytes for an embedded Ray's object store.
        node_wait_s: how long a host with batches to run may be kept from running (its node was lost, and Ray
            restarts it only where a node that holds it is alive) before its batches fail (`fail_stranded`);
            STRANDED_MIN_S at least.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 object_store_memory: int = 512 * 1024 * 1024, env: dict[str, str] | None = None,
                 node_wait_s: float = 900.0) -> None:
        # Must be set before Ray starts: otherwise a local Ray binds the machine's interface address, not loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        from actors.registry import ALLOW_PYTHON_ENV, python_backends_allowed

        self._ray = ray
        self._owns_ray = False
        self._joined = False  # whether this executor joined a cluster (one that may still be adding nodes)
        self._actor_counts: dict[str, int] = {}  # host key → actors started (_actor_count)
        self._hosts: dict[str, _RayHosts] = {}
        self._load_s: dict[str, list[float]] = {}
        self.node_wait_s = node_wait_s
        self._down_since: dict[str, float] = {}  # actor id → when it was first seen not running with batches to run
        self._next_watch = 0.0
        # Attempts whose host died under them, from Ray's threads to the driver's (`_redo`): (pool, batch, attempt,
        # Ray's error, whether it counts against the batch).
        self._died: deque[tuple[_RayHosts, _Batch, int, BaseException, bool]] = deque()
        # actor id → (when read, its state, its restarts so far): `_states`
        self._seen: dict[str, tuple[float, str | None, int | None]] = {}
        self.env = {**WORKER_ENV, **(env or {})}
        if python_backends_allowed():  # the user's opt-in reaches the workers that load those backends
            self.env[ALLOW_PYTHON_ENV] = "1"
        if ray.is_initialized():
            self._quiet()
            return
        runtime_env = {"env_vars": dict(self.env)}
        if address != "local":
            runtime_env = _beside_job_env(runtime_env)
        if address not in (None, "local"):
            _check_reachable(address, "execution.ray_address")
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
            self._joined = True
            self._quiet()
            return
        if address is None:
            existing = running_cluster_address()
            if existing:
                # Joining must fail loudly: silently starting an embedded Ray beside an unreachable cluster would run
                # a cluster-sized job on the head node's CPUs.
                _check_reachable(existing, "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS")
                                 else "the address `ray start` recorded here")
                ray.init(address=existing, runtime_env=runtime_env)
                self._joined = True
                log.info("joined the Ray cluster at %s", existing)
                self._quiet()
                return
        _loopback_only(ray)
        try:
            # address="local": a Ray of this process's own. Without an address ray.init reads the address file that
            # any `ray start` (or a cluster that crashed) left in $RAY_TMPDIR and joins that cluster, the one
            # running_cluster_address declined (or "local" said not to join); with num_cpus given it refused, and the
            # refusal read as an object store too large.
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",
                num_cpus=num_cpus or max(4, os.cpu_count() or 1),
                object_store_memory=object_store_memory,
                include_dashboard=False,
                runtime_env=runtime_env,
                log_to_driver=False,
                configure_logging=True,
                logging_level=logging.WARNING,
            )
        except ValueError as exc:
            if not _about_memory(exc):  # not the object store's size: Ray's own words, not a wrong hint
                raise
            raise ConfigError(f"execution.object_store_memory ({object_store_memory:,} bytes): the embedded Ray "
                              f"cannot start with it ({exc}); lower it") from None
        self._owns_ray = True
        self._quiet()

    def check_fits(self, needs: list[tuple[str, StagePlan]], wait_s: float) -> None:
        """Refuse, before any model is called, a model whose actor no node of the cluster can hold (Ray would keep
        it pending for ever, after the stages before it were paid for). A cluster this executor joined may still be
        adding nodes (an autoscaler starts cluster.yaml's GPU workers minutes after `ray up`): it is asked again
        for up to `wait_s` seconds; an embedded Ray gets no more nodes, and a Ray the caller started is theirs to
        size: neither is waited for.

        Args:
            needs: (what the user configured, e.g. "judges[0] (gpt-4o)", the plan of its actors).
        """
        shapes = [f"{who}: {why}" for who, plan in needs if (why := misshapen(plan))]
        if shapes:  # no node added can fix these: said at once
            raise ConfigError("a model's actors can never be placed: " + "; ".join(shapes))
        wait_s = wait_s if self._joined else 0.0
        deadline = time.monotonic() + wait_s
        asked = False
        try:
            while True:
                nodes = [{r: float(v) for r, v in n.get("Resources", {}).items()} for n in self._ray.nodes()
                         if n.get("Alive")]
                short = [(who, plan, why) for who, plan in needs if (why := unplaceable(plan, nodes))]
                if not short:
                    return
                problems = [f"{who}: {why}" for who, _, why in short]
                if time.monotonic() >= deadline:
                    self._refuse(problems, nodes, needs, wait_s)
                if not asked:
                    # An autoscaler adds nodes only for work that waits for them: asked for these shapes, as a
                    # pending actor would ask, it starts the node types that hold them (cluster.yaml's GPU workers).
                    log.warning("waiting up to %g s for Ray nodes that can hold: %s", wait_s, "; ".join(problems))
                    asked = self._ask_autoscaler([b for _, plan, _ in short for b in _demand(plan)])
                time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        finally:
            if asked:
                self._ask_autoscaler([])  # the actors themselves keep the nodes they need from here on

    def _ask_autoscaler(self, bundles: list[dict[str, float]]) -> bool:
        """Ask the cluster's autoscaler for `bundles` (none: withdraw the request); False where there is none."""
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=bundles)
            return True
        except Exception as exc:  # no autoscaler (a fixed cluster), or one that refuses the request
            log.debug("asking the autoscaler for %s: %s", bundles, exc)
            return False

    @staticmethod
    def _refuse(problems: list[str], nodes: list[dict[str, float]], needs: list[tuple[str, StagePlan]],
                wait_s: float) -> None:
        waited = f" (waited {wait_s:g} s for more nodes: execution.node_wait_s)" if wait_s else ""
        gpuless_vllm = not any(n.get("GPU") for n in nodes) and any(
            plan.gpus_per_actor() > 0 and plan.kwargs.get("model", {}).get("backend") == "vllm" for _, plan in needs)
        hint = "; a vLLM model served by vLLM's CPU build needs `options: {device: cpu}`" if gpuless_vllm else ""
        raise ConfigError("the Ray cluster cannot hold every model of the run" + waited + ": " + "; ".join(problems)
                          + ". Set the model's num_cpus / num_gpus / options (tensor_parallel_size) to what a node "
                          "has, or add such nodes" + hint)

    @property
    def joined(self) -> bool:
        """Whether this executor joined a running cluster (whose nodes are other machines than the driver)."""
        return self._joined

    def check_models(self, checks: list[tuple[str, StagePlan, tuple]], offline: bool) -> None:
        """On a cluster this executor joined, check every model on each live node that may host its actors, as
        preflight did on the driver: a folder on the GPU nodes' disks only, a hub id in the head's cache only, an
        API key in the driver's environment but not in the one `ray start` gave the workers — each found here,
        before the first model call, naming the node. A tiny task pinned to each node does the check (no resources).

        Args:
            checks: (config key, the plan of its actors, (role, backend, model, options)).
        """
        if not self._joined or not checks:
            return
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        problems = []
        for where, address, why, exc in self._on_nodes(check_model_here, [
                (where, node, (*spec, offline)) for where, plan, spec in checks
                for node in self._hosts_for(plan, nodes)]):
            if exc is not None:  # the node died, or cannot import the project, or did not answer in time
                why = f"model: the check could not run there ({type(exc).__name__}: {str(exc)[:200]})"
            if why:
                problems.append(f"{where}.{why} (on node {address})")
        if problems:
            raise ConfigError("a model cannot be served on the cluster's nodes that would run it: "
                              + "; ".join(problems))

    def _on_nodes(self, fn: Any, jobs: list[tuple[str, dict[str, Any], tuple]],
                  timeout_s: float = 600.0) -> list[tuple[str, str, Any, Exception | None]]:
        """Run fn(*args) for each (config key, node, args) as a task pinned to that node (no resources), all at once
        and within `timeout_s` together: (config key, the node's address, the result, or the exception instead)."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=0)(fn)
        refs = [(where, node.get("NodeManagerAddress", node["NodeID"]),
                 task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                 .remote(*args)) for where, node, args in jobs]
        out: list[tuple[str, str, Any, Exception | None]] = []
        deadline = time.monotonic() + timeout_s
        for where, address, ref in refs:
            try:
                out.append((where, address, ray.get(ref, timeout=max(1.0, deadline - time.monotonic())), None))
            except Exception as exc:
                out.append((where, address, None, exc))
        return out

    @staticmethod
    def _hosts_for(plan: StagePlan, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The live nodes (ray.nodes() entries) where an actor of `plan`, or a bundle of its group, fits."""
        shapes = plan.placement_group["bundles"] if plan.placement_group else [
            {"CPU": plan.num_cpus, "GPU": plan.num_gpus}]
        return [node for node in nodes
                if any(_fits(shape, {r: float(v) for r, v in node.get("Resources", {}).items()}) for shape in shapes)]

    def probe_endpoints(self, probes: list[tuple[str, StagePlan, tuple]]) -> None:
        """Send each HTTP model its first requests (actors.registry.probe_model) from where it will run: on a cluster
        this executor joined, from one node that may host its actors (the workers' keys, network and proxy are the
        ones its requests will use, and the driver may have none of them); otherwise from here.

        Args:
            probes: (config key, the plan of its actors, (role, backend, model, options, samplings, conversation)).
        """
        if not probes:
            return
        if not self._joined:
            _probe_outcome(_probe_all_here(probes))
            return
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        # One node each: check_fits found a node for every model; one that has gone since is found at its stage.
        jobs = [(where, hosts[0], spec) for where, plan, spec in probes if (hosts := self._hosts_for(plan, nodes))]
        _probe_outcome([(where, f" (from node {address})", outcome if exc is None else  # the node died, or no answer
                         (None, [f"the probe could not run ({type(exc).__name__}: {str(exc)[:200]})"]))
                        for where, address, outcome, exc in self._on_nodes(probe_here, jobs)])

    def _quiet(self) -> None:
        """The driver shows one progress bar per stage (rate and ETA), locally and on a cluster; Ray's INFO lines
        would bury it."""
        for name in ("ray.data", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def submit(self, plan: StagePlan, batch: pa.Table) -> Future:
        """Run one batch on the least busy host of the plan that runs (started on first use). The caller calls
        `fail_stranded` while it waits: that is where a batch whose host died is sent again."""
        self._start_hosts(plan)
        hosted = self._hosts[plan.host_key()]
        job = _Batch(plan, batch, _Relayed())
        job.future.set_running_or_notify_cancel()
        states = self._states(hosted)
        self._send(hosted, self._pick(hosted, states), job, states)
        return job.future

    def _send(self, hosted: "_RayHosts", k: int, job: "_Batch", states: list[str | None] | None = None) -> None:
        """Give `job` to host `k` of the pool, as a new attempt."""
        states = self._states(hosted) if states is None else states
        with hosted.lock:
            job.attempt += 1
            # What runs before it on that host: if the host dies under it, it was running only where all of these
            # had ended (an actor runs its calls in order).
            job.ahead = [(b, b.attempt) for b in _pending(hosted.busy[k]) if b.died != b.attempt]
            # A call to a host that is restarting may fail at once ("the actor is restarting"): no death of its. One
            # to a host still starting waits for it.
            job.to_restarting = states[k] == "RESTARTING"
            actor_id = hosted.actors[k]._actor_id.hex()
            restarts = self._seen.get(actor_id, (0.0, None, None))[2]
            # Where Ray cannot say which life of the host it is, each attempt is one: deaths are never left uncounted.
            job.host = (actor_id, restarts if restarts is not None else -job.attempt)
            try:
                job.ref = hosted.actors[k].run.remote(job.plan.stage, job.plan.kwargs, job.rows)
            except BaseException:  # not sent (its arguments do not serialise, the object store is full): never
                job.ahead = []     # counted as the host's, nor waited for (the caller fails the batch)
                raise
            hosted.busy[k].append(job)
            attempt, ref = job.attempt, job.ref
        # Outside the lock: a call already answered runs its callback here, and the callback takes the lock.
        ref.future().add_done_callback(lambda source: self._answered(hosted, job, attempt, source))

    def _answered(self, hosted: "_RayHosts", job: "_Batch", attempt: int, source: Future) -> None:
        """Ray's answer to one attempt (on Ray's thread): the batch's result or its stage's error; or its host died
        (or never started and the attempt was withdrawn), and the driver sends the batch again (`_redo`)."""
        errors = self._ray.exceptions
        try:
            exc = source.exception()
        except CancelledError as cancelled:
            exc = cancelled
        with hosted.lock:
            if attempt != job.attempt or job.future.done():
                return  # an attempt since replaced, or a batch the executor failed first (its host given up)
            if not isinstance(exc, (errors.RayActorError, errors.TaskCancelledError)):
                job.ended = attempt
            else:
                job.died = attempt
            # Its host died under it (or it was withdrawn from one that never started): sent again by the driver,
            # unless its pool was released (the run stops), where the error stands.
            if job.died == attempt and self._hosts.get(hosted.key) is hosted:
                # Counted against the batch only where it was running: sent to a host not restarting, and every
                # call queued before it there had ended. A host restarting or never started, an attempt withdrawn,
                # a node the autoscaler preempted: not the batch's doing.
                running = not job.to_restarting and all(b.ended == n for b, n in job.ahead)
                # ActorUnavailableError ("temporarily unavailable") counts too: it is what Ray 2.60 gives the call
                # in flight, and those queued, when a restartable host's process dies (measured: os._exit in the
                # call). A lost connection to a host that lives on reads the same; two such fail the batch alone,
                # for a rerun, where an uncounted crash would resend it for ever.
                counted = running and isinstance(exc, errors.RayActorError) and not exc.preempted
                # Once per life of the host: a call sent before Ray knew its node was lost fails at once, as the
                # one it was running did, and is the same death.
                counted = counted and job.host not in job.deaths_on
                if counted:
                    job.deaths_on.add(job.host)
                for actor in hosted.actors:  # its state, cached as running, is read again before the next call
                    self._seen.pop(actor._actor_id.hex(), None)
                self._died.append((hosted, job, attempt, exc, counted))
                return
        if exc is None:
            job.finish(result=source.result())
        else:
            job.finish(exc=exc)

    def _redo(self) -> None:
        """Send again, on the driver's thread, each batch whose host died under it, once a host of its pool runs (or
        is starting); fail one whose host died under it HOST_DEATHS_PER_BATCH times (HostCrashed), or whose pool was
        released or died past its restarts. A batch whose pool does not come back is failed by the watch (its host
        stranded), as any batch on it."""
        later = []
        fresh: dict[str, list[str | None]] = {}
        for _ in range(len(self._died)):  # those there now: a call failing at once comes back at the next look
            hosted, job, attempt, exc, counted = self._died.popleft()
            if attempt != job.attempt or job.future.done():
                continue
            if self._hosts.get(hosted.key) is not hosted:  # released (the run stops): nothing to send it to
                job.finish(exc=exc)
                continue
            plan = job.plan
            job.deaths += counted
            limit = HOST_DEATHS_PER_BATCH if plan.max_restarts is None else min(HOST_DEATHS_PER_BATCH,
                                                                                   plan.max_restarts + 1)
            if job.deaths >= limit:
                reason = (f"stage {plan.label}: its host died {job.deaths} times running this batch "
                          f"({_line(exc)}); the batch fails alone, for a rerun to compute")
                log.warning("%s", reason)
                job.finish(exc=HostCrashed(reason))
                continue
            if hosted.key not in fresh:  # read once a look: a host's state changes in seconds, not per batch
                fresh[hosted.key] = self._states(hosted, fresh=True)
            states = fresh[hosted.key]
            if all(state == "DEAD" for state in states):  # restarts used up (plan.max_restarts): as Ray says
                job.finish(exc=exc)
                continue
            k = self._pick(hosted, states)
            if states[k] == "RESTARTING":  # none runs yet: sent when one is back (the call would fail at once)
                later.append((hosted, job, attempt, exc, False))  # counted once, above
                continue
            try:
                with hosted.lock:
                    for queue in hosted.busy:
                        if job in queue:
                            queue.remove(job)
                self._send(hosted, k, job, states)
            except Exception as error:  # a batch that cannot be sent again fails; it never waits for ever
                job.finish(exc=error)
        self._died.extend(later)

    def _states(self, hosted: "_RayHosts", fresh: bool = False) -> list[str | None]:
        """The Ray state of each host of the pool, read at most every STATE_TTL_S unless `fresh`."""
        now = time.monotonic()
        states = []
        for actor in list(hosted.actors):
            actor_id = actor._actor_id.hex()
            seen = self._seen.get(actor_id)
            if fresh or seen is None or now - seen[0] >= STATE_TTL_S:
                seen = self._seen[actor_id] = (now, *_actor_info(self._ray, actor_id))
            states.append(seen[1])
        return states

    def _usable(self, hosted: "_RayHosts", states: list[str | None] | None = None) -> list[int]:
        """The hosts of a pool that get batches: those that run, where one does; else those that may yet (starting,
        restarting, or whose state Ray cannot say). A host waiting for a node would keep its batches waiting with it
        while another runs (num_actors more than the cluster holds; a replica whose node was lost)."""
        states = self._states(hosted) if states is None else states
        alive = [k for k, state in enumerate(states) if state in ("ALIVE", None)]
        if any(state == "ALIVE" for state in states):
            return alive
        return [k for k, state in enumerate(states) if state != "DEAD"] or list(range(len(states)))

    def _pick(self, hosted: "_RayHosts", states: list[str | None] | None = None) -> int:
        """The usable host of the pool with the fewest batches."""
        with hosted.lock:
            busy = [len(_pending(b)) for b in hosted.busy]
        return min(self._usable(hosted, states), key=busy.__getitem__)

    def fail_stranded(self) -> None:
        """Send again the batches whose host died under them (at every call), and give up the hosts that have
        batches to run but are not running, and that no live node of the cluster can hold, once that has lasted
        `node_wait_s` (STRANDED_MIN_S at least; looked at every STRANDED_CHECK_S): their batches fail with
        HostStranded, for a rerun to compute.

        A host (max_restarts -1) whose node is lost is restarted by Ray on a node that can hold it; where none is
        left, Ray keeps it restarting, and its batches waiting, for ever — the run hung without a word after every
        other stage had finished. Here it waits as long as the run waited for nodes before its first call (an
        autoscaler replacing the node), then the host is killed, its placement group removed, and the batches given
        to it fail; a later batch of its model starts a host again. A host that is only slow to start is waited
        for; one that waits for room that idle kept hosts hold gets it (`_room_for`). A replica that has not
        started while another of its pool runs gives its batches to the others, and is stopped after node_wait_s.
        """
        self._redo()
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + STRANDED_CHECK_S
        try:
            self._watch(now)
        except Exception as exc:  # the watch reads Ray's state (a private table, node lists): it never stops a run
            log.debug("looking for stranded hosts: %s", exc)

    def _watch(self, now: float) -> None:
        """fail_stranded's look, at `now`, at each host that has batches to run, or has not started while another
        of its pool runs."""
        nodes: list[dict[str, float]] | None = None
        down_since, self._down_since = self._down_since, {}  # only hosts still down, with a reason to watch, go on
        waiting: list[_RayHosts] = []
        for hosted in list(self._hosts.values()):
            states = self._states(hosted, fresh=True)
            runs = "ALIVE" in states
            for actor, state in zip(list(hosted.actors), states):
                if state in (None, "ALIVE"):  # running, or Ray cannot say: never given up on a guess
                    continue
                with hosted.lock:
                    queued = _pending(hosted.busy[hosted.actors.index(actor)])
                spare = state == "PENDING_CREATION" and runs
                if not queued and not spare:
                    continue
                actor_id = actor._actor_id.hex()
                since = self._down_since[actor_id] = down_since.get(actor_id, now)
                late = now - since >= max(self.node_wait_s, STRANDED_MIN_S)
                if spare:
                    # Not a host just slower to start than the others: its calls, waiting in Ray's queue for it,
                    # are withdrawn and go to the hosts that run (_redo); it gets no more (_usable).
                    if now - since >= STRANDED_MIN_S:
                        for job in queued:
                            self._ray.cancel(job.ref)
                    if late:
                        self._give_up(hosted, actor, state, "another host of its model runs", now - since,
                                      fail=False)
                    continue
                if nodes is None:
                    nodes = [{r: float(v) for r, v in n.get("Resources", {}).items()} for n in self._ray.nodes()
                             if n.get("Alive")]
                why = unplaceable(hosted.plan, nodes)
                if why is None:  # starting, or waiting for room on a node that can hold it
                    if now - since >= STRANDED_MIN_S:
                        waiting.append(hosted)
                    continue
                if late:
                    self._give_up(hosted, actor, state, why, now - since)
        if waiting:
            self._room_for(waiting)

    def _room_for(self, waiting: list["_RayHosts"]) -> None:
        """Stop idle kept hosts that hold what a host with batches, down this long, needs to start again.

        A node lost: Ray restarts the host on a node that can hold it, but a kept host with nothing to do (the
        judge's, waiting for samples) may hold that node's GPU; the restarted host and the run waited for ever. As
        `_make_room` does before a stage starts, a kept host is cheaper to load again than a run that never ends."""
        free = self._ray.available_resources()
        with_batches = {h.key for h in self._hosts.values() if self._has_work(h)}
        stop: set[str] = set()
        short: set[str] = set()
        for hosted in waiting:
            plan = hosted.plan
            need = (_total([dict(b) for b in plan.placement_group["bundles"]]) if plan.placement_group
                    else {"CPU": plan.num_cpus, "GPU": plan.num_gpus})
            lacks = {r for r, v in need.items() if v > 0 and free.get(r, 0.0) + _EPS < v}
            short |= lacks
            stop |= {key for key, h in self._hosts.items() if key not in with_batches
                     and any(h.resources.get(r, 0) > 0 for r in lacks)}
        if stop:
            log.warning("hosts with batches have waited %g s or more to start again, and %s short: stopping the idle "
                        "kept hosts of %s to make room (they load again if a later stage needs them)",
                        STRANDED_MIN_S, "/".join(sorted(short)), ", ".join(sorted(stop)))
            self.release(set(self._hosts) - stop)

    def _give_up(self, hosted: "_RayHosts", actor: Any, state: str, why: str, waited: float,
                 fail: bool = True) -> None:
        """Kill one host that could not run and take it out of its pool: its batches fail (`fail`), or, where
        another host of the pool runs them, go to the others (`_redo`)."""
        if fail:
            what = ("its node was lost, and no node left can hold it" if state == "RESTARTING"
                    else "no node can hold it")
            reason = (f"stage {hosted.plan.label}: a host has not run for {waited:.0f} s ({what}: {why}; "
                      "execution.node_wait_s)")
            log.warning("%s: its batches fail, for a rerun to compute", reason)
        else:
            reason = f"stage {hosted.plan.label}: a host has not started in {waited:.0f} s ({why}); it is stopped"
            log.warning("%s (execution.node_wait_s)", reason)
        with hosted.lock:
            k = hosted.actors.index(actor)
            jobs = _pending(hosted.busy.pop(k))
            hosted.actors.pop(k)
            share = 1.0 / (len(hosted.actors) + 1)
            hosted.resources = {r: v * (1.0 - share) for r, v in hosted.resources.items()}
            group = hosted.groups.pop(k) if hosted.groups else None
        for job in jobs:
            if fail:
                job.finish(exc=HostStranded(reason))
            else:  # never started: not the batch's doing
                self._died.append((hosted, job, job.attempt, HostStranded(reason), False))
        self._down_since.pop(actor._actor_id.hex(), None)
        self._seen.pop(actor._actor_id.hex(), None)
        try:
            self._ray.kill(actor, no_restart=True)
            if group is not None:
                self._ray.util.remove_placement_group(group)
        except Exception as exc:  # already gone
            log.debug("killing a stranded host of %s: %s", hosted.key, exc)
        if not hosted.actors:  # a later batch of its model starts the host again
            self._hosts.pop(hosted.key, None)

    def capacity(self, plan: StagePlan) -> int:
        """Batches the plan's hosts may take now: BATCHES_PER_ACTOR each, so that an actor starts its next batch
        the moment one ends instead of waiting for the driver (Ray Data keeps up to 4 per actor in flight)."""
        hosted = self._hosts.get(plan.host_key())
        if hosted is None:
            return self._actor_count(plan) * BATCHES_PER_ACTOR
        usable = self._usable(hosted)
        with hosted.lock:
            hosted.busy = [_pending(b) for b in hosted.busy]
            # The room on the hosts that get batches. Batches parked on the others (a replica not started while
            # another runs) are not taken from it: a running host stood idle beside them until the watch withdrew
            # them (STRANDED_MIN_S); withdrawn, they queue one batch deeper for a while.
            return sum(max(0, BATCHES_PER_ACTOR - len(hosted.busy[k])) for k in usable)

    def can_start(self, plan: StagePlan) -> bool:
        """Whether the plan's hosts run, or fit beside the kept ones without stopping any."""
        if plan.host_key() in self._hosts:
            return True
        actors = self._actor_count(plan)
        need = {"CPU": plan.num_cpus * actors, "GPU": plan.gpus_per_actor() * actors}
        free = self._free()
        return all(v <= 0 or v <= free[r] + 1e-9 for r, v in need.items())

    def _free(self) -> dict[str, float]:
        """CPUs and GPUs the cluster has beyond what the kept hosts reserve. Counted here rather than read from
        ray.available_resources(), which lags behind actors just started or stopped."""
        total = self._ray.cluster_resources()
        return {r: total.get(r, 0.0) - sum(h.resources.get(r, 0.0) for h in self._hosts.values())
                for r in ("CPU", "GPU")}

    def _start_hosts(self, plan: StagePlan) -> None:
        """Start the plan's hosts on first use (kept until released)."""
        ray = self._ray
        key = plan.host_key()
        if key in self._hosts:
            return
        self._check_gpus(plan)
        self._make_room(plan)
        restarts = -1 if plan.max_restarts is None else plan.max_restarts
        # Ray restarts a host that died; its batches are sent again by the executor (`_redo`), not by Ray
        # (max_task_retries), which would run a batch that kills its host again for ever and fail the batches
        # queued behind it as often as that one.
        options = dict(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=restarts, max_task_retries=0,
                       runtime_env={"env_vars": {**self.env, **plan.env}})
        actors = self._actor_count(plan)
        hosted = _RayHosts(key, plan, {"CPU": plan.num_cpus * actors, "GPU": plan.gpus_per_actor() * actors})
        remote = ray.remote(StageHost)
        # Registered before its actors start: one that fails to start (Ray refuses its shape) leaves the groups and
        # actors already made to `release`, which frees them, instead of holding their GPUs until the driver exits.
        self._hosts[key] = hosted
        try:
            for _ in range(actors):
                extra = {}
                if plan.placement_group:
                    from actors.registry import placement_group_args

                    # One group per host (vLLM with TP×PP > 1 captures its Ray workers into it); removed on release,
                    # since groups outlive their actors and would hold the GPUs.
                    extra = placement_group_args(plan.placement_group["bundles"],
                                                 plan.placement_group.get("strategy", "PACK"))
                    hosted.groups.append(extra["scheduling_strategy"].placement_group)
                hosted.actors.append(remote.options(**options, **extra).remote())
                hosted.busy.append([])
        except (ValueError, TypeError) as exc:  # Ray's checks of the actor's resources against its bundles
            self.release(set(self._hosts) - {key})
            raise ConfigError(f"stage {plan.label}: Ray refused its actors' resources ({exc})") from None
        except BaseException:
            self.release(set(self._hosts) - {key})
            raise

    def _actor_count(self, plan: StagePlan) -> int:
        """The plan's num_actors, or as many as the embedded Ray holds at once: an actor no node can take stays
        pending for ever, and the batches handed to it with it (a stage of 4 actors × 2 CPUs on 4 CPUs wrote half
        its units, then waited). A cluster this executor joined may add nodes (an autoscaler): it gets them all."""
        if self._joined:
            return plan.num_actors
        if plan.host_key() in self._actor_counts:
            return self._actor_counts[plan.host_key()]
        nodes = [{r: float(v) for r, v in n.get("Resources", {}).items()} for n in self._ray.nodes() if n.get("Alive")]
        group = plan.placement_group
        if group:  # each actor's own group (vLLM with TP×PP > 1): as many groups as the nodes hold
            fit = groups_that_fit(plan, nodes, plan.num_actors)
            shape = f"placement groups of {len(group['bundles'])} × {_shape(dict(group['bundles'][0]))}"
        else:
            fit = actors_that_fit({"CPU": plan.num_cpus, "GPU": plan.num_gpus}, nodes)
            shape = _shape({"CPU": plan.num_cpus, "GPU": plan.num_gpus})
        count = self._actor_counts[plan.host_key()] = plan.num_actors if fit >= plan.num_actors else max(1, fit)
        if count == plan.num_actors:
            return count
        log.warning("stage %s: %d actors of %s do not fit on this machine's Ray at once; %d start (num_actors)",
                    plan.label, plan.num_actors, shape, count)
        return count

    def _has_work(self, hosted: "_RayHosts") -> bool:
        """Whether a pool has batches: running or queued on its hosts, or waiting to be sent again (`_died`: those of
        a host that died or was given up, out of `busy` until the next look; a pool that looked idle was released
        with them, and they failed with HostStranded and broke their stage's lane)."""
        with hosted.lock:
            if any(_pending(b) for b in hosted.busy):
                return True
        return any(h is hosted and not job.future.done() for h, job, *_ in list(self._died))

    def _make_room(self, plan: StagePlan) -> None:
        """Stop kept hosts when the plan's hosts would not fit beside them.

        Hosts are kept for later stages, but a later stage's model loading again costs less than a run that waits
        forever: a one-GPU machine whose judge (kept for judging) holds the GPU while the generator needs it. Hosts
        holding a resource the plan lacks are released; the stage that needs them again starts them again.
        """
        actors = self._actor_count(plan)
        need = {"CPU": plan.num_cpus * actors, "GPU": plan.gpus_per_actor() * actors}
        free = self._free()
        short = {r for r, v in need.items() if v > 0 and v > free[r] + 1e-9}
        # Never a host with batches still running (stages stream into each other): its stage would lose them.
        holding = {k for k, h in self._hosts.items() if any(h.resources.get(r, 0) > 0 for r in short)
                   and not self._has_work(h)}
        if holding:
            log.info("stage %s: %s short; stopping %d kept model hosts to make room (they load again if a later "
                     "stage needs them)", plan.label, "/".join(sorted(short)), len(holding))
            self.release(set(self._hosts) - holding)

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

    def release(self, keep: set[str]) -> None:
        """Stop the hosts whose key is not in `keep` (no later stage needs their models) and free their GPUs."""
        ray = self._ray
        for key in [k for k in self._hosts if k not in keep]:
            hosted = self._hosts.pop(key)
            with hosted.lock:
                busy = any(_pending(b) for b in hosted.busy)
            if not busy:
                try:
                    for one in ray.get([a.load_seconds.remote() for a in hosted.actors], timeout=60):
                        _add_loads(self._load_s, one)
                except Exception as exc:  # a host that cannot answer any more: its load time is not known
                    log.debug("reading the load times of %s: %s", key, exc)
            # Every host's close at once (vLLM's engine processes exit with their engine). With batches still
            # running (Ctrl-C, a run stopped by an error) the call waits behind them: 60 s a host, one after the
            # other, held their GPUs for 180 s on two busy hosts; they get 10 s in all, then are killed.
            try:
                ray.get([a.close.remote() for a in hosted.actors], timeout=10 if busy else 60)
            except Exception as exc:
                log.debug("closing the hosts of %s: %s", key, exc)
            for actor in hosted.actors:
                ray.kill(actor, no_restart=True)
            for pg in hosted.groups:
                try:
                    ray.util.remove_placement_group(pg)
                except Exception as exc:  # already removed, or Ray is shutting down
                    log.debug("removing placement group %s: %s", pg.id.hex(), exc)

    def load_seconds(self) -> dict[str, list[float]]:
        """Seconds each load of each model took over the run ("role:backend:model" → [s, …], every host)."""
        loads = {k: list(v) for k, v in self._load_s.items()}
        for hosted in self._hosts.values():
            try:
                for one in self._ray.get([a.load_seconds.remote() for a in hosted.actors], timeout=60):
                    _add_loads(loads, one)
            except Exception as exc:
                log.debug("reading the load times of %s: %s", hosted.key, exc)
        return loads

    def close(self) -> None:
        try:
            if self._ray.is_initialized():
                self.release(set())
        finally:
            if self._owns_ray:
                self._ray.shutdown()


@dataclass
class _RayHosts:
    """The Ray actors (and their placement groups) of one host key."""

    key: str
    plan: StagePlan  # the plan that started them
    resources: dict[str, float] = field(default_factory=dict)  # what all its actors reserve together
    actors: list[Any] = field(default_factory=list)
    groups: list[Any] = field(default_factory=list)
    busy: list[list[_Batch]] = field(default_factory=list)  # per actor: batches given to it and not finished
    lock: threading.Lock = field(default_factory=threading.Lock)  # futures finish on Ray's threads


# Batches given to one Ray host at a time by `submit`: one running and one waiting in the actor's queue.
BATCHES_PER_ACTOR = 2

# Times a batch's host may die while running it before the batch fails alone (HostCrashed). One death may be the
# node's or a neighbour's doing; a batch under which its host died twice is the cause (a segfault, the OOM killer on
# an oversized batch), and every further try costs a model load. A node the autoscaler preempted is not counted.
HOST_DEATHS_PER_BATCH = 2

# How long a read of a host's Ray state serves `submit` and `capacity` (one control-store call per host).
STATE_TTL_S = 2.0

# How often RayExecutor.fail_stranded looks at the hosts with batches to run, and the least time one may be kept from
# running before its batches fail: a host whose process crashed is back in seconds (node_wait_s: 0 must not give up
# on it).
STRANDED_CHECK_S = 10.0
STRANDED_MIN_S = 60.0


class HostStranded(RuntimeError):
    """A batch's host could not run for node_wait_s: its node was lost and none that can hold it is alive."""


class HostCrashed(RuntimeError):
    """A batch's host died HOST_DEATHS_PER_BATCH times while running it: the batch fails alone (its units are failed
    shards, for a rerun), and the host, restarted, goes on with the other batches."""


class _Relayed(Future):
    """A batch's future as the driver sees it, across the attempts of the batch: the answer of the attempt that
    counts, or the executor's own failure first (a host given up); whichever is first stands."""

    def settle(self, result: Any = None, exc: BaseException | None = None) -> None:
        try:
            if exc is not None:
                self.set_exception(exc)
            else:
                self.set_result(result)
        except InvalidStateError:  # settled first by the other side: this late word is dropped
            pass


@dataclass(eq=False)
class _Batch:
    """One batch given to a pool of Ray hosts: what the driver waits on (`future`) and what it takes to send the
    batch again when its host dies under it."""

    plan: StagePlan
    rows: pa.Table
    future: _Relayed
    attempt: int = 0  # the attempt that counts: a late answer of an earlier one is dropped
    ref: Any = None  # Ray's reference to the attempt's result (withdrawn with ray.cancel)
    ahead: list[tuple["_Batch", int]] = field(default_factory=list)  # (batch, attempt) queued before it on its host
    ended: int = 0  # the attempt that ended with an answer (a result, or the stage's own error)
    died: int = 0  # the last attempt whose host died under it (or that was withdrawn)
    to_restarting: bool = False  # whether its host was restarting when the attempt was sent
    host: tuple[str, int] = ("", 0)  # the host (actor id, its restarts then) the attempt was sent to
    deaths_on: set[tuple[str, int]] = field(default_factory=set)  # the lives of hosts that died running it
    deaths: int = 0  # times its host died while running it

    def finish(self, result: Any = None, exc: BaseException | None = None) -> None:
        """Settle the batch's future, and let go of what only a resend needs: each batch holds those queued before it
        (`ahead`), which held theirs — a kept pool's every batch, its rows, its result and (by `ref`) its copy in
        Ray's object store stayed reachable until the pool was released (60 batches of 1 MB: 76 MiB held)."""
        self.future.settle(result=result, exc=exc)
        self.ahead, self.ref = [], None


def _line(exc: BaseException) -> str:
    """An error in a line: its type and its first words (Ray's errors run over many lines)."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def _actor_state(ray: Any, actor_id: str) -> str | None:
    """The state Ray's control store holds for an actor (ALIVE, RESTARTING, PENDING_CREATION, DEAD, …), or None
    where it cannot say. ray._private.state.actors is private: the public ray.util.state needs the dashboard, which an
    embedded Ray does not start; tests/engine/execution/test_executor.py fails if a Ray release moves it."""
    return _actor_info(ray, actor_id)[0]


def _actor_info(ray: Any, actor_id: str) -> tuple[str | None, int | None]:
    """An actor's state (as _actor_state) and how many times Ray has restarted it (None where Ray cannot say)."""
    try:
        info = ray._private.state.actors(actor_id=actor_id)
        return info.get("State"), info.get("NumRestarts")
    except Exception as exc:
        log.debug("reading the state of actor %s: %s", actor_id, exc)
        return None, None


def _pending(batches: list[_Batch]) -> list[_Batch]:
    return [b for b in batches if not b.future.done()]


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


def _about_memory(exc: ValueError) -> bool:
    """Whether Ray refused to start for the memory asked of it (its checks of the object store against the machine's
    memory and /dev/shm), rather than for anything else."""
    text = str(exc).lower()
    return ("memory" in text or "object store" in text) and "existing cluster" not in text


def _check_reachable(address: str, key: str, timeout_s: float = 10.0) -> None:
    """A Ray address of the form host:port answers on that port: where nothing listens, ray.init waited on the GCS
    for minutes with no word of taskdiv's. Client addresses (ray://…) and "auto" are left to Ray."""
    import socket

    if "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except ValueError:
        return  # not host:port after all: Ray says what it makes of it
    except OSError as exc:
        raise ConfigError(f"{key}: no Ray cluster answers at {address} ({exc.strerror or type(exc).__name__}): start "
                          "it (ray start --head), or give the head node's address") from None


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
        elif st.st_mode & 0o002 or (st.st_mode & 0o020 and not _own_private_group(st.st_gid)):
            # Group-writable in the user's own private group is this user's alone: Ubuntu's sessions (pam_umask,
            # USERGROUPS_ENAB) set umask 002, and `ray start` writes the file as 664 — refused, the documented
            # `ray submit` ran on an embedded Ray on the head.
            why = f"others may write it (mode {st.st_mode & 0o777:o})"
        if why:
            log.warning("not joining the Ray cluster named in %s: %s; starting an embedded Ray instead (name the "
                        "cluster with RAY_ADDRESS or execution.ray_address to join it)", address_file, why)
            return None
        return os.read(fd, 4096).decode("utf-8", "replace").strip() or None
    finally:
        os.close(fd)


def _beside_job_env(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The driver's runtime env less the variables a submitted job's own runtime env sets (`ray job submit
    --runtime-env-json '{"env_vars": {...}}'`): Ray refuses any key both set, even to the same value, and the run
    ended in a traceback where a job pointed HF_HUB_CACHE at a shared cache. A job's value that differs from what
    the run needs is refused, naming the variable."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")  # set by Ray's job supervisor for the job's driver
    if not raw:
        return runtime_env
    try:
        job_env = (json.loads(raw).get("runtime_env") or {}).get("env_vars") or {}
    except (ValueError, AttributeError):
        return runtime_env
    ours = runtime_env.get("env_vars") or {}
    differ = sorted(k for k in ours if k in job_env and str(job_env[k]) != ours[k])
    if differ:
        raise ConfigError("the submitted job's runtime env sets " + ", ".join(
            f"{k}={job_env[k]!r}" for k in differ) + " where this run needs " + ", ".join(
            f"{k}={ours[k]!r}" for k in differ) + ": leave them out of --runtime-env-json (the run sets them on its "
            "workers) or set them to the run's values")
    return {**runtime_env, "env_vars": {k: v for k, v in ours.items() if k not in job_env}}


def _own_private_group(gid: int) -> bool:
    """Whether `gid` is this user's private group: the user's primary group, named as the user, with no other
    member."""
    try:
        import grp
        import pwd

        group, user = grp.getgrgid(gid), pwd.getpwuid(os.getuid())
    except (ImportError, KeyError):
        return False
    return gid == user.pw_gid and group.gr_name == user.pw_name and all(m == user.pw_name for m in group.gr_mem)


def joins_cluster(address: str | None) -> bool:
    """Whether a RayExecutor made now with `address` would join a running cluster (as its constructor decides)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return False  # the caller's Ray: the executor uses it as it is
    if address == "local":
        return False
    return address is not None or running_cluster_address() is not None


def make_executor(kind: str, **kwargs: Any) -> LocalExecutor | RayExecutor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(**kwargs)
    raise ValueError(f"unknown executor {kind!r}")
