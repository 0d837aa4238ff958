"""Continuous driving: a program's next request goes in as soon as its previous ones are back, with a bound on the
requests in flight; the results are those of lockstep rounds."""

import pytest

from actors.base import ChatOutput, ContinuousBackend, SamplingParams
from engine.method.programs import DriveStats, ProgramError, Request, drive, drive_continuous


def answer(conversation, sampling):
    """What both doubles answer: the request's own text, so results do not depend on how requests were batched."""
    last = conversation[-1]["content"]
    return ChatOutput(texts=[f"<think>t{sampling.max_tokens}</think>re:{last}"], finish_reasons=["stop"],
                      n_tokens=[sampling.max_tokens], prompt_tokens=len(conversation))


class Lockstep:
    name = "lockstep"

    def chat(self, conversations, sampling):
        params = sampling if isinstance(sampling, list) else [sampling] * len(conversations)
        return [answer(c, p) for c, p in zip(conversations, params)]


class Engine:
    """A continuous backend double: a request takes `max_tokens` steps of the engine; `collect` runs steps until one
    finishes. It logs ("submit", key) / ("done", key) in order, and the most requests in flight."""

    name = "engine"

    def __init__(self, max_in_flight=100, continuous=True):
        self.continuous, self.max_in_flight = continuous, max_in_flight
        self.running: dict[int, list] = {}
        self.log: list[tuple[str, int]] = []
        self.peak = 0
        self.cancelled: list[int] = []

    def chat(self, conversations, sampling):
        return Lockstep().chat(conversations, sampling)

    def submit(self, key, conversation, sampling):
        self.running[key] = [sampling.max_tokens, answer(conversation, sampling)]
        self.log.append(("submit", key))
        self.peak = max(self.peak, len(self.running))

    def collect(self):
        done = []
        while self.running and not done:
            for key in list(self.running):
                self.running[key][0] -= 1
                if self.running[key][0] <= 0:
                    done.append((key, self.running.pop(key)[1]))
                    self.log.append(("done", key))
        return done

    def cancel(self):
        self.cancelled = list(self.running)
        self.running.clear()


def regen(name, turns, tokens):
    """A conversation of `turns` turns, each answer of `tokens` tokens, each turn seeing the earlier answers."""
    conversation = [{"role": "user", "content": name}]
    texts = []
    for t in range(turns):
        (out,) = yield [Request(list(conversation), SamplingParams(max_tokens=tokens, seed=t))]
        texts.append(out.texts[0])
        conversation += [{"role": "assistant", "content": out.texts[0]}, {"role": "user", "content": f"{name}{t}"}]
    return texts, out.traces


def both_orders():
    outs = yield [Request([{"role": "user", "content": "a"}], SamplingParams(max_tokens=2)),
                  Request([{"role": "user", "content": "b"}], SamplingParams(max_tokens=7))]
    return [o.texts[0] for o in outs]


def test_the_engine_double_is_a_continuous_backend():
    assert isinstance(Engine(), ContinuousBackend) and not isinstance(Lockstep(), ContinuousBackend)


def test_results_equal_lockstep_and_short_conversations_move_on():
    def programs():
        return [regen("long", 2, 50), *(regen(f"s{k}", 3, 2) for k in range(3)), both_orders()]

    stats = DriveStats()
    engine = Engine()
    continuous = drive(engine, programs(), stats)
    assert continuous == drive(Lockstep(), programs())
    assert continuous[1][0] == ["re:s0", "re:s00", "re:s01"] and continuous[1][1] == ["t2"]  # traces apart
    assert stats.calls == 2 + 3 * 3 + 2 and stats.rounds == 3
    # Every short conversation finished all three turns before the long one's first turn was done.
    first_long_done = engine.log.index(("done", 0))
    short_done = [i for i, (what, key) in enumerate(engine.log) if what == "done" and key != 0]
    assert len([i for i in short_done if i < first_long_done]) >= 3 * 3


def test_requests_in_flight_stay_under_the_bound():
    engine = Engine(max_in_flight=3)
    results = drive(engine, [regen(f"c{k}", 2, 1 + k) for k in range(10)])
    assert engine.peak == 3 and len(results) == 10
    assert all(texts == [f"re:c{k}", f"re:c{k}0"] for k, (texts, _) in enumerate(results))


def test_a_backend_may_turn_continuous_driving_off():
    engine = Engine(continuous=False)
    assert drive(engine, [regen("x", 2, 3)]) == [(["re:x", "re:x0"], ["t3"])]
    assert engine.log == []  # went through chat()


def test_a_failing_program_cancels_what_is_in_flight():
    def broken():
        yield [Request([{"role": "user", "content": "x"}], SamplingParams(max_tokens=1))]
        raise RuntimeError("bug in a program")

    engine = Engine()
    with pytest.raises(RuntimeError, match="bug in a program"):
        drive_continuous(engine, [regen("long", 1, 40), broken()])
    assert engine.cancelled == [0]


def test_a_backend_that_loses_a_request_is_an_error():
    class Forgetful(Engine):
        def collect(self):
            self.running.clear()
            return []

    with pytest.raises(ProgramError, match="returned nothing"):
        drive(Forgetful(), [regen("x", 1, 3)])
