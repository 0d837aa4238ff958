"""Responses generated elsewhere: audit a model from its outputs alone.

A JSONL, CSV or Parquet file with one row per response, or one row per group:

    {"prompt": "Write a haiku about rain.", "response": "…", "model": "my-model", "strategy": "temperature"}
    {"prompt": "What is 17 × 23?", "responses": ["…", "…", "…"], "category": "D", "gold_answer": "391"}

Fields: `prompt` (required); `response` (one response) or `responses` (a list: the whole group); optional
`model` (default "external"), `strategy` (default "external"), `sample_idx` (order within the group; default
file order), `category` (A–H: the category to judge with; prompts without one are classified), `gold_answer`,
`source` (default: the file's stem), `prompt_id` (default: the stable hash of source and prompt), and a reasoning
model's thinking: `trace` (beside `response`) or `traces` (beside `responses`, one string or null per response).
A response given without a trace (or with null or "") has its inline reasoning split off when the run reads it — a
leading `<think>…</think>` block (or Magistral's `[THINK]…[/THINK]`), or thinking ended by a bare `</think>` at the
end of a line, as reasoning models whose template opens the block write it (actors.base.split_reasoning) — so a
trace is never judged as part of the answer.

Outputs of other tools are read too (engine.inputs.external_formats): lm-evaluation-harness `--log_samples` files,
Inspect AI eval logs (`.json`, `.eval`) and NoveltyBench generation files — detected from the file, or named by
`prompts.format`.

Rows of one (prompt, model, strategy) form a group; a group needs at least two responses to have pairs, and groups
of different sizes are kept as they are (the report counts unique responses out of each group's own size).
Errors name the file, the line and the field; on_error="skip" skips bad rows and counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.inputs.external_formats import READERS, detect_format
from engine.inputs.loaders.common import read_table, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt


@dataclass
class ExternalGroup:
    prompt_id: str
    model: str
    strategy: str
    responses: list[tuple[int, str]] = field(default_factory=list)  # (sample_idx, text)
    traces: dict[int, str] = field(default_factory=dict)  # sample_idx → the trace the file gave


def _str(row: dict, key: str, path: str, line: int, default: str | None = None) -> str | None:
    """A name column's value, stripped; absent, null or empty (a CSV's empty cell) is the default: an empty model
    name beside named rows would be a group of its own, and the named group one response short."""
    value = row.get(key, default)
    if value is None:
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(path, line, key, f"expected a string, got {type(value).__name__}")
    return value.strip() or default


def _taken_error(where: str, line: int | None, idx: int, how: str) -> InputError:
    """The error for a response whose index an earlier row of its group already holds, worded by where the index
    came from: a field the row never gave is not named as the culprit."""
    if how == "list":
        return InputError(where, line, "responses", f"a `responses` list numbers its responses from 0, and an "
                                                    "earlier row of the same prompt, model and strategy already "
                                                    f"holds response {idx}; give a group in one `responses` list, or "
                                                    "as `response` rows")
    if how == "order":
        return InputError(where, line, "response", f"no sample_idx, so this is response {idx} of its group in file "
                                                   "order, which an earlier row of the same prompt, model and "
                                                   "strategy already holds; give sample_idx on all of a group's rows "
                                                   "or on none")
    return InputError(where, line, "sample_idx", f"duplicate sample_idx {idx} in this group")


def load_responses(path: str | Path, *, on_error: str = "fail", report: LoadReport | None = None,
                   fmt: str = "auto") -> tuple[list[Prompt], list[ExternalGroup]]:
    """Prompts and their groups of responses from a responses file (format in the module docstring).

    Args:
        fmt: "auto" (from the file), "taskdiv" (ours), "lm-eval", "inspect" or "noveltybench".

    Raises:
        InputError: naming file, line and field, unless on_error is "skip".
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    prompts: dict[str, Prompt] = {}
    first_line: dict[str, int] = {}  # prompt_id → the line that gave it first (named where a later row disagrees)
    groups: dict[tuple[str, str, str], ExternalGroup] = {}
    if path.is_dir():
        raise InputError(str(path), None, None, "a folder: give one file of it (an lm-eval "
                                                "samples_<task>_<date>.jsonl, an Inspect log)")
    if not path.is_file():
        raise InputError(str(path), None, None, "no such file")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "taskdiv":
        rows = ((str(path), line, row) for line, row in read_table(path, required=("prompt",),
                                                                   formats=("jsonl", "csv", "parquet")))
    else:
        rows = READERS[fmt](path)
    for where, line, row in rows:
        try:
            if isinstance(row, InputError):
                raise row
            source = _str(row, "source", where, line, path.stem)
            # Stripped, as the benchmarks' loaders do: "Name a fruit." and "Name a fruit.\n" are one prompt.
            prompt = make_prompt(text_value(row, "prompt", where, line), source=source,
                                 gold_category=row.get("category") or None,
                                 gold_answer=row.get("gold_answer"), path=where, line=line,
                                 field_names={"text": "prompt", "gold_category": "category"})
            explicit_id = _str(row, "prompt_id", where, line)
            if explicit_id:
                prompt = Prompt(explicit_id, prompt.source, prompt.text, prompt.gold_category, prompt.gold_answer)
            seen = prompts.get(prompt.prompt_id)
            if seen is not None and (seen.text, seen.gold_category, seen.gold_answer) != (
                    prompt.text, prompt.gold_category, prompt.gold_answer):
                field = ("prompt" if seen.text != prompt.text else "category"
                         if seen.gold_category != prompt.gold_category else "gold_answer")
                earlier = first_line.get(prompt.prompt_id)
                raise InputError(where, line, field, "disagrees with an earlier row of the same prompt"
                                 + (f" (line {earlier})" if earlier is not None else "")
                                 + (f", given by prompt_id {explicit_id!r}"
                                    if explicit_id and field == "prompt" else ""))
            if "responses" in row and row["responses"] is not None:
                texts = row["responses"]
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise InputError(where, line, "responses", "expected a list of strings")
                if not texts:  # a group of none: nothing to judge, and its prompt was still classified (paid)
                    raise InputError(where, line, "responses", "an empty list: a group needs its responses")
                # Numbered by position: the list is the whole group (a second one for the group is refused below).
                items = [(k, text, "list") for k, text in enumerate(texts)]
                traces = row.get("traces")
                if traces is not None and (not isinstance(traces, list) or len(traces) != len(texts) or not all(
                        t is None or isinstance(t, str) for t in traces)):
                    raise InputError(where, line, "traces",
                                     f"expected a list of {len(texts)} strings or nulls, one per response")
                # null, "" (a CSV's empty cell) or only whitespace: none (as a message's reasoning_content is)
                given = {k: t for k, t in enumerate(traces or []) if t and t.strip()}
            else:
                text = row.get("response")
                if text is None:
                    raise InputError(where, line, "response", "missing (give `response` or `responses`)")
                if not isinstance(text, str):
                    raise InputError(where, line, "response", f"expected a string, got {type(text).__name__}")
                idx = row.get("sample_idx")
                if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int) or idx < 0):
                    if isinstance(idx, str) and idx.isascii() and idx.isdigit():  # "²" is a digit to isdigit
                        idx = int(idx)
                    else:
                        raise InputError(where, line, "sample_idx", f"expected a non-negative integer, got {idx!r}")
                items = [(idx, text, "given" if idx is not None else "order")]
                trace = row.get("trace")
                if trace is not None and not isinstance(trace, str):
                    raise InputError(where, line, "trace", f"expected a string, got {type(trace).__name__}")
                given = {0: trace} if trace and trace.strip() else {}
            model = _str(row, "model", where, line, "external")
            strategy = _str(row, "strategy", where, line, "external")
            key = (prompt.prompt_id, model, strategy)
            group = groups.get(key)
            taken = {i for i, _ in group.responses} if group is not None else set()
            # Every index of the row is checked before any is added: a row refused half-way would otherwise leave
            # its first responses in the group under on_error "skip", counted as skipped yet partly kept.
            indices = []
            for idx, _, how in items:
                idx = len(taken) if idx is None else idx  # no sample_idx: the next in file order
                if idx in taken:
                    raise _taken_error(where, line, idx, how)
                taken.add(idx)
                indices.append(idx)
            if group is None:
                group = groups[key] = ExternalGroup(prompt.prompt_id, model, strategy)
            for k, (idx, (_, text, _)) in enumerate(zip(indices, items)):
                group.responses.append((idx, text))
                if k in given:
                    group.traces[idx] = given[k]
            prompts.setdefault(prompt.prompt_id, prompt)
            first_line.setdefault(prompt.prompt_id, line)
        except InputError as exc:
            if on_error != "skip":
                raise
            report.add(exc)
    renumbered = []
    for group in groups.values():
        group.responses.sort()
        if [idx for idx, _ in group.responses] != list(range(len(group.responses))):
            renumbered.append(group)
    if renumbered:
        # The run's tables number a group's responses by position (its judgments' i and j, its rewards, grades and
        # checks too): a file numbered from 1, or with gaps (an Inspect log missing an epoch), would be joined back
        # to the wrong rows by an index that silently moved. Said once per file, with the first group's mapping.
        first = renumbered[0]
        mapping = ", ".join(f"{idx}→{k}" for k, (idx, _) in enumerate(first.responses[:6]))
        report.warnings.append(
            f"{path}: sample_idx of {len(renumbered)} group(s) do not run 0, 1, …, k-1; the run's tables number each "
            f"group's responses by their order in sample_idx from 0 (e.g. {first.prompt_id} / {first.model} / "
            f"{first.strategy}: {mapping}{', …' if len(first.responses) > 6 else ''})")
    return list(prompts.values()), list(groups.values())


def example_rows() -> list[dict[str, Any]]:
    """The rows of datasets/examples/responses.jsonl (kept in a test so the README's example stays valid)."""
    return [
        {"prompt": "Write a haiku about rain.", "model": "my-model", "strategy": "temperature",
         "response": "Soft rain on the roof / the gutter hums a low tune / night drinks the city"},
        {"prompt": "Write a haiku about rain.", "model": "my-model", "strategy": "temperature",
         "response": "Grey sky opens up / puddles gather the last light / a child jumps in both"},
        {"prompt": "What is 17 multiplied by 23?", "category": "D", "gold_answer": "391", "model": "my-model",
         "strategy": "temperature", "responses": ["17 × 23 = 17 × 20 + 17 × 3 = 340 + 51 = 391.",
                                                   "23 × 17: 23 × 10 = 230, 23 × 7 = 161, total 391."]},
    ]
