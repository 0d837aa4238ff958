import json

import pytest

from engine.errors import InputError
from engine.inputs.labelled_pairs import load_pairs, noveltybench_categories
from engine.inputs.prompts import LoadReport

from .loaders.conftest import SHARED


def write(tmp_path, rows, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_our_format(tmp_path):
    path = write(tmp_path, [{"prompt": "p", "response_a": "a", "response_b": "b", "label": "equivalent",
                             "category": "g", "id": "x"},
                            {"prompt": "p", "response_a": "a", "response_b": "c", "label": 0}])
    first, second = load_pairs(path)
    assert (first.id, first.equivalent, first.category) == ("x", True, "G")
    assert (second.equivalent, second.category, second.id) == (False, None, "pairs:2")


def test_darling_format_with_noveltybench_categories(tmp_path):
    path = write(tmp_path, [{"id": "curated-0", "prompt": "p", "generation_0": "a", "generation_1": "b",
                             "similar": "1", "labeler": "x", "model": "m"}])
    (pair,) = load_pairs(path, categories={"curated-0": "G"})
    assert pair.equivalent and pair.category == "G"


@pytest.mark.parametrize("row,field", [
    ({"prompt": "p", "response_a": "a", "response_b": "b", "label": "maybe"}, "label"),
    ({"prompt": "p", "response_a": "a", "label": 1}, "response_b"),
    ({"response_a": "a", "response_b": "b", "label": 1}, "prompt"),
    ({"prompt": "p", "response_a": "a", "response_b": 3, "label": 1}, "response_b"),
    ({"prompt": "p", "response_a": "a", "response_b": "b", "label": 1, "category": "Q"}, "category"),
    ({"prompt": "p", "response_a": "a", "response_b": "b", "label": 1, "category": 0}, "category"),  # was no category
    ({"prompt": "p", "generation_0": "a", "generation_1": "b", "similar": "2"}, "similar"),
])
def test_bad_rows_name_line_and_field(tmp_path, row, field):
    path = write(tmp_path, [{"prompt": "p", "response_a": "a", "response_b": "b", "label": 1}, row])
    with pytest.raises(InputError) as info:
        load_pairs(path)
    assert (info.value.line, info.value.field) == (2, field)


def test_skip_mode(tmp_path):
    path = write(tmp_path, ["{broken", {"prompt": "p", "response_a": "a", "response_b": "b", "label": 1}])
    report = LoadReport()
    assert len(load_pairs(path, on_error="skip", report=report)) == 1 and len(report.skipped) == 1


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_the_shared_darling_files_load():
    categories = noveltybench_categories(SHARED / "noveltybench" / "curated.jsonl")
    train = load_pairs(SHARED / "darling_equivalence_pairs" / "train.jsonl", categories=categories)
    val = load_pairs(SHARED / "darling_equivalence_pairs" / "val.jsonl", categories=categories)
    assert (len(train), sum(p.equivalent for p in train)) == (1000, 327)
    assert (len(val), sum(p.equivalent for p in val)) == (100, 50)
    assert any(p.category for p in train)
