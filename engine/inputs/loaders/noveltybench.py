"""NoveltyBench (Zhang et al. 2025b): prompts where many distinct good answers exist; the paper's B, C, G and H.

Format: JSONL from novelty-bench/novelty-bench ``data/curated.jsonl`` (100 rows) with ``id, category, prompt,
prompt_paraphrases``; ``data/wildchat-1k.jsonl`` (``id, prompt, …``, no category) loads too, with no gold category.

NoveltyBench's own categories map to ours as follows. The paper labelled its 100 prompts one by one and did not
publish the labels (its totals, B 16 and C 14 across all sources, show that some Factual Knowledge prompts went
elsewhere), so this is a category-level approximation:

| NoveltyBench category              | rows | ours | example / reason |
|------------------------------------|------|------|------------------|
| Factual Knowledge                  | 28   | B    | "Name one UFC fighter": many verifiable answers, one asked for |
| Random Generation & Selection      | 15   | C    | "Roll a make-believe 20-sided die": a random draw from a set |
| Creativity                         | 20   | G    | stories, poems, jokes: creative expression |
| Subjective Rankings & Opinions     | 23   | H    | "Which fruit makes the best pie filling?": an opinion |
| Product & Purchase Recommendations | 7    | H    | ambiguous, see (1) |
| Character & Entity Naming          | 7    | B    | ambiguous, see (2) |

(1) "Name one handbag that I should buy. Just one." asks for a single item, like B, but it asks for advice on
    what to buy: what makes two answers differ is the judgement behind them, not a verifiable fact. Chosen: H.
(2) "Name the dog character in my story" is creative, like G, but each of these asks for one name, two answers
    differ exactly when the names differ (B's judge question), and G's elements (tone, genre, point of view,
    structure) do not apply to a single name; some are plainly B ("Name one person of Indian origin"). Chosen: B.

`load(..., category_map=...)` overrides any of these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from engine.errors import ConfigError, InputError
from engine.inputs.loaders.common import PromptSink, optional_str, read_jsonl, string_list, text_value
from engine.inputs.prompts import LoadReport, Prompt, make_prompt
from engine.method.taxonomy import LETTERS

SOURCE = "noveltybench"
CATEGORY_MAP: dict[str, str] = {
    "Factual Knowledge": "B",
    "Random Generation & Selection": "C",
    "Creativity": "G",
    "Subjective Rankings & Opinions": "H",
    "Product & Purchase Recommendations": "H",
    "Character & Entity Naming": "B",
}


def load(
    path: str | Path,
    *,
    on_error: str = "fail",
    report: LoadReport | None = None,
    category_map: Mapping[str, str] | None = None,
) -> list[Prompt]:
    """Load NoveltyBench prompts with their categories mapped to ours.

    Args:
        path: the JSONL file.
        on_error: "fail" raises the first bad row; "skip" records it in `report` and goes on.
        report: collects skipped rows.
        category_map: NoveltyBench category → letter, overriding or extending `CATEGORY_MAP`.

    Returns:
        One prompt per row, in file order: text = prompt; gold_category from the map (None for rows without a
        category); meta = id, nb_category, prompt_paraphrases.

    Raises:
        InputError: naming file, line and field (prompt, category, …); an unknown category is an error, so a new
            NoveltyBench category is never silently unlabelled.
        ConfigError: category_map maps to something other than A–H (it comes from prompts.options, so the error
            names that key and reaches the user as one line).
    """
    path = Path(path)
    where = str(path)
    mapping = {**CATEGORY_MAP, **(category_map or {})}
    wrong = {k: v for k, v in mapping.items() if v not in LETTERS}
    if wrong:
        raise ConfigError(f"prompts.options.category_map: letters must be A-H, got {wrong}")

    def build(row: dict[str, Any], line: int) -> Prompt:
        nb_category = optional_str(row, "category", where, line)
        letter = None
        if nb_category is not None:
            if nb_category not in mapping:
                raise InputError(
                    where, line, "category",
                    f"unknown NoveltyBench category {nb_category!r}; known: {', '.join(mapping)}",
                )
            letter = mapping[nb_category]
        meta = {
            "id": optional_str(row, "id", where, line),
            "nb_category": nb_category,
            "prompt_paraphrases": string_list(row, "prompt_paraphrases", where, line) or [],
        }
        return make_prompt(
            text_value(row, "prompt", where, line),
            source=SOURCE,
            gold_category=letter,
            meta=meta,
            path=where,
            line=line,
            field_names={"text": "prompt", "gold_category": "category"},
        )

    sink = PromptSink(path, on_error=on_error, report=report, text_field="prompt")
    sink.add_rows(read_jsonl(path), build)
    return sink.prompts
