"""The README's runnable examples, run as written (slow: a real model)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str, language: str = "python") -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code = readme_block("## Python API").replace('"runs/notebook"', repr(str(tmp_path / "notebook")))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # our own README, not model output
    audit = namespace["audit"]
    assert audit.tables["groups"].num_rows == 8 and audit.report_html.is_file()
