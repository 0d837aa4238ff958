"""The README's runnable examples, run as written (slow: a real model)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str, language: str = "python") -> str:
    """The first fenced block of `language` ("" for a plain fence) after `heading`."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.S | re.M)
    return next(body for lang, body in blocks if lang == language)


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code = readme_block("## Python API").replace('"runs/notebook"', repr(str(tmp_path / "notebook")))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # our own README, not model output
    audit = namespace["audit"]
    assert audit.tables["groups"].num_rows == 8 and audit.report_html.is_file()


def test_the_real_audit_plan_shown_is_the_plan_of_the_config(capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.chdir(REPO)
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):  # set, as where the audit runs (no notes)
        monkeypatch.setenv(key, "not-a-real-key")
    assert main(["plan", "--config", "configs/real-audit.yaml"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    shown = [line for line in readme_block("## Running a real audit", "").splitlines()]
    assert printed[:len(shown)] == shown[:len(printed)] and "total cost: $" in "\n".join(shown)
