"""Sampling strategies: each shapes the conversations that produce n responses to one prompt.

A strategy is a program for `engine.stages.base.drive`: it yields the requests it needs, receives the outputs,
and returns a `Sampled`. The sample stage runs the programs of a whole batch in lockstep, so multi-turn
regeneration costs n rounds of large batched calls, not n calls per prompt.

Each strategy registers itself by name (`@strategy("name")` into `STRATEGIES`): the config validates against that
registry and the saved config records what ran. Adding a strategy is a function here (and its texts, if any, in
engine.method.taxonomy). Registered strategies:
- temperature: n independent samples of the plain prompt.
- system_general / system_anchored: one call whose system prompt asks for n responses (Zhang et al. 2025a),
  general or anchored to the prompt's category; the completion is split into responses. A short parse is retried
  once; the longer attempt is kept and a group still short of n is marked "short".
- regen_general / regen_anchored: in-context regeneration (Zhang et al. 2025b): n turns, each seeing the earlier
  answers and asking for a different one, generally or in the category's terms.
Anchored strategies fall back to their general wording when the prompt has no category (the classifier's answer
was unparseable and no gold label exists), as the paper's "resume default behaviour"; the group records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from actors.base import ChatOutput, SamplingParams
from engine.method import taxonomy
from engine.method.parsing import Split, split_completion
from engine.method.programs import Program, Request

# Name → strategy, in registration order (the default order of a run's strategies and of the report's columns).
STRATEGIES: dict[str, Callable[["StrategyInput"], Program]] = {}


def strategy(name: str) -> Callable[[Callable[["StrategyInput"], Program]], Callable[["StrategyInput"], Program]]:
    """Register a strategy under `name` (a function StrategyInput → Program returning a `Sampled`)."""

    def register(fn: Callable[[StrategyInput], Program]) -> Callable[[StrategyInput], Program]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = fn
        return fn

    return register


@dataclass
class Sampled:
    """The responses of one group and how they came about.

    Attributes:
        responses / finish_reasons / n_tokens: one entry per response (fewer than n when short).
        status: "ok", "short" (fewer than n responses parsed), or "error" (the backend failed the row).
        raw: for system-prompt strategies, the unsplit completion when the parse came up short, when the
            completion was cut off by the token limit, or when text after the last response was cut as no part of
            it (a recap, a sign-off: engine.method.parsing.Split.tail), so what no response holds can be audited;
            else None.
        anchored_as: the category the anchored wording used, or None when it fell back to the general wording
            (and for general strategies).
        parse_mode: for system-prompt strategies, how the completion was split ("headers", "inline", "numbered";
            None when nothing matched); None for the others.
        calls: backend requests made.
        error: the backend's per-row error, if any.
        traces: each response's reasoning trace (None where the model wrote none), never part of the response.
        shared_trace: for system-prompt strategies, the one trace of the completion the responses were split from
            (it belongs to all of them, so no response has a trace of its own).
    """

    responses: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    n_tokens: list[int | None] = field(default_factory=list)  # None: the backend did not say
    status: str = "ok"
    raw: str | None = None
    anchored_as: str | None = None
    parse_mode: str | None = None
    calls: int = 0
    error: str | None = None
    traces: list[str | None] = field(default_factory=list)
    shared_trace: str | None = None


def _traces(out: ChatOutput) -> list[str | None]:
    return list(out.traces) if out.traces is not None else [None] * len(out.texts)


@dataclass(frozen=True)
class StrategyInput:
    prompt: str
    category: str | None
    n: int
    sampling: SamplingParams  # n=1; per-response max_tokens; the group's seed
    system_parse: str = "strict"  # how system-prompt completions may be split (engine.method.parsing.PARSE_MODES)


def _failed(out: ChatOutput, sampled: Sampled) -> bool:
    if out.error is not None:
        sampled.status, sampled.error = "error", out.error
        return True
    return False


@strategy("temperature")
def temperature(x: StrategyInput) -> Program:
    s = Sampled(calls=1)
    (out,) = yield [Request([{"role": "user", "content": x.prompt}], x.sampling.with_(n=x.n))]
    if _failed(out, s):
        return s
    s.responses, s.finish_reasons, s.n_tokens = list(out.texts), list(out.finish_reasons), list(out.n_tokens)
    s.traces = _traces(out)
    return s


def _system(strategy: str) -> Callable[[StrategyInput], Program]:
    def run(x: StrategyInput) -> Program:
        s = Sampled()
        anchored = strategy == "system_anchored" and x.category in taxonomy.CATEGORIES
        used = strategy if anchored or strategy == "system_general" else "system_general"
        s.anchored_as = x.category if anchored else None
        conversation = [
            {"role": "system", "content": taxonomy.system_prompt(used, x.category, x.n)},
            {"role": "user", "content": x.prompt},
        ]
        # All n responses share one completion, so it gets n times the per-response budget.
        params = x.sampling.with_(n=1, max_tokens=x.sampling.max_tokens * x.n)
        best: tuple[Split, ChatOutput] | None = None
        # A completion short of n responses is asked once more, under another seed; greedy decoding reads no seed, so
        # at temperature 0 the retry would pay for the same completion, split the same way.
        for attempt in range(1 if params.greedy else 2):
            if attempt:
                params = params.with_(seed=None if params.seed is None else params.seed + 1_000_003)
            (out,) = yield [Request(conversation, params)]
            s.calls += 1
            if out.error is not None and best is not None:
                break  # the retry failed: the first attempt's responses stand (a short group), not an error
            if _failed(out, s):
                return s
            split = split_completion(out.texts[0], x.n, x.system_parse)
            if best is None or len(split.responses) > len(best[0].responses):
                best = (split, out)
            if len(split.responses) >= x.n:
                break
        assert best is not None
        split, out = best
        parts, s.parse_mode = split.responses, split.how
        s.responses = parts
        s.traces = [None] * len(parts)
        s.shared_trace = _traces(out)[0] if out.texts else None
        # A split completion has one finish reason and one token count. The reason is where the completion ended:
        # every part but the last ended because the next began ("stop"), so a completion cut off inside response 5
        # marks response 5 "length", not all five; where text was cut after the last response (a recap, responses
        # past the n-th), the completion ended there and every part is whole. The tokens are apportioned by
        # characters (an estimate, marked as such by the strategy name).
        reason = out.finish_reasons[0]
        s.finish_reasons = ["stop"] * len(parts)
        if parts and not split.tail:
            s.finish_reasons[-1] = reason
        total_chars = sum(len(p) for p in parts) or 1
        s.n_tokens = [None if out.n_tokens[0] is None else round(out.n_tokens[0] * len(p) / total_chars)
                      for p in parts]
        if len(parts) < x.n:
            s.status = "short"
        if len(parts) < x.n or reason == "length" or split.tail:
            s.raw = out.texts[0]
        return s

    run.__name__ = strategy
    return run


def _regen(strategy: str) -> Callable[[StrategyInput], Program]:
    def run(x: StrategyInput) -> Program:
        s = Sampled()
        anchored = strategy == "regen_anchored" and x.category in taxonomy.CATEGORIES
        s.anchored_as = x.category if anchored else None
        followup = taxonomy.regen_followup(strategy if anchored else "regen_general", x.category)
        conversation = [{"role": "user", "content": x.prompt}]
        for turn in range(x.n):
            seed = None if x.sampling.seed is None else x.sampling.seed + turn
            (out,) = yield [Request(list(conversation), x.sampling.with_(n=1, seed=seed))]
            s.calls += 1
            if _failed(out, s):
                return s
            text = out.texts[0]
            s.responses.append(text)
            s.traces.append(_traces(out)[0])
            s.finish_reasons.append(out.finish_reasons[0])
            s.n_tokens.append(out.n_tokens[0])
            # The answer alone goes back into the conversation, as reasoning models' chat templates do with
            # earlier turns' thinking.
            conversation += [{"role": "assistant", "content": text}, {"role": "user", "content": followup}]
        return s

    run.__name__ = strategy
    return run


# The strategies whose one completion is split into the n responses (sampling.system_parse applies to them only).
SYSTEM_STRATEGIES = ("system_general", "system_anchored")
for _name in SYSTEM_STRATEGIES:
    strategy(_name)(_system(_name))
for _name in ("regen_general", "regen_anchored"):
    strategy(_name)(_regen(_name))
