"""Serve any ChatBackend as a small OpenAI-compatible HTTP server on loopback.

Endpoints: `POST /v1/chat/completions`, `POST /v1/embeddings` (when an embedder is given), `GET /v1/models`,
`GET /health`. Standard library only
(`http.server.ThreadingHTTPServer`: one thread per connection), so it adds no dependency and lets the fault
injection close a connection without any response, which an ASGI framework would not let us do.

Batching: every request thread parses its request and queues it; one batcher thread takes the first queued
request, waits up to `batch_window_ms` (default 10 ms) for more, then makes ONE `backend.chat()` call for all of
them (at most `max_batch` conversations, each with its own SamplingParams). Requests that arrive while the backend
is busy queue up and form the next batch without waiting for another window. On the CPU model a batch of 40
decodes ~10× faster per token than 40 single calls, and the single batcher thread also means the backend is never
called concurrently (torch models are not re-entrant).

Response details: `logprobs.content` holds the first generated position only (the backend interface returns
log-probs for that position alone), its `token` being the most likely one; each choice also carries a
non-standard `completion_tokens` count, which `actors.http` reads so per-completion token counts stay exact for
n > 1. A row the backend fails (`ChatOutput.error`, e.g. context too long) is answered 400, as vLLM does.

Fault injection (for tests), fixed at construction: a plan `[("429", 3), ("500", 2), ("slow", 1), ("drop", 1)]`
consumed in order of arrival by valid chat requests, or a callable deciding per request. Kinds: any HTTP status
"400".."599" (429 and 503 carry `Retry-After`), "slow" (sleep `slow_s`, then close the connection without a
response: a hung upstream) and "drop" (close the connection at once without a response).

CLI: `python -m tests.support.serve --model smollm2-135m --port 0` prints the base URL (`http://127.0.0.1:PORT/v1`) on
one line of stdout and serves until interrupted. It binds loopback only unless `--allow-remote` is passed.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from actors.base import ChatBackend, ChatOutput, Conversation, SamplingParams, split_reasoning

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
LOOPBACK_NAMES = ("localhost",)


BAD_REPLIES = ("error200", "huge", "nested", "drip", "gzip")
REDIRECT_TO = "https://api.example.com/v1/chat/completions?sig=redirect-signature-secret"


def _gemini_429(limit: str, delay_s: str, quota_id: str | None = None) -> tuple[int, Any]:
    """Gemini's 429 (its error object wrapped in a list): its message naming the quota's `limit`, a RetryInfo of
    `delay_s` seconds and, with `quota_id`, the QuotaFailure naming the quota."""
    metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    details: list[dict[str, Any]] = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": metric, "quotaId": quota_id}]}] if quota_id else []
    details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{delay_s}s"})
    return 429, [{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details,
                            "message": "You exceeded your current quota, please check your plan and billing details. "
                                       f"Quota exceeded for metric: {metric}, {limit} Please retry in {delay_s}s."}}]


# Replies about the account, as providers send them (bodies from their docs and public issue threads): Gemini's bad
# key (400, its error object wrapped in a list), Anthropic's empty balance (400), OpenAI's spent quota (429).
ACCOUNT_REPLIES: dict[str, tuple[int, Any]] = {
    "bad_key": (400, [{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                 "status": "INVALID_ARGUMENT",
                                 "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                              "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}]),
    "no_credit": (400, {"type": "error", "error": {
        "type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API. "
                                                    "Please go to Plans & Billing to upgrade or purchase credits."}}),
    "quota": (429, {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                              "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}),
    # Gemini's per-minute rate limit: the same words as OpenAI's spent quota, but it passes (retried, not fatal). Its
    # delay is in the body only (no Retry-After); Gemini's are ~26 s, shortened here so that tests wait little.
    "gemini_rate": _gemini_429("limit: 10.", "0.4", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    # Gemini's free-tier daily quota (as public issue threads quote it): worded as its per-minute limit and asking
    # for a retry in seconds too, but it resets once a day.
    "gemini_daily": _gemini_429("limit: 20, model: gemini-2.5-flash.", "16",
                                "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    # A model the account's tier has no quota for at all.
    "gemini_no_tier": _gemini_429("limit: 0, model: gemini-2.5-pro.", "25"),
}


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    Attributes:
        kind: an HTTP status "300".."599" (a 3xx redirects to REDIRECT_TO), "slow" or "drop"; or a reply with
            status 200: "error200" (an OpenAI error object), "huge" (a body of `size` bytes), "nested" (JSON nested
            `size` levels deep), "drip" (a valid reply sent one byte every `delay_s` seconds), "gzip" (a body said to
            be gzip-encoded that is not), "filtered" (a safety filter cut each answer: finish_reason content_filter),
            "failed" (each generation failed part-way: finish_reason "error", as OpenRouter passes an upstream's).
        size: bytes of "huge", levels of "nested".
        retry_after: the Retry-After header for 429/503 (None: the server's default; "" sends none).
        delay_s: how long "slow" sleeps (None: the server's `slow_s`).
        code: the `error.code` inside an "error200" (a gateway passes an upstream's 502 so).
    """

    kind: str
    retry_after: str | None = None
    delay_s: float | None = None
    size: int = 0
    code: int = 500

    def __post_init__(self) -> None:
        if self.kind not in BAD_REPLIES + tuple(ACCOUNT_REPLIES) + ("slow", "drop", "filtered", "failed") and not (
                self.kind.isdigit() and 300 <= int(self.kind) <= 599):
            raise ValueError(f"fault kind must be an HTTP status 300..599, 'slow', 'drop', 'filtered', 'failed' "
                             f"or one of {BAD_REPLIES + tuple(ACCOUNT_REPLIES)}; got {self.kind!r}")


FaultSpec = Fault | str
FaultPlan = Sequence[tuple[FaultSpec, int]] | Callable[[int, dict], FaultSpec | None]


@dataclass
class RequestRecord:
    """One chat request as the server saw it (valid requests only; malformed ones are answered 400 and not logged).

    Attributes:
        index: arrival order among logged requests, from 0.
        body: the decoded request body.
        fault: the injected fault's kind, or None.
        status: the HTTP status sent; None when the connection was closed without a response.
    """

    index: int
    body: dict
    fault: str | None = None
    status: int | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def last_message(self) -> str:
        """Content of the conversation's last message (a convenient key for tests)."""
        return str(self.body["messages"][-1].get("content", ""))


class BadRequest(ValueError):
    """A request the server refuses with 400; the message goes back to the client."""


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_chat_request(body: Any, default_max_tokens: int = 1024) -> tuple[Conversation, SamplingParams, int]:
    """Validate an OpenAI chat-completions request body.

    Args:
        body: the decoded JSON.
        default_max_tokens: max_tokens when the request gives none.

    Returns:
        (conversation, sampling params, number of top log-probs to return — 0 when not asked).

    Raises:
        BadRequest: with a message saying what is wrong.
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty list of {\"role\", \"content\"} objects")
    conversation: Conversation = []
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{k}] must be an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise BadRequest(f"messages[{k}].role must be one of {', '.join(ROLES)}; got {role!r}")
        if isinstance(content, list):  # the multi-part form: keep the text parts
            texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if not all(isinstance(t, str) for t in texts):
                raise BadRequest(f"messages[{k}].content has a text part without text")
            content = "".join(texts)
        if not isinstance(content, str):
            raise BadRequest(f"messages[{k}].content must be a string")
        conversation.append({"role": role, "content": content})

    def number(name: str, default: Any, kinds: tuple[type, ...]) -> Any:
        value = body.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise BadRequest(f"'{name}' must be a number, got {value!r}")
        return value

    n = number("n", 1, (int,))
    temperature = number("temperature", 1.0, (int, float))
    top_p = number("top_p", 1.0, (int, float))
    max_tokens = number("max_completion_tokens", None, (int,))
    if max_tokens is None:
        max_tokens = number("max_tokens", default_max_tokens, (int,))
    seed = number("seed", None, (int,))
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop = tuple(stop)
    else:
        raise BadRequest("'stop' must be a string or a list of strings")
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise BadRequest("'logprobs' must be a boolean")
    top_logprobs = number("top_logprobs", 0, (int,))
    if not 0 <= top_logprobs <= 20:
        raise BadRequest(f"'top_logprobs' must be in [0, 20], got {top_logprobs}")
    if top_logprobs and not logprobs:
        raise BadRequest("'top_logprobs' needs 'logprobs': true")
    try:
        sampling = SamplingParams(
            n=n,
            temperature=float(temperature),
            top_p=float(top_p),
            max_tokens=max_tokens,
            seed=seed,
            logprobs=max(1, top_logprobs) if logprobs else None,
            stop=stop,
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return conversation, sampling, top_logprobs


REASONING_MODES = ("inline", "reasoning_content", "reasoning", "parts")
# "parts": content as a list of content parts, the thinking in a part of its own, as Mistral's Magistral models answer
# ({"type": "thinking", "thinking": [text parts]} then {"type": "text", "text": answer}).
PARTS = "parts"
# A server without a reasoning parser for a model whose chat template opened `<think>` in the prompt: the model never
# writes the opening tag, so the content starts inside the thinking (the backend's leading `<think>` is dropped).
TEMPLATE_OPENED = "opened"


def completion_response(model: str, out: ChatOutput, top_logprobs: int | None,
                        reasoning: str = "inline") -> dict[str, Any]:
    """An OpenAI chat-completions response for one ChatOutput.

    Args:
        model: the served model name.
        out: the backend's output (without error).
        top_logprobs: how many top log-probs to return per choice; None when log-probs were not asked for.
        reasoning: where a `<think>` block of the backend's text goes, as servers of reasoning models do: "inline"
            (left in `content`, as a server without a reasoning parser returns it), or split off into the message's
            "reasoning_content" (DeepSeek's API, vLLM before 0.11) or "reasoning" field (vLLM's parsers since), or
            "parts" (PARTS: the content a list of parts, the thinking a part of its own, as Mistral's Magistral); or
            "opened" (TEMPLATE_OPENED): the content without its opening tag, as from a model whose chat template opened
            the block in the prompt, served without a parser.

    Returns:
        The response body.
    """
    choices = []
    for i, text in enumerate(out.texts):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning == TEMPLATE_OPENED:
            stripped = text.lstrip()
            message["content"] = stripped[len("<think>"):] if stripped.startswith("<think>") else text
        elif reasoning == PARTS:
            answer, trace = split_reasoning(text)
            thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": trace}]}] if trace else []
            message["content"] = [*thinking, {"type": "text", "text": answer}]
        elif reasoning != "inline":
            answer, trace = split_reasoning(text)
            if trace is not None:
                message = {"role": "assistant", "content": answer, reasoning: trace}
        choice: dict[str, Any] = {
            "index": i,
            "message": message,
            "finish_reason": out.finish_reasons[i] if i < len(out.finish_reasons) else "stop",
            "logprobs": None,
            "completion_tokens": out.n_tokens[i] if i < len(out.n_tokens) else 0,
        }
        lps = out.first_token_logprobs
        if top_logprobs is not None and lps and i < len(lps) and lps[i]:
            ranked = sorted(lps[i].items(), key=lambda kv: -kv[1])
            entries = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in ranked]
            # The sampled token is not part of ChatOutput; the most likely one stands in (exact when greedy).
            choice["logprobs"] = {"content": [{**entries[0], "top_logprobs": entries[:top_logprobs]}]}
        choices.append(choice)
    completion_tokens = sum(out.n_tokens)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": out.prompt_tokens + completion_tokens,
        },
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error format."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}


@dataclass
class _Job:
    conversation: Conversation
    sampling: SamplingParams
    future: Future = field(default_factory=Future)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a sleeping "slow" handler or an idle keep-alive connection must not block shutdown
    request_queue_size = 256  # the default backlog of 5 makes bursts of connections wait for SYN retries (1 s)
    app: "ChatServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that cancels a request (a stopped stage) closes its connection mid-read: that is the client's
        # right, not a server fault, and socketserver's default would print a traceback on stderr for it.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            log.debug("%s closed the connection", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's pool reuses connections
    timeout = 120  # idle keep-alive connections end eventually
    server: _HTTPServer
    # The chat request being answered: its status is recorded before the reply's first byte, so a client that has
    # its reply never reads a record still without it (a test reading `requests` right after a call raced this).
    record: "RequestRecord | None" = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path.rstrip("/")
        app = self.server.app
        if path == "/health":
            self.send_json(200, {"status": "ok"})
        elif path == "/v1/models":
            created = int(app.started_at)
            self.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": app.model_name, "object": "model", "created": created, "owned_by": "taskdiv"}],
                },
            )
        else:
            self.send_json(404, error_body(404, f"no route GET {path or '/'}"))

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path.rstrip("/")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self.send_json(400, error_body(400, "bad Content-Length"))
            return
        # Who is asking before what they send: an unauthorised client must not make the server read (and hold in
        # memory) a body of its chosen size.
        if not self.server.app._authorized(self):
            self.close_connection = True
            self.send_json(401, error_body(401, "missing or wrong API key"))  # never echo what was sent
            return
        if length > self.server.app.max_body_bytes:
            self.close_connection = True
            self.send_json(413, error_body(413, f"the body is over {self.server.app.max_body_bytes} bytes"))
            return
        raw = self.rfile.read(length) if length else b""
        if path == "/v1/embeddings" and self.server.app.embedder is not None:
            self.server.app._handle_embeddings(self, raw)
            return
        if path != "/v1/chat/completions":
            # As web servers' default pages do, the whole request target, query and all.
            self.send_json(404, error_body(404, f"no route POST {self.path or '/'}"))
            return
        self.server.app._handle_chat(self, raw)

    def send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        if self.record is not None:
            self.record.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timed out); nothing to do
            self.close_connection = True


class ChatServer:
    """An OpenAI-compatible server in front of a ChatBackend.

    Args:
        backend: what answers; the caller keeps ownership (stop() does not close it).
        host: the address to bind; loopback only unless `allow_remote`.
        port: the port; 0 picks a free one (see `port` / `url` after construction).
        model_name: the name served in /v1/models and accepted in requests (default: backend.name); a request for
            another model is answered 404.
        batch_window_ms: how long the batcher waits after the first request for others to join its batch.
        max_batch: most conversations in one backend call.
        faults: a fault plan (list of (kind or Fault, count), consumed in arrival order) or a callable
            (request index, body) -> kind, Fault or None.
        slow_s: how long a "slow" fault sleeps by default.
        retry_after: the default Retry-After header value for injected 429/503.
        api_key: if set, requests must send "Authorization: Bearer <api_key>" (401 otherwise).
        max_choices: serve at most this many choices per request, ignoring a larger `n` (imitates gateways that
            ignore n); None serves n.
        allow_remote: permit a non-loopback `host`.
        default_max_tokens: max_tokens for requests that give none.
        embedder: if given (anything with `.embed(texts) -> array`), `POST /v1/embeddings` serves it too.
        logprobs_mode: how the server treats `logprobs` / `top_logprobs`, as providers do (shared/notes/providers.md):
            "serve" (OpenAI, vLLM: the first token's top log-probs), "omit" (Claude's compatibility layer: the
            parameters are accepted and ignored, no log-probs come back), "reject" (some Gemini endpoints: HTTP 400
            naming the parameter).
        max_logprobs: most top log-probs served; a request for more is refused with a 400 in vLLM's words (a server
            started with `--max-logprobs 5`: "Requested sample logprobs of 20, which is greater than max allowed:
            5") or, with `max_logprobs_words="openai"`, OpenAI's ("Invalid 'top_logprobs': integer above maximum
            value. Expected a value <= 20, but got 21 instead.").
        latency_s: every chat request waits this long before it is queued, each on its own thread (an API's
            round trip: requests in flight together wait together; benchmarks/overlap.py); or a callable of the
            request body giving each request's wait.
        reasoning: where a `<think>` block in the backend's text goes (see `completion_response`).
        n_mode: "serve" (any n), or "reject": HTTP 400 for n > 1, as Anthropic's compatibility layer ("n must be
            exactly 1"; the wording here is ours, the client does not read it); "gemini": HTTP 400 for n > 8 in the
            words Gemini gives a candidateCount out of its range; "gemini-3": HTTP 400 for n > 1 as Gemini's 3.x
            models ("Multiple candidates is not enabled for this model", no field named).
        sampling_mode: "any", or "exclusive": HTTP 400 when a request carries both `temperature` and `top_p`, with
            the message Claude models from Sonnet 4.5 on give.
        max_tokens_mode: "any", or "reject": HTTP 400 for a request carrying `max_tokens`, with the message and
            `param` OpenAI's o-series and GPT-5.x models give (they take `max_completion_tokens`).
        hidden_reasoning_tokens: a reasoning model's hidden thinking, as OpenAI's reasoning models report it: each
            completion first spends this many tokens (`usage.completion_tokens_details.reasoning_tokens`); with a
            budget no larger, the answer is empty and cut at the limit. A list: per completion served, in order
            (cycled), so that some completions of a row answer and others run out thinking, whether they come in
            one reply or one request each.
        usage: False: chat replies carry no `usage` (some gateways), so their tokens and cost are unknown.
        cached_prompt_tokens: prompt tokens each chat reply says were served from a cache (at most its prompt's;
            `usage.prompt_tokens_details.cached_tokens`, as OpenAI and vLLM report them).
        reasoning_usage: how hidden reasoning is reported: "details" (`completion_tokens_details.reasoning_tokens`,
            counted in `completion_tokens`, as OpenAI), "total" (only in `total_tokens`, above prompt plus
            completion tokens: Gemini counts its thoughts so, apart from the answer's tokens) or "gateway" (in the
            total and named in `completion_tokens_details.reasoning_tokens`, but not in `completion_tokens`: how
            gateways that translate Gemini report them).
        reasoning_off: a `reasoning_effort` value that switches the hidden reasoning off (Gemini's OpenAI-compatible
            endpoint documents "none"); None: every request reasons.
        refused_status: the status of the "reject" and "exclusive" modes' refusals: 400, or 422 (Mistral's "Extra
            inputs are not permitted", FastAPI validation on gateways).
        empty_turns: "any", or "reject": HTTP 400 for a message before the last whose text is empty or whitespace,
            with the message Anthropic's API gives.

    Attributes:
        requests: a RequestRecord per valid chat request, in arrival order.
        batch_sizes: conversations per backend call, in call order.
        max_in_flight: most chat requests being handled at once so far.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str | None = None,
        batch_window_ms: float = 10.0,
        max_batch: int = 64,
        faults: FaultPlan | None = None,
        slow_s: float = 5.0,
        retry_after: str = "1",
        api_key: str | None = None,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_choices: int | None = None,
        allow_remote: bool = False,
        default_max_tokens: int = 1024,
        embedder: Any = None,
        logprobs_mode: str = "serve",
        latency_s: float | Callable[[dict], float] = 0.0,
        reasoning: str = "inline",
        n_mode: str = "serve",
        sampling_mode: str = "any",
        max_tokens_mode: str = "any",
        hidden_reasoning_tokens: int | Sequence[int] = 0,
        reasoning_usage: str = "details",
        reasoning_off: str | None = None,
        usage: bool = True,
        cached_prompt_tokens: int = 0,
        refused_status: int = 400,
        empty_turns: str = "any",
        max_logprobs: int | None = None,
        max_logprobs_words: str = "vllm",
    ) -> None:
        if max_logprobs_words not in ("vllm", "openai"):
            raise ValueError(f"max_logprobs_words must be vllm or openai, got {max_logprobs_words!r}")
        self.max_logprobs, self.max_logprobs_words = max_logprobs, max_logprobs_words
        for name, value, allowed in (("n_mode", n_mode, ("serve", "reject", "gemini", "gemini-3")),
                                     ("sampling_mode", sampling_mode, ("any", "exclusive")),
                                     ("max_tokens_mode", max_tokens_mode, ("any", "reject")),
                                     ("reasoning_usage", reasoning_usage, ("details", "total", "gateway"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.n_mode, self.sampling_mode, self.max_tokens_mode = n_mode, sampling_mode, max_tokens_mode
        if refused_status not in (400, 422):
            raise ValueError(f"refused_status must be 400 or 422, got {refused_status!r}")
        self.refused_status = refused_status
        if empty_turns not in ("any", "reject"):
            raise ValueError(f"empty_turns must be any or reject, got {empty_turns!r}")
        self.empty_turns = empty_turns
        self.hidden_reasoning_tokens = hidden_reasoning_tokens
        self._completions_thought = 0
        self.reasoning_usage, self.reasoning_off = reasoning_usage, reasoning_off
        self.usage = usage
        self.cached_prompt_tokens = cached_prompt_tokens
        if reasoning not in (*REASONING_MODES, TEMPLATE_OPENED):
            raise ValueError(f"reasoning must be one of {(*REASONING_MODES, TEMPLATE_OPENED)}, got {reasoning!r}")
        self.reasoning = reasoning
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to bind {host!r}: not a loopback address (pass allow_remote=True to permit it)")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if logprobs_mode not in ("serve", "omit", "reject"):
            raise ValueError(f"logprobs_mode must be serve, omit or reject, got {logprobs_mode!r}")
        self.logprobs_mode = logprobs_mode
        self.latency_s = latency_s
        self.backend = backend
        self.embedder = embedder
        self._embed_lock = threading.Lock()  # one embedding call at a time: torch models are not re-entrant
        self.model_name = model_name or getattr(backend, "name", "model")
        self.batch_window_s = batch_window_ms / 1000.0
        self.max_batch = max_batch
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.max_choices = max_choices
        self.default_max_tokens = default_max_tokens
        self._api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self._fault_fn, self._fault_plan = (faults, None) if callable(faults) else (None, self._expand(faults or []))
        self.requests: list[RequestRecord] = []
        self.batch_sizes: list[int] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._stopping = False
        self.started_at = time.time()
        self._httpd = _HTTPServer(("127.0.0.1" if host == "localhost" else host, port), _Handler)
        self._httpd.app = self
        self._batcher = threading.Thread(target=self._batch_loop, name="chat-batcher", daemon=True)
        self._serving: threading.Thread | None = None

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """http://host:port (no path)."""
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, http://host:port/v1."""
        return f"{self.url}/v1"

    def start(self) -> "ChatServer":
        """Serve in background threads; returns self."""
        self._batcher.start()
        self._serving = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chat-server", daemon=True
        )
        self._serving.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until stop() or KeyboardInterrupt."""
        self._batcher.start()
        self._httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        """Stop accepting, fail queued requests, stop the batcher. Does not close the backend. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._serving is not None:
            self._httpd.shutdown()
            self._serving.join(timeout=10)
        self._httpd.server_close()
        self._queue.put(None)
        if self._batcher.is_alive():
            self._batcher.join(timeout=60)
        while True:  # requests queued after the batcher left
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and not job.future.done():
                job.future.set_exception(RuntimeError("server stopped"))

    def __enter__(self) -> "ChatServer":
        if self._serving is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------------------------

    @staticmethod
    def _expand(plan: Sequence[tuple[FaultSpec, int]]) -> list[Fault]:
        faults = []
        for spec, count in plan:
            fault = spec if isinstance(spec, Fault) else Fault(str(spec))
            faults.extend([fault] * int(count))
        return faults

    def _next_fault(self, index: int, body: dict) -> Fault | None:
        if self._fault_fn is not None:
            spec = self._fault_fn(index, body)
            if spec is None:
                return None
            return spec if isinstance(spec, Fault) else Fault(str(spec))
        return self._fault_plan.pop(0) if self._fault_plan else None

    def _authorized(self, handler: _Handler) -> bool:
        if self._api_key is None:
            return True
        sent = handler.headers.get("Authorization", "").encode()
        return hmac.compare_digest(sent, b"Bearer " + self._api_key)

    def _authorized_body(self, handler: _Handler, raw: bytes) -> tuple[bool, object]:
        """(True, the request's JSON body), or (False, None) once a 401 (wrong key) or 400 (not JSON) was sent.
        The flag, not the body, says which: a body of JSON `null` is the route's to refuse."""
        if not self._authorized(handler):
            handler.send_json(401, error_body(401, "missing or wrong API key"))  # never echo what was sent
            return False, None
        try:
            return True, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            handler.send_json(400, error_body(400, f"the request body is not valid JSON: {exc}"))
            return False, None

    def _handle_chat(self, handler: _Handler, raw: bytes) -> None:
        ok, body = self._authorized_body(handler, raw)
        if not ok:
            return
        try:
            conversation, sampling, top_logprobs = parse_chat_request(body, self.default_max_tokens)
        except BadRequest as exc:
            handler.send_json(400, error_body(400, str(exc)))
            return
        refused = self.refused_status
        if self.logprobs_mode == "reject" and ("logprobs" in body or "top_logprobs" in body):
            name = "top_logprobs" if "top_logprobs" in body else "logprobs"
            handler.send_json(refused, error_body(refused, f"Invalid JSON payload received. Unknown name "
                                                           f"\"{name}\": Cannot find field."))
            return
        asked = body.get("top_logprobs")
        if self.max_logprobs is not None and isinstance(asked, int) and asked > self.max_logprobs:
            message = (f"Requested sample logprobs of {asked}, which is greater than max allowed: {self.max_logprobs}"
                       if self.max_logprobs_words == "vllm" else
                       f"Invalid 'top_logprobs': integer above maximum value. Expected a value <= "
                       f"{self.max_logprobs}, but got {asked} instead.")
            handler.send_json(400, error_body(400, message))
            return
        if self.max_tokens_mode == "reject" and "max_tokens" in body:
            handler.send_json(refused, {"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                           "'max_completion_tokens' instead.", "type": "invalid_request_error",
                "param": "max_tokens", "code": "unsupported_parameter"}})
            return
        empty = [k for k, m in enumerate((body.get("messages") or [])[:-1]) if isinstance(m, dict)
                 and isinstance(m.get("content"), str) and not m["content"].strip()] \
            if self.empty_turns == "reject" else []
        if empty:
            handler.send_json(400, {"type": "error", "error": {
                "type": "invalid_request_error", "message": f"messages.{empty[0]}: all messages must have non-empty "
                                                            "content except for the optional final assistant message"}})
            return
        if self.n_mode == "reject" and sampling.n > 1:
            handler.send_json(refused, error_body(refused, f"n: this endpoint serves exactly 1 completion per "
                                                           f"request, got {sampling.n}"))
            return
        if self.n_mode == "gemini" and sampling.n > 8:
            handler.send_json(refused, error_body(refused, "Unable to submit request because it has a candidateCount "
                                                           f"value of {sampling.n} but the supported range is from 1 "
                                                           "(inclusive) to 9 (exclusive). Update the value and try "
                                                           "again."))
            return
        if self.n_mode == "gemini-3" and sampling.n > 1:
            handler.send_json(refused, error_body(refused, "Multiple candidates is not enabled for this model"))
            return
        if self.sampling_mode == "exclusive" and "temperature" in body and "top_p" in body:
            handler.send_json(refused, error_body(refused, "`temperature` and `top_p` cannot both be specified for "
                                                           "this model. Please use only one."))
            return
        if self.logprobs_mode == "omit" and sampling.logprobs:
            sampling, top_logprobs = sampling.with_(logprobs=None), 0
        if isinstance(body.get("model"), str) and body["model"] != self.model_name:
            message = f"the model {body['model']!r} is not served here; this server serves {self.model_name!r}"
            handler.send_json(404, error_body(404, message))
            return
        if self.max_choices is not None and sampling.n > self.max_choices:
            sampling = sampling.with_(n=self.max_choices)
        with self._lock:
            record = RequestRecord(index=len(self.requests), body=body)
            self.requests.append(record)
            fault = self._next_fault(record.index, body)
            record.fault = fault.kind if fault else None
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        handler.record = record
        try:
            if fault is not None:
                self._inject(handler, fault, record)
                return
            record.status = self._answer(handler, conversation, sampling, top_logprobs if sampling.logprobs else None,
                                         body)
        finally:
            handler.record = None
            with self._lock:
                self._in_flight -= 1

    def _handle_embeddings(self, handler: _Handler, raw: bytes) -> None:
        """OpenAI's embeddings route: {"model", "input": str | [str]} → {"data": [{"embedding", "index"}]}."""
        ok, body = self._authorized_body(handler, raw)
        if not ok:
            return
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            handler.send_json(400, error_body(400, "'input' must be a string or a list of strings"))
            return
        with self._embed_lock:
            vectors = self.embedder.embed(texts)
        handler.send_json(200, {
            "object": "list",
            "model": body.get("model", self.model_name),
            "data": [{"object": "embedding", "index": k, "embedding": [float(x) for x in v]}
                     for k, v in enumerate(vectors)],
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts), "total_tokens": 0},
        })

    def _inject(self, handler: _Handler, fault: Fault, record: RequestRecord) -> None:
        if fault.kind in ACCOUNT_REPLIES:
            record.status, body = ACCOUNT_REPLIES[fault.kind]
            handler.send_json(record.status, body)
            return
        if fault.kind == "filtered":  # the provider's safety filter stopped the answer part-way
            handler.send_json(200, {"object": "chat.completion", "model": self.model_name, "choices": [
                {"index": k, "message": {"role": "assistant", "content": "Here is how to make the first half of"},
                 "finish_reason": "content_filter"} for k in range(int(record.body.get("n") or 1))],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}})
            record.status = 200
            return
        if fault.kind == "failed":  # generation failed part-way (OpenRouter's finish_reason "error")
            handler.send_json(200, {"object": "chat.completion", "model": self.model_name, "choices": [
                {"index": k, "message": {"role": "assistant", "content": "The answer is"}, "finish_reason": "error"}
                for k in range(int(record.body.get("n") or 1))],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
            record.status = 200
            return
        if fault.kind in BAD_REPLIES:
            record.status = 200  # before any byte of it (see _Handler.record)
            self._bad_reply(handler, fault)
            return
        if fault.kind in ("slow", "drop"):
            if fault.kind == "slow":
                time.sleep(self.slow_s if fault.delay_s is None else fault.delay_s)
            handler.close_connection = True  # the handler returns without writing: the client sees no response
            return
        status = int(fault.kind)
        retry_after = self.retry_after if fault.retry_after is None else fault.retry_after
        headers = {"Retry-After": retry_after} if status in (429, 503) and retry_after else {}
        if 300 <= status < 400:
            headers["Location"] = REDIRECT_TO
        handler.send_json(status, error_body(status, f"injected fault: HTTP {status}"), headers)
        record.status = status

    def _bad_reply(self, handler: _Handler, fault: Fault) -> None:
        """A 200 whose body is not a usable reply (see Fault)."""
        handler.close_connection = True
        if fault.kind == "error200":
            handler.send_json(200, error_body(fault.code, "injected fault: an error inside a 200"))
            return
        if fault.kind == "nested":
            body = b"[" * fault.size + b"]" * fault.size
        elif fault.kind == "huge":
            # Written a chunk at a time, never held whole: the test measures the client's memory in this process.
            head, tail, chunk = b'{"choices": [{"message": {"content": "', b'"}}]}', b"x" * (1 << 20)
            try:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(head) + fault.size + len(tail)))
                handler.end_headers()
                handler.wfile.write(head)
                for k in range(0, fault.size, len(chunk)):
                    handler.wfile.write(chunk[:min(len(chunk), fault.size - k)])
                handler.wfile.write(tail)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        elif fault.kind == "gzip":  # a broken proxy: the header says gzip, the bytes are not
            try:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Encoding", "gzip")
                handler.send_header("Content-Length", "16")
                handler.end_headers()
                handler.wfile.write(b"\x1f\x8b not gzip at all")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        else:  # drip: a valid reply, slowly
            body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                            "finish_reason": "stop"}]}).encode()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if fault.kind == "drip":
                for k in range(len(body)):
                    handler.wfile.write(body[k:k + 1])
                    handler.wfile.flush()
                    time.sleep(self.slow_s if fault.delay_s is None else fault.delay_s)
            else:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(
        self, handler: _Handler, conversation: Conversation, sampling: SamplingParams, top: int | None,
        body: dict | None = None,
    ) -> int | None:
        if self._stopping:
            handler.close_connection = True
            return None
        wait = self.latency_s(body or {}) if callable(self.latency_s) else self.latency_s
        if wait:
            time.sleep(wait)
        job = _Job(conversation, sampling)
        self._queue.put(job)
        try:
            out: ChatOutput = job.future.result()
        except Exception as exc:
            log.warning("backend %s failed: %s: %s", self.model_name, type(exc).__name__, exc)
            handler.send_json(500, error_body(500, f"the backend failed: {type(exc).__name__}: {exc}"))
            return 500
        if out.error is not None:
            handler.send_json(400, error_body(400, out.error))
            return 400
        response = completion_response(self.model_name, out, top, self.reasoning)
        if self.hidden_reasoning_tokens and not (self.reasoning_off is not None
                                                 and (body or {}).get("reasoning_effort") == self.reasoning_off):
            self._think(response, sampling.max_tokens)
        if not self.usage:  # no token counts at all: nor the per-choice ones (ours, not the OpenAI format)
            response.pop("usage")
            for choice in response["choices"]:
                choice.pop("completion_tokens", None)
        elif self.cached_prompt_tokens:
            usage = response["usage"]
            usage["prompt_tokens_details"] = {"cached_tokens": min(self.cached_prompt_tokens, usage["prompt_tokens"])}
        handler.send_json(200, response)
        return 200

    def _think(self, response: dict[str, Any], budget: int) -> None:
        """Spend each completion's hidden reasoning first: within the budget it is added to the counts, beyond it
        the answer is empty and cut at the limit."""
        per_choice = self.hidden_reasoning_tokens
        per_choice = [per_choice] if isinstance(per_choice, int) else list(per_choice)
        with self._lock:  # by completion served, so that completions asked one per request vary alike
            first = self._completions_thought
            self._completions_thought += len(response["choices"])
        reasoning = 0
        for k, choice in enumerate(response["choices"]):
            hidden = per_choice[(first + k) % len(per_choice)]
            if budget <= hidden:
                choice["message"]["content"], choice["finish_reason"] = "", "length"
                choice["completion_tokens"] = budget
                reasoning += budget
            else:
                choice["completion_tokens"] += hidden
                reasoning += hidden
            choice["_thought"] = min(hidden, budget)
        usage = response["usage"]
        if self.reasoning_usage in ("total", "gateway"):  # thoughts in the total, the answer's tokens apart
            for choice in response["choices"]:
                choice["completion_tokens"] -= choice.pop("_thought")
            usage["completion_tokens"] = sum(c["completion_tokens"] for c in response["choices"])
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"] + reasoning
            if self.reasoning_usage == "gateway":
                usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
            return
        for choice in response["choices"]:
            choice.pop("_thought")
        usage["completion_tokens"] = sum(c["completion_tokens"] for c in response["choices"])
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}

    def _batch_loop(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            deadline = time.monotonic() + self.batch_window_s
            while len(batch) < self.max_batch:
                wait = deadline - time.monotonic()
                try:
                    # After the window, still take what is already queued (arrived while the backend was busy).
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        with self._lock:
            self.batch_sizes.append(len(batch))
        try:
            outs = self.backend.chat([j.conversation for j in batch], [j.sampling for j in batch])
            if len(outs) != len(batch):
                raise RuntimeError(f"the backend returned {len(outs)} outputs for {len(batch)} conversations")
        except Exception as exc:  # one failed call fails its batch, not the server
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, out in zip(batch, outs):
            job.future.set_result(out)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parse_fault(text: str) -> tuple[str, int]:
    kind, _, count = text.partition(":")
    return kind, int(count or 1)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: build a backend, serve it, print the base URL.

    Args:
        argv: arguments (default sys.argv[1:]).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.serve", description="Serve a chat backend over an OpenAI-compatible HTTP API."
    )
    parser.add_argument("--model", default="smollm2-135m", help="the model the backend loads (default: smollm2-135m)")
    parser.add_argument("--backend", default="local", help="local, vllm, http or python:module:Class (default: local)")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a backend option; JSON values are decoded"
    )
    parser.add_argument("--served-model-name", default=None, help="the name clients ask for (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--api-key-env", default=None, help="require the key held in this environment variable")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:COUNT]", help="inject faults (testing)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait this long per chat request (an API's "
                        "round trip; requests in flight wait together)")
    args = parser.parse_args(argv)
    if not args.allow_remote and not is_loopback(args.host):
        parser.error(f"refusing to bind {args.host!r}: not a loopback address (pass --allow-remote to permit it)")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"the environment variable {args.api_key_env} is not set or is empty")
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value

    from actors.registry import make_chat_backend

    # SIGTERM (e.g. from a supervisor) unwinds like Ctrl-C, so the backend is closed.
    signal.signal(signal.SIGTERM, _interrupt)
    backend = make_chat_backend(args.backend, args.model, options)
    try:
        server = ChatServer(
            backend,
            host=args.host,
            port=args.port,
            model_name=args.served_model_name or args.model,
            batch_window_ms=args.batch_window_ms,
            max_batch=args.max_batch,
            faults=[_parse_fault(f) for f in args.fault],
            api_key=api_key,
            allow_remote=args.allow_remote,
            latency_s=args.latency_ms / 1000.0,
        )
        print(server.base_url, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
