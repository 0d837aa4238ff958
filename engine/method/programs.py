"""Conversational programs, the lockstep driver, and the one ask-until-parsed protocol.

A *program* is a generator: it yields a list of `Request`s (the calls it wants made, possibly several that can run
in parallel), is sent back the list of `ChatOutput`s in the same order, and finally returns its result. A strategy
shaping a multi-turn conversation, a judge walking the pairs of a group and a grader asking for a digit are all
programs; none of them knows how its requests are batched.

Every output a program is sent has its reasoning apart from its answers (actors.base.separate_traces): a judge,
classifier or grader that thinks first is read by its answer, and a strategy keeps each response's trace.

`drive` runs many programs in lockstep rounds (or, on a backend that takes requests one at a time, continuously:
`drive_continuous`), so that each round is one large batched backend call however
sequential each program is on its own. `ask_until_parsed` is the ask → parse → remind → ask-again protocol that
every step which reads a structured answer (a category, a verdict, a checklist, a grade) uses: written once, so a
change to its rules changes every step alike. Its reminder texts live in `engine.method.taxonomy` with every other
text sent to a model.

Imports: actors.base only (the backend interface).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generator, Generic, Sequence, TypeVar

from actors.base import ChatBackend, ChatOutput, ContinuousBackend, Conversation, SamplingParams, separate_traces

T = TypeVar("T")


class ProgramError(RuntimeError):
    """A program or a backend broke the driver's contract (a bug, never the data's fault)."""


@dataclass(frozen=True)
class Request:
    """One backend call a program wants made."""

    conversation: Conversation
    sampling: SamplingParams


# A program yields a list of requests and is sent back the list of outputs (same order), until it returns its
# result. Yielding several requests at once is how a program asks for work that can run in parallel.
Program = Generator[list[Request], list[ChatOutput], Any]


@dataclass
class DriveStats:
    """Counters of `drive`: lockstep rounds and backend requests."""

    rounds: int = 0
    calls: int = 0


def drive(backend: ChatBackend, programs: Sequence[Program], stats: DriveStats | None = None,
          transient: dict[int, str] | None = None) -> list[Any]:
    """Run programs to completion, batching every round's requests into one backend call.

    Args:
        backend: the chat backend.
        programs: started or unstarted generators (see `Program`).
        stats: if given, counts rounds and backend requests.
        transient: if given, receives {program index: error} for every program sent an output whose failure may
            not recur (ChatOutput.transient), so that the caller can mark its row for a rerun.

    Returns:
        Each program's return value, in input order.

    A backend that takes requests one at a time (actors.base.ContinuousBackend with `continuous` on: vLLM) is
    driven by `drive_continuous` instead: the same results, without waiting for a round's slowest request.
    """
    if isinstance(backend, ContinuousBackend) and getattr(backend, "continuous", False):
        return drive_continuous(backend, programs, stats, transient)
    results: list[Any] = [None] * len(programs)
    pending: dict[int, list[Request]] = {}
    for k, program in enumerate(programs):
        _advance(program, None, k, pending, results)
    while pending:
        order = [(k, r) for k, reqs in pending.items() for r in reqs]
        outputs = backend.chat([r.conversation for _, r in order], [r.sampling for _, r in order])
        if len(outputs) != len(order):
            raise ProgramError(f"backend returned {len(outputs)} outputs for {len(order)} requests")
        # Every program reads answers only: a reasoning model's thinking travels apart, in ChatOutput.traces.
        outputs = [separate_traces(out) for out in outputs]
        if stats is not None:
            stats.rounds += 1
            stats.calls += len(order)
        by_program: dict[int, list[ChatOutput]] = {}
        for (k, _), out in zip(order, outputs):
            by_program.setdefault(k, []).append(out)
            if transient is not None and out.error is not None and out.transient:
                transient.setdefault(k, out.error)
        pending = {}
        for k, outs in by_program.items():
            _advance(programs[k], outs, k, pending, results)
    return results


def drive_continuous(backend: ContinuousBackend, programs: Sequence[Program], stats: DriveStats | None = None,
                     transient: dict[int, str] | None = None) -> list[Any]:
    """Run programs to completion, each program's next requests submitted as soon as its previous ones are back.

    Lockstep rounds wait for a round's slowest request before any conversation moves on: a regeneration turn that
    ends after 5 tokens waits for one that runs to max_tokens. Here the engine keeps decoding the requests still
    running while the finished conversations' next turns join it (vLLM schedules them into the running batch), with
    at most `backend.max_in_flight` requests submitted and not yet collected (the rest wait, first in first out).
    Same arguments and results as `drive`; `stats.rounds` counts the longest chain of requests one program made.
    """
    results: list[Any] = [None] * len(programs)
    waiting: dict[int, list[ChatOutput | None]] = {}  # program → outputs of its current requests
    queue: deque[tuple[int, int, Request]] = deque()  # requests not yet submitted: (program, slot, request)
    where: dict[int, tuple[int, int]] = {}  # submitted key → (program, slot)
    depth = [0] * len(programs)
    cap = max(1, int(getattr(backend, "max_in_flight", 1 << 30)))

    def advance(k: int, sent: list[ChatOutput] | None) -> None:
        pending: dict[int, list[Request]] = {}
        _advance(programs[k], sent, k, pending, results)
        if k in pending:
            depth[k] += 1
            waiting[k] = [None] * len(pending[k])
            queue.extend((k, i, r) for i, r in enumerate(pending[k]))

    next_key = 0
    try:
        for k in range(len(programs)):
            advance(k, None)
        while waiting:
            while queue and len(where) < cap:
                k, i, request = queue.popleft()
                where[next_key] = (k, i)
                backend.submit(next_key, request.conversation, request.sampling)
                next_key += 1
            done = backend.collect()
            if not done:  # collect() waits while anything is in flight, and something is
                raise ProgramError(f"backend returned nothing with {len(where)} requests in flight")
            for key, out in done:
                if key not in where:
                    raise ProgramError(f"backend returned an output for unknown request {key}")
                k, i = where.pop(key)
                out = separate_traces(out)  # as in `drive`: programs read answers only
                if transient is not None and out.error is not None and out.transient:
                    transient.setdefault(k, out.error)
                outs = waiting[k]
                outs[i] = out
                if all(o is not None for o in outs):
                    del waiting[k]
                    advance(k, outs)  # type: ignore[arg-type]
    except BaseException:
        if where:
            backend.cancel()
        raise
    if stats is not None:
        stats.rounds += max(depth, default=0)
        stats.calls += next_key
    return results


def _advance(program: Program, sent: list[ChatOutput] | None, k: int, pending: dict, results: list) -> None:
    try:
        requests = program.send(sent) if sent is not None else next(program)
    except StopIteration as done:
        results[k] = done.value
        return
    if not requests:
        raise ProgramError(f"program {k} yielded an empty request list")
    pending[k] = list(requests)


def parallel(programs: Sequence[Program]) -> Program:
    """A program running several programs side by side (their requests share each round); returns their results
    in order. E.g. both orders of a judged pair in one round."""
    programs = list(programs)
    results: list[Any] = [None] * len(programs)
    pending: dict[int, list[Request]] = {}
    for k, program in enumerate(programs):
        _advance(program, None, k, pending, results)
    while pending:
        keys = list(pending)
        sizes = [len(pending[k]) for k in keys]
        outs = yield [r for k in keys for r in pending[k]]
        pending = {}
        start = 0
        for k, size in zip(keys, sizes):
            _advance(programs[k], list(outs[start:start + size]), k, pending, results)
            start += size
    return results


# ---------------------------------------------------------------------------------------------------------------
# Ask until parsed.


@dataclass(frozen=True)
class Asked(Generic[T]):
    """The outcome of `ask_until_parsed`.

    Attributes:
        value: the parsed answer, or None when it never parsed or the backend failed the row (never a default).
        raw: what the model wrote; both answers joined by " ⟶ " when it was reminded; "<error: …>" for a backend
            failure.
        calls: requests spent (1 or 2).
        error: the backend's per-row error of the last request, if any.
    """

    value: T | None
    raw: str
    calls: int
    error: str | None = None


# How a stored answer's raw text marks a request that failed (no answer: never read as a value), and what joins the
# first answer to the reminder's.
ERROR_PREFIX = "<error:"
REMINDED = " ⟶ "


def request_failed(raw: str | None) -> bool:
    """Whether an `Asked.raw` ends in a failed request (the first, or the reminder after an unparsed first answer):
    no answer was read, right or wrong."""
    return (raw or "").rsplit(REMINDED, 1)[-1].startswith(ERROR_PREFIX)


def error_text(out: ChatOutput) -> str:
    return f"{ERROR_PREFIX} {out.error}>"


def ask_until_parsed(conversation: Conversation, sampling: SamplingParams,
                     parse: Callable[[ChatOutput], T | None], reminder: str) -> Program:
    """Ask once; if the answer does not parse, remind the model of the format (as a follow-up turn) and ask once
    more; if that fails too, the value is None. A backend error is not retried here (the backend already retried
    what can be retried) and ends the exchange.

    Args:
        conversation: the messages of the first request.
        sampling: the sampling of both requests.
        parse: the answer read from one output (its text, or its log-probs), or None when there is none.
        reminder: the follow-up user turn that restates the expected format (a taxonomy text).

    Returns (as the program's value):
        An `Asked`.
    """
    (out,) = yield [Request(conversation, sampling)]
    if out.error is not None:
        return Asked(None, error_text(out), 1, out.error)
    raw = out.texts[0] if out.texts else ""
    value = parse(out)
    if value is not None:
        return Asked(value, raw, 1)
    starved = thinking_starved(out, sampling)
    if starved is not None:  # a reminder would be thought about as well, out of the same budget
        return Asked(None, f"{ERROR_PREFIX} {starved}>", 1, starved)
    retry = list(conversation) + [{"role": "assistant", "content": raw}, {"role": "user", "content": reminder}]
    if out.first_token_logprobs and sampling.max_tokens_without_logprobs is not None:
        # One token whose log-probs named no answer ("**", "The"): the reminder may also be read from its text, so
        # it gets the text budget (log-probs still asked: an answer first decides as before).
        sampling = sampling.with_(max_tokens=max(sampling.max_tokens, sampling.max_tokens_without_logprobs))
    (again,) = yield [Request(retry, sampling)]
    if again.error is not None:
        return Asked(None, f"{raw}{REMINDED}{error_text(again)}", 2, again.error)
    raw2 = again.texts[0] if again.texts else ""
    return Asked(parse(again), f"{raw}{REMINDED}{raw2}", 2)


def thinking_starved(out: ChatOutput, sampling: SamplingParams) -> str | None:
    """Why an output has no answer when its model spent the whole budget thinking — an empty answer cut at the
    limit beside a reasoning trace (a template that opens a thinking block, a server's reasoning parser) — else
    None. Such an answer is no answer: asked again with the same budget it would think again."""
    text = out.texts[0] if out.texts else ""
    trace = out.traces[0] if out.traces else None
    if text.strip() or trace is None or not out.finish_reasons or out.finish_reasons[0] != "length":
        return None
    budget = sampling.max_tokens_without_logprobs if out.first_token_logprobs is None and \
        sampling.max_tokens_without_logprobs is not None else sampling.max_tokens
    return (f"the model spent its whole budget of {budget} tokens thinking and gave no answer: switch its thinking "
            "off (options.chat_template_kwargs: {enable_thinking: false} for a Qwen3-style template on the local or "
            "vllm backend; options.extra_body with the same chat_template_kwargs on a vLLM server, or "
            "{reasoning_effort: none} where the provider takes it) or raise the budget (judge.max_tokens for "
            "verdicts read from text)")


# Tokens written beside the first token's log-probs: the first token alone cannot tell "No." from "No difference"
# (equivalent), "N/A" (no verdict) from "N" for NO, "Yes and no" from YES, or a grade of 4 from "4/10" or "4.5"; the
# log-probs are read only where these few tokens' text confirms the answer (engine.method.judges.read_verdict,
# engine.method.quality.read_grade), else the text decides as without log-probs — unknown, and asked again.
CONFIRM_TOKENS = 3


def first_token_sampling(verdict: str, text_tokens: int) -> SamplingParams:
    """Greedy sampling for an answer read from the first token's log-probs or from its text.

    Args:
        verdict: "logprobs" (the top-20 log-probs of the first token decide, of CONFIRM_TOKENS written), "text" (no
            log-probs: `text_tokens` tokens to parse), or "auto" (log-probs and CONFIRM_TOKENS, falling back to
            `text_tokens` of text where the backend cannot give log-probs; see
            SamplingParams.max_tokens_without_logprobs).
        text_tokens: tokens for an answer read from text (a whole "YES" or "4").
    """
    if verdict == "text":
        return SamplingParams(temperature=0.0, max_tokens=text_tokens)
    if verdict == "logprobs":
        return SamplingParams(temperature=0.0, max_tokens=CONFIRM_TOKENS, logprobs=20)
    if verdict == "auto":
        return SamplingParams(temperature=0.0, max_tokens=CONFIRM_TOKENS, logprobs=20,
                              max_tokens_without_logprobs=max(text_tokens, CONFIRM_TOKENS))
    raise ValueError(f"verdict must be auto, logprobs or text, got {verdict!r}")


def text_of(parse_text: Callable[[str], T | None]) -> Callable[[ChatOutput], T | None]:
    """A `parse` for `ask_until_parsed` that reads the first completion's text with `parse_text`."""

    def parse(out: ChatOutput) -> T | None:
        return parse_text(out.texts[0] if out.texts else "")

    return parse
