"""Sample: n responses per (prompt, strategy) from one generator model.

Each row is a group: one prompt under one strategy. The strategies' programs (engine.method.strategies) run in lockstep
across the batch, so every round is one batched backend call.
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from actors.base import SamplingParams
from engine.stages.base import GROUP_KEY, IDX, BackendStage
from engine.method.strategies import STRATEGIES, StrategyInput


class SampleStage(BackendStage):
    """Generation of the responses of each group.

    Args:
        model: the generator's spec.
        n: responses per group.
        temperature / top_p / max_tokens: sampling settings (max_tokens per response).
        system_parse: how system-prompt completions may be split ("strict" or "lenient").
    """

    name = "sample"
    required_inputs = {
        "prompt_id": "stable prompt id",
        "text": "the user prompt",
        "strategy": "a name in engine.method.strategies.STRATEGIES",
        "category": "the category anchored strategies use (null: fall back to the general wording)",
        "seed": "the group's sampling seed",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("anchored_as", pa.string()),
            ("parse_mode", pa.string()),
            ("responses", pa.list_(pa.string())),
            ("finish_reasons", pa.list_(pa.string())),
            ("n_tokens", pa.list_(pa.int64())),
            ("status", pa.string()),
            ("raw", pa.string()),
            ("calls", pa.int64()),
            ("error", pa.string()),
            # Reasoning kept apart from the responses (engine.method.strategies.Sampled).
            ("traces", pa.list_(pa.string())),
            ("shared_trace", pa.string()),
        ]
    )
    # Sample shards are keyed by it: bump when what a response holds changes (2: a reasoning model's thinking is
    # split off into `traces`, no longer part of the response; 3: a system-prompt completion's responses are the
    # run of headers with the most text — a recap or plan under the same headers is not them — headers may name
    # solutions, approaches, stories…, and a sign-off after the last separating rule is no part of the last one;
    # 4: a closing heading after the last response ("### Summary") is no part of it, "Response k of n" headers split;
    # 5: a header's text after its number opens its response ("### Response 1: 7" was an empty response), a recap,
    # sign-off or recap run after the last response is cut (kept in raw), only a recap-titled heading is, and only
    # the last part of a split completion carries its finish reason; raw kept when cut off by the token limit).
    version = "5"

    def __init__(self, model: dict[str, Any], n: int, temperature: float, top_p: float, max_tokens: int,
                 system_parse: str = "strict") -> None:
        super().__init__(model)
        self.n = n
        self.system_parse = system_parse
        self.base = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens)

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        programs = []
        for r in rows:
            if r["strategy"] not in STRATEGIES:
                raise ValueError(f"unknown strategy {r['strategy']!r}")
            x = StrategyInput(r["text"], r["category"], self.n, self.base.with_(seed=int(r["seed"])),
                              self.system_parse)
            programs.append(STRATEGIES[r["strategy"]](x))
        for k, (r, s) in enumerate(zip(rows, self.drive(programs))):
            yield {
                IDX: k,
                "prompt_id": r["prompt_id"],
                "model": self.model_name,
                "strategy": r["strategy"],
                "anchored_as": s.anchored_as,
                "parse_mode": s.parse_mode,
                "responses": s.responses,
                "finish_reasons": s.finish_reasons,
                "n_tokens": s.n_tokens,
                "status": s.status,
                "raw": s.raw,
                "calls": s.calls,
                "error": s.error,
                "traces": s.traces,
                "shared_trace": s.shared_trace,
            }
