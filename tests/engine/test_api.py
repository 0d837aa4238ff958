"""The Python API: build or load a config, run it, read the tables and the report; and the console script."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.api import Audit, build_config, load_config, open_run, run
from engine.errors import ConfigError
from tests.support.runs import SCRIPTED

REPO = Path(__file__).resolve().parents[2]


def test_build_run_and_read_back(tmp_path):
    config = build_config({"prompts": {"source": "builtin", "per_category": 1}, "n": 3},
                          run_dir=str(tmp_path / "run"), generators=[SCRIPTED], judges=[SCRIPTED],
                          strategies=["temperature", "regen_general"],
                          execution={"executor": "local", "shard_size": 4})
    audit = run(config)
    assert isinstance(audit, Audit) and audit.failed_shards == {}
    groups = audit.tables["groups"]
    assert groups.num_rows == 8 * 2 and set(groups["strategy"].to_pylist()) == {"temperature", "regen_general"}
    assert audit.report_html is not None and audit.report_html.is_file()
    again = open_run(audit.run_dir)
    assert again.tables["groups"].equals(groups) and again.report_html == audit.report_html


def test_load_config_takes_dotted_overrides_and_bad_keys_are_named():
    config = load_config(REPO / "configs" / "demo.yaml", {"n": 3, "judges.0.batch_size": 4})
    assert config.n == 3 and config.judges[0].batch_size == 4
    with pytest.raises(ConfigError, match="sampling.top_p: must be in"):
        build_config(sampling={"top_p": 3})


def test_the_console_script_and_python_m_share_the_command_line():
    script = Path(sys.executable).with_name("taskdiv")
    assert script.is_file(), "the taskdiv console script is installed with the package (pip install -e .)"
    for command in ([str(script), "--help"], [sys.executable, "-m", "engine.cli", "--help"]):
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert out.returncode == 0 and "compare" in out.stdout and "agreement" in out.stdout, out.stderr
