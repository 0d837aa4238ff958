"""engine.report.compare on two fixture runs whose generators differ in how many distinct answers they give.

The test double's generator puts each response in one of `classes` classes and its judge calls two responses
equivalent iff their classes match, so classes=2 caps a group at 2 unique responses and classes=4 does not: run
B (4 classes) must come out more diverse than run A (2 classes).
"""

import argparse
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from engine.config import dump_yaml
import yaml

from engine.cli.compare import add_parser as add_compare_parser
from engine.cli.compare import cmd_compare
from engine.report.compare import (CATEGORY_DIFFERS, CompareError, compare_runs, config_differences,
                                   render_comparison, verdict)
from tests.support.runs import SCRIPTED, make_config, run


def generator(classes):
    return {**SCRIPTED, "name": "gen", "options": {"classes": classes}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for label, classes in (("two-classes", 2), ("four-classes", 4)):
        tmp = tmp_path_factory.mktemp(label)
        cfg = make_config(tmp, run_dir=str(tmp / label), generators=[generator(classes)],
                          prompts={"source": "builtin", "per_category": 3},
                          strategies=["temperature", "regen_general"])
        run(cfg)
        out[label] = Path(cfg.run_dir)
    return out["two-classes"], out["four-classes"]


def test_config_differences_never_show_a_secret_an_older_config_holds(tmp_path):
    # Preflight refuses options named as secrets and config.yaml is written redacted, but a run written before that
    # (or a config edited by hand) may hold them: compare.md printed both runs' keys side by side.
    for name, key in (("a", "sk-live-AAAA"), ("b", "sk-live-BBBB")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(
            f"n: {3 if name == 'a' else 4}\njudges:\n  - name: j\n    options:\n      api_key: {key}\n"
            f"      hf_token: hf_{name}secret\n      base_url: https://user:{key}@api.example/v1?key={key}\n")
    diffs = config_differences(tmp_path / "a", tmp_path / "b")
    assert {"key": "n", "a": 3, "b": 4} in diffs
    text = repr(diffs)
    assert "sk-live" not in text and "secret" not in text, text


def test_more_classes_is_more_diverse_with_the_right_sign_and_verdicts(runs):
    a, b = runs
    c = compare_runs(a, b, resamples=500)
    assert c["prompts"] == {"shared": 24, "only_a": 0, "only_b": 0, "changed": 0, "matched_by_text": 0}
    assert c["paired_groups"] == 24 * 2 and c["pairs"] == ["gen vs gen"]
    assert {"key": "generators[0].options.classes", "a": 2, "b": 4} in c["config_differences"]
    rows = {r["category"]: r for r in c["by_category"]}
    overall = rows["all"]["unique"]
    assert overall["value"] > 0 and overall["low"] > 0
    assert overall["mean_a"] <= 2.0 < overall["mean_b"]
    assert rows["all"]["verdict"].startswith("B is more diverse on all categories by ")
    for cat, r in rows.items():
        assert not r["verdict"].startswith("B is more homogeneous"), r["verdict"]
        assert r["unique"]["value"] >= 0 or (r["unique"]["low"] is not None and r["unique"]["low"] <= 0)
    # Same checklist grade from the double in both runs: no quality difference.
    assert rows["all"]["quality"]["value"] == 0.0
    # Accuracy: the paired difference of the groups' accuracy where both runs checked something.
    ga = {(g["prompt_id"], g["strategy"]): g["accuracy"] for g in pq.read_table(a / "groups.parquet").to_pylist()}
    gb = {(g["prompt_id"], g["strategy"]): g["accuracy"] for g in pq.read_table(b / "groups.parquet").to_pylist()}
    both = [k for k in ga if ga[k] is not None and gb.get(k) is not None]
    assert both and rows["all"]["accuracy"]["n"] == len(both)
    assert rows["all"]["accuracy"]["value"] == pytest.approx(sum(gb[k] - ga[k] for k in both) / len(both))
    assert {(r["category"], r["strategy"]) for r in c["by_strategy"]} >= {("all", "temperature"),
                                                                          ("all", "regen_general")}


def test_swapping_the_runs_flips_the_verdict(runs):
    a, b = runs
    forward = {r["category"]: r["unique"] for r in compare_runs(a, b, resamples=300)["by_category"]}
    back = compare_runs(b, a, resamples=300)
    assert back["by_category"][-1]["verdict"].startswith("B is more homogeneous on all categories by ")
    for r in back["by_category"]:
        assert r["unique"]["value"] == pytest.approx(-forward[r["category"]]["value"])


def test_in_category_a_more_unique_answers_is_said_to_be_less_consistent(runs):
    # The paper: in A one answer is right and homogeneity is desired. "B is more diverse on A" read as a gain, and
    # pooled into "all categories" it inflated B's overall diversity; A's line says which way is desired, and a
    # pooled row without A stands beside "all".
    assert verdict("A", {"value": 2.0, "low": 1.5, "high": 2.5, "clusters": 40}).endswith(
        "— in A homogeneity is desired: B is the less consistent")
    assert verdict("A", {"value": -1.0, "low": -1.5, "high": -0.5, "clusters": 40}).endswith(
        "— in A homogeneity is desired: B is the more consistent")
    assert "homogeneity is desired" not in verdict("G", {"value": 2.0, "low": 1.5, "high": 2.5, "clusters": 40})
    a, b = runs
    c = compare_runs(a, b, resamples=200)
    cats = [r["category"] for r in c["by_category"]]
    assert cats[-2:] == ["all but A", "all"] and "A" in cats
    row = next(r for r in c["by_category"] if r["category"] == "all but A")
    assert row["unique"]["n"] == sum(next(r for r in c["by_category"] if r["category"] == x)["unique"]["n"]
                                     for x in cats if x not in ("A", "all", "all but A"))


def test_verdict_lines():
    est = {"value": 0.8, "low": 0.4, "high": 1.2}
    assert verdict("G", {"value": -0.8, "low": -1.2, "high": -0.4, "clusters": 40}) == (
        "B is more homogeneous on G (creative writing) by 0.80 unique responses [0.40, 1.20]")
    assert verdict("G", est) == "B is more diverse on G (creative writing) by 0.80 unique responses [0.40, 1.20]"
    assert verdict("G", {"value": -0.1, "low": -0.5, "high": 0.3}) == (
        "no clear difference on G (creative writing): −0.10 [−0.50, 0.30]")
    assert verdict("all", {**est, "clusters": 3}) == (
        "B is more diverse on all categories by 0.80 unique responses [0.40, 1.20]"
        " — only 3 prompts, a coarse interval")
    assert verdict("A", {"value": 0.5, "low": None, "high": None}) == (
        "no clear difference on A (well-specified singular objective): 0.50 (no interval)")
    assert verdict("A", {"value": None, "low": None, "high": None}) == (
        "no paired groups on A (well-specified singular objective)")
    # Paired, but no group with a count on both sides: said so (before, "no paired groups" while their quality and
    # accuracy were compared in the same table).
    assert verdict("H", {"value": None, "low": None, "high": None}, paired=5) == (
        "no count to compare on H (advice or opinions): 5 paired groups, none with a unique count on both sides "
        "(fewer than n responses, or no judge's count resolved)")
    # An interval that misses its own estimate (--resamples 1) decides nothing: "B is more homogeneous on all
    # categories by −0.12 unique responses [0.38, 0.38]" was said.
    assert verdict("all", {"value": 0.12, "low": 0.38, "high": 0.38}).startswith("no clear difference")
    assert verdict("all", {"value": -0.12, "low": 0.25, "high": 0.25}).startswith("no clear difference")


def _copy_without_prompt(src: Path, dst: Path) -> str:
    shutil.copytree(src, dst)
    prompts = pq.read_table(dst / "prompts.parquet")
    dropped = prompts["prompt_id"][0].as_py()
    for name in ("prompts", "groups", "samples", "responses", "components", "metrics", "quality", "judgments",
                 "classifications"):
        path = dst / f"{name}.parquet"
        if path.exists():
            table = pq.read_table(path)
            pq.write_table(table.filter(pc.not_equal(table["prompt_id"], dropped)), path)
    return dropped


def test_different_prompts_are_refused_unless_intersected(runs, tmp_path):
    a, b = runs
    fewer = tmp_path / "fewer"
    _copy_without_prompt(b, fewer)
    with pytest.raises(CompareError, match=r"prompt sets differ: 1 prompts only in A, 0 only in B.*--intersect"):
        compare_runs(a, fewer, resamples=100)
    c = compare_runs(a, fewer, intersect=True, resamples=100)
    assert c["prompts"]["shared"] == 23 and c["prompts"]["only_a"] == 1
    assert c["paired_groups"] == 23 * 2


def test_a_prompt_judged_under_another_category_in_b_is_left_out_and_said(runs, tmp_path):
    # Without a gold category each run's own reference classification is the yardstick, and two runs' judges may
    # differ on it: a count judged as A ("same final answer") beside one judged as G ("same plot, tone…") measures
    # the criterion, not the models. Before, every pair was filed under A's category and compared.
    a, b = runs
    other = tmp_path / "other"
    shutil.copytree(b, other)
    table = pq.read_table(other / "groups.parquet")
    rows = table.to_pylist()
    moved = rows[0]["prompt_id"]
    for r in rows:
        if r["prompt_id"] == moved:
            r["category"] = "A" if r["category"] != "A" else "G"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), other / "groups.parquet")
    c = compare_runs(a, other, resamples=100)
    assert c["paired_groups"] == 24 * 2 - 2
    assert c["left_out"] == {CATEGORY_DIFFERS: 2}


def test_different_n_is_refused_even_with_intersect(runs, tmp_path):
    a, b = runs
    other = tmp_path / "other-n"
    shutil.copytree(b, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["n"] = 6
    (other / "config.yaml").write_text(dump_yaml(config))
    for intersect in (False, True):
        with pytest.raises(CompareError, match=r"different n \(A: 4 responses per group, B: 6\)"):
            compare_runs(a, other, intersect=intersect, resamples=100)


def test_not_a_run_directory_is_an_error(runs, tmp_path):
    from engine.errors import TaskdivError

    with pytest.raises(TaskdivError, match="not a run directory"):
        compare_runs(runs[0], tmp_path, resamples=10)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_writes_the_comparison_and_prints_verdicts(runs, capsys):
    a, b = runs
    args = parse(["compare", str(a), str(b), "--resamples", "200"])
    assert cmd_compare(args) == 0
    out = capsys.readouterr().out
    assert "B is more diverse on all categories" in out and "generators[0].options.classes: 2 → 4" in out
    folder = b / f"compare-vs-{a.name}"
    md = (folder / "compare.md").read_text()
    assert "## Verdicts" in md and "B is more diverse on all categories" in md
    assert (folder / "compare.json").is_file() and (folder / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert str(folder / "compare.md") in out


def test_cli_refusal_is_a_clear_error_with_exit_code_2(runs, tmp_path, capsys):
    a, b = runs
    fewer = tmp_path / "fewer"
    _copy_without_prompt(b, fewer)
    assert cmd_compare(parse(["compare", str(a), str(fewer), "--out", str(tmp_path / "out")])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the runs' prompt sets differ") and "--intersect" in err
    assert cmd_compare(parse(["compare", str(a), str(fewer), "--intersect", "--out", str(tmp_path / "out"),
                              "--resamples", "100"])) == 0
    assert (tmp_path / "out" / "compare.md").is_file()


def test_a_damaged_run_directory_or_a_bad_out_path_is_one_line_naming_the_file(runs, tmp_path, capsys):
    # A table cut short (a full disk), a config that is not YAML, a run_stats.json that is not JSON: each was a
    # pyarrow / yaml / orjson traceback from explore, compare and open_run; --out in a missing folder was too.
    import shutil

    from engine.cli import main

    a, b = runs
    for name, junk in (("groups.parquet", b"PAR1 cut short"), ("config.yaml", b"n: ["),
                       ("run_stats.json", b"{")):
        damaged = tmp_path / f"damaged-{name}"
        shutil.copytree(b, damaged)
        (damaged / name).write_bytes(junk)
        for argv in (["explore", str(damaged)], ["compare", str(a), str(damaged), "--resamples", "50"]):
            assert main(argv) == 2, (name, argv)
            err = capsys.readouterr().err
            assert err.startswith(f"error: {damaged / name}: damaged") and "Traceback" not in err, err
    assert main(["explore", str(a), "--out", str(tmp_path / "no-such-folder" / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-folder" in err and "Traceback" not in err
    # An existing folder as --out: the error named a hidden temporary file, and left it behind (63 KB).
    (tmp_path / "a-folder").mkdir()
    assert main(["explore", str(a), "--out", str(tmp_path / "a-folder")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'a-folder'}: is a folder" in err and not list(tmp_path.glob(".*.tmp"))
    # A value no group has: an empty page, exit 0; now an error that lists the values there.
    assert main(["explore", str(a), "--where", "strategy=temprature"]) == 2
    err = capsys.readouterr().err
    assert "no group has strategy=temprature" in err and "temperature" in err
    assert main(["explore", str(a), "--where", "n_responses=4.0", "--out", str(tmp_path / "n.html")]) == 0
    # A negative seed: NumPy's generator refused it in a traceback.
    assert main(["compare", str(a), str(b), "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err


def test_run_py_compare_is_the_entry_points_subcommand(runs):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    a, b = runs
    done = subprocess.run([sys.executable, str(repo / "engine" / "run.py"), "compare", str(a), str(b),
                           "--resamples", "100", "--out", str(b / "via-run-py")],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "B is more diverse on all categories" in done.stdout
    assert (b / "via-run-py" / "compare.md").is_file()


def test_a_run_judged_by_the_135m_model_carries_the_not_meaningful_note(runs, tmp_path):
    from engine.report.compare import render_comparison
    from engine.report.data import SMALL_MODEL_LEAD

    a, b = runs
    assert SMALL_MODEL_LEAD not in render_comparison(compare_runs(a, b, resamples=50))
    small = tmp_path / "small-judge"
    shutil.copytree(b, small)
    config = yaml.safe_load((small / "config.yaml").read_text())
    config["judges"][0]["model"] = "smollm2-135m"  # as if the run had been judged by the embedded default
    (small / "config.yaml").write_text(dump_yaml(config))
    c = compare_runs(a, small, resamples=50)
    assert c["small_model_judges"] == {"a": [], "b": [config["judges"][0]["name"]]}
    assert SMALL_MODEL_LEAD in render_comparison(c)


def test_responses_audited_from_files_of_different_names_are_paired_by_their_text(tmp_path):
    # One file per model (llama.jsonl, mistral.jsonl): a prompt's id hashes the file's name with its text, so the
    # two runs "shared no prompts". Prompts of B are A's where their texts are the same (ends' whitespace aside).
    import json

    prompts = [("Write a haiku about rain.", "G"), ("Name a colour.", "C"), ("Suggest a name for a cat.", "B")]
    dirs = []
    for name, classes in (("llama", 1), ("mistral", 3)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(
            json.dumps({"prompt": text + ("\n" if name == "mistral" else ""), "category": cat, "model": name,
                        "strategy": "temperature", "responses": [f"class {k % classes} {k}" for k in range(4)]}) + "\n"
            for text, cat in prompts))
        cfg = make_config(tmp_path, run_dir=str(tmp_path / f"run-{name}"), n=4,
                          prompts={"source": "responses", "path": str(path)}, quality={"enabled": False})
        run(cfg)
        dirs.append(cfg.run_dir)
    ids = [set(pq.read_table(Path(d) / "prompts.parquet").column("prompt_id").to_pylist()) for d in dirs]
    assert not ids[0] & ids[1]
    c = compare_runs(*dirs, intersect=True)  # the generators differ by name: paired as the one model of each
    assert c["prompts"]["shared"] == 3 and c["prompts"]["matched_by_text"] == 3 and c["paired_groups"] == 3
    row = next(r for r in c["by_category"] if r["category"] == "all")
    assert row["unique"]["value"] == pytest.approx(2.0)  # 3 classes against 1


def _panel(src, dst, judges, counts):
    """A copy of run `src` judged by `judges` (names), each group's counts `counts` ({judge: count or None}), its
    mean over every judge or unknown, as groups_table makes it."""
    shutil.copytree(src, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config["judges"] = [{**config["judges"][0], "name": name} for name in judges]
    (dst / "config.yaml").write_text(dump_yaml(config))
    table = pq.read_table(dst / "groups.parquet")
    rows = table.to_pylist()
    for r in rows:
        known = [(j, k) for j, k in counts.items() if k is not None]
        whole = len(known) == len(judges)
        r.update(unique_per_judge=known, unique_mean=sum(k for _, k in known) / len(known) if whole else None,
                 judges_in_mean=list(judges) if whole else [],
                 unresolved_judges=[j for j, k in counts.items() if k is None])
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), dst / "groups.parquet")
    return dst


def test_the_difference_is_over_the_judges_both_runs_share(runs, tmp_path):
    # A judge of one run alone never enters B − A: a strict judge (3 classes) in A only made B look more homogeneous
    # by 1.00 [1.00, 1.00] though the shared judge counted alike on both sides; and a judge of B alone whose count
    # could not be read left out groups whose shared counts were known (each side's mean needs its whole panel).
    a, b = runs
    first = _panel(a, tmp_path / "a", ["lenient", "strict"], {"lenient": 1, "strict": 3})
    second = _panel(b, tmp_path / "b", ["lenient", "other"], {"lenient": 1, "other": None})
    c = compare_runs(first, second, resamples=100)
    everything = next(r for r in c["by_category"] if r["category"] == "all")
    assert everything["unique"]["value"] == pytest.approx(0.0) and everything["unique"]["n"] == c["paired_groups"]
    assert c["unique_judges"] == {"common": ["lenient"], "narrowed": c["paired_groups"]} and c["paired_groups"] > 0
    assert "the runs' judges differ" in render_comparison(c)
    # A shared judge unresolved on one side: the group's shared counts are not all known, and it is left out.
    third = _panel(b, tmp_path / "c", ["lenient", "strict"], {"lenient": 1, "strict": None})
    c = compare_runs(first, third, resamples=100)
    assert c["left_out"]["a shared judge's count unresolved in A or B (left out of unique responses only)"] == \
        c["paired_groups"]


def test_a_short_group_is_left_out_of_every_measure_as_the_report_leaves_it(tmp_path):
    # Its unique count was left out (the page said so) but its quality was paired: over 3 groups, against 2.
    import json

    def responses_file(name: str, short: bool) -> Path:
        rows = [{"prompt": f"Write a poem about {t}.", "category": "G", "model": "m", "strategy": "temperature",
                 "responses": [f"class {i % 2} response {t}{i}" for i in range(2 if short and k == 0 else 4)]}
                for k, t in enumerate(["rain", "snow", "sun"])]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    dirs = []
    for name, short in (("a", False), ("b", True)):
        (tmp_path / name).mkdir()
        cfg = make_config(tmp_path / name, prompts={"source": "responses", "path": str(responses_file(name, short))},
                          accuracy={"enabled": False})
        run(cfg)
        dirs.append(cfg.run_dir)
    c = compare_runs(*dirs)
    (overall,) = [r for r in c["by_category"] if r["category"] == "all"]
    assert overall["unique"]["n"] == overall["quality"]["n"] == 2
    assert c["left_out"] == {"short or failed group in A or B (left out of every measure)": 1}


def test_no_all_but_a_row_where_a_has_only_uncategorised_groups_beside_it(runs, tmp_path):
    # "All but A" leaves out A and the uncategorised: beside A's, "?" groups alone made a row of nothing ("no paired
    # groups on all categories but A"), which the report never draws.
    pair = []
    for label, src in zip("ab", runs):
        dst = tmp_path / label
        shutil.copytree(src, dst)
        table = pq.read_table(dst / "groups.parquet")
        rows = table.to_pylist()
        for k, r in enumerate(sorted({r["prompt_id"] for r in rows})):
            for g in rows:
                if g["prompt_id"] == r:
                    g["category"] = "A" if k % 2 else None
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), dst / "groups.parquet")
        pair.append(dst)
    c = compare_runs(*pair, resamples=50)
    assert [r["category"] for r in c["by_category"]] == ["A", "?", "all"]
