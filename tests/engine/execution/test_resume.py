"""Crash-safe resume: SIGKILL a run at several points, rerun it, and get exactly the uninterrupted run's tables.

The killed run and its rerun happen in a subprocess (python engine/run.py) with a deterministic backend double that
SIGKILLs its own process at a chosen request, or with the store's write patched to die between writing a shard and
renaming it. The uninterrupted run they are held to runs the same command line in this process (a fresh process pays
~12 s of imports for nothing it checks).
"""

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from engine.config import dump_yaml

REPO = Path(__file__).resolve().parents[3]
TABLES = ["prompts", "classifications", "samples", "responses", "judgments", "components", "metrics",
          "checklists", "quality", "accuracy", "groups"]


def write_config(tmp_path, run_dir, log, kill_on=None, armed=None):
    model = {
        "name": "scripted",
        "backend": "python:tests.support.doubles:ScriptedChat",
        "model": "scripted",
        "batch_size": 4,
        "options": {"call_log": str(log), **({"kill_on": list(kill_on), "kill_armed": str(armed)} if kill_on else {})},
    }
    cfg = {
        "run_dir": str(run_dir),
        "prompts": {"source": "builtin", "per_category": 1},
        "n": 4,
        "strategies": ["temperature", "system_anchored", "regen_general"],
        "generators": [model],
        "judges": [model],
        "execution": {"executor": "local", "shard_size": 2},
    }
    path = tmp_path / f"config-{os.urandom(4).hex()}.yaml"
    path.write_text(dump_yaml(cfg))
    return path


def run_cli(config, *extra_python):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if extra_python:
        code = "\n".join([*extra_python, "import sys; from engine.cli import main; sys.exit(main(sys.argv[1:]))"])
        cmd = [sys.executable, "-c", code, "--config", str(config), "--quiet"]
    else:
        cmd = [sys.executable, str(REPO / "engine" / "run.py"), "--config", str(config), "--quiet"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def calls(log):
    return collections.Counter(Path(log).read_text().split()) if Path(log).exists() else collections.Counter()


def tables(run_dir):
    return {name: pq.read_table(Path(run_dir) / f"{name}.parquet") for name in TABLES}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    log = tmp / "calls.log"
    from engine.cli import main

    assert main(["--config", str(write_config(tmp, tmp / "run", log)), "--quiet"]) == 0
    return tables(tmp / "run"), calls(log)


def written_shards(run_dir):
    """Table → shards written (completed units) in the run directory."""
    root = Path(run_dir) / "shards"
    return {d.name: len(list(d.glob("*.parquet"))) for d in root.iterdir()} if root.is_dir() else {}


def reused_units(run_dir):
    """Table → units the run took from the store (its stage records, in run_stats.json)."""
    import orjson

    stats = orjson.loads((Path(run_dir) / "run_stats.json").read_bytes())
    out = collections.Counter()
    for st in stats["stages"]:
        out[st["stage"].split("[", 1)[0]] += st["units_reused"]
    return out


def killed_then_resumed(tmp_path, kill_on):
    run_dir, log, armed = tmp_path / "run", tmp_path / "calls.log", tmp_path / "armed"
    armed.touch()
    config = write_config(tmp_path, run_dir, log, kill_on=kill_on, armed=armed)
    first = run_cli(config)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    before = calls(log)
    written = written_shards(run_dir)
    armed.unlink()
    log.unlink()
    second = run_cli(config)
    assert second.returncode == 0, second.stderr[-3000:]
    # Nothing written before the kill is computed again: every shard on disk is a unit the rerun reused.
    reused = reused_units(run_dir)
    for table, count in written.items():
        if table != "classify":  # own and reference classification share shards when one model does both
            assert reused[table] == count, f"{table}: {count} shards were written, {reused[table]} reused"
    return run_dir, before, calls(log), written


def assert_same_tables(run_dir, expected):
    got = tables(run_dir)
    for name in TABLES:
        assert got[name].equals(expected[name]), f"{name} differs from the uninterrupted run"


# Each case is two subprocess runs (~35 s on 2 cores): the default run kills in generation, where judging already
# streams beside sampling; the kills in judging and the later stages resume through the same code and run with the
# slow tests (`make test-slow`). Accuracy streams from the first sampled groups with two batches in flight: a kill at
# its 7th call of 12 came before the driver had written the first batch (nothing to reuse); the 11th comes after.
@pytest.mark.parametrize("kill_on", [
    pytest.param(("sample", 30), id="mid-generation"),
    pytest.param(("judge", 25), id="mid-judging", marks=pytest.mark.slow),
    pytest.param(("grade", 40), id="mid-grading", marks=pytest.mark.slow),
    pytest.param(("accuracy", 11), id="mid-accuracy", marks=pytest.mark.slow),
])
def test_sigkill_then_rerun_gives_the_uninterrupted_tables(tmp_path, baseline, kill_on):
    expected, full_calls = baseline
    run_dir, before, after, written = killed_then_resumed(tmp_path, kill_on)
    assert_same_tables(run_dir, expected)
    stage = kill_on[0]
    # Classification ends before sampling starts, so it was not recomputed. From sampling on, stages stream into
    # each other (a kill mid-judging may come while sampling goes on): what they had written was reused (checked
    # in killed_then_resumed), the killed stage did its work again, no more than all of it — and less wherever it
    # had written a shard before the kill. Whether it had is a race between the backend's thread, which the kill
    # stops, and the driver's, which writes what came back (accuracy's 11th call of 12 lost it twice in 5 runs).
    assert after["classify"] == 0
    assert 0 < after[stage] <= full_calls[stage]
    if written.get(stage):
        assert after[stage] < full_calls[stage], f"{stage}: {written[stage]} shards written, all its calls made again"
    for kind in full_calls:
        assert before[kind] + after[kind] >= full_calls[kind] and after[kind] <= full_calls[kind], kind


KILL_MID_WRITE = """
import os, signal
import engine.execution.store as store
_write = store.atomic_write_table
_count = [0]
def dying_write(path, table):
    _count[0] += 1
    if _count[0] == 6 and os.path.exists(os.environ["ARMED"]):
        import pyarrow.parquet as pq
        pq.write_table(table, path.with_name("." + path.name + ".dead.tmp"))  # written, never renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(path, table)
store.atomic_write_table = dying_write
"""


@pytest.mark.slow  # two subprocess runs (~21 s on 2 cores); the default run keeps the kill mid-generation and
# Store.remove_leftovers' own test (test_leftovers_of_a_crash_writing_the_run_tables_are_removed_too)
def test_sigkill_mid_write_leaves_no_half_shard(tmp_path, baseline):
    expected, _ = baseline
    run_dir, log, armed = tmp_path / "run", tmp_path / "calls.log", tmp_path / "armed"
    armed.touch()
    config = write_config(tmp_path, run_dir, log)
    os.environ["ARMED"] = str(armed)
    try:
        first = run_cli(config, KILL_MID_WRITE)
        assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
        leftovers = list(run_dir.glob("shards/*/.*.tmp"))
        assert leftovers, "the kill should have left a temporary file behind"
        armed.unlink()
        second = run_cli(config, KILL_MID_WRITE)
    finally:
        del os.environ["ARMED"]
    assert second.returncode == 0, second.stderr[-3000:]
    assert not list(run_dir.glob("shards/*/.*.tmp"))
    assert_same_tables(run_dir, expected)


def test_the_row_index_keeps_the_failed_copy_tried_most(tmp_path):
    # Shards recut (a per_category or limit change) leave several failed copies of one row: the first by file name
    # was kept, so a row failing for good read as tried once at every rerun and was sent — paid — every time.
    import pyarrow as pa

    from engine.execution.store import Store

    store = Store(tmp_path / "run")
    table = pa.table({"x": [1]})
    for key, attempts in (("aaaa_old", 1), ("ffff_new", 3), ("mmmm_mid", 2)):
        store.write_shard({"sample": table}, key, rows={"keys": ["row-1"],
                                                        "retry": {"0": {"error": "HTTP 503", "attempts": attempts}}})
    assert store.read_row_index("sample")["row-1"] == ("ffff_new", 0, {"error": "HTTP 503", "attempts": 3})
    store.write_shard({"sample": table}, "bbbb_done", rows={"keys": ["row-1"], "retry": {}})
    assert store.read_row_index("sample")["row-1"] == ("bbbb_done", 0, None)  # a finished copy wins


def test_the_cascades_band_keys_nothing_while_it_is_off(tmp_path):
    # judge.cascade.low/high/audit_rate route no pair while the cascade is off (and never in the trace lanes), yet
    # they keyed every LLM judge's shards: editing them re-sent — paid for — every judged pair.
    from engine.execution.pipeline import Pipeline
    from tests.support.runs import make_config

    def keys(**cascade):
        cfg = make_config(tmp_path, judge={"cascade": cascade, "target": "both"})
        p = Pipeline(cfg, progress=False)
        try:
            return p.judge_identity(), p.trace_judge_settings()
        finally:
            p.close()

    default = keys()
    from dataclasses import asdict

    # A config that never touched the cascade keeps the keys it had (its settings as they are).
    assert default[0][2]["cascade"] == asdict(make_config(tmp_path).judge.cascade)
    assert keys(low=0.2, high=0.7, audit_rate=0.5) == default
    assert default[1]["cascade"]["enabled"] is False
    on = keys(enabled=True)
    assert on[0] != default[0] and on[1] == default[1]  # on: keyed; the trace lanes never use it


def test_a_crash_while_a_retried_shard_is_rewritten_never_reads_its_failed_rows_as_finished(tmp_path, monkeypatch):
    # The row index went first: a crash after it, before the table, left an index without retry marks beside the old
    # table whose row had failed — that row read as finished, never to be retried. The table goes first now.
    import pyarrow as pa

    from engine.execution import store as store_module
    from engine.execution.store import Store

    store = Store(tmp_path / "run")
    store.write_shard({"sample": pa.table({"x": [1, None]})}, "k",
                      rows={"keys": ["r0", "r1"], "retry": {"1": {"error": "HTTP 503", "attempts": 1}}})
    assert store.retries("sample", "k") == [1]

    writes = []

    def first_file_then_crash(real):
        def write(path, data):
            if writes:
                raise OSError("the machine went down")  # between the shard's two files
            writes.append(path)
            real(path, data)
        return write

    monkeypatch.setattr(store_module, "atomic_write_bytes", first_file_then_crash(store_module.atomic_write_bytes))
    monkeypatch.setattr(store_module, "atomic_write_table", first_file_then_crash(store_module.atomic_write_table))
    with pytest.raises(OSError):
        store.write_shard({"sample": pa.table({"x": [1, 2]})}, "k", rows={"keys": ["r0", "r1"], "retry": {}})
    monkeypatch.undo()
    assert store.retries("sample", "k") == [1]  # still marked: the rerun sends row 1 again
    assert store.read_row_index("sample")["r1"][2] is not None


def test_a_crash_while_a_partial_shard_grows_never_serves_one_rows_output_for_another(tmp_path, monkeypatch):
    # A failed unit's partial shard is rewritten, sorted, as its rows come: positions shift. Its table went first
    # and its index after; a crash between them left the old index ([r0, r2] at 0, 1) beside the new table
    # ([r0, r1, r2]): r2 read r1's output. The old index goes first now: r1 and r2 are computed again instead.
    import pyarrow as pa

    from engine.execution import store as store_module
    from engine.execution.store import Store

    store = Store(tmp_path / "run")
    store.write_shard({"sample": pa.table({"x": ["out0", "out2"]})}, "u.partial",
                      rows={"keys": ["r0", "r2"], "retry": {}}, reshaped=True)
    assert store.read_row_index("sample")["r2"][:2] == ("u.partial", 1)
    real = store_module.atomic_write_bytes

    def crash(path, data):
        raise OSError("the machine went down")  # after the new table, before its index

    monkeypatch.setattr(store_module, "atomic_write_bytes", crash)
    with pytest.raises(OSError):
        store.write_shard({"sample": pa.table({"x": ["out0", "out1", "out2"]})}, "u.partial",
                          rows={"keys": ["r0", "r1", "r2"], "retry": {}}, reshaped=True)
    monkeypatch.setattr(store_module, "atomic_write_bytes", real)
    index = store.read_row_index("sample")
    table = pq.read_table(store.shard_path("sample", "u.partial")).to_pylist()
    assert all(table[row]["x"] == "out" + key[1] for key, (_, row, _) in index.items())


def test_a_metric_added_is_computed_for_the_groups_a_rerun_reuses(tmp_path, monkeypatch):
    # The metrics stage's shards were keyed by the embedder and the stage's version only: a metric registered by the
    # README's recipe stayed null in every shard a rerun reused. The names of the registered metrics key them now.
    from engine.execution import pipeline
    from tests.support.runs import make_config, run

    cfg = make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False})
    run(cfg)
    again = {r.stage: r for r in run(cfg).stages}
    assert again["metrics"].units and again["metrics"].units_reused == again["metrics"].units
    monkeypatch.setattr(pipeline, "GENERAL_METRICS", {**pipeline.GENERAL_METRICS, "a_new_metric": None})
    added = {r.stage: r for r in run(cfg).stages}
    assert added["metrics"].units_reused == 0
    assert all(r.units_reused == r.units for name, r in added.items() if name != "metrics")


def test_leftovers_of_a_crash_writing_the_run_tables_are_removed_too(tmp_path):
    # Only the shards' temporary files were removed: a crash while the run wrote its tables at the root left a whole
    # table's copy there for good.
    from engine.execution.store import Store

    store = Store(tmp_path)
    (tmp_path / "shards" / "judge").mkdir(parents=True)
    dead = [tmp_path / ".groups.parquet.0a1b.tmp", tmp_path / "shards" / "judge" / ".k.parquet.9f.tmp"]
    kept = [tmp_path / "groups.parquet", tmp_path / ".explore.html.77.tmp"]  # another command's write in flight
    for path in dead + kept:
        path.write_bytes(b"x")
    store.remove_leftovers()
    assert not any(p.exists() for p in dead) and all(p.exists() for p in kept)


def test_a_shard_or_row_index_damaged_on_disk_is_computed_again_not_a_traceback(tmp_path, caplog):
    # The engine's writes are atomic, but a copy, a full disk or a hand can damage a shard: a truncated table was an
    # ArrowInvalid traceback at the rerun, and an unreadable row index read the shard's failed rows as final.
    from tests.support.runs import make_config, run

    cfg = make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False}, strategies=["temperature"])
    first = run(cfg)
    shards = sorted((Path(cfg.run_dir) / "shards" / "sample").glob("*.parquet"))
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) // 2])
    index = shards[1].with_name(shards[1].name.replace(".parquet", ".rows.json"))
    index.write_text('{"keys": [')
    again = run(cfg)
    sample = next(r for r in again.stages if r.stage.startswith("sample"))
    assert sample.units - sample.units_reused == 2  # the two damaged shards, and only they
    assert again.tables["responses"].equals(first.tables["responses"])
    assert str(shards[0]) in caplog.text and "unreadable" in caplog.text
    assert pq.read_table(shards[0]).num_rows  # written whole again


def test_a_shard_damaged_inside_with_its_footer_intact_is_computed_again(tmp_path, caplog):
    # Only the footer was checked: a shard whose pages were damaged passed as done, and the rerun stopped with a
    # traceback reading it (or read wrong values where the damage still decoded).
    import struct

    from tests.support.runs import make_config, run

    cfg = make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False}, strategies=["temperature"])
    first = run(cfg)
    shard = sorted((Path(cfg.run_dir) / "shards" / "sample").glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    footer = struct.unpack("<i", data[-8:-4])[0]
    data[4:len(data) - 8 - footer] = bytes(len(data) - 12 - footer)  # every page zeroed; header and footer kept
    shard.write_bytes(bytes(data))
    again = run(cfg)
    sample = next(r for r in again.stages if r.stage.startswith("sample"))
    assert sample.units - sample.units_reused == 1
    assert again.tables["responses"].equals(first.tables["responses"])
    assert str(shard) in caplog.text and "unreadable" in caplog.text


def test_dict_keys_that_are_not_strings_key_a_shard_as_the_strings_sent():
    # options: {extra_body: {logit_bias: {50256: -100}}} (YAML reads the token id as an int) passed every check and
    # stopped the run with "TypeError: Dict key must be str".
    from engine.execution.store import content_key

    assert content_key({"logit_bias": {50256: -100}}) == content_key({"logit_bias": {"50256": -100}})


def test_groups_of_strategies_that_read_no_category_are_not_resampled_when_it_changes(tmp_path):
    # Every sample row carried the generator's own category: a classification that failed transiently and was
    # retried re-keyed — resampled, at a price — the groups of temperature, system_general and regen_general too.
    import json

    from tests.support.doubles import ScriptedChat
    from tests.support.runs import SCRIPTED, make_config, run

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "gold_category": c}) + "\n" for t, c in
                            [("Write a haiku about rain.", "G"), ("Name a colour. FLAKY", "C")]))
    armed = tmp_path / "armed"
    armed.touch()
    generator = {**SCRIPTED, "name": "gen",
                 "options": {"flaky_marker": "FLAKY", "flaky_armed": str(armed), "flaky_kind": "classify"}}
    cfg = make_config(tmp_path, prompts={"source": "jsonl", "path": str(path)}, generators=[generator],
                      category_source="model", strategies=["temperature"], quality={"enabled": False},
                      accuracy={"enabled": False}, execution={"executor": "local", "shard_size": 16})
    first = run(cfg)
    own = {c["prompt_id"]: c["category"] for c in first.tables["classifications"].to_pylist() if c["model"] == "gen"}
    assert None in own.values()  # the FLAKY prompt's own classification failed, transiently
    armed.unlink()
    ScriptedChat.calls.clear()
    run(cfg)
    assert not [c for c in ScriptedChat.calls if "FLAKY" in c and not c.startswith(("Classify", "The prompt below"))]


def test_a_change_of_system_parse_resamples_the_system_prompt_groups_only(tmp_path):
    # sampling.system_parse keyed every strategy's groups, though only a system-prompt completion is split by it:
    # switching it to lenient sampled the temperature and regeneration groups again, at a price.
    from tests.support.runs import make_config, run

    def config(parse):
        return make_config(tmp_path, prompts={"source": "builtin", "limit": 2}, n=3,
                           strategies=["temperature", "regen_general", "system_general"],
                           sampling={"max_tokens": 8, "system_parse": parse},
                           quality={"enabled": False}, accuracy={"enabled": False})

    first = run(config("strict"))
    assert first.tables["samples"].num_rows == 6
    second = run(config("lenient"))
    (sample,) = [r for r in second.stages if r.stage.startswith("sample")]
    # One shard, three strategies: the system_general unit is computed again, the other two are read back.
    assert (sample.units, sample.units_reused) == (3, 2)


def test_a_new_agreement_sample_rate_re_judges_only_the_groups_it_moves(tmp_path):
    # The rate keyed every judge shard: 0.0 → 0.01, which drew no group, re-judged — paid for — every pair.
    from tests.support.doubles import ScriptedChat
    from tests.support.runs import make_config, run

    def judged(rate):
        ScriptedChat.calls.clear()
        result = run(make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False},
                                 judge={"agreement_sample_rate": rate}))
        drawn = sum(r["agreement_sample"] for r in result.tables["components"].to_pylist())
        return sum(c.startswith("The prompt below") for c in ScriptedChat.calls), drawn, result

    first, drawn, _ = judged(0.0)
    assert first > 0 and drawn == 0
    again, drawn, _ = judged(0.001)  # draws none of these groups: nothing to judge again
    assert again == 0 and drawn == 0
    everything, drawn, result = judged(1.0)  # every group moves into the sample: judged again, in full
    assert everything > 0 and drawn == result.tables["components"].num_rows


@pytest.mark.parametrize("stage", ["classify", "sample", "judge", "checklist", "grade", "reward"])
def test_every_stage_that_asks_a_model_keys_its_shards_by_its_own_version(stage, tmp_path, monkeypatch):
    # The checklist stage had no version: a change in how a checklist is read (sub-bullets are no criteria) never
    # re-keyed a stored checklist, and its old criteria and their grades were reused.
    import importlib

    import pyarrow as pa

    from engine.config import config_from_dict
    from engine.execution import tables as T
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    cls = {"classify": "ClassifyStage", "sample": "SampleStage", "judge": "JudgeStage",
           "checklist": "ChecklistStage", "grade": "GradeStage", "reward": "RewardStage"}[stage]
    stage_cls = getattr(importlib.import_module(f"engine.stages.{stage}"), cls)
    assert isinstance(stage_cls.version, str)
    if stage != "checklist":
        return
    pipeline = Pipeline(config_from_dict({"run_dir": str(tmp_path / "run")}), executor=LocalExecutor(),
                        progress=False)
    try:
        groups = pa.Table.from_pylist([{"prompt_id": "p", "text": "Write a poem.", "judge_category": "G"}],
                                      schema=T.CHECKLIST_INPUT)
        grader = pipeline.config.judges[0]
        before = pipeline.checklist_unit(groups, grader).key
        monkeypatch.setattr(stage_cls, "version", stage_cls.version + "-next")
        assert pipeline.checklist_unit(groups, grader).key != before
    finally:
        pipeline.close()


def test_a_run_stopped_before_its_report_keeps_its_failed_shards_and_no_earlier_report(tmp_path):
    # The stage records (failed shards among them) were written with the report only, and the earlier run's report
    # was left in place: a run stopped between its tables and its report read as finished, the failed sample shard
    # (its groups simply absent from the tables) recorded nowhere, beside the earlier run's report.
    from engine.api import open_run
    from engine.report import write_report
    from tests.support.runs import SCRIPTED, make_config, run

    armed = tmp_path / "refuse"
    model = {**SCRIPTED, "batch_size": 1, "options": {"refuse_armed": str(armed), "refuse_kind": "sample",
                                                       "refuse_marker": "Berlin Wall"}}
    settings = dict(generators=[model], judges=[model], quality={"enabled": False}, accuracy={"enabled": False},
                    strategies=["temperature"], prompts={"source": "builtin", "limit": 4})
    first_cfg = make_config(tmp_path, n=4, **settings)
    write_report(run(first_cfg), first_cfg)
    assert list((Path(first_cfg.run_dir) / "figures").glob("*.png"))
    armed.write_text("")
    second = run(make_config(tmp_path, n=3, **settings))  # stopped here: no write_report
    assert second.failed_shards()
    run_dir = Path(first_cfg.run_dir)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(("report.", "explore."))]
    assert not list((run_dir / "figures").glob("*.png"))
    reopened = open_run(run_dir)
    assert reopened.config.n == 3
    assert reopened.result.failed_shards() == second.failed_shards()
