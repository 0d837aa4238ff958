"""Reward models, for real: a sequence-classification model on CPU through transformers (the `reward_folder`
fixture builds one from the packaged SmolLM2 weights with an untrained head)."""

import math

import pytest

from actors.base import BackendError
from actors.registry import make_reward_model
from actors.reward import LocalRewardModel


def test_scores_are_finite_deterministic_and_batch_independent(reward_folder):
    rm = LocalRewardModel(str(reward_folder), batch_size=2)
    pairs = [("Say hi.", "Hi!"), ("Say hi.", "Goodbye forever, and thanks for all the fish."), ("2+2?", "4")]
    scores = rm.score(pairs)
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores)
    assert rm.score(pairs[1:2]) == pytest.approx(scores[1:2], abs=1e-4)
    assert rm.score(pairs) == pytest.approx(scores, abs=1e-6)


def test_registry_and_errors(reward_folder):
    assert isinstance(make_reward_model("local", str(reward_folder)), LocalRewardModel)
    with pytest.raises(BackendError, match="not a folder"):
        LocalRewardModel("/no/such/reward-model")
    with pytest.raises(BackendError, match="unknown reward backend"):
        make_reward_model("grpc", "x")
