import string

import pytest

from engine import taxonomy
from engine.taxonomy import CATEGORIES, LETTERS


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
    assert taxonomy.UNCATEGORISED_JUDGE[2] in text


def test_classify_prompt_lists_every_category():
    text = taxonomy.classify_prompt("Write a poem")
    for c in CATEGORIES.values():
        assert f"{c.letter}. {c.name}" in text
    assert "Write a poem" in text


def test_prompt_text_with_braces_is_not_interpreted():
    text = taxonomy.judge_prompt("A", "What is {x}?", "{0}", "{response_b}")
    assert "What is {x}?" in text and '"""{0}"""' in text


def test_prompt_versions_cover_each_stage_and_differ():
    assert set(taxonomy.PROMPT_VERSIONS) == {"classify", "sample", "judge", "quality", "accuracy"}
    assert len(set(taxonomy.PROMPT_VERSIONS.values())) == 5
    assert all(set(v) <= set(string.hexdigits) for v in taxonomy.PROMPT_VERSIONS.values())
