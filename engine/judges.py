"""Pairwise functional-equivalence judging of one group of responses, with union-find pruning.

A judge reads two responses and the prompt's category and says whether they are functionally equivalent *for that
category* (taxonomy.JUDGE_PROMPT). The verdict is p_equivalent = P(YES), from the first token's log-probs
normalised over the YES/NO variants where the backend returns log-probs, else 1.0 / 0.0 from the parsed text. An
unparseable answer is asked again once, with a reminder of the format; if it still does not parse, the pair is
recorded as "unparsed" (never counted as "different").

Pruning: a pair whose responses are already connected by "equivalent" verdicts cannot change the number of
connected components, so it is skipped. `judge_group` is a program for `drive`: it asks for one pair per round, so
a batch of groups advances together and every round is one large backend call. For a judge consistent with a
partition into k classes this makes exactly (n − k) + Σ_{a<b} |C_a||C_b| pair judgments in any order: every
cross-class pair must be seen, and within a class only the n_a − 1 judgments that join it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from actors.base import ChatOutput, SamplingParams
from engine import taxonomy
from engine.parsing import p_yes_from_logprobs, parse_verdict
from engine.stages.base import Program, Request

REMINDER = "Answer with a single word: YES or NO."


@dataclass(frozen=True)
class CascadeSettings:
    """See engine.config.CascadeConfig."""

    enabled: bool = False
    low: float = 0.1
    high: float = 0.9
    audit_rate: float = 0.1
    coefficients: str | None = None


@dataclass(frozen=True)
class JudgeSettings:
    """See engine.config.JudgeConfig for the meaning of each field."""

    threshold: float = 0.5
    all_pairs: bool = False
    both_orders: bool = False
    max_tokens: int = 4
    max_response_chars: int = 4000
    cascade: CascadeSettings = field(default_factory=CascadeSettings)

    def __post_init__(self) -> None:
        if isinstance(self.cascade, dict):
            object.__setattr__(self, "cascade", CascadeSettings(**self.cascade))


@dataclass
class PairVerdict:
    """One judged pair (i < j).

    Attributes:
        p_equivalent: P(equivalent) in [0, 1] (the mean of both orders when both were judged); None if unparsed.
        verdict: "equivalent", "different" or "unparsed".
        raw: the judge's text (both orders joined by " || " when both were judged).
        p_forward / p_reverse: the two orders' probabilities, when both orders were judged.
        calls: backend requests spent on this pair, retries included.
        decided_by: "llm", or "cheap" when the calibrated judge was confident enough to decide (cascade).
        p_cheap: the calibrated judge's probability, when the cascade is on.
        p_audit: for a pair the cheap judge decided and the audit sampled, the LLM judge's probability (it does not
            change the verdict; it measures how often the cascade agrees with all-LLM judging).
    """

    i: int
    j: int
    p_equivalent: float | None
    verdict: str
    raw: str
    p_forward: float | None = None
    p_reverse: float | None = None
    calls: int = 0
    decided_by: str = "llm"
    p_cheap: float | None = None
    p_audit: float | None = None


@dataclass
class GroupJudgment:
    """The judged pairs of one group and what they cost.

    Attributes:
        calls_made: backend requests (retries and cascade audits included).
        calls_saved: requests union-find pruning avoided (pairs skipped × orders).
        cheap_decided: pairs the calibrated judge decided without the LLM (cascade).
    """

    pairs: list[PairVerdict] = field(default_factory=list)
    calls_made: int = 0
    calls_saved: int = 0
    n_unparsed: int = 0
    order_disagreements: int = 0
    cheap_decided: int = 0


class UnionFind:
    """Incremental union-find for pruning within one small group (path halving, union by size).

    The batched kernel in `kernels` counts components after the fact over whole shards; this one answers
    "already connected?" between verdicts, which the offline kernel cannot.
    """

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def _clip(text: str, limit: int) -> str:
    if limit and len(text) > limit:
        return text[:limit] + " […]"
    return text


def pair_conversation(category: str | None, prompt: str, a: str, b: str, limit: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": taxonomy.JUDGE_SYSTEM},
        {"role": "user", "content": taxonomy.judge_prompt(category, prompt, _clip(a, limit), _clip(b, limit))},
    ]


def read_verdict(out: ChatOutput) -> tuple[float | None, str]:
    """(p_equivalent or None, raw text) from one judge output."""
    if out.error is not None:
        return None, f"<error: {out.error}>"
    raw = out.texts[0] if out.texts else ""
    p = p_yes_from_logprobs(out.first_token_logprobs[0]) if out.first_token_logprobs else None
    if p is None:
        parsed = parse_verdict(raw)
        p = None if parsed is None else float(parsed)
    return p, raw


def _ask(conversation: list[dict[str, str]], sampling: SamplingParams) -> Program:
    """Ask once, and once more with a reminder if the answer does not parse. Returns (p, raw, calls)."""
    (out,) = yield [Request(conversation, sampling)]
    p, raw = read_verdict(out)
    if p is not None or out.error is not None:
        return p, raw, 1
    retry = conversation + [{"role": "assistant", "content": raw}, {"role": "user", "content": REMINDER}]
    (out,) = yield [Request(retry, sampling)]
    p2, raw2 = read_verdict(out)
    return p2, f"{raw} ⟶ {raw2}", 2


def _ask_both(conversations: list[list[dict[str, str]]], sampling: SamplingParams) -> Program:
    """Run one `_ask` per conversation in parallel (both orders of a pair in the same round)."""
    asks = [_ask(c, sampling) for c in conversations]
    results: list = [None] * len(asks)
    pending = {k: next(a) for k, a in enumerate(asks)}
    while pending:
        keys = list(pending)
        outs = yield [r for k in keys for r in pending[k]]
        pending = {}
        for k, out in zip(keys, outs):
            try:
                pending[k] = asks[k].send([out])
            except StopIteration as done:
                results[k] = done.value
    return results


def judge_pair(category: str | None, prompt: str, a: str, b: str, settings: JudgeSettings,
               sampling: SamplingParams, i: int = 0, j: int = 1) -> Program:
    """Ask the LLM judge about one pair (and its reverse with both_orders); returns a PairVerdict."""
    conversations = [pair_conversation(category, prompt, a, b, settings.max_response_chars)]
    if settings.both_orders:
        conversations.append(pair_conversation(category, prompt, b, a, settings.max_response_chars))
    answers = yield from _ask_both(conversations, sampling)
    return _combine(i, j, answers, settings.threshold)


def audited(prompt: str, a: str, b: str, rate: float) -> bool:
    """Whether the cascade audit samples this pair: a deterministic draw, so reruns audit the same pairs."""
    digest = hashlib.sha256(f"{prompt}\x1f{a}\x1f{b}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def judge_group(
    category: str | None,
    prompt: str,
    responses: list[str],
    settings: JudgeSettings,
    sampling: SamplingParams,
    cheap: Callable[[int, int], float] | None = None,
) -> Program:
    """Judge the pairs of one group; returns a GroupJudgment.

    Pairs are visited in (i, j) order; with pruning on, pairs already connected are skipped. With the cascade on,
    `cheap(i, j)` gives the calibrated judge's P(equivalent): at or below `cascade.low` or at or above
    `cascade.high` it decides the pair; in between the LLM judge does.
    """
    n = len(responses)
    uf = UnionFind(n)
    result = GroupJudgment()
    orders = 2 if settings.both_orders else 1
    cascade = settings.cascade if cheap is not None and settings.cascade.enabled else None
    total = n * (n - 1) // 2
    judged = 0
    for i in range(n):
        for j in range(i + 1, n):
            if not settings.all_pairs and uf.find(i) == uf.find(j):
                continue
            judged += 1
            a, b = responses[i], responses[j]
            p_cheap = cheap(i, j) if cascade is not None else None
            if p_cheap is not None and (p_cheap <= cascade.low or p_cheap >= cascade.high):
                verdict = PairVerdict(i, j, p_cheap, "equivalent" if p_cheap >= settings.threshold else "different",
                                      raw="", decided_by="cheap", p_cheap=p_cheap)
                result.cheap_decided += 1
                if audited(prompt, a, b, cascade.audit_rate):
                    check = yield from judge_pair(category, prompt, a, b, settings, sampling, i, j)
                    verdict.p_audit, verdict.calls, verdict.raw = check.p_equivalent, check.calls, check.raw
            else:
                verdict = yield from judge_pair(category, prompt, a, b, settings, sampling, i, j)
                verdict.p_cheap = p_cheap
            result.pairs.append(verdict)
            result.calls_made += verdict.calls
            if verdict.verdict == "unparsed":
                result.n_unparsed += 1
            if (
                settings.both_orders
                and verdict.p_forward is not None
                and verdict.p_reverse is not None
                and (verdict.p_forward >= settings.threshold) != (verdict.p_reverse >= settings.threshold)
            ):
                result.order_disagreements += 1
            if verdict.verdict == "equivalent":
                uf.union(i, j)
    result.calls_saved = (total - judged) * orders
    return result


def _combine(i: int, j: int, answers: list[tuple[float | None, str, int]], threshold: float) -> PairVerdict:
    ps = [a[0] for a in answers]
    known = [p for p in ps if p is not None]
    p = sum(known) / len(known) if known else None
    verdict = "unparsed" if p is None else ("equivalent" if p >= threshold else "different")
    both = len(answers) == 2
    return PairVerdict(
        i=i,
        j=j,
        p_equivalent=p,
        verdict=verdict,
        raw=" || ".join(a[1] for a in answers),
        p_forward=ps[0] if both else None,
        p_reverse=ps[1] if both else None,
        calls=sum(a[2] for a in answers),
    )
