import pytest

from actors.base import ChatOutput, SamplingParams
from engine.method.programs import drive
from engine.method.strategies import STRATEGIES, StrategyInput
from tests.support.doubles import ScriptedChat


class Recorder:
    """Records conversations and answers from a script (a list of texts, used in turn)."""

    name = "recorder"

    def __init__(self, answers=None, error=None, tokens=2):
        self.answers = list(answers or [])
        self.error = error
        self.tokens = tokens  # per completion; None: the backend did not say (an HTTP reply without usage)
        self.seen = []

    def chat(self, conversations, sampling):
        params = sampling if isinstance(sampling, list) else [sampling] * len(conversations)
        outs = []
        for c, p in zip(conversations, params):
            self.seen.append((c, p))
            if self.error:
                outs.append(ChatOutput(error=self.error))
                continue
            text = self.answers.pop(0) if self.answers else f"answer {len(self.seen)}"
            outs.append(ChatOutput(texts=[text] * p.n, finish_reasons=["stop"] * p.n, n_tokens=[self.tokens] * p.n))
        return outs

    def close(self):
        pass


def run(strategy, backend, category="D", n=3):
    x = StrategyInput("Solve 2+2.", category, n, SamplingParams(max_tokens=10, seed=7))
    (result,) = drive(backend, [STRATEGIES[strategy](x)])
    return result


def test_temperature_asks_once_for_n():
    rec = Recorder()
    s = run("temperature", rec)
    assert len(rec.seen) == 1 and rec.seen[0][1].n == 3 and len(s.responses) == 3 and s.status == "ok"


def test_system_anchored_uses_the_category_and_splits():
    rec = Recorder(["### Response 1\na\n### Response 2\nb\n### Response 3\nc"])
    s = run("system_anchored", rec)
    system = rec.seen[0][0][0]["content"]
    assert "different problem-solving strategy" in system
    assert rec.seen[0][1].max_tokens == 30  # n × the per-response budget
    assert s.responses == ["a", "b", "c"] and s.status == "ok" and s.anchored_as == "D"


def test_a_split_completion_of_unknown_tokens_gives_each_part_unknown_tokens():
    # An HTTP reply without usage has no token count: apportioning it over the parts raised a TypeError.
    rec = Recorder(["### Response 1\na\n### Response 2\nbb\n### Response 3\nc"], tokens=None)
    s = run("system_general", rec)
    assert s.responses == ["a", "bb", "c"] and s.n_tokens == [None, None, None]
    s = run("system_general", Recorder(["### Response 1\na\n### Response 2\nbb\n### Response 3\nc"], tokens=8))
    assert s.n_tokens == [2, 4, 2]


def test_system_short_parse_is_retried_once_and_marked():
    rec = Recorder(["### Response 1\na", "### Response 1\na\n### Response 2\nb"])
    s = run("system_general", rec)
    assert len(rec.seen) == 2 and rec.seen[0][1].seed != rec.seen[1][1].seed
    assert s.responses == ["a", "b"] and s.status == "short" and s.raw.endswith("b") and s.calls == 2


def test_a_short_greedy_completion_is_not_asked_again():
    # At temperature 0 the retry changed only the seed, which greedy decoding reads not: each short group of a sweep
    # through 0 paid for a second completion of up to n × max_tokens, certain to split the same way.
    rec = Recorder(["### Response 1\na", "### Response 1\na\n### Response 2\nb"])
    x = StrategyInput("Solve 2+2.", "D", 3, SamplingParams(temperature=0.0, max_tokens=10, seed=7))
    (s,) = drive(rec, [STRATEGIES["system_general"](x)])
    assert len(rec.seen) == 1 and s.calls == 1 and s.responses == ["a"] and s.status == "short"


def test_a_retry_that_fails_keeps_the_first_attempts_responses():
    # The short first attempt's two responses were thrown away when its retry met a backend error: the whole group
    # became an error. They stand now, as a short group.
    class FailsSecond(Recorder):
        def chat(self, conversations, sampling):
            if self.seen:
                self.seen.append((conversations[0], sampling))
                return [ChatOutput(error="HTTP 503 after 7 attempts", transient=True)]
            return super().chat(conversations, sampling)

    s = run("system_general", FailsSecond(["### Response 1\na\n### Response 2\nb"]))
    assert s.responses == ["a", "b"] and s.status == "short" and s.calls == 2 and s.error is None
    s = run("system_general", Recorder(error="HTTP 401"))  # the first attempt failing is still the group's error
    assert s.status == "error" and s.responses == []


def test_system_full_parse_is_not_retried():
    rec = Recorder(["### Response 1\na\n### Response 2\nb\n### Response 3\nc"])
    run("system_general", rec)
    assert len(rec.seen) == 1


def test_anchored_falls_back_to_general_without_a_category():
    rec = Recorder(["### Response 1\na\n### Response 2\nb\n### Response 3\nc"])
    s = run("system_anchored", rec, category=None)
    assert rec.seen[0][0][0]["content"].startswith("Generate 3 responses that represent diverse values.")
    assert s.anchored_as is None


def test_regen_sees_previous_answers_and_asks_the_anchored_followup():
    rec = Recorder(["one", "two", "three"])
    s = run("regen_anchored", rec)
    assert s.responses == ["one", "two", "three"]
    last = rec.seen[-1][0]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[1]["content"] == "one" and last[3]["content"] == "two"
    assert "different strategy" in last[-1]["content"]


def test_regen_general_followup():
    rec = Recorder()
    run("regen_general", rec)
    assert rec.seen[-1][0][-1]["content"] == "Can you generate a different answer?"


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_backend_row_errors_are_kept(strategy):
    s = run(strategy, Recorder(error="too long"))
    assert s.status == "error" and s.error == "too long" and s.responses == []


def test_regen_runs_in_lockstep_rounds():
    calls = []

    class Spy(ScriptedChat):
        def chat(self, conversations, sampling):
            calls.append(len(conversations))
            return super().chat(conversations, sampling)

    programs = [STRATEGIES["regen_general"](StrategyInput(f"p{k}", "G", 4, SamplingParams(seed=k))) for k in range(6)]
    drive(Spy(), programs)
    assert calls == [6, 6, 6, 6]


# One answer written as numbered steps must not become n responses (strict parsing, the default).
STEPS = "To solve it:\n1. Add 2 and 2.\n2. Check the sum.\n3. The answer is 4."


@pytest.mark.parametrize("strategy", ["system_general", "system_anchored"])
def test_numbered_steps_are_one_short_answer_when_strict(strategy):
    s = run(strategy, Recorder([STEPS, STEPS]))
    assert s.status == "short" and s.responses == [] and s.parse_mode is None and s.raw == STEPS


def test_lenient_parsing_splits_a_numbered_list_and_says_so():
    x = StrategyInput("Solve 2+2.", "D", 3, SamplingParams(max_tokens=10, seed=7), system_parse="lenient")
    (s,) = drive(Recorder([STEPS]), [STRATEGIES["system_general"](x)])
    assert s.status == "ok" and len(s.responses) == 3 and s.parse_mode == "numbered"


def test_headed_responses_parse_and_record_the_mode():
    headed = "### Response 1\nfour\n### Response 2\n2+2=4\n### Response 3\nIt is 4."
    s = run("system_general", Recorder([headed]))
    assert s.status == "ok" and s.responses == ["four", "2+2=4", "It is 4."] and s.parse_mode == "headers"


class Cut(Recorder):
    """A backend whose completions end with a given finish reason ("length": cut off by the token limit)."""

    def __init__(self, answers, reason):
        super().__init__(answers, tokens=30)
        self.reason = reason

    def chat(self, conversations, sampling):
        outs = super().chat(conversations, sampling)
        return [ChatOutput(texts=o.texts, finish_reasons=[self.reason] * len(o.texts), n_tokens=o.n_tokens)
                for o in outs]


def test_a_completion_cut_off_marks_only_the_response_it_ran_out_in_and_is_kept():
    # Every part inherited the completion's "length": a completion cut inside response 3 marked all three
    # truncated, and the raw completion was not kept.
    raw = "### Response 1\nAnswer one.\n### Response 2\nAnswer two.\n### Response 3\nThe third was cut in the mid"
    s = run("system_general", Cut([raw], "length"))
    assert s.status == "ok" and s.finish_reasons == ["stop", "stop", "length"] and s.raw == raw
    s = run("system_general", Cut([raw], "stop"))
    assert s.finish_reasons == ["stop", "stop", "stop"] and s.raw is None
    short = "### Response 1\nAnswer one.\n### Response 2\nThe second was cut"
    s = run("system_general", Cut([short, short], "length"))
    assert s.status == "short" and s.finish_reasons == ["stop", "length"] and s.raw == short


def test_text_cut_after_the_last_response_keeps_the_raw_completion():
    # A completion that ran out in a recap after the last response: every response is whole.
    raw = "### Response 1\na\n### Response 2\nb\n### Response 3\nc\n\n**Summary**\n- Response 1: one\n- Response 2: t"
    s = run("system_general", Cut([raw], "length"))
    assert s.responses == ["a", "b", "c"] and s.finish_reasons == ["stop"] * 3 and s.raw == raw
    s = run("system_general", Cut([raw], "stop"))
    assert s.responses == ["a", "b", "c"] and s.raw == raw  # the recap, cut from response 3, can be audited


def test_answers_on_the_header_lines_are_a_full_group():
    # "### Response k: <answer>" parsed to nothing: a short group after two calls.
    raw = "### Response 1: 7\n### Response 2: 3\n### Response 3: 9"
    s = run("system_anchored", Recorder([raw, raw]), category="C")
    assert s.status == "ok" and s.calls == 1 and s.responses == ["7", "3", "9"] and s.raw is None
