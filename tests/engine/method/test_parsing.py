import math

import pytest

from engine.method.parsing import (
    NONE_OF_THESE,
    expected_grade,
    grade_logprobs,
    p_yes_from_logprobs,
    parse_category,
    parse_checklist,
    parse_grade,
    parse_short_answer_grade,
    Split,
    parse_verdict,
    split_completion,
    split_responses,
)


# Classification letters.
@pytest.mark.parametrize(
    "raw,letter",
    [
        ("G", "G"),
        ("G.", "G"),
        (" (D) ", "D"),
        ("Category: E", "E"),
        ("category: h", "H"),
        ("The category is B.", "B"),
        ("Answer: C", "C"),
        ("F. Encyclopedia inquiry", "F"),
        ("**A**", "A"),
        ("A", "A"),
        ("Creative writing", "G"),
        ("H\nbecause it asks for advice", "H"),
        # The article "A" before a capitalised word is no second letter.
        ("D. A Problem with many solutions", "D"), ("G — A Poem About The Sea", "G"),
        ("Category: B (Advice). A User wants help", "B"),
    ],
)
def test_parse_category_accepts(raw, letter):
    assert parse_category(raw) == letter


@pytest.mark.parametrize(
    "raw",
    ["", "I think so", "A story about a dog", "a", "Z", "Creative writing or advice or opinions",
     "The answer is a cat"],
)
def test_parse_category_rejects_non_answers(raw):
    assert parse_category(raw) is None


@pytest.mark.parametrize(
    "raw,letter",
    [
        ("G. A story about a dog", "G"),  # the article "A" names no category
        ("D. Problem-solving objective: A problem (math, logic, code) with a single verifiable solution", "D"),
        ("E\nA practical problem with many partially verifiable solutions", "E"),
        ("Category: D. Category D fits best.", "D"),
        ("B (e.g. name a country that starts with S)", "B"),
        ("**H**", "H"),
    ],
)
def test_parse_category_accepts_an_explanation_that_names_no_other_letter(raw, letter):
    assert parse_category(raw) == letter


@pytest.mark.parametrize(
    "raw",
    [
        "Category: A or D",
        "A, D",
        "D (or possibly E)",
        "Answer: A or D",
        "The category is A or D",
        "Category: B, but C also possible",
        "Letter: D\nActually E",
        "G or N",
        "N (maybe G)",
        "None of these; closest is H",
        "Creative writing, or perhaps H",
    ],
)
def test_an_answer_naming_two_categories_is_unparsed_not_its_first_letter(raw):
    assert parse_category(raw) is None


@pytest.mark.parametrize("raw", ["This is not Creative writing.", "It isn't Creative writing", "No: creative writing"])
def test_a_negated_category_name_is_not_that_category(raw):
    assert parse_category(raw) is None


# System-prompt sampling: n responses in one completion. Strict by default: only the asked-for headers (or the
# inline "Response k:" form) split; a bare numbered list splits only in lenient mode, since one answer written as
# numbered steps would otherwise become n "responses".
def test_split_headers():
    raw = "### Response 1\nfirst\n### Response 2\nsecond one\n### Response 3\nthird"
    assert split_responses(raw, 3) == (["first", "second one", "third"], "headers")


def test_split_drops_preamble_and_keeps_lists_inside_a_response():
    raw = "Sure! Here they are.\n### Response 1\nsteps:\n1. a\n2. b\n### Response 2\nother"
    assert split_responses(raw, 2) == (["steps:\n1. a\n2. b", "other"], "headers")
    assert split_responses(raw, 2, "lenient") == (["steps:\n1. a\n2. b", "other"], "headers")


def test_split_inline_and_bold_headers():
    assert split_responses("Response 1: a\nResponse 2: b", 2) == (["a", "b"], "inline")
    assert split_responses("**Response 1:**\na\n**Response 2:**\nb", 2) == (["a", "b"], "headers")


def test_one_answer_in_numbered_steps_is_not_split_when_strict():
    steps = "To solve it:\n1. Add 2 and 3.\n2. Multiply by 4.\n3. Subtract 1.\n4. Divide by 19.\n5. The answer is 1."
    assert split_responses(steps, 5) == ([], None)
    assert split_responses(steps, 5, "lenient")[1] == "numbered"  # lenient: five "responses" out of one


def test_a_numbered_list_splits_only_when_lenient():
    assert split_responses("1. alpha\n2. beta\n3. gamma", 3) == ([], None)
    assert split_responses("1. alpha\n2. beta\n3. gamma", 3, "lenient") == (["alpha", "beta", "gamma"], "numbered")


def test_split_short_and_empty():
    assert split_responses("### Response 1\nonly one", 5) == (["only one"], "headers")
    assert split_responses("no structure at all", 5) == ([], None)
    assert split_responses("### Response 1\n\n### Response 2\nb", 2) == (["b"], "headers")


def test_a_long_run_of_spaces_is_split_in_linear_time():
    # The quadratic pattern took 3 s on 20k spaces and ~75 s on 100k; the linear one ~0.07 s on 200k here. Asserted
    # as a bound loose enough for a loaded 2-core CI machine and as the growth from 50k to 200k (linear: ~4x,
    # quadratic: ~16x), best of three so one scheduler hiccup does not decide.
    import time

    def best_of_three(text):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            split_responses(text, 3, "lenient")
            times.append(time.perf_counter() - start)
        return min(times)

    for make in (lambda k: " " * k, lambda k: "Response 1" + " " * k + "x", lambda k: "1." + " " * k):
        small, large = best_of_three(make(50_000)), best_of_three(make(200_000))
        assert large < 0.1 or large < 0.5 and large / max(small, 1e-4) < 8, (small, large)


def test_a_plan_listed_before_the_responses_is_not_taken_for_them():
    # The first run of marks 1, 2, 3 won: the plan's three lines became the responses, the real ones all inside the
    # third, and the group counted as complete.
    raw = ("Here is my plan:\nResponse 1: a formal tone\nResponse 2: a casual tone\nResponse 3: a poem\n\n"
           "Response 1: Dear Sir, I write to you\nResponse 2: Hey you\nResponse 3: Roses are red")
    assert split_responses(raw, 3) == (["Dear Sir, I write to you", "Hey you", "Roses are red"], "inline")
    titled = raw.replace("\n\nResponse 1: Dear", "\n\n### Response 1: Formal\nDear").replace(
        "\nResponse 2: Hey", "\n### Response 2: Casual\nHey").replace("\nResponse 3: Roses", "\n### Response 3\nRoses")
    assert split_responses(titled, 3)[0][1:] == ["Casual\nHey you", "Roses are red"]


# A header's text after its number is its response's first line, as the inline form's is, whether it answers
# ("### Response 1: 7") or names the approach ("(Algebra)"): the separator and the markdown around it are dropped.
@pytest.mark.parametrize("raw,expected", [
    ("### Response 1 — Optimistic\nA\n### Response 2 — Grim\nB", ["Optimistic\nA", "Grim\nB"]),
    ("**Response 1 – Optimistic**\nA\n**Response 2 – Grim**\nB", ["Optimistic\nA", "Grim\nB"]),
    ("### Response 1 (Algebra)\nA\n### Response 2 (Geometry)\nB", ["(Algebra)\nA", "(Geometry)\nB"]),
    ("### Response #1\nA\n### Response #2\nB", ["A", "B"]),
    # the title once left "Title**" in the body
    ("### **Response 1: Title**\nA\n### **Response 2: Another**\nB", ["Title\nA", "Another\nB"]),
    ("### **Response 1:** Title\nA\n### **Response 2:** Another\nB", ["Title\nA", "Another\nB"]),
    # Named after what the anchored wordings ask for (solutions, stories…): these gave a short group (no parse).
    ("### Solution 1: Factoring\nA\n### Solution 2: The formula\nB", ["Factoring\nA", "The formula\nB"]),
    ("**Approach 1: Substitution**\nA\n**Approach 2**\nB", ["Substitution\nA", "B"]),
    ("## Story 1\nA\n## Story 2\nB", ["A", "B"]),
])
def test_titled_headers_split_and_their_titles_open_the_response(raw, expected):
    assert split_responses(raw, 2) == (expected, "headers")


def test_a_bold_label_with_its_text_on_the_same_line_keeps_the_text():
    raw = "**Response 1:** The capital is Paris.\n**Response 2:** Paris it is."
    assert split_responses(raw, 2) == (["The capital is Paris.", "Paris it is."], "inline")


def test_split_caps_at_n():
    raw = "\n".join(f"### Response {k}\nr{k}" for k in range(1, 8))
    assert split_responses(raw, 5) == (["r1", "r2", "r3", "r4", "r5"], "headers")


def test_split_ignores_out_of_sequence_numbers():
    raw = "### Response 1\na\n### Response 3\nstill a\n### Response 2\nb"
    assert split_responses(raw, 5) == (["a\n### Response 3\nstill a", "b"], "headers")


# YES/NO verdicts.
@pytest.mark.parametrize("raw,verdict", [("YES", True), ("yes.", True), ("No, they differ", False),
                                         (" NO", False), ("**Yes**", True), ("maybe", None), ("", None)])
def test_parse_verdict(raw, verdict):
    assert parse_verdict(raw) is verdict


@pytest.mark.parametrize("raw,verdict", [
    ("Yes", True), ("No", False), ("NO.", False), ("Y", True), ("n", False), ("**NO**", False),
    ("Yes, they use the same strategy.", True), ("No. They reach the answer differently.", False),
    ("No\nThe first uses algebra, the second a table.", False), ("Yes they are the same", True),
    ("NO they differ", False), ("Answer: YES", True), ("Equivalent.", True), ("Different", False),
    # A lower-case "no" in the explanation is prose, not a second answer.
    ("Yes, there is no difference", True), ("Yes, no doubt", True), ("No, there is no shared step", False),
])
def test_parse_verdict_reads_a_leading_yes_or_no_and_its_explanation(raw, verdict):
    assert parse_verdict(raw) is verdict


@pytest.mark.parametrize("raw", [
    "Not sure", "No idea", "N/A", "Not applicable", "Not different", "Nope", "No difference in strategy, so YES",
    "Equivalent? No.", "Same strategy? No", "YES or NO: NO", "Yes\nNo", "Yes, but maybe not", "I cannot tell",
    "No difference", "Both", "The two responses are equivalent", "Yes. So no.", "Yes, answer: no",
    "Yes and no", "yes and no — they share the plot but differ in tone.",
    # "NO" in capitals before a noun is the determiner too: read as NO, "no difference" counted as different.
    "NO DIFFERENCE", "NO difference in strategy, same approach", "NO NOTABLE DIFFERENCES",
])
def test_a_hedge_or_a_text_naming_both_answers_is_unparsed(raw):
    assert parse_verdict(raw) is None


def test_p_yes_normalises_over_yes_and_no_variants():
    p = p_yes_from_logprobs({"YES": math.log(0.3), " yes": math.log(0.1), "No": math.log(0.2), "The": math.log(0.4)})
    assert p == pytest.approx(0.4 / 0.6)


def test_p_yes_none_without_yes_or_no():
    assert p_yes_from_logprobs({"The": -0.1, "Maybe": -2.0}) is None
    assert p_yes_from_logprobs(None) is None
    assert p_yes_from_logprobs({}) is None


def test_p_yes_only_no():
    assert p_yes_from_logprobs({"NO": -0.2}) == 0.0


def test_p_yes_is_none_when_the_first_token_is_most_likely_not_an_answer():
    # The model starts "The …"; a YES/NO crumb in the top-20 (P ~ 1e-4) must not decide the verdict.
    assert p_yes_from_logprobs({"The": -0.0002, "Both": -8.6, "No": -9.2, "**": -9.5}) is None
    # YES and NO together outweigh the most likely other token: read, though neither alone does.
    assert p_yes_from_logprobs({"The": math.log(0.4), "YES": math.log(0.3), "NO": math.log(0.3)}) == pytest.approx(0.5)
    # An exact tie with the other token counts as an answer (the greedy token could be either).
    assert p_yes_from_logprobs({"YES": math.log(0.5), "The": math.log(0.5)}) == pytest.approx(1.0)


def test_read_verdict_falls_back_to_the_text_when_log_probs_are_not_an_answer():
    from actors.base import ChatOutput
    from engine.method.judges import read_verdict

    top = [{"The": -0.0002, "Both": -8.6, "No": -9.2, "**": -9.5}]
    assert read_verdict(ChatOutput(texts=["The two responses"], first_token_logprobs=top)) is None
    bold = ChatOutput(texts=["**Yes**"], first_token_logprobs=[{"**": -0.01, "No": -6.0}])
    assert read_verdict(bold) == (1.0, "text")
    assert read_verdict(ChatOutput(texts=["YES"], first_token_logprobs=[{"YES": -0.01, "NO": -5.0}]))[1] == "logprobs"


# Checklists and grades.
def test_a_checklists_sub_bullets_are_not_criteria_and_bold_items_are():
    # Sub-bullets under a criterion took the places of the criteria after it; bold-numbered items were unparsed.
    nested = "1. Accuracy\n   - dates right\n   - names right\n2. Clarity\n   - short\n3. Depth\n4. Tone"
    assert parse_checklist(nested) == ["Accuracy", "Clarity", "Depth", "Tone"]
    bold = "**1. Accuracy:** facts right\n**2. Clarity:** easy to follow\n**3. Depth:** enough detail"
    assert parse_checklist(bold) == ["Accuracy: facts right", "Clarity: easy to follow", "Depth: enough detail"]


@pytest.mark.parametrize("raw, items", [
    # Every item of the answer counted: bullets explaining criteria, a scoring guide's levels and a second list's
    # repeats were graded as criteria.
    ("1. Accuracy: gives the right year\n- cites the event\n2. Concision\n- one sentence\n3. Clarity",
     ["Accuracy: gives the right year", "Concision", "Clarity"]),
    ("1. Accuracy\n2. Clarity\n3. Completeness\n\nScoring guide:\n- 5: all met\n- 1: none met",
     ["Accuracy", "Clarity", "Completeness"]),
    ("Key factors:\n1. Accuracy\n2. Clarity\n3. Tone\n\nPriority order:\n1. Accuracy\n2. Tone",
     ["Accuracy", "Clarity", "Tone"]),
    ("Criteria:\n- a\n- b\n- c\n\n**Notes:**\n- d", ["a", "b", "c"]),
    ("- a\n- b\n- c\n1. d", ["a", "b", "c"]),
    ("1. Accuracy:\nThe response must include:\n2. Clarity\n3. Depth", ["Accuracy:", "Clarity", "Depth"]),
    # "1." on every line is valid Markdown (numbered 1, 2, 3), which small models write
    ("1. States the correct year\n1. Names the event\n1. Answers in one sentence",
     ["States the correct year", "Names the event", "Answers in one sentence"]),
    ("1. Accuracy\n\n1. Clarity\n\n1. Depth\n\nPriority:\n2. x", ["Accuracy", "Clarity", "Depth"]),
])
def test_a_checklist_is_its_first_list(raw, items):
    assert parse_checklist(raw) == items


def test_checklist_parses_3_to_5_items():
    assert parse_checklist("1. a\n2. b\n3. c") == ["a", "b", "c"]
    assert parse_checklist("- a\n- b\n- c\n- d\n- e\n- f") == ["a", "b", "c", "d", "e"]
    assert parse_checklist("1. a\n2. b") is None


@pytest.mark.parametrize("raw,grade", [("4", 4), ("Grade: 5/5", 5), (" 3.", 3), ("10", None), ("3.5", None),
                                       ("six", None), ("0", None), ("3 of 5", 3),
                                       # another scale, "N of M": was read as N
                                       ("3 of 10", None), ("Grade: 3 of 10", None)])
def test_parse_grade(raw, grade):
    assert parse_grade(raw) == grade


def test_expected_grade():
    assert expected_grade({"4": math.log(0.5), "5": math.log(0.5), "x": -1}) == pytest.approx(4.5)
    assert expected_grade({"x": -1}) is None


@pytest.mark.parametrize("raw,grade", [
    ("4/5", 4), ("5 out of 5", 5), ("**4**", 4), ("(3)", 3), ("4\nThe response meets most criteria.", 4),
    ("Grade: 4", 4), ("**Grade:** 2", 2), ("Score: 3/5", 3), ("Final grade is 5.", 5), ("Grade:\n4", 4),
    ("The response meets criteria 1, 2 and 3 but not 4. Grade: 2", 2), ("1. clear\n2. correct\nGrade: 3", 3),
    ("Grade: 4\nFinal grade: 4", 4), ("4 - meets every criterion", 4),
])
def test_parse_grade_reads_n_or_n_over_5_preferring_a_label(raw, grade):
    assert parse_grade(raw) == grade


@pytest.mark.parametrize("raw", [
    "5/10", "3 out of 10", "2-3", "2 – 3", "3 or 4", "3 to 4", "Between 3 and 4", "-3", "Grade: -3", "Grade: 5/10",
    "Grade: 3 or 4", "Grade: 4\nScore: 3", "The response meets criteria 1, 2 and 3", "4.5", "3/4",
])
def test_other_scales_ranges_alternatives_and_numbers_in_prose_are_unparsed(raw):
    assert parse_grade(raw) is None


def test_expected_grade_is_none_when_the_first_token_is_most_likely_not_a_digit():
    assert expected_grade({"**": -0.0001, "Grade": -9.0, "1": -11.5, "I": -11.8}) is None
    assert grade_logprobs({"**": -0.0001, "Grade": -9.0, "1": -11.5, "I": -11.8}) == {}
    # The digits together outweigh the most likely other token, though no digit alone does.
    assert expected_grade({"The": math.log(0.3), "4": math.log(0.2), "5": math.log(0.2)}) == pytest.approx(4.5)


@pytest.mark.parametrize("raw,grade", [("A", "correct"), ("B", "incorrect"), ("C", "not_attempted"),
                                       ("Incorrect.", "incorrect"), ("correct", "correct"), ("D", None)])
def test_short_answer_grade(raw, grade):
    assert parse_short_answer_grade(raw) == grade


@pytest.mark.parametrize("raw,grade", [
    ("A.", "correct"), ("Grade: B", "incorrect"), ("B. A wrong year is given.", "incorrect"),
    ("C (the response refuses)", "not_attempted"), ("The answer is A", "correct"), ("Not attempted", "not_attempted"),
])
def test_short_answer_grade_reads_a_standalone_letter(raw, grade):
    assert parse_short_answer_grade(raw) == grade


@pytest.mark.parametrize("raw", ["A response that gives a wrong answer is B", "A or B", "B, or maybe C", "A/B",
                                 "N/A", "n/a", "N / A (no response to grade)"])
def test_short_answer_article_or_two_letters_is_unparsed(raw):
    assert parse_short_answer_grade(raw) is None


@pytest.mark.parametrize("raw", ["N", "N.", "(N)", "Category: N", "None of these.", "none of the above"])
def test_none_of_these_is_its_own_answer(raw):
    assert parse_category(raw) == NONE_OF_THESE


@pytest.mark.parametrize("raw", ["No idea", "Not sure", "Nothing fits well"])
def test_a_word_starting_with_n_is_not_none_of_these(raw):
    assert parse_category(raw) is None


@pytest.mark.parametrize("raw", ["The category is A creative writing task.", "Category: A prompt asking for a story.",
                                 "Answer: A creative-writing request (a poem)."])
def test_an_article_after_a_label_is_no_letter(raw):
    # A labelled capital "A" followed by a word was read as category A (the article check covered the lead only).
    assert parse_category(raw) != "A"


@pytest.mark.parametrize("raw,expected", [("E.g. a poem request, so creative writing", "G"),
                                          ("A.I. ethics question, so encyclopedia inquiry", "F"),
                                          ("E.", "E"), ("The category is A.", "A"), ("Category: A", "A")])
def test_an_abbreviation_at_the_start_is_no_letter(raw, expected):
    # "E.g." and "A.I." opened with a letter and a full stop, and were read as E and A.
    assert parse_category(raw) == expected


@pytest.mark.parametrize("raw", ["Correct answer: Paris", "Correct answer is Paris; the response says Lyon, so B",
                                 "Correctly, the response"])
def test_a_grade_word_that_opens_a_sentence_is_no_grade(raw):
    # The grader's "Correct answer: Paris" (cut at 4 tokens) names the gold answer: it was read as "correct".
    assert parse_short_answer_grade(raw) is None


@pytest.mark.parametrize("raw,grade", [("Correct", "correct"), ("Incorrect: the response says Lyon", "incorrect"),
                                       ("**Not attempted.**", "not_attempted")])
def test_a_grade_word_alone_or_before_punctuation_is_a_grade(raw, grade):
    assert parse_short_answer_grade(raw) == grade


@pytest.mark.parametrize("raw,grade", [("1. Accuracy", None), ("1) The response", None), ("1. ✓ 2. ✓", None),
                                       ("1", 1), ("1.", 1), ("1/5. Poor", 1), ("Grade: 1. Accuracy", 1),
                                       ("4. The response", 4)])
def test_a_list_opening_at_1_is_no_grade_of_1(raw, grade):
    # A grader that starts listing the checklist ("1. Accuracy", cut at its 3 tokens) was graded 1.
    assert parse_grade(raw) == grade


def test_a_closing_section_after_the_last_response_is_not_its_text():
    # "### Summary of approaches" after the last response, with no run after it, was glued onto response 5: the
    # judge and the metrics read a recap of every response's strategy as part of it.
    body = "Solution {k}, using method M{k}. The answer is 42."
    raw = "".join(f"### Response {k}\n{body.format(k=k)}\n\n" for k in range(1, 4))
    parts, _ = split_responses(raw + "### Summary of approaches\n- M1, M2, M3; all reach 42.", 3)
    assert parts == [body.format(k=k) for k in range(1, 4)]
    assert split_responses(raw + "## Comparison\nAll differ.", 3)[0][-1] == body.format(k=3)
    # A lower heading is the response's own, and so is a heading of the level every response has.
    assert split_responses(raw + "#### Check\n42 - 42 = 0", 3)[0][-1].endswith("#### Check\n42 - 42 = 0")
    own = "### Response 1\nIntro\n### Details\nx\n### Response 2\nb\n### Response 3\nc\n### Details\nmore"
    assert split_responses(own, 3)[0] == ["Intro\n### Details\nx", "b", "c\n### Details\nmore"]


def test_headers_numbered_k_of_n_split():
    # "### Response 2 of 5" matched no header: the whole group was lost as a short parse.
    raw = "### Response 1 of 3: Formal\na\n**Response 2 of 3**\nbb\n### Response 3 of 3\nc"
    assert split_responses(raw, 3) == (["Formal\na", "bb", "c"], "headers")


@pytest.mark.parametrize("make", [lambda k: "### Response 1" + "*" * k + "x",
                                  lambda k: "Category" + " " * k + "x",
                                  lambda k: "\n".join(f"{i}. item" for i in range(1, k // 10))])
def test_runs_of_asterisks_labels_and_long_lists_are_read_in_linear_time(make):
    # Two optional runs of asterisks side by side in the header pattern: 16k asterisks took 17 s; "Category" and
    # 20k spaces 49 s in parse_category; the lenient split recomputed the outermost indent per item (8k: 2.7 s).
    import time

    def best_of_three(text):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            split_responses(text, 3, "lenient")
            parse_category(text)
            times.append(time.perf_counter() - start)
        return min(times)

    small, large = best_of_three(make(20_000)), best_of_three(make(80_000))
    assert large < 0.2 or large < 1.0 and large / max(small, 1e-4) < 8, (small, large)


def test_a_recap_after_the_responses_is_not_taken_for_them():
    # The later of two runs as long won: the recap's lines became the responses, and the group counted as complete.
    raw = ("### Response 1\nLife is good, and every day is a gift.\n### Response 2\nLife is hard, and then it ends."
           "\n\n## Comparison\n### Response 1 – optimistic\nfocuses on joy"
           "\n### Response 2 – skeptical\nfocuses on pain")
    assert split_responses(raw, 2) == (["Life is good, and every day is a gift.",
                                        "Life is hard, and then it ends."], "headers")
    bold = ("**Response 1: The Optimist**\nLife is a gift to savour.\n\n**Response 2: The Skeptic**\nLife is a test."
            "\n\n**Summary**\n\n**Response 1: optimism**\n\n**Response 2: skepticism**")
    assert split_responses(bold, 2) == (["The Optimist\nLife is a gift to savour.", "The Skeptic\nLife is a test."],
                                        "headers")


def test_responses_set_apart_by_rules_end_at_the_last_rule():
    raw = "### Response 1\nA\n\n---\n\n### Response 2\nB\n\n---\n\nI hope these help!"
    assert split_responses(raw, 2) == (["A", "B"], "headers")
    # A response with rules of its own keeps what follows its last one: the rules are not separators there.
    inner = "### Response 1\nA\n---\nA, part two\n---\n### Response 2\nB\n---\nB, part two"
    assert split_responses(inner, 2) == (["A\n---\nA, part two", "B\n---\nB, part two"], "headers")
    # A response that is one line in bold is the response, not a closing line.
    assert split_responses("**Response 1:**\n**Paris.**\n**Response 2:**\n**Paris!**", 2)[0] == ["**Paris.**",
                                                                                              "**Paris!**"]


def test_one_nouns_run_inside_a_response_does_not_split_it():
    raw = "### Response 1\nIntro\n### Solution 1\ns1\n### Solution 2\ns2\n### Response 2\nother"
    assert split_responses(raw, 2) == (["Intro\n### Solution 1\ns1\n### Solution 2\ns2", "other"], "headers")


def test_lenient_numbering_counts_the_outermost_items_and_numbered_headers():
    nested = "1. Plan A:\n   1. wake up\n   2. run\n2. Plan B:\n   1. sleep\n   2. eat"
    assert split_responses(nested, 2, "lenient") == (["Plan A:\n   1. wake up\n   2. run",
                                                      "Plan B:\n   1. sleep\n   2. eat"], "numbered")
    assert split_responses("### 1. The Storm\nrain\n### 2. The Calm\nsun", 2) == ([], None)
    assert split_responses("### 1. The Storm\nrain\n### 2. The Calm\nsun", 2, "lenient")[0] == [
        "The Storm\nrain", "The Calm\nsun"]


def test_what_ends_a_response_in_bold_or_under_a_hash_is_its_text():
    # A closing line was any bold or #-line at a body's end, in a loop: the bold final answers of D, the bold names
    # of B and G's hashtags were cut off every response. Only the title of a run that follows the last response
    # (a recap) is dropped now.
    math = ("### Response 1\nWe compute 3+4.\n**Final Answer: 7**\n### Response 2\nAdd them.\n**Answer: $\\boxed{7}$**"
            "\n### Response 3\nSeven.\n**The answer is 7.**")
    assert split_responses(math, 3)[0] == ["We compute 3+4.\n**Final Answer: 7**",
                                           "Add them.\n**Answer: $\\boxed{7}$**", "Seven.\n**The answer is 7.**"]
    names = "### Response 1\nHow about these?\n**Luna**\n**Mochi**\n### Response 2\nTry:\n#summer #beach"
    assert split_responses(names, 2)[0] == ["How about these?\n**Luna**\n**Mochi**", "Try:\n#summer #beach"]


def test_the_asked_for_inline_marks_come_before_other_nouns_headers():
    # "**Option 1: Hike**" inside the first of three inline responses took the split (two "responses").
    raw = ("Response 1: Consider these.\n**Option 1: Hike**\nGo hiking.\n**Option 2: Read**\nRead a book.\n"
           "Response 2: Stay home and rest.\nResponse 3: Go out with friends.")
    parts, how = split_responses(raw, 3)
    assert how == "inline" and parts[1:] == ["Stay home and rest.", "Go out with friends."]


def test_a_rule_of_another_kind_inside_the_last_response_is_its_own():
    raw = ("### Response 1\nStory A.\n\n---\n\n### Response 2\nStory B.\n\n---\n\n### Response 3\nPart one of C.\n\n"
           "* * *\n\nPart two of C, the ending.")
    assert split_responses(raw, 3)[0][2] == "Part one of C.\n\n* * *\n\nPart two of C, the ending."


def test_closing_and_rule_lines_are_matched_in_linear_time():
    import time

    start = time.perf_counter()
    split_responses("### Response 1\nA\n---" + " " * 50_000 + "x\n### Response 2\nB", 2)
    assert time.perf_counter() - start < 0.5  # 20,000 blanks took 2.9 s


# A response written on its header line ("### Response 1: 7") was dropped with the header, and the empty bodies
# then dropped: short-answer groups (B, C) parsed to nothing, a mix of answers on and under the header to 2 of 5.
@pytest.mark.parametrize("raw,expected", [
    ("### Response 1: 7\n### Response 2: 3\n### Response 3: 9\n### Response 4: 1\n### Response 5: 4",
     ["7", "3", "9", "1", "4"]),
    ("### Response 1: Spain\n\n### Response 2: Sweden\n\n### Response 3: Senegal\n\n### Response 4: Syria\n\n"
     "### Response 5: Samoa", ["Spain", "Sweden", "Senegal", "Syria", "Samoa"]),
    ("**Response 1: Heads**\n\n**Response 2: Tails**\n\n**Response 3: Heads**\n\n**Response 4: Tails**\n\n"
     "**Response 5: Heads**", ["Heads", "Tails", "Heads", "Tails", "Heads"]),
    ("### Response 1: Spain\nSpain is a country in Europe.\n\n### Response 2: Sweden\n\n### Response 3: Senegal\n\n"
     "### Response 4: Syria\nSyria is in Asia.\n\n### Response 5: Samoa",
     ["Spain\nSpain is a country in Europe.", "Sweden", "Senegal", "Syria\nSyria is in Asia.", "Samoa"]),
    ("### Response 1 — Paris\nThe capital is Paris.\n### Response 2 — Lyon\nIt is the largest city.\n"
     "### Response 3: -5\n### Response 4: **Paris**\n### Response 5 (Paris)\nDefinitely.",
     ["Paris\nThe capital is Paris.", "Lyon\nIt is the largest city.", "-5", "Paris", "(Paris)\nDefinitely."]),
])
def test_an_answer_on_the_header_line_is_the_responses_first_line(raw, expected):
    assert split_responses(raw, 5) == (expected, "headers")


def test_a_pass_that_comes_up_short_gives_way_to_a_later_one_inside_its_empty_responses():
    # Headers with nothing under them, the responses written inline below the last: the headers pass returned one
    # "response" holding all three, and the inline pass never ran.
    raw = "### Response 1\n### Response 2\n### Response 3\nResponse 1: a\nResponse 2: b\nResponse 3: c"
    assert split_responses(raw, 3) == (["a", "b", "c"], "inline")
    # Never to a list or another noun's run inside a response's text, nor to a plan before the responses.
    steps = "### Response 1\nsteps:\n1. a\n2. b\n3. c\n### Response 2\nother"
    assert split_responses(steps, 3, "lenient") == (["steps:\n1. a\n2. b\n3. c", "other"], "headers")
    nested = "### Response 1\n### Solution 1\ns1\n### Solution 2\ns2\n### Solution 3\ns3\n### Response 2\nother"
    assert split_responses(nested, 3)[0][1:] == ["other"]
    plan = "Response 1: formal\nResponse 2: casual\nResponse 3: a poem\n\n### Response 1\nDear Sir\n### Response 2\nHey"
    assert split_responses(plan, 3) == (["Dear Sir", "Hey"], "headers")


STORY = "Story {k}: a tale about topic {k} told in a long paragraph of text."
STORIES = "\n\n".join(f"### Response {k}\n{STORY.format(k=k)}" for k in range(1, 6))


# Closing text after the last response stayed in it unless under a # heading or after a rule that set every
# response apart: a recap naming each response pushed its pairs with response 5 toward "equivalent".
@pytest.mark.parametrize("closing", [
    "**Summary:**\n- Response 1: optimistic\n- Response 2: sad\n- Response 3: funny\n- Response 4: dark",
    "Each response takes a different angle: the first is optimistic, the second sad, the third funny.",
    "**Summary**\n**Response 1:** optimistic\n**Response 2:** sad\n**Response 3:** funny",
    "**Summary**\n\n**Response 1:** optimistic\n\n**Response 2:** sad",
    "---\n\nThese five responses vary in tone.",
    "I hope these responses help! Let me know if you need more.",
    "I hope these help!",
    "**Comparison**\nThey differ in tone and length.",
    "Key differences:\n- tone\n- length",
])
def test_a_recap_or_sign_off_after_the_last_response_is_cut_and_kept_apart(closing):
    split = split_completion(f"{STORIES}\n\n{closing}", 5)
    assert split.responses == [STORY.format(k=k) for k in range(1, 6)] and split.how == "headers"
    assert split.tail == closing  # as written, so the cut can be audited
    # A recap run of the marks right under the last response's text, no blank line between.
    glued = split_completion(f"{STORIES}\nResponse 1: optimistic\nResponse 2: sad", 5)
    assert glued.responses[-1] == STORY.format(k=5) and glued.tail == "Response 1: optimistic\nResponse 2: sad"


def test_a_sign_off_after_inline_responses_is_cut():
    raw = ("Response 1: Paris.\nResponse 2: Paris, France.\nResponse 3: It is Paris.\n\n"
           "All of these responses give the same answer, Paris.")
    split = split_completion(raw, 3)
    assert split == Split(["Paris.", "Paris, France.", "It is Paris."], "inline",
                          "All of these responses give the same answer, Paris.")


@pytest.mark.parametrize("last", [
    "Dear Bob,\nThe party is on Friday.\n\nI hope to see you soon.\n\nBest,\nJohn",  # a letter's own close
    "We substitute y = x - 1.\n\n**Conclusion:** x = 2.",  # one solution's conclusion
    "We substitute y = x - 1.\n\n**Summary:** x = 2.",
    "In summary, the night was long.",
    "The letter went out.\n\nThe reply came in response 2 days later.",  # "response 2" in prose names no response
])
def test_a_responses_own_closing_lines_stay(last):
    raw = "### Response 1\nOne.\n### Response 2\nTwo.\n### Response 3\n" + last
    assert split_completion(raw, 3) == Split(["One.", "Two.", last], "headers")


def test_a_closing_form_every_response_ends_with_is_theirs():
    raw = "".join(f"### Response {k}\nStory {k}.\n\nI hope you enjoy these!\n" for k in range(1, 4))
    assert split_responses(raw, 3)[0] == [f"Story {k}.\n\nI hope you enjoy these!" for k in range(1, 4)]


def test_responses_past_the_nth_are_the_tail():
    split = split_completion("\n".join(f"### Response {k}\nr{k}" for k in range(1, 5)), 3)
    assert split.responses == ["r1", "r2", "r3"] and split.tail == "### Response 4\nr4"


# Everything from a heading at or above the headers' level in the last response was cut: a story's title over the
# last story lost the whole response, and a "### Final Answer" only the last solution has lost its answer.
@pytest.mark.parametrize("last", [
    "## The Night Watch\nThe city sleeps while I keep watch.",
    "Substitute y = x - 1.\n### Final Answer\nx = 2",
    "Substitute y = x - 1.\n\n### Verification\nPlugging back in, 2 + 2 = 4.",
    "## Introduction\nWhy it matters.\n\n## Conclusion\nIt matters.",  # an essay's own sections
])
def test_a_heading_of_the_last_response_that_titles_no_recap_is_its_own(last):
    raw = "".join(f"### Response {k}\nAnswer {k}.\n\n" for k in range(1, 5)) + "### Response 5\n" + last
    parts, how = split_responses(raw, 5)
    assert how == "headers" and parts == [f"Answer {k}." for k in range(1, 5)] + [last]


def test_the_closing_cut_is_linear_in_rules_paragraphs_and_marks():
    # Re-stripping the text before each candidate cut would be quadratic in the number of lines.
    import time

    head = "### Response 1\nA\n### Response 2\nB\n"
    makes = [lambda k: head + "Text.\n" + "---\n" * k + "\nThese responses vary.",
             lambda k: head + "Text.\n\n" + "These responses vary.\n\n" * k,
             lambda k: head + "Text.\n" + "- Response 1: a\n" * k,
             lambda k: head + "Text.\n\nthese" + " " * (20 * k) + "x"]

    def best_of_three(text):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            split_completion(text, 2)
            times.append(time.perf_counter() - start)
        return min(times)

    for make in makes:
        small, large = best_of_three(make(5_000)), best_of_three(make(20_000))
        assert large < 0.2 or large < 1.0 and large / max(small, 1e-4) < 8, (small, large)


def test_the_other_first_tokens_are_compared_as_words_whichever_backend_kept_their_space():
    # vLLM keeps SentencePiece's leading space in its decoded tokens (" The", "The"); the local backend's decode
    # drops it, and merge_by_text adds the two. Compared token by token, one model's verdict was read from log-probs
    # on vLLM (P(YES) 0.86) and from the text on the local backend.
    probs = {"YES": 0.3, "NO": 0.05, "The": 0.25, "Both": 0.05}
    local = {k: math.log(v) for k, v in {**probs, "The": 0.4}.items()}
    vllm = {" YES": math.log(0.3), " NO": math.log(0.05), " The": math.log(0.25), "The": math.log(0.15),
            "Both": math.log(0.05)}
    assert p_yes_from_logprobs(local) is None and p_yes_from_logprobs(vllm) is None
    assert p_yes_from_logprobs({**vllm, "The": math.log(0.05)}) == pytest.approx(0.3 / 0.35)


@pytest.mark.parametrize("raw, letter", [("**Category:** B", "B"), ("The task category is: D", "D"),
                                         ("Answer: **E**", "E"), ("Category: B (or C)", None)])
def test_a_category_after_a_bold_label_or_is_colon_is_read(raw, letter):
    # "**Category:** B" and "category is: D" were unread: the prompt unclassified, the reference vote lost.
    from engine.method.parsing import parse_category

    assert parse_category(raw) == letter
