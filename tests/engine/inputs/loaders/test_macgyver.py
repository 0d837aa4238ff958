import collections

import pytest

from engine.errors import InputError
from engine.inputs.loaders.macgyver import load
from engine.inputs.prompts import LoadReport

HEADER = "ID,Problem,Solvable?,Unconventional?,Solution,Label"


# The real files.
def test_real_file_loads_every_problem_with_its_flags(shared_file):
    prompts = load(shared_file("macgyver/problem_solution_pair.csv"))
    assert len(prompts) == 1683 and {p.gold_category for p in prompts} == {"E"}
    first = prompts[0]
    assert first.text.startswith("You spilled red wine on the hotel carpet")
    assert first.meta["id"] == "541" and first.meta["label"] == "inefficient"
    assert first.meta["solution"].startswith("Step1: Open the bottle of mineral water with the bottle opener.\nStep2:")
    assert "<br>" not in first.meta["solution"]
    flags = collections.Counter((p.meta["solvable"], p.meta["unconventional"]) for p in prompts)
    assert flags == {(True, True): 956, (True, False): 350, (False, None): 377}


def test_the_papers_subset_is_an_option_and_a_load_without_it_says_what_it_keeps(shared_file):
    # `source: macgyver` audited all 1,683 problems, unsolvable and conventional ones too, unsaid; the paper drew from
    # the 956 solvable ones needing an unconventional solution.
    from engine.config import PromptsConfig
    from engine.inputs.sources import load_prompts

    path = shared_file("macgyver/problem_solution_pair.csv")
    report = LoadReport()
    assert len(load_prompts(PromptsConfig(source="macgyver", path=str(path)), report)) == 1683
    assert report.warnings == [f"{path}: 727 of 1683 problems are unsolvable or need no unconventional solution; "
                               "the paper drew from the others (prompts.options: {solvable_unconventional: true} "
                               "keeps only those)"]
    subset = load_prompts(PromptsConfig(source="macgyver", path=str(path),
                                        options={"solvable_unconventional": True}))
    assert len(subset) == 956 and all(p.meta["solvable"] and p.meta["unconventional"] for p in subset)


def test_additional_solutions_file_merges_rows_of_the_same_problem(shared_file):
    prompts = load(shared_file("macgyver/additional_human_solutions.csv"))
    assert len(prompts) == 273
    merged = [p for p in prompts if p.meta.get("more_solutions")]
    assert len(merged) == 246 and all(p.meta["unconventional"] is None for p in prompts)
    # Each row is one person's verdict: where they disagree the problem's solvability is unknown, not the first
    # row's say (which contradicted the main file for 59 of the 98 such problems).
    mixed = [p for p in prompts if len(set(p.meta.get("solvable_votes", []))) > 1]
    assert len(mixed) == 98 and all(p.meta["solvable"] is None for p in mixed)
    agreed = [p for p in merged if p not in mixed]
    assert all(p.meta["solvable"] is p.meta["solvable_votes"][0] for p in agreed)


# Cells with <br> and newlines, as in the release.
def test_br_tags_and_multiline_cells(write):
    path = write("m.csv", [HEADER, '7,"Fix it.<br>\nTools: a cup.",Yes,unconventional,"Step1: a <br>',
                           'Step2: b",efficient'])
    (p,) = load(path)
    assert p.text == "Fix it.\nTools: a cup."
    assert p.meta == {"id": "7", "solvable": True, "unconventional": True, "label": "efficient",
                      "solution": "Step1: a\nStep2: b"}


@pytest.mark.parametrize(
    "lines,line,field,message",
    [
        (['9,,Yes,conventional,s,efficient'], 3, "Problem", "empty prompt text"),
        (['9,"P",Maybe,conventional,s,efficient'], 3, "Solvable?", "expected Yes or No"),
        (['9,"P",Yes,odd,s,efficient'], 3, "Unconventional?", "expected unconventional, conventional or N/A"),
        ([',"P",Yes,conventional,s,efficient'], 3, "ID", "empty ID"),
        (['9,"P",Yes,conventional'], 3, None, "expected 6 cells"),
        (['9,"P"x,Yes,conventional,s,efficient'], 3, None, "malformed CSV row"),
        # the bad byte is on line 4, inside a record that starts on line 3
        ([b'9,"Two', b'lines caf\xe9",Yes,conventional,s,efficient'], 3, "Problem", r"invalid UTF-8 \(line 4"),
    ],
)
def test_bad_rows_name_file_start_line_and_column(write, lines, line, field, message):
    path = write("m.csv", [HEADER, "1,Fine problem,Yes,conventional,s,efficient", *lines])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), line, field)


def test_missing_required_column_fails_the_file(write):
    path = write("m.csv", ["ID,Problem,Solution", "1,P,S"])
    with pytest.raises(InputError, match="missing column") as info:
        load(path, on_error="skip")
    assert info.value.field == "Solvable?"


def test_same_text_under_another_id_is_a_duplicate_naming_both_lines(write):
    path = write("m.csv", [HEADER, "1,P,Yes,conventional,s,efficient", "1,P,Yes,conventional,t,efficient",
                           "2,P,Yes,conventional,u,efficient"])
    with pytest.raises(InputError, match=r"duplicate prompt \(same text as line 2, under ID '1'\)") as info:
        load(path)
    assert (info.value.line, info.value.field) == (4, "Problem")


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("m.csv", [HEADER, "1,A,Yes,conventional,s,efficient", "2,B,Perhaps,N/A,s,none",
                           "3,C,No,N/A,,", "4,A,Yes,conventional,s,efficient"])
    report = LoadReport()
    prompts = load(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["A", "C"] and prompts[1].meta["solution"] is None
    assert [(e.line, e.field) for e in report.skipped] == [(3, "Solvable?"), (5, "Problem")]
