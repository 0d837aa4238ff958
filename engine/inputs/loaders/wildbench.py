"""WildBench (Lin et al. 2025): hard real-user tasks filtered from WildChat; the paper drew 44 of them (D, F, G, H).

Format: the Hugging Face dataset rows (``allenai/WildBench``, config ``v2``, split ``test``, 1024 rows), as JSONL
(one row object per line, e.g. ``Dataset.to_json``) or as the Parquet file the hub serves. Fields used, from the
dataset card: ``session_id`` (required), ``conversation_input`` (required: a list of turns
``{content, role, language, redacted, timestamp, toxic}``), ``checklist`` (list of strings), ``primary_tag``,
``secondary_tags``, ``intent``, ``id``. ``references`` and ``length`` are not kept.

The prompt is the LAST user turn. Multi-turn rows keep the earlier turns in ``meta["history"]`` (a list of
``{role, content}``); the generator still sees only the last user turn, since our strategies start a fresh
conversation per prompt. Rows whose last user turn relies on that history therefore lose context ("make it
shorter"): the paper preset draws from the single-turn rows only (engine.inputs.loaders.paper), and the wildbench
source says how many rows it keeps have turns before (paper.outside_pool_warning); the history is kept so a later
stage can replay it. For the
same reason two conversations that differ only before their last user turn (both end in "continue") are one prompt
to the generator: they are merged into the first (its meta lists every session in ``merged_sessions``), not refused
as a duplicate, which under ``on_error: fail`` stopped the whole load. The same conversation twice is a duplicate
row, refused.

There is no gold category: the paper's WildBench prompts span D, F, G and H and WildBench's own tags (Coding &
Debugging, Creative Writing, Advice seeking, …) do not determine our category.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.inputs.loaders.common import PromptSink, optional_str, read_table, required_value, string_list
from engine.inputs.prompts import LoadReport, Prompt, make_prompt

SOURCE = "wildbench"
REQUIRED = ("session_id", "conversation_input")
FORMATS = ("jsonl", "parquet")


def _last_user_turn(turns: Any, path: str, line: int) -> tuple[int, dict[str, Any]]:
    """Index and turn of the last user turn; anything else in the conversation's shape is an error."""
    if not isinstance(turns, (list, tuple)):
        raise InputError(path, line, "conversation_input", f"expected a list of turns, got {type(turns).__name__}")
    if not turns:
        raise InputError(path, line, "conversation_input", "empty conversation")
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InputError(
                path, line, f"conversation_input[{k}]", f"expected an object, got {type(turn).__name__}"
            )
    user = [k for k, turn in enumerate(turns) if turn.get("role") == "user"]
    if not user:
        raise InputError(path, line, "conversation_input", "no user turn")
    return user[-1], turns[user[-1]]


def load(path: str | Path, *, on_error: str = "fail", report: LoadReport | None = None) -> list[Prompt]:
    """Load WildBench rows as prompts without a gold category.

    Args:
        path: a .jsonl or .parquet file of dataset rows.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.

    Returns:
        One prompt per row, in file order: text = the last user turn's content; meta = session_id, id,
        primary_tag, secondary_tags, intent, checklist, n_turns and, for multi-turn rows, history (the turns
        before the last user turn, as {role, content}).

    Raises:
        InputError: naming file, line (row for Parquet) and field (session_id, conversation_input[k].content, …).
    """
    path = Path(path)
    where = str(path)

    def build(row: dict[str, Any], line: int) -> Prompt:
        session_id = required_value(row, "session_id", where, line)
        if not isinstance(session_id, str) or not session_id.strip():
            raise InputError(where, line, "session_id", f"expected a non-empty string, got {session_id!r}")
        turns = required_value(row, "conversation_input", where, line)
        index, turn = _last_user_turn(turns, where, line)
        field = f"conversation_input[{index}].content"
        text = turn.get("content")
        if isinstance(text, str):
            if "\x00" in text:
                raise InputError(where, line, field, "contains a NUL character (corrupted or binary data?)")
            text = text.strip()
        history = []
        for k, earlier in enumerate(turns[:index]):
            content = earlier.get("content")
            if not isinstance(content, str):
                raise InputError(where, line, f"conversation_input[{k}].content", "expected a string")
            history.append({"role": earlier.get("role"), "content": content})
        meta: dict[str, Any] = {
            "session_id": session_id,
            "id": optional_str(row, "id", where, line),
            "primary_tag": optional_str(row, "primary_tag", where, line),
            "secondary_tags": string_list(row, "secondary_tags", where, line) or [],
            "intent": optional_str(row, "intent", where, line),
            "checklist": string_list(row, "checklist", where, line) or [],
            "n_turns": len(turns),
        }
        if history:
            meta["history"] = history
        return make_prompt(text, source=SOURCE, meta=meta, path=where, line=line, field_names={"text": field})

    def merge(first: Prompt, first_line: int, repeat: Prompt, line: int) -> Prompt:
        if (first.meta or {}).get("history") == (repeat.meta or {}).get("history"):
            raise InputError(where, line, "conversation_input",
                             f"duplicate prompt (same source and text as line {first_line})")
        meta = dict(first.meta or {})
        meta["merged_sessions"] = [*meta.get("merged_sessions", [meta.get("session_id")]),
                                   (repeat.meta or {}).get("session_id")]
        if (repeat.meta or {}).get("n_turns") == 1:
            # One of its sessions asks it alone: the prompt stands on its own (the paper preset's pool keeps it).
            meta["n_turns"] = 1
            meta.pop("history", None)
        return replace(first, meta=meta)

    sink = PromptSink(path, on_error=on_error, report=report, text_field="conversation_input",
                      merge_duplicates=True, on_duplicate=merge)
    sink.add_rows(read_table(path, required=REQUIRED, formats=FORMATS), build)
    return sink.prompts
