"""Task classification: a model assigns a prompt to one of the categories A–H (the paper's Step 1).

Greedy decoding; an answer that names no category is asked again once with the taxonomy's reminder, then
recorded with category None and its raw text (never mapped to a category).

Imports: engine.method (taxonomy, parsing, programs), actors.base.
"""

from __future__ import annotations

from actors.base import SamplingParams
from engine.method import taxonomy
from engine.method.parsing import parse_category
from engine.method.programs import Asked, Program, ask_until_parsed, text_of


def majority(votes: list[str | None]) -> str | None:
    """The reference category from several classifiers' votes (in the classifiers' order): the letter most of
    them gave; a tie goes to the letter of the first classifier among the tied; unparsed votes do not count, and
    no parsed vote gives None (uncategorised)."""
    counts: dict[str, int] = {}
    for v in votes:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in votes if v is not None and counts[v] == top)


# A reference row's `raw` starts so when classifiers' answers are missing (their shards failed) and could still
# change the majority: the prompt's category is unknown until a rerun classifies it, and its groups wait for it.
PENDING_PREFIX = "pending: "
PENDING = "pending"  # such a prompt's groups' category_source: not judged, graded or checked in this run


def majority_settled(votes: list[str | None], missing: int) -> bool:
    """Whether `missing` more ballots (classifiers whose answer is absent) could not change `majority(votes)`: the
    leading letter is ahead of every other letter by more than `missing` (so they cannot even tie it: a tie goes by
    the classifiers' order). No parsed vote and a ballot missing is unsettled."""
    if not missing:
        return True
    counts: dict[str, int] = {}
    for v in votes:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts.values(), reverse=True) + [0, 0]
    return ranked[0] - ranked[1] > missing


def classify_program(prompt: str, sampling: SamplingParams) -> Program:
    """Classify one prompt; returns an `Asked` whose value is the category letter (or None)."""
    conversation = [{"role": "user", "content": taxonomy.classify_prompt(prompt)}]
    asked: Asked = yield from ask_until_parsed(conversation, sampling, text_of(parse_category),
                                               taxonomy.CLASSIFY_REMINDER)
    return asked
