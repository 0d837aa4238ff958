"""Judges behind providers without log-probs, through the pipeline and `agreement`: the verdicts are right in every
mode, each verdict records how it was read, and the report says which judges read text.

The judge is the deterministic double behind the loopback OpenAI-compatible server in three modes: "serve"
(log-probs, as OpenAI and vLLM), "omit" (no log-probs, as Claude's compatibility layer), "reject" (HTTP 400 naming
the parameter, as some Gemini endpoints).

Then the other provider behaviours of shared/notes/providers.md and of current models, through the pipeline and the
command line: a Claude-like endpoint (n must be 1, temperature and top_p not both) generating and judging; the
paper's top_p on such a model stopping with what to set; a temperature above an endpoint's cap refused in
preflight; a GPT-5-like judge (no max_tokens, hidden reasoning) starved of tokens, then given room; `agreement`
checking its judge as a run does.
"""

from __future__ import annotations

import json
import time

import pytest

from engine.cli import main
from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline
from engine.method.programs import CONFIRM_TOKENS
from engine.report.data import report_data
from tests.support.doubles import ScriptedChat, request_kind
from tests.support.serve import ChatServer

GENERATOR = {"name": "g", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
             "batch_size": 16}


def judge(server, verdict="auto"):
    return {"name": "j", "backend": "http", "model": "scripted", "batch_size": 16, "verdict": verdict,
            "options": {"base_url": server.base_url, "max_retries": 2, "backoff_base_s": 0.01, "timeout_s": 5.0}}


def run(tmp_path, judge_model):
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1, "limit": 4}, "n": 3,
        "strategies": ["temperature"], "generators": [GENERATOR], "judges": [judge_model],
        "quality": {"enabled": False}, "accuracy": {"enabled": False},
        "execution": {"executor": "local", "shard_size": 4},
    })
    p = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        return cfg, p.run()
    finally:
        p.close()


@pytest.mark.parametrize("mode, verdict, read_from", [
    ("serve", "auto", "logprobs"), ("omit", "auto", "text"), ("reject", "auto", "text"),
    ("serve", "text", "text"), ("omit", "text", "text"),
])
def test_verdicts_are_right_in_every_provider_mode(tmp_path, mode, verdict, read_from):
    with ChatServer(ScriptedChat(), logprobs_mode=mode) as server:
        cfg, result = run(tmp_path, judge(server, verdict))
        judge_bodies = [r.body for r in server.requests if request_kind(r.body["messages"]) == "judge"]
    judgments = result.tables["judgments"].to_pylist()
    assert judgments and all(j["verdict"] in ("equivalent", "different") for j in judgments)
    # The double says YES exactly when the two responses are of one class.
    responses = {}
    for r in result.tables["responses"].to_pylist():
        responses[(r["prompt_id"], r["sample_idx"])] = r["text"].split()[1]
    for j in judgments:
        same = responses[(j["prompt_id"], j["i"])] == responses[(j["prompt_id"], j["j"])]
        assert (j["verdict"] == "equivalent") == same
    # The first answer of an "omit" endpoint was asked for log-probs and read from its text: every verdict is text.
    assert {j["read_from"] for j in judgments} == {read_from}
    # A few tokens where log-probs decide (the text confirms them); a word where text does.
    tokens = {b["max_tokens"] for b in judge_bodies if "logprobs" in b}
    assert tokens <= {CONFIRM_TOKENS}
    assert read_from == "logprobs" or {b["max_tokens"] for b in judge_bodies[-3:]} == {4}
    data = report_data(result, cfg)["judging"]
    row = data["per_judge"][0]
    assert row["read_from"][read_from] == len(judgments)
    if read_from == "text":
        assert data["notes"] and "read from text" in data["notes"][0]
    else:
        assert not data["notes"]
    # The deviations from the paper say it too: from the config under `verdict: text`, from the verdicts under auto.
    said = [d for d in report_data(result, cfg)["deviations"] if d.startswith("Verdicts read from text")]
    if read_from == "text":
        assert len(said) == 1 and ("`verdict: text`" in said[0] if verdict == "text" else
                                   f"j, {len(judgments)} of {len(judgments)} (`verdict: auto`)" in said[0]), said
    else:
        assert not said


def test_a_judge_whose_server_serves_fewer_top_log_probs_reads_them_and_the_report_says_so(tmp_path):
    # vLLM's server under --max-logprobs 5: the verdicts are read from 5 top log-probs, not from text.
    with ChatServer(ScriptedChat(), max_logprobs=5) as server:
        cfg, result = run(tmp_path, judge(server))
    judgments = result.tables["judgments"].to_pylist()
    assert judgments and {j["read_from"] for j in judgments} == {"logprobs"}
    notes = report_data(result, cfg)["judging"]["notes"]
    assert len(notes) == 1 and "serves fewer top log-probs than the 20 asked" in notes[0]


def test_a_judge_out_of_its_daily_quota_stops_its_stage_and_a_rerun_after_the_reset_judges_it_all(tmp_path):
    # Gemini's per-day quota asks for a retry in seconds: every row waited out its retries and failed. The stage
    # stops at the first such refusal, saying so; nothing is stored failed, and a rerun once it resets asks it all.
    spent = [True]
    with ChatServer(ScriptedChat(), faults=lambda index, body: "gemini_daily" if spent[0] and index >= 1 else None) \
            as server:  # the endpoint probe's request (index 0) is answered
        cfg, result = run(tmp_path, judge(server))
        (reason,) = result.failed_shards()["judge[j]"].values()
        assert "daily quota" in reason and result.tables["judgments"].num_rows == 0
        spent[0] = False
        cfg, result = run(tmp_path, judge(server))
    assert not result.failed_shards() and result.tables["judgments"].num_rows == 12


def labelled_pairs(path):
    rows = [("class 1 a", "class 1 b", 1), ("class 1 a", "class 2 b", 0), ("class 0 x", "class 0 y", 1),
            ("class 3 x", "class 0 y", 0)]
    path.write_text("".join(json.dumps({"prompt": "p", "response_a": a, "response_b": b, "label": label}) + "\n"
                            for a, b, label in rows))
    return path


@pytest.mark.parametrize("mode", ["serve", "omit", "reject"])
def test_agreement_gives_the_right_verdicts_in_every_provider_mode(tmp_path, mode, capsys):
    pairs = labelled_pairs(tmp_path / "pairs.jsonl")
    with ChatServer(ScriptedChat(), logprobs_mode=mode) as server:
        config = tmp_path / "run.yaml"
        config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "judges": [judge(server)]}))
        out = tmp_path / "agreement.json"
        assert main(["agreement", "--pairs", str(pairs), "--config", str(config), "--judge", "j",
                     "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["unparsed"] == 0 and report["accuracy"] == 1.0


# An endpoint as Anthropic's compatibility layer and Claude models from Sonnet 4.5 on behave (providers.md): no
# log-probs, n must be 1, temperature and top_p not both.
CLAUDE_LIKE = {"logprobs_mode": "omit", "n_mode": "reject", "sampling_mode": "exclusive"}


def api_generator(server, **options):
    return {**judge(server), "name": "claude", "options": {**judge(server)["options"], **options}}


def cli_config(tmp_path, server, generator, sampling):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1, "limit": 2}, "n": 3,
        "strategies": ["temperature"], "generators": [generator], "judges": [judge(server)], "sampling": sampling,
        "quality": {"enabled": False}, "accuracy": {"enabled": False}, "execution": {"executor": "local"}}))
    return str(path)


def test_a_claude_like_endpoint_generates_and_judges(tmp_path):
    with ChatServer(ScriptedChat(), **CLAUDE_LIKE) as server:
        cfg = config_from_dict({
            "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1, "limit": 4},
            "n": 3, "strategies": ["temperature"], "generators": [api_generator(server, default_top_p=1.0)],
            "judges": [judge(server)],
            "sampling": {"temperature": 1.0, "top_p": 1.0}, "quality": {"enabled": False},
            "accuracy": {"enabled": False}, "execution": {"executor": "local", "shard_size": 4},
        })
        p = Pipeline(cfg, executor=LocalExecutor(), progress=False)
        try:
            result = p.run()
        finally:
            p.close()
        bodies = [r.body for r in server.requests]
    assert not result.failed_shards()
    responses = result.tables["responses"].to_pylist()
    assert len(responses) == 4 * 3 and all(r["text"] for r in responses)
    judgments = result.tables["judgments"].to_pylist()
    assert judgments and {j["verdict"] for j in judgments} <= {"equivalent", "different"}
    assert {j["read_from"] for j in judgments} == {"text"}
    # Served: one completion per request, and never temperature beside top_p.
    assert {b["n"] for b in bodies} == {1} and not any("top_p" in b for b in bodies)


def test_the_papers_top_p_on_such_a_model_stops_with_what_to_set(tmp_path, capsys):
    with ChatServer(ScriptedChat(), **CLAUDE_LIKE) as server:
        code = main(["--config", cli_config(tmp_path, server, api_generator(server),
                                            {"temperature": 1.0, "top_p": 0.9}), "--quiet"])
        kinds = [request_kind(r.body["messages"]) for r in server.requests]
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "generators[0].top_p" in err and "cannot both be specified" in err and "top_p: 1.0" in err
    # Found by the endpoint probe, before the first paid call: before it, the reference classification (by the judge,
    # on the same endpoint) was paid for and the sampling stage was where the run stopped.
    assert kinds and set(kinds) == {"probe"}


# The endpoint probe (execution.probe_endpoints): what every request to a model would meet is found by one short
# request before the run's first paid call, naming the role and the key to change; nothing is computed.
def probe_run(tmp_path, server, judge_model, **execution):
    return main(["--config", judge_run_config(tmp_path, server, judge_model,
                                              execution={"executor": "local", "shard_size": 4, **execution}),
                 "--quiet"])


def test_a_key_the_provider_refuses_stops_the_run_before_its_first_paid_call(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TASKDIV_PROBE_KEY", "sk-wrong-key-123")
    with ChatServer(ScriptedChat(), api_key="sk-right-key") as server:
        model = judge(server)
        model["options"]["api_key_env"] = "TASKDIV_PROBE_KEY"
        code = probe_run(tmp_path, server, model)
        sent = len(server.requests)  # requests the server served (a refused key is not one)
    err = capsys.readouterr().err
    assert code == 2 and sent == 0 and "Traceback" not in err
    assert "judges[0].options.api_key_env" in err and "HTTP 401" in err and "TASKDIV_PROBE_KEY" in err
    assert "sk-wrong-key-123" not in err
    assert not list((tmp_path / "run").rglob("*.parquet"))


def test_a_model_id_the_endpoint_does_not_serve_stops_the_run_naming_it(tmp_path, capsys):
    with ChatServer(ScriptedChat(), model_name="served-model") as server:
        code = probe_run(tmp_path, server, judge(server))  # asks for "scripted"
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "judges[0].model" in err and "HTTP 404" in err and "'scripted' is not served here" in err


def test_a_judge_whose_endpoint_gives_no_log_probs_under_verdict_logprobs_is_refused_first(tmp_path, capsys):
    with ChatServer(ScriptedChat(), logprobs_mode="omit") as server:
        code = probe_run(tmp_path, server, judge(server, verdict="logprobs"))
        kinds = {request_kind(r.body["messages"]) for r in server.requests}
    err = capsys.readouterr().err
    assert code == 2 and kinds == {"probe"} and "judges[0].verdict" in err and "verdict: auto" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_an_endpoint_no_attempt_connects_to_stops_the_run_at_its_probe_and_quickly(tmp_path, host, monkeypatch):
    # Nothing listens on the port (connection refused) or the name does not resolve: every request of the run would
    # fail alike, so the probe (retried at most PROBE_MAX_RETRIES) refuses the run, keyed to options.base_url — for
    # chat and for the embedding route, whose client reports every failure as an error of the call. It was a note,
    # and the run went on to pay for the other models' stages.
    import socket
    import time

    from actors import registry
    from actors.base import SamplingParams
    from actors.registry import ModelCheckError, probe_model

    monkeypatch.setattr(registry, "PROBE_CONNECT_WINDOW_S", 0.5)  # probed again for 30 s in a run
    monkeypatch.setattr(registry, "PROBE_CONNECT_PAUSE_S", 0.1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"base_url": f"http://{host}:{port}/v1", "backoff_base_s": 0.01, "backoff_max_s": 0.02}
    conversation = [{"role": "user", "content": "Reply with the word OK."}]
    start = time.monotonic()
    for role, samplings in [("chat", [SamplingParams(temperature=0.0, max_tokens=4)]), ("embed", [])]:
        with pytest.raises(ModelCheckError) as caught:
            probe_model(role, "http", "m", options, samplings, conversation)
        assert caught.value.key == "options.base_url" and "no connection could be made" in str(caught.value)
        assert "probe_endpoints: false" in str(caught.value)
    assert time.monotonic() - start < 30


def test_an_address_that_drops_what_is_sent_to_it_stops_the_run_at_its_probe(monkeypatch):
    # A firewalled or wrong IP drops the SYNs: each connect timed out after the whole request timeout (120 s) and
    # counted as "retry freely", never as unreached — the probe took minutes and let the run go on. Recreated with a
    # listener that never accepts and whose backlog is full (the kernel drops further SYNs).
    import socket
    import time

    from actors import http, registry
    from actors.base import SamplingParams
    from actors.registry import ModelCheckError, probe_model

    monkeypatch.setattr(http, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.setattr(registry, "PROBE_CONNECT_WINDOW_S", 0.5)
    monkeypatch.setattr(registry, "PROBE_CONNECT_PAUSE_S", 0.1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.3)
    options = {"base_url": f"http://127.0.0.1:{port}/v1", "backoff_base_s": 0.01, "backoff_max_s": 0.02}
    start = time.monotonic()
    try:
        with pytest.raises(ModelCheckError) as caught:
            probe_model("chat", "http", "m", options, [SamplingParams(temperature=0.0, max_tokens=4)],
                        [{"role": "user", "content": "Reply with the word OK."}])
    finally:
        for s in (*fillers, listener):
            s.close()
    assert caught.value.key == "options.base_url" and "could not connect within 0.5 s" in str(caught.value)
    assert time.monotonic() - start < 20


def test_a_server_still_starting_when_probed_is_waited_for(monkeypatch):
    # Connection refused while `vllm serve`, started beside the run, loads its model: probed again for
    # PROBE_CONNECT_WINDOW_S before the run is refused.
    import socket
    import threading

    from actors import registry
    from actors.base import SamplingParams

    monkeypatch.setattr(registry, "PROBE_CONNECT_WINDOW_S", 30.0)
    monkeypatch.setattr(registry, "PROBE_CONNECT_PAUSE_S", 0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = threading.Event()
    stop = threading.Event()

    def serve_later():
        time.sleep(1.0)
        with ChatServer(ScriptedChat(), port=port):
            started.set()
            stop.wait(60)

    thread = threading.Thread(target=serve_later, daemon=True)
    thread.start()
    try:
        options = {"base_url": f"http://127.0.0.1:{port}/v1", "backoff_base_s": 0.01, "backoff_max_s": 0.02}
        notes = registry.probe_model("chat", "http", "scripted", options, [SamplingParams(temperature=0.0,
                                                                                         max_tokens=4)],
                                     [{"role": "user", "content": "Reply with the word OK."}])
    finally:
        stop.set()
        thread.join(10)
    assert started.is_set() and notes == []


def test_a_server_that_answers_with_errors_is_a_note_not_a_refusal(tmp_path):
    # A server that is there but keeps answering 503: it may serve the run, so the probe notes it and goes on.
    from actors.base import SamplingParams
    from actors.registry import probe_model

    with ChatServer(ScriptedChat(), faults=[("503", 1000)], retry_after="") as server:
        options = {"base_url": server.url, "backoff_base_s": 0.01, "backoff_max_s": 0.02}
        notes = probe_model("chat", "http", "scripted", options, [SamplingParams(temperature=0.0, max_tokens=4)],
                            [{"role": "user", "content": "Reply with the word OK."}])
    assert len(notes) == 1 and "HTTP 503" in notes[0]


def test_each_model_is_probed_with_its_own_settings_and_the_probe_can_be_turned_off(tmp_path):
    with ChatServer(ScriptedChat()) as server:
        assert probe_run(tmp_path / "on", server, judge(server)) == 0
        probes = [r.body for r in server.requests if request_kind(r.body["messages"]) == "probe"]
        server.requests.clear()
        assert probe_run(tmp_path / "off", server, judge(server), probe_endpoints=False) == 0
        after = [request_kind(r.body["messages"]) for r in server.requests]
    # The judge's first request as it judges: greedy, a few tokens with its log-probs; nothing else is probed (the
    # generator is a python backend).
    assert len(probes) == 1 and probes[0]["temperature"] == 0 and probes[0]["max_tokens"] == CONFIRM_TOKENS
    assert probes[0]["logprobs"] is True
    assert after and "probe" not in after


def test_what_the_probe_learns_is_said_as_the_probes_not_the_runs(tmp_path, caplog):
    # The probe's own client, in the driver, switched to text and logged "answers are read from text for the rest of
    # the run", while the run's clients went on asking for log-probs (and found the same on their first request).
    import logging

    with ChatServer(ScriptedChat(), logprobs_mode="omit") as server, caplog.at_level(logging.WARNING):
        assert probe_run(tmp_path, server, judge(server)) == 0
    lines = [r.getMessage() for r in caplog.records if "answers are read from text" in r.getMessage()]
    probe = [line for line in lines if "(the endpoint probe's request)" in line]
    assert probe and all("for the rest of the run" not in line for line in probe)
    assert any("for the rest of the run" in line for line in lines)  # the run's client, on its own first request


def test_a_temperature_above_the_endpoints_cap_is_refused_before_any_request(tmp_path, capsys):
    with ChatServer(ScriptedChat()) as server:
        generator = api_generator(server, max_temperature=1.0)
        code = main(["--config", cli_config(tmp_path, server, generator, {"temperature": [0.5, 1.5]}), "--quiet"])
        sent = len(server.requests)
    err = capsys.readouterr().err
    assert code == 2 and sent == 0 and "Traceback" not in err
    assert "generators[0].temperature (claude@t=1.5): 1.5 is above the 1 this endpoint serves" in err


def judge_run_config(tmp_path, server, judge_model, **sections):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1, "limit": 4}, "n": 3,
        "strategies": ["temperature"], "generators": [GENERATOR], "judges": [judge_model],
        "quality": {"enabled": False}, "accuracy": {"enabled": False},
        "execution": {"executor": "local", "shard_size": 4}, **sections}))
    return str(path)


def judge_requests(server):
    return [r for r in server.requests if request_kind(r.body["messages"]) == "judge"]


def test_a_reasoning_judge_starved_of_tokens_stops_its_stage_saying_why_then_resolves(tmp_path, capsys):
    # As OpenAI's o-series and GPT-5.x: no max_tokens, no log-probs, hidden reasoning before the answer. Every pair
    # is asked with the same four tokens (judge.max_tokens), which never reach past eight of thinking: after the
    # first few such answers the stage stops rather than pay for every other pair and resolve none.
    gpt5_like = {"logprobs_mode": "reject", "max_tokens_mode": "reject", "hidden_reasoning_tokens": 8}
    with ChatServer(ScriptedChat(), **gpt5_like) as server:
        code = main(["--config", judge_run_config(tmp_path / "starved", server, judge(server)), "--quiet"])
        sent = len(judge_requests(server))
        err = capsys.readouterr().err
        cfg = config_from_dict({
            "run_dir": str(tmp_path / "roomy" / "run"), "prompts": {"source": "builtin", "per_category": 1,
                                                                   "limit": 4},
            "n": 3, "strategies": ["temperature"], "generators": [GENERATOR], "judges": [judge(server)],
            "judge": {"max_tokens": 32}, "quality": {"enabled": False}, "accuracy": {"enabled": False},
            "execution": {"executor": "local", "shard_size": 4},
        })
        p = Pipeline(cfg, executor=LocalExecutor(), progress=False)
        try:
            roomy = p.run()
        finally:
            p.close()
    assert code != 0 and "Traceback" not in err
    assert "spent the whole budget of 4 tokens reasoning" in err and "reasoning_effort" in err, err
    pairs = len(roomy.tables["judgments"])
    assert 3 <= sent < pairs, (sent, pairs)  # stopped early: 4 prompts x 3 pairs, each asked in two orders
    resolved = roomy.tables["judgments"].to_pylist()
    assert resolved and {j["verdict"] for j in resolved} <= {"equivalent", "different"}


# Gemini 2.5 and later think by default, and their thoughts are drawn from the same allowance as the answer
# (max_tokens), reported only in total_tokens; Gemini's OpenAI-compatible endpoint switches thinking off with
# reasoning_effort "none" (its documentation; the API lists high, low, medium, none as valid values).
GEMINI_LIKE = {"hidden_reasoning_tokens": 200, "reasoning_usage": "total", "reasoning_off": "none"}


def shipped_judge(name, server):
    import yaml
    from pathlib import Path
    preset = yaml.safe_load((Path(__file__).resolve().parents[3] / "configs" / "paper.yaml").read_text())
    (entry,) = [j for j in preset["judges"] if j["name"] == name]
    return {**entry, "batch_size": 16, "options": {**entry["options"], "base_url": server.base_url,
                                                   "max_retries": 2, "backoff_base_s": 0.01, "timeout_s": 5.0}}


def test_the_shipped_gemini_judge_answers_with_its_thinking_switched_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with ChatServer(ScriptedChat(), model_name="gemini-2.5-flash", **GEMINI_LIKE) as server:
        entry = shipped_judge("gemini-2.5-flash", server)
        _, shipped = run(tmp_path / "shipped", entry)
        asked = judge_requests(server)
        # The same entry without the switch: thoughts take the verdict's tokens and the stage stops, saying so.
        options = {k: v for k, v in entry["options"].items() if k != "extra_body"}
        code = main(["--config", judge_run_config(tmp_path / "thinking", server, {**entry, "options": options}),
                     "--quiet"])
        sent = len(judge_requests(server)) - len(asked)
    err = capsys.readouterr().err
    judgments = shipped.tables["judgments"].to_pylist()
    assert judgments and {j["verdict"] for j in judgments} <= {"equivalent", "different"}
    assert asked and all(r.body.get("reasoning_effort") == "none" for r in asked)
    assert code != 0 and "Traceback" not in err
    assert "reasoning_effort: none" in err and "gave no answer" in err, err
    assert 3 <= sent < len(asked), (sent, len(asked))


def test_agreement_checks_the_judge_as_a_run_does(tmp_path, capsys):
    # Its judge is built outside a run: a misspelt option was a TypeError traceback from the backend's constructor.
    pairs = labelled_pairs(tmp_path / "pairs.jsonl")
    config = tmp_path / "run.yaml"
    options = {"base_url": "http://127.0.0.1:9/v1", "timeout": 3}
    config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "judges": [
        {"name": "j", "backend": "http", "model": "m", "options": options}]}))
    code = main(["agreement", "--pairs", str(pairs), "--config", str(config), "--judge", "j"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "judges[0].options.timeout" in err and "did you mean 'timeout_s'" in err


def test_agreement_holds_the_configs_cost_cap_before_judging_and_says_what_it_spent(tmp_path, capsys):
    # It judged every pair of the file with no plan and no cap: a config's max_cost_usd held runs only.
    pairs = labelled_pairs(tmp_path / "pairs.jsonl")
    with ChatServer(ScriptedChat()) as server:
        priced = judge(server)
        priced["options"]["prices"] = {"prompt_per_mtok": 1000.0, "completion_per_mtok": 1000.0}
        config = tmp_path / "run.yaml"
        argv = ["agreement", "--pairs", str(pairs), "--config", str(config), "--judge", "j", "--resamples", "0"]
        for cap, code in ((0.0001, 2), (10.0, 0)):
            config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "judges": [priced],
                                          "execution": {"max_cost_usd": cap}}))
            assert main(argv) == code
            if code == 2:
                err = capsys.readouterr().err
                assert "execution.max_cost_usd: judging these 4 pairs with j may cost up to $" in err
                assert "nothing was judged" in err and not server.requests
        out = capsys.readouterr().out
        assert "LLM calls: 4 for 4 pairs; cost $" in out and len(server.requests) == 4
        # Unpriced under a cap: unknown, refused as a run is.
        del priced["options"]["prices"]
        config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "judges": [priced],
                                      "execution": {"max_cost_usd": 10.0}}))
        assert main(argv) == 2 and "cost is unknown (no options.prices)" in capsys.readouterr().err
