"""MacGyver (Tian et al., NAACL 2024): everyday problems to solve with the objects at hand, the paper's category E.

Format: the allenai/MacGyver release converted to CSV, ``problem_solution_pair.csv`` with columns
``ID, Problem, Solvable?, Unconventional?, Solution, Label``. ``Solvable?`` is Yes/No; ``Unconventional?`` is
unconventional/conventional, or N/A for unsolvable problems; ``Label`` grades the reference solution (efficient,
inefficient, infeasible, …). Only ``ID``, ``Problem`` and ``Solvable?`` are required, so
``additional_human_solutions.csv`` (ID, Problem, Solvable?, Solution) loads too. That file repeats a problem on
consecutive rows, one row per human solution, under the same ID: rows with the same ID and text are merged, their
solutions collected in ``meta["more_solutions"]``. Each of its rows is one person's verdict, and they disagree on
``Solvable?`` for a third of the problems: every row's verdict is kept in ``meta["solvable_votes"]`` (likewise
``unconventional_votes``), and ``solvable`` is the verdict only where they all agree, else None (unknown — not the
first row's). The same text under a different ID is a duplicate error.

Cells may hold HTML ``<br>`` tags and embedded newlines (as in the original workbook); ``<br>`` becomes a newline in
the problem and solution texts, since the tag is a spreadsheet artefact, not part of the problem.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, br_to_newline, read_csv, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt

SOURCE = "macgyver"
REQUIRED = ("ID", "Problem", "Solvable?")
_SOLVABLE = {"yes": True, "no": False}
_UNCONVENTIONAL = {"unconventional": True, "conventional": False, "n/a": None, "": None}


def paper_subset(p: Prompt) -> bool:
    """The problems the paper drew from: solvable and needing an unconventional solution (956 of 1,683)."""
    return p.meta.get("solvable") is True and p.meta.get("unconventional") is True


def load(path: str | Path, *, on_error: str = "fail", report: LoadReport | None = None,
         solvable_unconventional: bool = False) -> list[Prompt]:
    """Load MacGyver problems as category-E prompts.

    Args:
        path: the CSV file.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.
        solvable_unconventional: keep only the paper's subset (`paper_subset`; prompts.options of the macgyver
            source). Off, every problem loads, unsolvable and conventional ones too (the source says how many).

    Returns:
        One prompt per problem, in file order: text = Problem; meta = id, solvable (bool), unconventional (bool,
        or None for N/A or a file without the column), label, solution (the reference solution, or None), and
        more_solutions where rows were merged. No gold answer: solutions are only partially verifiable.

    Raises:
        InputError: naming file, line and column (ID, Problem, Solvable?, Unconventional?).
    """
    path = Path(path)
    where = str(path)

    def build(row: dict[str, Any], line: int) -> Prompt:
        problem_id = row["ID"].strip()
        if not problem_id:
            raise InputError(where, line, "ID", "empty ID")
        solvable_cell = row["Solvable?"].strip().lower()
        if solvable_cell not in _SOLVABLE:
            raise InputError(where, line, "Solvable?", f"expected Yes or No, got {row['Solvable?']!r}")
        unconventional_cell = (row.get("Unconventional?") or "").strip().lower()
        if unconventional_cell not in _UNCONVENTIONAL:
            raise InputError(
                where, line, "Unconventional?",
                f"expected unconventional, conventional or N/A, got {row['Unconventional?']!r}",
            )
        solution = row.get("Solution")
        text = text_value(row, "Problem", where, line)
        meta = {
            "id": problem_id,
            "solvable": _SOLVABLE[solvable_cell],
            "unconventional": _UNCONVENTIONAL[unconventional_cell],
            "label": (row.get("Label") or "").strip() or None,
            "solution": br_to_newline(solution).strip() if solution and solution.strip() else None,
        }
        return make_prompt(
            br_to_newline(text).strip() if isinstance(text, str) else text,
            source=SOURCE,
            gold_category="E",
            meta=meta,
            path=where,
            line=line,
            field_names={"text": "Problem"},
        )

    def merge(first: Prompt, first_line: int, repeat: Prompt, line: int) -> Prompt:
        if repeat.meta["id"] != first.meta["id"]:
            raise InputError(
                where, line, "Problem",
                f"duplicate prompt (same text as line {first_line}, under ID {first.meta['id']!r})",
            )
        extra = [repeat.meta["solution"]] if repeat.meta["solution"] else []
        meta = {**first.meta, "more_solutions": [*first.meta.get("more_solutions", []), *extra]}
        for key in ("solvable", "unconventional"):
            votes = [*first.meta.get(f"{key}_votes", [first.meta[key]]), repeat.meta[key]]
            meta[f"{key}_votes"] = votes
            meta[key] = votes[0] if len(set(votes)) == 1 else None  # people disagree: unknown, not the first's say
        return dataclasses.replace(first, meta=meta)

    sink = PromptSink(
        path, on_error=on_error, report=report, text_field="Problem", merge_duplicates=True, on_duplicate=merge
    )
    sink.add_rows(read_csv(path, required=REQUIRED), build)
    return [p for p in sink.prompts if paper_subset(p)] if solvable_unconventional else sink.prompts
