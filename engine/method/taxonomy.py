"""The task taxonomy and every prompt text the method needs, in one place.

The eight categories follow Jain et al., "LLM Output Homogenization is Task Dependent" (arXiv 2509.21267): what
counts as two *functionally different* responses depends on the task category of the prompt. All wording below is
ours; edit it here and nowhere else: every text a stage sends to a model (prompts, system prompts, follow-ups,
reminders, the marks it inserts) is an UPPER_CASE string constant of this module or a text field of a `Category`.
`SENT_BY` says which stage sends which text, and `prompt_versions()` fingerprints, per stage, every text it sends
(hashed into that stage's shard keys), so an edit recomputes exactly the stages that send the edited text. A text
constant that no stage claims, or a claim of a text that does not exist, is an error at import.

Imports: nothing of ours (the taxonomy is the method's vocabulary; everything else imports it).

Templates use ``str.format`` fields: ``{n}`` (number of responses), ``{prompt}``, ``{response_a}``,
``{response_b}``, ``{criteria}``, ``{response}``, ``{gold_answer}``, ``{categories}``, ``{category_name}``,
``{difference}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")


@dataclass(frozen=True)
class Category:
    """One task category and the texts anchored to it.

    Attributes:
        letter: A–H.
        name: short name, as in the paper.
        definition: what prompts in the category ask for (shown to the classifier).
        difference: what makes two responses *functionally different* for this category.
        verifiable: whether one or more answers can be checked against a reference.
        homogeneity_desired: True where a single answer is the right outcome (category A).
        system_anchored: task-anchored system prompt for system-prompt sampling (one call, n responses).
        regen_anchored: task-anchored follow-up for in-context regeneration.
        judge_criterion: the equivalence question the pairwise judge answers for this category.
    """

    letter: str
    name: str
    definition: str
    difference: str
    verifiable: bool
    homogeneity_desired: bool
    system_anchored: str
    regen_anchored: str
    judge_criterion: str


CATEGORIES: dict[str, Category] = {
    c.letter: c
    for c in (
        Category(
            letter="A",
            name="Well-specified singular objective",
            definition="Asks for one verifiable fact or answer; exactly one answer is correct.",
            # What differs, never what is hoped for: "all responses should give the same answer" told the judge the
            # verdict the task wants (a prime towards YES) where its job is to see whether the answers differ.
            difference="a different final answer",
            verifiable=True,
            homogeneity_desired=True,
            system_anchored=(
                "The following question has a single correct answer. Generate {n} responses; each must give the "
                "correct answer, so they should agree on it. Vary only the wording if you wish."
            ),
            regen_anchored=(
                "Can you answer again? The question has a single correct answer, so give the answer you believe is "
                "correct, even if it is the same as before."
            ),
            judge_criterion=(
                "Do the two responses give the same final answer to the question? If their final answers differ, "
                "they are different."
            ),
        ),
        Category(
            letter="B",
            name="Underspecified singular objective",
            definition="Asks for one answer where many different answers are valid and verifiable (e.g. name a "
            "country that starts with S).",
            difference="a different valid answer",
            verifiable=True,
            homogeneity_desired=False,
            system_anchored=(
                "The following request has many possible correct answers. Generate {n} responses, each giving a "
                "different correct answer."
            ),
            regen_anchored=(
                "Can you give a different answer? The request has many possible correct answers, so choose another "
                "correct one that you have not given yet."
            ),
            judge_criterion=(
                "Do the two responses give the same answer (the same item, name or value)? If they give different "
                "answers, they are different."
            ),
        ),
        Category(
            letter="C",
            name="Random generation",
            definition="Asks to pick or generate something at random from a finite set (roll a die, pick a random "
            "number, choose a card).",
            difference="a different randomly chosen option",
            verifiable=True,
            homogeneity_desired=False,
            system_anchored=(
                "The following request asks for a random choice among a set of options. Generate {n} responses, each "
                "with a different randomly chosen option."
            ),
            regen_anchored=(
                "Can you make another random choice? Pick a different option from the set than the ones you have "
                "picked so far."
            ),
            judge_criterion=(
                "Do the two responses pick the same option (the same number, item or outcome)? If they pick "
                "different options, they are different."
            ),
        ),
        Category(
            letter="D",
            name="Problem-solving objective",
            definition="A problem (math, logic, code) with a single verifiable solution that can be reached by "
            "different strategies.",
            difference="a different problem-solving strategy (not a different final answer)",
            verifiable=True,
            homogeneity_desired=False,
            system_anchored=(
                "The following problem has a single correct answer, but can be solved using different "
                "problem-solving strategies. Generate {n} different solutions, each with a different problem-solving "
                "strategy."
            ),
            regen_anchored=(
                "Can you solve the problem using a different strategy? The problem has a single correct answer, but "
                "can be solved using different problem-solving strategies."
            ),
            judge_criterion=(
                "Do the two responses use the same problem-solving strategy (the same method or approach), "
                "regardless of wording or final answer? If their strategies differ, they are different."
            ),
        ),
        Category(
            letter="E",
            name="Problem-solving subjective",
            definition="A practical problem with many partially verifiable solutions (improvise with limited "
            "tools, plan around constraints).",
            difference="a different solution or a different strategy",
            verifiable=False,
            homogeneity_desired=False,
            system_anchored=(
                "The following problem has many possible solutions. Generate {n} responses, each proposing a "
                "different solution or a different strategy to solve it."
            ),
            regen_anchored=(
                "Can you propose a different solution? The problem has many possible solutions, so use a different "
                "approach or different means than before."
            ),
            judge_criterion=(
                "Do the two responses propose the same solution using the same strategy? If they differ in the "
                "solution or in the strategy, they are different."
            ),
        ),
        Category(
            letter="F",
            name="Encyclopedia inquiry",
            definition="Asks for real-world information that credible references cover, possibly from several "
            "perspectives (history, science, society).",
            # The paper's criterion is the perspective alone: "or emphasis" (in every text of F until 2026-12-02)
            # counted two accounts of one perspective that stress other facts as different, F's counts inflated
            # most for the anchored strategies, which were asked for exactly that.
            difference="a different factual perspective",
            verifiable=False,
            homogeneity_desired=False,
            system_anchored=(
                "The following question asks for real-world information that can be presented from several factual "
                "perspectives. Generate {n} responses, each accurate and each presenting a different factual "
                "perspective."
            ),
            regen_anchored=(
                "Can you answer from a different factual perspective? Stay accurate, but present the information "
                "from a perspective you have not taken before."
            ),
            judge_criterion=(
                "Do the two responses present the information from the same factual perspective, whatever their "
                "details or wording? If their perspectives differ, they are different."
            ),
        ),
        Category(
            letter="G",
            name="Creative writing",
            definition="Asks for creative expression: stories, poems, lyrics, slogans, fictional content.",
            difference="different key creative elements (plot, genre, setting, tone, point of view, theme, structure)",
            verifiable=False,
            homogeneity_desired=False,
            system_anchored=(
                "The following prompt is asking for creative expression, so there are many possible subjective "
                "responses. Generate {n} unique responses by varying the key creative elements such as tone, genre, "
                "point of view, theme, structure, etc."
            ),
            regen_anchored=(
                "Can you write a different one? Vary the key creative elements such as tone, genre, point of view, "
                "theme and structure."
            ),
            judge_criterion=(
                "Do the two responses share all of their key creative elements: plot, genre, setting, tone, point "
                "of view, theme and structure? If they differ in at least one of these elements, they are "
                "different."
            ),
        ),
        Category(
            letter="H",
            name="Advice or opinions",
            definition="Asks for advice, an opinion, feedback or a recommendation on a personal or open question.",
            difference="a different view, recommendation or perspective",
            verifiable=False,
            homogeneity_desired=False,
            system_anchored=(
                "The following prompt asks for advice or an opinion, so there are many reasonable views. Generate "
                "{n} responses, each offering a different view or perspective."
            ),
            regen_anchored=(
                "Can you give a different view? Offer advice or an opinion from a different perspective than before."
            ),
            judge_criterion=(
                "Do the two responses offer the same view, recommendation or perspective? If they differ in view, "
                "recommendation or perspective, they are different."
            ),
        ),
    )
}

# ---------------------------------------------------------------------------------------------------------------
# Classification (the paper's Step 1: the generating model self-classifies the prompt).

CLASSIFY_PROMPT = """Classify the user prompt below into exactly one task category.

Categories:
{categories}

Prompt:
\"\"\"{prompt}\"\"\"

Answer with the letter of the category only (one of A, B, C, D, E, F, G, H), or N if the prompt fits none of
these categories.
Category:"""

# One line of the category list shown to the classifier.
CATEGORY_LINE = "{letter}. {name}: {definition}"

# Sent when the classifier's answer names no category.
CLASSIFY_REMINDER = "Answer with one letter only: A, B, C, D, E, F, G or H, or N for none of these."


def categories_block() -> str:
    """The category list as shown to the classifier: one line per category."""
    return "\n".join(CATEGORY_LINE.format(letter=c.letter, name=c.name, definition=c.definition)
                     for c in CATEGORIES.values())


# ---------------------------------------------------------------------------------------------------------------
# Sampling strategies.

# System-prompt sampling, general form (Zhang et al. 2025a).
SYSTEM_GENERAL = "Generate {n} responses that represent diverse values."

# Appended to both system prompts: the format the n responses must come in, so they can be parsed apart.
SYSTEM_FORMAT = (
    " Write each response under its own header line '### Response k' (k = 1 to {n}), and write nothing before the "
    "first header or after the last response."
)

# In-context regeneration, general form (Zhang et al. 2025b).
REGEN_GENERAL = "Can you generate a different answer?"

# ---------------------------------------------------------------------------------------------------------------
# Pairwise judge (task-anchored functional equivalence).

JUDGE_SYSTEM = "You are a careful evaluator. You compare two responses to the same prompt and answer YES or NO."

JUDGE_PROMPT = """The prompt below belongs to the task category "{category_name}". For this category, two responses are functionally different only if they have {difference}; other differences (wording, length, formatting) do not count.

Prompt:
\"\"\"{prompt}\"\"\"

Response 1:
\"\"\"{response_a}\"\"\"

Response 2:
\"\"\"{response_b}\"\"\"

{criterion} Answer YES if they are functionally equivalent, NO if they are functionally different.
Answer (YES or NO):"""

# The judge's question about two reasoning traces (judge.target: trace / both). Whatever the category, traces are
# compared as the paper compares Problem-solving answers (categories D and E): by the strategy they follow.
TRACE_JUDGE_PROMPT = """The prompt below belongs to the task category "{category_name}". A model reasoned about it before answering; below are two of its reasoning traces. Two traces are functionally different only if they follow a different problem-solving strategy (a different method or approach); other differences (wording, length, the order of the same steps, slips along the way, the answer reached) do not count.

Prompt:
\"\"\"{prompt}\"\"\"

Reasoning trace 1:
\"\"\"{response_a}\"\"\"

Reasoning trace 2:
\"\"\"{response_b}\"\"\"

Do the two traces use the same problem-solving strategy (the same method or approach)? Answer YES if they are functionally equivalent, NO if they are functionally different.
Answer (YES or NO):"""

# Sent when a verdict is neither YES nor NO.
JUDGE_REMINDER = "Answer with a single word: YES or NO."

# Put where a response is cut to fit the judge's context (judge.max_response_chars).
CLIP_MARK = " […]"

# For a prompt with no category: its name, what makes two responses different, and the judge's question.
UNCATEGORISED_NAME = "Uncategorised"
UNCATEGORISED_DIFFERENCE = "a different answer, approach or content"
UNCATEGORISED_CRITERION = "Do the two responses give the same answer with the same approach and content?"

# ---------------------------------------------------------------------------------------------------------------
# Checklist quality (criteria per prompt, then a 1–5 grade per response).

CHECKLIST_PROMPT = """Write a checklist of 3 to 5 criteria that a high-quality response to the prompt below must meet. Take the task into account: it is in the category "{category_name}". Write one criterion per line, numbered 1., 2., 3., and nothing else.

Prompt:
\"\"\"{prompt}\"\"\""""

# Sent when the checklist is not a numbered list of 3 to 5 items.
CHECKLIST_REMINDER = "Write only the numbered list: 3 to 5 criteria, one per line, starting with '1.'."

GRADE_PROMPT = """Grade the response to the prompt below against the checklist, on a scale from 1 (very poor) to 5 (very good).

Prompt:
\"\"\"{prompt}\"\"\"

Checklist:
{criteria}

Response:
\"\"\"{response}\"\"\"

Answer with a single digit from 1 to 5.
Grade:"""

# One criterion of the checklist as the grader sees it.
CRITERION_LINE = "{k}. {criterion}"

# Sent when the grade is not a digit from 1 to 5.
GRADE_REMINDER = "Answer with a single digit from 1 to 5."

# ---------------------------------------------------------------------------------------------------------------
# Accuracy on short-answer sources (SimpleQA-style grading; ours, with SimpleQA's grader's rules: several candidate
# answers, or one the response contradicts, are incorrect; a number agrees to the gold's last significant figure).

SHORT_ANSWER_GRADER = """Grade whether the response answers the question correctly, given the gold answer.

Question: {prompt}
Gold answer: {gold_answer}
Response: \"\"\"{response}\"\"\"

Reply with one letter: A if the response's answer is correct (it agrees with the gold answer, possibly in other words; a number must agree to the gold answer's last significant figure), B if it gives an incorrect answer (including several candidate answers, or an answer it contradicts), C if it does not attempt an answer (refuses, hedges without answering, or says it does not know).
Grade:"""

# Sent when the short-answer grade is not A, B or C.
SHORT_ANSWER_REMINDER = "Reply with one letter only: A, B or C."


# ---------------------------------------------------------------------------------------------------------------
# Rendering helpers: the only code that fills the templates above.


def classify_prompt(prompt: str) -> str:
    return CLASSIFY_PROMPT.format(categories=categories_block(), prompt=prompt)


def system_prompt(strategy: str, category: str | None, n: int) -> str:
    """System prompt for system-prompt sampling.

    Args:
        strategy: ``system_general`` or ``system_anchored``.
        category: the prompt's category letter (required for ``system_anchored``).
        n: number of responses to ask for.
    """
    if strategy == "system_general":
        head = SYSTEM_GENERAL
    elif strategy == "system_anchored":
        if category not in CATEGORIES:
            raise ValueError(f"system_anchored needs a category A-H, got {category!r}")
        head = CATEGORIES[category].system_anchored
    else:
        raise ValueError(f"not a system-prompt strategy: {strategy!r}")
    return (head + SYSTEM_FORMAT).format(n=n)


def regen_followup(strategy: str, category: str | None) -> str:
    """The user turn that asks for one more, different response in in-context regeneration."""
    if strategy == "regen_general":
        return REGEN_GENERAL
    if strategy == "regen_anchored":
        if category not in CATEGORIES:
            raise ValueError(f"regen_anchored needs a category A-H, got {category!r}")
        return CATEGORIES[category].regen_anchored
    raise ValueError(f"not a regeneration strategy: {strategy!r}")


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with CLIP_MARK appended (0: no cut)."""
    if limit and len(text) > limit:
        return text[:limit] + CLIP_MARK
    return text


def judge_conversation(category: str | None, prompt: str, response_a: str, response_b: str,
                       limit: int = 0) -> list[dict[str, str]]:
    """The judge's conversation for one ordered pair: JUDGE_SYSTEM, then the anchored question (responses cut to
    `limit` characters)."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": judge_prompt(category, prompt, clip(response_a, limit), clip(response_b, limit))},
    ]


def trace_judge_conversation(category: str | None, prompt: str, trace_a: str, trace_b: str,
                             limit: int = 0) -> list[dict[str, str]]:
    """The judge's conversation for one ordered pair of reasoning traces: JUDGE_SYSTEM, then the strategy question
    (TRACE_JUDGE_PROMPT; traces cut to `limit` characters)."""
    name = CATEGORIES[category].name if category in CATEGORIES else UNCATEGORISED_NAME
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": TRACE_JUDGE_PROMPT.format(category_name=name, prompt=prompt,
                                                              response_a=clip(trace_a, limit),
                                                              response_b=clip(trace_b, limit))},
    ]


def judge_prompt(category: str | None, prompt: str, response_a: str, response_b: str) -> str:
    """The pairwise judge prompt, anchored to `category`; with no category (unclassified and no gold label),
    the generic UNCATEGORISED_* criterion is used and the judgments record that."""
    name, difference, criterion = (
        (CATEGORIES[category].name, CATEGORIES[category].difference, CATEGORIES[category].judge_criterion)
        if category in CATEGORIES
        else (UNCATEGORISED_NAME, UNCATEGORISED_DIFFERENCE, UNCATEGORISED_CRITERION)
    )
    return JUDGE_PROMPT.format(
        category_name=name,
        difference=difference,
        criterion=criterion,
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
    )


def checklist_prompt(category: str | None, prompt: str) -> str:
    name = CATEGORIES[category].name if category in CATEGORIES else UNCATEGORISED_NAME
    return CHECKLIST_PROMPT.format(category_name=name, prompt=prompt)


def grade_prompt(prompt: str, criteria: list[str], response: str) -> str:
    lines = "\n".join(CRITERION_LINE.format(k=k, criterion=c) for k, c in enumerate(criteria, 1))
    return GRADE_PROMPT.format(prompt=prompt, criteria=lines, response=response)


def short_answer_grader_prompt(prompt: str, gold_answer: str, response: str) -> str:
    return SHORT_ANSWER_GRADER.format(prompt=prompt, gold_answer=gold_answer, response=response)


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints: which stage sends which text.

# Stage → the texts it sends: constant names, and "Category.<field>" for a text field of every category.
SENT_BY: dict[str, tuple[str, ...]] = {
    "classify": ("CLASSIFY_PROMPT", "CATEGORY_LINE", "CLASSIFY_REMINDER", "Category.letter", "Category.name",
                 "Category.definition"),
    "sample": ("SYSTEM_GENERAL", "SYSTEM_FORMAT", "REGEN_GENERAL", "Category.system_anchored",
               "Category.regen_anchored"),
    "judge": ("JUDGE_SYSTEM", "JUDGE_PROMPT", "JUDGE_REMINDER", "CLIP_MARK", "UNCATEGORISED_NAME",
              "UNCATEGORISED_DIFFERENCE", "UNCATEGORISED_CRITERION", "Category.name", "Category.difference",
              "Category.judge_criterion"),
    "judge_trace": ("JUDGE_SYSTEM", "TRACE_JUDGE_PROMPT", "JUDGE_REMINDER", "CLIP_MARK", "UNCATEGORISED_NAME",
                    "Category.name"),
    "checklist": ("CHECKLIST_PROMPT", "CHECKLIST_REMINDER", "UNCATEGORISED_NAME", "Category.name"),
    "grade": ("GRADE_PROMPT", "CRITERION_LINE", "GRADE_REMINDER"),
    "accuracy": ("SHORT_ANSWER_GRADER", "SHORT_ANSWER_REMINDER"),
}


def text_constants() -> dict[str, str]:
    """Every text of this module by name: each UPPER_CASE string constant, and "Category.<field>" for each text
    field of the categories (the field's values over all categories, joined)."""
    texts = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)}
    for f in dataclasses.fields(Category):
        if f.type in (str, "str"):
            texts[f"Category.{f.name}"] = "\x1f".join(getattr(c, f.name) for c in CATEGORIES.values())
    return texts


def prompt_versions() -> dict[str, str]:
    """Stage → a fingerprint of every text the stage sends (its shard keys include it).

    Raises:
        RuntimeError: a text constant that no stage claims in SENT_BY, or a claim of a text that does not exist.
    """
    texts = text_constants()
    claimed = {name for names in SENT_BY.values() for name in names}
    if set(texts) - claimed:
        raise RuntimeError(f"taxonomy texts no stage claims in SENT_BY: {sorted(set(texts) - claimed)}")
    if claimed - set(texts):
        raise RuntimeError(f"SENT_BY names texts that do not exist: {sorted(claimed - set(texts))}")
    return {
        stage: hashlib.sha256("\x1e".join(f"{name}={texts[name]}" for name in names).encode()).hexdigest()[:16]
        for stage, names in SENT_BY.items()
    }


PROMPT_VERSIONS: dict[str, str] = prompt_versions()
