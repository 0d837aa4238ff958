"""Human-labelled response pairs: the input of `calibrate` and `agreement`.

Two row formats are accepted, in JSONL, CSV or Parquet:
- ours: prompt, response_a, response_b, label (1/0, true/false, "equivalent"/"different"), optional category (A–H)
  and id;
- the DARLING / NoveltyBench classifier files (../shared/datasets/darling_equivalence_pairs): id, prompt,
  generation_0, generation_1, similar (1 = the two are the same), labeler, model. They carry no category; where the
  id is a NoveltyBench curated id ("curated-12"), the category comes from NoveltyBench's own category mapped as in
  engine.inputs.loaders.noveltybench, given its curated.jsonl.
Bad rows are InputErrors naming file, line and field, or are skipped and counted with on_error="skip".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.inputs.loaders.common import read_table
from engine.inputs.prompts import LoadReport
from engine.method.taxonomy import LETTERS

_TRUE = {"1", "true", "yes", "equivalent", "same", "similar"}
_FALSE = {"0", "false", "no", "different", "distinct"}


@dataclass(frozen=True)
class LabelledPair:
    """One labelled pair: `equivalent` is the human label (True = functionally the same)."""

    id: str
    prompt: str
    response_a: str
    response_b: str
    equivalent: bool
    category: str | None = None


def _label(value: Any, path: str, line: int, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError(path, line, field, f"expected a 0/1 label (or true/false, equivalent/different), got {value!r}")


def _text(row: dict, key: str, path: str, line: int) -> str:
    value = row.get(key)
    if value is None:
        raise InputError(path, line, key, "missing required field")
    if not isinstance(value, str):
        raise InputError(path, line, key, f"expected a string, got {type(value).__name__}")
    return value


def noveltybench_categories(curated_path: str | Path) -> dict[str, str]:
    """NoveltyBench id → our category letter, from its curated.jsonl (rows without a category are left out)."""
    from engine.inputs.loaders import noveltybench

    return {p.meta["id"]: p.gold_category for p in noveltybench.load(curated_path)
            if p.gold_category and p.meta.get("id")}


def load_pairs(path: str | Path, *, categories: dict[str, str] | None = None, on_error: str = "fail",
               report: LoadReport | None = None) -> list[LabelledPair]:
    """Load labelled pairs (see the module docstring for the formats).

    Args:
        path: the file.
        categories: id → category letter for rows without a category column (e.g. from noveltybench_categories).
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.
    """
    path = Path(path)
    where = str(path)
    report = report if report is not None else LoadReport()
    pairs: list[LabelledPair] = []
    for line, row in read_table(path, required=(), formats=("jsonl", "csv", "parquet")):
        try:
            if isinstance(row, InputError):
                raise row
            if "generation_0" in row or "similar" in row:
                a, b = _text(row, "generation_0", where, line), _text(row, "generation_1", where, line)
                label = _label(row.get("similar"), where, line, "similar")
            else:
                a, b = _text(row, "response_a", where, line), _text(row, "response_b", where, line)
                label = _label(row.get("label"), where, line, "label")
            prompt = _text(row, "prompt", where, line)
            pair_id = str(row.get("id") or f"{path.stem}:{line}")
            category = row.get("category")
            if category is None or category == "":  # a 0 or false is a bad value, not no category
                category = (categories or {}).get(pair_id)
            if category is not None and (not isinstance(category, str) or category.upper() not in LETTERS):
                raise InputError(where, line, "category", f"expected one of A-H, got {category!r}")
            pairs.append(LabelledPair(pair_id, prompt, a, b, label, category.upper() if category else None))
        except InputError as exc:
            if on_error != "skip":
                raise
            report.add(exc)
    return pairs
