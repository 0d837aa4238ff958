"""Judges behind providers without log-probs, through the pipeline and `agreement`: the verdicts are right in every
mode, each verdict records how it was read, and the report says which judges read text.

The judge is the deterministic double behind the loopback OpenAI-compatible server in three modes: "serve"
(log-probs, as OpenAI and vLLM), "omit" (no log-probs, as Claude's compatibility layer), "reject" (HTTP 400 naming
the parameter, as some Gemini endpoints).
"""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline
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
    # One token where log-probs decide; a word where text does.
    tokens = {b["max_tokens"] for b in judge_bodies if "logprobs" in b}
    assert tokens <= {1} and (read_from == "logprobs" or {b["max_tokens"] for b in judge_bodies[-3:]} == {4})
    data = report_data(result, cfg)["judging"]
    row = data["per_judge"][0]
    assert row["read_from"][read_from] == len(judgments)
    if read_from == "text":
        assert data["notes"] and "read from text" in data["notes"][0]
    else:
        assert not data["notes"]


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
