"""tests.support.serve over real loopback HTTP, in front of a tiny deterministic backend defined here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import httpx
import pytest

from actors.base import ChatOutput, Conversation, SamplingParams, pair_sampling
from tests.support.serve import ChatServer, Fault, completion_response, is_loopback, parse_chat_request, BadRequest

ROOT = Path(__file__).resolve().parents[2]
ECHO = "python:tests.support.test_serve:EchoChat"  # the double below, as the CLI's --backend

TOP = {"YES": -0.1, "NO": -2.4, "Maybe": -4.0, "The": -5.5, "I": -6.0, "A": -7.25}


class EchoChat:
    """A deterministic backend: completion s of a conversation is "echo <seed> <s>: <last message>".

    - a last message containing "TOO LONG" fails its row (ChatOutput.error), like an over-long prompt;
    - one containing "CRASH" makes the whole chat() call raise;
    - finish_reason is "length" when the text has more words than max_tokens (the text is then cut);
    - log-probs (when asked and `logprobs` is on): the top-k of TOP for every completion.
    Every call is recorded (`calls`: the batch's last messages), and each call sleeps `delay_s`.
    """

    def __init__(self, model: str = "echo", *, delay_s: float = 0.0, logprobs: bool = True) -> None:
        self.name = model
        self.delay_s = delay_s
        self.logprobs = logprobs
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def chat(self, conversations: Sequence[Conversation], sampling: SamplingParams | Sequence[SamplingParams]):
        params = pair_sampling(conversations, sampling)
        with self._lock:
            self.calls.append([c[-1]["content"] for c in conversations])
        if any("CRASH" in c[-1]["content"] for c in conversations):
            raise RuntimeError("engine crashed")
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._one(c, p) for c, p in zip(conversations, params)]

    def _one(self, conv: Conversation, p: SamplingParams) -> ChatOutput:
        last = conv[-1]["content"]
        prompt_tokens = sum(len(m["content"].split()) for m in conv)
        if "TOO LONG" in last:
            return ChatOutput(prompt_tokens=prompt_tokens, error=f"prompt of {prompt_tokens} tokens is too long")
        out = ChatOutput(prompt_tokens=prompt_tokens)
        for s in range(p.n):
            words = f"echo {p.seed} {s}: {last}".split()
            out.finish_reasons.append("length" if len(words) > p.max_tokens else "stop")
            words = words[: p.max_tokens]
            out.texts.append(" ".join(words))
            out.n_tokens.append(len(words))
        if p.logprobs and self.logprobs:
            top = dict(sorted(TOP.items(), key=lambda kv: -kv[1])[: p.logprobs])
            out.first_token_logprobs = [dict(top) for _ in range(p.n)]
        return out

    def close(self) -> None:
        pass


def echo_text(content: str, seed: int | None = None, sample: int = 0) -> str:
    return f"echo {seed} {sample}: {content}"


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]


@pytest.fixture
def server():
    backend = EchoChat()
    with ChatServer(backend, batch_window_ms=5) as srv:
        yield srv


def post(srv: ChatServer, body, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"Content-Type": "application/json", **(headers or {})}
    return httpx.post(f"{srv.base_url}/chat/completions", content=content, headers=headers, timeout=10)


def test_health_and_models(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{server.base_url}/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["echo"]
    assert httpx.get(f"{server.url}/nowhere").status_code == 404


def test_chat_completion_is_openai_format(server):
    r = post(server, {"model": "echo", "messages": user("hello there"), "max_tokens": 50, "seed": 3})
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-") and data["model"] == "echo"
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": echo_text("hello there", 3)}
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def test_n_choices_and_length_finish(server):
    data = post(server, {"messages": user("one two three"), "n": 3, "max_tokens": 4}).json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in data["choices"]] == [f"echo None {s}: one" for s in range(3)]
    assert {c["finish_reason"] for c in data["choices"]} == {"length"}
    assert data["usage"]["completion_tokens"] == 12


def test_logprobs_shape(server):
    body = {"messages": user("judge"), "n": 2, "logprobs": True, "top_logprobs": 3, "temperature": 0}
    data = post(server, body).json()
    for choice in data["choices"]:
        (first,) = choice["logprobs"]["content"]
        assert first["token"] == "YES" and first["logprob"] == pytest.approx(-0.1)
        top = first["top_logprobs"]
        assert [e["token"] for e in top] == ["YES", "NO", "Maybe"]
        assert [e["logprob"] for e in top] == sorted((e["logprob"] for e in top), reverse=True)
        assert all(e["bytes"] == list(e["token"].encode()) for e in top)
    # logprobs without top_logprobs: the chosen token only, no alternatives
    data = post(server, {"messages": user("judge"), "logprobs": True}).json()
    assert data["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == []
    assert data["choices"][0]["logprobs"]["content"][0]["token"] == "YES"


def test_logprobs_absent_when_backend_has_none():
    with ChatServer(EchoChat(logprobs=False)) as srv:
        data = post(srv, {"messages": user("judge"), "logprobs": True, "top_logprobs": 2}).json()
    assert data["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"{not json", "not valid JSON"),
        ({"model": "echo"}, "'messages' is required"),
        ({"messages": []}, "'messages' is required"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": user("x"), "n": 0}, "n must be an integer >= 1"),
        ({"messages": user("x"), "temperature": "hot"}, "'temperature' must be a number"),
        ({"messages": user("x"), "stop": 3}, "'stop'"),
        ({"messages": user("x"), "top_logprobs": 50, "logprobs": True}, "top_logprobs"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_message(server, body, needle):
    r = post(server, body)
    assert r.status_code == 400
    assert needle in r.json()["error"]["message"]
    assert server.requests == []  # malformed requests never reach the backend or the log


def test_wrong_model_and_unknown_route_are_404(server):
    r = post(server, {"model": "gpt-9", "messages": user("x")})
    assert r.status_code == 404 and "gpt-9" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/v1/completions", json={})
    assert r.status_code == 404


def test_row_error_is_400_and_backend_crash_is_500(server):
    r = post(server, {"messages": user("this is TOO LONG")})
    assert r.status_code == 400 and "too long" in r.json()["error"]["message"]
    r = post(server, {"messages": user("CRASH now")})
    assert r.status_code == 500 and "engine crashed" in r.json()["error"]["message"]
    assert post(server, {"messages": user("still alive")}).status_code == 200


def test_concurrent_requests_are_batched_in_order():
    backend = EchoChat(delay_s=0.02)
    with ChatServer(backend, batch_window_ms=60) as srv, ThreadPoolExecutor(8) as pool:
        bodies = [{"messages": user(f"q{k}"), "seed": k} for k in range(16)]
        replies = list(pool.map(lambda b: post(srv, b).json(), bodies))
    for k, reply in enumerate(replies):
        assert reply["choices"][0]["message"]["content"] == echo_text(f"q{k}", k)
    assert sum(srv.batch_sizes) == 16
    assert max(srv.batch_sizes) > 1 and len(backend.calls) < 16


def test_fault_plan_in_arrival_order():
    faults = [("429", 1), (Fault("503", retry_after="7"), 1), ("500", 1), ("drop", 1), (Fault("slow", delay_s=0.6), 1)]
    with ChatServer(EchoChat(), faults=faults, retry_after="0") as srv:
        body = {"messages": user("x")}
        r = post(srv, body)
        assert r.status_code == 429 and r.headers["Retry-After"] == "0"
        r = post(srv, body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
        r = post(srv, body)
        assert r.status_code == 500 and "Retry-After" not in r.headers
        with pytest.raises(httpx.RemoteProtocolError):
            post(srv, body)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=0.2)
        assert post(srv, body).status_code == 200  # the plan is spent
    assert [r.fault for r in srv.requests] == ["429", "503", "500", "drop", "slow", None]
    assert [r.status for r in srv.requests] == [429, 503, 500, None, None, 200]


def test_fault_callable_decides_per_request():
    def faults(index: int, body: dict):
        return "500" if "bad" in body["messages"][-1]["content"] else None

    with ChatServer(EchoChat(), faults=faults) as srv:
        assert post(srv, {"messages": user("good")}).status_code == 200
        assert post(srv, {"messages": user("bad")}).status_code == 500
        assert post(srv, {"messages": user("good again")}).status_code == 200


def test_api_key_required_when_configured():
    with ChatServer(EchoChat(), api_key="s3cr3t-value") as srv:
        r = post(srv, {"messages": user("x")})
        assert r.status_code == 401 and "s3cr3t" not in r.text
        r = post(srv, {"messages": user("x")}, headers={"Authorization": "Bearer guess-xyzzy"})
        assert r.status_code == 401 and "xyzzy" not in r.text
        r = post(srv, {"messages": user("x")}, headers={"Authorization": "Bearer s3cr3t-value"})
        assert r.status_code == 200


def test_max_choices_imitates_a_gateway_ignoring_n():
    with ChatServer(EchoChat(), max_choices=1) as srv:
        data = post(srv, {"messages": user("x"), "n": 4}).json()
    assert len(data["choices"]) == 1


def test_refuses_non_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")
    with pytest.raises(ValueError, match="loopback"):
        ChatServer(EchoChat(), host="0.0.0.0")


def test_parse_and_render_helpers():
    conv, sampling, top = parse_chat_request(
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "max_completion_tokens": 7,
            "stop": "END",
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 5,
        }
    )
    assert conv == [{"role": "user", "content": "ab"}]
    assert sampling == SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=7, stop=("END",), logprobs=5)
    assert top == 5
    with pytest.raises(BadRequest):
        parse_chat_request({"messages": user("x"), "top_logprobs": 2})  # top_logprobs without logprobs
    out = ChatOutput(texts=["a", "b"], finish_reasons=["stop", "length"], n_tokens=[1, 9], prompt_tokens=3)
    body = completion_response("m", out, None)
    assert [c["completion_tokens"] for c in body["choices"]] == [1, 9]
    assert body["usage"]["total_tokens"] == 13 and not math.isnan(body["created"])


def test_cli_prints_url_serves_and_refuses_remote_hosts():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.serve", "--backend", ECHO, "--model", "echo", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        assert httpx.get(url.removesuffix("/v1") + "/health", timeout=10).json() == {"status": "ok"}
        r = httpx.post(f"{url}/chat/completions", json={"model": "echo", "messages": user("cli")}, timeout=10)
        assert r.json()["choices"][0]["message"]["content"] == echo_text("cli")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0  # SIGTERM unwinds cleanly
    refused = subprocess.run(
        [sys.executable, "-m", "tests.support.serve", "--backend", ECHO, "--host", "0.0.0.0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
