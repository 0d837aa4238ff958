import os
import sys
import threading
import time

import pytest

from engine.method.math import (
    MAX_ANSWER_CHARS,
    VerifierProcess,
    check_math_answer,
    extract_final_answer,
    screen_answer,
    short_answer_exact,
)

# Generous against a loaded CI machine, far below "hangs": each check is also given timeout_s=3.
BOUND_S = 10


@pytest.fixture(scope="module")
def verifier():
    """One real math-verify worker for the module (it starts in about a second)."""
    worker = VerifierProcess()
    yield worker
    worker.close()


def check(response, gold, verifier):
    return check_math_answer(response, gold, timeout_s=3, verifier=verifier)


# ---------------------------------------------------------------------------------------------------------------
# Extraction: which part of a response is its final answer.


@pytest.mark.parametrize(
    "response,answer,how",
    [
        ("First \\boxed{1}, then \\boxed{\\frac{3}{4}}.", "\\frac{3}{4}", "boxed"),
        ("So $\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}", "boxed"),
        ("\\fbox{ 7 }", "7", "boxed"),
        ("Working...\nThe answer is $\\frac{1}{2}$.\nDone, 3 checks.", "\\frac{1}{2}", "answer line"),
        ("Final Answer: 42", "42", "answer line"),
        ("**Answer:** **17**", "17", "answer line"),
        ("We get 3, then 10,080 apples", "10080", "last number"),
        ("ratio 7/8", "7/8", "last number"),
        # The last number of a formula is not its value: 12 of 5/12, 3 of 2√3 were read, and graded wrong.
        ("so the probability is $\\frac{5}{12}$", "\\frac{5}{12}", "last formula"),
        ("Thus $x = 2\\sqrt{3}$.", "x = 2\\sqrt{3}", "last formula"),
        ("We try $x=2$ first, and 3 works.", "3", "last number"),
        # An answer line's answer ends where its prose begins (the whole line was compared, and graded wrong).
        ("The answer is 12 because there are 3 groups of 4.", "12", "answer line"),
        ("Answer: 12 (the number of ways)", "12", "answer line"),
        ("The answer is $\\frac{1}{2}$, which is half.", "\\frac{1}{2}", "answer line"),
        ("Final answer: 3.5", "3.5", "answer line"),
        # A line that checks a candidate is no answer line: "3 works" was compared as the answer
        ("Checking the answer: 3 works.\nSo $x = \\sqrt{2}$", "x = \\sqrt{2}", "last formula"),
        # An answer in parts ("enter all solutions") is all of them: one part alone was graded wrong.
        ("The solutions are $\\boxed{2}$ and $\\boxed{-3}$.", "2, -3", "boxed"),
        ("The solutions are $x = 2$ and $x = -3$.", "2, -3", "last formula"),
        ("The answer is $2$ and $3$.", "2, 3", "answer line"),
        ("Answer: $x = 2$ or $x = 3$", "2, 3", "answer line"),
        ("The answer is 1, 2, and 3.", "1, 2, 3", "answer line"),
        ("The answer is 5 and 7", "5, 7", "answer line"),  # read "5": right against a gold 5
        # A bracket or a minus of the answer's own is no aside: "x =", "2" and "3 (x" were graded.
        ("Answer: x = (3, 4)", "x = (3, 4)", "answer line"),
        ("Answer: 2 (\\sqrt{3} + 1)", "2 (\\sqrt{3} + 1)", "answer line"),
        ("The answer is 3 (x - 1)^2", "3 (x - 1)^2", "answer line"),
        ("The answer is 2 and the remainder is 3.", "2", "answer line"),
        # Formulas in each delimiter (their scan was rewritten to be linear).
        ("Thus \\(x = 3\\).", "x = 3", "last formula"),
        ("We find $$ y = 2 $$", "y = 2", "last formula"),
        ("So \\[ \\frac{1}{2} \\]", "\\frac{1}{2}", "last formula"),
        ("costs \\$5 and $x$", "x", "last formula"),
        # A minus is a sign only where it does not follow a digit, a letter or ")".
        ("so x = -5", "-5", "last number"),
        ("then -4.5", "-4.5", "last number"),
    ],
)
def test_extracts_the_final_answer(response, answer, how):
    assert extract_final_answer(response) == (answer, how)


@pytest.mark.parametrize(
    "response,why",
    [
        ("The result is \\boxed{\\frac{1}{", "no complete \\boxed"),
        ("I am not sure.", "no answer found"),
    ],
)
def test_no_answer_is_none_with_a_reason(response, why):
    answer, how = extract_final_answer(response)
    assert answer is None and why in how


@pytest.mark.parametrize("response", [
    "The last digit is 6. Then we computed 2^{10}.",  # 10 is an exponent: the answer was read as 10
    "So x = \\sqrt{2}",  # 2 sits inside \sqrt{…}
    "The answer is many apples and some pears",  # prose, no answer
    "The point is (1,500).",  # a coordinate: its last number was read as 1500
    "Answer: x = (since it balances)",  # cut at the aside, "x =" is no answer
])
def test_an_answer_that_cannot_be_read_is_not_checked(verifier, response):
    answer, how = extract_final_answer(response)
    assert answer is None and how.startswith("unreadable")
    check = check_math_answer(response, "6", timeout_s=3, verifier=verifier)
    assert check.correct is None and check.answered  # neither wrong nor "no answer": not checked


@pytest.mark.parametrize("response", [
    "So far \\boxed{7}. Continuing, the final answer is \\boxed{\\frac{15}{",
    "\\boxed{7} and later an unclosed \\boxed{\\frac{1}{",
])
def test_a_cut_off_last_box_is_no_answer_not_an_earlier_box(verifier, response):
    # The earlier box was an intermediate result: it was graded as the answer (correct=True against 7).
    assert extract_final_answer(response)[0] is None
    result = check(response, "7", verifier)
    assert result.correct is False and result.answered is False and result.extracted is None, result


@pytest.mark.parametrize("response", [
    "\\boxed{" + "x" * (MAX_ANSWER_CHARS + 5) + "}",
    "Intermediate: \\boxed{7}. So the final answer is \\boxed{\\text{" + "a" * MAX_ANSWER_CHARS + "}}",
    "\\boxed{\\frac{" + "+".join(["x"] * 140) + "}{2}\\text{ units}}",  # 302 characters, complete
    "\\boxed{" + "x" * 190_000 + "}",
])
def test_a_complete_last_box_too_long_to_read_is_unknown(verifier, response):
    # It was "no answer" (counted wrong), or the earlier box was graded; a long answer on an answer line was
    # already unknown. Not passed over for an earlier box, neither wrong nor "no answer".
    answer, how = extract_final_answer(response)
    assert answer is None and how.startswith("unreadable")
    result = check(response, "7", verifier)
    assert result.correct is None and result.answered is True, result


def test_a_hyphen_between_numbers_is_no_minus_sign(verifier):
    # "2020-2021" was read as -2021, and a right answer graded wrong.
    assert extract_final_answer("We get 2020-2021") == ("2021", "last number")
    assert extract_final_answer("The range is 3-5") == ("5", "last number")
    assert extract_final_answer("f(2)-3") == ("3", "last number")
    assert check("We get 2020-2021", "2021", verifier).correct is True


# 200k characters (the most of a response that is searched); each was quadratic or worse, from 37 s to hours.
SLOW_BEFORE = {
    "many answer heads": "The final answer is 5. " * 8_695,
    "many heads after a word": "answer: x " * 20_000,
    "answer head then spaces": "answer:" + " " * 199_000,
    "spaces inside an answer": "The answer is 1" + " " * 199_000 + "x",
    "unclosed \\(": "\\(" * 100_000,
    "unclosed \\[": "\\[ a" * 50_000,
}


@pytest.mark.parametrize("response", SLOW_BEFORE.values(), ids=SLOW_BEFORE.keys())
def test_extraction_is_linear_on_long_repetitions(response):
    # Extraction runs in the caller's process, outside the worker's timeout: its time must not blow up.
    start = time.monotonic()
    extract_final_answer(response)
    assert time.monotonic() - start < 5


def test_long_repetitions_read_as_before():
    assert extract_final_answer(SLOW_BEFORE["many answer heads"]) == ("5", "answer line")
    assert extract_final_answer(SLOW_BEFORE["unclosed \\("])[0] is None
    # An answer line's answer still ends where its prose begins, and a checking line is still passed over.
    assert extract_final_answer("The answer is 12" + " " * 1000 + "because of 3.") == ("12", "answer line")
    assert extract_final_answer("Answer: 4\nLet me check answer: 5") == ("4", "answer line")


# ---------------------------------------------------------------------------------------------------------------
# The screen: text rules that keep pathological answers away from the parser.


@pytest.mark.parametrize("answer", ["2^{2005}", "(x^2+1)^2", "2^{2^3}", "90^\\circ", "e^{-x^2}", "5!", "x^3+3x-6"])
def test_screen_passes_ordinary_answers(answer):
    assert screen_answer(answer) is None


@pytest.mark.parametrize(
    "answer,why",
    [
        ("9^{9^{9^{9}}}", "power tower"),
        ("10^{10^{10}}", "power tower"),
        ("10**10**10", "chained exponents"),
        ("2^3^4", "chained exponents"),
        ("10^{1000000}", "exponent may exceed"),
        ("(10^{9})^{99999}", "power of a power"),
        ("\\left(2^{100}\\right)^{99999}", "power of a power"),
        ("99999999!", "factorial"),
        ("{" * 40 + "1" + "}" * 40, "nested deeper"),
        ("1" * (MAX_ANSWER_CHARS + 1), "longer than"),
    ],
)
def test_screen_rejects_costly_answers(answer, why):
    assert why in screen_answer(answer)


# ---------------------------------------------------------------------------------------------------------------
# Correctness on real MATH-500 gold answers (copied from the dataset's answer field).


@pytest.mark.parametrize(
    "gold,response,correct",
    [
        ("\\frac{14}{3}", "Thus $x = \\boxed{\\frac{14}{3}}$.", True),
        ("2, -3", "The solutions are $\\boxed{2}$ and $\\boxed{-3}$.", True),
        ("-3, 2", "Answer: $x = 2$ or $x = -3$", True),
        ("(3,4)", "Answer: x = (3, 4)", True),
        ("5", "The answer is 5 and 7", False),
        ("\\frac{14}{3}", "\\boxed{14/3}", True),
        ("\\frac{14}{3}", "The answer is 4.666667", True),
        ("\\frac{14}{3}", "\\boxed{\\frac{13}{3}}", False),
        ("\\frac{3}{56}", "\\boxed{\\dfrac{3}{56}}", True),
        ("1.25", "\\boxed{\\frac{5}{4}}", True),
        ("0.15", "Answer: 0.16", False),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi)}", False),
        ("(3,4]", "\\boxed{(3, 4]}", True),
        ("(3,4]", "\\boxed{[3, 4]}", False),
        ("(-\\infty, 0]", "\\boxed{(-\\infty,0]}", True),
        ("3\\sqrt{13}", "\\boxed{\\sqrt{117}}", True),
        ("11\\sqrt2", "\\boxed{11\\sqrt{2}}", True),
        ("11\\sqrt2", "\\boxed{12\\sqrt{2}}", False),
        ("90^\\circ", "\\boxed{90}", True),
        ("145^\\circ", "\\boxed{145^{\\circ}}", True),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", True),
        ("\\text{east}", "The answer is \\text{west}.", False),
        ("\\text{(C)}", "\\boxed{C}", True),
        ("\\text{(C)}", "\\boxed{(E)}", False),
        ("288 \\pi", "\\boxed{288\\pi}", True),
        ("-\\frac{\\pi}{6}", "\\boxed{-\\pi/6}", True),
        # A unit after the number: math-verify read "12 people" as 12·p·e·o·p·l·e, a right answer wrong.
        ("12", "So the answer is 12 people.", True),
        ("18", "\\boxed{18 dollars}", True),
        ("19", "\\boxed{18 dollars}", False),
        ("5", "There are \\boxed{5 ways to choose} them.", True),
        # The Minerva format says "answer" twice on its line; its first head left prose, read as unreadable.
        ("5", "Final Answer: The final answer is $5$. I hope it is correct.", True),
        ("5", "Final Answer: The final answer is 6. I hope it is correct.", False),
        # A later "answer is" elsewhere on the line is prose about the answer, not the answer.
        ("42", "The final answer is 42. This answer is reasonable because the area is positive.", True),
        ("7", "Answer: 7 (our answer is an integer, as required)", True),
        # Products of variables are not units: "2yx" is 2xy to math-verify.
        ("2xy", "\\boxed{2yx}", True),
    ],
)
def test_checks_real_gold_answers(verifier, gold, response, correct):
    result = check(response, gold, verifier)
    assert result.correct is correct, result


@pytest.mark.parametrize(
    "gold,response",
    [
        ("30^\\circ", "\\boxed{30°}"),  # the degree sign is read as ^\\circ (it was graded wrong)
        ("45^\\circ", "\\boxed{45 °}"),
        ("5", "\\boxed{\\text{5 cm}}"),  # a number and its unit as one text (was graded wrong)
    ],
)
def test_degrees_and_units_as_text_are_read(verifier, gold, response):
    assert check(response, gold, verifier).correct is True


def test_units_as_text_are_not_a_free_pass(verifier):
    assert check("\\boxed{\\text{6 cm}}", "5", verifier).correct is False
    assert check("\\boxed{31°}", "30^\\circ", verifier).correct is False


def test_same_text_does_not_join_digits_separated_by_spaces(verifier):
    # "1 2" was "the same text" as 12 once every space was dropped.
    assert not check("\\boxed{1 2}", "12", verifier).reason.startswith("same text")
    assert check("\\boxed{3 + 2i}", "3+2i", verifier).reason.startswith("same text")  # other spaces still go
    assert check("\\boxed{1\\,000}", "1000", verifier).reason.startswith("same text")


def test_no_answer_is_incorrect_and_marked_as_such(verifier):
    # MATH-500 counts a response without a final answer wrong; the report gives the no-answer rate beside it.
    none = check("I don't know.", "5", verifier)
    assert none.correct is False and none.answered is False and none.extracted is None
    empty = check("\\boxed{}", "5", verifier)
    assert empty.reason.startswith("empty answer") and empty.correct is False and empty.answered is False


def test_unusable_inputs_are_none_not_false(verifier):
    assert check(None, "5", verifier).reason == "response is not text (NoneType)"
    assert check("\\boxed{5}", "", verifier).reason == "no gold answer"


# ---------------------------------------------------------------------------------------------------------------
# Adversarial model output: every case returns within the bound, is never marked correct, and runs nothing.

MARKER = "taskdiv_accuracy_marker"


def adversarial(marker):
    return [
        "\\boxed{9^{9^{9^{9}}}}",
        "\\boxed{10^{10^{10}}}",
        "The answer is 10**10**10",
        "\\boxed{(10^{9})^{99999}}",
        "\\boxed{\\frac{1}{",
        "\\frac{1}{",
        "\\boxed{\\frac{1}{3}}}}}",
        "\\boxed{\\left( 1, 2 \\right}",
        f"\\boxed{{__import__('os').system('touch {marker}')}}",
        f"Answer: __import__('os').system('touch {marker}')",
        f"The answer is exec(\"open('{marker}', 'w').write('x')\")",
        "Answer: lambda: 0",
        f"Answer: eval(\"__import__('os').system('touch {marker}')\")",
        "x" * 1_000_000 + " Answer: 12",
        "9" * 1_000_000,
        "answer" + " " * 500_000 + "\n" + "final " * 100_000,  # long runs the answer-line pattern must not backtrack on
        "1/" * 300_000,
        "\\boxed{" * 200_000,
        "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
        "\\boxed{1\x00}\x00",
        "\x00" * 1000,
    ]


def test_adversarial_answers_are_bounded_and_never_execute(verifier, tmp_path):
    marker = tmp_path / MARKER
    for response in adversarial(marker):
        start = time.monotonic()
        result = check(response, "\\frac{1}{2}", verifier)
        elapsed = time.monotonic() - start
        assert elapsed < BOUND_S, (response[:60], elapsed)
        assert result.correct is not True, (response[:60], result)
        assert not marker.exists(), response[:60]


def test_null_bytes_do_not_hide_a_correct_answer(verifier):
    assert check("\\boxed{\\frac{1}{2}\x00}\x00", "\\frac{1}{2}", verifier).correct is True


def test_answer_at_the_end_of_a_huge_response_is_found(verifier):
    assert check("x" * 1_000_000 + " so \\boxed{\\frac{1}{2}}", "0.5", verifier).correct is True


def test_worker_bounds_what_the_screen_lets_through(verifier):
    # Straight to the worker, skipping the screen: math-verify's own alarm ends it, and the worker lives on.
    start = time.monotonic()
    correct, reason = verifier.check("5", "9^{9^{9^{9}}}", timeout_s=3)
    assert correct is None and "timed out" in reason and time.monotonic() - start < BOUND_S
    assert verifier.check("5", "5", timeout_s=3) == (True, "equivalent (math-verify)")


def test_checks_work_outside_the_main_thread(verifier):
    # Ray actors run UDFs in worker threads, where math-verify's signal-based timeout cannot be installed.
    results = []
    thread = threading.Thread(target=lambda: results.append(check("\\boxed{0.5}", "\\frac{1}{2}", verifier)))
    thread.start()
    thread.join(BOUND_S)
    assert [r.correct for r in results] == [True]


# ---------------------------------------------------------------------------------------------------------------
# The worker's hard limits, with stand-in workers that misbehave on purpose.

READY = "import json, os, sys, time; open(sys.argv[1], 'a').write(str(os.getpid()) + '\\n'); " \
        "print(json.dumps({'ready': True}), flush=True); "


def stand_in(tmp_path, body):
    pids = tmp_path / "pids"
    return VerifierProcess([sys.executable, "-c", READY + body, str(pids)], startup_s=20), pids


def test_a_hung_worker_is_killed_at_the_timeout(tmp_path):
    worker, pids = stand_in(tmp_path, "sys.stdin.readline(); time.sleep(600)")
    start = time.monotonic()
    assert worker.check("1", "1", timeout_s=1) == (None, "timed out after 1 s (worker killed)")
    assert time.monotonic() - start < 5
    (pid,) = map(int, pids.read_text().split())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_dead_worker_is_reported_and_restarted(tmp_path):
    worker, pids = stand_in(tmp_path, "sys.stdin.readline(); sys.exit(1)")
    assert worker.check("1", "1", timeout_s=5) == (None, "the math-verify worker died (memory limit?)")
    assert worker.check("1", "1", timeout_s=5)[0] is None
    assert len(pids.read_text().split()) == 2
    worker.close()


def test_a_worker_that_never_starts_is_given_up_on(tmp_path):
    worker = VerifierProcess([sys.executable, "-c", "import time; time.sleep(600)"], startup_s=1)
    assert worker.check("1", "1", timeout_s=1) == (None, "the math-verify worker did not start")


def test_the_memory_cap_reaches_the_worker():
    # 32 MiB cannot hold SymPy: the capped worker fails while importing, which shows the cap is applied.
    worker = VerifierProcess(memory_bytes=32 << 20)
    assert worker.check("1", "1", timeout_s=5) == (None, "the math-verify worker did not start")


# ---------------------------------------------------------------------------------------------------------------
# The SimpleQA cross-check.


@pytest.mark.parametrize(
    "response,gold,found",
    [
        ("The award went to Michio Sugeno in 2010.", "Michio Sugeno", True),
        ("michio   SUGENO", "Michio Sugeno", True),
        ("It was Sugeno.", "Michio Sugeno", False),
        ("The Beatles", "Beatles", True),
        ("Radcliffe College!", "Radcliffe College", True),
        ("Málaga, in Spain", "Malaga", True),
        ("Paris", "Par", False),
        ("In 1987.", "1987", True),
        ("In 1987.", "1988", False),
        ("O'Brien", "OBrien", False),
        ("anything", "", False),
        ("the", "The", False),
    ],
)
def test_short_answer_exact(response, gold, found):
    assert short_answer_exact(response, gold) is found


def test_a_comparison_that_fails_is_unknown_not_incorrect():
    # math-verify raising inside a comparison (no pair of the ones tried does, but SymPy can) was read as "not
    # equivalent": an unknown counted as a wrong answer. The real worker, with verify made to raise.
    from engine.method.math import _WORKER_SOURCE, VerifierProcess

    prelude = "import math_verify\ndef _raise(*a, **k): raise ValueError('sympy')\nmath_verify.verify = _raise\n"
    worker = VerifierProcess(command=[sys.executable, "-c", prelude + _WORKER_SOURCE, str(2 << 30)])
    try:
        assert worker.check("1/2", "0.5", timeout_s=60) == (None, "could not compare with the gold answer: ValueError")
    finally:
        worker.close()


@pytest.mark.parametrize("response, gold", [
    # "answer is:" ending its line, the answer on the next: the colon was read as the answer, graded wrong.
    ("So the answer is:\n5", "5"),
    ("Therefore, the final answer is:\n\n\\[ x = 5 \\]", "5"),
    ("The answer is:\n\n$$\\frac{1}{2}$$", "\\frac12"),
    ("The answer is :\n5", "5"),
    ("The answer is **:** 5", "5"),
    # A word before the answer that says nothing of it: math-verify read "indeed 12" as i·n·d·e·e·d·12.
    ("Therefore, the answer is indeed 12.", "12"),
    ("So the answer is exactly 12.", "12"),
    ("The answer is then $12$.", "12"),
    ("The answer is simply 12.", "12"),
    ("The answer is option C", "\\text{(C)}"),
])
def test_a_right_answer_after_a_colon_or_a_filler_word_is_right(verifier, response, gold):
    assert check(response, gold, verifier).correct is True


@pytest.mark.parametrize("response, answer", [
    # An answer of symbols beyond ASCII is an answer, not punctuation to skip (read as the last number, or none).
    ("each of the 4 quarter circles\nThe answer is π.", "π"),
    ("The limit diverges.\nFinal answer: ∞", "∞"),
    ("So the probability is\nAnswer: ½", "½"),
])
def test_an_answer_line_of_symbols_beyond_ascii_is_read(response, answer):
    from engine.method.math import extract_final_answer

    assert extract_final_answer(response) == (answer, "answer line")


def test_an_answer_said_to_be_near_a_value_is_not_checked(verifier):
    result = check("The answer is approximately 12.", "12", verifier)
    assert result.correct is None and "unreadable" in result.reason
