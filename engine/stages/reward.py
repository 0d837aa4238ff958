"""Reward: a reward model's score of every response (optional; the paper's Athene-RM-8B quality)."""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from engine.method.judges import has_answer
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, Stage


class RewardStage(Stage):
    """Scores (prompt, response) pairs with a reward model (its real head: actors.reward); a response the model
    cannot read whole has a null reward, and so does one that gives no answer (empty: never scored as an answer).

    Args:
        reward: engine.config.RewardConfig.spec(): {"backend", "model", "options" (with "kind")}.
    """

    name = "reward"
    # 2: a conversation longer than the model reads is unscored (None), not scored cut at 2,048 tokens.
    version = "2"
    required_inputs = {
        **GROUP_INPUTS,
        "text": "the user prompt",
        "responses": "the group's responses",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("rewards", pa.list_(pa.float64())),
        ]
    )

    def __init__(self, reward: dict[str, Any]) -> None:
        from actors.registry import make_reward_model

        self.reward_model = make_reward_model(reward["backend"], reward["model"], reward.get("options"))

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        pairs = [(r["text"], response) for r in rows for response in r["responses"] if has_answer(response)]
        scores = iter(self.reward_model.score(pairs) if pairs else [])
        for k, r in enumerate(rows):
            yield {IDX: k, "prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
                   "rewards": [next(scores) if has_answer(response) else None for response in r["responses"]]}
