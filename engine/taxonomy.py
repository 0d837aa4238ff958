"""The task taxonomy and every prompt text the method needs, in one place.

The eight categories follow Jain et al., "LLM Output Homogenization is Task Dependent" (arXiv 2509.21267): what
counts as two *functionally different* responses depends on the task category of the prompt. All wording below is
ours; edit it here and nowhere else. The texts each stage sends are fingerprinted in `PROMPT_VERSIONS` (hashed into
that stage's shard keys), so an edit recomputes exactly the stages it affects.

Templates use ``str.format`` fields: ``{n}`` (number of responses), ``{prompt}``, ``{response_a}``,
``{response_b}``, ``{criteria}``, ``{response}``, ``{gold_answer}``, ``{categories}``, ``{category_name}``,
``{difference}``.
"""

from __future__ import annotations

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
            difference="a different final answer (homogeneity is desired: all responses should give the same correct answer)",
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
            judge_criterion="Do the two responses give the same final answer to the question?",
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
            judge_criterion="Do the two responses give the same answer (the same item, name or value)?",
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
                "Can you make another random choice? Pick a different option from the set, as a fair random draw "
                "would."
            ),
            judge_criterion="Do the two responses pick the same option (the same number, item or outcome)?",
        ),
        Category(
            letter="D",
            name="Problem-solving objective",
            definition="A problem (math, logic, code) with a single verifiable solution that can be reached by "
            "different strategies.",
            difference="a different problem-solving strategy (the final answer should be the same)",
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
                "regardless of wording or final answer?"
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
            judge_criterion="Do the two responses propose the same solution using the same strategy?",
        ),
        Category(
            letter="F",
            name="Encyclopedia inquiry",
            definition="Asks for real-world information that credible references cover, possibly from several "
            "perspectives (history, science, society).",
            difference="a different factual perspective or emphasis",
            verifiable=False,
            homogeneity_desired=False,
            system_anchored=(
                "The following question asks for real-world information that can be presented from several factual "
                "perspectives. Generate {n} responses, each accurate and each presenting a different perspective or "
                "emphasis."
            ),
            regen_anchored=(
                "Can you answer from a different factual perspective? Stay accurate, but emphasise different facts, "
                "sources or viewpoints than before."
            ),
            judge_criterion="Do the two responses present the same factual perspective, with the same emphasis?",
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
                "Do the two responses share the same key creative elements (plot, genre, setting, tone, point of "
                "view, theme, structure)?"
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
            judge_criterion="Do the two responses offer the same view, recommendation or perspective?",
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

Answer with the letter of the category only (one of A, B, C, D, E, F, G, H).
Category:"""


def categories_block() -> str:
    """The category list as shown to the classifier: one line per category."""
    return "\n".join(f"{c.letter}. {c.name}: {c.definition}" for c in CATEGORIES.values())


# ---------------------------------------------------------------------------------------------------------------
# Sampling strategies.

# System-prompt sampling, general form (Zhang et al. 2025a).
SYSTEM_GENERAL = "Generate {n} responses that represent diverse values."

# Appended to both system prompts: the format the n responses must come in, so they can be parsed apart.
SYSTEM_FORMAT = (
    " Write each response under its own header line '### Response k' (k = 1 to {n}), and write nothing before the "
    "first header."
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

# For a prompt with no category: (name, difference, criterion).
UNCATEGORISED_JUDGE = (
    "Uncategorised",
    "a different answer, approach or content",
    "Do the two responses give the same answer with the same approach and content?",
)

# ---------------------------------------------------------------------------------------------------------------
# Checklist quality (criteria per prompt, then a 1–5 grade per response).

CHECKLIST_PROMPT = """Write a checklist of 3 to 5 criteria that a high-quality response to the prompt below must meet. Take the task into account: it is in the category "{category_name}". Write one criterion per line, numbered 1., 2., 3., and nothing else.

Prompt:
\"\"\"{prompt}\"\"\""""

GRADE_PROMPT = """Grade the response to the prompt below against the checklist, on a scale from 1 (very poor) to 5 (very good).

Prompt:
\"\"\"{prompt}\"\"\"

Checklist:
{criteria}

Response:
\"\"\"{response}\"\"\"

Answer with a single digit from 1 to 5.
Grade:"""

# ---------------------------------------------------------------------------------------------------------------
# Accuracy on short-answer sources (SimpleQA-style grading; ours).

SHORT_ANSWER_GRADER = """Grade whether the response answers the question correctly, given the gold answer.

Question: {prompt}
Gold answer: {gold_answer}
Response: \"\"\"{response}\"\"\"

Reply with one letter: A if the response's answer is correct (it agrees with the gold answer, possibly in other words), B if it gives an incorrect answer, C if it does not attempt an answer (refuses, hedges without answering, or says it does not know).
Grade:"""


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


def judge_prompt(category: str | None, prompt: str, response_a: str, response_b: str) -> str:
    """The pairwise judge prompt, anchored to `category`; with no category (unclassified and no gold label),
    the generic criterion `UNCATEGORISED_JUDGE` is used and the judgments record that."""
    name, difference, criterion = (
        (CATEGORIES[category].name, CATEGORIES[category].difference, CATEGORIES[category].judge_criterion)
        if category in CATEGORIES
        else UNCATEGORISED_JUDGE
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
    name = CATEGORIES[category].name if category in CATEGORIES else UNCATEGORISED_JUDGE[0]
    return CHECKLIST_PROMPT.format(category_name=name, prompt=prompt)


def grade_prompt(prompt: str, criteria: list[str], response: str) -> str:
    lines = "\n".join(f"{k}. {c}" for k, c in enumerate(criteria, 1))
    return GRADE_PROMPT.format(prompt=prompt, criteria=lines, response=response)


def short_answer_grader_prompt(prompt: str, gold_answer: str, response: str) -> str:
    return SHORT_ANSWER_GRADER.format(prompt=prompt, gold_answer=gold_answer, response=response)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _category_texts(*names: str) -> list[str]:
    return [str(getattr(c, name)) for c in CATEGORIES.values() for name in names]


# One fingerprint per use: shard keys include the fingerprint of the texts a stage sends, so editing the judge's
# wording re-judges but does not regenerate, and editing a sampling prompt regenerates only what follows it.
PROMPT_VERSIONS: dict[str, str] = {
    "classify": _digest(CLASSIFY_PROMPT, *_category_texts("letter", "name", "definition")),
    "sample": _digest(SYSTEM_GENERAL, SYSTEM_FORMAT, REGEN_GENERAL, *_category_texts("system_anchored", "regen_anchored")),
    "judge": _digest(JUDGE_SYSTEM, JUDGE_PROMPT, *UNCATEGORISED_JUDGE, *_category_texts("name", "difference", "judge_criterion")),
    "quality": _digest(CHECKLIST_PROMPT, GRADE_PROMPT, *_category_texts("name")),
    "accuracy": _digest(SHORT_ANSWER_GRADER),
}
