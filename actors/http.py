"""A ChatBackend for any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM's server, OpenAI, gateways).

Design:

- One private asyncio event loop per client, running in a daemon thread for the client's lifetime, with one
  `httpx.AsyncClient` on it. `chat()` is synchronous: it hands the batch to that loop with
  `asyncio.run_coroutine_threadsafe` and waits. We chose this over `asyncio.run()` per call because (1) it works
  from any thread, including a thread that already runs an event loop (Ray async actors, notebooks), where
  `asyncio.run` refuses; (2) the connection pool and its keep-alive connections survive between calls, so a
  run of many small judge rounds does not redo TCP/TLS handshakes every round; (3) concurrent `chat()` calls
  from several threads share one concurrency bound.
- Concurrency per endpoint (one client is one endpoint) is bounded by a semaphore of `max_concurrency`, matched by
  the connection pool size. The semaphore is released while a request waits to retry, so a throttled request does
  not hold a slot that a healthy one could use.
- One HTTP request per conversation asks for all `n` completions (`"n": n`). Gateways that ignore `n` (or cap it)
  return fewer choices; the client then asks for the rest in parallel requests of the size the server showed it
  serves, until it has `n`. Those extra requests carry `seed + k` (k = completions already asked for), so a
  seeded server that ignores `n` does not hand back the same sample n times. An endpoint that refuses `n` > 1
  (HTTP 400: Anthropic's compatibility layer requires n = 1) is asked for one completion; when that is served, the
  row's others come one per request, and every later row's too once the 400 named `n` or a second row met it
  (`completions_per_request`, known in advance for Anthropic's host).
- Sampling fields as providers take them (shared/notes/providers.md): `top_p` is not sent for greedy decoding
  (temperature 0, where it does nothing) nor where it equals the endpoint's documented default (`default_top_p`: 1
  on OpenAI's and Anthropic's APIs), since Claude models from Sonnet 4.5 on refuse `temperature` and `top_p`
  together and a judge's greedy call must not fail on a field that does nothing. Elsewhere it is sent even at 1: a
  vLLM server's default comes from the model's generation config and Gemini's models set their own, so leaving it
  out would sample with another nucleus than the one asked for. A 400 that names `temperature` or `top_p` is the
  configuration's problem, not a row's: it fails the batch with what to change.
  Anthropic caps temperatures above 1 at 1 without saying so: `max_temperature` (1 for that host) refuses a higher
  one, and the run's preflight refuses such a generator before anything is sent. OpenAI's newer models (o-series,
  GPT-5.x) refuse `max_tokens` for `max_completion_tokens`: OpenAI's host is sent the latter (its models all take
  it), and any endpoint whose 400 asks for it is sent it from then on (`max_tokens_field`).
- Retries: on 408, 409, 429, any 5xx, connect timeouts, connection errors and dropped connections, with
  exponential backoff and full jitter (sleep uniform(0, min(backoff_max_s, backoff_base_s · 2^attempt))). The
  server's own delay — a `Retry-After` header (seconds or an HTTP date), `retry-after-ms`, or Gemini's
  `RetryInfo.retryDelay` / "Please retry in 26s." in the error body — replaces that with the delay plus up to
  `backoff_base_s` of jitter (so rows refused together do not return together), capped at the larger of
  `backoff_max_s` and SERVER_DELAY_CAP_S (a per-minute quota asks for up to a minute; cut to 30 s, the retry met a
  certain second 429 and spent an attempt), so a broken header cannot stall a run. After `max_retries` retries the
  request's row fails *transiently* (ChatOutput.transient): the rest of the batch, paid for, is kept, and a rerun
  asks for that row again (execution.row_retries).
- Timeouts: a request the server accepted and then did not answer in time may be billed, so it is re-sent at most
  `timeout_retries` times (default once), then its row fails transiently; a gateway's timeout (504, Cloudflare's
  524: its upstream had the request) counts alike. The read timeout grows with the tokens
  asked for (`timeout_s` + `read_s_per_token` × n × max_tokens), and every attempt has an overall deadline of
  twice that, so a server that sends one byte at a time cannot hold a request past it. A connection dropped after
  the request was sent counts alike, after one free re-send (a kept-alive connection the server had closed drops
  the request unread).
- Replies are bounded: a body over `max_reply_bytes` is cut off and its row fails; a body that does not decode
  (garbled, or nested past orjson's depth limit), a 200 carrying an `error` object, or a reply without the fields
  asked for fails its row, never the batch.
- Errors that retrying cannot fix: 401/403 (bad key), 404 (wrong URL or model) and a redirect (3xx: the base URL
  is not the endpoint's, and redirects are not followed, since one could carry the key elsewhere) fail the batch
  at once — every row would fail the same way; so do a 400 or 429 about the account (a bad key, no credit, a spent
  quota) and a 429 for a quota that resets only after the run (Gemini's per-day quotas, a quota of 0), though it
  asks for a retry in seconds. Any other 4xx (400 "context too long", 413, 422…) is one row's
  problem and becomes that row's `ChatOutput.error`; the rest of the batch is unaffected.
- The API key is read once from the environment variable named by `api_key_env`, kept in an object whose repr is
  masked, and scrubbed from every message this module builds, as are the base URL's query values and password
  (a gateway's ?key=, an Azure SAS), which a server's error page may quote. httpx masks the Authorization header
  in its own reprs; no header is ever logged here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx
import numpy as np
import orjson

from actors.base import (BackendError, ChatOutput, Conversation, SamplingParams, insecure_key_transport,
                          CACHED_PRICE_KEY, api_key_env_problem, api_key_problem, content_parts, merge_by_text,
                          message_trace, pair_sampling, prices_problem, printable, reopen_thinking,
                          repeat_greedy, NO_ANSWER_REASONS, finish_reason)

log = logging.getLogger(__name__)


class _URLsWithoutQuery(logging.Filter):
    """httpx logs each request's URL at INFO ("HTTP Request: POST https://…?key=…"): a base URL that carries a key in
    its query (a gateway's ?key=, an Azure SAS) would put it in any log a user turns up to INFO. The URL is logged
    as messages name it (display_url: no query, no user info)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(display_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


if not any(isinstance(f, _URLsWithoutQuery) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_URLsWithoutQuery())

# Statuses worth retrying besides every 5xx: request timeout, conflict (some gateways use it for "busy"), throttled.
RETRY_STATUSES = frozenset({408, 409, 429})
# Statuses that mean the whole configuration is wrong: retrying, or carrying on with other rows, cannot help (402:
# the account's credit is spent, as gateways such as OpenRouter say it).
FATAL_STATUSES = frozenset({401, 402, 403, 404})
# A gateway that timed out waiting for its upstream (504, Cloudflare's 524): the upstream had the request and may
# bill it, as for a read timeout of ours, so these are re-sent at most timeout_retries times, not max_retries.
GATEWAY_TIMEOUT_STATUSES = frozenset({504, 524})


class _Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


# Said of an endpoint that no attempt connected to: its host name does not resolve, nothing listens at the address, or
# TLS refused it. Every request would meet it, so the endpoint probe stops the run on it (a timeout or a 5xx stays a
# note: a busy server may serve the run).
UNREACHED = "no connection could be made"
# A connection is made in well under this (a TLS handshake to a busy provider included); past it, the address drops
# what is sent to it (a firewall, a wrong IP): waiting the whole request timeout (120 s) for each of 7 attempts made
# a blackholed endpoint's probe take 6 minutes and every row 14.
CONNECT_TIMEOUT_S = 15.0


class _RowError(Exception):
    """A per-request failure that belongs to one row (raised inside the loop, never escapes). `transient`: it may
    not recur (retries exhausted, timed out, an unreadable reply), so a rerun asks again."""

    def __init__(self, text: str, status: int | None = None, message: str = "", transient: bool = False) -> None:
        super().__init__(text)
        self.status, self.message, self.transient = status, message, transient


class _ReplyTooLarge(Exception):
    pass


# Errors reading a decoded body that is not what was asked for (a missing key, a wrong type, nesting too deep).
_BODY_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError)


# A 400 that is about the account, not the request (Gemini answers a bad key with 400 "API key not valid" /
# API_KEY_INVALID; Anthropic an empty balance with 400 "Your credit balance is too low"), and OpenAI's 429 for a spent
# quota (its code `insufficient_quota`): every request would be refused alike, and a rerun after the fix must ask
# these rows again, so the stage stops instead of storing each row as failed. Phrases, not bare words: a 400 may
# quote the row's prompt. A 429 is otherwise a rate limit, retried: Gemini words its per-minute limits "You exceeded
# your current quota, please check your plan and billing details … Please retry in 26s".
_ACCOUNT_ERROR = re.compile(
    r"api[ _-]?key (?:not valid|is invalid|invalid|expired)|API_KEY_INVALID|invalid[ _-]?(?:x-)?api[ _-]?key|"
    r"incorrect api key|credit balance is too low|insufficient_quota|billing_hard_limit_reached", re.I)
_SPENT_QUOTA = re.compile(r"[\"']insufficient_quota[\"']")  # OpenAI's error code / type, quoted in the JSON body


# A 429 for a quota that no retry within the run passes: Gemini's per-day quotas (QuotaFailure's quotaId
# "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "… per day per user per tier"; OpenRouter's
# "free-models-per-day") and a quota of 0 (a model without a free tier: "Quota exceeded for metric: …, limit: 0").
# Their bodies ask for a retry in seconds as a per-minute quota's do (RetryInfo "16s"): every row spent its retries
# and waits on it, then failed. Not OpenAI's "requests per day (RPD)": its limits refill continuously (10,000 a day
# is one more every 8.6 s, the wait its 429 asks for), so a retry does pass.
_DAILY_QUOTA = re.compile(r"PerDay|free-models-per-day|per day per (?:user|project)|\blimit: 0(?![\d.])", re.I)


def names_daily_quota(status: int, raw: bytes) -> bool:
    """Whether a 429 is for a quota that passes only after the run (see _DAILY_QUOTA)."""
    return status == 429 and _DAILY_QUOTA.search(raw[:65536].decode("utf-8", "replace")) is not None


def names_account(status: int, message: str, raw: bytes = b"") -> bool:
    """Whether an error is about the API key, credit or quota rather than the request (see _ACCOUNT_ERROR)."""
    if status == 429:
        return _SPENT_QUOTA.search(raw.decode("utf-8", "replace")) is not None
    return status == 400 and _ACCOUNT_ERROR.search(message) is not None


# The statuses a request refused for one of its fields comes back with: 400, and 422 (Mistral's "Extra inputs are not
# permitted", FastAPI validation on gateways). A 422 failed each row for good where a 400 was adapted to.
REFUSED_FIELD = (400, 422)


_TOO_LONG = re.compile(r"maximum context length|context length exceeded|context_length_exceeded|prompt is too long|"
                       r"input is too long|too many (?:input )?tokens", re.I)


def too_long(message: str) -> bool:
    """Whether a refusal is of the row's length (vLLM's and OpenAI's "maximum context length", Anthropic's "prompt is
    too long"): the row's own, never a reason to ask its completions one per request."""
    return _TOO_LONG.search(message) is not None


def asks_max_completion_tokens(message: str) -> bool:
    """Whether a refusal says `max_tokens` is not taken and `max_completion_tokens` is (OpenAI's o-series and GPT-5.x:
    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.").
    vLLM's refusal of a prompt too long for its context names both fields too ("'max_tokens' or
    'max_completion_tokens' is too large: 100. This model's maximum context length is …"): that is the row's, and
    switching the field for the run on it resent the row twice before it failed."""
    low = message.lower()
    return "max_completion_tokens" in low and ("not supported" in low or "unsupported" in low) \
        and not too_long(message)


# Anthropic's refusal of an empty turn before the last ("messages.2: all messages must have non-empty content except
# for the optional final assistant message"; "text content blocks must contain non-whitespace text"). An empty
# answer (filtered, refused) sent back in a verdict reminder or an in-context regeneration failed that row, and
# failed it again in every rerun. Such a turn is sent as EMPTY_TURN to an endpoint that refuses it, and only there
# (every other endpoint is sent the conversation as the method wrote it, as the stored results were asked).
# Anthropic's words for an empty turn: "all messages must have non-empty content", "text content blocks must contain
# non-whitespace text", "text content blocks must be non-empty" (as a gateway converts "" into a text block).
_EMPTY_TURN_REFUSED = re.compile(r"non-empty content|non-whitespace text|must be non-empty", re.I)
EMPTY_TURN = "(no answer)"


def filled_empty_turns(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with each turn before the last whose text content is empty or whitespace as EMPTY_TURN; the
    same object where there is none."""
    if not any(isinstance(m, dict) and isinstance(m.get("content"), str) and not m["content"].strip()
               for m in conversation[:-1]):
        return conversation
    return [{**m, "content": EMPTY_TURN} if k < len(conversation) - 1 and isinstance(m, dict)
            and isinstance(m.get("content"), str) and not m["content"].strip() else m
            for k, m in enumerate(conversation)]


def names_logprobs(message: str) -> bool:
    """Whether a 400's message is about the log-prob parameters (the provider does not accept them)."""
    return "logprobs" in message.lower()


# The most top log-probs an endpoint serves, where its refusal states it: vLLM's server started with --max-logprobs
# ("Requested sample logprobs of 20, which is greater than max allowed: 5", vllm/sampling_params.py) and OpenAI's
# range check ("Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 instead.").
_LOGPROBS_CAP = re.compile(r"logprobs.*?(?:max(?:imum)? allowed:?|expected a value <=|must be (?:less than or equal "
                           r"to|<=|at most))\s*(\d+)", re.I | re.S)


def logprobs_cap(message: str) -> int | None:
    """The most top log-probs a refusal of the log-prob parameters says the endpoint serves (logprobs_cap), else
    None."""
    found = _LOGPROBS_CAP.search(message)
    return int(found.group(1)) if found else None


# The field named as a field: quoted or backticked ("`temperature` and `top_p` cannot both be specified", OpenAI's
# "Unsupported parameter: 'temperature' …"), a path ending in it (".generation_config.temperature"), or a message
# opening with it ("temperature: Input should be …"). A bare word is not enough: a row's 400 may quote its prompt,
# and a prompt about the weather must not stop the run.
_SAMPLING_FIELD = re.compile(
    r"[`'\"](?:temperature|top_p)[`'\"]|\.(?:temperature|top_p)\b|^\s*(?:temperature|top_p)\s*:", re.I)


def names_sampling(message: str) -> bool:
    """Whether a 400's message is about the `temperature` or `top_p` field (a model that takes one of them but not
    both, or neither, or not this value): every request of the run would be refused alike."""
    return _SAMPLING_FIELD.search(message) is not None


# Gemini calls `n` candidateCount: "candidateCount must be 1 but the entered value was 3", "… a candidateCount value
# of 9 but the supported range is from 1 (inclusive) to 9 (exclusive)", "Only one candidate can be specified", and on
# its 3.x models "Multiple candidates is not enabled for this model".
_N_FIELD = re.compile(r"[`'\"]n[`'\"]|\.n\b|^\s*n\s*:|candidate_?count|multiple candidates|only one candidate", re.I)
_N_CAP = re.compile(r"candidate_?count.{0,120}?range is from 1 \(inclusive\) to (\d{1,4}) \(exclusive\)", re.I | re.S)


def n_cap(message: str) -> int | None:
    """The most completions a refusal of `n` says one request may ask for (Gemini's range for candidateCount), where
    it says so and that is more than one; else None."""
    found = _N_CAP.search(message)
    cap = int(found.group(1)) - 1 if found else None
    return cap if cap is not None and cap > 1 else None


def names_n(message: str) -> bool:
    """Whether a 400's message names the `n` field as a field (as _SAMPLING_FIELD names its fields)."""
    return _N_FIELD.search(message) is not None


# What some endpoints do with sampling fields, from their documentation (shared/notes/providers.md), by host.
# Anthropic's OpenAI compatibility layer: `n` must be exactly 1; temperatures above 1 are capped at 1 silently.
# OpenAI: every chat model takes `max_completion_tokens`, and o-series and GPT-5.x models refuse `max_tokens`.
# Both document top_p's default as 1 (the whole distribution).
KNOWN_ENDPOINTS: dict[str, dict[str, Any]] = {
    "api.anthropic.com": {"completions_per_request": 1, "max_temperature": 1.0, "default_top_p": 1.0,
                          "default_temperature": 1.0},
    "api.openai.com": {"max_tokens_field": "max_completion_tokens", "default_top_p": 1.0, "default_temperature": 1.0},
}
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
# Answers at one budget that all came back empty from hidden reasoning, with none answered, before a stage stops.
REASONING_STOP_AFTER = 3
# The endpoint options KNOWN_ENDPOINTS may fill in, and their value where neither the option nor the host says.
ENDPOINT_OPTIONS: dict[str, Any] = {"completions_per_request": None, "max_temperature": None,
                                    "max_tokens_field": "max_tokens", "default_top_p": None,
                                    "default_temperature": None}
# Request fields the run sets from its own settings (the config key to change instead). extra_body may remove one
# (null: e.g. n for a gateway that refuses it, temperature for a model that takes none) but not give it a value:
# the run would record, key and read its rows by one setting while the endpoint was asked another.
RUN_FIELDS: dict[str, str] = {
    "model": "model", "messages": "the prompts", "stream": "(the client reads whole replies)",
    "n": "n", "temperature": "temperature", "top_p": "top_p", "seed": "sampling.seed", "stop": "(the method's)",
    "max_tokens": "sampling.max_tokens / judge.max_tokens", "max_completion_tokens": "options.max_tokens_field",
    "logprobs": "verdict", "top_logprobs": "verdict",
}
NOT_REMOVABLE = ("model", "messages")


def extra_body_problem(extra_body: Any) -> tuple[str, str] | None:
    """What is wrong with an extra_body, as (its key, e.g. "extra_body.temperature"; why), or None: not a mapping,
    or one of the run's own fields (RUN_FIELDS) given a value."""
    if extra_body is None:
        return None
    if not isinstance(extra_body, dict):
        return "extra_body", f"extra_body must be a mapping of request fields, got {type(extra_body).__name__}"
    for key, value in extra_body.items():
        if key in RUN_FIELDS and (value is not None or key in NOT_REMOVABLE):
            what = "set" if key in NOT_REMOVABLE else "set to a value (null removes it from requests)"
            return f"extra_body.{key}", (f"the run sets this field from {RUN_FIELDS[key]} and it cannot be {what}: "
                                         "the rows would be recorded under one setting and sampled under another")
    return None


def endpoint_limits(base_url: str, **given: Any) -> dict[str, Any]:
    """Each of ENDPOINT_OPTIONS for an endpoint: the option where given (not None), else what is known of its host
    (KNOWN_ENDPOINTS), else the default."""
    host = (urlsplit(base_url).hostname or "").lower() if isinstance(base_url, str) else ""
    known = KNOWN_ENDPOINTS.get(host, {})
    return {key: given[key] if given.get(key) is not None else known.get(key, default)
            for key, default in ENDPOINT_OPTIONS.items()}


def chat_completions_url(base_url: str) -> str:
    """The chat-completions URL for a base URL.

    Accepts the OpenAI convention — the base URL holds the API's version, and the route is appended to it
    ("https://api.openai.com/v1", Gemini's "https://generativelanguage.googleapis.com/v1beta/openai/") — a bare server
    ("http://127.0.0.1:8000": vLLM's and most servers' /v1 is added) or the full endpoint ("…/chat/completions").

    Args:
        base_url: an http(s) URL.

    Returns:
        The URL to POST chat completions to.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got "
                           f"{display_url(base_url)!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        pass
    elif path:  # a versioned base (/v1, Gemini's /v1beta/openai, a gateway's prefix): the route goes after it
        path += "/chat/completions"
    else:
        path = "/v1/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def display_url(url: Any) -> str:
    """`url` for a message: without user info or query string, or a placeholder when it does not parse (a message
    about a malformed URL must not quote the password or key it holds)."""
    try:
        return _display_url(str(url))
    except ValueError:
        return "<unparsable URL>"


def url_secrets(url: str) -> list[str]:
    """What in a URL may be a credential, for scrubbing from messages: its query's values (a gateway's ?key=, an
    Azure SAS's sig=) and its password, each as written and decoded, longest first; values under 4 characters
    (api-version=1, ?stream=0) are left, since scrubbing them would mangle any message."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = {v for _, v in parse_qsl(parts.query, keep_blank_values=True)}
    found |= {v for item in parts.query.split("&") for v in item.split("=", 1)[1:]}  # as written, percent-encoded
    if password:
        found |= {password, quote(password, safe="")}
    found |= {quote(v, safe="") for v in list(found)}
    return sorted((v for v in found if len(v) >= 4), key=len, reverse=True)


def _display_url(url: str) -> str:
    """The URL without user info or query string, for messages (either could carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header value.

    Args:
        value: the header: delay-seconds ("120", fractional values tolerated) or an HTTP date.
        now: the current POSIX time (default: time.time()); for dates.

    Returns:
        The delay in seconds (never negative), or None when the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a zone-less date is read as such
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# The longest server-given retry delay honoured whatever backoff_max_s says (per-minute quotas ask for up to 60 s).
SERVER_DELAY_CAP_S = 120.0
# Gemini's "Please retry in 26.3s." and OpenAI's "Please try again in 6.5s." / "in 120ms" / "in 1m30s" (its rate
# limits send no Retry-After header): without it, the jittered backoff did not outlast a per-minute token limit.
# Digits bounded: a server's text is untrusted, and 400 digits of minutes overflowed float() (a traceback, not a row).
_RETRY_IN = re.compile(r"(?:retry|try again) in (?:(\d{1,6})\s*m(?!s))?\s*(\d{1,9}(?:\.\d{1,9})?)\s*(ms|s)\b", re.I)


def server_retry_delay(headers: Any, raw: bytes) -> float | None:
    """The delay a refusing server asks for, in seconds: `Retry-After`, `retry-after-ms`, or Gemini's error body
    (RetryInfo's "retryDelay": "26s", or "Please retry in 26.3s." in its message; Gemini sends no header). None
    where it asks for none."""
    seconds = retry_after_seconds(headers.get("retry-after"))
    if seconds is not None:
        return seconds
    millis = retry_after_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    try:
        data = orjson.loads(raw[:65536]) if raw and len(raw) <= 65536 else None
    except (ValueError, RecursionError):
        data = None
    error = (data[0] if isinstance(data, list) and data else data) if data is not None else None
    error = error.get("error") if isinstance(error, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        for detail in details if isinstance(details, list) else []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                seconds = retry_after_seconds(delay[:-1])
                if seconds is not None:
                    return seconds
        found = _RETRY_IN.search(str(error.get("message") or ""))
        if found:
            minutes, value, unit = found.groups()
            return 60 * int(minutes or 0) + float(value) / (1000 if unit.lower() == "ms" else 1)
    return None


def uncounted_reasoning_tokens(usage: dict[str, Any]) -> int:
    """Hidden reasoning tokens counted in `total_tokens` but in neither prompt nor completion tokens (Gemini's
    thoughts: billed at the output rate, not in `completion_tokens`); 0 where the total is prompt plus completion
    (OpenAI and vLLM, whose completion count holds `completion_tokens_details.reasoning_tokens`). Read from the total
    whether or not the details name reasoning tokens: gateways that translate Gemini give `reasoning_tokens` and
    leave them out of `completion_tokens` too."""
    if not all(isinstance(usage.get(k), int) for k in ("total_tokens", "prompt_tokens")):
        return 0
    return max(0, usage["total_tokens"] - usage["prompt_tokens"] - _int(usage.get("completion_tokens")))


def parse_choices(data: dict[str, Any], want_logprobs: bool
                  ) -> tuple[list[tuple[str, str, int, dict | None, str | None]], int]:
    """Read one chat-completions response.

    Token counts per completion: a per-choice `completion_tokens` field where the server gives one (our
    `tests.support.serve` does; it is not part of the OpenAI format), else `usage.completion_tokens` split evenly over
    the choices (exact for n = 1), else 0.

    First-token log-probs: `choices[i].logprobs.content[0].top_logprobs` as {token: logprob}; token texts that
    occur twice (distinct token ids that decode alike) are merged by log-sum-exp, since the judge wants the
    probability of the text.

    Reasoning: the message's `reasoning_content` or `reasoning` string, or the thinking parts of a content list
    (actors.base.message_trace), is the choice's trace; a content list's text parts are its text; a `<think>` block
    left inside `content` is split off later, for every backend alike (actors.base.separate_traces).

    Args:
        data: the decoded JSON body.
        want_logprobs: whether log-probs were asked for.

    Returns:
        ([(text, finish_reason, n_tokens, top_logprobs or None, trace or None) per choice, in index order],
        prompt_tokens).

    Raises:
        ValueError: the body is not a chat-completions response.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise ValueError("the response has no 'choices' list")
    choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else 0
    total = usage.get("completion_tokens") if isinstance(usage.get("completion_tokens"), int) else None
    explicit = [c.get("completion_tokens") for c in choices]
    if choices and all(isinstance(t, int) for t in explicit):
        counts = explicit
    elif total is not None and choices:
        base, extra = divmod(total, len(choices))
        counts = [base + (1 if k < extra else 0) for k in range(len(choices))]
    else:
        counts = [None] * len(choices)  # no usage: the tokens are unknown, not 0
    parsed = []
    for choice, count in zip(choices, counts):
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        text = content_parts(message.get("content"))[0] or ""  # a list of content parts: its text parts
        trace = message_trace(message)
        reason = finish_reason(choice.get("finish_reason"))
        if not text and isinstance(message.get("refusal"), str) and message["refusal"].strip():
            # OpenAI's refusal (structured outputs): `content` null, the refusal apart, finish_reason "stop". It was
            # read as an empty answer that completed; it is a refusal, as Anthropic's stop_reason "refusal" is.
            reason = "content_filter"
        if reason in NO_ANSWER_REASONS:
            # Stopped by the provider's safety filter (OpenAI, Azure; Gemini's SAFETY through its compatibility
            # layer), or by an error while generating (OpenRouter's "error", Gemini's OTHER): what came before the
            # cut is not the model's answer. No answer — never judged or graded as one.
            text = ""
        top = _first_token_logprobs(choice) if want_logprobs and reason not in NO_ANSWER_REASONS else None
        parsed.append((text, reason, None if count is None else int(count), top, trace))
    return parsed, int(prompt_tokens)


def _first_token_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    top = content[0].get("top_logprobs")
    if not isinstance(top, list) or not top:
        return None
    return merge_by_text([(entry["token"], entry["logprob"]) for entry in top if isinstance(entry, dict)
                          and isinstance(entry.get("token"), str)
                          and isinstance(entry.get("logprob"), (int, float))]) or None


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Stop the client's loop and thread (also run by a finalizer when a client is dropped without close())."""
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        loop.close()



def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# option → (whether a value is usable, what it must be); None is each optional one's default.
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "default_temperature": (lambda v: v is None or _number(v) and v >= 0, "must be a number >= 0"),
    "default_top_p": (lambda v: v is None or _number(v) and 0 < v <= 1, "must be in (0, 1]"),
    "max_tokens_field": (lambda v: v is None or v in MAX_TOKENS_FIELDS, f"must be one of {MAX_TOKENS_FIELDS}"),
    "completions_per_request": (lambda v: v is None or _integer(v) and v >= 1, "must be an integer >= 1"),
    "max_temperature": (lambda v: v is None or _number(v) and v >= 0, "must be a number >= 0"),
    "max_concurrency": (lambda v: _integer(v) and v >= 1, "must be an integer >= 1"),
    "max_retries": (lambda v: _integer(v) and v >= 0, "must be an integer >= 0"),
    "timeout_s": (lambda v: _number(v) and v > 0, "must be a number of seconds > 0"),
    "read_s_per_token": (lambda v: _number(v) and v >= 0, "must be a number of seconds >= 0"),
    "backoff_base_s": (lambda v: _number(v) and v >= 0, "must be a number of seconds >= 0"),
    "backoff_max_s": (lambda v: _number(v) and v >= 0, "must be a number of seconds >= 0"),
    "timeout_retries": (lambda v: _integer(v) and v >= 0, "must be an integer >= 0"),
    "max_reply_bytes": (lambda v: _integer(v) and v >= 1024, "must be an integer >= 1024"),
    "max_in_flight": (lambda v: v is None or _integer(v) and v >= 1, "must be an integer >= 1"),
    "thinking_opened": (lambda v: isinstance(v, bool), "must be true or false"),
    "allow_insecure_http": (lambda v: isinstance(v, bool), "must be true or false"),
    "continuous": (lambda v: isinstance(v, bool), "must be true or false"),
}


def options_problem(options: dict[str, Any]) -> tuple[str, str] | None:
    """The first option of an http model whose value the client would refuse, as (its name, why), or None.
    Preflight refuses a config by it before any call (a quoted "30" for timeout_s failed only when the judge's
    actors started, after generation was paid for); the client's constructor by the same rules."""
    for name, (usable, rule) in _OPTION_RULES.items():
        if name in options and not usable(options[name]):
            return name, f"{rule}, got {options[name]!r}"
    return None

class OpenAIChatClient:
    """A ChatBackend that calls an OpenAI-compatible chat-completions endpoint.

    Args:
        model: the model name sent in every request (and this backend's `name`).
        base_url: the server, e.g. "http://127.0.0.1:8000/v1" or "https://api.openai.com/v1" (see
            `chat_completions_url`).
        api_key_env: the environment variable holding the API key, sent as "Authorization: Bearer …"; None for
            servers without authentication.
        max_concurrency: most requests in flight at once to this endpoint.
        timeout_s: timeout of each connect, write and pool wait, and the base of the read timeout, per request.
        read_s_per_token: seconds added to the read timeout per token asked for (n × max_tokens).
        timeout_retries: most re-sends of a request that timed out after the server accepted it (it may be billed);
            a connection dropped after the request was sent counts alike, after one free re-send.
        max_reply_bytes: the largest reply body read; a larger one fails its row.
        max_retries: most retries of one request before its row fails (transiently).
        backoff_base_s: first backoff ceiling; doubles per retry (full jitter).
        backoff_max_s: largest backoff (a delay the server asks for is honoured up to the larger of this and
            SERVER_DELAY_CAP_S).
        prices: {"prompt_per_mtok": USD, "completion_per_mtok": USD} to report `cost_usd`.
        allow_insecure_http: send the API key over plain http to a host other than this machine (refused
            otherwise: the key would cross the network unencrypted).
        extra_body: fields merged into every request body, overriding the defaults (e.g.
            {"chat_template_kwargs": {...}}); a field mapped to None is removed (e.g. {"n": None} for a gateway that
            rejects `n`: the client then collects n completions one request at a time). The run's own fields
            (RUN_FIELDS: temperature, n, max_tokens, …) may be removed but not given a value.
        continuous: take requests one at a time too (actors.base.ContinuousBackend), so that a conversation's next
            turn is sent the moment its previous answer arrives instead of after a round's slowest request.
        max_in_flight: most requests submitted and not yet collected in continuous mode (at most
            `max_concurrency` of them are on the wire; the rest wait in the client).
        completions_per_request: most completions one request asks for (None: all n, fewer where the server shows it
            serves fewer or refuses n > 1). Default for api.anthropic.com: 1 (its compatibility layer requires it).
        max_temperature: the highest temperature the endpoint honours; a request above it fails its batch (the
            run's preflight refuses such a generator first). Default for api.anthropic.com: 1.0 (it caps higher
            values at 1 without saying so, so the responses would be sampled at 1 under another label).
        default_top_p: the endpoint's default top_p, which is then not sent when asked for (default: 1.0 for
            api.openai.com and api.anthropic.com; none elsewhere, so top_p is always sent above temperature 0).
        default_temperature: the temperature the endpoint samples at when none is sent (default: 1.0 for
            api.openai.com and api.anthropic.com); what a generator whose extra_body removes `temperature` must be
            configured at (preflight, actors.registry.check_sampling), so the run records what it was served.
        max_tokens_field: the request field for the token limit, "max_tokens" or "max_completion_tokens" (default:
            the latter for api.openai.com, else the former until a 400 asks for the latter).
        thinking_opened: the server's chat template opens a `<think>` block in the generation prompt (DeepSeek-R1,
            Qwen3's thinking mode) and the server runs no reasoning parser, so every completion starts inside the
            thinking: the client puts the opening tag back in front of content that came without a trace, as the
            local and vLLM backends do from the prompt they render. A completion cut off while thinking then has an
            empty answer, never its thinking as one (without this option such a completion, having no `</think>`,
            reads as an answer: a client cannot see the server's template).

    Attributes:
        requests: HTTP requests sent (every attempt, retries included).
        retries: requests re-sent after a retryable failure.
        row_errors: rows returned with `ChatOutput.error`.
        prompt_tokens / completion_tokens: tokens the server reported in `usage`, summed over all requests.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120,
        read_s_per_token: float = 0.05,
        timeout_retries: int = 1,
        max_reply_bytes: int = 32 * 1024 * 1024,
        max_retries: int = 6,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        prices: dict | None = None,
        extra_body: dict | None = None,
        allow_insecure_http: bool = False,
        continuous: bool = True,
        max_in_flight: int | None = None,
        thinking_opened: bool = False,
        completions_per_request: int | None = None,
        max_temperature: float | None = None,
        max_tokens_field: str | None = None,
        default_top_p: float | None = None,
        default_temperature: float | None = None,
    ) -> None:
        problem = extra_body_problem(extra_body)
        if problem:
            raise ValueError(": ".join(problem))
        problem = options_problem(dict(
            default_temperature=default_temperature, default_top_p=default_top_p, max_tokens_field=max_tokens_field,
            completions_per_request=completions_per_request, max_temperature=max_temperature,
            max_concurrency=max_concurrency, max_retries=max_retries, timeout_s=timeout_s,
            read_s_per_token=read_s_per_token, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
            timeout_retries=timeout_retries, max_reply_bytes=max_reply_bytes, max_in_flight=max_in_flight,
            thinking_opened=thinking_opened, allow_insecure_http=allow_insecure_http, continuous=continuous))
        if problem:
            raise ValueError(" ".join(problem))
        self.name = model
        self.model = model
        self.url = chat_completions_url(base_url)
        self.endpoint = _display_url(self.url)
        if api_key_env_problem(api_key_env):
            raise ValueError(f"api_key_env {api_key_env_problem(api_key_env)}")
        why = insecure_key_transport(self.url, api_key_env, allow_insecure_http)
        if why:
            raise BackendError(why.replace(repr(self.url), self.endpoint))
        self.api_key_env = api_key_env
        self._key: _Secret | None = None
        if api_key_env is not None:
            value = os.environ.get(api_key_env)
            why = api_key_problem(api_key_env, value)
            if why:
                raise BackendError(f"{why} (API key for {self.endpoint})")
            self._key = _Secret(value.strip())
        self._url_secrets = tuple(_Secret(v) for v in url_secrets(self.url))
        self.max_concurrency = max_concurrency
        self.continuous = bool(continuous)
        self.max_in_flight = max_in_flight or 4 * max_concurrency
        self._in_flight: dict[concurrent.futures.Future, int] = {}  # continuous mode: request → the driver's key
        self.timeout_s = float(timeout_s)
        self.read_s_per_token = float(read_s_per_token)
        self.timeout_retries = timeout_retries
        self.max_reply_bytes = max_reply_bytes
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.prices = self._check_prices(prices)
        self.extra_body = dict(extra_body or {})
        self.thinking_opened = thinking_opened
        limits = endpoint_limits(base_url, completions_per_request=completions_per_request,
                                 max_temperature=max_temperature, max_tokens_field=max_tokens_field,
                                 default_top_p=default_top_p, default_temperature=default_temperature)
        self.completions_per_request: int | None = limits["completions_per_request"]
        self.max_temperature: float | None = limits["max_temperature"]
        self.max_tokens_field: str = limits["max_tokens_field"]
        self.default_top_p: float | None = limits["default_top_p"]
        # Why one completion per request is asked for when it was learnt during the run (None otherwise).
        self.one_per_request: str | None = None
        self._n_refusals = 0  # rows whose n > 1 drew a 400 and whose n = 1 was served (_n_refused)
        self.requests = 0
        self.retries = 0
        self.row_errors = 0
        self.logprobs_missing = 0
        # Priced replies that answered without token usage: their tokens, and so the run's cost, are unknown (never 0).
        self.usage_missing = 0
        # Chat replies without a completion token count, priced or not: the stage's generated tokens are unknown.
        self.tokens_missing = 0
        # Why log-probs were given up for this endpoint (None while they are asked for): see _downgrade.
        self.logprobs_unavailable: str | None = None
        # The most top log-probs the endpoint serves, where a refusal said so (None: as many as asked): see _cap.
        self.max_logprobs: int | None = None
        # Set by the endpoint probe (actors.registry.probe_model) on its own client: what it learns holds for that
        # client alone — the run's clients, in its actors, find it out again on their first request — so its lines
        # in the log must not say "for the rest of the run".
        self.probing = False
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0  # of prompt_tokens, those the provider served from its cache
        self.completion_tokens = 0
        self._stats_lock = threading.Lock()
        # Budgets (max tokens) at which an answer came back, and how many came back empty from reasoning at each.
        self._budgets_answered: set[int] = set()
        self._budgets_exhausted: dict[int, int] = {}
        self._random = random.Random()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run_loop, args=(self._loop,), name=f"http-chat-{model}", daemon=True)
        self._thread.start()
        # A client dropped without close() must not leave its thread running; the callback holds no reference to
        # self, so it does not keep the client alive.
        self._finalizer = weakref.finalize(self, _stop_loop, self._loop, self._thread)
        self._http: httpx.AsyncClient = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    # -- public -------------------------------------------------------------------------------------------------

    def chat(
        self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[ChatOutput]:
        """Complete each conversation through the endpoint.

        Args:
            conversations: the conversations, each a list of {role, content} messages.
            sampling: one SamplingParams for all, or one per conversation.

        Returns:
            One ChatOutput per conversation, in input order; a row the server refused with a non-retryable 4xx
            carries `error`; a row whose request still failed after `max_retries` retries, or timed out, or got an
            unreadable reply, carries `error` with `transient` set.

        Raises:
            BackendError: the server refused the key, URL or model (401/403/404); the message names the endpoint and
                the status.
        """
        params = pair_sampling(conversations, sampling)
        if self._closed:
            raise BackendError(f"the client for {self.endpoint} is closed")
        if not conversations:
            return []
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAIChatClient.chat() cannot be called from the client's own event loop thread")
        future = asyncio.run_coroutine_threadsafe(self._chat_all(list(conversations), params), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the requests still in flight
            raise

    def submit(self, key: int, conversation: Conversation, sampling: SamplingParams) -> None:
        """Send one request (continuous mode); its output comes back from `collect` under `key`."""
        if self._closed:
            raise BackendError(f"the client for {self.endpoint} is closed")
        future = asyncio.run_coroutine_threadsafe(_captured(self._complete(list(conversation), sampling)), self._loop)
        self._in_flight[future] = key

    def collect(self) -> list[tuple[int, ChatOutput]]:
        """Outputs of the requests answered since the last call, waiting for at least one while any is in flight.

        Raises:
            BackendError: as `chat` (the key, URL or model refused): the other requests in flight are cancelled.
        """
        if not self._in_flight:
            return []
        done, _ = concurrent.futures.wait(list(self._in_flight), return_when=concurrent.futures.FIRST_COMPLETED)
        out = []
        for future in done:
            key = self._in_flight.pop(future)
            try:
                result = future.result()
                if isinstance(result, _Raised):
                    raise result.exc
                out.append((key, result))
            except BaseException:
                self.cancel()
                raise
        return out

    def cancel(self) -> None:
        """Cancel every request in flight (continuous mode)."""
        in_flight, self._in_flight = list(self._in_flight), {}
        for future in in_flight:
            future.cancel()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings from the endpoint's /embeddings route (OpenAI's format; vLLM serves it for
        embedding models), float32, shape (len(texts), dim), with the same retries as chat.

        Args:
            texts: the texts.
            batch_size: texts per request.
        """
        if self._closed:
            raise BackendError(f"the client for {self.endpoint} is closed")
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        # The route replaces the path's last part; the query (an Azure-style api-version, a key) stays after it.
        parts = urlsplit(self.url)
        url = urlunsplit(parts._replace(path=parts.path.removesuffix("/chat/completions") + "/embeddings"))
        bodies = [{"model": self.model, "input": list(texts[k:k + batch_size])}
                  for k in range(0, len(texts), batch_size)]

        def parse(data: dict[str, Any]) -> tuple[list[list[float]], int]:
            rows = sorted(data["data"], key=lambda d: d["index"])
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            vectors = [r["embedding"] for r in rows]
            if not all(isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) for v in vectors):
                raise ValueError("an embedding is not a list of numbers")
            return vectors, _int(usage.get("prompt_tokens"))

        async def run() -> list:
            return await _gather_or_cancel([self._post(body, url, parse) for body in bodies])

        try:
            answers = asyncio.run_coroutine_threadsafe(run(), self._loop).result()
        except _RowError as exc:
            raise BackendError(str(exc)) from None
        vectors = np.array([v for rows, _ in answers for v in rows], dtype=np.float32)
        if len(vectors) != len(texts):
            raise BackendError(f"{self.endpoint}: asked for {len(texts)} embeddings, got {len(vectors)}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)

    def stats(self) -> dict[str, Any]:
        """Counters so far: requests, retries, row_errors, prompt_tokens, completion_tokens, cost_usd (None without
        prices; the reported tokens priced — a lower bound where usage_missing replies carried no token counts)."""
        with self._stats_lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "row_errors": self.row_errors,
                "logprobs_missing": self.logprobs_missing,
                "usage_missing": self.usage_missing,
                "tokens_missing": self.tokens_missing,
                "logprobs_downgraded": int(self.logprobs_unavailable is not None),
                "logprobs_capped": int(self.max_logprobs is not None),
                "one_completion_per_request": int(self.one_per_request is not None),
                "prompt_tokens": self.prompt_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": self._cost(),
            }

    @property
    def cost_usd(self) -> float | None:
        """The reported tokens priced with `prices`, in USD; None without prices."""
        with self._stats_lock:
            return self._cost()

    def close(self) -> None:
        """Cancel requests in flight, close the connections and stop the client's thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        except Exception as exc:  # closing must not fail a run that is already ending
            log.debug("closing the client for %s: %s", self.endpoint, type(exc).__name__)
        self._finalizer()

    def __enter__(self) -> "OpenAIChatClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        key = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"OpenAIChatClient(model={self.model!r}, endpoint={self.endpoint!r}{key})"

    __str__ = __repr__

    # -- internals ----------------------------------------------------------------------------------------------

    @staticmethod
    def _check_prices(prices: dict | None) -> dict[str, float] | None:
        problem = prices_problem(prices)
        if problem:
            raise ValueError(problem[1])
        return None if prices is None else {k: float(v) for k, v in prices.items()}

    def _key_hint(self) -> str:
        return f"the API key in ${self.api_key_env}" if self.api_key_env else "the API key: no api_key_env is set"

    def _cost(self) -> float | None:
        if self.prices is None:
            return None
        prompt = self.prices["prompt_per_mtok"]
        cached = min(self.cached_prompt_tokens, self.prompt_tokens)
        return (
            (self.prompt_tokens - cached) * prompt
            + cached * self.prices.get(CACHED_PRICE_KEY, prompt)
            + self.completion_tokens * self.prices["completion_per_mtok"]
        ) / 1e6

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def _redact(self, text: str) -> str:
        for secret in (self._key, *self._url_secrets):
            if secret is not None and secret.reveal() in text:
                text = text.replace(secret.reveal(), "<redacted>")
        return text

    async def _open(self) -> httpx.AsyncClient:
        # Created on the loop that uses them: the semaphore and the client's pool belong to this loop.
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        headers = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key is not None else {}
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S)),
            limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
            headers=headers,
            # Requests and replies are ours to bound: no redirects (a redirect could carry the key elsewhere).
            follow_redirects=False,
        )

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._http.aclose()

    async def _chat_all(self, conversations: list[Conversation], params: list[SamplingParams]) -> list[ChatOutput]:
        return await _gather_or_cancel([self._complete(c, p) for c, p in zip(conversations, params)])

    async def _complete(self, conversation: Conversation, p: SamplingParams) -> ChatOutput:
        if p.greedy and p.n > 1:
            # Greedy decoding has one answer: asked once and repeated, as the local and vLLM backends do (a sweep
            # through temperature 0 asks for n). Sent as n > 1, OpenAI and Gemini bill n completions that differ only
            # by the provider's nondeterminism, and a vLLM server that refuses n > 1 at temperature 0 was taken for
            # one that serves one completion per request, for the rest of the run.
            return repeat_greedy(await self._complete(conversation, p.with_(n=1)), p.n)
        fallback = p.max_tokens_without_logprobs if p.logprobs is not None else None
        if fallback is not None and self.logprobs_unavailable:
            p = p.with_(logprobs=None, max_tokens=fallback)  # downgraded earlier in the run: ask for text at once
        if p.logprobs is not None and self.max_logprobs is not None and p.logprobs > self.max_logprobs:
            p = p.with_(logprobs=self.max_logprobs)  # capped earlier in the run (_cap)
        if self.max_temperature is not None and p.temperature > self.max_temperature:
            raise BackendError(f"{self.endpoint} serves temperatures up to {self.max_temperature:g} (higher ones are "
                               f"capped without a word), so temperature {p.temperature:g} cannot be asked of "
                               f"{self.model}; set options.max_temperature if this endpoint honours it")
        want_logprobs = p.logprobs is not None
        # Told that the template opens the thinking, the client puts the tag back (reopen_thinking): a bare closing
        # tag is then the answer's own (opening_known).
        out = ChatOutput(first_token_logprobs=[] if want_logprobs else None, traces=[],
                         opening_known=self.thinking_opened)
        # Completions the server returns per request: the known limit, else learnt from the first answer.
        per_request = min(p.n, self.completions_per_request or p.n)
        first, probing, renamed, refusal = True, False, False, ""
        # Whether a completion that answered (text, or cut at the token limit; not stopped by the safety filter nor
        # refused with no text) came without log-probs: only that says the provider omits them. A filtered or
        # refused one has none by design (no answer to read).
        answered_without_logprobs = False
        # A row whose completions come one request each (n > 1 refused, completions_per_request 1, a server that
        # ignores n): one completion that spent its budget reasoning failed the row, and the others' answers were
        # thrown away, where in one reply it would stay an empty answer beside them.
        starved: list[str] = []
        while len(out.texts) < p.n:
            need = p.n - len(out.texts)
            sizes = [min(per_request, need - k) for k in range(0, need, per_request)]
            if probing:
                sizes = sizes[:1]  # one request for one completion: does the endpoint serve n = 1?
            offsets = [len(out.texts) + sum(sizes[:k]) for k in range(len(sizes))]
            bodies = [self._body(conversation, p, size, offset) for size, offset in zip(sizes, offsets)]
            try:
                if len(bodies) == 1:
                    answers = [await self._post(bodies[0], starved=starved)]
                else:
                    answers = await self._split_answers(bodies, starved)
            except _RowError as exc:
                refused = exc.status in REFUSED_FIELD
                cap = logprobs_cap(exc.message) if want_logprobs and refused else None
                if cap is not None and 0 < cap < p.logprobs:  # type: ignore[operator]
                    # A server that serves fewer top log-probs than asked (vLLM's --max-logprobs): the verdict is
                    # read from as many as it serves (YES and NO lead them where the answer is greedy), not from text.
                    self._cap(cap, exc.message)
                    p = p.with_(logprobs=cap)
                    continue
                if want_logprobs and fallback is not None and refused and names_logprobs(exc.message):
                    # The provider refuses the log-prob parameters: ask again without them, read text, and remember.
                    self._downgrade(f"it answered HTTP {exc.status} to the log-prob parameters ({exc.message[:120]})")
                    p = p.with_(logprobs=None, max_tokens=fallback)
                    want_logprobs, out.first_token_logprobs = False, None
                    continue
                if want_logprobs and refused and names_logprobs(exc.message):
                    # No text budget to fall back on (verdict: logprobs): every verdict would be refused alike.
                    raise BackendError(f"{self.endpoint}: {self.model} refuses the log-prob parameters "
                                       f"({exc.message[:160]}); set this judge's verdict to auto (log-probs where "
                                       "given, else text) or text") from None
                if refused and not renamed and "max_tokens" in bodies[0] and \
                        asks_max_completion_tokens(exc.message):
                    # OpenAI's o-series and GPT-5.x: "'max_tokens' is not supported … Use 'max_completion_tokens'".
                    # Read from what this row sent: rows in flight together were all refused, and only the first
                    # to come back switches the field (once per row, whatever extra_body adds).
                    self._use_max_completion_tokens(exc.message)
                    renamed = True
                    continue
                if refused and names_sampling(exc.message):
                    raise BackendError(self._sampling_refused(p, exc.message, exc.status)) from None
                if refused and _EMPTY_TURN_REFUSED.search(exc.message) and \
                        (filled := filled_empty_turns(conversation)) is not conversation:
                    conversation = filled  # once: the filled conversation has no empty turn left
                    continue
                cap = n_cap(exc.message) if refused else None
                if cap is not None and cap < max(sizes):
                    # Gemini's range for n (1 to 8 on its 2.5 models): as many per request as it serves, not one.
                    self._n_capped(cap, exc.message)
                    per_request = min(per_request, cap)
                    continue
                if refused and max(sizes) > 1 and not too_long(exc.message):
                    # Some endpoints refuse n > 1 (Anthropic's: "must be exactly 1"). Ask for one completion; if that
                    # is served, this row's completions come one per request (and perhaps every later row's:
                    # _n_refused). A 400 for another reason fails the probe too.
                    probing, per_request, refusal = True, 1, exc.message
                    continue
                self._count(row_errors=1)
                return ChatOutput(prompt_tokens=out.prompt_tokens, error=str(exc), transient=exc.transient)
            if probing:
                probing = False
                self._n_refused(refusal)
            got = 0
            for size, (choices, prompt_tokens) in zip(sizes, answers):
                if first:
                    out.prompt_tokens = prompt_tokens
                    first = False
                per_request = max(1, min(per_request, len(choices)) if choices else per_request)
                for text, reason, n_tokens, top, trace in choices[:size]:
                    if self.thinking_opened:
                        text = reopen_thinking(text, trace)
                    out.texts.append(text)
                    out.traces.append(trace)  # type: ignore[union-attr]
                    out.finish_reasons.append(reason)
                    out.n_tokens.append(n_tokens)
                    if want_logprobs:
                        out.first_token_logprobs.append(top)  # type: ignore[union-attr]
                        answered_without_logprobs |= top is None and reason not in NO_ANSWER_REASONS and (
                            bool(text.strip()) or reason == "length")
                    got += 1
            if got == 0:
                self._count(row_errors=1)
                return ChatOutput(
                    prompt_tokens=out.prompt_tokens, error=f"{self.endpoint} returned no choices for this conversation"
                )
        if starved and not any(text.strip() for text in out.texts):  # no request of the row answered
            self._count(row_errors=1)
            return ChatOutput(prompt_tokens=out.prompt_tokens, error=starved[0], transient=False)
        if want_logprobs and any(top is None for top in out.first_token_logprobs):  # type: ignore[union-attr]
            # The judge reads log-probs for every completion or none; partial ones would silently mix the paths.
            out.first_token_logprobs = None
            self._count(logprobs_missing=1)
            if fallback is not None and answered_without_logprobs:
                # The provider accepts the parameters but returns no log-probs: this answer is read from its text;
                # later requests ask for text directly, with room for a whole word.
                self._downgrade("it returned no log-probs")
        return out

    async def _split_answers(self, bodies: list[dict[str, Any]], starved: list[str]) -> list[Any]:
        """The answers of one row's completions split over requests (n refused, completions_per_request below n):
        every request runs to its end, and those that failed transiently while others answered are sent once more
        (their own bodies: the same seeds). One failure had cancelled the others — answers paid for were thrown
        away, and generations still running were billed and never counted — and the row's every completion was
        asked again by the rerun. Raises the first failure left, as one request's would be."""
        results = await _gather_all([self._post(body, starved=starved) for body in bodies])
        failed = [k for k, r in enumerate(results) if isinstance(r, _RowError)]
        if failed and len(failed) < len(results) and all(results[k].transient for k in failed):
            again = await _gather_all([self._post(bodies[k], starved=starved) for k in failed])
            for k, r in zip(failed, again):
                results[k] = r
        for r in results:
            if isinstance(r, _RowError):
                raise r
        return results

    def _use_max_completion_tokens(self, message: str) -> None:
        with self._stats_lock:
            if self.max_tokens_field == "max_completion_tokens":
                return
            self.max_tokens_field = "max_completion_tokens"
        log.warning("%s (model %s): it asks for max_completion_tokens instead of max_tokens (%s); sent so for the "
                    "rest of the run (options.max_tokens_field: max_completion_tokens to start so)", self.endpoint,
                    self.model, message[:120])

    def _n_refused(self, message: str) -> None:
        """A row's request for n > 1 was refused with a 400 whose n = 1 was served. Every later row asks for one
        completion per request once that says the endpoint refuses n > 1: the 400 names the `n` field, or a second
        row meets it. One row's 400 of its own (its prompt; a gateway's passing refusal) must not make every later
        row n requests, each billing its prompt again."""
        with self._stats_lock:
            self._n_refusals += 1
            again = self._n_refusals > 1
        if names_n(message) or again:
            self._serve_one_per_request(f"it refused n > 1 ({message[:120]}) and served n = 1"
                                        + (" on two rows" if again and not names_n(message) else ""))

    def _n_capped(self, cap: int, message: str) -> None:
        """Ask at most `cap` completions per request for the rest of the run (once per client, one line in the log)."""
        with self._stats_lock:
            if self.completions_per_request is not None and self.completions_per_request <= cap:
                return
            self.completions_per_request = cap
        log.warning("%s (model %s): it serves at most %d completions per request (%s); that many are asked %s",
                    self.endpoint, self.model, cap, message[:120],
                    "by this client" if self.probing else "for the rest of the run")

    def _serve_one_per_request(self, reason: str) -> None:
        """Ask one completion per request for the rest of the run (once per client, one line in the log)."""
        with self._stats_lock:
            if self.one_per_request:
                return
            self.one_per_request, self.completions_per_request = reason, 1
        log.warning("%s (model %s): %s; each completion is asked for in its own request %s (set "
                    "options.completions_per_request: 1 to start so)", self.endpoint, self.model, reason,
                    "by the run's clients once their first request finds the same" if self.probing
                    else "for the rest of the run")

    def _sampling_refused(self, p: SamplingParams, message: str, status: int = 400) -> str:
        sent = f"temperature {p.temperature:g}" + (f" and top_p {p.top_p:g}" if self._sends_top_p(p) else "")
        return (f"{self.endpoint} refused the sampling settings of {self.model} ({sent}) with HTTP {status}: "
                f"{message.rstrip('.')}. Every request would be refused alike. A model that takes temperature or "
                "top_p but not both: set top_p: 1.0 for it (sampling.top_p or the model's own top_p), which is not "
                "sent where it is the endpoint's default (Anthropic's and OpenAI's APIs; options.default_top_p: 1.0 "
                "for another endpoint whose default it is). A model that "
                "takes neither: options.extra_body: {temperature: null, top_p: null} sends none; it then samples "
                "at its own defaults, so give the generator those (temperature and top_p; options.default_temperature "
                "and default_top_p where the endpoint's are not known) and the run records what it served")

    def _sends_top_p(self, p: SamplingParams) -> bool:
        # Greedy decoding ignores the nucleus, and the endpoint's own default needs no saying: either way the field
        # does nothing, and Claude models from Sonnet 4.5 on refuse it beside temperature.
        return p.temperature > 0 and p.top_p != self.default_top_p

    def _cap(self, cap: int, message: str) -> None:
        """Ask for at most `cap` top log-probs for the rest of the run (once per client, one line in the log)."""
        with self._stats_lock:
            if self.max_logprobs is not None and self.max_logprobs <= cap:
                return
            self.max_logprobs = cap
        log.warning("%s (model %s): it serves at most %d top log-probs (%s); that many are asked %s", self.endpoint,
                    self.model, cap, message[:120], "by this client" if self.probing else "for the rest of the run")

    def _downgrade(self, reason: str) -> None:
        """Read verdicts from text for the rest of the run (once per client, one line in the log)."""
        with self._stats_lock:
            if self.logprobs_unavailable:
                return
            self.logprobs_unavailable = reason
        log.warning("%s (model %s): %s; answers are read from text %s", self.endpoint, self.model, reason,
                    "by the run's clients once their first request finds the same (the endpoint probe's request)"
                    if self.probing else "for the rest of the run")

    def _body(self, conversation: Conversation, p: SamplingParams, n: int, offset: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "n": n,
            "temperature": p.temperature,  # 0 is greedy decoding on OpenAI and vLLM
            self.max_tokens_field: p.max_tokens,
        }
        if self._sends_top_p(p):
            body["top_p"] = p.top_p
        if p.seed is not None:
            body["seed"] = p.seed + offset
        if p.stop:
            body["stop"] = list(p.stop)
        if p.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = p.logprobs
        for key, value in self.extra_body.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _timeouts(self, body: dict[str, Any]) -> tuple[httpx.Timeout, float]:
        """The request's timeouts and its overall deadline: reading may take as long as the tokens asked for."""
        tokens = _int(body.get("max_completion_tokens") or body.get("max_tokens"))
        tokens *= max(1, _int(body.get("n")) or 1)
        read = self.timeout_s + self.read_s_per_token * tokens
        return httpx.Timeout(self.timeout_s, read=read, connect=min(self.timeout_s, CONNECT_TIMEOUT_S)), 2 * read

    async def _send(self, url: str, body: dict[str, Any], timeout: httpx.Timeout) -> tuple[int, Any, bytes]:
        """POST and read the reply, at most max_reply_bytes of it: (status, headers, body)."""
        async with self._http.stream("POST", url, json=body, timeout=timeout) as response:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise _ReplyTooLarge(f"over {self.max_reply_bytes} bytes")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    async def _post(self, body: dict[str, Any], url: str | None = None, parse: Any = None,
                    starved: list[str] | None = None) -> tuple[list[tuple[str, str, int, dict | None]], int]:
        """One request with retries. Returns `parse(data)` (default: parse_choices' result for chat completions);
        raises _RowError or BackendError. `starved`: a request of a row split over several, where a reply whose
        completions all spent the budget reasoning is kept (its empty answers) and its error noted here — the row
        fails only if none of its requests answered (_complete), as when its completions come in one reply."""
        want_logprobs = bool(body.get("logprobs"))
        url = url or self.url
        chat = parse is None
        parse = parse or (lambda data: parse_choices(data, want_logprobs))
        timeout, deadline = self._timeouts(body)
        attempt = timeouts = drops = unreached = 0
        while True:
            retry_after = None
            async with self._semaphore:
                self._count(requests=1)
                try:
                    status, headers, raw = await asyncio.wait_for(self._send(url, body, timeout), deadline)
                except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never reached the server: retry freely
                    last = (f"could not connect within {timeout.connect:g} s ({type(exc).__name__})"
                            if isinstance(exc, httpx.ConnectTimeout) else
                            f"no free connection of this client's pool within {timeout.pool:g} s (PoolTimeout)")
                    # A connect that timed out never reached the server, as one refused: a blackholed address (a
                    # firewall dropping what is sent) is unreached, and the endpoint probe stops the run on it.
                    unreached += isinstance(exc, httpx.ConnectTimeout)
                except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                    # The server had the request and may bill it: re-send at most timeout_retries times.
                    what = (f"no reply within the {deadline:g} s deadline" if isinstance(exc, asyncio.TimeoutError)
                            else f"timed out ({type(exc).__name__}, read timeout {timeout.read:g} s)")
                    timeouts += 1
                    if timeouts > self.timeout_retries:
                        raise _RowError(f"{self.endpoint}: {what}; sent {attempt + 1} times, not sent again in this "
                                        "run", transient=True) from None
                    last = what
                except _ReplyTooLarge as exc:
                    raise _RowError(f"{self.endpoint}: the reply is {exc} (max_reply_bytes); not read",
                                    transient=True) from None
                except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    # Dropped after the request was sent: the server may have run and billed it (re-sent 6 times, a
                    # dropped generation was paid 7 times). The first drop is re-sent freely: a kept-alive connection
                    # the server had closed drops the request unread, and that is common.
                    last = f"connection error ({type(exc).__name__}: {self._redact(str(exc))[:200]})"
                    drops += 1
                    if drops > 1:
                        timeouts += 1
                        if timeouts > self.timeout_retries:
                            raise _RowError(f"{self.endpoint}: the connection dropped after the request was sent "
                                            f"({type(exc).__name__}); sent {attempt + 1} times, not sent again in "
                                            "this run (it may have been billed)", transient=True) from None
                except httpx.TransportError as exc:  # refused, reset while sending, no connection
                    last = f"connection error ({type(exc).__name__}: {self._redact(str(exc))[:200]})"
                    # ConnectError: the name did not resolve, nothing listened, or TLS refused the host.
                    unreached += isinstance(exc, httpx.ConnectError)
                except httpx.RequestError as exc:
                    # A reply whose Content-Encoding does not decode (DecodingError), a redirect loop: this row's
                    # request went wrong, not the batch (it raised out of chat() and failed every row with it).
                    raise _RowError(f"{self.endpoint}: the reply could not be read ({type(exc).__name__}: "
                                    f"{self._redact(str(exc))[:200]})", transient=True) from None
                except UnicodeEncodeError as exc:  # text that is no Unicode (a lone surrogate) cannot be sent
                    raise _RowError(f"{self.endpoint}: the request holds text that cannot be encoded as UTF-8 "
                                    f"({exc.reason} at character {exc.start}); not sent") from None
                else:
                    if 200 <= status < 300:
                        try:
                            data = orjson.loads(raw)
                        except (ValueError, RecursionError) as exc:  # garbled, truncated or nested too deep
                            raise _RowError(f"{self.endpoint}: HTTP {status} with an unreadable body "
                                            f"({self._redact(str(exc))[:200]})", status, transient=True) from None
                        if isinstance(data, dict) and "error" in data and "choices" not in data \
                                and "data" not in data:
                            message = self._message_of(data, raw)
                            # A gateway reports an upstream failure so (OpenRouter: {"error": {"code": 502, …}}): a
                            # server error or throttling inside is worth asking again in a rerun, a request error not.
                            code = data["error"].get("code") if isinstance(data["error"], dict) else None
                            raise _RowError(f"HTTP {status} from {self.endpoint} carrying an error: {message}", status,
                                            message, transient=_int(code) >= 500 or _int(code) in RETRY_STATUSES)
                        try:
                            choices, prompt_tokens = parse(data)
                        except _BODY_ERRORS as exc:
                            raise _RowError(f"{self.endpoint}: HTTP {status} with a body that is not the expected "
                                            f"reply ({type(exc).__name__}: {self._redact(str(exc))[:200]})", status,
                                            transient=True) from None
                        usage = data.get("usage") if isinstance(data, dict) and isinstance(data.get("usage"),
                                                                                            dict) else {}
                        self._count(
                            # Only where the tokens are priced: an unpriced server without usage costs nothing known.
                            usage_missing=int(self.prices is not None and (
                                not isinstance(usage.get("prompt_tokens"), int)
                                or (chat and not isinstance(usage.get("completion_tokens"), int)))),
                            tokens_missing=int(chat and any(c[2] is None for c in choices)),
                            prompt_tokens=_int(usage.get("prompt_tokens")),
                            cached_prompt_tokens=_cached_tokens(usage),
                            # Thoughts counted only in the total (Gemini) are billed as output tokens too.
                            completion_tokens=_int(usage.get("completion_tokens")) + uncounted_reasoning_tokens(usage),
                        )
                        if chat and choices and all(c[1] == "error" for c in choices):
                            # Every completion failed while generating: the row fails transiently (a rerun asks
                            # again) rather than standing as n empty answers.
                            raise _RowError(f"{self.endpoint}: HTTP {status} with no completion: generation failed "
                                            "part-way (finish_reason "
                                            f"{data['choices'][0].get('finish_reason')!r})", status, transient=True)
                        if chat:
                            try:
                                self._check_reasoning_budget(body, usage, choices, status)
                            except _RowError as exc:
                                if starved is None:
                                    raise
                                starved.append(str(exc))
                        return choices, prompt_tokens
                    elif names_daily_quota(status, raw):
                        raise BackendError(f"{self.endpoint} refused the request with HTTP 429: "
                                           f"{self._message_of(None, raw)[:300]} (a daily quota, or one of 0 for this "
                                           "model on the account's tier, which no retry within the run passes): rerun "
                                           "the same command once it resets or is raised; what the run stored is "
                                           "kept")
                    elif status in (400, 429) and names_account(status, raw_text := self._message_of(None, raw), raw):
                        raise BackendError(f"{self.endpoint} refused the request with HTTP {status}: {raw_text} "
                                           f"({self._key_hint()}, or the account's credit or quota: "
                                           "every request would be refused alike)")
                    elif 300 <= status < 400:
                        location = headers.get("location") or ""
                        raise BackendError(
                            f"{self.endpoint} answered HTTP {status}, a redirect"
                            + (f" to {display_url(location)}" if location else "")
                            + ": redirects are not followed (one could carry the API key elsewhere), so set base_url "
                              "to the endpoint's own address")
                    elif status >= 500 or status in RETRY_STATUSES:
                        last = f"HTTP {status}: {self._message_of(None, raw)[:200]}"
                        retry_after = server_retry_delay(headers, raw)
                        if status in GATEWAY_TIMEOUT_STATUSES:
                            timeouts += 1
                            if timeouts > self.timeout_retries:
                                raise _RowError(f"{self.endpoint}: {last} (a gateway timed out waiting for its "
                                                f"upstream, which may have run and billed it); sent {attempt + 1} "
                                                "times, not sent again in this run", status, transient=True)
                    elif status in FATAL_STATUSES:
                        raise BackendError(
                            f"{self.endpoint} refused the request with HTTP {status}: {self._message_of(None, raw)}"
                            + (f" (check {self._key_hint()})" if status in (401, 403)
                               else " (the account's credit is spent)" if status == 402 else "")
                        )
                    else:
                        message = self._message_of(None, raw)
                        raise _RowError(f"HTTP {status} from {self.endpoint}: {message}", status, message)
            if attempt >= self.max_retries:
                if unreached == attempt + 1:  # never connected: the endpoint probe stops a run on this (UNREACHED)
                    raise _RowError(f"{self.endpoint}: {UNREACHED} in {attempt + 1} attempts; last error: {last}",
                                    transient=True)
                raise _RowError(
                    f"{self.endpoint}: request failed after {attempt + 1} attempts ({self.max_retries} retries); "
                    f"last error: {last}", transient=True
                )
            delay = self._delay(attempt, retry_after)
            log.warning(
                "POST %s: %s; retry %d/%d in %.2f s", self.endpoint, last, attempt + 1, self.max_retries, delay
            )
            self._count(retries=1)
            attempt += 1
            await asyncio.sleep(delay)

    def _check_reasoning_budget(self, body: dict[str, Any], usage: dict[str, Any], choices: list, status: int) -> None:
        """A reasoning model that spent the whole budget thinking returns an empty answer cut at the limit. That is
        no answer: where no completion of the request answered, the row fails (not transiently: the same budget would
        fail again), saying what to raise, instead of an empty text read as a response or an unparsed verdict; beside
        completions that did answer, it stays an empty answer (no answer, never judged) and the others are kept.

        Hidden reasoning shows as `usage.completion_tokens_details.reasoning_tokens` (OpenAI's o-series and GPT-5.x,
        vLLM) or only as `total_tokens` above prompt plus completion tokens (Gemini's thoughts, counted in its total
        and not in its candidates). Where the first REASONING_STOP_AFTER answers at one budget all came back so and
        none answered at it, every other request at that budget would be paid for nothing (a judge asks every pair
        with the same few tokens): the stage stops (BackendError) saying how to switch the thinking off."""
        budget = _int(body.get("max_completion_tokens") or body.get("max_tokens"))
        if any(text.strip() for text, *_ in choices):
            # Some completions answered at this budget: they are kept, and one cut off while thinking stays an empty
            # answer (no answer: never judged, actors.base / engine.method.judges) — the row is not thrown away.
            if budget:
                with self._stats_lock:
                    self._budgets_answered.add(budget)
            return
        if not any(not text.strip() and reason == "length" for text, reason, *_ in choices):
            return
        details = usage.get("completion_tokens_details")
        reasoning = (_int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0) \
            or uncounted_reasoning_tokens(usage)
        if not reasoning:
            return
        with self._stats_lock:
            self._budgets_exhausted[budget] = exhausted = self._budgets_exhausted.get(budget, 0) + 1
            stop = exhausted >= REASONING_STOP_AFTER and budget not in self._budgets_answered
        advice = ("switch its thinking off where the provider allows it (options.extra_body: {reasoning_effort: "
                  "none} on Gemini's OpenAI-compatible endpoint and OpenAI's GPT-5.1 on; {reasoning_effort: low} on "
                  "the o-series) or raise the budget (sampling.max_tokens; judge.max_tokens where verdicts are read "
                  "from text)")
        if stop:
            raise BackendError(f"{self.endpoint}: {self.model} spent the whole budget of {budget} tokens reasoning "
                               f"and gave no answer on each of the first {exhausted} requests at that budget, and "
                               f"answered none: the others would be paid for nothing, so this stage stops; {advice}")
        raise _RowError(f"{self.endpoint}: {self.model} spent its whole budget of {budget} tokens per answer "
                        f"reasoning ({reasoning} reasoning tokens) and gave no answer: {advice}", status,
                        transient=False)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before attempt `attempt` + 1: the exponential backoff's draw, after the server's delay where it
        gave one. The server's delay is a floor, not the wait: OpenAI's "try again in 700ms" is when this one request
        fits, said alike to every request in flight, which came back together and spent their retries in seconds
        (8 rows failed in 7 s of a 10 s throttle that, without the hint, served 7 of them)."""
        backoff = self._random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
        if retry_after is not None:
            return min(max(self.backoff_max_s, SERVER_DELAY_CAP_S), retry_after + backoff)
        return backoff

    def _message_of(self, data: Any, raw: bytes) -> str:
        """The server's error message (OpenAI's {"error": {"message": …}} or the start of the body), scrubbed."""
        if data is None:
            try:
                data = orjson.loads(raw)
            except (ValueError, RecursionError):
                data = None
        if isinstance(data, list) and len(data) == 1:  # Gemini wraps its error object in a list
            data = data[0]
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
        elif isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
        else:
            text = raw[:2000].decode("utf-8", "replace")
        # One line of plain text: it goes into log lines, row errors and the terminal (printable).
        return printable(self._redact(text.strip()))[:500] or "(no message)"


@dataclass(frozen=True)
class _Raised:
    """What a submitted request raised, handed to `collect` as its value (see _captured)."""

    exc: BaseException


async def _captured(coroutine: Any) -> Any:
    """The coroutine's value, or what it raised as a _Raised: a submitted request's task never ends in an exception.
    Once one request stops the stage (a spent quota), `collect` cancels the others; those that failed the same way
    in the meantime ended with exceptions nobody read, and asyncio logged a traceback for each ("Task exception was
    never retrieved") on the console of a run that had stopped cleanly."""
    try:
        return await coroutine
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _Raised(exc)


async def _gather_or_cancel(coroutines: list) -> list:
    """asyncio.gather that cancels (and awaits) the other tasks as soon as one fails, so a failed batch leaves
    nothing running in the background and no exception unretrieved."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()  # a no-op for finished tasks
        await asyncio.gather(*tasks, return_exceptions=True)


async def _gather_all(coroutines: list) -> list:
    """Every task to its end, each one's result or its _RowError (a row's failure leaves its siblings running: what
    they answer is paid for). Any other exception (a BackendError that stops the stage) is raised once every task
    has ended; the tasks are cancelled only where this one is."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        results = list(await asyncio.gather(*tasks, return_exceptions=True))
    finally:
        for task in tasks:
            task.cancel()  # a no-op for finished tasks
        await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, _RowError):
            raise r
    return results


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cached_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens served from the provider's cache (OpenAI's and vLLM's `prompt_tokens_details.cached_tokens`),
    at most the prompt's."""
    details = usage.get("prompt_tokens_details")
    return min(_int(usage.get("prompt_tokens")), _int(details.get("cached_tokens")) if isinstance(details, dict) else 0)
