"""OpenAIChatClient against a real tests.support.serve server over loopback (no mocks of httpx)."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import socket
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.base import BackendError, ChatOutput, SamplingParams, printable
from actors.http import (REASONING_STOP_AFTER, OpenAIChatClient, chat_completions_url, logprobs_cap, parse_choices,
                         retry_after_seconds)
from tests.support.serve import ChatServer, Fault
from engine.method.parsing import p_yes_from_logprobs
from tests.support.test_serve import TOP, EchoChat, echo_text, user

FAST = dict(timeout_s=5, read_s_per_token=0.0, backoff_base_s=0.01, backoff_max_s=0.05)


@pytest.fixture
def serve():
    """Start ChatServers over EchoChat (or a given backend); all are stopped at the end."""
    servers: list[ChatServer] = []

    def start(backend=None, **options) -> ChatServer:
        options.setdefault("batch_window_ms", 5)
        srv = ChatServer(backend or EchoChat(), **options).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def client():
    clients: list[OpenAIChatClient] = []

    def make(srv: ChatServer, model: str = "echo", **options) -> OpenAIChatClient:
        c = OpenAIChatClient(model, base_url=srv.base_url, **{**FAST, **options})
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


class BlankChat:
    """A backend whose every answer is `text` (blank) cut at the token limit, with no hidden reasoning."""

    name = "echo"

    def __init__(self, text: str) -> None:
        self.text = text

    def chat(self, conversations, sampling):
        return [ChatOutput(texts=[self.text], finish_reasons=["length"], n_tokens=[1], prompt_tokens=3)
                for _ in conversations]


def served_ok(srv: ChatServer) -> Counter:
    """How many times each conversation (by last message) was answered 200."""
    return Counter(r.last_message for r in srv.requests if r.status == 200)


def test_batch_comes_back_in_input_order_with_token_accounting(serve, client):
    srv = serve()
    c = client(srv, max_concurrency=8, prices={"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0})
    contents = [f"question {k}" + " word" * (k % 7) for k in range(50)]
    outs = c.chat([user(t) for t in contents], SamplingParams(max_tokens=100, seed=5))
    assert [o.texts for o in outs] == [[echo_text(t, 5)] for t in contents]
    assert all(o.error is None and o.finish_reasons == ["stop"] for o in outs)
    assert [o.n_tokens for o in outs] == [[len(echo_text(t, 5).split())] for t in contents]
    assert [o.prompt_tokens for o in outs] == [2 + len(t.split()) for t in contents]
    stats = c.stats()
    assert stats["requests"] == 50 and stats["retries"] == 0 and stats["row_errors"] == 0
    assert stats["prompt_tokens"] == sum(o.prompt_tokens for o in outs)
    assert stats["completion_tokens"] == sum(sum(o.n_tokens) for o in outs)
    assert stats["cost_usd"] == pytest.approx((2.0 * stats["prompt_tokens"] + 10.0 * stats["completion_tokens"]) / 1e6)
    assert served_ok(srv) == Counter(contents)
    assert 1 < srv.max_in_flight <= 8  # concurrent, and bounded by max_concurrency


def test_sampling_maps_to_the_request(serve, client):
    srv = serve()
    c = client(srv, extra_body={"top_k": 20}, max_tokens_field="max_completion_tokens")
    sampling = SamplingParams(n=2, temperature=0.7, top_p=0.5, max_tokens=9, seed=11, stop=("\n",), logprobs=3)
    c.chat([user("x")], sampling)
    (record,) = srv.requests
    body = record.body
    assert body["model"] == "echo" and body["messages"] == user("x")
    assert (body["n"], body["temperature"], body["top_p"], body["seed"]) == (2, 0.7, 0.5, 11)
    assert body["stop"] == ["\n"] and body["logprobs"] is True and body["top_logprobs"] == 3
    assert body["top_k"] == 20 and body["max_completion_tokens"] == 9 and "max_tokens" not in body
    c2 = client(srv)
    c2.chat([user("y")], SamplingParams())
    body = srv.requests[-1].body
    assert "seed" not in body and "stop" not in body and "logprobs" not in body and body["max_tokens"] == 1024
    # top_p is not sent for greedy decoding (it does nothing there) nor where it is the endpoint's known default;
    # elsewhere it is sent even at 1 (a vLLM server's default comes from the model, Gemini's models set their own).
    c2.chat([user("z")], SamplingParams(temperature=0.0, top_p=0.5))
    assert "top_p" not in srv.requests[-1].body and srv.requests[-1].body["temperature"] == 0.0
    c2.chat([user("z")], SamplingParams(temperature=0.7, top_p=1.0))
    assert srv.requests[-1].body["top_p"] == 1.0
    client(srv, default_top_p=1.0).chat([user("z")], SamplingParams(temperature=0.7, top_p=1.0))
    assert "top_p" not in srv.requests[-1].body


def test_prompt_tokens_served_from_the_providers_cache_are_priced_at_the_cached_price_where_one_is_given(
        serve, client):
    srv = serve(cached_prompt_tokens=3)
    cached = {"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0, "cached_prompt_per_mtok": 0.5}
    c = client(srv, prices=cached)
    c.chat([user("one two three four five"), user("six")], SamplingParams(max_tokens=4))
    stats = c.stats()
    prompt, done, hits = stats["prompt_tokens"], stats["completion_tokens"], stats["cached_prompt_tokens"]
    assert 0 < hits <= 2 * 3 and hits < prompt  # each reply: at most 3 of its prompt's tokens
    assert stats["cost_usd"] == pytest.approx((2.0 * (prompt - hits) + 0.5 * hits + 10.0 * done) / 1e6)
    # Without a cached price they cost what any prompt token does (they were billed in full at 1005 of 1000 before).
    full = client(srv, prices={"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0})
    full.chat([user("one two three four five")], SamplingParams(max_tokens=4))
    s = full.stats()
    assert s["cached_prompt_tokens"] > 0
    assert s["cost_usd"] == pytest.approx((2.0 * s["prompt_tokens"] + 10.0 * s["completion_tokens"]) / 1e6)
    with pytest.raises(ValueError, match="cached_prompt_per_mtok"):
        client(srv, prices={**cached, "cache_write_per_mtok": 1.0})


def test_faults_every_row_exactly_once(serve, client):
    faults = [("429", 6), ("500", 3), ("503", 2), ("slow", 2), ("drop", 3)]
    # The timeout leaves an ordinary reply room on a loaded 2-core machine (at 1 s, one timed out under load and the
    # exact counts below failed); the slow replies stay far past it.
    srv = serve(faults=faults, retry_after="0", slow_s=6.0)
    # timeout_retries: a "slow" reply times out after the server accepted the request; here re-sending is free
    c = client(srv, max_concurrency=6, timeout_s=2.5, max_retries=20, timeout_retries=20)
    contents = [f"row {k}" for k in range(30)]
    outs = c.chat([user(t) for t in contents], SamplingParams(n=2, seed=1))
    assert [o.texts for o in outs] == [[echo_text(t, 1, 0), echo_text(t, 1, 1)] for t in contents]
    assert served_ok(srv) == Counter(contents)  # no row lost, none answered twice
    injected = Counter(r.fault for r in srv.requests if r.fault)
    assert injected == {"429": 6, "500": 3, "503": 2, "slow": 2, "drop": 3}
    assert c.retries == 16 and c.requests == 30 + 16 == len(srv.requests)


def test_retry_after_is_respected(serve, client):
    srv = serve(faults=[(Fault("429", retry_after="1"), 1)])
    c = client(srv, backoff_base_s=0.01, backoff_max_s=5)
    start = time.monotonic()
    (out,) = c.chat([user("wait for me")], SamplingParams())
    elapsed = time.monotonic() - start
    assert out.texts == [echo_text("wait for me")]
    assert 1.0 <= elapsed < 3.0 and c.retries == 1


def test_retry_after_header_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0.25 ") == 0.25
    assert retry_after_seconds("-4") == 0.0
    now = 1_700_000_000.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 42))
    assert retry_after_seconds(date, now=now) == pytest.approx(42.0)
    assert retry_after_seconds(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now - 5)), now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None and retry_after_seconds("") is None


def test_exhausted_retries_fail_the_row_transiently_naming_the_endpoint(serve, client):
    srv = serve(faults=[("503", 1000)], retry_after="")
    c = client(srv, max_retries=2)
    outs = c.chat([user(f"r{k}") for k in range(3)], SamplingParams())
    for out in outs:
        assert out.transient and not out.texts
        assert srv.base_url + "/chat/completions" in out.error and "HTTP 503" in out.error and "3 attempts" in out.error
    assert c.requests == 9 and c.retries == 6 and c.row_errors == 3
    assert not any(r.status == 200 for r in srv.requests)
    seen = len(srv.requests)  # nothing left running after the call returned
    time.sleep(0.2)
    assert len(srv.requests) == seen


def test_one_exhausted_row_keeps_the_rest_of_the_batch(serve, client):
    # Every request for "doomed" fails; the other rows are answered once each and kept.
    srv = serve(faults=lambda index, body: "503" if "doomed" in str(body["messages"]) else None, retry_after="")
    c = client(srv, max_retries=1)
    outs = c.chat([user("fine 1"), user("doomed"), user("fine 2")], SamplingParams())
    assert outs[0].texts == [echo_text("fine 1")] and outs[2].texts == [echo_text("fine 2")]
    assert outs[1].transient and "2 attempts" in outs[1].error
    assert served_ok(srv) == Counter(["fine 1", "fine 2"])


def test_a_row_split_over_requests_keeps_what_its_other_requests_answered(serve, client):
    # One of five one-completion requests failed (Anthropic's 529, retries spent): the other four were cancelled or
    # thrown away — answers paid for, generations still running billed and never counted — and the row failed, for
    # a rerun to ask all five again. Its failed request is sent once more, with its own seed.
    fails = []

    def fault(index, body):
        if body.get("seed") == 102 and len(fails) < 2:  # its first attempt and its retry
            fails.append(index)
            return "529"
        return None

    srv = serve(faults=fault, retry_after="")
    c = client(srv, completions_per_request=1, max_retries=1)
    (out,) = c.chat([user("a")], SamplingParams(n=5, temperature=1.0, seed=100))
    assert out.error is None and len(out.texts) == 5 and len(fails) == 2
    served = sorted(r.body["seed"] for r in srv.requests if r.status == 200)
    assert served == [100, 101, 102, 103, 104]  # each seed served once: none asked twice, none lost
    # A request that keeps failing still fails the row, as before; its siblings ran to their end (counted).
    fails.clear()
    srv2 = serve(faults=lambda index, body: "529" if body.get("seed") == 102 else None, retry_after="")
    c2 = client(srv2, completions_per_request=1, max_retries=1)
    (failed,) = c2.chat([user("a")], SamplingParams(n=5, temperature=1.0, seed=100))
    assert failed.error and failed.transient
    assert sorted(r.body["seed"] for r in srv2.requests if r.status == 200) == [100, 101, 103, 104]
    assert c2.stats()["completion_tokens"] > 0


def test_anthropics_words_for_an_empty_turn_are_each_read_as_one():
    from actors.http import _EMPTY_TURN_REFUSED

    for message in ("messages.1: all messages must have non-empty content except for the optional final "
                    "assistant message", "messages: text content blocks must contain non-whitespace text",
                    "messages: text content blocks must be non-empty"):
        assert _EMPTY_TURN_REFUSED.search(message), message


def test_unreachable_endpoint_fails_rows_after_retries(client):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = OpenAIChatClient("m", base_url=f"http://127.0.0.1:{port}", max_retries=1, **{**FAST, "timeout_s": 1})
    try:
        (out,) = c.chat([user("x")], SamplingParams())
        assert out.transient and f"127.0.0.1:{port}/v1/chat/completions" in out.error
        assert "connection error" in out.error
        assert c.requests == 2 and c.retries == 1
    finally:
        c.close()


def test_planted_api_key_never_leaks(serve, client, monkeypatch, caplog, capsys):
    secret = "sk-" + secrets.token_hex(24)
    monkeypatch.setenv("TASKDIV_TEST_API_KEY", secret)
    caplog.set_level(logging.DEBUG)  # httpx/httpcore debug logs included
    srv = serve(api_key=secret, faults=[("429", 2), ("500", 1000)], retry_after="0")
    c = client(srv, api_key_env="TASKDIV_TEST_API_KEY", max_retries=3)
    seen: list[str] = [repr(c), str(c), str(c.stats()), str(vars(c))]
    (failed,) = c.chat([user("x")], SamplingParams())  # two 429s, then 500s until the retries run out
    seen += [failed.error, repr(failed)]
    assert "HTTP 500" in failed.error and failed.transient and c.retries == 3
    # a wrong key: the server's 401 is fatal, not retried, and its message carries neither key
    monkeypatch.setenv("TASKDIV_WRONG_KEY", "sk-wrong-" + secrets.token_hex(8))
    wrong = client(srv, api_key_env="TASKDIV_WRONG_KEY")
    with pytest.raises(BackendError, match="HTTP 401") as err401:
        wrong.chat([user("x")], SamplingParams())
    assert wrong.requests == 1 and "TASKDIV_WRONG_KEY" in str(err401.value)
    seen += [str(err401.value), "".join(traceback.format_exception(err401.value))]
    # the right key does get through (the server checks it)
    srv2 = serve(api_key=secret)
    ok = client(srv2, api_key_env="TASKDIV_TEST_API_KEY")
    assert ok.chat([user("x")], SamplingParams())[0].texts == [echo_text("x")]
    out, errout = capsys.readouterr()
    seen += [caplog.text, out, errout]
    assert caplog.records  # the retries were logged, so the log check below is not vacuous
    for text in seen:
        assert secret not in text and secret[3:] not in text
        assert "sk-wrong-" not in text


def test_a_refusal_of_the_key_or_the_credit_stops_at_once_saying_which(serve, client):
    # A server that wants a key, asked without one: the hint named "$None". A gateway's 402 (credit spent) failed
    # each row alike, one request at a time, instead of stopping.
    keyed = serve(api_key="sk-" + secrets.token_hex(8))
    with pytest.raises(BackendError, match=r"HTTP 401.*no api_key_env is set") as err:
        client(keyed).chat([user("x")], SamplingParams())
    assert "$None" not in str(err.value)
    srv = serve(faults=[("402", 5)])
    c = client(srv)
    with pytest.raises(BackendError, match=r"HTTP 402.*credit is spent"):
        c.chat([user("a"), user("b")], SamplingParams())


def test_a_key_in_the_base_urls_query_stays_out_of_httpxs_request_log(serve, client, caplog):
    secret = "k" + secrets.token_hex(12)
    srv = serve()
    caplog.set_level(logging.INFO, logger="httpx")
    c = OpenAIChatClient("echo", base_url=srv.base_url + f"?key={secret}", **FAST)
    try:
        assert c.chat([user("x")], SamplingParams())[0].texts
    finally:
        c.close()
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text  # httpx did log the request, without the query
    assert secret not in caplog.text


def test_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("TASKDIV_NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match="TASKDIV_NO_SUCH_KEY"):
        OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1", api_key_env="TASKDIV_NO_SUCH_KEY")


def test_400_for_one_row_is_that_rows_error(serve, client):
    srv = serve()
    c = client(srv)
    contents = [f"fine {k}" for k in range(9)]
    contents.insert(4, "this one is TOO LONG")
    outs = c.chat([user(t) for t in contents], SamplingParams())
    bad = outs[4]
    assert bad.texts == [] and "HTTP 400" in bad.error and "too long" in bad.error
    assert [o.texts for k, o in enumerate(outs) if k != 4] == [[echo_text(t)] for k, t in enumerate(contents) if k != 4]
    assert all(o.error is None for k, o in enumerate(outs) if k != 4)
    assert c.retries == 0 and c.row_errors == 1
    assert Counter(r.last_message for r in srv.requests)["this one is TOO LONG"] == 1  # not retried


def test_wrong_model_is_fatal_not_retried(serve, client):
    srv = serve()
    c = client(srv, model="gpt-unknown")
    with pytest.raises(BackendError, match="HTTP 404.*gpt-unknown"):
        c.chat([user("a"), user("b")], SamplingParams())
    assert c.retries == 0


def test_n_samples_and_top_up_when_the_server_ignores_n(serve, client):
    srv = serve()
    c = client(srv)
    (out,) = c.chat([user("many")], SamplingParams(n=3, seed=7))
    assert out.texts == [echo_text("many", 7, s) for s in range(3)] and len(srv.requests) == 1
    capped = serve(max_choices=2)
    c2 = client(capped)
    (out,) = c2.chat([user("many")], SamplingParams(n=5, seed=7))
    # 5 completions from a server that serves 2 per request: one request of 5 (2 served), then 2 + 1 more;
    # the extra requests move the seed on, so no sample repeats. The top-ups are sent together, so they may arrive
    # in either order.
    assert len(out.texts) == 5 and len(set(out.texts)) == 5
    sent = [(r.body["n"], r.body["seed"]) for r in capped.requests]
    assert sent[0] == (5, 7) and sorted(sent[1:]) == [(1, 11), (2, 9)]
    assert out.n_tokens == [len(t.split()) for t in out.texts]


def test_logprobs_round_trip(serve, client):
    srv = serve()
    c = client(srv)
    (out,) = c.chat([user("Are they equivalent?")], SamplingParams(n=2, temperature=0, logprobs=4, max_tokens=1))
    expected = dict(sorted(TOP.items(), key=lambda kv: -kv[1])[:4])
    assert out.first_token_logprobs == [expected, expected]
    assert p_yes_from_logprobs(out.first_token_logprobs[0]) == pytest.approx(1 / (1 + math.exp(TOP["NO"] - TOP["YES"])))
    assert out.finish_reasons == ["length", "length"]
    (plain,) = c.chat([user("no logprobs asked")], SamplingParams())
    assert plain.first_token_logprobs is None
    bare = serve(EchoChat(logprobs=False))
    (none,) = client(bare).chat([user("judge")], SamplingParams(logprobs=2))
    assert none.texts and none.first_token_logprobs is None  # the judge falls back to the text


def test_parse_choices_reads_the_openai_format():
    data = {
        "choices": [
            {"index": 1, "message": {"content": "B"}, "finish_reason": "length", "logprobs": None},
            {
                "index": 0,
                "message": {"content": "A"},
                "finish_reason": "tool_calls",
                "logprobs": {
                    "content": [
                        {
                            "token": "Yes",
                            "logprob": -0.5,
                            "top_logprobs": [
                                {"token": "Yes", "logprob": -1.0},
                                {"token": "Yes", "logprob": -1.0},
                                {"token": "No", "logprob": -2.0},
                            ],
                        }
                    ]
                },
            },
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7},
    }
    choices, prompt_tokens = parse_choices(data, want_logprobs=True)
    assert prompt_tokens == 12
    assert [(t, r, n) for t, r, n, _, _ in choices] == [("A", "stop", 4), ("B", "length", 3)]
    (a_top, b_top) = [top for _, _, _, top, _ in choices]
    assert a_top["Yes"] == pytest.approx(-1.0 + 0.6931471805599453) and a_top["No"] == -2.0
    assert b_top is None
    with pytest.raises(ValueError):
        parse_choices({"object": "error"}, want_logprobs=False)


def test_base_url_forms():
    assert chat_completions_url("https://api.openai.com/v1") == "https://api.openai.com/v1/chat/completions"
    assert chat_completions_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    # Gemini's OpenAI-compatible base (configs/paper.yaml): the route goes after /v1beta/openai, never a /v1 more
    # (…/v1beta/openai/v1/chat/completions is a 404 for every request of the paper's Gemini judge).
    assert (chat_completions_url("https://generativelanguage.googleapis.com/v1beta/openai/")
            == "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions")
    assert chat_completions_url("https://api.anthropic.com/v1/") == "https://api.anthropic.com/v1/chat/completions"
    assert chat_completions_url("https://gw.example.com/api/v2") == "https://gw.example.com/api/v2/chat/completions"
    with pytest.raises(BackendError):
        chat_completions_url("127.0.0.1:8000")


def test_chat_from_worker_threads_and_inside_a_running_loop(serve, client):
    srv = serve()
    c = client(srv, max_concurrency=4)

    def batch(tag: str) -> list[ChatOutput]:
        return c.chat([user(f"{tag}-{k}") for k in range(10)], SamplingParams())

    with ThreadPoolExecutor(3) as pool:  # like Ray's worker threads, concurrently
        results = list(pool.map(batch, ["a", "b", "c"]))
    for tag, outs in zip("abc", results):
        assert [o.texts for o in outs] == [[echo_text(f"{tag}-{k}")] for k in range(10)]
    assert srv.max_in_flight <= 4  # one bound shared by all callers

    async def inside_a_loop() -> list[ChatOutput]:  # asyncio.run() per call would refuse here
        return c.chat([user("from async")], SamplingParams())

    assert asyncio.run(inside_a_loop())[0].texts == [echo_text("from async")]


def test_close_stops_the_thread_and_refuses_more_work(serve):
    srv = serve()
    c = OpenAIChatClient("echo", base_url=srv.base_url, **FAST)
    assert c.chat([user("x")], SamplingParams())[0].texts
    thread = c._thread
    c.close()
    c.close()  # idempotent
    assert not thread.is_alive()
    with pytest.raises(BackendError, match="closed"):
        c.chat([user("x")], SamplingParams())
    assert not any(t is thread for t in threading.enumerate())


@pytest.mark.slow
def test_real_cpu_model_judge_request_end_to_end(cpu_model):
    """The embedded model served over HTTP gives the same greedy judge answer and log-probs as called directly."""
    from engine.method.judges import read_verdict
    from engine.method.taxonomy import judge_conversation

    conversation = judge_conversation("F", "What is 2+2?", "4", "Four.", limit=4000)
    sampling = SamplingParams(temperature=0.0, max_tokens=4, logprobs=5)
    (direct,) = cpu_model.chat([conversation], sampling)
    with ChatServer(cpu_model, model_name="smollm2-135m") as srv:
        with OpenAIChatClient("smollm2-135m", base_url=srv.base_url, timeout_s=120, max_retries=1) as c:
            (remote,) = c.chat([conversation], sampling)
            stats = c.stats()
    assert remote.error is None and remote.texts == direct.texts
    assert remote.n_tokens == direct.n_tokens and remote.prompt_tokens == direct.prompt_tokens
    (top,) = remote.first_token_logprobs
    assert len(top) == 5 and all(v <= 0 for v in top.values())
    assert top.keys() == direct.first_token_logprobs[0].keys()
    for token, value in direct.first_token_logprobs[0].items():
        assert top[token] == pytest.approx(value, abs=1e-5)
    # The same reading either way: a verdict from the same log-probs, or none (the 135M model's first token is often
    # not a YES/NO, and four tokens of its text may not parse) — never a value on one side only.
    remote_verdict, direct_verdict = read_verdict(remote), read_verdict(direct)
    assert (remote_verdict is None) == (direct_verdict is None)
    if remote_verdict is not None:
        assert remote_verdict[1] == direct_verdict[1] and remote_verdict[0] == pytest.approx(direct_verdict[0])
    assert stats["requests"] == 1 and stats["prompt_tokens"] == direct.prompt_tokens


# Providers without log-probs (shared/notes/providers.md): one that omits them (Claude's compatibility layer) and
# one that answers 400 to the parameters (some Gemini endpoints). With a text fallback allowed, the client asks
# again without them, remembers the downgrade for the rest of the run and says so once; without one, a 400 stays a
# row error.
AUTO = SamplingParams(temperature=0.0, max_tokens=1, logprobs=20, max_tokens_without_logprobs=4)


@pytest.mark.parametrize("mode, status", [("omit", 400), ("reject", 400), ("reject", 422)])
def test_a_provider_without_logprobs_is_read_from_text_and_remembered(serve, client, mode, status, caplog):
    # 422: Mistral's "Extra inputs are not permitted" (FastAPI validation): every row failed for good where a 400
    # was adapted to.
    srv = serve(logprobs_mode=mode, refused_status=status)
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        first = c.chat([user("a")], AUTO)[0]
        later = c.chat([user("b"), user("c")], AUTO)
    assert first.error is None and first.first_token_logprobs is None and first.texts
    assert all(o.error is None and o.first_token_logprobs is None for o in later)
    bodies = [r.body for r in srv.requests]
    answered = [b for b in bodies if "logprobs" not in b]
    # After the downgrade every request asks for text, with room for a whole word.
    assert [b["max_tokens"] for b in answered[-2:]] == [4, 4]
    if mode == "omit":
        assert bodies[0]["logprobs"] is True and bodies[0]["max_tokens"] == 1  # answered, without log-probs
    stats = c.stats()
    assert stats["logprobs_downgraded"] == 1 and stats["row_errors"] == 0
    lines = [r for r in caplog.records if "read from text for the rest of the run" in r.getMessage()]
    assert len(lines) == 1


def test_rejected_log_probs_without_a_text_fallback_stop_the_call(serve, client):
    # verdict: logprobs has no text budget to fall back on: every verdict would be refused alike, and as row errors
    # each would be stored failed for good.
    c = client(serve(logprobs_mode="reject"))
    with pytest.raises(BackendError, match="refuses the log-prob parameters.*verdict to auto"):
        c.chat([user("a"), user("b")], SamplingParams(temperature=0.0, max_tokens=1, logprobs=20))
    assert c.stats()["logprobs_downgraded"] == 0 and c.row_errors == 0


@pytest.mark.parametrize("words", ["vllm", "openai"])
@pytest.mark.parametrize("sampling", [AUTO, SamplingParams(temperature=0.0, max_tokens=1, logprobs=20)],
                         ids=["auto", "logprobs"])
def test_a_server_serving_fewer_top_log_probs_is_asked_for_as_many_as_it_serves(serve, client, words, sampling,
                                                                                caplog):
    # vLLM's server started with --max-logprobs 5 refuses 20 with a 400 naming the logprobs: taken as "no
    # log-probs", every verdict of the run was read from text (P(yes) 1 or 0) — and with `verdict: logprobs` the
    # judge stopped — where 5 top log-probs hold YES and NO whenever the answer is greedy.
    srv = serve(max_logprobs=5, max_logprobs_words=words)
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        first = c.chat([user("a")], sampling)[0]
        later = c.chat([user("b"), user("c")], sampling)
    assert all(o.error is None and o.first_token_logprobs and len(o.first_token_logprobs[0]) <= 5
               for o in [first, *later])
    # The refused request (not among the server's answered ones), then the cap for the rest of the run.
    assert [r.body.get("top_logprobs") for r in srv.requests] == [5, 5, 5]
    assert all(r.body["max_tokens"] == 1 for r in srv.requests)  # still the log-prob budget, not text's
    stats = c.stats()
    assert stats["logprobs_capped"] == 1 and stats["logprobs_downgraded"] == 0 and stats["row_errors"] == 0
    assert len([r for r in caplog.records if "serves at most 5 top log-probs" in r.getMessage()]) == 1


def test_the_cap_on_top_log_probs_is_read_from_the_refusal_only():
    assert logprobs_cap("Requested sample logprobs of 20, which is greater than max allowed: 5") == 5
    assert logprobs_cap("Invalid 'top_logprobs': integer above maximum value. Expected a value <= 10, but got 20 "
                        "instead.") == 10
    assert logprobs_cap("top_logprobs must be less than or equal to 8") == 8
    # A refusal of the parameters that states no cap (Gemini's unknown field), or a number elsewhere.
    assert logprobs_cap('Invalid JSON payload received. Unknown name "top_logprobs": Cannot find field.') is None
    assert logprobs_cap("Requested 3 completions; max allowed: 1") is None


def test_a_filtered_answer_without_log_probs_does_not_turn_them_off(serve, client):
    # A reply stopped by the safety filter has no log-probs by design (no answer to read): it was taken for a
    # provider that omits them, and every later verdict of the run was read from text (P(equivalent) 0 or 1).
    srv = serve(faults=[("filtered", 1)])
    c = client(srv)
    filtered = c.chat([user("a")], AUTO)[0]
    assert filtered.texts == [""] and filtered.finish_reasons == ["content_filter"]
    later = c.chat([user("b"), user("c")], AUTO)
    assert all(o.error is None and o.first_token_logprobs for o in later)
    assert [r.body.get("max_tokens") for r in srv.requests[-2:]] == [1, 1]
    assert c.stats()["logprobs_downgraded"] == 0


def test_a_blank_answer_cut_at_the_limit_without_log_probs_still_turns_them_off(serve, client):
    # A provider that omits log-probs and whose few tokens are blank: no text, yet it answered (cut at the limit).
    # Left on log-probs, every verdict of the run would stay at the log-prob budget and be unreadable.
    c = client(serve(BlankChat(" "), logprobs_mode="omit"))
    (out,) = c.chat([user("a")], AUTO)
    assert out.first_token_logprobs is None and c.stats()["logprobs_downgraded"] == 1


def test_a_provider_with_logprobs_keeps_them_and_one_token(serve, client):
    srv = serve()
    c = client(srv)
    (out,) = c.chat([user("a")], AUTO)
    assert out.first_token_logprobs and srv.requests[0].body["max_tokens"] == 1
    assert c.stats()["logprobs_downgraded"] == 0


# -- Issue 18: paid calls — timeouts, deadlines, bounded and malformed replies, keys over plain http. ----------------


def test_a_generation_that_timed_out_is_sent_at_most_twice(serve, client):
    # The server accepted the request and never answered in time: it may be billed, so one re-send, then the row
    # fails transiently (a rerun may try again) — never seven billed attempts.
    srv = serve(faults=[("slow", 100)], slow_s=3.0)
    c = client(srv, timeout_s=0.5, max_retries=6)
    (out,) = c.chat([user("a long story")], SamplingParams(max_tokens=64))
    assert out.transient and "not sent again in this run" in out.error
    assert len(srv.requests) == 2 and c.requests == 2


def test_the_read_timeout_grows_with_the_tokens_asked_for():
    c = OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1", timeout_s=120)
    try:
        timeout, deadline = c._timeouts({"max_tokens": 5120, "n": 1})
        assert timeout.read == pytest.approx(120 + 0.05 * 5120) and timeout.write == 120
        assert timeout.connect == 15  # a connection is made in seconds; past that the address drops what it is sent
        assert deadline == pytest.approx(2 * timeout.read)
        assert c._timeouts({"max_tokens": 8, "n": 5})[0].read == pytest.approx(120 + 0.05 * 40)
    finally:
        c.close()


def test_a_reply_dripping_one_byte_at_a_time_is_cut_at_the_deadline(serve, client):
    # Each byte arrives within the read timeout, so only the overall deadline ends it: 2 × 1 s per attempt.
    srv = serve(faults=[(Fault("drip", delay_s=0.25), 100)])
    c = client(srv, timeout_s=1.0, timeout_retries=1)
    start = time.monotonic()
    (out,) = c.chat([user("x")], SamplingParams(max_tokens=8))
    elapsed = time.monotonic() - start
    assert out.transient and "deadline" in out.error
    assert elapsed < 6.0 and c.requests == 2  # the whole reply would take ~30 s per attempt


@pytest.mark.parametrize("code, transient", [(500, True), (502, True), (429, True), (400, False)])
def test_a_200_carrying_an_error_is_that_rows_error_and_not_retried(serve, client, code, transient):
    # A gateway passes an upstream's failure so (OpenRouter: {"error": {"code": 502}}): a rerun asks again for a
    # server error or throttling, not for a request error.
    srv = serve(faults=[(Fault("error200", code=code), 1)])
    c = client(srv, max_retries=6)
    bad, good = c.chat([user("first"), user("second")], SamplingParams())
    failed = bad if bad.error else good
    assert "carrying an error" in failed.error and "injected fault" in failed.error
    assert failed.transient is transient
    assert c.requests == 2 and c.retries == 0
    assert (good if bad.error else bad).texts


def test_a_huge_reply_is_not_read_past_the_cap(serve, client):
    import tracemalloc

    srv = serve(faults=[(Fault("huge", size=64 * 1024 * 1024), 1)])
    c = client(srv, max_reply_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        (out,) = c.chat([user("x")], SamplingParams(max_tokens=4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.transient and "max_reply_bytes" in out.error and c.requests == 1
    assert peak < 16 * 1024 * 1024  # a 64 MiB body was never held (a full read held ~3× its size)


def test_deeply_nested_json_is_a_row_error_not_a_crash(serve, client):
    srv = serve(faults=[(Fault("nested", size=200_000), 1)])
    c = client(srv)
    bad, good = c.chat([user("a"), user("b")], SamplingParams())
    failed = bad if bad.error else good
    assert failed.transient and "unreadable body" in failed.error
    assert (good if bad.error else bad).texts


def test_a_connection_dropped_after_sending_is_resent_once_free_then_as_a_timeout(serve, client):
    # The server read the request and closed the connection: it may have generated and billed it. A dropped request
    # was re-sent max_retries times (7 sends); now once freely (a stale kept-alive connection drops the request
    # unread), then timeout_retries times.
    srv = serve(faults=[("drop", 10)])
    c = client(srv, max_retries=6, timeout_retries=1)
    (out,) = c.chat([user("x")], SamplingParams())
    assert out.transient and "dropped after the request was sent" in out.error and "sent 3 times" in out.error
    assert len(srv.requests) == 3
    srv2 = serve(faults=[("drop", 1)])  # one drop: re-sent, answered, nothing spent of timeout_retries
    (ok,) = client(srv2, timeout_retries=0).chat([user("y")], SamplingParams())
    assert ok.texts and not ok.error and len(srv2.requests) == 2


def test_a_reply_that_does_not_decode_or_a_request_that_does_not_encode_fails_its_row_only(serve, client):
    # httpx raises DecodingError for a body whose Content-Encoding lies, and encoding text with a lone surrogate
    # raises UnicodeEncodeError: neither is a transport error, and each raised out of chat(), failing the batch.
    srv = serve(faults=[(Fault("gzip"), 1)])
    c = client(srv, max_retries=3)
    bad, good = c.chat([user("a"), user("b")], SamplingParams())
    failed = bad if bad.error else good
    assert failed.transient and "could not be read (DecodingError" in failed.error, failed.error
    assert (good if bad.error else bad).texts and c.retries == 0
    unsendable, fine = c.chat([user("broken emoji \ud83d"), user("c")], SamplingParams())
    assert "cannot be encoded as UTF-8" in unsendable.error and not unsendable.transient and fine.texts


def test_embeddings_keep_the_base_urls_query_after_their_route(serve, client):
    # A gateway's base_url with a query (Azure's api-version): the embeddings route was appended after the query
    # (…/chat/completions?api-version=1/embeddings), so the chat route got the embeddings request.
    import numpy as np

    class Unit:
        def embed(self, texts):
            return np.ones((len(texts), 3))

    srv = serve(embedder=Unit())
    c = OpenAIChatClient("echo", base_url=srv.base_url + "?api-version=2024-10-21", **FAST)
    try:
        vectors = c.embed(["one", "two"])
    finally:
        c.close()
    assert vectors.shape == (2, 3) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_a_malformed_embedding_reply_is_a_backend_error(serve):
    import http.server
    import json as _json

    class Bad(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = _json.dumps({"data": [{"index": 0}]}).encode()  # no "embedding"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bad)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    c = OpenAIChatClient("e", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", **FAST)
    try:
        with pytest.raises(BackendError, match="not the expected reply"):
            c.embed(["one"])
    finally:
        c.close()
        server.shutdown()


@pytest.mark.parametrize("url", ["http://192.0.2.10/v1", "http://api.example.com/v1"])
def test_an_api_key_over_plain_http_to_another_host_is_refused(monkeypatch, url):
    from actors.registry import ModelCheckError, check_model

    monkeypatch.setenv("TASKDIV_TEST_API_KEY", "sk-test")
    with pytest.raises(BackendError, match="allow_insecure_http"):
        OpenAIChatClient("m", base_url=url, api_key_env="TASKDIV_TEST_API_KEY")
    with pytest.raises(ModelCheckError, match="unencrypted") as err:
        check_model("chat", "http", "m", {"base_url": url, "api_key_env": "TASKDIV_TEST_API_KEY"})
    assert err.value.key == "options.base_url"
    # Allowed explicitly, over https, to loopback, or without a key: accepted.
    OpenAIChatClient("m", base_url=url, api_key_env="TASKDIV_TEST_API_KEY", allow_insecure_http=True).close()
    for ok in (url.replace("http:", "https:"), "http://127.0.0.1:8000/v1", "http://localhost:8000/v1"):
        OpenAIChatClient("m", base_url=ok, api_key_env="TASKDIV_TEST_API_KEY").close()
    OpenAIChatClient("m", base_url=url).close()


def test_continuous_driving_sends_each_next_turn_as_soon_as_its_answer_arrives(serve, client):
    from engine.method.programs import DriveStats, Request, drive

    # Requests of the conversation "slow" take 1 s at the server, the others 20 ms.
    srv = serve(latency_s=lambda body: 1.0 if body["messages"][0]["content"] == "slow" else 0.02)
    c = client(srv)

    def turns(name, k):
        conversation = [{"role": "user", "content": name}]
        for t in range(k):
            (out,) = yield [Request(list(conversation), SamplingParams(max_tokens=16))]
            conversation += [{"role": "assistant", "content": out.texts[0]},
                             {"role": "user", "content": f"{name} again {t}"}]
        return [m["content"] for m in conversation]

    stats = DriveStats()
    slow, fast = drive(c, [turns("slow", 1), turns("fast", 3)], stats)
    assert stats.calls == 4 and stats.rounds == 3
    assert fast[1] == echo_text("fast") and fast[3] == echo_text("fast again 0")
    # The fast conversation's three turns all reached the server while the slow answer was still on its way:
    # lockstep rounds would have held its second turn until the first round's slow request came back.
    slow_sent = next(r.received_at for r in srv.requests if r.body["messages"][0]["content"] == "slow")
    fast_sent = [r.received_at for r in srv.requests if r.body["messages"][0]["content"] == "fast"]
    assert len(fast_sent) == 3 and max(fast_sent) < slow_sent + 0.8
    # Off, the same programs wait for each round's slowest request.
    lockstep = client(srv, continuous=False)
    start = len(srv.requests)
    assert drive(lockstep, [turns("slow", 1), turns("fast", 3)]) == [slow, fast]
    slow_sent = next(r.received_at for r in srv.requests[start:] if r.body["messages"][0]["content"] == "slow")
    second = [r.received_at for r in srv.requests[start:] if r.body["messages"][0]["content"] == "fast"][1]
    assert second >= slow_sent + 0.9


def test_continuous_requests_in_flight_stay_under_the_bound(serve, client):
    from engine.method.programs import Request, drive

    srv = serve(latency_s=0.05)
    c = client(srv, max_in_flight=2, max_concurrency=8)

    def one(k):
        (out,) = yield [Request(user(f"q{k}"), SamplingParams(max_tokens=16))]
        return out.texts[0]

    assert drive(c, [one(k) for k in range(8)]) == [echo_text(f"q{k}") for k in range(8)]
    assert srv.max_in_flight <= 2


# -- Anthropic's compatibility layer and Claude models, as their documentation describes them ------------------------

def test_an_endpoint_that_refuses_n_above_one_is_asked_one_completion_per_request(serve, client, caplog):
    srv = serve(n_mode="reject")
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        (first,) = c.chat([user("a")], SamplingParams(n=3, temperature=0.7))
        later = c.chat([user("b"), user("c")], SamplingParams(n=3, temperature=0.7))
    assert first.error is None and len(first.texts) == 3
    assert all(o.error is None and len(o.texts) == 3 for o in later)
    # The first row: n = 3 refused, one n = 1 probe served, two more; then one request per completion from the start.
    assert c.requests == 1 + 1 + 2 + 6 and [r.body["n"] for r in srv.requests] == [1] * 9
    assert c.stats()["one_completion_per_request"] == 1 and c.stats()["row_errors"] == 0
    assert len([r for r in caplog.records if "in its own request" in r.getMessage()]) == 1


def test_geminis_candidate_count_refusals_are_read_as_refusals_of_n(serve, client, caplog):
    # Gemini's 2.5 models serve up to 8 completions a request: n = 10 was refused, then asked one per request (a probe
    # and 9 more, each billing the prompt again). Its 3.x models refuse any n > 1 without naming the field: one
    # row's probe was taken for that row's own refusal, and the next row met the refusal again.
    srv = serve(n_mode="gemini")
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        (out,) = c.chat([user("a")], SamplingParams(n=10, temperature=0.7))
    assert out.error is None and len(out.texts) == 10
    assert c.requests == 3 and [r.body["n"] for r in srv.requests] == [8, 2] and c.completions_per_request == 8
    assert any("at most 8 completions per request" in r.getMessage() for r in caplog.records)
    srv = serve(n_mode="gemini-3")
    c = client(srv)
    (first,) = c.chat([user("a")], SamplingParams(n=3, temperature=0.7))
    (second,) = c.chat([user("b")], SamplingParams(n=3, temperature=0.7))
    assert len(first.texts) == len(second.texts) == 3
    # The first row: n = 3 refused, then one at a time; the second asked one at a time from the start.
    assert c.requests == 1 + 3 + 3 and [r.body["n"] for r in srv.requests] == [1] * 6


def test_greedy_decoding_asked_for_n_is_one_request_repeated(serve, client):
    # A sweep through temperature 0 asks for n = 5 greedy completions. Sent as n = 5, providers bill five (differing
    # only by their nondeterminism), and a vLLM server that refuses n > 1 when greedy was taken for one that serves
    # one completion per request, for the rest of the run. One is asked, repeated, as the local and vLLM backends do.
    srv = serve()
    c = client(srv)
    (greedy,) = c.chat([user("x")], SamplingParams(n=5, temperature=0.0))
    assert greedy.error is None and greedy.texts == [greedy.texts[0]] * 5 and len(srv.requests) == 1
    assert srv.requests[0].body.get("n", 1) == 1 and c.stats()["completion_tokens"] == greedy.n_tokens[0]
    (sampled,) = c.chat([user("y")], SamplingParams(n=5, temperature=0.7))
    assert len(sampled.texts) == 5 and srv.requests[-1].body["n"] == 5 and c.completions_per_request is None


def test_a_400_for_another_reason_is_not_taken_for_a_refused_n(serve, client):
    srv = serve(faults=[("400", 2)])
    c = client(srv)
    (out,) = c.chat([user("a")], SamplingParams(n=3, temperature=0.7))
    assert out.error is not None and "400" in out.error
    assert c.requests == 2 and c.stats()["one_completion_per_request"] == 0 and c.completions_per_request is None
    (out,) = c.chat([user("b")], SamplingParams(n=3, temperature=0.7))
    # n = 3 refused, the n = 1 probe refused too (so n was not the cause), then n = 3 served.
    assert out.error is None and [r.body["n"] for r in srv.requests] == [3, 1, 3]


def test_one_rows_400_served_at_n_1_does_not_switch_the_run_to_one_completion_per_request(serve, client, caplog):
    # A 400 that does not name `n` (a row's own: its prompt, a gateway's passing refusal), whose n = 1 probe was
    # served, switched every later row to n requests each (each billing its prompt again). It switches once a second
    # row meets it; a 400 naming `n` switches at once (test_an_endpoint_that_refuses_n_above_one_…).
    srv = serve(faults=lambda index, body: "400" if index in (0, 5) else None)
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        (a,) = c.chat([user("a")], SamplingParams(n=3, temperature=0.7))
        (b,) = c.chat([user("b")], SamplingParams(n=3, temperature=0.7))
        assert a.error is None and b.error is None and len(a.texts) == len(b.texts) == 3
        assert [r.body["n"] for r in srv.requests] == [3, 1, 1, 1, 3] and c.completions_per_request is None
        assert c.stats()["one_completion_per_request"] == 0
        (c1,) = c.chat([user("c")], SamplingParams(n=3, temperature=0.7))
        (d,) = c.chat([user("d")], SamplingParams(n=3, temperature=0.7))
    assert c1.error is None and d.error is None and len(d.texts) == 3
    assert [r.body["n"] for r in srv.requests][5:] == [3, 1, 1, 1, 1, 1, 1]
    assert c.stats()["one_completion_per_request"] == 1
    assert any("served n = 1 on two rows" in r.getMessage() for r in caplog.records)


def test_extra_body_may_remove_the_runs_fields_but_not_set_them(serve, client):
    from actors.http import RUN_FIELDS

    srv = serve()
    for field in RUN_FIELDS:
        with pytest.raises(ValueError, match=rf"extra_body\.{field}: the run sets this field"):
            client(srv, extra_body={field: 1})
    with pytest.raises(ValueError, match="extra_body.messages: .*cannot be set"):
        client(srv, extra_body={"messages": None})
    c = client(srv, extra_body={"seed": None, "n": None, "reasoning_effort": "none"})
    c.chat([user("x")], SamplingParams(temperature=0.5, seed=3))
    body = srv.requests[-1].body
    assert "seed" not in body and "n" not in body and body["reasoning_effort"] == "none"


def test_anthropics_host_is_known_and_an_option_overrides_it():
    from actors.http import endpoint_limits

    anthropic = endpoint_limits("https://api.anthropic.com/v1/")
    assert (anthropic["completions_per_request"], anthropic["max_temperature"], anthropic["default_top_p"]) == \
        (1, 1.0, 1.0)
    other = endpoint_limits("http://127.0.0.1:8000/v1")
    assert (other["completions_per_request"], other["max_temperature"], other["default_top_p"]) == (None, None, None)
    # What goes out to Anthropic's host (built, not sent): top_p 1 left out, n = 1.
    with OpenAIChatClient("claude", base_url="https://api.anthropic.com/v1/") as c:
        body = c._body(user("x"), SamplingParams(temperature=0.5, top_p=1.0), 1, 0)
    assert "top_p" not in body and body["temperature"] == 0.5
    anthropic = endpoint_limits("https://api.anthropic.com/v1/", completions_per_request=2, max_temperature=0.8)
    assert (anthropic["completions_per_request"], anthropic["max_temperature"]) == (2, 0.8)


def test_one_completion_per_request_and_a_temperature_cap_as_options(serve, client):
    srv = serve()
    c = client(srv, completions_per_request=1, max_temperature=1.0)
    (out,) = c.chat([user("a")], SamplingParams(n=4, temperature=1.0))
    assert len(out.texts) == 4 and [r.body["n"] for r in srv.requests] == [1] * 4
    with pytest.raises(BackendError, match=r"serves temperatures up to 1 .*temperature 1.5"):
        c.chat([user("b")], SamplingParams(n=2, temperature=1.5))
    assert len(srv.requests) == 4  # refused before sending


def test_a_model_that_refuses_temperature_with_top_p(serve, client):
    srv = serve(sampling_mode="exclusive")
    c = client(srv)
    # A judge's greedy call sends no top_p (it does nothing there): answered.
    (verdict,) = c.chat([user("a")], SamplingParams(temperature=0.0, max_tokens=1, logprobs=20))
    assert verdict.error is None and verdict.texts
    # The paper's sampling (1.0 and 0.9) cannot be served: the batch fails once, saying what to set.
    with pytest.raises(BackendError) as info:
        c.chat([user("b"), user("c")], SamplingParams(n=2, temperature=1.0, top_p=0.9))
    message = str(info.value)
    assert "cannot both be specified" in message and "top_p: 1.0" in message and "default_top_p" in message
    assert "temperature 1 and top_p 0.9" in message
    # top_p 1 where it is the endpoint's default (Anthropic's API: known; here: said) is not sent.
    (out,) = client(srv, default_top_p=1.0).chat([user("d")], SamplingParams(n=2, temperature=1.0, top_p=1.0))
    assert out.error is None and len(out.texts) == 2


@pytest.mark.parametrize("message, about_sampling", [
    ("`temperature` and `top_p` cannot both be specified for this model. Please use only one.", True),
    ("Unsupported parameter: 'temperature' is not supported with this model.", True),
    ("Unsupported value: 'temperature' does not support 0.7 with this model.", True),
    ("* GenerateContentRequest.generation_config.temperature: must be in [0, 2]", True),
    ("top_p: Input should be less than or equal to 1", True),
    ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.", False),
    ("messages.0.content: blocked: what is the temperature of the sun? top_p of the class", False),
    ("Unknown name \"logprobs\": Cannot find field.", False),
])
def test_a_400_about_the_sampling_fields_is_told_from_a_rows_own(message, about_sampling):
    from actors.http import names_sampling

    assert names_sampling(message) is about_sampling


@pytest.mark.parametrize("status", [400, 422])
def test_a_model_that_takes_max_completion_tokens_is_sent_it(serve, client, caplog, status):
    srv = serve(max_tokens_mode="reject", refused_status=status)
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        (first,) = c.chat([user("a")], SamplingParams(n=2, temperature=0.7, max_tokens=5))
        later = c.chat([user("b"), user("c")], SamplingParams(temperature=0.0, max_tokens=1, logprobs=20))
    assert first.error is None and len(first.texts) == 2 and all(o.error is None for o in later)
    # The first request was refused (not recorded by the server); every one after carries max_completion_tokens.
    assert c.requests == 1 + 1 + 2 and len(srv.requests) == 3
    assert [r.body.get("max_completion_tokens") for r in srv.requests] == [5, 1, 1]
    assert not any("max_tokens" in r.body for r in srv.requests)
    assert len([r for r in caplog.records if "max_completion_tokens instead" in r.getMessage()]) == 1


def test_a_prompt_too_long_for_vllm_is_the_rows_error_not_a_field_to_rename(serve, client, caplog):
    # vLLM's refusal names both fields ("'max_tokens' or 'max_completion_tokens' is too large"): read as OpenAI's
    # "use max_completion_tokens", it switched the field for the whole run and sent the row twice more.
    from actors.http import asks_max_completion_tokens

    too_long = ("'max_tokens' or 'max_completion_tokens' is too large: 5. This model's maximum context length is 8 "
                "tokens and your request has 10 input tokens (5 > 8 - 10).")

    class Short(EchoChat):
        def chat(self, conversations, sampling):
            return [ChatOutput(error=too_long) if "long" in c[-1]["content"] else out
                    for c, out in zip(conversations, super().chat(conversations, sampling))]

    srv = serve(Short())
    c = client(srv)
    with caplog.at_level(logging.WARNING, logger="actors.http"):
        (failed,) = c.chat([user("a long one")], SamplingParams(n=3, temperature=0.7, max_tokens=5))
        (fine,) = c.chat([user("short")], SamplingParams(temperature=0.7, max_tokens=5))
    assert failed.error is not None and "too large" in failed.error and fine.error is None
    assert c.max_tokens_field == "max_tokens" and c.requests == 2  # nor asked one completion per request
    assert not [r for r in caplog.records if "max_completion_tokens instead" in r.getMessage()]
    assert not asks_max_completion_tokens(too_long)
    assert asks_max_completion_tokens("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                                      "'max_completion_tokens' instead.")


def test_an_empty_turn_an_endpoint_refuses_is_sent_as_no_answer_there_only(serve, client):
    # Anthropic refuses an empty message before the last: a verdict reminder or an in-context regeneration after an
    # empty (filtered) answer failed its row, and again in every rerun. Elsewhere the conversation goes as written.
    from actors.http import EMPTY_TURN

    conversation = [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": ""},
                    {"role": "user", "content": "Write another one, different from the first."}]
    strict, lenient = serve(empty_turns="reject"), serve()
    for srv in (strict, lenient):
        (out,) = client(srv).chat([conversation], SamplingParams(temperature=0.7, max_tokens=8))
        assert out.error is None and out.texts
    assert strict.requests[-1].body["messages"][1]["content"] == EMPTY_TURN
    assert lenient.requests[-1].body["messages"][1]["content"] == ""
    assert conversation[1]["content"] == ""  # the caller's conversation is not changed


def test_openais_host_is_sent_max_completion_tokens_from_the_start():
    from actors.http import endpoint_limits

    assert endpoint_limits("https://api.openai.com/v1")["max_tokens_field"] == "max_completion_tokens"
    assert endpoint_limits("http://127.0.0.1:8000/v1")["max_tokens_field"] == "max_tokens"
    assert endpoint_limits("https://api.openai.com/v1", max_tokens_field="max_tokens")["max_tokens_field"] == \
        "max_tokens"


def test_rows_refused_together_all_switch_to_max_completion_tokens(serve, client):
    # A batch's requests go out at once with max_tokens and are all refused; the first refusal back switches the
    # field, and every other row, sent before the switch, is asked again with it rather than failed.
    srv = serve(max_tokens_mode="reject", latency_s=0.05)
    c = client(srv, max_concurrency=16)
    outs = c.chat([user(f"q{k}") for k in range(12)], SamplingParams(temperature=0.0, max_tokens=2))
    assert all(o.error is None and o.texts for o in outs) and c.stats()["row_errors"] == 0
    assert len(srv.requests) == 12 and all("max_completion_tokens" in r.body for r in srv.requests)


def test_a_reasoning_model_that_spends_its_budget_thinking_fails_the_row_saying_so(serve, client):
    srv = serve(hidden_reasoning_tokens=16)
    c = client(srv)
    (starved,) = c.chat([user("a")], SamplingParams(temperature=0.0, max_tokens=4))
    assert starved.error is not None and not starved.transient
    assert "spent its whole budget of 4 tokens" in starved.error and "judge.max_tokens" in starved.error
    (answered,) = c.chat([user("b")], SamplingParams(temperature=0.0, max_tokens=64))
    assert answered.error is None and answered.texts[0] and answered.n_tokens[0] > 16
    # Both were billed: the tokens count either way.
    assert c.stats()["completion_tokens"] >= 4 + 16


def test_starved_answers_at_a_budget_that_answered_before_fail_only_their_rows(serve, client):
    # A generator's long prompt may think past its budget where others did not: once an answer came back at a
    # budget, empty ones there fail their rows and the stage goes on.
    srv = serve(hidden_reasoning_tokens=8)
    c = client(srv)
    (answered,) = c.chat([user("a")], SamplingParams(temperature=0.0, max_tokens=12))
    srv.hidden_reasoning_tokens = 12
    starved = c.chat([user(f"q{k}") for k in range(5)], SamplingParams(temperature=0.0, max_tokens=12))
    assert answered.error is None and answered.texts[0]
    assert all(o.error and "spent its whole budget of 12 tokens" in o.error and not o.transient for o in starved)


def test_starved_answers_with_none_answered_stop_the_stage(serve, client):
    # Every answer at the budget empty from thinking: after REASONING_STOP_AFTER the call raises, so a stage does
    # not pay for every other row at that budget. Thoughts reported only in total_tokens (Gemini) count too.
    srv = serve(hidden_reasoning_tokens=16, reasoning_usage="total")
    c = client(srv, max_concurrency=1)
    with pytest.raises(BackendError, match=r"(?s)budget of 4 tokens reasoning.*reasoning_effort: none"):
        c.chat([user(f"q{k}") for k in range(10)], SamplingParams(temperature=0.0, max_tokens=4))
    # Those, and at most the one waiting behind them, which may go out as the call is being cancelled.
    assert REASONING_STOP_AFTER <= len(srv.requests) <= REASONING_STOP_AFTER + 1
    (answered,) = c.chat([user("b")], SamplingParams(temperature=0.0, max_tokens=64))
    assert answered.error is None and answered.texts[0]


def test_an_empty_answer_cut_at_the_limit_without_hidden_tokens_is_an_answer(serve, client):
    # A model that writes only blank tokens up to its budget thought nothing hidden: its empty text is what it
    # wrote (read as unparsed by a judge), not a reasoning failure.
    srv = serve(BlankChat("\n"))
    c = client(srv)
    outs = c.chat([user(f"q{k}") for k in range(REASONING_STOP_AFTER + 1)],
                  SamplingParams(temperature=0.0, max_tokens=1))
    assert all(o.error is None and o.texts == ["\n"] and o.finish_reasons == ["length"] for o in outs)


@pytest.mark.parametrize("n_mode", ["serve", "reject"])
def test_completions_that_answered_are_kept_beside_one_that_ran_out_thinking(serve, client, n_mode):
    # n = 4, one completion thinks past the budget: the three answers (paid for) are kept, the fourth is an empty
    # answer cut at the limit (no answer: never judged), the row does not fail and the stage does not stop. So too
    # where the completions come one request each (an endpoint refusing n > 1, as Anthropic's): the starved one
    # failed the row and the three answers were thrown away.
    srv = serve(hidden_reasoning_tokens=[4, 4, 4, 40], n_mode=n_mode)
    c = client(srv, max_concurrency=1)
    outs = c.chat([user(f"q{k}") for k in range(REASONING_STOP_AFTER + 1)],
                  SamplingParams(temperature=1.0, max_tokens=32, n=4))
    assert all(out.error is None and len(out.texts) == 4 for out in outs)
    starved = [(k, i) for k, out in enumerate(outs) for i, t in enumerate(out.texts) if not t.strip()]
    assert len(starved) == len(outs) and all(outs[k].finish_reasons[i] == "length" for k, i in starved)
    if n_mode == "serve":  # one reply per row: its fourth completion (one request each: whichever is served 4th)
        assert [i for _, i in starved] == [3] * len(outs)


def test_a_row_asked_one_completion_per_request_fails_only_if_none_answered(serve, client):
    srv = serve(hidden_reasoning_tokens=40, n_mode="reject")
    c = client(srv, max_concurrency=1, completions_per_request=1)
    (out,) = c.chat([user("q")], SamplingParams(temperature=1.0, max_tokens=32, n=2))
    assert out.error is not None and "spent its whole budget of 32 tokens" in out.error and not out.transient


@pytest.mark.parametrize("usage", ["details", "total", "gateway"])
def test_hidden_reasoning_is_counted_and_priced_as_output_however_it_is_reported(serve, client, usage):
    # OpenAI counts reasoning inside completion_tokens (details say how many); Gemini counts thoughts only in
    # total_tokens, and bills them at the output rate; gateways translating Gemini name them in the details yet
    # leave them out of completion_tokens: every way, the run's cost holds them.
    srv = serve(hidden_reasoning_tokens=16, reasoning_usage=usage)
    c = client(srv, prices={"prompt_per_mtok": 1.0, "completion_per_mtok": 10.0})
    (out,) = c.chat([user("hello there")], SamplingParams(temperature=0.0, max_tokens=64))
    assert out.error is None and out.texts[0]
    stats = c.stats()
    answer_tokens = len(out.texts[0].split())
    assert stats["completion_tokens"] == answer_tokens + 16
    assert stats["cost_usd"] == pytest.approx((stats["prompt_tokens"] + 10.0 * (answer_tokens + 16)) / 1e6)


@pytest.mark.parametrize("kind, status, says", [("bad_key", 400, "API key not valid"),
                                                ("no_credit", 400, "credit balance is too low"),
                                                ("quota", 429, "exceeded your current quota")])
def test_an_account_refusal_stops_the_call_instead_of_failing_every_row(serve, client, kind, status, says):
    # Gemini answers a bad key with 400 (its error wrapped in a list), Anthropic an empty balance with 400, OpenAI a
    # spent quota with 429: as row errors, every row of the run was stored failed (a 400 for good: a rerun after the
    # fix would not ask them again), or retried for nothing. The call stops at once, saying what the server said.
    srv = serve(faults=[(kind, 1000)])
    c = client(srv, max_retries=3)
    with pytest.raises(BackendError, match=f"HTTP {status}: .*{says}.*credit or quota") as err:
        c.chat([user(f"q{k}") for k in range(3)], SamplingParams())
    assert c.retries == 0 and '\\"' not in str(err.value)


@pytest.mark.parametrize("kind", ["gemini_daily", "gemini_no_tier"])
def test_a_quota_that_resets_only_after_the_run_stops_the_call_without_a_retry(serve, client, kind):
    # Gemini's per-day quota and a quota of 0 ask for a retry in seconds as its per-minute limit does: each row
    # waited out its retries (16 s each, up to 120) and failed, row after row, with nothing to gain.
    srv = serve(faults=[(kind, 1000)])
    c = client(srv, max_retries=3)
    start = time.monotonic()
    with pytest.raises(BackendError, match="HTTP 429: .*limit: (20|0).*daily quota.*rerun the same command"):
        c.chat([user(f"q{k}") for k in range(3)], SamplingParams())
    assert c.retries == 0 and time.monotonic() - start < 5


def test_openais_requests_per_day_limit_refills_and_is_retried():
    # OpenAI's limits refill continuously: its RPD 429 asks for the wait until one more request is allowed.
    import orjson

    from actors.http import names_daily_quota

    openai = {"error": {"message": "Rate limit reached for gpt-4o in organization org-x on requests per day (RPD): "
                                   "Limit 10000, Used 10000, Requested 1. Please try again in 8.64s.",
                        "type": "requests", "code": "rate_limit_exceeded"}}
    assert not names_daily_quota(429, orjson.dumps(openai))
    gemini_cli = {"error": {"code": 429, "message": "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' and "
                                                    "limit 'Gemini 2.5 Pro Requests per day per user per tier'"}}
    assert names_daily_quota(429, orjson.dumps([gemini_cli]))
    assert not names_daily_quota(400, orjson.dumps([gemini_cli]))


def test_requests_cancelled_after_a_refusal_that_stops_the_stage_leave_no_traceback(serve, client, caplog):
    # A spent quota stops the stage at its first refusal, and `collect` cancels the requests still in flight; those
    # that ended in the same refusal as the cancel reached them ended with an exception nobody read, and asyncio
    # logged "Task exception was never retrieved" with a traceback for each (6 of them on a real-audit run's console).
    import gc

    c = client(serve())
    answered = threading.Event()

    async def refused(conversation, sampling):
        if conversation[-1]["content"] == "first":
            raise BackendError("refused: the quota is spent")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # refused while the cancel came: the refusal is what the task ends with
            raise BackendError("refused: the quota is spent") from None
        finally:
            answered.set()

    c._complete = refused
    c.submit(1, user("second"), SamplingParams())
    c.submit(0, user("first"), SamplingParams())
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(BackendError, match="quota is spent"):
            for _ in range(3):  # the first refusal raises at once
                c.collect()
        assert answered.wait(5)
        time.sleep(0.2)
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_geminis_per_minute_rate_limit_is_retried_not_taken_for_a_spent_quota(serve, client):
    # Gemini words its per-minute 429 as OpenAI words a spent quota; only OpenAI's insufficient_quota code stops.
    # It waits the delay Gemini's body asks for (0.4 s here; no Retry-After header), past backoff_max_s (0.05 s): six
    # retries of backoff came to ~16 s in all, under a per-minute quota's wait.
    srv = serve(faults=[("gemini_rate", 2)], retry_after="0")
    c = client(srv, max_retries=3)
    start = time.monotonic()
    (out,) = c.chat([user("x")], SamplingParams())
    assert out.error is None and out.texts == [echo_text("x")] and c.retries == 2
    assert time.monotonic() - start >= 0.8


def test_the_servers_delay_is_read_from_its_headers_and_geminis_body_and_honoured_past_the_backoff_cap(client):
    import orjson

    from actors.http import SERVER_DELAY_CAP_S, server_retry_delay

    assert server_retry_delay({"retry-after": "60"}, b"") == 60.0
    assert server_retry_delay({"retry-after-ms": "1500"}, b"") == 1.5
    body = {"error": {"code": 429, "message": "Quota exceeded. Please retry in 26.387s.", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}]}}
    assert server_retry_delay({}, orjson.dumps(body)) == 26.0
    assert server_retry_delay({}, orjson.dumps([body])) == 26.0  # Gemini wraps its errors in a list
    body["error"]["details"] = []
    assert server_retry_delay({}, orjson.dumps(body)) == pytest.approx(26.387)
    assert server_retry_delay({}, b'{"error": {"message": "slow down"}}') is None
    openai = "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29000. Please try again in {}."
    for said, seconds in (("6.5s", 6.5), ("120ms", 0.12), ("1m30s", 90.0), ("2m0.5s", 120.5)):
        raw = orjson.dumps({"error": {"message": openai.format(said), "type": "tokens", "code": "rate_limit_exceeded"}})
        assert server_retry_delay({}, raw) == pytest.approx(seconds), said
    assert server_retry_delay({}, b"<html>busy</html>") is None
    # A server's body is untrusted: 400 digits of minutes overflowed float() and 4,300 were a ValueError, numbers for
    # details a TypeError — a traceback from the client, not a row that waits its backoff.
    for message in ("try again in " + "9" * 400 + "m1s.", "try again in " + "9" * 5000 + "m1s.",
                    "retry in " + "9" * 400 + ".5s"):
        assert server_retry_delay({}, orjson.dumps({"error": {"message": message}})) is None
    for details in (5, True, "x", {"retryDelay": "2s"}):
        assert server_retry_delay({}, orjson.dumps({"error": {"message": "busy", "details": details}})) is None
    c = OpenAIChatClient("m", base_url="http://127.0.0.1:9", backoff_base_s=0.5, backoff_max_s=30)
    try:
        assert 60.0 <= c._delay(0, 60.0) <= 60.5  # was cut to 30 s: a certain second 429
        assert c._delay(0, 10_000.0) == SERVER_DELAY_CAP_S  # a broken header cannot stall the run
        # A short delay is a floor: the backoff still grows with the attempts (every request in flight is told
        # "try again in 700ms" alike; they came back together and spent their retries in seconds).
        late = [c._delay(5, 0.7) for _ in range(200)]
        assert min(late) >= 0.7 and max(late) > 0.7 + 8 and max(late) <= 0.7 + 16
    finally:
        c.close()


def test_a_servers_message_reaches_logs_and_errors_as_one_line_of_plain_text():
    # A 429 body's escape sequences set the terminal's title (or its clipboard: OSC 52), and its newline forged a log
    # line, when the message was logged and printed as the server wrote it.
    c = OpenAIChatClient("m", base_url="http://127.0.0.1:9")
    try:
        said = c._message_of({"error": {"message": "busy\x1b]0;OWNED\x07\nFAKE LOG LINE: all good\x9b"}}, b"")
    finally:
        c.close()
    assert said == "busy\\x1b]0;OWNED\\x07\\x0aFAKE LOG LINE: all good\\x9b"
    assert "\t" == printable("\t") and printable("a\nb", newlines=True) == "a\nb"


def test_a_retried_failure_keeps_the_servers_message(serve, client):
    # The last error of a row whose retries ran out says what the server said, not only its status.
    srv = serve(faults=[("503", 1000)], retry_after="0")
    c = client(srv, max_retries=1)
    (out,) = c.chat([user("x")], SamplingParams())
    assert out.transient and "last error: HTTP 503: injected fault: HTTP 503" in out.error


def test_an_api_key_with_a_line_end_is_stripped_and_one_with_control_characters_refused(serve, monkeypatch, caplog):
    from actors.registry import ModelCheckError, check_model

    secret = "sk-" + secrets.token_hex(12)
    srv = serve(api_key=secret)
    monkeypatch.setenv("TASKDIV_CRLF_KEY", secret + "\r\n")  # a .env file saved with CRLF line ends
    c = OpenAIChatClient("echo", base_url=srv.base_url, api_key_env="TASKDIV_CRLF_KEY", **FAST)
    try:
        assert c.chat([user("x")], SamplingParams())[0].texts == [echo_text("x")]
    finally:
        c.close()
    monkeypatch.setenv("TASKDIV_CTRL_KEY", secret[:8] + "\x1b" + secret[8:])
    with pytest.raises(BackendError, match="TASKDIV_CTRL_KEY holds a character") as err:
        OpenAIChatClient("echo", base_url=srv.base_url, api_key_env="TASKDIV_CTRL_KEY", **FAST)
    with pytest.raises(ModelCheckError, match="TASKDIV_CTRL_KEY holds a character") as err2:
        check_model("chat", "http", "echo", {"base_url": srv.base_url, "api_key_env": "TASKDIV_CTRL_KEY"})
    for text in (str(err.value), str(err2.value), caplog.text):
        assert secret[8:] not in text


def test_an_answer_stopped_by_the_providers_filter_is_no_answer(serve, client):
    # A reply cut by a safety filter (finish_reason content_filter) was read as a complete answer and judged as a
    # distinct response. Its text is no answer now, and the reason is kept.
    srv = serve(faults=[("filtered", 1)])
    c = client(srv)
    (out,) = c.chat([user("x")], SamplingParams(n=2))
    assert out.error is None and out.texts == ["", ""] and out.finish_reasons == ["content_filter"] * 2



def test_replies_without_token_usage_make_the_cost_unknown_not_zero(serve, client):
    # A gateway that returns no `usage`: its tokens were counted as 0 and the run's cost reported as $0.0000 (the
    # report's side: tests/engine/report/test_report.py).
    srv = serve(usage=False)
    c = client(srv, prices={"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0})
    (out,) = c.chat([user("x")], SamplingParams())
    stats = c.stats()
    assert out.error is None and stats["usage_missing"] == 1 and stats["requests"] == 1
    unpriced = client(serve(usage=False))  # no prices: nothing to price, so nothing unknown
    unpriced.chat([user("x")], SamplingParams())
    assert unpriced.stats()["usage_missing"] == 0
    priced = client(serve(), prices={"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0})
    priced.chat([user("x")], SamplingParams())
    assert priced.stats()["usage_missing"] == 0 and priced.stats()["cost_usd"] > 0


def test_replies_without_token_usage_leave_the_tokens_unknown_not_zero(serve, client):
    # Priced or not, a reply without `usage` gave 0 tokens a completion and 0 in the stage's counter: the responses
    # table said 0 tokens and the report 0.0 generated tok/s.
    c = client(serve(usage=False))
    (out,) = c.chat([user("x")], SamplingParams(n=2))
    assert out.error is None and out.n_tokens == [None, None]
    assert c.stats()["tokens_missing"] == 1 and c.stats()["usage_missing"] == 0
    counted = client(serve())
    (out,) = counted.chat([user("x")], SamplingParams())
    assert isinstance(out.n_tokens[0], int) and counted.stats()["tokens_missing"] == 0


def test_a_redirect_fails_the_batch_naming_where_without_its_query(serve, client):
    # A 3xx (the base URL is not the endpoint's own) was "one row's problem": every row failed for good, none asked
    # again by a rerun, and the run went on. Redirects are not followed (one could carry the key elsewhere).
    srv = serve(faults=[("308", 10)])
    c = client(srv)
    with pytest.raises(BackendError) as info:
        c.chat([user("a"), user("b")], SamplingParams())
    message = str(info.value)
    assert "HTTP 308, a redirect to https://api.example.com/v1/chat/completions" in message
    assert "set base_url" in message and "redirect-signature-secret" not in message


def test_a_gateway_timeout_is_resent_as_often_as_a_timeout_of_ours(serve, client):
    # A 504 (or Cloudflare's 524): the upstream had the request and may bill it. It went through the 6 ordinary
    # retries (7 sends, each perhaps billed); like a read timeout it is re-sent timeout_retries times.
    for status in ("504", "524"):
        srv = serve(faults=[(status, 10)])
        c = client(srv, max_retries=6, timeout_retries=1)
        (out,) = c.chat([user("x")], SamplingParams())
        assert out.error and out.transient and "gateway timed out" in out.error
        assert len(srv.requests) == 2, status
    srv = serve(faults=[("503", 3)])  # a plain 503 is retried as before
    (out,) = client(srv, max_retries=6, timeout_retries=1).chat([user("x")], SamplingParams())
    assert out.error is None and len(srv.requests) == 4


def test_a_generation_that_failed_part_way_is_no_answer(serve, client):
    # OpenRouter's finish_reason "error" and Gemini's OTHER were read as "stop": the cut text stood as a finished
    # answer and was judged. Every completion failed: the row fails transiently (a rerun asks again).
    srv = serve(faults=[("failed", 1)])
    c = client(srv)
    (out,) = c.chat([user("x")], SamplingParams(n=2))
    assert out.error and out.transient and "generation failed part-way" in out.error and not out.texts
    (choices, _), = [parse_choices({"choices": [
        {"index": 0, "message": {"content": "The answer is"}, "finish_reason": "OTHER"},
        {"index": 1, "message": {"content": "Paris."}, "finish_reason": "STOP"}]}, False)]
    assert [(c[0], c[1]) for c in choices] == [("", "error"), ("Paris.", "stop")]
    for reason in ("eos_token", None, "end_turn", "tool_calls"):  # TGI's, none given, Anthropic's: completed
        (choice,), _ = parse_choices({"choices": [{"message": {"content": "ok"}, "finish_reason": reason}]}, False)
        assert choice[:2] == ("ok", "stop"), reason


def test_a_key_in_the_base_urls_query_is_scrubbed_from_a_servers_error(serve, client):
    # A gateway key (?key=) or an Azure SAS in the base URL: a server's 404 page quoting the requested URL passed it
    # into the error message, and so into logs.
    srv = serve()
    c = OpenAIChatClient("echo", base_url=srv.base_url.replace("/v1", "/v1beta/openai") + "?key=AIzaSECRETSECRET",
                         **FAST)
    try:
        with pytest.raises(BackendError) as info:
            c.chat([user("x")], SamplingParams())
    finally:
        c.close()
    assert "HTTP 404" in str(info.value) and "no route POST" in str(info.value)
    assert "AIzaSECRETSECRET" not in str(info.value) and "<redacted>" in str(info.value)


@pytest.mark.parametrize("raw, reason", [
    ("stop", "stop"), ("tool_calls", "stop"), (None, "stop"), ("end_turn", "stop"), ("STOP", "stop"),
    ("length", "length"), ("MAX_TOKENS", "length"), ("max_tokens", "length"),
    ("content_filter", "content_filter"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("refusal", "content_filter")])
def test_finish_reasons_in_gemini_and_anthropic_words_keep_their_meaning(raw, reason):
    # Passed through a gateway, "MAX_TOKENS" was a complete answer and "SAFETY"'s partial text an answer judged.
    (choice,), _ = parse_choices({"choices": [{"index": 0, "message": {"content": "A partial answer"},
                                               "finish_reason": raw}]}, want_logprobs=False)
    assert choice[1] == reason and choice[0] == ("" if reason == "content_filter" else "A partial answer")


def test_openais_refusal_field_is_a_refusal_not_an_empty_answer_that_completed():
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    (choice,), _ = parse_choices({"choices": [{"index": 0, "message": refused, "finish_reason": "stop"}]},
                                 want_logprobs=False)
    assert choice[:2] == ("", "content_filter")
    answered = {"role": "assistant", "content": "Blue.", "refusal": None}
    (choice,), _ = parse_choices({"choices": [{"index": 0, "message": answered, "finish_reason": "stop"}]},
                                 want_logprobs=False)
    assert choice[:2] == ("Blue.", "stop")


def test_token_texts_that_decode_alike_have_their_log_probs_added():
    # SentencePiece's "▁YES" and "YES" both decode to "YES": keeping one dropped the other's mass (the local backend
    # kept the less likely). Every backend adds them now.
    import math

    from actors.base import merge_by_text

    merged = merge_by_text([("YES", -0.2), ("The", -2.6), ("YES", -1.9), ("NO", -3.0)])
    assert merged["YES"] == pytest.approx(math.log(math.exp(-0.2) + math.exp(-1.9)))
    assert merged["The"] == -2.6 and merged["NO"] == -3.0 and list(merged) == ["YES", "The", "NO"]


def test_system_messages_fold_into_the_first_user_turn():
    from actors.base import fold_system

    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again."}]
    assert fold_system(conv) == [{"role": "user", "content": "Be brief.\n\nHi."}, conv[2], conv[3]]
    assert fold_system([{"role": "system", "content": "S"}]) == [{"role": "user", "content": "S"}]
    assert fold_system(conv[1:]) == conv[1:]
