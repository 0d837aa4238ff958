"""The command line's answers to a user's mistakes, each checked before any work: an unknown command, an output
path that cannot be written, an input file that is not there, and a run directory whose latest run did not finish."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main


def test_an_unknown_command_is_named_with_the_closest_one(capsys):
    # Read as `run explor RUN`, it ended in argparse's "unrecognized arguments: explor RUN" and the top-level usage.
    assert main(["explor", "runs/demo"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'explor' (did you mean explore?)" in err and "usage" not in err


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a folder no one may create files in")
def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    # Only the folder's existence was checked: calibrate fitted for minutes, agreement paid for its judge calls, and
    # then failed naming a temporary file of ours.
    from engine.cli import calibrate

    def never(*args, **kwargs):
        raise AssertionError("worked before checking where its output goes")

    monkeypatch.setattr(calibrate, "load_pairs", never)
    pairs = Path(__file__).resolve().parents[1] / "test_data" / "wildbench_sample.jsonl"  # any file
    assert main(["calibrate", "--pairs", str(pairs), "--out", "/proc/coefficients.json"]) == 2
    assert "--out /proc/coefficients.json: cannot write in /proc" in capsys.readouterr().err


def test_compare_checks_its_output_folder_before_comparing(tmp_path, capsys, monkeypatch):
    from engine.report import compare

    monkeypatch.setattr(compare, "compare_runs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("compared")))
    (tmp_path / "a").mkdir()
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(taken)]) == 2
    assert f"--out {taken}: is a file, expected a folder" in capsys.readouterr().err


def test_an_input_that_is_not_there_is_said_so_not_as_a_file_of_the_wrong_type(tmp_path, capsys):
    assert main(["calibrate", "--pairs", str(tmp_path / "missing"), "--out", str(tmp_path / "c.json")]) == 2
    assert f"--pairs {tmp_path / 'missing'}: no such file" in capsys.readouterr().err
    from engine.inputs.labelled_pairs import load_pairs
    from engine.errors import InputError

    with pytest.raises(InputError, match="is a folder, expected a file"):
        load_pairs(tmp_path)


def test_a_run_directory_whose_latest_run_did_not_finish_is_read_with_a_warning(tmp_path, caplog):
    # explore and compare showed the last finished run's results without a word while a rerun had stopped part-way.
    from engine.execution.results import read_run
    from tests.support.runs import make_config, run

    cfg = make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False}, strategies=["temperature"])
    run(cfg)
    shutil.copy(Path(cfg.run_dir) / "config.yaml", Path(cfg.run_dir) / "config.running.yaml")
    read_run(cfg.run_dir)
    assert "a later run here is running, or stopped before it finished" in caplog.text


def test_compare_makes_its_output_folder_with_its_parents(tmp_path, monkeypatch):
    # The check of --out asked for the folder's parent to exist, where write_comparison makes it with its parents.
    from engine.report import compare

    (tmp_path / "a").mkdir()
    written = []
    monkeypatch.setattr(compare, "compare_runs", lambda *a, **k: {})
    monkeypatch.setattr(compare, "write_comparison", lambda c, out: written.append(out) or (_ for _ in ()).throw(
        compare.CompareError("stop here")))
    out = tmp_path / "reports" / "2026" / "a-vs-a"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(out)]) == 2
    assert written == [out]


def test_the_stage_records_a_run_writes_are_not_read_as_its_report(tmp_path):
    # The run now writes its stage records (run_stats.json) before its config; benchmarks/collect_runs.py read them
    # as a report's throughput of an unknown schema.
    from tests.support.benchmarks import load_benchmark
    from tests.support.runs import make_config, run

    cfg = make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False}, strategies=["temperature"])
    run(cfg)
    collect_runs = load_benchmark("collect_runs")
    with pytest.raises(ValueError, match="stage records only, no throughput: write the run's report first"):
        collect_runs.load(Path(cfg.run_dir))


def test_quiet_turns_off_the_model_libraries_progress_bars_too(tmp_path, monkeypatch):
    # --quiet hid our bars only: transformers' "Loading weights" bar still printed on every model load.
    import os

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    assert main(["run", "--quiet", "--config", str(tmp_path / "missing.yaml")]) == 2  # stops before any work
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"
