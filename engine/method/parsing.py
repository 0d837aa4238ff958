"""Parsing model outputs: one pattern per kind of answer, and None (recorded as "unparsed") when it does not match.

Model output is untrusted text: it is matched with regular expressions and never evaluated. Where Inspect maps an
unparsed grade to INCORRECT, we return None and the caller records the raw text beside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from actors.base import logsumexp, printable  # noqa: F401  printable: re-exported for engine.cli (imports engine.*)
from engine.method.taxonomy import CATEGORIES, LETTERS

# ---------------------------------------------------------------------------------------------------------------
# Classification letters.

# What a classification that names no category of the taxonomy is recorded as ("N" in the answer): the prompt is
# then sampled with the general wording and judged with the generic criterion (the paper: the taxonomy is not
# exhaustive; outside it the model resumes its default behaviour). Distinct from an unparsed answer (None).
NONE_OF_THESE = "none"
_NONE_ANSWER = re.compile(r"^[\W_]*(?:category\s*(?:[:\-]\s*)?)?\(?N(?:$|[.):,\-\]*]|[ \t]*\n|\s+(?![a-z]))"
                          r"|^[\W_]*none of (?:these|the above)", re.IGNORECASE)

# A letter that stands alone at the start: "G", "G.", "(G)", "G: Creative", "Category: G". A capital followed by a
# space and a lower-case word is an article or a word ("A story…"), not an answer; nor is a capital whose full stop
# a letter follows ("E.g.", "A.I."). Never two optional runs of blanks side by side: a run of spaces would be split
# between them every way (quadratic).
_LEAD_LETTER = re.compile(r"^[\W_]*(?:category\s*(?:[:\-][\s*]*)?)?\(?([A-H])"
                          r"(?:$|\.(?![A-Za-z])|[):,\-\]*]|[ \t]*\n|\s+(?![a-z]))", re.IGNORECASE)
# "**Category:** B", "The task category is: D": the separator may carry a colon after "is" and bold marks after it.
# One run of blanks and asterisks after the separator, then a bracket; or brackets and asterisks alone (the two never
# side by side: a run of asterisks split between them every way is quadratic).
_LABELLED_LETTER = re.compile(r"\b(?i:category|answer|letter)\s*(?:(?i:is(?:\s*:)?|:|=)[\s*]*\(?|[(*]*)([A-H])\b")

# A capital "A" followed by a word is the article ("A story…", "D. A problem…", "G — A Poem About The Sea"), not a
# letter, unless that word joins it to an alternative or states it ("A or D", "A is right"); a capital letter alone
# ("A B") or a word in capitals ("A OR D") is not a word here. Shared by the category and
# short-answer readers; no other of their letters is an English word, so every other one always counts.
_ARTICLE_AFTER = re.compile(r"\s+(?!(?i:or|and|nor|vs|versus|is)\b)(?:[a-z]|[A-Z][a-z])")


def _standalone_capitals(text: str, letters: str) -> set[str]:
    """The capitals among `letters` that stand alone as tokens anywhere in `text` ("A, D", "(E)", "or D"), less an
    article "A" and abbreviations ("E.g."), which are no answers."""
    found = set()
    for m in re.finditer(rf"(?<![A-Za-z0-9])(?<![A-Za-z]\.)([{letters}])(?![A-Za-z0-9])(?!\.[A-Za-z])", text):
        if m.group(1) == "A" and _ARTICLE_AFTER.match(text, m.end()):
            continue
        found.add(m.group(1))
    return found


# The letters a classifier may answer with: a category's, or "N" for none of these.
_ANSWER_LETTERS = "".join(LETTERS) + "N"
# A negation before a category's name ("not Creative writing", "isn't Creative writing") reverses it.
_NEGATION = re.compile(r"\bnot\b|\bno\b|n['’]t\b|\bnever\b|\bnor\b", re.IGNORECASE)


def _names_another_letter(text: str, answer: str) -> bool:
    """Whether `text` names a category letter other than `answer` (a letter, or "N" for none of these) as a
    standalone token: "A or D", "D (or possibly E)", "Letter: D\nActually E" hedge between categories, and an
    unknown is never a value, so they are unparsed rather than read as their first letter. The answer's own name
    and definition are removed first, so an answer that echoes its category's line ("D. Problem-solving
    objective: A problem…") still reads."""
    if answer in CATEGORIES:
        for own in (CATEGORIES[answer].name, CATEGORIES[answer].definition):
            text = re.sub(re.escape(own), " ", text, flags=re.IGNORECASE)
    return bool(_standalone_capitals(text, _ANSWER_LETTERS) - {answer})


def _read_category(text: str) -> str | None:
    """The one answer `text` starts with or labels, before the check that it names no other (see parse_category)."""
    if _NONE_ANSWER.match(text):
        return "N"
    m = _LEAD_LETTER.match(text)
    if m and (m.group(1).isupper() or text[: m.start(1)].lower().strip("( ").startswith("category")):
        return m.group(1).upper()
    for m in _LABELLED_LETTER.finditer(text):
        # "The category is A creative writing task": the article, not the letter (which then names none)
        if not (m.group(1) == "A" and _ARTICLE_AFTER.match(text, m.end())):
            return m.group(1)
    lowered = text.lower()
    named = [c for c in CATEGORIES.values() if c.name.lower() in lowered]
    if len(named) != 1:
        return None
    # "This is not Creative writing." names the category only to rule it out.
    before_name = text[: lowered.index(named[0].name.lower())]
    return None if _NEGATION.search(before_name) else named[0].letter


def parse_category(raw: str) -> str | None:
    """The category letter a classifier answered, NONE_OF_THESE for "N" / "None of these", or None.

    Accepts, in order: "N" or "None of these" at the start; a letter standing alone at the start ("G", "G.",
    "(G)", "Category: G", "G. Creative writing"); a labelled capital letter anywhere ("The category is G",
    "Answer: D"); the name of exactly one category ("Creative writing"), unless a negation precedes it. Unparsed
    (None) when the text also names another letter ("A or D", "A, D", "D (or possibly E)"), and anything else.
    """
    text = raw.strip()
    answer = _read_category(text)
    if answer is None or _names_another_letter(text, answer):
        return None
    return NONE_OF_THESE if answer == "N" else answer


# ---------------------------------------------------------------------------------------------------------------
# System-prompt sampling: n responses in one completion.

# What a header may call its parts besides "Response": the anchored wordings ask for solutions with different
# strategies (D), stories (G), perspectives (H)…, and models name the headers after them ("### Solution 1: Factoring",
# "**Approach 2**"). In header lines only: the inline form ("Option 1: …") is as often a list inside one answer.
# Each noun is its own kind of mark (a "### Solution 1…3" inside Response 1 never joins the Response run).
_NOUNS = (r"(Response|Solution|Approach|Strategy|Method|Option|Version|Variation|Alternative|Answer|Perspective"
          r"|Take|Idea|Story|Poem|Joke)")
# Unambiguous on purpose: whitespace is only allowed between tokens that cannot themselves be whitespace, so a
# long run of spaces is scanned in linear time (two adjacent `[ \t]*` made a line of 20k spaces take 6 s), and the
# asterisks after the number are one run or two around a colon (two optional runs side by side split a line of
# 16k asterisks every way: 8 s).
_OF_N = r"(?:[ \t]+of[ \t]+\d+)?"  # "### Response 2 of 5"
_HEADER_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*+[ \t]*)?" + _NOUNS
    + r"[ \t]*#?(\d+)" + _OF_N + r"(?:[ \t]*\*+)?(?:[ \t]*[:.)\-](?:[ \t]*\*+)?)?[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
# A markdown header (### …, or a whole line in bold) with text after its number: "### Response 1 — Optimistic",
# "**Response 2 – Casual**", "### Response 3 (Algebra)", "### Response 4: 7". Only a header marked so: a plain
# "Response 1: text" line, or "**Response 1:** text", is the inline form. What follows the number (`title`, `bold`)
# is kept as the response's first line, as the inline form's text is: for a short answer ("### Response 1: 7",
# "**Response 2: Heads**") it is the whole response, and dropping it lost the group. A title that only names the
# approach ("(Algebra)", "— Optimistic") is kept too: it is the model's text, and cutting it would need a guess at
# which titles are answers.
_TITLED_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*(?:\*+[ \t]*)?" + _NOUNS + r"[ \t]*#?(\d+)" + _OF_N
    + r"[ \t]*(?P<title>(?:[:.)\-\u2013\u2014|]|\()[^\n]*)"
    r"|\*\*[ \t]*" + _NOUNS + r"[ \t]*#?(\d+)" + _OF_N
    + r"[ \t]*(?P<bold>(?:[:.)\-\u2013\u2014|]|\()[^*\n]*)\*\*[ \t]*)$",
    re.IGNORECASE | re.MULTILINE)
_INLINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*+[ \t]*)?(Response)[ \t]*(\d+)[ \t]*[:.)\-](?:\*+)?[ \t]*",
                     re.IGNORECASE | re.MULTILINE)
# A numbered item, or a header that is a number ("### 1. The Storm", "**2.** …"): lenient only (see PARSE_MODES).
_NUMBERED = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?()(\d+)[.)](?:\*\*)?[ \t]+", re.MULTILINE)
# Lines that close a body without being part of it: a horizontal rule between responses, a heading or a whole line
# in bold with nothing under it (the title of what follows the last response: "## Comparison", "**Summary**").
_CLOSING_LINE = re.compile(r"#{1,6}[ \t][^\n]*|\*\*[^*\n]+\*\*:?")  # matched whole against a stripped line
_RULE_LINE = re.compile(r"(?:[-*_][ \t]*){2,}[-*_]")  # matched whole against a stripped line
_HEADING = re.compile(r"[ \t]*(#{1,6})[ \t]")

# What closes the last response without being part of it, read from its end. The system prompt asks for nothing
# after the last response, but models add a recap or a sign-off, and the judge and the metrics would read it as part
# of response n (a recap naming every response pushes its pairs toward "equivalent").
# - A title that announces a recap: a heading, a line opening in bold or italics, or a short label line, whose text
#   starts with one of these words. Not "Final Answer", "Verification", a story's own title: they are a response's.
#   "Summary", "Conclusion" also close one long response ("**Conclusion:** x = 2"): only a heading at the responses'
#   own level or above counts with them alone (a sibling of "### Response k", not a part of one); a bold or label
#   line needs a word that speaks of several things, or text under it that names the responses.
_RECAP_STRONG = (r"(?:recap|comparison|comparing|overview|key differences|differences|how (?:they|these) differ"
                 r"|which (?:one )?(?:to|should you) (?:choose|pick|use)|choosing (?:between|among)"
                 r"|summary of (?:the )?(?:approaches|responses|answers|options|perspectives|solutions|stories"
                 r"|methods|strategies|versions|ideas|differences))\b")
_RECAP_ANY = r"(?:" + _RECAP_STRONG + r"|summary|conclusion|final thoughts)\b"
_RECAP_TITLE = re.compile(r"(?:#{1,6}[ \t]+)?([*_]{0,3})" + _RECAP_ANY, re.IGNORECASE)  # .match, stripped line
_STRONG_RECAP_TITLE = re.compile(r"([*_]{0,3})" + _RECAP_STRONG, re.IGNORECASE)  # .match, stripped line
# - A paragraph that speaks of the responses as a set: "these responses", "all of these answers", "the five
#   options", "each response". Bounded repetitions over alternating words and blanks: linear.
_COUNT = r"(?:two|three|four|five|six|seven|eight|nine|ten|\d+)"
_NAMES_THE_SET = re.compile(
    r"\b(?:(?:these|those|both|the above|all(?:[ \t]+of)?[ \t]+(?:these|those|the|" + _COUNT + r")"
    r"|each[ \t]+of[ \t]+(?:these|those|the)|the[ \t]+" + _COUNT + r")[ \t]+(?:[a-z]+[ \t]+){0,2}"
    r"(?:responses|answers|options|versions|variations|alternatives|takes|replies)"
    r"|(?:each|every)[ \t]+(?:response|reply)|(?:responses|answers)[ \t]+above)\b", re.IGNORECASE)
# - A sign-off: a short paragraph that opens as one and speaks of what came before ("I hope these help!", "Let me
#   know if you'd like more"). "I hope to see you soon" (a letter's own close) speaks of nothing before: kept.
_SIGN_OFF = re.compile(r"[*_]{0,2}(?:I hope|Hope|Let me know|Feel free|Would you like|Do you want|If you(?:'d| would)"
                       r" like|Enjoy)\b")
_SIGN_OFF_REFERS = re.compile(r"\b(?:these|them|more|another|others?)\b", re.IGNORECASE)
_SIGN_OFF_CHARS = 300
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

# How a system-prompt completion may be split, by parse mode: "strict" accepts the asked-for "### Response k"
# headers and the inline "Response k:" form only; "lenient" also accepts a bare numbered list "1. … 2. …", which
# also matches one answer written as numbered steps — so it can turn one response into n.
PARSE_MODES = ("strict", "lenient")


@dataclass(frozen=True)
class Split:
    """A completion split into responses.

    Attributes:
        responses: the responses, in order (at most n; fewer is a short parse).
        how: how they were found: "headers", "inline", "numbered", or None when nothing matched.
        tail: the text after the last response that is no part of it (a recap, a sign-off, responses past the
            n-th), "" when none: the caller keeps the raw completion where it is not, so the cut stays auditable,
            and a completion cut off by the token limit ran out there, not in a response.
    """

    responses: list[str]
    how: str | None
    tail: str = ""


def split_responses(raw: str, n: int, mode: str = "strict") -> tuple[list[str], str | None]:
    """Split one completion holding several responses into the responses, in order (at most n).

    Args:
        raw: the completion.
        n: how many responses were asked for.
        mode: "strict" or "lenient" (PARSE_MODES).

    Returns:
        (responses, how they were found: "headers", "inline", "numbered", or None when nothing matched); see
        split_completion, which also returns the text cut after the last response.
    """
    split = split_completion(raw, n, mode)
    return split.responses, split.how


def split_completion(raw: str, n: int, mode: str = "strict") -> Split:
    """Split one completion holding several responses into the responses, and what follows the last of them.

    Text before the first mark is dropped, empty responses are dropped; fewer than n is a short parse, which the
    caller records. Only a run of marks numbered 1, 2, 3… splits, so a list inside a response stays whole. A
    header's text after its number ("### Response 1: 7") is its response's first line. The asked-for "Response k"
    marks are tried first (headers, then inline), then headers naming other parts ("### Solution k"), then (lenient)
    a numbered list; a pass that gives fewer than n responses gives way to a later one that gives more where that
    one's marks lie inside one of its responses before any of its text (see _Candidate.gives_way_to). Text after
    the last response is cut as no part of it and returned as the tail (see _closing_cut): after the rule that set
    every response apart, under a recap's heading or title, a paragraph that names the responses ("Response 2",
    "these answers") or signs off, a recap run of marks.
    """
    if mode not in PARSE_MODES:
        raise ValueError(f"parse mode must be one of {PARSE_MODES}, got {mode!r}")
    # Headers with and without a title are one kind of mark: a model may title some of its responses only.
    headers = (_HEADER_LINE, _TITLED_HEADER)
    passes: list[tuple[str, tuple[re.Pattern, ...], bool]] = [
        ("headers", headers, True), ("inline", (_INLINE,), True), ("headers", headers, False)]
    if mode == "lenient":
        passes.append(("numbered", (_NUMBERED,), False))
    chosen: _Candidate | None = None
    for found, regexes, asked in passes:
        by_start = {m.start(): m for regex in reversed(regexes) for m in regex.finditer(raw)}
        if found == "numbered" and by_start:
            # A list nested in an item ("1. Plan A:\n   1. wake up") is its text: only the outermost items count.
            indent = {k: len(m.group()) - len(m.group().lstrip(" \t")) for k, m in by_start.items()}
            outermost = min(indent.values())  # once: in the comprehension it made 8,000 items take 2.7 s
            by_start = {k: m for k, m in by_start.items() if indent[k] == outermost}
        by_noun: dict[str, list[re.Match]] = {}
        for k in sorted(by_start):
            noun = _mark(by_start[k])[0]
            if (noun == "response") == asked:
                by_noun.setdefault(noun, []).append(by_start[k])
        # Each noun's best run; the one with the most responses (up to n) wins, then the one with more text.
        best: _Candidate | None = None
        for noun, marks in by_noun.items():
            run, ends, followed = _best_run(raw, marks)
            if run:
                candidate = _Candidate(raw, noun, found, run, ends, followed, n)
                if best is None or candidate.key > best.key:
                    best = candidate
        if best is None:
            continue
        # An earlier pass that came up short (headers whose responses were all empty, or fewer than n) may give
        # way to a later one that finds more; never to a list or another noun's run inside one of its responses.
        if chosen is None or chosen.gives_way_to(best):
            chosen = best
        if chosen.count >= n:
            break
    if chosen is None:
        return Split([], None)
    return chosen.split()


class _Candidate:
    """One run of marks as a split: its responses (titles kept, closing text cut) and the tail."""

    def __init__(self, raw: str, noun: str, how: str, run: list[re.Match], ends: list[int], followed: bool,
                 n: int) -> None:
        self.raw, self.how, self.run, self.ends = raw, how, run, ends
        self.titles = [_title(m) for m in run]
        self.bodies, tail = _bodies(raw, run, ends, followed, self.titles, noun)
        kept = [k for k, body in enumerate(self.bodies) if body]
        if len(kept) > n:
            # Responses past the n-th are no response of the group: they join the tail.
            tail = raw[run[kept[n - 1] + 1].start():].strip()
            kept = kept[:n]
        self.kept, self.tail = kept, tail
        self.count = len(kept)
        self.key = (self.count, sum(len(self.bodies[k]) for k in kept))

    def gives_way_to(self, other: _Candidate) -> bool:
        """Whether a later pass's run `other` replaces this one: it finds more responses, and this one found none,
        or `other` lies inside one of this run's responses before any of its text (headers left empty, the
        responses written under inline marks below the last). Marks after a response's text are its own (a list,
        a "### Solution k" run) or a recap; marks before the run or across its headers are a plan or another
        structure, which never outweigh the asked-for headers."""
        if other.count <= self.count:
            return False
        if self.count == 0:
            return True
        first = other.run[0].start()
        for m, end, title in zip(self.run, self.ends, self.titles):
            if m.start() <= first < end:
                return other.ends[-1] <= end and not title and not self.raw[m.end():max(first, m.end())].strip()
        return False

    def split(self) -> Split:
        return Split([self.bodies[k] for k in self.kept], self.how, self.tail)


def _mark(m: re.Match) -> tuple[str, int]:
    """A mark's noun (lower case; "" for a bare number) and its number."""
    groups = [g for g in m.groups() if g is not None]
    return groups[0].lower(), int(groups[1])


def _title(m: re.Match) -> str:
    """A titled header's text after its number, less the separator and markdown around it ("" for other marks).
    An opening parenthesis is part of the title ("(Algebra)"); a minus after the separator is the text's own
    ("### Response 1: -5")."""
    found = m.groupdict()
    title = found.get("title") or found.get("bold") or ""
    if title[:1] != "(":
        title = title[1:]
    return title.strip(" \t*")


def _chars(raw: str, run: list[re.Match], ends: list[int]) -> int:
    return sum(len(_title(m)) + end - m.end() for m, end in zip(run, ends))


def _best_run(raw: str, marks: list[re.Match]) -> tuple[list[re.Match], list[int], bool]:
    """The longest run of marks numbered 1, 2, 3… (a list inside a response must not split it), where each of its
    bodies ends, and whether another run follows it. A mark 1 after a run has begun starts another: a plan listed
    before the responses ("Response 1: a formal tone …", then the responses under the same marks) or a recap after
    them ("### Response 1 — optimistic: focuses on joy") is another run. Of runs as long, the one with more text is
    the responses (a plan's or a recap's lines are short); the last body ends where the next run begins."""
    runs: list[list[re.Match]] = []
    for m in marks:
        number = _mark(m)[1]
        if number == 1:
            runs.append([m])
        elif runs and number == len(runs[-1]) + 1:
            runs[-1].append(m)
    best: tuple[tuple[int, int], list[re.Match], list[int], bool] | None = None
    for k, run in enumerate(runs):
        stop = runs[k + 1][0].start() if k + 1 < len(runs) else len(raw)
        ends = [run[i + 1].start() for i in range(len(run) - 1)] + [stop]
        key = (len(run), _chars(raw, run, ends))
        if best is None or key > best[0]:
            best = (key, run, ends, k + 1 < len(runs))
    return (best[1], best[2], best[3]) if best else ([], [], False)


def _squeezed(line: str) -> str:
    return line.replace(" ", "").replace("\t", "")


def _last_line(text: str) -> tuple[str, str]:
    """(the text before its last line, its last line), both stripped."""
    head, _, last = text.rpartition("\n")
    return head.strip(), last.strip()


def _bodies(raw: str, run: list[re.Match], ends: list[int], followed: bool, titles: list[str],
            noun: str) -> tuple[list[str], str]:
    """Each mark's response (its title, then the text under it; "" when both are empty) and the text cut after the
    last one (the tail, "" when none)."""
    bodies = [raw[m.end():end].strip() for m, end in zip(run, ends)]
    tail = [raw[ends[-1]:].strip()]  # in the completion's order; each cut below comes before the earlier ones
    # A rule between two responses belongs to neither: one ending a body (or opening the next) is dropped.
    separators: list[str] = []  # the rule ending each body but the last, as written (spaces aside)
    for k, body in enumerate(bodies):
        head, last = _last_line(body)
        if head and _RULE_LINE.fullmatch(last):
            bodies[k] = head
            if k < len(bodies) - 1:
                separators.append(_squeezed(last))
        first, _, rest = bodies[k].partition("\n")
        if rest.strip() and _RULE_LINE.fullmatch(first.strip()):
            bodies[k] = rest.strip()
    # Set apart by one kind of rule (every body but the last ended with it, and none holds it otherwise): the same
    # rule in the last body closes it too, and what follows is the model's sign-off. A different rule ("* * *"
    # inside a story set apart by "---") is the response's own.
    if len(bodies) > 1 and len(separators) == len(bodies) - 1 and len(set(separators)) == 1:
        rule = separators[0]
        inner = [line for body in bodies[:-1] for line in body.splitlines() if _squeezed(line) == rule]
        lines = bodies[-1].splitlines()
        cut = [i for i, line in enumerate(lines) if _squeezed(line) == rule]
        if not inner and len(cut) == 1:
            bodies[-1] = "\n".join(lines[:cut[0]]).strip()
            tail.insert(0, "\n".join(lines[cut[0] + 1:]).strip())
    if followed:
        # Another run follows the last response (a recap or a summary under the same headers): the heading or bold
        # line right before it titles that run ("## Comparison", "**Summary**"), not the response.
        head, last = _last_line(bodies[-1])
        if (head or titles[-1]) and _CLOSING_LINE.fullmatch(last):
            bodies[-1] = head
            tail.insert(0, last)
    levels = [len(h.group(1)) if (h := _HEADING.match(m.group())) else 0 for m in run]
    bodies[-1], cut_text = _closing_cut(bodies[-1], bool(titles[-1]), bodies[:-1], levels, noun)
    tail.insert(0, cut_text)
    bodies = [f"{title}\n{body}" if title and body else title or body for title, body in zip(titles, bodies)]
    return bodies, "\n\n".join(part for part in tail if part)


def _closing_cut(body: str, titled: bool, others: list[str], levels: list[int], noun: str) -> tuple[str, str]:
    """The last response's text less what closes it without being part of it, and the text cut ("" when none).

    Cut only where something of the response remains before (its title counts), so a response never becomes its
    own recap; and a closing form the other responses end with too is theirs (where every response ends in "I hope
    you enjoy these!", the last keeps it). In order, from the first that applies:
    - a heading at or above the responses' own level (any level under bold or inline marks), the first such in the
      body, that titles a recap ("### Summary of approaches", "## Comparison"), where no other response holds one:
      "## The Night Watch" over the last story or "### Final Answer" in the last solution is the response's own;
    - a recap run of the responses' marks ("- Response 1: optimistic", "**Response 2:** sad", …) at line starts;
    - trailing paragraphs, each one under a bold or label title that speaks of several things ("**Comparison**",
      "Key differences:"), or that names a response ("- Response 2: sad") or the responses as a set ("these
      answers", "each response"), or a sign-off ("I hope these help!"); then a rule or a recap title ("**Summary**")
      left right before what was cut.
    """
    start = _closing_start(body, titled, others, levels, noun)
    if start is None:
        return body, ""
    # A rule or a recap title right before the cut belongs to what was cut ("---\n\nThese five responses…"). Line
    # by line, moving the cut back by each line's length: re-stripping the text before at each step was quadratic.
    lines = body[:start].split("\n")
    moved, cut_at = 0, start
    while moved < len(lines) - 1 or titled and moved < len(lines):
        line = lines[-1 - moved]
        if line.strip() and not (_RULE_LINE.fullmatch(line.strip()) or _is_recap_title(line.strip())):
            break
        moved += 1
        cut_at -= len(line) + (moved < len(lines))  # the line and the line break before it
    if not (titled or body[:cut_at].strip()):
        cut_at = start  # only rules and titles before: they stay, the response is not emptied
    return body[:cut_at].strip(), body[cut_at:].strip()


def _closing_start(body: str, titled: bool, others: list[str], levels: list[int], noun: str) -> int | None:
    """Where the closing text of the last response begins (see _closing_cut), or None."""
    lead = len(body) - len(body.lstrip())  # once: stripping the text before each position was quadratic

    def remains(position: int) -> bool:
        return titled or position > lead

    top = max(levels) if all(levels) else 6
    heading = re.compile(rf"^[ \t]*#{{1,{top}}}[ \t][^\n]*", re.MULTILINE)
    first = heading.search(body)
    if (first and remains(first.start()) and _is_recap_title(first.group().strip())
            and not any(heading.search(other) for other in others)):
        return first.start()
    # The run's own noun at line starts, numbered 1 then 2: the responses listed again. Not for a bare numbered
    # list (no noun): the last item's own sub-list ("   1. sleep\n   2. eat") is numbered so.
    names_one = None
    if noun:
        recap = re.compile(rf"^[ \t]*(?:[-*+\u2022][ \t]*)?(?:\*\*[ \t]*)?{re.escape(noun)}[ \t]*#?(\d+)\b",
                           re.IGNORECASE | re.MULTILINE)
        marks = list(recap.finditer(body))
        for m, after in zip(marks, marks[1:]):
            if m.group(1) == "1" and after.group(1) == "2" and remains(m.start()):
                return m.start()
        # Capitalised as a name ("Response 2", "RESPONSE 2"): "in response 2 days later" is prose.
        names_one = re.compile(rf"\b(?:{re.escape(noun.capitalize())}|{re.escape(noun.upper())})[ \t]*#?\d+\b")
    # Trailing paragraphs, from the last.
    last_paragraphs = [_PARAGRAPH_BREAK.split(other.strip())[-1] for other in others if other.strip()]
    if any(_closes(p, names_one) for p in last_paragraphs):
        return None
    starts = [0] + [m.end() for m in _PARAGRAPH_BREAK.finditer(body)]
    start = None
    for position in reversed(starts):
        if not _closes(body[position:start], names_one) or not remains(position):
            break
        start = position
    return start


def _closes(paragraph: str, names_one: re.Pattern | None) -> bool:
    """Whether a paragraph after the last response closes the completion (see _closing_cut)."""
    text = paragraph.strip()
    if not text:
        return False
    if _is_recap_title(text.partition("\n")[0].strip(), _STRONG_RECAP_TITLE):
        return True
    if names_one is not None and names_one.search(text) or _NAMES_THE_SET.search(text):
        return True
    return (len(text) <= _SIGN_OFF_CHARS and _SIGN_OFF.match(text) is not None
            and _SIGN_OFF_REFERS.search(text) is not None)


def _is_recap_title(line: str, pattern: re.Pattern = _RECAP_TITLE) -> bool:
    """Whether a stripped line titles a recap: a heading (where `pattern` allows one) or a line opening in bold or
    italics whose text starts with a recap word ("## Comparison", "**Summary:** …"), or a short label line
    ("Summary:"). Plain prose that opens with one ("Comparison shopping is…") is the response's own."""
    m = pattern.match(line)
    if m is None:
        return False
    return line.startswith("#") or bool(m.group(1)) or len(line) <= 40 and line.endswith(":")


# ---------------------------------------------------------------------------------------------------------------
# YES/NO verdicts.

# A verdict is read from a leading YES or NO only; the other words that mean one of them are read only when they
# are the whole answer ("Equivalent.", "Different"), since followed by more text they are often the question
# echoed ("Equivalent? No.", "Same strategy? No") or negated ("Not different"). A lone "Y" / "N" is read too.
_YES_WORD, _NO_WORD = "yes", "no"
_LONE_YES = {"yes", "y", "true", "equivalent", "same"}
_LONE_NO = {"no", "n", "false", "different"}
# Markdown, quotes and brackets before the answer ("**Yes**", "> NO", "(yes)"); no letters or digits.
_LEAD_MARKS = r"[\s*_#>\"'`(\[]*"
_LONE_WORD = re.compile(_LEAD_MARKS + r"([A-Za-z]+)[\s*_\"'`)\].!]*$")
# A leading YES or NO, optionally after an "Answer:" label, and what follows it.
_LEAD_ANSWER = re.compile(_LEAD_MARKS + r"(?:(?:answer|verdict)[ \t]*[:\-][\s*_]*)?(yes|no)\b(.?)", re.IGNORECASE)
# What may follow a leading YES / NO: the end, or a mark that closes the answer word ("Yes.", "NO,", "**No**",
# "No\n…"). "No" followed by a space and a word is mostly a determiner ("No difference…", "No idea"), so a plain
# space is allowed only after "Yes" ("Yes they are the same") and after "NO" in capitals ("NO they differ").
_CLOSES_ANSWER = set(".,;:!)]*_\"'`-–—\n\r")
# "NO" in capitals before a noun or adjective is the determiner too ("NO DIFFERENCE", "NO notable differences"):
# no verdict, never "different".
_NO_AS_DETERMINER = re.compile(r"[ \t]+(?:differences?|notable|real|significant|meaningful|functional|"
                               r"substantive|substantial|material|major|clear|obvious|key|important|fundamental|"
                               r"essential|actual|discernible|relevant|appreciable)\b", re.IGNORECASE)
# Hedges and refusals: answers that give no verdict even when they start with "No" ("No idea", "N/A").
_HEDGE = re.compile(r"\bnot\s+sure\b|\bunsure\b|\bn\s*/\s*a\b|\bnot\s+applicable\b|\bno\s+idea\b|\buncertain\b"
                    r"|\bunclear\b|\bcannot\s+(?:tell|say|determine|be\s+sure)\b|\bcan['’]t\s+(?:tell|say|determine)\b"
                    r"|\bdon['’]t\s+know\b|\bhard\s+to\s+(?:say|tell)\b|\bit\s+depends\b|\bmaybe\b|\bperhaps\b"
                    r"|\bpossibly\b|\bpartially\b|\bpartly\b|\byes\s+and\s+no\b|\bno\s+and\s+yes\b", re.IGNORECASE)
# Another answer later in the text: YES / NO in capitals, or after a word that concludes ("so yes", "Answer: no").
# A lower-case "no" in prose is a determiner ("Yes, there is no difference"), not a second answer.
_LATER_ANSWER = re.compile(r"\b(YES|NO|Yes|No)\b(?![a-z])|\b(?:so|thus|therefore|answer(?:\s+is)?|verdict(?:\s+is)?)"
                           r"[\s:*_\"']*(yes|no)\b", re.IGNORECASE)


def parse_verdict(raw: str) -> bool | None:
    """True for YES (equivalent), False for NO, None for anything else.

    Read: a leading YES or NO, optionally after markdown or an "Answer:" label, ended by punctuation or a line
    break and optionally followed by an explanation ("No, they differ"); a whole answer that is one word meaning
    YES or NO ("Y", "Equivalent."). An unknown is never a value, so a hedge ("Not sure", "No idea", "N/A", "Not
    applicable") and a text naming both YES and NO ("YES or NO: NO", "No difference, so YES") are None.
    """
    if _HEDGE.search(raw):
        return None
    lone = _LONE_WORD.match(raw)
    if lone:
        word = lone.group(1).lower()
        return True if word in _LONE_YES else False if word in _LONE_NO else None
    lead = _LEAD_ANSWER.match(raw)
    if not lead:
        return None
    word, after = lead.group(1), lead.group(2)
    space_may_follow = word.lower() == _YES_WORD or word == "NO"
    if after and after not in _CLOSES_ANSWER and not (after in " \t" and space_may_follow):
        return None
    if word == "NO" and _NO_AS_DETERMINER.match(raw, lead.end() - len(after)):
        return None
    said = {word.lower()} | {(a or b).lower() for a, b in _LATER_ANSWER.findall(raw[lead.end():])
                              if b or a[:1].isupper()}
    if said != {_YES_WORD} and said != {_NO_WORD}:
        return None
    return word.lower() == _YES_WORD


def _answer_is_greedy(top_logprobs: Mapping[str, float], is_answer) -> bool:
    """Whether the answer tokens together are at least as probable as the most probable other first token.

    A top-20 list nearly always holds some answer token, even when the model's first token is something else
    ("The", "**") and the answers have next to no mass (P ~ 1e-4); renormalised over the answers alone, that
    crumb would decide the verdict or grade with full confidence. Only when the model's greedy first token would
    be an answer is the first position the answer; otherwise the caller reads the text, as without log-probs.
    """
    answer = [lp for token, lp in top_logprobs.items() if is_answer(token)]
    # The other first tokens as words ("The", " The": one word, two tokens where a backend keeps the space, as vLLM's
    # decoded tokens do for SentencePiece tokenizers and the local backend's decode does not): compared token by
    # token, one model's verdict was read from log-probs on one backend and from text on the other.
    words: dict[str, list[float]] = {}
    for token, lp in top_logprobs.items():
        if not is_answer(token):
            words.setdefault(token.strip(), []).append(lp)
    other = [logsumexp(lps) for lps in words.values()]
    return bool(answer) and (not other or logsumexp(answer) >= max(other))


def _is_verdict_token(token: str) -> bool:
    return token.strip().lower() in ("yes", "y", "no", "n")


def p_yes_from_logprobs(top_logprobs: Mapping[str, float] | None) -> float | None:
    """P(YES) normalised over the YES and NO variants among the first token's top log-probs.

    Every token whose stripped, lower-cased text is a YES word ("Yes", " YES", "yes"…) counts for YES, likewise
    for NO. Returns None (the verdict then falls back to the parsed text) when neither appears, or when they
    together are less probable than the most probable other token (see _answer_is_greedy).
    """
    if not top_logprobs or not _answer_is_greedy(top_logprobs, _is_verdict_token):
        return None
    yes, no = [], []
    for token, lp in top_logprobs.items():
        word = token.strip().lower()
        if word in ("yes", "y"):
            yes.append(lp)
        elif word in ("no", "n"):
            no.append(lp)
    ly, ln = logsumexp(yes), logsumexp(no)
    top = max(ly, ln)
    py, pn = math.exp(ly - top), math.exp(ln - top)
    return py / (py + pn)


# ---------------------------------------------------------------------------------------------------------------
# Checklists and grades.

_ITEM = re.compile(r"^([ \t]*)(?:\*\*)?(?:(\d{1,9})[.)]|[-*•])[ \t]+(.*)$")


def parse_checklist(raw: str, *, lo: int = 3, hi: int = 5) -> list[str] | None:
    """The criteria of a numbered or bulleted list: the first list's top-level items (the least indented; sub-bullets
    under a criterion explain it and are no criteria of their own), the first `hi` of them, or None if fewer than
    `lo`. An item in bold ("**1. Accuracy:** …") is an item, its bold marks dropped.

    One list: a numbered one ends where its numbering restarts or skips (a "Priority order: 1. …" after the
    criteria; "1." on every line is one list, as Markdown numbers it), and bullets between its items explain them;
    a bulleted one ends at a numbered item or a line that heads another list ("Scoring guide:"). Every item of the
    answer had counted: a scoring guide's "5: all met" and a second list's repeats were graded as criteria."""
    rows = []
    for line in (raw or "").splitlines():
        m = _ITEM.match(line)
        if m is not None:
            text = m.group(3).replace("**", "").strip()
            if text:
                rows.append((len(m.group(1).expandtabs(4)), None if m.group(2) is None else int(m.group(2)), text))
        elif line.strip() and line.rstrip(" \t*").endswith(":"):  # "Scoring guide:", "**Notes:**": a list follows
            rows.append((len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip()), None, None))
    top = min((indent for indent, _, text in rows if text is not None), default=0)
    items: list[str] = []
    numbered: bool | None = None
    expected = first = 0
    lazy = False  # every item numbered as the first ("1." on each line: Markdown numbers them 1, 2, 3)
    for indent, number, text in rows:
        if indent > top:
            continue
        if text is None:  # a heading line
            if items and numbered is False:
                break
            continue
        if numbered is None:
            numbered, expected = number is not None, number or 0
            first = expected
        if numbered:
            if number is None:
                continue  # a bullet between criteria explains one
            if len(items) == 1 and number == first:
                lazy = True
            if (number != first) if lazy else (number != expected):
                break  # the numbering restarts or skips: another list
            expected += 1
        elif number is not None:
            break  # a numbered list after the bullets: another list
        items.append(text)
    if len(items) < lo:
        return None
    return items[:hi]


# A grade is a digit 1–5 written as "N", "N/5" or "N out of 5" — not part of a longer number ("10", "3.5", "-3"),
# another scale ("5/10", "3 out of 10"), a range ("2-3", "3 to 4") or an alternative ("3 or 4", "3 and 4").
_GRADE_AT = re.compile(r"([1-5])(?:[ \t]*/[ \t]*5|[ \t]+(?:out[ \t]+)?of[ \t]+5)?"
                       r"(?![\dA-Za-z/]|\.\d|[ \t]*(?:/|out\b|[-–—][ \t]*\d|(?:or|to|and|of)[ \t]+\d))", re.IGNORECASE)
# "Grade: 4", "**Score:** 4", "Final grade is 4", "a grade of 4": the number after the label is the grade. One
# run of blanks and asterisks on each side of the separator, so a long run of spaces is scanned in linear time.
_GRADE_LABEL = re.compile(r"\b(?:grade|score)\b[\s*]*(?:(?::|=|\bis\b|\bof\b)[\s*]*)?(?=[-–−]?\d)", re.IGNORECASE)
# A grade that opens the answer, after markdown or brackets only ("4", " 3.", "**4**", "(4)"; a minus is no mark).
_LEAD_GRADE = re.compile(r"[\s*_#>\"'`(\[]*")
# After a leading "1": "1. Accuracy", "1) The response", "1. ✓ 2. ✓" open a list (of the checklist's criteria, cut
# at the grader's few tokens), not a grade of 1.
_LIST_AFTER_ONE = re.compile(r"[.)][ \t]*\S")


def parse_grade(raw: str) -> int | None:
    """The grade 1–5 of a grader's answer, or None.

    With a "Grade:" / "Score:" label, the number after it (every such label must give the same grade); otherwise
    a grade that opens the answer. The grade is "N", "N/5" or "N out of 5"; another scale, a range, an
    alternative or a negative number is unparsed (an unknown is never a value), as is a number inside prose
    ("meets criteria 1, 2 and 3").
    """
    labels = list(_GRADE_LABEL.finditer(raw))
    if labels:
        grades = {m.group(1) if (m := _GRADE_AT.match(raw, label.end())) else None for label in labels}
        return int(grades.pop()) if len(grades) == 1 and None not in grades else None
    m = _GRADE_AT.match(raw, _LEAD_GRADE.match(raw).end())
    if m and m.group(0) == "1" and _LIST_AFTER_ONE.match(raw, m.end()):
        return None
    return int(m.group(1)) if m else None


def _is_grade_token(token: str) -> bool:
    return token.strip() in {"1", "2", "3", "4", "5"}


def grade_logprobs(top_logprobs: Mapping[str, float] | None) -> dict[int, float]:
    """Each grade 1–5's log-probability among the first token's top tokens: the variants of a digit ("4", " 4")
    are one grade, so their probabilities add (log-sum-exp). Empty when no digit appears, or when the digits
    together are less probable than the most probable other token (see _answer_is_greedy): the grade is then
    read from the text."""
    if not top_logprobs or not _answer_is_greedy(top_logprobs, _is_grade_token):
        return {}
    mass: dict[int, list[float]] = {}
    for token, lp in top_logprobs.items():
        if _is_grade_token(token):
            mass.setdefault(int(token.strip()), []).append(lp)
    return {g: logsumexp(lps) for g, lps in mass.items()}


def expected_grade(top_logprobs: Mapping[str, float] | None) -> float | None:
    """Expected grade under the first token's distribution over "1".."5", renormalised; None where grade_logprobs
    finds no grade (no digit, or digits that are not the model's likely first token)."""
    mass = grade_logprobs(top_logprobs)
    if not mass:
        return None
    grades = sorted(mass)
    top = max(mass.values())
    weights = [math.exp(mass[g] - top) for g in grades]
    return sum(g * w for g, w in zip(grades, weights)) / sum(weights)


# SimpleQA-style letters. The letter is looked for at the start of the answer, as a capital standing alone and
# not followed by a lower-case word ("A response that…" opens with the article, not a grade).
_SHORT = re.compile(r"(?<![A-Za-z0-9/])([ABC])(?![A-Za-z0-9/])(?!\s+[a-z])")
# "N/A", "n/a": the grader could not grade (its "A" is no letter grade). Unparsed, as an unknown is never a value.
_NOT_APPLICABLE = re.compile(r"\bn\s*/\s*a\b", re.IGNORECASE)
_SHORT_GRADES = {"A": "correct", "B": "incorrect", "C": "not_attempted"}


def parse_short_answer_grade(raw: str) -> str | None:
    """SimpleQA-style grade: "correct", "incorrect" or "not_attempted" from A/B/C (or the words), else None.

    The letter must stand alone in the first 20 characters; a text that also names another of A/B/C ("A or B")
    is unparsed, as an unknown is never a value. Without a letter, an answer that is one of the words, or starts
    with it followed by punctuation ("Incorrect: …"), and names no letter later: "Correct answer: Paris; …, so B"
    names the gold answer, not a grade (the grader's 4 tokens cut it at "Correct answer: Paris").
    """
    text = raw.strip()
    if _NOT_APPLICABLE.search(text[:20]):
        return None
    # Searched in the whole text and kept only if it starts early, so that the look-ahead sees past the 20th
    # character ("…A response…" cut at "A" would look like a letter).
    m = _SHORT.search(text)
    if m and m.start() < 20:
        return None if _standalone_capitals(text, "ABC") - {m.group(1)} else _SHORT_GRADES[m.group(1)]
    if _standalone_capitals(text, "ABC"):
        return None
    lowered = text.lower().lstrip("*_\"'` ")  # "**Incorrect**"
    for word, grade in (("not attempted", "not_attempted"), ("incorrect", "incorrect"), ("correct", "correct")):
        if lowered.startswith(word) and _WORD_GRADE_END.match(lowered, len(word)):
            return grade
    return None


# What may follow a grade word: nothing, or punctuation ("Correct.", "Incorrect: the response says Lyon").
_WORD_GRADE_END = re.compile(r"[\s*_\"'`]*(?:$|[.!,:;)\-–—])")


__all__ = [
    "LETTERS",
    "parse_category",
    "split_responses",
    "split_completion",
    "Split",
    "parse_verdict",
    "p_yes_from_logprobs",
    "parse_checklist",
    "parse_grade",
    "expected_grade",
    "parse_short_answer_grade",
]
