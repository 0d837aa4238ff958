"""Task classification: a model assigns a prompt to one of the categories A–H (the paper's Step 1).

Greedy decoding; an answer that names no category is asked again once with the taxonomy's reminder, then
recorded with category None and its raw text (never mapped to a category).

Imports: engine.method (taxonomy, parsing, programs), actors.base.
"""

from __future__ import annotations

from itertools import product

from actors.base import SamplingParams
from engine.method import taxonomy
from engine.method.parsing import NONE_OF_THESE, parse_category
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


def majority_settled(votes: list[str | None], missing: list[bool]) -> bool:
    """Whether the classifiers whose answers are missing (`missing[k]`: classifier k's answer is not there yet, its
    `votes[k]` is not read) could not change `majority(votes)` whatever they answer: every answer of theirs (any
    letter, none of these, or unparsed) is tried, in their places, since a tie goes by the classifiers' order. Past 4
    missing answers, settled only if the leader is ahead of every other letter by more than their number."""
    holes = [k for k, gone in enumerate(missing) if gone]
    if not holes:
        return True
    present = [None if gone else v for v, gone in zip(votes, missing)]
    if len(holes) > 4:
        counts: dict[str, int] = {}
        for v in present:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        ranked = sorted(counts.values(), reverse=True) + [0, 0]
        return ranked[0] - ranked[1] > len(holes)
    outcomes = set()
    for answers in product([*taxonomy.LETTERS, NONE_OF_THESE, None], repeat=len(holes)):
        filled = list(present)
        for k, answer in zip(holes, answers):
            filled[k] = answer
        outcomes.add(majority(filled))
        if len(outcomes) > 1:
            return False
    return True


def classify_program(prompt: str, sampling: SamplingParams) -> Program:
    """Classify one prompt; returns an `Asked` whose value is the category letter (or None)."""
    conversation = [{"role": "user", "content": taxonomy.classify_prompt(prompt)}]
    asked: Asked = yield from ask_until_parsed(conversation, sampling, text_of(parse_category),
                                               taxonomy.CLASSIFY_REMINDER)
    return asked
