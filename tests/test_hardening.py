"""Issue 18's trust boundaries and small defects, each reproduced here: a planted Ray address file, ray imported
before the engine, python: backends without the opt-in, alias bombs, credentials in base URLs, a locked or foreign
run directory, a math worker that hangs mid-line, the test server's auth-before-body, big CSV cells, size caps and
untrusted text in every report field.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import config_from_dict, load_config
from engine.errors import ConfigError, RunDirError

REPO = Path(__file__).resolve().parents[1]


# -- Joining a cluster ---------------------------------------------------------------------------------------------

def test_a_planted_address_file_of_another_user_is_not_joined(tmp_path, monkeypatch, caplog):
    from engine.execution.executor import running_cluster_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    planted = tmp_path / "ray_current_cluster"
    planted.write_text("192.0.2.66:6379")
    os.chmod(planted, 0o644)
    assert running_cluster_address(str(planted)) == "192.0.2.66:6379"  # this user's own file is trusted
    if os.getuid() != 0:
        pytest.skip("changing a file's owner to another uid needs root")
    os.chown(planted, 4242, 4242)
    with caplog.at_level("WARNING"):
        assert running_cluster_address(str(planted)) is None
    assert "belongs to uid 4242" in caplog.text and "RAY_ADDRESS" in caplog.text


def test_an_address_file_others_may_write_is_not_joined(tmp_path, monkeypatch):
    from engine.execution.executor import running_cluster_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    planted = tmp_path / "ray_current_cluster"
    planted.write_text("192.0.2.66:6379")
    os.chmod(planted, 0o666)
    assert running_cluster_address(str(planted)) is None
    # Group-writable in the user's own private group (Ubuntu's umask 002 under ssh: `ray start` writes 664) is the
    # user's alone: refused, the documented `ray submit` ran on an embedded Ray on the head.
    import grp
    import pwd

    os.chmod(planted, 0o664)
    user = pwd.getpwuid(os.getuid())
    private = grp.getgrgid(user.pw_gid).gr_name == user.pw_name and not set(grp.getgrgid(user.pw_gid).gr_mem) - {
        user.pw_name}
    assert (running_cluster_address(str(planted)) == "192.0.2.66:6379") == private
    shared = next((g for g in grp.getgrall() if g.gr_gid != user.pw_gid), None)
    if os.getuid() == 0 and shared is not None:  # a group others share: still refused
        os.chown(planted, -1, shared.gr_gid)
        assert running_cluster_address(str(planted)) is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a cluster the user names is always joined
    assert running_cluster_address(str(planted)) == "127.0.0.1:6379"


def test_the_embedded_ray_binds_loopback_even_when_ray_was_imported_first(tmp_path):
    # A notebook that imported ray before the engine: the environment variable comes too late to matter.
    script = """
import os, sys
os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
import ray
from engine.execution.executor import RayExecutor
ex = RayExecutor(address="local", num_cpus=1, object_store_memory=80 * 1024 * 1024)
print("NODE", ray.nodes()[0]["NodeManagerAddress"])
ex.close()
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env.update(PYTHONPATH=str(REPO), RAY_ADDRESS="")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NODE 127.0.0.1" in proc.stdout, proc.stdout


# -- python: backends are code -----------------------------------------------------------------------------------

def test_a_python_backend_needs_the_opt_in(tmp_path):
    config = tmp_path / "shared.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n"
                      "generators: [{name: x, backend: 'python:os:system', model: 'touch pwned'}]\n")
    env = {k: v for k, v in os.environ.items() if k != "TASKDIV_ALLOW_PYTHON_BACKENDS"}
    proc = subprocess.run([sys.executable, "engine/run.py", "--config", str(config)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--allow-python-backends" in proc.stderr and "is code" in proc.stderr
    assert not (REPO / "pwned").exists() and not (tmp_path / "pwned").exists()


# -- Configs -----------------------------------------------------------------------------------------------------

def test_yaml_aliases_are_refused_naming_the_line(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 7):
        bomb.append(f"{'abcdefg'[k]}: &{'abcdefg'[k]} [" + ", ".join([f"*{'abcdefg'[k - 1]}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(bomb) + "\n")
    assert path.stat().st_size < 600
    with pytest.raises(ConfigError, match=r"bomb\.yaml: line 2: invalid YAML: YAML aliases"):
        load_config(path)


def test_credentials_in_base_urls_never_reach_a_written_copy(tmp_path):
    from engine.config import redact_url

    url = "https://user:s3cret@gateway.example.com/v1?api-key=s3cret&region=eu"
    cfg = config_from_dict({"judges": [{"name": "j", "backend": "http", "model": "m", "options": {"base_url": url}}]})
    written = json.dumps(cfg.to_dict())
    assert "s3cret" not in written and "gateway.example.com/v1" in written
    assert redact_url(url) == "https://<redacted>@gateway.example.com/v1?api-key=%3Credacted%3E&region=%3Credacted%3E"
    assert cfg.judges[0].options["base_url"] == url  # the run itself still uses the real URL


@pytest.mark.parametrize("value", [-1, 0])
def test_math_timeout_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"accuracy\.math_timeout_s: must be a number of seconds > 0"):
        config_from_dict({"accuracy": {"math_timeout_s": value}})


# -- Run directories ---------------------------------------------------------------------------------------------

def test_a_run_never_writes_into_a_folder_of_other_files(tmp_path):
    from engine.execution.store import claim_run_dir

    (tmp_path / "README.md").write_text("mine")
    (tmp_path / "plot.png").write_bytes(b"png")
    with pytest.raises(RunDirError, match=r"holds 2 entries \(README\.md, plot\.png\) and is not a taskdiv run"):
        claim_run_dir(tmp_path)
    fresh = tmp_path / "new"
    claim_run_dir(fresh)  # created: marked as a run directory
    (fresh / "report.md").write_text("a report")
    claim_run_dir(fresh)  # ours: fine
    earlier = tmp_path / "earlier"  # a run directory from before the marker existed
    (earlier / "shards").mkdir(parents=True)
    (earlier / "config.yaml").write_text("n: 5\n")
    claim_run_dir(earlier)
    assert (earlier / ".taskdiv-run").is_file()


@pytest.mark.parametrize("link", ["figures", "shards", "shards/samples"])
def test_a_run_directory_whose_folders_are_links_is_refused_before_anything_is_deleted(tmp_path, link):
    # A run directory received as a tarball keeps its links: a report deleted the stale *.png of wherever `figures`
    # pointed (a user's photos), and shards were written and a crash's temporary files deleted through `shards`.
    from engine.execution.store import claim_run_dir
    from engine.report.write import write_report

    run = tmp_path / "run"
    run.mkdir()
    if link != "shards":
        (run / "shards").mkdir()
    (run / "config.yaml").write_text("n: 5\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "holiday.png").write_bytes(b"png")
    (run / link).symlink_to(victim, target_is_directory=True)
    with pytest.raises(RunDirError, match=rf"{link} is a symbolic link .*replace it with a folder"):
        claim_run_dir(run)

    class Result:
        run_dir = str(run)

    with pytest.raises(RunDirError, match="is a symbolic link"):
        write_report(Result(), None)
    assert (victim / "holiday.png").is_file() and [p.name for p in victim.iterdir()] == ["holiday.png"]


def test_a_value_quoted_in_an_error_reaches_the_terminal_without_its_control_characters(tmp_path, capsys,
                                                                                           monkeypatch):
    # A received run's values (a model named with escape sequences) were printed as they were: `explore --where`
    # quoting them cleared the screen and set the terminal's title.
    import engine.cli.explore
    from engine.cli import main
    from engine.errors import TaskdivError

    def quoting(args):
        raise TaskdivError("--where: no group has model=x (values there: m\x1b]0;OWNED\x07\x1b[2J)\nsecond line")

    monkeypatch.setattr(engine.cli.explore, "cmd_explore", quoting)
    assert main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "m\\x1b]0;OWNED\\x07\\x1b[2J)\nsecond line" in err


def test_a_second_run_on_a_locked_directory_stops_at_once_naming_the_holder(tmp_path):
    from engine.execution.store import RunDirLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from engine.execution.store import RunDirLock\n"
        "lock = RunDirLock(%r); lock.acquire(); print('held', flush=True); time.sleep(60)") % (str(REPO),
                                                                                               str(tmp_path))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid} on {socket.gethostname()}"):
            RunDirLock(tmp_path).acquire()
        assert time.monotonic() - start < 1
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the kernel dropped its lock, the stale file does not block.
    lock = RunDirLock(tmp_path)
    lock.acquire()
    lock.release()


# -- Smaller defects ---------------------------------------------------------------------------------------------

def test_a_math_worker_that_hangs_mid_line_is_killed_at_the_timeout(tmp_path):
    from engine.method.math import VerifierProcess

    body = ("import sys, time\nprint('ready', flush=True)\nsys.stdin.readline()\n"
            "sys.stdout.write('{\"correct\": tr'); sys.stdout.flush(); time.sleep(600)\n")
    worker = VerifierProcess([sys.executable, "-c", body], startup_s=20)
    start = time.monotonic()
    assert worker.check("1", "1", timeout_s=1) == (None, "timed out after 1 s (worker killed)")
    assert time.monotonic() - start < 5


def test_the_test_server_checks_the_key_before_reading_a_body():
    from tests.support.serve import ChatServer
    from tests.support.test_serve import EchoChat

    with ChatServer(EchoChat(), api_key="sk-right", max_body_bytes=1024) as srv:
        def raw(headers: str) -> str:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n").encode())
                return s.recv(4096).decode(errors="replace")

        start = time.monotonic()
        # A wrong key with a gigabyte announced and nothing sent: answered at once, nothing read.
        assert raw("Authorization: Bearer wrong\r\nContent-Length: 1000000000\r\n").startswith("HTTP/1.1 401")
        assert raw("Authorization: Bearer sk-right\r\nContent-Length: 2048\r\n").startswith("HTTP/1.1 413")
        assert time.monotonic() - start < 3


def test_csv_cells_over_128_kib_are_read(tmp_path):
    from engine.inputs.loaders.common import read_csv

    path = tmp_path / "big.csv"
    path.write_text("text\n\"" + "x" * 300_000 + "\"\n")
    ((line, row),) = list(read_csv(path, required=("text",)))
    assert line == 2 and len(row["text"]) == 300_000


def test_prompts_over_the_size_cap_are_bad_rows(tmp_path):
    from tests.support.runs import make_config, run

    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": "y" * 500}) + "\n")
    prompts = {"source": "jsonl", "path": str(path), "max_prompt_chars": 100}
    from engine.errors import TaskdivError

    with pytest.raises(TaskdivError, match=r"500 characters, over prompts\.max_prompt_chars \(100\)"):
        run(make_config(tmp_path, prompts=prompts))
    result = run(make_config(tmp_path, prompts={**prompts, "on_error": "skip"}, strategies=["temperature"],
                             quality={"enabled": False}, accuracy={"enabled": False}))
    assert result.tables["prompts"].num_rows == 1 and len(result.skipped_inputs) == 1
    # The cap goes before limit chooses: `limit: 1` with the long prompt first audited none.
    from engine.config import PromptsConfig
    from engine.inputs.sources import load_prompts

    path.write_text(json.dumps({"text": "y" * 500}) + "\n" + json.dumps({"text": "short"}) + "\n")
    kept = load_prompts(PromptsConfig(**{**prompts, "on_error": "skip", "limit": 1}))
    assert [p.text for p in kept] == ["short"]


def test_a_response_over_the_size_cap_leaves_out_its_group_only_and_each_is_listed(tmp_path):
    # One model's over-long answer removed the prompt for every model, and only the first such group was named.
    from engine.api import build_config
    from engine.execution.pipeline import _within_size_caps
    from engine.inputs.loaders.paper import PresetReport
    from engine.inputs.prompts import make_prompt
    from engine.inputs.responses import ExternalGroup

    colour, fruit = make_prompt("Name a color.", source="f"), make_prompt("Name a fruit.", source="f")
    groups = [ExternalGroup(colour.prompt_id, "A", "t", [(0, "x" * 50)]), ExternalGroup(colour.prompt_id, "B", "t",
                                                                                        [(0, "red")]),
              ExternalGroup(fruit.prompt_id, "A", "t", [(0, "y" * 60)]), ExternalGroup(fruit.prompt_id, "B", "t",
                                                                                       [(0, "fig")])]
    cfg = build_config(run_dir=str(tmp_path), prompts={"source": "responses", "path": "r.jsonl",
                                                       "max_response_chars": 20, "on_error": "skip"})
    report = PresetReport()
    prompts, kept = _within_size_caps(cfg, [colour, fruit], groups, report)
    assert [(g.prompt_id, g.model) for g in kept] == [(colour.prompt_id, "B"), (fruit.prompt_id, "B")]
    assert prompts == [colour, fruit] and len(report.skipped) == 2
    assert all("that group is left out" in str(e) for e in report.skipped)


# -- Untrusted text in every report ------------------------------------------------------------------------------

PAYLOADS = {
    "model": 'm<img src=x onerror="alert(1)">',
    "strategy": "s[x](javascript:alert(1)) https://phish.invalid/login www.phish.invalid",
    "source": "src![t](http://tracker.invalid/p.png)|x",
    "prompt_id": "p\rid<b>",
}


def _assert_inert_markdown(text: str, table_width_of) -> None:
    import re

    import cmarkgfm

    assert "<img" not in text and "<b>" not in text and "\r" not in text
    assert "](javascript:" not in text and "](http://tracker" not in text
    # As GitHub shows it (cmark-gfm, which also links bare addresses): only the report's own anchors, pages, figures.
    page = cmarkgfm.github_flavored_markdown_to_html(text)
    assert not [h for h in re.findall(r'<a href="([^"]*)"', page) if re.match(r"[a-z]+:|//", h, re.I)], page
    assert not [s for s in re.findall(r'<img src="([^"]*)"', page) if "invalid" in s], page
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = table_width_of(line)
            assert cells >= 2, line


def _cells(line: str) -> int:
    import re

    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def test_untrusted_names_in_a_responses_file_stay_text_in_every_report(tmp_path):
    from engine.report import write_report
    from engine.report.compare import compare_runs, write_comparison
    from tests.support.runs import make_config, run

    rows = [{"prompt": "Name a colour.", "responses": ["class 0 red", "class 1 blue", "class 0 green"],
             "category": "C", **PAYLOADS}]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = []
    for name in ("a", "b"):
        cfg = make_config(tmp_path / name, prompts={"source": "responses", "path": str(path)})
        result = run(cfg)
        paths = write_report(result, cfg)
        runs.append(cfg.run_dir)
        md = paths["markdown"].read_text()
        assert "m&lt;img" in md  # shown, not interpreted
        _assert_inert_markdown(md, _cells)
        html = paths["html"].read_text()
        assert "<img src=x" not in html and 'onerror="alert' not in html and "m&lt;img" in html
    out = write_comparison(compare_runs(runs[0], runs[1]), tmp_path / "cmp")
    text = Path(out["markdown"]).read_text()
    assert "&lt;img" in text
    _assert_inert_markdown(text, _cells)


def test_a_submitted_jobs_own_env_vars_are_left_to_the_job(monkeypatch):
    # `ray job submit --runtime-env-json '{"env_vars": {"HF_HUB_CACHE": …}}'`: Ray refuses a driver's runtime env
    # that sets any key the job's does, even to the same value — a traceback before the first stage.
    import json

    from engine.errors import ConfigError
    from engine.execution.executor import _beside_job_env

    ours = {"env_vars": {"HF_HUB_CACHE": "/shared/hf", "TOKENIZERS_PARALLELISM": "false"}}
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert _beside_job_env(ours) == ours
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"env_vars": {"HF_HUB_CACHE": "/shared/hf"}, "working_dir": "x"}, "metadata": {}}))
    assert _beside_job_env(ours) == {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    from ray.runtime_env.runtime_env import _merge_runtime_env  # what ray.init does with the two in a job's driver

    job = {"env_vars": {"HF_HUB_CACHE": "/shared/hf"}, "working_dir": "x"}
    assert _merge_runtime_env(job, ours) is None  # as Ray refused the run's own
    assert _merge_runtime_env(job, _beside_job_env(ours))["env_vars"] == ours["env_vars"]
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"env_vars": {
        "HF_HUB_CACHE": "/elsewhere"}}}))
    with pytest.raises(ConfigError, match=r"HF_HUB_CACHE='/elsewhere' where this run needs HF_HUB_CACHE='/shared/hf'"):
        _beside_job_env(ours)
