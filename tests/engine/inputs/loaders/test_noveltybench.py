import collections
import json

import pytest

from engine.errors import ConfigError, InputError
from engine.inputs.loaders.noveltybench import CATEGORY_MAP, load
from engine.inputs.prompts import LoadReport


def row(**fields):
    base = {"id": "curated-x", "category": "Creativity", "prompt": "Write a haiku.",
            "prompt_paraphrases": ["Compose a haiku."]}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


# The real files.
def test_curated_file_maps_every_category(shared_file):
    prompts = load(shared_file("noveltybench/curated.jsonl"))
    assert len(prompts) == 100
    first = prompts[0]
    assert (first.text, first.gold_category) == ("Tell me a story in five sentences about a girl and her dog.", "G")
    assert first.meta["id"] == "curated-0" and first.meta["nb_category"] == "Creativity"
    assert len(first.meta["prompt_paraphrases"]) == 10
    assert collections.Counter(p.meta["nb_category"] for p in prompts) == {
        "Factual Knowledge": 28, "Subjective Rankings & Opinions": 23, "Creativity": 20,
        "Random Generation & Selection": 15, "Character & Entity Naming": 7, "Product & Purchase Recommendations": 7}
    assert collections.Counter(p.gold_category for p in prompts) == {"B": 35, "H": 30, "G": 20, "C": 15}


def test_wildchat_file_has_no_categories(shared_file):
    prompts = load(shared_file("noveltybench/wildchat-1k.jsonl"))
    assert len(prompts) == 1000 and {p.gold_category for p in prompts} == {None}
    assert prompts[0].meta["id"].startswith("WildChat-")


def test_mapping_covers_only_valid_letters():
    assert set(CATEGORY_MAP.values()) <= set("BCGH")


def test_category_map_overrides(write):
    path = write("n.jsonl", [row(category="Character & Entity Naming"), row(category="Brand New", prompt="Other")])
    prompts = load(path, category_map={"Character & Entity Naming": "G", "Brand New": "C"})
    assert [p.gold_category for p in prompts] == ["G", "C"]
    with pytest.raises(ConfigError, match=r"prompts\.options\.category_map: letters must be A-H"):
        load(path, category_map={"Brand New": "Z"})


@pytest.mark.parametrize(
    "line,field,message",
    [
        (row(category="Poetry").encode(), "category", "unknown NoveltyBench category 'Poetry'"),
        (row(category=["Creativity"]).encode(), "category", "expected a string"),
        (row(prompt=...).encode(), "prompt", "missing required field"),
        (row(prompt="").encode(), "prompt", "empty prompt text"),
        (row(prompt_paraphrases="one").encode(), "prompt_paraphrases", "expected a list of strings"),
        (row(prompt="na\u00efve").encode().replace(b"\\u00ef", b"\xef"), None, "invalid UTF-8"),
        (b"{'id': 1}", None, "malformed JSON"),
    ],
)
def test_bad_rows_name_file_line_and_field(write, line, field, message):
    path = write("n.jsonl", [row(prompt="Fine."), line])
    with pytest.raises(InputError, match=message) as info:
        load(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)


def test_duplicate_prompt_names_both_lines(write):
    with pytest.raises(InputError, match=r"duplicate prompt .*line 1") as info:
        load(write("n.jsonl", [row(), row(id="other")]))
    assert (info.value.line, info.value.field) == (2, "prompt")


def test_skip_mode_counts_bad_rows_and_keeps_the_rest(write):
    path = write("n.jsonl", [row(prompt="A"), row(category="Nope"), row(prompt="B")])
    report = LoadReport()
    assert [p.text for p in load(path, on_error="skip", report=report)] == ["A", "B"]
    assert [(e.line, e.field) for e in report.skipped] == [(2, "category")]
