"""Every run config shipped in configs/ loads (a config the README tells users to run must not stop on its own
syntax: configs/vllm-cpu.yaml used a YAML alias after aliases were refused) and names only options its backends
take. cluster-local.yaml is a Ray cluster launcher file, not a run config."""

from pathlib import Path

import pytest

from actors.registry import check_options
from engine.config import CALIBRATED, load_config

REPO = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "cluster-local.yaml")


def test_the_configs_folder_is_read():
    assert {p.name for p in RUN_CONFIGS} >= {"demo.yaml", "paper.yaml", "real-audit.yaml", "vllm-cpu.yaml"}


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_a_shipped_config_loads_and_its_options_are_known(path):
    config = load_config(path)
    roles = [("chat", m, m.options) for m in [*config.generators, *config.judges] if m.backend != CALIBRATED]
    roles.append(("embed", config.embedder, config.embedder.options))
    if config.quality.reward_model is not None:
        rm = config.quality.reward_model
        roles.append(("reward", rm, {**rm.options, "kind": rm.kind}))
    for role, model, options in roles:
        if not model.backend.startswith("python:"):
            check_options(role, model.backend, options)
