"""Programs: the lockstep driver, running programs side by side, and the one ask-until-parsed protocol."""

import pytest

from actors.base import ChatOutput, SamplingParams
from engine.method.programs import Asked, DriveStats, ProgramError, Request, ask_until_parsed, drive, parallel, text_of


# drive: lockstep rounds over many programs.
class Counting:
    name = "counting"

    def __init__(self):
        self.batches = []

    def chat(self, conversations, sampling):
        self.batches.append(len(conversations))
        return [ChatOutput(texts=[c[-1]["content"].upper()]) for c in conversations]

    def close(self):
        pass


def program(turns, label):
    seen = []
    for t in range(turns):
        (out,) = yield [Request([{"role": "user", "content": f"{label}{t}"}], SamplingParams())]
        seen.append(out.texts[0])
    return seen


def test_drive_batches_each_round_and_returns_in_order():
    backend = Counting()
    stats = DriveStats()
    results = drive(backend, [program(3, "a"), program(1, "b"), program(2, "c")], stats)
    assert results == [["A0", "A1", "A2"], ["B0"], ["C0", "C1"]]
    assert backend.batches == [3, 2, 1]
    assert (stats.rounds, stats.calls) == (3, 6)


def test_drive_program_with_no_requests_returns_at_once():
    def instant():
        return "done"
        yield  # pragma: no cover

    assert drive(Counting(), [instant()]) == ["done"]


def test_drive_rejects_a_backend_that_drops_outputs():
    class Lossy(Counting):
        def chat(self, conversations, sampling):
            return super().chat(conversations, sampling)[:-1]

    with pytest.raises(ProgramError, match="outputs for"):
        drive(Lossy(), [program(1, "a"), program(1, "b")])


# parallel: several programs' requests share each round.
def test_parallel_runs_programs_side_by_side():
    def both():
        results = yield from parallel([program(2, "x"), program(1, "y")])
        return results

    backend = Counting()
    assert drive(backend, [both()]) == [[["X0", "X1"], ["Y0"]]]
    assert backend.batches == [2, 1]


# ask_until_parsed: one reminder, never a default value.
class Answers:
    """Answers each request with the next scripted text (or error)."""

    name = "answers"

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen = []

    def chat(self, conversations, sampling):
        self.seen.extend(conversations)
        out = []
        for _ in conversations:
            a = self.answers.pop(0)
            out.append(ChatOutput(error=a[1]) if isinstance(a, tuple) else ChatOutput(texts=[a]))
        return out

    def close(self):
        pass


def digit(text):
    return int(text) if text.strip().isdigit() else None


def ask():
    return ask_until_parsed([{"role": "user", "content": "a digit?"}], SamplingParams(), text_of(digit), "ONE DIGIT")


def test_a_parsed_first_answer_is_taken_at_once():
    backend = Answers("7")
    assert drive(backend, [ask()]) == [Asked(7, "7", 1)]


def test_an_unparsed_answer_gets_one_reminder_as_a_follow_up_turn():
    backend = Answers("seven", "7")
    assert drive(backend, [ask()]) == [Asked(7, "seven ⟶ 7", 2)]
    assert backend.seen[1][-2:] == [{"role": "assistant", "content": "seven"}, {"role": "user", "content": "ONE DIGIT"}]


def test_two_unparsed_answers_give_no_value():
    assert drive(Answers("seven", "eight"), [ask()]) == [Asked(None, "seven ⟶ eight", 2)]


def test_a_backend_error_is_not_retried_and_is_recorded():
    assert drive(Answers(("e", "context too long")), [ask()]) == [
        Asked(None, "<error: context too long>", 1, "context too long")]
    assert drive(Answers("x", ("e", "boom")), [ask()]) == [Asked(None, "x ⟶ <error: boom>", 2, "boom")]


class Thinking:
    """Answers every request with a reasoning model's thinking, cut at the limit before any answer (the text as a
    template that opens the block leaves it, or a closed block followed by `after`)."""

    name = "thinking"

    def __init__(self, after=None):
        self.after = after
        self.seen = []

    def chat(self, conversations, sampling):
        self.seen.extend(conversations)
        text = "<think>Let me compare the two" if self.after is None else f"<think>compared</think>{self.after}"
        return [ChatOutput(texts=[text], finish_reasons=["length" if self.after is None else "stop"])
                for _ in conversations]

    def close(self):
        pass


def test_an_answer_starved_by_thinking_is_an_error_without_a_futile_reminder():
    backend = Thinking()
    (asked,) = drive(backend, [ask()])
    assert asked.value is None and len(backend.seen) == 1 and asked.calls == 1
    assert "whole budget of 1024 tokens thinking" in asked.error and "enable_thinking: false" in asked.error
    assert asked.raw == f"<error: {asked.error}>"
    # Thinking that closed, then an answer that does not parse: reminded as any other.
    backend = Thinking(after="seven")
    assert drive(backend, [ask()]) == [Asked(None, "seven ⟶ seven", 2)] and len(backend.seen) == 2


def test_a_reminder_after_log_probs_that_named_no_answer_gets_the_text_budget():
    # verdict auto: a few tokens with log-probs. Its log-probs named no answer (the model began "** The"), and as
    # few tokens of reminder could be cut again: the reminder is asked with the text budget, so "**Yes**" is read.
    from engine.method.judges import read_verdict
    from engine.method.programs import CONFIRM_TOKENS, first_token_sampling

    class FirstTokenThenText:
        name = "first-token"

        def __init__(self):
            self.sampling = []

        def chat(self, conversations, sampling):
            self.sampling.extend(sampling if isinstance(sampling, list) else [sampling] * len(conversations))
            p = self.sampling[-1]
            text = "** The" if p.max_tokens == CONFIRM_TOKENS else "**Yes**"
            return [ChatOutput(texts=[text], first_token_logprobs=[{"**": -0.01, "Yes": -6.0, "No": -7.0}])]

        def close(self):
            pass

    backend = FirstTokenThenText()
    program = ask_until_parsed([{"role": "user", "content": "same?"}], first_token_sampling("auto", 4), read_verdict,
                               "YES or NO")
    assert drive(backend, [program]) == [Asked((1.0, "text"), "** The ⟶ **Yes**", 2)]
    assert [p.max_tokens for p in backend.sampling] == [CONFIRM_TOKENS, 4] and backend.sampling[1].logprobs == 20
