"""Faults survived: an OpenAI-compatible server that throttles, errs, drops connections and finally gives up.

The pipeline talks to a real local HTTP server (tests.support.serve) in front of the deterministic double, through the
real HTTP client (actors.http). Results must equal those of calling the double directly: no row lost, none
duplicated. A server that keeps failing fails its shards (not the run); a rerun against a healthy server fills them.
"""

import os
import secrets
from pathlib import Path

import pytest

from tests.support.serve import ChatServer, Fault
from engine.config import config_from_dict
from engine.execution.executor import LocalExecutor
from engine.execution.pipeline import Pipeline
from engine.report import write_report
from tests.support.doubles import ScriptedChat, request_kind

TABLES = ["classifications", "samples", "responses", "judgments", "components", "metrics", "checklists",
          "quality", "groups"]


def config(run_dir, model):
    return config_from_dict({
        "run_dir": str(run_dir),
        "prompts": {"source": "builtin", "per_category": 1, "limit": 4},
        "n": 3,
        "strategies": ["temperature", "system_anchored", "regen_anchored"],
        "generators": [model],
        "judges": [model],
        "execution": {"executor": "local", "shard_size": 2},
    })


def http_model(server, **options):
    return {"name": "scripted", "backend": "http", "model": "scripted", "batch_size": 8,
            "options": {"base_url": server.base_url, "max_retries": 4, "backoff_base_s": 0.01,
                        "backoff_max_s": 0.05, "timeout_s": 2.0, **options}}


DIRECT = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted", "batch_size": 8}


def run(cfg):
    p = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        return p.run()
    finally:
        p.close()


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    return run(config(tmp_path_factory.mktemp("direct") / "run", DIRECT)).tables


def test_throttling_errors_and_drops_lose_and_duplicate_nothing(tmp_path, direct):
    plan = [(Fault("429", retry_after="0"), 6), ("500", 3), ("drop", 2), ("503", 2), ("slow", 1)]
    assert sum(count for _, count in plan) == 14
    with ChatServer(ScriptedChat(), faults=plan, slow_s=3.0, retry_after="0") as server:
        # Enough retries that even one request meeting every fault in a row gets through.
        result = run(config(tmp_path / "run", http_model(server, max_retries=15)))
        statuses = [r.status for r in server.requests]
    assert statuses.count(429) == 6 and statuses.count(500) == 3 and statuses.count(503) == 2
    for name in TABLES:
        assert result.tables[name].equals(direct[name]), f"{name} differs from the direct run"


def test_exhausted_retries_fail_rows_not_the_run_and_a_rerun_sends_only_them(tmp_path, direct):
    def judges_are_down(index, body):
        return "503" if request_kind(body["messages"]) == "judge" else None

    with ChatServer(ScriptedChat(), faults=judges_are_down, retry_after="0") as server:
        cfg = config(tmp_path / "run", http_model(server))
        result = run(cfg)
    # Every judge row failed transiently: written, marked, unresolved — no shard lost, the paid rows of other
    # stages kept.
    assert not Pipeline.failed_shards(result)
    judge = next(r for r in result.stages if r.stage == "judge[scripted]")
    assert judge.rows_transient == judge.rows > 0
    assert set(result.tables["judgments"].column("verdict").to_pylist()) == {"error"}
    assert result.tables["responses"].equals(direct["responses"])
    # An unresolved judge is named in every group it left without a count, never silently dropped.
    groups = result.tables["groups"].to_pylist()
    assert groups and all(g["unresolved_judges"] == ["scripted"] and g["unique_mean"] is None for g in groups)
    report = write_report(result, cfg)["markdown"].read_text()
    assert "rows failed transiently" in report and "unresolved" in report
    with ChatServer(ScriptedChat()) as healthy:
        again = run(config(tmp_path / "run", http_model(healthy)))
        kinds = {request_kind(r.body["messages"]) for r in healthy.requests}
    assert not Pipeline.failed_shards(again)
    # (and the endpoint probe's first requests, engine.execution.preflight: a few tokens before any paid call)
    assert kinds - {"probe"} == {"judge"}, "only the failed rows should have been sent again"
    assert next(r for r in again.stages if r.stage == "judge[scripted]").rows_retried == judge.rows
    for name in TABLES:
        assert again.tables[name].equals(direct[name]), name


def test_an_api_key_never_reaches_the_run_directory_or_the_logs(tmp_path, caplog, capsys):
    key = "sk-test-" + secrets.token_hex(16)
    os.environ["TASKDIV_TEST_API_KEY"] = key
    try:
        with caplog.at_level("DEBUG"):
            with ChatServer(ScriptedChat(), api_key=key, faults=[("500", 2)]) as server:
                cfg = config(tmp_path / "run", http_model(server, api_key_env="TASKDIV_TEST_API_KEY"))
                result = run(cfg)
                write_report(result, cfg)
    finally:
        del os.environ["TASKDIV_TEST_API_KEY"]
    assert not Pipeline.failed_shards(result)
    files = [p for p in Path(cfg.run_dir).rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        assert key.encode() not in path.read_bytes(), f"the key leaked into {path}"
    out = capsys.readouterr()
    assert key not in caplog.text and key not in out.out and key not in out.err
    assert "TASKDIV_TEST_API_KEY" in (Path(cfg.run_dir) / "config.yaml").read_text()
