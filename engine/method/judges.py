"""Pairwise functional-equivalence judging of one group of responses, with union-find pruning.

A judge reads two responses and the prompt's category and says whether they are functionally equivalent *for that
category* (taxonomy.JUDGE_PROMPT). The verdict is p_equivalent = P(YES), from the first token's log-probs
normalised over the YES/NO variants where the backend returns log-probs, else 1.0 / 0.0 from the parsed text. An
unparseable answer is asked again once, with a reminder of the format; if it still does not parse, the pair is
recorded as "unparsed" (a backend failure as "error"): an unresolved pair, never counted as "different"
(engine.method.components). A pair where a response has no answer — empty, as a reasoning model's cut off while
thinking — is not asked: it is "no_answer", unresolved too (two failures to answer are not one answer given twice,
nor is a failure a distinct answer).

Pruning: a pair whose responses are already connected by "equivalent" verdicts cannot change the number of
connected components, so it is skipped. `judge_group` is a program for `drive`: it asks for one pair per round, so
a batch of groups advances together and every round is one large backend call. For a judge consistent with a
partition into k classes this makes exactly (n − k) + Σ_{a<b} |C_a||C_b| pair judgments in any order: every
cross-class pair must be seen, and within a class only the n_a − 1 judgments that join it.

The settings are the run's `judge:` section (engine.config.JudgeConfig), read by attribute.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from actors.base import ChatOutput, SamplingParams
from engine.method import taxonomy
from engine.method.parsing import p_yes_from_logprobs, parse_verdict
from engine.method.programs import Asked, Program, ask_until_parsed, parallel, request_failed

if TYPE_CHECKING:  # the method reads its settings; it does not import the config layer
    from engine.config import JudgeConfig


# The verdict of a pair in which a response is empty (NO_ANSWER): unresolved, and no judge is asked.
NO_ANSWER = "no_answer"


def has_answer(response: str | None) -> bool:
    """Whether a response answers at all: not empty or whitespace (a reasoning model cut off while thinking, a
    provider's empty reply)."""
    return bool(response and response.strip())


@dataclass
class PairVerdict:
    """One judged pair (i < j).

    Attributes:
        p_equivalent: P(equivalent) in [0, 1] (the mean of the orders that were read when both were judged); None
            when unresolved.
        verdict: "equivalent", "different", or — unresolved — "unparsed" (no answer could be read), "error" (the
            backend failed the row), "no_answer" (a response is empty: nothing to judge, not asked) or
            "order_split" (both orders judged, one each way, their mean exactly on the threshold).
        read_from: "logprobs" (the first token's distribution), "text" (a parsed YES/NO: p is 1 or 0), "mixed"
            (both orders, read differently), or None when unresolved.
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
    read_from: str | None = None


def no_answer(i: int, j: int) -> PairVerdict:
    """The verdict of pair (i, j) when a response of it has no answer (has_answer): unresolved, nothing asked."""
    return PairVerdict(i, j, None, NO_ANSWER, raw="", decided_by="none")


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
    n_unresolved: int = 0
    order_disagreements: int = 0
    cheap_decided: int = 0
    full: bool = False  # every pair judged by the LLM: a group of the agreement sample


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


def read_verdict(out: ChatOutput) -> tuple[float, str] | None:
    """(P(equivalent), how it was read) from one judge output: from the first token's log-probs where the backend
    returned them and the text confirms a verdict that they lean to ("logprobs"), else 1.0 / 0.0 from the parsed
    text ("text"), else None. A first token of YES or NO whose text is no verdict ("No difference", "N/A", "Yes and
    no") is no verdict: its log-probs measure the first word, not the answer (engine.method.programs.CONFIRM_TOKENS).
    Log-probs that lean the other way than the text ("No" the likeliest token, its YES variants together likelier:
    the judge wrote NO) give way to the text: the verdict is what the judge said."""
    parsed = parse_verdict(out.texts[0] if out.texts else "")
    if out.first_token_logprobs and parsed is not None:
        p = p_yes_from_logprobs(out.first_token_logprobs[0])
        if p is not None and (p >= 0.5 if parsed else p <= 0.5):
            return p, "logprobs"
    return None if parsed is None else (float(parsed), "text")


def _ask(conversation: list[dict[str, str]], sampling: SamplingParams) -> Program:
    asked: Asked = yield from ask_until_parsed(conversation, sampling, read_verdict, taxonomy.JUDGE_REMINDER)
    return asked


# What a judge compares → the conversation that asks about one ordered pair: the responses, under the category's
# criterion; or their reasoning traces, by strategy (judge.target).
CONVERSATIONS = {"answer": taxonomy.judge_conversation, "trace": taxonomy.trace_judge_conversation}


def judge_pair(category: str | None, prompt: str, a: str, b: str, settings: JudgeConfig,
               sampling: SamplingParams, i: int = 0, j: int = 1, target: str = "answer") -> Program:
    """Ask the LLM judge about one pair (and its reverse with both_orders, in the same round); returns a
    PairVerdict. `target`: "answer" (a and b are responses) or "trace" (they are reasoning traces)."""
    ask = CONVERSATIONS[target]
    conversations = [ask(category, prompt, a, b, settings.max_response_chars)]
    if settings.both_orders:
        conversations.append(ask(category, prompt, b, a, settings.max_response_chars))
    answers = yield from parallel([_ask(c, sampling) for c in conversations])
    return _combine(i, j, answers, settings.threshold)


# How _combine joins the raw texts of a pair's two orders.
ORDERS_JOINED = " || "


def failed_order(verdict: PairVerdict) -> tuple[int, Asked] | None:
    """For a pair judged in both orders whose one order was answered (read, or unreadable after its reminder) and
    whose other order's request failed (a transient backend failure: its row is sent again): (the failed order, 0
    forward or 1 reverse; the answered order as an Asked that carries the pair's calls). Else None: both orders
    answered, or both failed (the pair is an "error", asked again whole), or it was judged in one order.

    Read from what the pair stores: the order without a probability whose raw text ends in a failed request. The
    raw texts are joined by ORDERS_JOINED; where an answer itself holds it ahead of a failed forward order (a
    reminded answer whose first text held " || "), the failure is not seen and the pair keeps its one order, as
    every pair did before."""
    raw = verdict.raw or ""
    if verdict.verdict not in ("equivalent", "different", "unparsed") or ORDERS_JOINED not in raw:
        return None
    forward, after = raw.split(ORDERS_JOINED, 1)
    before, reverse = raw.rsplit(ORDERS_JOINED, 1)
    if verdict.p_reverse is None and request_failed(reverse) and not request_failed(before):
        order, answered, p = 1, before, verdict.p_forward
    elif verdict.p_forward is None and request_failed(forward) and not request_failed(after):
        order, answered, p = 0, after, verdict.p_reverse
    else:  # unreadable, not failed: that answer was paid for and stands
        return None
    return order, Asked(None if p is None else (p, verdict.read_from), answered, verdict.calls)


def holds_failure(raw: str | None) -> bool:
    """Whether a pair's raw text (one order, or both joined by ORDERS_JOINED) holds a failed request."""
    return any(request_failed(part) for part in (raw or "").split(ORDERS_JOINED))


def _finish_pair(category: str | None, prompt: str, a: str, b: str, settings: JudgeConfig, sampling: SamplingParams,
                 i: int, j: int, target: str, half: tuple[int, Asked]) -> Program:
    """Ask the order of pair (i, j) whose request failed (failed_order) and combine it with the order answered
    before, as judge_pair combines two orders asked together."""
    order, answered = half
    first, second = (b, a) if order == 1 else (a, b)
    asked = yield from _ask(CONVERSATIONS[target](category, prompt, first, second, settings.max_response_chars),
                            sampling)
    return _combine(i, j, [answered, asked] if order == 1 else [asked, answered], settings.threshold)


def audited(prompt: str, a: str, b: str, rate: float) -> bool:
    """Whether the cascade audit samples this pair: a deterministic draw, so reruns audit the same pairs."""
    digest = hashlib.sha256(f"{prompt}\x1f{a}\x1f{b}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def in_agreement_sample(group_key: tuple[str, str, str], rate: float) -> bool:
    """Whether a group (prompt_id, model, strategy) is in the agreement sample: a deterministic draw, the same for
    every judge and every rerun, so that all judges judge every pair of the same groups."""
    digest = hashlib.sha256("\x1f".join(("agreement", *group_key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def judge_group(
    category: str | None,
    prompt: str,
    responses: list[str],
    settings: JudgeConfig,
    sampling: SamplingParams,
    cheap: Callable[[int, int], float] | None = None,
    full: bool = False,
    target: str = "answer",
    known: Mapping[tuple[int, int], PairVerdict] | None = None,
) -> Program:
    """Judge the pairs of one group; returns a GroupJudgment.

    Pairs are visited in (i, j) order; with pruning on, pairs already connected are skipped. With the cascade on,
    `cheap(i, j)` gives the calibrated judge's P(equivalent): at or below `cascade.low` or at or above
    `cascade.high` it decides the pair; in between the LLM judge does. `full`: judge every pair with the LLM (no
    pruning, no cascade) — the agreement sample. `target`: "trace" when `responses` are reasoning traces.
    `known`: the LLM's verdicts on pairs of this group already paid for (a row sent again after one of its calls
    failed, engine.stages.judge), taken as they are instead of asked again; being the same verdicts, they lead the
    pruning to the same pairs. With both_orders, a known pair whose one order failed is asked that order only
    (failed_order). A pair the cheap judge decided is decided again (it costs nothing); its cascade audit, where
    the LLM answered it, is taken from `known` too.
    """
    n = len(responses)
    uf = UnionFind(n)
    result = GroupJudgment(full=full)
    orders = 2 if settings.both_orders else 1
    cascade = settings.cascade if cheap is not None and settings.cascade.enabled and not full else None
    total = n * (n - 1) // 2
    judged = 0
    for i in range(n):
        for j in range(i + 1, n):
            if not (settings.all_pairs or full) and uf.find(i) == uf.find(j):
                continue
            judged += 1
            a, b = responses[i], responses[j]
            if not (has_answer(a) and has_answer(b)):
                result.pairs.append(no_answer(i, j))
                result.n_unresolved += 1
                continue
            p_cheap = cheap(i, j) if cascade is not None else None
            if p_cheap is not None and not math.isfinite(p_cheap):
                # No probability (a response outside the Latin script the calibrated judge reads, a NaN feature):
                # the LLM judge decides, and the table keeps no NaN as the cheap judge's value.
                p_cheap = None
            if p_cheap is not None and (p_cheap <= cascade.low or p_cheap >= cascade.high):
                verdict = PairVerdict(i, j, p_cheap, "equivalent" if p_cheap >= settings.threshold else "different",
                                      raw="", decided_by="cheap", p_cheap=p_cheap, read_from="calibrated")
                result.cheap_decided += 1
                prior = known.get((i, j)) if known is not None else None
                # An audit kept whole only: one whose order failed is asked again (it rested on the other alone).
                if prior is not None and prior.decided_by == "cheap" and prior.p_audit is not None \
                        and not holds_failure(prior.raw):
                    verdict.p_audit, verdict.calls, verdict.raw = prior.p_audit, prior.calls, prior.raw
                elif audited(prompt, a, b, cascade.audit_rate):
                    check = yield from judge_pair(category, prompt, a, b, settings, sampling, i, j, target)
                    verdict.p_audit, verdict.calls, verdict.raw = check.p_equivalent, check.calls, check.raw
            elif known is not None and (i, j) in known and known[(i, j)].decided_by != "cheap":
                verdict = known[(i, j)]
                half = failed_order(verdict) if settings.both_orders else None
                if half is not None:  # one order answered, the other's request failed: ask that one only
                    verdict = yield from _finish_pair(category, prompt, a, b, settings, sampling, i, j, target, half)
                    verdict.p_cheap = known[(i, j)].p_cheap
            else:
                verdict = yield from judge_pair(category, prompt, a, b, settings, sampling, i, j, target)
                verdict.p_cheap = p_cheap
            result.pairs.append(verdict)
            result.calls_made += verdict.calls
            if verdict.verdict not in ("equivalent", "different"):
                result.n_unresolved += 1
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


def _combine(i: int, j: int, answers: list[Asked], threshold: float) -> PairVerdict:
    ps = [a.value[0] if a.value is not None else None for a in answers]
    known = [p for p in ps if p is not None]
    p = sum(known) / len(known) if known else None
    if p is not None and len(known) == 2 and p == threshold and (known[0] >= threshold) != (known[1] >= threshold):
        # The two orders contradict each other and their mean sits on the threshold (a YES and a NO read from text:
        # 0.5): no verdict. Read as ">= threshold", every such split merged the two responses — a tie broken toward
        # homogeneity. Unresolved, it widens the count's bounds instead.
        verdict, p = "order_split", None
    elif p is not None:
        verdict = "equivalent" if p >= threshold else "different"
    else:  # unresolved: a backend failure on every order is an "error", anything else "unparsed"
        verdict = "error" if all(a.error is not None for a in answers) else "unparsed"
    sources = {a.value[1] for a in answers if a.value is not None}
    read_from = None if not sources else sources.pop() if len(sources) == 1 else "mixed"
    both = len(answers) == 2
    return PairVerdict(
        i=i,
        j=j,
        p_equivalent=p,
        verdict=verdict,
        raw=ORDERS_JOINED.join(a.raw for a in answers),
        p_forward=ps[0] if both else None,
        p_reverse=ps[1] if both else None,
        calls=sum(a.calls for a in answers),
        read_from=read_from,
    )
