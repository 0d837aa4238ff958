"""The backend interface every model runtime implements: chat(requests) -> outputs, in input order.

Modelled on vLLM's `LLM.chat` / `SamplingParams`: one plain entry object per backend, sampling parameters as a small
dataclass, one call takes a list of conversations and returns one output per conversation in the same order.
Batching is the backend's business.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Conversation = list[Message]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one or more completions of a conversation.

    Attributes:
        n: completions to return for the conversation (independent samples).
        temperature: softmax temperature; 0 means greedy decoding (and forces n == 1 to be meaningful).
        top_p: nucleus sampling mass in (0, 1]; 1 disables it.
        max_tokens: most new tokens per completion. Longer completions end with finish_reason "length".
        seed: seed for the backend's sampler, where the backend honours one. Backends that batch requests
            seed per batch, so a seed makes a run repeatable for the same batches, not per request.
        logprobs: if set, return the top-`logprobs` log-probabilities of the *first* generated token
            (what a YES/NO judge or a one-letter classifier needs). OpenAI-compatible servers cap this at 20.
        stop: strings that end a completion (not included in the text).
        max_tokens_without_logprobs: where `logprobs` are asked for but the backend cannot return them (a provider
            that omits them or rejects the parameters), ask without them and generate this many tokens instead of
            `max_tokens`: an answer read from log-probs needs a few tokens, one read from text a whole word. None: the
            log-probs are required (a backend that cannot give them fails the row).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 0.9
    max_tokens: int = 1024
    seed: int | None = None
    logprobs: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens_without_logprobs: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"SamplingParams.n must be an integer >= 1, got {self.n!r}")
        if not (isinstance(self.temperature, (int, float)) and 0.0 <= self.temperature <= 5.0):
            raise ValueError(f"SamplingParams.temperature must be in [0, 5], got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.logprobs is not None and not (isinstance(self.logprobs, int) and 1 <= self.logprobs <= 20):
            raise ValueError(f"SamplingParams.logprobs must be an integer in [1, 20] or None, got {self.logprobs!r}")
        fallback = self.max_tokens_without_logprobs
        if fallback is not None and not (isinstance(fallback, int) and fallback >= 1):
            raise ValueError(f"SamplingParams.max_tokens_without_logprobs must be an integer >= 1 or None, "
                             f"got {fallback!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_(self, **changes: Any) -> "SamplingParams":
        return replace(self, **changes)


@dataclass
class ChatOutput:
    """What a backend returns for one conversation.

    Attributes:
        texts: the completions, `n` of them (empty when `error` is set).
        finish_reasons: "stop" or "length" per completion ("content_filter": the provider's safety filter stopped
            it; "error": its generation failed part-way; either way its text is empty, no answer).
        n_tokens: generated tokens per completion (None where the backend did not say: an HTTP reply without
            usage).
        prompt_tokens: tokens in the rendered conversation.
        first_token_logprobs: per completion, {token text: log-probability} of the top tokens at the first
            generated position; None where not asked for or not available.
        error: a per-row failure (e.g. the conversation does not fit the model's context). The rest of the batch
            is unaffected; fatal engine errors are raised instead.
        transient: the failure may not recur (retries exhausted on 5xx or throttling, a timed-out generation): the
            row is kept as failed in this run and computed again by a rerun, up to execution.row_retries times.
        traces: per completion, the reasoning trace the model wrote before its answer (None where it wrote none),
            kept out of `texts`: a server's `reasoning_content` / `reasoning` field, or a `<think>…</think>` block
            (see `separate_traces`). None: not looked for yet.
        opening_known: the backend knows whether the prompt opened a thinking block — it rendered the prompt (local,
            vLLM) or was told (HTTP's thinking_opened) — and put the opening tag back in front where it did
            (reopen_thinking): a bare closing tag in such a text is the answer's own, never the end of a thinking
            (split_reasoning's bare rule is for servers whose prompt the client cannot see).
    """

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    n_tokens: list[int | None] = field(default_factory=list)
    prompt_tokens: int = 0
    first_token_logprobs: list[dict[str, float]] | None = None
    error: str | None = None
    transient: bool = False
    traces: list[str | None] | None = None
    opening_known: bool = False


class BackendError(RuntimeError):
    """A backend failed for a reason that retrying this batch will not fix (bad model path, engine crash)."""


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that turns conversations into completions."""

    name: str

    def chat(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[ChatOutput]:
        """Complete each conversation.

        Args:
            conversations: the conversations, each a list of messages.
            sampling: one SamplingParams for all, or one per conversation (paired one-to-one).

        Returns:
            One ChatOutput per conversation, in input order.
        """
        ...

    def close(self) -> None:
        """Release the engine and any child processes."""
        ...


@runtime_checkable
class ContinuousBackend(Protocol):
    """A backend that also takes requests one at a time and hands each output back as soon as it is done (vLLM's
    engine loop, an HTTP client's requests in flight), so that a conversation's next turn goes in while other
    conversations are still decoding: continuous batching instead of lockstep rounds
    (engine.method.programs.drive uses it when `continuous` is true).

    Attributes:
        continuous: whether to drive this backend request by request (a backend may turn it off by option).
        max_in_flight: most requests submitted and not yet collected.
    """

    continuous: bool
    max_in_flight: int

    def submit(self, key: int, conversation: Conversation, sampling: SamplingParams) -> None:
        """Start one request; its output comes back from `collect` under `key`."""
        ...

    def collect(self) -> list[tuple[int, ChatOutput]]:
        """Outputs of requests that finished since the last call, waiting until at least one has while any is in
        flight (an empty list when none is)."""
        ...

    def cancel(self) -> None:
        """Drop every request in flight (the driver gave up on them)."""
        ...


def pair_sampling(
    conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
) -> list[SamplingParams]:
    """Expand `sampling` to one SamplingParams per conversation, checking the pairing."""
    if isinstance(sampling, SamplingParams):
        return [sampling] * len(conversations)
    params = list(sampling)
    if len(params) != len(conversations):
        raise ValueError(f"got {len(conversations)} conversations but {len(params)} sampling params")
    return params


def logsumexp(values: Sequence[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


# A system message only a template that renders the system role keeps (keeps_system).
SYSTEM_CHECK = "taskdiv-system-role-check"


def keeps_system(render: Callable[[Conversation], str]) -> bool:
    """Whether a chat template renders a system message: some drop it without a word (Phi-3-mini's first template),
    some refuse the role (Gemma's "System role not supported"). `render`: the conversation's prompt as text."""
    try:
        text = render([{"role": "system", "content": SYSTEM_CHECK}, {"role": "user", "content": "Hello."}])
    except Exception:  # the template refused the role (jinja's raise_exception, a ValueError)
        return False
    return isinstance(text, str) and SYSTEM_CHECK in text


def fold_system(conversation: Conversation) -> Conversation:
    """The conversation with its system messages put at the start of the first user turn — for a template that
    drops or refuses the system role (keeps_system), as lm-eval does: the judge's instructions and the system-prompt
    strategies' are then still read by the model, where they were lost (or every such row refused)."""
    system = [m["content"] for m in conversation if m.get("role") == "system" and isinstance(m.get("content"), str)]
    if not system:
        return conversation
    rest = [dict(m) for m in conversation if not (m.get("role") == "system" and isinstance(m.get("content"), str))]
    for m in rest:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            m["content"] = "\n\n".join([*system, m["content"]])
            return rest
    return [{"role": "user", "content": "\n\n".join(system)}, *rest]


# Finish reasons as providers and gateways pass them through (OpenAI's, Gemini's and Anthropic's own words), in
# ChatOutput's four: "length" (cut at the token limit), "content_filter" (stopped by a safety or recitation filter:
# what came before is no answer), "error" (generation failed part-way: OpenRouter's "error", Gemini's OTHER,
# LANGUAGE, MALFORMED_FUNCTION_CALL; no answer either) and "stop" (the completion ended: stop, end_turn, tool_calls,
# TGI's eos_token, or no reason given). vLLM's own (its engine's and its server's): "abort" and "error" (a request
# failed in the engine: a KV load, a rejected grammar) are errors; "repetition" (its repetition detection cut a
# looping completion) is a cut, as the token limit's.
_LENGTH_REASONS = frozenset({"length", "max_tokens", "max_output_tokens", "model_length", "repetition"})
_FILTER_REASONS = frozenset({"content_filter", "safety", "prohibited_content", "recitation", "blocklist", "spii",
                             "image_safety", "refusal"})
_FAILED_REASONS = frozenset({"error", "other", "language", "malformed_function_call", "unexpected_tool_call",
                             "abort"})
NO_ANSWER_REASONS = frozenset({"content_filter", "error"})  # ChatOutput's reasons whose text is no answer


def finish_reason(value: Any) -> str:
    """ChatOutput's finish reason for a choice's `finish_reason` (any case): a truncated or filtered completion
    passed through a gateway in Gemini's or Anthropic's words ("MAX_TOKENS", "SAFETY", "max_tokens") was recorded as
    complete, and the filtered part kept as an answer."""
    reason = value.lower() if isinstance(value, str) else ""
    return ("length" if reason in _LENGTH_REASONS else "content_filter" if reason in _FILTER_REASONS
            else "error" if reason in _FAILED_REASONS else "stop")


def merge_by_text(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """{text: log-prob} of (token text, log-prob) pairs, the log-probs of tokens that decode to the same text added
    (log-sum-exp): SentencePiece's "▁YES" and "YES" both read "YES", and keeping one of them drops the other's mass
    (or, kept last, the likelier one's) — the three backends read one model's P(YES) alike so."""
    grouped: dict[str, list[float]] = {}
    for text, value in pairs:
        grouped.setdefault(text, []).append(float(value))
    return {text: (values[0] if len(values) == 1 else logsumexp(values)) for text, values in grouped.items()}


def repeat_greedy(out: "ChatOutput", n: int) -> "ChatOutput":
    """A greedy (temperature 0) output asked for n completions: the one completion n times. Greedy decoding has one
    answer, and transformers and vLLM refuse n > 1 without sampling (a temperature sweep through 0 asks for it)."""
    if out.error is not None or n == 1:
        return out
    return replace(
        out, texts=out.texts * n, finish_reasons=out.finish_reasons * n, n_tokens=out.n_tokens * n,
        first_token_logprobs=None if out.first_token_logprobs is None else out.first_token_logprobs * n,
        traces=None if out.traces is None else out.traces * n)


def generated_tokens(out: "ChatOutput", p: SamplingParams) -> int:
    """Tokens the backend generated for an output: a greedy one asked for n > 1 was generated once (repeat_greedy),
    so it counts once in the throughput figures."""
    counts = [t or 0 for t in out.n_tokens]  # unknown counts (HTTP without usage) are the client's tokens_missing
    return (counts[0] if counts else 0) if p.greedy and p.n > 1 else sum(counts)


# Control characters: C0 but tab (and newline where kept), DEL, C1. A server's error text or a run's values quoted to
# a terminal or a log could set its title, clear it, write its clipboard (OSC 52) or forge log lines.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, newlines: bool = False) -> str:
    """`text` with its control characters written as \\xNN, for a terminal or a log line; `newlines` keeps line
    breaks (a message of several lines of our own)."""
    pattern = _CONTROL_BUT_NEWLINE if newlines else _CONTROL
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def insecure_key_transport(base_url: str, api_key_env: str | None, allowed: bool) -> str | None:
    """Why sending the API key to `base_url` would expose it (plain http to a host other than this machine), or
    None. `allowed`: the config says so explicitly (options.allow_insecure_http: true)."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if not api_key_env or allowed or parts.scheme != "http":
        return None
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    shown = f"http://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"  # no user info
    return (f"{shown!r} is plain http to {host}: the API key in ${api_key_env} would cross the network "
            "unencrypted. Use https, or set options.allow_insecure_http: true for a network you trust")



_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys that are valid variable names too (Gemini's AIza…, Hugging Face's hf_…, Groq's gsk_…): a provider's prefix, or
# random characters — long, with several digits and letters (of both cases, or hex). A pasted key would be echoed as
# a variable's name; names like AzureOpenAIKeyEastUS2 or OpenAI_API_Key_Prod2 (words, a digit or two) stay names.
_KEY_PREFIXES = ("AIza", "hf_", "gsk_", "xai_", "sk_", "pk_")


def _looks_like_a_key(name: str) -> bool:
    if len(name) < 20:
        return False
    if name.startswith(_KEY_PREFIXES):
        return True
    digits = sum(c.isdigit() for c in name)
    lower, upper = sum(c.islower() for c in name), sum(c.isupper() for c in name)
    hex_only = all(c in "0123456789abcdef" for c in name)
    return digits >= 4 and (hex_only or (lower >= 4 and upper >= 4))


def api_key_env_problem(api_key_env: Any) -> str | None:
    """Why `api_key_env` is no environment variable's name, or None (a name, or None for no key). The value is
    never shown: the likeliest mistake is the key itself pasted in its place."""
    if api_key_env is None or isinstance(api_key_env, str) and _ENV_NAME.fullmatch(api_key_env) \
            and not _looks_like_a_key(api_key_env):
        return None
    return ("must name the environment variable that holds the API key (e.g. OPENAI_API_KEY), not hold the key "
            f"itself: export the key as a variable and put its name here (got {type(api_key_env).__name__} of "
            f"{len(str(api_key_env))} characters, not shown)")


def api_key_problem(api_key_env: str, value: str | None) -> str | None:
    """Why the API key in environment variable `api_key_env` cannot be sent (never showing it), or None. A key is
    read with surrounding whitespace removed (a .env file saved with CRLF line ends leaves a trailing \\r); one with
    any other character outside printable ASCII would be refused by the HTTP library on every request, in a message
    that quotes the key."""
    if (misnamed := api_key_env_problem(api_key_env)) is not None:
        return misnamed
    if not value or not value.strip():
        return f"the environment variable {api_key_env} is not set or is empty"
    bad = [c for c in value.strip() if not 33 <= ord(c) <= 126]
    if bad:
        return (f"the environment variable {api_key_env} holds a character that cannot go in an HTTP header "
                f"({ascii(bad[0])}): set it to the key alone")
    return None


PRICE_KEYS = ("prompt_per_mtok", "completion_per_mtok")
# Optional: prompt tokens the provider served from its cache (usage.prompt_tokens_details.cached_tokens) are billed
# at a discount; without this price they are priced as any prompt token (an upper bound, never an underestimate).
CACHED_PRICE_KEY = "cached_prompt_per_mtok"


def prices_problem(prices: Any) -> tuple[str, str] | None:
    """What is wrong with a model's `options.prices`, as (its key, why), or None (none given, or usable): both keys,
    USD per million tokens, and optionally `cached_prompt_per_mtok`; nothing else. Preflight refuses it by this; the
    plan prices nothing with it (an unknown cost); the HTTP client refuses it when built."""
    if prices is None:
        return None
    if not isinstance(prices, dict) or not set(PRICE_KEYS) <= set(prices) <= {*PRICE_KEYS, CACHED_PRICE_KEY} \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in prices.values()):
        return "prices", (f"prices must be {{'prompt_per_mtok': USD, 'completion_per_mtok': USD}} (and optionally "
                          f"'{CACHED_PRICE_KEY}': USD), got {prices!r}")
    return None


# Reasoning models write their thinking between these tags (DeepSeek-R1, QwQ, Qwen3, and vLLM's parsers for them).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Mistral's Magistral (2509 on) thinks between control tokens of its own: text decoded with them kept (a responses
# file, a server asked to keep special tokens) shows them as these tags; a backend that decodes with special tokens
# skipped, as every one does, loses them and the thinking runs into the answer, so the local and vLLM backends split
# such a model's generated ids at them (split_think_tokens).
BRACKET_OPEN, BRACKET_CLOSE = "[THINK]", "[/THINK]"
THINK_TAGS = ((THINK_OPEN, THINK_CLOSE), (BRACKET_OPEN, BRACKET_CLOSE))

# Where a chat message keeps a reasoning model's thinking apart from `content`: vLLM's reasoning parsers (`reasoning`
# since 0.11, `reasoning_content` before, still accepted), DeepSeek's API and others (`reasoning_content`), TRL's
# parsed responses for some chat templates and Ollama's chat API (`thinking`).
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")


def message_trace(message: dict) -> str | None:
    """A chat message's thinking kept apart from its content: the first non-empty string of REASONING_FIELDS, else
    the thinking parts of a content list (content_parts)."""
    # A field of whitespace alone (a server with thinking off) is no trace: kept, it made the group "traced" and
    # every trace pair with it unresolved.
    field = next((message[k] for k in REASONING_FIELDS if isinstance(message.get(k), str) and message[k].strip()),
                 None)
    return field if field is not None else content_parts(message.get("content"))[1]


# Content parts that hold thinking, not the answer: Mistral's Magistral (`{"type": "thinking", "thinking": [text
# parts]}`), Anthropic-style blocks (`"thinking": "…"`).
THINKING_PARTS = ("thinking", "reasoning")


def content_parts(content: Any) -> tuple[str | None, str | None]:
    """(text, thinking) of a message's content: a string is all text; a list of content parts (OpenAI's form, which
    Magistral and some gateways also answer in) gives its text parts joined, and its thinking parts joined apart —
    never the thinking as the answer, nor an answer lost because its content is not a string. None where there is
    none of either."""
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        return None, None
    texts, thoughts = [], []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type", "text")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in THINKING_PARTS:
            inner = part.get("thinking", part.get("text"))
            if isinstance(inner, list):
                inner = "".join(p["text"] for p in inner if isinstance(p, dict) and isinstance(p.get("text"), str))
            if isinstance(inner, str) and inner:
                thoughts.append(inner)
    return ("".join(texts) if texts else None), ("\n\n".join(thoughts) if thoughts else None)


def split_reasoning(text: str, bare_close: bool = True) -> tuple[str, str | None]:
    """(answer, trace) of one completion whose reasoning is inline, between `<think>` and `</think>` or Magistral's
    `[THINK]` and `[/THINK]` (THINK_TAGS):

    - `<think>T</think>A` → (A, T), leading whitespace before the tag allowed;
    - `T</think>\nA` without an opening tag → (A, T): chat templates that open the block in the prompt (DeepSeek-R1,
      Qwen3's thinking mode) leave only the closing tag in the completion, and these models end their thinking with
      it at the end of a line; a bare `</think>` with more text after it on its line is text the answer quotes
      ("write </think> to close the block"), not the end of a trace;
    - `<think>T` never closed (the completion ran out of tokens while thinking) → ("", T): there is no answer, and
      the thinking is never read as one;
    - several blocks one after the other at the start (`<think>T1</think><think>T2</think>A`) → (A, "T1\n\nT2"):
      a model that thinks again before answering (only the first was split off, and the second judged as answer);
    - anything else, a block that opens after the start of the text included → (text, None): reasoning models
      think first, and a tag further on is text the answer quotes; so is a bare `</think>` inside a fenced code block
      (the answer shows the tag in code), and any bare closing tag with `bare_close` False (a backend that knows
      the prompt opened no thinking: ChatOutput.opening_known).
    """
    rest = text.lstrip()
    thoughts: list[str] = []
    while (tags := next(((o, c) for o, c in THINK_TAGS if rest.startswith(o)), None)) is not None:
        body = rest[len(tags[0]):]
        end = body.find(tags[1])
        if end < 0:
            thoughts.append(body.strip())
            return "", "\n\n".join(t for t in thoughts if t)
        thoughts.append(body[:end].strip())
        rest = body[end + len(tags[1]):].lstrip()
    if thoughts:
        return rest, "\n\n".join(t for t in thoughts if t)
    bare = _BARE_CLOSE.search(text) if bare_close else None
    if bare is None:
        return text, None
    close = bare.group(1)
    opening = next(o for o, c in THINK_TAGS if c == close)
    end = bare.start()
    if opening in text[:end] or len(_FENCE.findall(text[:end])) % 2:
        return text, None
    return text[end + len(close):].lstrip(), text[:end].strip()


_BARE_CLOSE = re.compile("(" + "|".join(re.escape(c) for _, c in THINK_TAGS) + r")[ \t]*(?:\r?\n|$)")
_FENCE = re.compile(r"^[ \t]*(?:```|~~~)", re.M)  # a markdown code fence's line: an odd count before a tag opens one


def think_token_ids(tokenizer: Any) -> tuple[int, int] | None:
    """The ids of Magistral's thinking tokens ([THINK], [/THINK]) where a tokenizer has both as tokens of their own,
    else None."""
    try:
        vocab = tokenizer.get_vocab()
    except Exception:  # a tokenizer without a vocabulary to show has none
        return None
    opening, closing = vocab.get(BRACKET_OPEN), vocab.get(BRACKET_CLOSE)
    return None if opening is None or closing is None else (int(opening), int(closing))


def split_think_tokens(ids: Sequence[int], marks: tuple[int, int],
                       decode: Callable[[list[int]], str]) -> tuple[str, str | None] | None:
    """(answer, trace) of generated ids whose thinking is between Magistral's thinking tokens (`marks`: their ids),
    each part decoded by `decode` (with special tokens skipped); None where the ids hold neither token (the caller
    decodes them plainly). As split_reasoning: the block must open first (what is before it decodes to spaces only),
    one never closed is no answer (""), a closing token without an opening one ends a thinking the prompt opened,
    and blocks one after the other at the start are one trace."""
    ids = list(ids)
    opening, closing = marks
    start = ids.index(opening) if opening in ids else -1
    if start >= 0 and decode(ids[:start]).strip():
        return None  # a block further on: the answer's text, as a tag further on is
    if start < 0 and closing not in ids:
        return None
    thoughts: list[str] = []
    body = ids[start + 1:]
    while True:
        if closing not in body:
            thoughts.append(decode(body).strip())
            return "", "\n\n".join(t for t in thoughts if t)
        end = body.index(closing)
        thoughts.append(decode(body[:end]).strip())
        body = body[end + 1:]
        again = body.index(opening) if opening in body else -1
        if again < 0 or decode(body[:again]).strip():
            return decode(body).strip(), "\n\n".join(t for t in thoughts if t)
        body = body[again + 1:]


# OpenAI's harmony format (gpt-oss): the completion is a sequence of messages on channels — `analysis` (the reasoning),
# `commentary` (tool calls), `final` (the answer) — each `<|channel|>NAME[ header]<|message|>TEXT` ended by `<|end|>`,
# `<|return|>` or `<|call|>`. Decoded with special tokens skipped, they run together ("analysis…assistantfinal…"):
# a backend serving such a model decodes with them kept and splits the channels (split_harmony).
HARMONY_CHANNEL, HARMONY_MESSAGE = "<|channel|>", "<|message|>"
# A channel's header ends at its message, and never runs past the next channel: scanning to the end of the text
# from each channel without a message took quadratic time.
_HARMONY_SEGMENT = re.compile(r"<\|channel\|>\s*(\w+)(?:(?!<\|message\|>|<\|channel\|>).)*<\|message\|>(.*?)"
                              r"(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|<\|channel\|>|$)", re.DOTALL)


def uses_harmony(tokenizer: Any) -> bool:
    """Whether a tokenizer is harmony's (gpt-oss): it has the channel and message markers as tokens of their own."""
    try:
        vocab = tokenizer.get_vocab()
    except Exception:  # a tokenizer without a vocabulary to show is not harmony's
        return False
    return HARMONY_CHANNEL in vocab and HARMONY_MESSAGE in vocab


def split_harmony(text: str) -> tuple[str, str | None] | None:
    """(answer, trace) of a harmony completion decoded with its special tokens: the `final` channel's text is the
    answer, the `analysis` channel's the trace; no final message (cut off while reasoning, or only a tool call) →
    ("", trace). None where the text holds no channel at all (not harmony: the caller decodes it plainly)."""
    segments = [(m.group(1), m.group(2)) for m in _HARMONY_SEGMENT.finditer(text)]
    if not segments:
        return None
    final = [body.strip() for channel, body in segments if channel == "final"]
    analysis = [body.strip() for channel, body in segments if channel == "analysis" and body.strip()]
    return "\n\n".join(final), ("\n\n".join(analysis) if analysis else None)


def reopen_thinking(text: str, trace: str | None) -> str:
    """A completion of a chat template that opens `<think>` in the prompt (opens_thinking) starts inside the
    thinking: the tag is put back in front where no trace was given apart, so that one cut off while thinking (no
    closing tag) is no answer and one that closed it is split into trace and answer (split_reasoning)."""
    if trace is None and text and not text.lstrip().startswith(THINK_OPEN):
        return THINK_OPEN + text
    return text


def opens_thinking(prompt_tail: str) -> bool:
    """Whether a rendered prompt ends inside an opened `<think>` block (the chat templates of DeepSeek-R1 and of
    Qwen3's thinking mode put it there): its completions start in the middle of the thinking. A backend that renders
    the prompt itself puts the tag back in front of such completions, so that a completion cut off while thinking
    is never read as an answer."""
    return prompt_tail.rstrip().endswith(THINK_OPEN)


def separate_traces(out: ChatOutput) -> ChatOutput:
    """Make sure an output's reasoning is apart from its answers: where a backend gave no trace for a completion,
    a `<think>` block in its text is split off (split_reasoning; a bare closing tag only where the backend cannot
    know whether the prompt opened the thinking). Returns the same object, changed in place."""
    traces = list(out.traces) if out.traces is not None else [None] * len(out.texts)
    traces += [None] * (len(out.texts) - len(traces))
    for k, text in enumerate(out.texts):
        if traces[k] is None and text:
            out.texts[k], traces[k] = split_reasoning(text, bare_close=not out.opening_known)
    out.traces = traces[:len(out.texts)]
    return out
