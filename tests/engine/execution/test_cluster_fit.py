"""Before the first model call, the run refuses a model whose actors no node of the Ray cluster can hold (Ray would
keep them pending for ever, after the stages before them were paid for), and on a cluster it joined it waits for
nodes an autoscaler is still adding. The cluster is given as Ray's `ray.nodes()` gives it (a double of that one
call: the placement rules are ours; tests/test_cluster.py runs a real two-node cluster)."""

from __future__ import annotations

import pytest

from actors.registry import scheduling
from engine.errors import ConfigError
from engine.execution.executor import RayExecutor, StagePlan, unplaceable
from engine.stages.classify import ClassifyStage

GPU_NODE = {"CPU": 8.0, "GPU": 4.0, "memory": 1e11}
HEAD = {"CPU": 4.0, "memory": 1e10}


def plan(num_cpus=0.25, num_gpus=0.0, backend="local", **options):
    need = scheduling(backend, options, num_gpus)
    return StagePlan(ClassifyStage, {"model": {"backend": backend}}, num_cpus=num_cpus, num_gpus=need["num_gpus"],
                     placement_group=need["placement_group"], label="classify[m]")


def test_an_actor_needs_its_cpus_and_gpus_on_one_node():
    assert unplaceable(plan(num_cpus=4), [HEAD, GPU_NODE]) is None
    # 12 CPUs in all, 8 at most on one node: Ray would keep the actor pending for ever
    assert "needs 9 CPU on one node" in unplaceable(plan(num_cpus=9), [HEAD, GPU_NODE])
    assert unplaceable(plan(num_gpus=4), [HEAD, GPU_NODE]) is None
    # 8 GPUs in the cluster, 4 on a node: a local model with num_gpus 6 fits no node (the old check summed them)
    assert "6 GPU on one node" in unplaceable(plan(num_gpus=6), [GPU_NODE, GPU_NODE])
    assert "none alive" in unplaceable(plan(), [])


def test_a_vllm_placement_group_is_packed_over_the_nodes_its_strategy_allows():
    tp8 = plan(backend="vllm", tensor_parallel_size=8)  # eight one-GPU bundles, PACK: they may span two nodes
    assert unplaceable(tp8, [HEAD, GPU_NODE, GPU_NODE]) is None
    assert "8 bundles of 1 GPU and 1 CPU (PACK)" in unplaceable(tp8, [HEAD, GPU_NODE])
    # vLLM's mp executor keeps every worker on the actor's node: eight GPUs on one node, which none has
    mp8 = plan(backend="vllm", tensor_parallel_size=8, distributed_executor_backend="mp")
    assert mp8.num_gpus == 8 and "8 GPU on one node" in unplaceable(mp8, [GPU_NODE, GPU_NODE])
    strict = StagePlan(ClassifyStage, {}, placement_group={"bundles": [{"GPU": 1, "CPU": 1}] * 6,
                                                           "strategy": "STRICT_PACK"})
    assert "on one node (STRICT_PACK)" in unplaceable(strict, [GPU_NODE, GPU_NODE])
    spread = StagePlan(ClassifyStage, {}, placement_group={"bundles": [{"GPU": 1, "CPU": 1}] * 3,
                                                           "strategy": "STRICT_SPREAD"})
    assert unplaceable(spread, [GPU_NODE, GPU_NODE]) is not None and unplaceable(spread, [GPU_NODE] * 3) is None


def test_the_actor_itself_must_fit_one_bundle_of_its_group():
    # Ray refuses such an actor with a ValueError when it is started (mid-run, its group already made)
    big = plan(num_cpus=2, backend="vllm", tensor_parallel_size=2)
    assert "lower num_cpus to at most 1" in unplaceable(big, [GPU_NODE])


def test_num_gpus_never_reserves_fewer_gpus_than_vllms_workers_use():
    assert plan(num_gpus=1, backend="vllm", tensor_parallel_size=2, distributed_executor_backend="mp").num_gpus == 2
    assert plan(num_gpus=3, backend="vllm").num_gpus == 3  # more than one is the user's to ask


class Nodes:
    """Ray's node table as an autoscaler changes it: the GPU worker joins after `joins_after` looks."""

    def __init__(self, joins_after: int | None) -> None:
        self.looks, self.joins_after = 0, joins_after

    def nodes(self):
        self.looks += 1
        joined = self.joins_after is not None and self.looks > self.joins_after
        return [{"Alive": True, "Resources": HEAD}] + ([{"Alive": True, "Resources": GPU_NODE}] if joined else []) \
            + [{"Alive": False, "Resources": GPU_NODE}]  # a dead node holds nothing


def executor(ray_nodes: Nodes, joined: bool) -> RayExecutor:
    ex = RayExecutor.__new__(RayExecutor)  # no Ray started: only its node table is read
    ex._ray, ex._joined, ex._owns_ray = ray_nodes, joined, not joined
    return ex


def test_a_joined_cluster_is_given_time_to_add_the_nodes_a_model_needs(monkeypatch):
    # An autoscaler adds nodes only for work that waits for them: it is asked for the missing shapes (as a pending
    # actor would ask) and the request is withdrawn once they are there.
    import ray.autoscaler.sdk

    asked = []
    monkeypatch.setattr(ray.autoscaler.sdk, "request_resources", lambda bundles=None, **kw: asked.append(bundles))
    monkeypatch.setattr("engine.execution.executor.time.sleep", lambda s: None)
    nodes = Nodes(joins_after=2)
    executor(nodes, joined=True).check_fits([("generators[0] (llama)", plan(num_gpus=1)), ("embedder", plan())],
                                            wait_s=600)
    assert nodes.looks == 3
    assert asked == [[{"CPU": 0.25, "GPU": 1.0}], []]


def test_an_actor_that_fits_no_bundle_of_its_group_is_refused_at_once(monkeypatch):
    # No node can fix it: a joined cluster is not waited for (it was, for node_wait_s)
    monkeypatch.setattr("engine.execution.executor.time.sleep", lambda s: pytest.fail("waited"))
    with pytest.raises(ConfigError, match=r"can never be placed: judges\[0\] \(big\): .*lower num_cpus to at most 1"):
        executor(Nodes(joins_after=None), joined=True).check_fits(
            [("judges[0] (big)", plan(num_cpus=2, backend="vllm", tensor_parallel_size=2))], wait_s=600)


def test_a_vllm_model_on_a_fraction_of_a_gpu_keeps_its_fraction():
    assert plan(num_gpus=0.5, backend="vllm").num_gpus == 0.5  # two engines sharing one GPU, as configured


def test_a_cluster_that_cannot_hold_a_model_is_refused_naming_its_config_key(monkeypatch):
    clock = iter(range(0, 10_000, 7))
    monkeypatch.setattr("engine.execution.executor.time.sleep", lambda s: None)
    monkeypatch.setattr("engine.execution.executor.time.monotonic", lambda: next(clock))
    with pytest.raises(ConfigError, match=r"waited 60 s .*execution\.node_wait_s.*judges\[1\] \(big\): one actor "
                                          r"needs 0.25 CPU and 1 GPU on one node; the cluster's nodes have 4 CPUs"):
        executor(Nodes(joins_after=None), joined=True).check_fits(
            [("embedder", plan()), ("judges[1] (big)", plan(num_gpus=1))], wait_s=60)
    # An embedded Ray gets no nodes: refused at once, without waiting
    nodes = Nodes(joins_after=None)
    with pytest.raises(ConfigError, match="cannot hold every model of the run: judges"):
        executor(nodes, joined=False).check_fits([("judges[1] (big)", plan(num_gpus=1))], wait_s=600)
    assert nodes.looks == 1
