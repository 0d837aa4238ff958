"""Test doubles for pipeline logic: deterministic chat backends that read the prompts they are sent.

They exercise the pipeline's logic (rounds, pruning, resume, parsing paths) without a model; every real backend
is tested for real elsewhere (tests/actors).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
import time
from typing import Sequence

from actors.base import BackendError, ChatOutput, Conversation, SamplingParams, pair_sampling
from engine.execution.preflight import PROBE_CONVERSATION

_RESPONSE = re.compile(r'Response 1:\n"""(.*?)"""\n\nResponse 2:\n"""(.*?)"""', re.S)
_TRACE = re.compile(r'Reasoning trace 1:\n"""(.*?)"""\n\nReasoning trace 2:\n"""(.*?)"""', re.S)


def request_kind(conv: Conversation) -> str:
    """Which stage sent a conversation: classify, judge, grade, checklist, accuracy or sample (or the endpoint
    probe of engine.execution.preflight)."""
    first_user = next(m["content"] for m in conv if m["role"] == "user")
    if first_user == PROBE_CONVERSATION[0]["content"]:
        return "probe"
    if first_user.startswith("Classify the user prompt"):
        return "classify"
    if first_user.startswith("The prompt below belongs"):
        return "judge"
    if first_user.startswith("Grade the response"):
        return "grade"
    if first_user.startswith("Write a checklist"):
        return "checklist"
    if first_user.startswith("Grade whether the response answers"):
        return "accuracy"
    return "sample"


def _h(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


class ScriptedChat:
    """A deterministic backend.

    - classification prompts: answers the letter after "GOLD=" in the prompt text if present, else "G";
    - judge prompts: responses are "class <k> …"; answers YES iff the two classes match (with log-probs);
    - grade prompts: "4"; checklist prompts: a 3-item list; short-answer grading: "B" (incorrect);
    - anything else: "class <k> …" where k = hash(conversation, seed, sample) mod `classes`, or, for
      system-prompt sampling, n such responses under "### Response k" headers.

    Class-level counters record every conversation seen (per process), so tests can count backend calls.

    Args:
        model: ignored label.
        classes: number of distinct classes generated responses fall in.
        unparseable_judge: answer judge prompts with "maybe" (to test the unparsed path).
        first_wins: answer a judge prompt YES exactly when its first response is of class 0, in text (no log-probs):
            a position-biased judge, whose two orders disagree.
        classify_as: the letter to answer classification prompts with when the prompt has no "GOLD=" mark
            (default "G").
        unparseable_classes: [[a, b], …]: answer "maybe" to a judge prompt whose two responses are of classes a
            and b (in either order), so chosen pairs stay unresolved (the reminder is answered unparseably too).
        call_log: append one line per request, "<kind>\n", to this file (flushed), so a test can count calls
            made by another process.
        kill_on: (kind, k): SIGKILL this process when the k-th request of that kind arrives — a crash at a
            chosen point of the run. Only while the file `kill_armed` exists, so a rerun can proceed.
        kill_armed: see kill_on.
        start_marker: create this file when the first request arrives (a test waits for it to know the stage
            is mid-batch).
        delay_s: sleep this long per chat() call.
        max_chars: a conversation longer than this (in characters) fails its row, as a prompt longer than a
            model's context does.
        flaky_marker: a generation request whose prompt contains this text fails transiently (as an API request
            whose retries ran out does: ChatOutput.transient) while the file `flaky_armed` exists.
        flaky_armed: see flaky_marker.
        flaky_kind: the kind of request flaky_marker applies to (request_kind: "sample", "classify", …).
        flaky_from_turn: the first conversation turn (1-based: 1 is the first request) flaky_marker fails, so that a
            regeneration keeps the responses of its earlier turns.
        life_log: append "load <model>" when built and "close <model>" when closed to this file, so a test can see
            when and how often each model is loaded, in any process.
        think: generated responses open with a reasoning block, "<think>strategy <s> step …</think>", as a reasoning
            model writes it, where s = hash(…) mod `strategies` is drawn apart from the answer's class; a trace
            judge prompt is answered YES iff the two traces name the same strategy. A judge prompt whose responses
            still hold a "<think>" block is answered "maybe" (a trace leaking into an answer stays unresolved, so
            a test sees it).
        strategies: number of distinct strategies traces fall in (with `think`).
    """

    calls: list[str] = []
    _lock = threading.Lock()

    def __init__(self, model: str = "scripted", classes: int = 3, unparseable_judge: bool = False,
                 call_log: str | None = None, kill_on: list | None = None, kill_armed: str | None = None,
                 start_marker: str | None = None, delay_s: float = 0.0, max_chars: int | None = None,
                 unparseable_classes: list | None = None, classify_as: str = "G", flaky_marker: str | None = None,
                 flaky_armed: str | None = None, life_log: str | None = None, think: bool = False,
                 strategies: int = 2, refuse_armed: str | None = None, refuse_kind: str = "sample",
                 refuse_marker: str | None = None, flaky_kind: str = "sample", first_wins: bool = False,
                 flaky_from_turn: int = 1) -> None:
        self.name = model
        self.first_wins = first_wins
        self.think, self.strategies = think, strategies
        self.life_log = life_log
        self._life("load")
        self.classes = classes
        self.unparseable_judge = unparseable_judge
        self.call_log = call_log
        self.kill_on = tuple(kill_on) if kill_on else None
        self.kill_armed = kill_armed
        self.start_marker = start_marker
        self.delay_s = delay_s
        self.max_chars = max_chars
        self.classify_as = classify_as
        self.unparseable_classes = {frozenset(int(c) for c in pair) for pair in unparseable_classes or []}
        self.seen: dict[str, int] = {}
        self.flaky_marker, self.flaky_armed, self.flaky_kind = flaky_marker, flaky_armed, flaky_kind
        self.flaky_from_turn = flaky_from_turn
        # While the file `refuse_armed` exists, a batch holding a request of `refuse_kind` (with `refuse_marker` in it,
        # when given, or else the file's text when it has one) raises BackendError, as the HTTP client does for a
        # refusal of the whole configuration (a revoked key: HTTP 401).
        self.refuse_armed, self.refuse_kind, self.refuse_marker = refuse_armed, refuse_kind, refuse_marker

    def chat(self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]):
        params = pair_sampling(conversations, sampling)
        marker = self.refuse_marker
        if self.refuse_armed and os.path.exists(self.refuse_armed) and marker is None:
            marker = open(self.refuse_armed).read().strip() or None  # the file may name it (changed between runs)
        if (self.refuse_armed and os.path.exists(self.refuse_armed)
                and any(request_kind(c) == self.refuse_kind and (marker is None or marker in repr(c))
                        for c in conversations)):
            raise BackendError("http://api.test/v1/chat/completions refused the request with HTTP 401")
        if self.start_marker:
            open(self.start_marker, "a").close()
        if self.delay_s:
            time.sleep(self.delay_s)
        outs = []
        for conv, p in zip(conversations, params):
            text = conv[-1]["content"]
            kind = request_kind(conv)
            with self._lock:
                ScriptedChat.calls.append(text[:60])
                self.seen[kind] = self.seen.get(kind, 0) + 1
                if self.call_log:
                    with open(self.call_log, "a") as log:
                        log.write(kind + "\n")
                if (self.kill_on and kind == self.kill_on[0] and self.seen[kind] >= self.kill_on[1]
                        and self.kill_armed and os.path.exists(self.kill_armed)):
                    os.kill(os.getpid(), signal.SIGKILL)
            outs.append(self._answer(conv, text, p))
        return outs

    def _answer(self, conv: Conversation, text: str, p: SamplingParams) -> ChatOutput:
        if (self.flaky_marker and request_kind(conv) == self.flaky_kind and self.flaky_marker in repr(conv)
                and sum(m["role"] == "user" for m in conv) >= self.flaky_from_turn
                and self.flaky_armed and os.path.exists(self.flaky_armed)):
            return ChatOutput(error="http://api.test/v1/chat/completions: request failed after 7 attempts "
                                    "(6 retries); last error: HTTP 503", transient=True)
        size = sum(len(m["content"]) for m in conv)
        if self.max_chars is not None and size > self.max_chars:
            return ChatOutput(error=f"conversation of {size} characters exceeds the context of {self.max_chars}")
        if request_kind(conv) == "probe":
            return self._one("OK", p)
        if "Classify the user prompt" in text:
            m = re.search(r"GOLD=([A-H])", text)
            return self._one(m.group(1) if m else self.classify_as, p)
        m = _TRACE.search(text)
        if m:
            a, b = (re.search(r"strategy (\d+)", t) for t in m.groups())
            same = a is not None and b is not None and a.group(1) == b.group(1)
            out = self._one("YES" if same else "NO", p)
            out.first_token_logprobs = [{"YES": -0.05, "NO": -3.0} if same else {"YES": -3.0, "NO": -0.05}] * p.n \
                if p.logprobs else None
            return out
        m = _RESPONSE.search(text)
        if m:
            if any("<think>" in response for response in m.groups()):  # the prompt may quote the tag
                return self._one("maybe", p)
            if self.unparseable_judge:
                return self._one("maybe", p)
            a, b = (re.match(r"class (\d+)", s) for s in m.groups())
            if self.first_wins:  # position bias, in text only: YES iff the response shown first is of class 0
                return self._one("YES" if a is not None and a.group(1) == "0" else "NO", p)
            if a is not None and b is not None and \
                    frozenset((int(a.group(1)), int(b.group(1)))) in self.unparseable_classes:
                return self._one("maybe", p)
            same = a is not None and b is not None and a.group(1) == b.group(1)
            lp = {"YES": -0.05, "NO": -3.0} if same else {"YES": -3.0, "NO": -0.05}
            out = self._one("YES" if same else "NO", p)
            out.first_token_logprobs = [lp] * p.n if p.logprobs else None
            return out
        if text.startswith("Grade the response"):
            out = self._one("4", p)
            out.first_token_logprobs = [{"4": -0.1, "5": -2.5}] * p.n if p.logprobs else None
            return out
        if text.startswith("Grade whether the response answers"):
            return self._one("B", p)
        if text.startswith("Write a checklist"):
            return self._one("1. Is correct.\n2. Is clear.\n3. Is complete.", p)
        system = next((m["content"] for m in conv if m["role"] == "system"), None)
        if system and "### Response k" in system:
            n = int(re.search(r"Generate (\d+)", system).group(1))
            body = "\n".join(f"### Response {k + 1}\n{self._sentence(conv, p, k, think=False)}" for k in range(n))
            if self.think:  # one block of thinking, then the n responses
                body = f"<think>strategy 0 plan {_h(repr(conv), p.seed) % 1000}</think>\n{body}"
            return self._one(body, p)
        texts = [self._sentence(conv, p, k) for k in range(p.n)]
        return ChatOutput(texts=texts, finish_reasons=["stop"] * p.n, n_tokens=[len(t.split()) for t in texts],
                          prompt_tokens=sum(len(m["content"].split()) for m in conv))

    def _sentence(self, conv: Conversation, p: SamplingParams, k: int, think: bool = True) -> str:
        c = _h(repr(conv), p.seed, k) % self.classes
        answer = f"class {c} response {_h(repr(conv), p.seed, k, 'w') % 1000}"
        if not (self.think and think):
            return answer
        s = _h(repr(conv), p.seed, k, "strategy") % self.strategies
        return f"<think>strategy {s} step {_h(repr(conv), p.seed, k, 's') % 1000}</think>\n{answer}"

    def _one(self, text: str, p: SamplingParams) -> ChatOutput:
        return ChatOutput(texts=[text] * p.n, finish_reasons=["stop"] * p.n, n_tokens=[1] * p.n, prompt_tokens=1)

    def _life(self, event: str) -> None:
        if self.life_log:
            with open(self.life_log, "a") as f:
                f.write(f"{event} {self.name}\n")

    def close(self) -> None:
        self._life("close")
        self.life_log = None  # closing twice is one close


class HashEmbedder:
    """An embedder double: each text's unit vector drawn from a generator seeded by its SHA-256, the same in every
    process. For runs whose subject is not the embeddings (a real sentence-transformers model loads in seconds, in
    every Ray worker that embeds); the real embedder is tested in tests/actors/test_embed.py and by the runs that keep
    it."""

    def __init__(self, model: str = "hash", dim: int = 16) -> None:
        self.name, self.dim = model, dim

    def embed(self, texts: Sequence[str]):
        import numpy as np

        rows = [np.random.default_rng(_h("embed", t)).standard_normal(self.dim) for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)

    def close(self) -> None:
        pass
