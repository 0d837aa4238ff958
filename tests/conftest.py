"""Shared fixtures. Environment first: every test that starts Ray must keep it on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tests' doubles are python: backends (tests.support.doubles); the opt-in is the user's, and the tests opt in.
os.environ.setdefault("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray for the whole session (ray.init costs ~10 s here)."""
    import ray

    ray.init(
        # "local": always a fresh embedded Ray, never a cluster a leftover RAY_ADDRESS or ray_current_cluster names.
        address="local",
        num_cpus=4,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        # Workers import the test doubles (tests.support.doubles) as well as the installed packages.
        runtime_env={"env_vars": {"TORCHDYNAMO_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                  "PYTHONPATH": str(REPO), "TASKDIV_ALLOW_PYTHON_BACKENDS": "1"}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def cpu_model():
    """The real embedded model, loaded once per session."""
    from actors.local import LocalChatModel

    return LocalChatModel("smollm2-135m")


@pytest.fixture(scope="session")
def reward_folder(tmp_path_factory):
    """A tiny sequence-classification reward model with its head saved (tests.support.rewards): no reward model
    ships in a wheel; its scores mean nothing, but the reward runtime runs for real (tests/actors/test_reward.py
    checks scores against a hand computation)."""
    from tests.support.rewards import sequence_classifier

    return sequence_classifier(tmp_path_factory.mktemp("reward-model") / "model")
