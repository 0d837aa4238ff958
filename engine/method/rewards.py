"""Functional diversity as a per-response training reward, from the judges' equivalence classes (DARLING-style,
Li et al. 2025, with the task-anchored classes of this method instead of a fixed partition).

For a group of n responses to one prompt, a response in class C gets (n − |C|) / (n − 1): 1 when no other response
is equivalent to it, 0 when all are. Where homogeneity is desired — category A, one right answer — the reward is
inverted, (|C| − 1) / (n − 1): agreeing with the others is what is rewarded. Several judges: the mean over the judges
whose count is resolved; none resolved (an unreadable verdict could still join two classes): the reward is None,
never a number, and counted. A group of one response has no other response to differ from: (n − 1) = 0, its reward
is None too (not 0, which would read "all equivalent"). A group whose category is unknown (the classifier gave no
readable answer) has None too: whether agreeing or differing is rewarded depends on it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any, Sequence

import orjson

# reopen_thinking is re-exported for engine.api (which imports engine.* only).
from actors.base import content_parts, message_trace, opens_thinking, reopen_thinking, split_reasoning  # noqa: F401
from engine.method.judges import has_answer

# Categories where homogeneity is desired (the paper's A: a well-specified objective with one right answer).
HOMOGENEOUS = frozenset({"A"})


def diversity_rewards(classes: Sequence[int], category: str | None) -> list[float | None]:
    """Each response's reward from its group's classes (class of each response, by position); None for the one
    response of a group of one."""
    n = len(classes)
    if n < 2:
        return [None] * n
    size = Counter(classes)
    if category in HOMOGENEOUS:
        return [(size[c] - 1) / (n - 1) for c in classes]
    return [(n - size[c]) / (n - 1) for c in classes]


def group_rewards(judged: Sequence[dict[str, Any]], n: int,
                  category: str | None) -> tuple[list[float | None], list[str]]:
    """Rewards of one group's n responses from its components rows (one per judge: `classes`, `judge`), the mean
    over the judges whose classes are known, and the judges that entered. None for every response when none did,
    and when the category is unknown (None): an uncategorised category-A prompt would reward the odd answer out."""
    known = [r for r in judged if r.get("classes") is not None and len(r["classes"]) == n]
    if not known or n < 2 or category is None:
        return [None] * n, []
    per_judge = [diversity_rewards(r["classes"], category) for r in known]
    return [sum(v[i] for v in per_judge) / len(per_judge) for i in range(n)], [r["judge"] for r in known]


# -- a trainer's prompts and completions (TRL's reward-function arguments): strings or lists of chat messages --------


def prompt_key(prompt: Any) -> bytes:
    """What makes two prompts the same prompt: the string, or every message's role and content (an image part by
    its pixels or bytes, not by the object holding them: TRL repeats a prompt's image as separate objects)."""
    value = [[m.get("role"), m.get("content")] if isinstance(m, dict) else m for m in prompt] \
        if isinstance(prompt, list) else prompt
    try:
        return orjson.dumps(value, default=_content_digest)
    except TypeError as exc:  # orjson.JSONEncodeError, its own message: _content_digest's refusal is its cause
        cause = exc.__cause__ if isinstance(exc.__cause__, _NotComparable) else exc
        raise ValueError(f"a prompt holds {cause}") from None


class _NotComparable(TypeError):
    """A value of a prompt that cannot be compared by content."""


def _content_digest(value: Any) -> Any:
    """A JSON stand-in for what orjson cannot write, equal exactly when the content is: bytes, and objects that
    hold their data as bytes (a PIL image, a numpy array) by a digest of it with its shape; a value whose text
    names its memory address (a default repr) cannot be compared by content and is refused."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if callable(getattr(value, "tobytes", None)):
        shape = [str(getattr(value, a, None)) for a in ("mode", "size", "dtype", "shape")]
        return {"type": type(value).__name__, "shape": shape, "sha256": hashlib.sha256(value.tobytes()).hexdigest()}
    text = str(value)
    if re.search(r" at 0x[0-9a-fA-F]+", text):
        raise _NotComparable(f"a value of type {type(value).__name__} that cannot be compared by content ({text:.80})")
    return text


def _by_role(messages: list, role: str) -> list[dict]:
    """The messages with `role`, or, when none has that role, those without a role (as TRL's own examples write)."""
    dicts = [m for m in messages if isinstance(m, dict)]
    return [m for m in dicts if m.get("role") == role] or [m for m in dicts if "role" not in m]


def message_text(value: Any, role: str) -> str:
    """A plain string, or the text of the last message with `role` (that has text) in a list of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [t for t in (content_parts(m.get("content"))[0] for m in _by_role(value, role)) if t is not None]
        if texts:
            return texts[-1]
    raise ValueError(f"expected a string or a list of chat messages with a {role!r} message, got {value!r:.200}")


def prompt_text(value: Any) -> str:
    """The text a group's judges and classifier read for a TRL prompt: a string as it is; one user turn as its text
    (a system message is the policy's instruction, not the task); a conversation of several turns as a transcript
    of its user and assistant turns ("User: …", "Assistant: …"), so that a follow-up ("make it shorter") is judged
    as the task it continues, not alone."""
    if not isinstance(value, list):
        return message_text(value, role="user")
    dicts = [m for m in value if isinstance(m, dict)]
    turns = [(m.get("role"), content_parts(m.get("content"))[0]) for m in dicts
             if m.get("role") in ("user", "assistant")]
    turns = [(role, text) for role, text in turns if text]
    if len(turns) < 2:
        return message_text(value, role="user")
    return "\n\n".join(f"{role.capitalize()}: {text}" for role, text in turns)


def completion_parts(value: Any) -> tuple[str, str | None]:
    """(answer, trace) of a completion: the last assistant message's reasoning field (actors.base.message_trace) is
    its trace — with no content beside it (the thinking was cut off) the answer is empty; otherwise the trace is None
    here and inline reasoning is split off when the run reads the responses."""
    if isinstance(value, list):
        chosen = _by_role(value, "assistant")
        trace = message_trace(chosen[-1]) if chosen else None
        if trace is not None or (chosen and content_parts(chosen[-1].get("content"))[0] is None):
            # No text: thinking cut off, or only a tool call (TRL's parsed response has `tool_calls` and no
            # `content`) — no answer, not an error that would stop the trainer.
            return content_parts(chosen[-1].get("content"))[0] or "", trace
    return message_text(value, role="assistant"), None


def template_opens_thinking(tokenizer: Any, chat_template: str | None = None, **template_kwargs: Any) -> bool:
    """Whether a tokenizer's chat template (TRL's processing_class) ends its generation prompt inside an opened
    `<think>` block, rendered as the trainer renders prompts: with its `chat_template` (None: the tokenizer's) and
    `chat_template_kwargs` (DeepSeek-V3.1's template opens the block only with thinking=True); False where it has no
    template or cannot render one user turn."""
    render = getattr(tokenizer, "apply_chat_template", None)
    if render is None:
        return False
    if chat_template is not None:
        template_kwargs = {**template_kwargs, "chat_template": chat_template}
    try:
        text = render([{"role": "user", "content": "Hello."}], add_generation_prompt=True, tokenize=False,
                      **template_kwargs)
    except Exception:  # no chat template, or one that needs more than a user turn: nothing to read from it
        return False
    return isinstance(text, str) and opens_thinking(text)


def trainer_parses_completions(trainer: Any) -> bool:
    """Whether TRL's GRPO trainer hands conversational completions parsed by the tokenizer's response template
    (transformers >= 5 with `response_template` or the older `response_schema` set; TRL sets one itself where the
    trainer has tools) — reasoning in its own field — rather than the decoded text wrapped as one assistant message,
    which starts inside a thinking block the template opened (TRL 1.16, GRPOTrainer._generate_and_score_completions).
    """
    tokenizer = getattr(trainer, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor holds its tokenizer
    if not any(getattr(tokenizer, name, None) is not None for name in ("response_template", "response_schema")):
        return False
    try:
        import transformers
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return False
    try:  # parse_response came with transformers 5; compared as TRL compares it (a 5.0.0.dev0 is before 5.0.0)
        return Version(str(transformers.__version__)) >= Version("5.0.0")
    except InvalidVersion:
        return False


def answers(answer: str, trace: str | None) -> bool:
    """Whether a completion (completion_parts) answers at all: its answer, inline reasoning split off first, is not
    empty (engine.method.judges.has_answer) — a completion cut off while thinking does not."""
    return has_answer(answer if trace is not None else split_reasoning(answer)[0])
