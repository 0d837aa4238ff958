import re
import string

import pytest

from engine.method import taxonomy
from engine.method.taxonomy import CATEGORIES, LETTERS


# Completeness: every category carries every text the method needs.
@pytest.mark.parametrize("letter", LETTERS)
def test_every_category_has_every_text(letter):
    c = CATEGORIES[letter]
    for field in ("name", "definition", "difference", "system_anchored", "regen_anchored", "judge_criterion"):
        assert getattr(c, field).strip(), f"category {letter} has an empty {field}"
    assert c.letter == letter


def test_all_eight_categories_in_order():
    assert list(CATEGORIES) == list("ABCDEFGH")


@pytest.mark.parametrize("letter", LETTERS)
def test_anchored_system_prompt_asks_for_n_and_the_format(letter):
    text = taxonomy.system_prompt("system_anchored", letter, 7)
    assert "7" in text and "### Response k" in text


def test_general_system_prompt_is_the_papers():
    assert taxonomy.system_prompt("system_general", None, 5).startswith(
        "Generate 5 responses that represent diverse values."
    )


def test_anchored_prompts_need_a_category():
    with pytest.raises(ValueError, match="category"):
        taxonomy.system_prompt("system_anchored", None, 5)
    with pytest.raises(ValueError, match="category"):
        taxonomy.regen_followup("regen_anchored", "Z")


def test_regen_general_is_the_papers():
    assert taxonomy.regen_followup("regen_general", "D") == "Can you generate a different answer?"


def test_d_anchored_followup_asks_for_a_different_strategy():
    assert "different strategy" in taxonomy.regen_followup("regen_anchored", "D")


@pytest.mark.parametrize("letter", LETTERS)
def test_judge_prompt_is_anchored_to_the_category(letter):
    text = taxonomy.judge_prompt(letter, "the prompt", "first", "second")
    c = CATEGORIES[letter]
    assert c.name in text and c.judge_criterion in text and "first" in text and "second" in text
    assert "YES" in text and "NO" in text


def test_judge_prompt_without_category_uses_the_generic_criterion():
    text = taxonomy.judge_prompt(None, "p", "a", "b")
    assert taxonomy.UNCATEGORISED_CRITERION in text and taxonomy.UNCATEGORISED_NAME in text


def test_classify_prompt_lists_every_category():
    text = taxonomy.classify_prompt("Write a poem")
    for c in CATEGORIES.values():
        assert f"{c.letter}. {c.name}" in text
    assert "Write a poem" in text


def test_prompt_text_with_braces_is_not_interpreted():
    text = taxonomy.judge_prompt("A", "What is {x}?", "{0}", "{response_b}")
    assert "What is {x}?" in text and '"""{0}"""' in text


def test_prompt_versions_cover_each_stage_and_differ():
    assert set(taxonomy.PROMPT_VERSIONS) == {"classify", "sample", "judge", "judge_trace", "checklist", "grade",
                                           "accuracy"}
    assert len(set(taxonomy.PROMPT_VERSIONS.values())) == 7
    assert all(set(v) <= set(string.hexdigits) for v in taxonomy.PROMPT_VERSIONS.values())


# Every text sent to a model is fingerprinted by exactly the stages that send it. What each stage sends is recorded
# by running the method's own programs (reminders and the clip mark included) against a backend that answers badly
# first; then each text is changed in turn: the stages whose fingerprint changes must be exactly those that sent it.

MARK = "⟦changed⟧"


class Recorder:
    """Answers every first request with something unparseable and every reminder with a valid answer, so that each
    program sends everything it can; records every message sent, by the stage being driven."""

    name = "recorder"

    def __init__(self):
        self.sent: list[str] = []

    def chat(self, conversations, sampling):
        from actors.base import ChatOutput, pair_sampling

        outs = []
        for conv, p in zip(conversations, pair_sampling(conversations, sampling)):
            self.sent.extend(m["content"] for m in conv)
            reminder = conv[-1]["content"] if conv[-2:-1] and conv[-2]["role"] == "assistant" else None
            if reminder is None:
                text = "?"  # unparseable for every step: each program sends its reminder
            elif "YES" in reminder:
                text = "YES"
            elif "A, B" in reminder:
                text = "A"
            elif "digit" in reminder:
                text = "3"
            else:
                text = "1. one\n2. two\n3. three"
            outs.append(ChatOutput(texts=[text] * p.n, finish_reasons=["stop"] * p.n, n_tokens=[1] * p.n))
        return outs

    def close(self):
        pass


def sent_by_stage() -> dict[str, str]:
    """stage → everything it sent, over every category and the uncategorised case."""
    from actors.base import SamplingParams
    from engine.config import JudgeConfig
    from engine.method.accuracy import grader_program
    from engine.method.classification import classify_program
    from engine.method.judges import judge_pair
    from engine.method.programs import drive
    from engine.method.quality import checklist_program, grade_program
    from engine.method.strategies import STRATEGIES, StrategyInput

    greedy = SamplingParams(temperature=0.0, max_tokens=4)
    categories = [*CATEGORIES, None]
    programs = {
        "classify": [classify_program("p", greedy)],
        "sample": [STRATEGIES[s](StrategyInput("p", c, 2, SamplingParams(seed=1, max_tokens=4)))
                   for s in STRATEGIES for c in categories],
        "judge": [judge_pair(c, "p", "a long response " * 5, "b", JudgeConfig(max_response_chars=10), greedy)
                  for c in categories],
        "judge_trace": [judge_pair(c, "p", "a long trace " * 5, "b", JudgeConfig(max_response_chars=10), greedy,
                                   target="trace") for c in categories],
        "checklist": [checklist_program(c, "p", greedy) for c in categories],
        "grade": [grade_program("p", ["one", "two", "three"], "r", greedy)],
        "accuracy": [grader_program("p", "gold", "r", greedy)],
    }
    out = {}
    for stage, progs in programs.items():
        backend = Recorder()
        drive(backend, progs)
        out[stage] = "\n".join(backend.sent)
    return out


def test_every_text_is_fingerprinted_by_exactly_the_stages_that_send_it(monkeypatch):
    import dataclasses

    before = taxonomy.prompt_versions()
    names = sorted(taxonomy.text_constants())
    assert "JUDGE_REMINDER" in names and "CLIP_MARK" in names and "Category.regen_anchored" in names
    for name in names:
        with monkeypatch.context() as m:
            if name.startswith("Category."):
                field = name.split(".", 1)[1]
                for letter, c in CATEGORIES.items():
                    m.setitem(taxonomy.CATEGORIES, letter, dataclasses.replace(c, **{field: getattr(c, field) + MARK}))
            else:
                m.setattr(taxonomy, name, getattr(taxonomy, name) + MARK)
            rekeyed = {stage for stage, v in taxonomy.prompt_versions().items() if v != before[stage]}
            senders = {stage for stage, text in sent_by_stage().items() if MARK in text}
        assert senders, f"{name}: no stage sends it (a dead text)"
        assert rekeyed == senders, f"{name}: sent by {sorted(senders)} but re-keys {sorted(rekeyed)}"


def test_an_unclaimed_text_is_an_error(monkeypatch):
    monkeypatch.setattr(taxonomy, "NEW_TEXT", "Say something.", raising=False)
    with pytest.raises(RuntimeError, match="NEW_TEXT"):
        taxonomy.prompt_versions()


# Issue 17 item 5: every criterion states the decision rule; C asks plainly for a different option.
@pytest.mark.parametrize("letter", list("ABCDEFGH"))
def test_every_criterion_states_when_two_responses_are_different(letter):
    assert re.search(r"\bIf\b.*\bthey are different\.$", taxonomy.CATEGORIES[letter].judge_criterion)


@pytest.mark.parametrize("letter", LETTERS)
def test_the_judge_is_not_told_which_verdict_the_task_hopes_for(letter):
    # A's text said "homogeneity is desired: all responses should give the same correct answer" and D's "the final
    # answer should be the same": the judge was told the hoped-for verdict where its job is to see what differs.
    text = taxonomy.judge_prompt(letter, "Q?", "one", "two")
    assert not re.search(r"\b(should|desired|expected|must)\b", text, re.I), text


def test_g_differs_in_one_element_and_c_asks_plainly_for_another_option():
    assert "at least one of these elements" in taxonomy.CATEGORIES["G"].judge_criterion
    followup = taxonomy.CATEGORIES["C"].regen_anchored
    assert "different option" in followup and "fair" not in followup


def test_none_of_these_is_offered_and_falls_back_to_the_general_texts():
    from engine.method.parsing import NONE_OF_THESE

    assert "N if the prompt fits none" in taxonomy.CLASSIFY_PROMPT.replace("\n", " ")
    assert taxonomy.judge_prompt(NONE_OF_THESE, "p", "a", "b") == taxonomy.judge_prompt(None, "p", "a", "b")
    assert taxonomy.regen_followup("regen_general", NONE_OF_THESE) == taxonomy.REGEN_GENERAL


def test_f_differs_by_factual_perspective_alone_as_the_paper_defines_it():
    # F's texts read "a different factual perspective or emphasis": two accounts of one perspective stressing other
    # facts were judged different, and the anchored strategies were asked for exactly that.
    f = taxonomy.CATEGORIES["F"]
    for text in (f.difference, f.system_anchored, f.regen_anchored, f.judge_criterion):
        assert "perspective" in text and not re.search(r"emphas", text, re.I), text
