"""Pipeline logic on a deterministic backend (tests.support.doubles.ScriptedChat) and the in-process executor.

The real model and real Ray are exercised in tests/test_integration.py; here the point is the plumbing: every
table, resume, and what a changed setting recomputes.
"""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.report import write_report
from tests.support.doubles import ScriptedChat
from tests.support.runs import SCRIPTED, make_config, run

@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    cfg = make_config(tmp)
    result = run(cfg)
    return cfg, result, len(ScriptedChat.calls)


def test_every_table_has_its_rows(first_run):
    cfg, result, _ = first_run
    t = result.tables
    prompts, groups = 8, 8 * 5
    assert t["prompts"].num_rows == prompts
    assert t["classifications"].num_rows == prompts
    assert t["samples"].num_rows == groups and t["groups"].num_rows == groups
    assert t["responses"].num_rows == groups * 4
    assert t["components"].num_rows == groups
    assert t["metrics"].num_rows == groups
    assert t["checklists"].num_rows == prompts
    assert t["quality"].num_rows == groups * 4
    assert 0 < t["judgments"].num_rows <= groups * 6
    for name, table in t.items():
        on_disk = pq.read_table(f"{cfg.run_dir}/{name}.parquet")
        assert on_disk.num_rows == table.num_rows and on_disk.schema.names == table.schema.names, name


def test_group_values(first_run):
    _, result, _ = first_run
    for g in result.tables["groups"].to_pylist():
        assert 1 <= g["unique_mean"] <= 4
        assert g["n_responses"] == 4 and g["status"] == "ok"
        assert g["quality_mean"] == 4.0
        assert 0 <= g["vocab_div"] <= 1 and g["compression_ratio"] > 0
    # The double classifies everything as G; the judge category is the gold label where known.
    assert {c["category"] for c in result.tables["classifications"].to_pylist()} == {"G"}
    assert {g["category"] for g in result.tables["groups"].to_pylist()} == set("ABCDEFGH")


def test_components_match_the_judgments(first_run):
    import networkx as nx

    _, result, _ = first_run
    edges = {}
    for j in result.tables["judgments"].to_pylist():
        if j["verdict"] == "equivalent":
            edges.setdefault((j["prompt_id"], j["strategy"]), []).append((j["i"], j["j"]))
    for c in result.tables["components"].to_pylist():
        g = nx.Graph()
        g.add_nodes_from(range(c["n_responses"]))
        g.add_edges_from(edges.get((c["prompt_id"], c["strategy"]), []))
        assert c["unique"] == nx.number_connected_components(g)


def test_anchored_strategies_use_the_models_category(first_run):
    _, result, _ = first_run
    for s in result.tables["samples"].to_pylist():
        assert s["anchored_as"] == ("G" if s["strategy"].endswith("anchored") else None)


def test_report_is_written(first_run):
    cfg, result, _ = first_run
    paths = write_report(result, cfg)
    text = paths["markdown"].read_text()
    assert "Functionally unique responses" in text and "Task classification" in text
    assert "regen_anchored" in text


# Resume: a rerun of the same config computes nothing; a changed judge setting recomputes only judging.
def test_rerun_reuses_every_shard(first_run):
    cfg, first, calls = first_run
    assert calls > 0
    again = run(cfg)
    assert ScriptedChat.calls == []
    assert all(r.units_reused == r.units for r in again.stages)
    for name in first.tables:
        assert again.tables[name].equals(first.tables[name]), name


def test_changed_judge_setting_recomputes_only_judging(first_run, tmp_path):
    cfg, first, _ = first_run
    changed = make_config(tmp_path, run_dir=cfg.run_dir, judge={"both_orders": True})
    result = run(changed)
    by_stage = {r.stage.split("[")[0]: r for r in result.stages}
    assert by_stage["judge"].units_reused == 0
    for name in ("classify", "sample", "metrics", "checklist", "grade"):
        assert by_stage[name].units_reused == by_stage[name].units, name
    assert result.tables["responses"].equals(first.tables["responses"])
    assert all(text.startswith("The prompt below") for text in ScriptedChat.calls)


def test_gold_category_source_anchors_on_gold(tmp_path):
    result = run(make_config(tmp_path, category_source="gold", strategies=["system_anchored"], n=3,
                             quality={"enabled": False}))
    prompts = {p["prompt_id"]: p["gold_category"] for p in result.tables["prompts"].to_pylist()}
    for s in result.tables["samples"].to_pylist():
        assert s["anchored_as"] == prompts[s["prompt_id"]]
    assert "quality" not in result.tables


# Accuracy: the built-in A and D prompts carry gold answers.
def test_accuracy_is_checked_for_prompts_with_gold_answers(first_run):
    _, result, _ = first_run
    acc = result.tables["accuracy"].to_pylist()
    methods = {(a["prompt_id"], a["method"]) for a in acc}
    prompts = {p["prompt_id"]: p for p in result.tables["prompts"].to_pylist()}
    assert {prompts[pid]["gold_category"] for pid, _ in methods} == {"A", "D"}
    assert {m for _, m in methods} == {"math-verify", "grader"}
    # The double's responses ("class 1 response 42") are wrong answers: checked and incorrect, never null.
    assert all(a["correct"] is False for a in acc if a["method"] == "math-verify")
    groups = [g for g in result.tables["groups"].to_pylist() if g["category"] in ("A", "D")]
    assert all(g["n_checked"] > 0 and g["accuracy"] == 0.0 for g in groups if g["category"] == "D")


# Auditing responses generated elsewhere: no generation, classification only where no category is given.
def test_responses_source_skips_generation(tmp_path):
    import json

    rows = [
        {"prompt": "Name a colour.", "responses": ["class 0 red", "class 1 blue", "class 0 green"], "model": "ext"},
        {"prompt": "What is 6 times 7?", "category": "D", "gold_answer": "42", "model": "ext",
         "responses": ["class 2 it is 42", "class 2 6*7 = 42", "class 1 forty-one"]},
    ]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(make_config(tmp_path, prompts={"source": "responses", "path": str(path)}))
    t = result.tables
    assert "sample" not in {r.stage.split("[")[0] for r in result.stages}
    # Only the prompt without a category is classified: the judge's vote and the reference (its majority).
    assert sorted(t["classifications"].column("role").to_pylist()) == ["reference", "vote"]
    assert t["responses"].num_rows == 6 and set(t["responses"].column("model").to_pylist()) == {"ext"}
    assert not any(text.startswith("Name a colour") for text in ScriptedChat.calls)  # nothing was generated
    groups = {g["prompt_id"]: g for g in t["groups"].to_pylist()}
    assert sorted(g["unique_mean"] for g in groups.values()) == [2.0, 2.0]
    math = next(g for g in groups.values() if g["category"] == "D")
    assert math["accuracy"] == pytest.approx(2 / 3)


def test_a_response_that_gives_no_answer_is_never_graded_scored_or_counted_by_vendi(tmp_path, reward_folder):
    # Judging and the general metrics left empty responses out; grading did not (4 grades of "" made a quality
    # mean of 4.0, counted as graded in Figure 3a), nor Vendi (four empty responses read 1.0, perfectly homogeneous).
    import json

    rows = [{"prompt": "Write a poem about rain.", "category": "G", "model": "m",
             "responses": ["class 0 one", "class 0 two", "class 1 three", ""]},
            {"prompt": "Write a poem about snow.", "category": "G", "model": "m", "responses": ["", " ", "", ""]}]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(make_config(tmp_path, prompts={"source": "responses", "path": str(path)}, accuracy={"enabled": False},
                             quality={"reward_model": {"backend": "local", "model": str(reward_folder)}}))
    grading = [c for c in ScriptedChat.calls if c.startswith("Grade the response")]  # run() clears the calls
    assert len(grading) == 3  # the three answers, not the four empty ones nor the fourth of the first group
    text = {p["prompt_id"]: p["text"] for p in result.tables["prompts"].to_pylist()}
    groups = {text[g["prompt_id"]]: g for g in result.tables["groups"].to_pylist()}
    rain, snow = groups["Write a poem about rain."], groups["Write a poem about snow."]
    assert rain["n_graded"] == 3 and rain["quality_mean"] == 4.0 and rain["vendi"] is not None
    assert snow["n_graded"] == 0 and snow["quality_mean"] is None and snow["vendi"] is None
    assert snow["vocab_div"] is None  # as the other general metrics
    empty = [q for q in result.tables["quality"].to_pylist() if text[q["prompt_id"]].endswith("snow.")]
    assert {(q["grade"], q["raw"]) for q in empty} == {(None, "<no answer>")}
    rewarded = [r["reward"] is not None for r in result.tables["rewards"].to_pylist()]
    assert sum(rewarded) == 3 and rain["n_rewarded"] == 3 and snow["n_rewarded"] == 0 and snow["reward_mean"] is None
    # The report says how many responses of the groups in its means gave none: the rain group's metrics are over
    # three of its four responses, in the means without a word before.
    from engine.report.data import report_data
    from engine.report.markdown import render_markdown

    cfg = make_config(tmp_path, prompts={"source": "responses", "path": str(path)})
    data = report_data(result, cfg)
    (row,) = data["by_strategy"]
    assert row["no_answer"] == 5 and row["groups"] == 2
    assert "No answer: responses of these groups that give none" in render_markdown(data)


def test_a_report_of_audited_responses_is_over_the_files_groups(tmp_path):
    # The report took n and the strategies from the config (n 4 here, five built-in strategies): a file's groups of 3
    # under strategy "external" were all "short" and every figure empty, though every pair had been judged.
    import json

    from engine.report.data import report_data
    from engine.report.markdown import render_markdown

    rows = [{"prompt": f"Name a colour, {k}.", "responses": [f"class {k % 2} red", "class 1 blue", "class 0 green"],
             "model": "ext"} for k in range(4)]
    rows.append({"prompt": "Name a fruit.", "responses": ["class 0 apple", "class 1 pear"], "model": "ext"})
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_config(tmp_path, prompts={"source": "responses", "path": str(path)})
    result = run(cfg)
    data = report_data(result, cfg)
    assert data["n"] == 3 and data["strategies"] == ["external"]
    unique = data["unique"]
    assert unique["complete_total"] == 4
    assert unique["excluded"] == [{"model": "ext", "strategy": "external", "reason": "short (fewer than n responses)",
                                   "groups": 1}]
    assert data["unique"]["cells"] and data["tradeoff"]["points_3b"]  # Figure 2 and 3b have their points
    text = render_markdown(data)
    assert "n = 3 responses per group (the audited file’s group size)" in text
    assert "strategies: external" in text and "System-prompt sampling" not in text
    # Two audited files compared: paired on the files' strategy and group size (nothing was paired before).
    from engine.report.compare import compare_runs

    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "responses.jsonl"  # the same stem: the same source, so the same prompt ids
    other.write_text("".join(json.dumps({**r, "model": "ext2", "responses": ["class 0 x"] * len(r["responses"])})
                             + "\n" for r in rows))
    run(make_config(tmp_path, run_dir=str(tmp_path / "run2"), prompts={"source": "responses", "path": str(other)}))
    c = compare_runs(cfg.run_dir, tmp_path / "run2", resamples=200)
    assert c["n"] == 3 and c["strategies"] == ["external"] and c["paired_groups"] == 5
    everything = next(r for r in c["by_category"] if r["category"] == "all")
    assert everything["unique"]["value"] < 0  # the second file's groups are one class each


# The cascade: the calibrated judge decides confident pairs from the responses' features (its own embeddings).
def test_cascade_decides_confident_pairs_without_the_llm(tmp_path):
    import numpy as np

    from engine.method.calibrate import fit
    from engine.method.pair_features import BASE_FEATURES

    from engine.method.taxonomy import LETTERS

    rng = np.random.default_rng(1)
    x = rng.uniform(size=(300, 4))
    coefficients = tmp_path / "coef.json"
    # A rule on Jaccard: near-identical wording is "equivalent", the rest "different", with confidence. Its labelled
    # pairs hold every category but D: D's pairs ("the same strategy?") are the LLM's, every one.
    labelled = [c for c in LETTERS if c != "D"]
    fit(x, [labelled[k % len(labelled)] for k in range(300)], (x[:, 1] > 0.5).astype(int),
        embedder="all-minilm-l6-v2", names=BASE_FEATURES, c=100.0).save(coefficients)
    cfg = make_config(tmp_path, judge={"cascade": {"enabled": True, "low": 0.2, "high": 0.8, "audit_rate": 0.5,
                                                   "coefficients": str(coefficients)}},
                      quality={"enabled": False})
    result = run(cfg)
    judgments = result.tables["judgments"].to_pylist()
    cheap = [j for j in judgments if j["decided_by"] == "cheap"]
    category = {(g["prompt_id"], g["model"], g["strategy"]): g["category"] for g in result.tables["groups"].to_pylist()}
    of_d = [j for j in judgments if category[(j["prompt_id"], j["model"], j["strategy"])] == "D"]
    assert of_d and not any(j["decided_by"] == "cheap" for j in of_d)  # it decided D's pairs too, unseen
    assert cheap and all((j["p_cheap"] is None) == (j in of_d) for j in judgments)
    assert any(j["p_audit"] is not None for j in cheap)
    comps = result.tables["components"].to_pylist()
    assert sum(c["cheap_decided"] for c in comps) == len(cheap)
    # The report says the correlations are partly built in, and gives them over the LLM-judged groups alone.
    from engine.report.data import report_data

    sp = report_data(result, cfg)["spearman"]
    assert sp["cascade"] and sp["cheap_pairs"] == len(cheap)
    assert sp["cheap_share"] == pytest.approx(len(cheap) / len(judgments))
    touched = {(c["prompt_id"], c["model"], c["strategy"]) for c in comps if c["cheap_decided"]}
    llm_only = {(c["prompt_id"], c["model"], c["strategy"]) for c in comps} - touched
    assert sp["llm_only_groups"] == len(llm_only) < len(comps)
    all_row = next(r for r in sp["rows_llm_only"] if r["category"] == "all")
    assert all_row["estimate"]["n"] == len(llm_only)
    # The audit (paid for: audit_rate of the cheap decisions also go to the LLM) is reported: before, its verdicts
    # were stored and read by nothing.
    judging = report_data(result, cfg)["judging"]
    (row,) = [r for r in judging["per_judge"] if r["cascade_audit"]]
    audited = [j for j in cheap if j["p_audit"] is not None and j["judge"] == row["judge"]]
    same = [(j["p_audit"] >= cfg.judge.threshold) == (j["verdict"] == "equivalent") for j in audited]
    audit = row["cascade_audit"]
    assert audit["pairs"] == len(audited) and audit["agree"] == sum(same)
    assert audit["share"]["value"] == pytest.approx(sum(same) / len(same))
    assert audit["cheap_equivalent_llm_different"] + audit["cheap_different_llm_equivalent"] == len(same) - sum(same)


def test_the_cascade_embeds_on_the_cpu_in_the_judges_host(tmp_path):
    """The judge's host holds the judge's engine (or, for an API judge, no GPU at all): the cascade's local embedder
    runs there on the CPU whatever the embedder's device; the embedder's own stages keep it."""
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    cfg = make_config(tmp_path, judge={"cascade": {"enabled": True}}, quality={"enabled": False},
                      embedder={"options": {"device": "cuda", "batch_size": 8}})
    pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        spec = pipeline.judge_settings()["embedder"]
    finally:
        pipeline.close()
    assert spec["options"] == {"device": "cpu", "batch_size": 8} and cfg.embedder.options["device"] == "cuda"


# Bad input that only the model can refuse: a prompt longer than its context fails its rows, not the run.
def test_a_prompt_longer_than_the_context_fails_its_groups_only(tmp_path):
    import json

    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"text": "Write a haiku.", "gold_category": "G"}) + "\n"
                    + json.dumps({"text": "word " * 3000, "gold_category": "H"}) + "\n")
    model = {**SCRIPTED, "options": {"max_chars": 8000}}
    result = run(make_config(tmp_path, prompts={"source": "jsonl", "path": str(path)}, generators=[model],
                             judges=[model], strategies=["temperature", "regen_general"]))
    samples = {(s["prompt_id"], s["strategy"]): s for s in result.tables["samples"].to_pylist()}
    long_id = next(p["prompt_id"] for p in result.tables["prompts"].to_pylist() if p["gold_category"] == "H")
    for (pid, _), s in samples.items():
        if pid == long_id:
            assert s["status"] == "error" and "exceeds the context" in s["error"]
        else:
            assert s["status"] == "ok"
    classified = {c["prompt_id"]: c for c in result.tables["classifications"].to_pylist()}
    assert classified[long_id]["category"] is None and "<error:" in classified[long_id]["raw"]
    groups = {(g["prompt_id"], g["strategy"]): g for g in result.tables["groups"].to_pylist()}
    assert all(groups[k]["unique_mean"] is None for k in groups if k[0] == long_id)
    from engine.report.data import report_data

    data = report_data(result, make_config(tmp_path))
    assert sum(r["failed_groups"] for r in data["by_strategy"]) == 2


# Reward-model quality beside the checklist.
def test_reward_model_scores_every_response(tmp_path, reward_folder):
    result = run(make_config(tmp_path, strategies=["temperature"], n=2, prompts={"source": "builtin", "limit": 2},
                             quality={"reward_model": {"backend": "local", "model": str(reward_folder)}}))
    rewards = result.tables["rewards"].to_pylist()
    assert len(rewards) == result.tables["responses"].num_rows == 4
    assert all(g["reward_mean"] is not None for g in result.tables["groups"].to_pylist())


# The yardstick category never comes from the model under test: two generators that classify a prompt differently
# are judged under the same (reference) category; the reference is the judges' majority, ties to the first judge.
def test_generators_that_classify_differently_are_judged_under_one_reference_category(tmp_path):
    gen_b = {**SCRIPTED, "name": "gen-b", "options": {"classify_as": "B"}}
    judges = [{**SCRIPTED, "name": "j1", "options": {"classify_as": "E"}},
              {**SCRIPTED, "name": "j2", "options": {"classify_as": "H"}},
              {**SCRIPTED, "name": "j3", "options": {"classify_as": "H"}}]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"text": "Plan a picnic for a rainy day."}\n{"text": "Name a prime.", "gold_category": "B"}\n')
    cfg = make_config(tmp_path, prompts={"source": "jsonl", "path": str(jsonl)}, generators=[SCRIPTED, gen_b],
                      judges=judges, strategies=["temperature", "system_anchored"], quality={"enabled": False})
    t = run(cfg).tables
    rows = t["classifications"].to_pylist()
    own = {(r["prompt_id"], r["model"]): r["category"] for r in rows if r["role"] == "own"}
    ref = [r for r in rows if r["role"] == "reference"]
    assert len(ref) == 1 and ref[0]["category"] == "H"  # H two votes to one
    assert sorted(r["model"] for r in rows if r["role"] == "vote") == ["j1", "j2", "j3"]  # the gold prompt: none
    groups = t["groups"].to_pylist()
    unlabelled = [g for g in groups if g["gold_category"] is None]
    assert {g["category"] for g in unlabelled} == {"H"} and {g["category_source"] for g in unlabelled} == {"reference"}
    assert {g["classified"] for g in unlabelled} == {"G", "B"}  # their own letters differ...
    anchored = {g["model"]: g for g in t["samples"].to_pylist() if g["strategy"] == "system_anchored"
                and g["gold_category"] is None}
    # ...and drive sampling
    assert anchored["scripted"]["anchored_as"] == "G" and anchored["gen-b"]["anchored_as"] == "B"
    judged = {(j["model"], j["judge_category"]) for j in t["components"].to_pylist()
              if j["prompt_id"] == ref[0]["prompt_id"]}
    assert judged == {("scripted", "H"), ("gen-b", "H")}
    labelled = [g for g in groups if g["gold_category"] == "B"]
    assert {g["category"] for g in labelled} == {"B"} and {g["category_source"] for g in labelled} == {"gold"}
    assert own and all(v in ("G", "B") for v in own.values())


def test_a_tied_reference_vote_goes_to_the_first_judge():
    from engine.method.classification import majority

    assert majority(["E", "H"]) == "E" and majority([None, "H", "E", "E", "H"]) == "H"
    assert majority([None, None]) is None and majority(["A", "A", "B"]) == "A"


def test_missing_ballots_settle_the_reference_only_when_they_cannot_change_it():
    from engine.method.classification import majority_settled

    gone, here = True, False
    assert majority_settled(["D", "E"], [here, here])  # nothing missing: the majority (ties included) stands
    assert not majority_settled([None], [gone])  # the only classifier's answer is missing
    # Two classifiers, the second missing: whatever it answers, a tie goes to the first — settled
    assert majority_settled(["D", None], [here, gone])
    # ...the first missing: its answer would win a tie
    assert not majority_settled([None, "D"], [gone, here])
    assert majority_settled(["D", "D", None], [here, here, gone])
    assert not majority_settled(["D", "E", None], [here, here, gone])  # the third decides between D and E
    assert majority_settled(["D", "D", None, None], [here, here, gone, gone])  # E, E ties, and the first D wins it
    assert not majority_settled([None, "D", "D", None], [gone, here, here, gone])  # E, E: the first E wins it
    # A missing vote of "none of these" can win too (a tie goes to the first classifier): it was never tried, so
    # the prompt was judged under G though the missing classifier could make it uncategorisable.
    assert not majority_settled(["G", "none", None], [here, here, gone])  # "none" makes none of these the majority
    assert not majority_settled(["D", "D", "E", None, None], [here, here, here, gone, gone])


def test_a_rerun_without_quality_or_accuracy_leaves_no_earlier_table_beside_its_groups(tmp_path):
    # Run 1 graded and checked accuracy; run 2 in the same directory turns both off. Its directory kept run 1's
    # quality and accuracy tables, which open_run, explore and compare read beside run 2's groups.
    from engine.execution.results import read_run

    cfg = make_config(tmp_path, quality={"enabled": True}, accuracy={"enabled": True}, strategies=["temperature"])
    run(cfg)
    assert {"quality", "accuracy", "checklists"} <= set(read_run(cfg.run_dir)[0].tables)
    run(make_config(tmp_path, quality={"enabled": False}, accuracy={"enabled": False}, strategies=["temperature"]))
    tables = read_run(cfg.run_dir)[0].tables
    assert not {"quality", "accuracy", "checklists"} & set(tables) and "groups" in tables


def test_a_run_that_stops_part_way_leaves_the_finished_runs_config_beside_its_tables(tmp_path, monkeypatch):
    # config.yaml was written as a run started: a rerun with n = 6 that crashed left n = 6 beside the n = 4 tables,
    # and read_run (compare, explore, open_run) took every group for short.
    from engine.execution import pipeline as pipeline_module
    from engine.execution.results import read_run

    quick = dict(strategies=["temperature"], quality={"enabled": False}, accuracy={"enabled": False})
    cfg = make_config(tmp_path, **quick)
    run(cfg)
    assert not (tmp_path / "run" / "config.running.yaml").exists()  # a finished run leaves only config.yaml

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(pipeline_module.T, "groups_table", crash)
    with pytest.raises(RuntimeError, match="went down"):
        run(make_config(tmp_path, n=6, **quick))
    _, config = read_run(cfg.run_dir)
    assert config.n == 4
    assert "n: 6" in (tmp_path / "run" / "config.running.yaml").read_text()


def test_a_crash_while_the_tables_are_written_never_leaves_them_read_with_another_runs_config(tmp_path,
                                                                                               monkeypatch):
    # The tables went first, the config after: a crash between two tables (a full disk, a kill) left some of this
    # run's tables beside the last run's others and its config.yaml, and read_run read the mix as a finished run.
    from engine.execution.results import RunDirError, read_run
    from engine.execution.store import Store

    quick = dict(strategies=["temperature"], quality={"enabled": False}, accuracy={"enabled": False})
    cfg = make_config(tmp_path, **quick)
    run(cfg)
    written = []
    real = Store.write_table

    def full_disk(self, name, table):
        if written:
            raise OSError(28, "No space left on device")
        written.append(name)
        return real(self, name, table)

    monkeypatch.setattr(Store, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run(make_config(tmp_path, n=6, **quick))
    with pytest.raises(RunDirError, match="no finished run here"):
        read_run(cfg.run_dir)
    monkeypatch.undo()
    result, config = read_run(run(make_config(tmp_path, n=6, **quick)).run_dir)
    assert config.n == 6 and {g["n_responses"] for g in result.tables["groups"].to_pylist()} == {6}
    # Without its prompts table explore and compare raised KeyError('prompts'), a traceback on the command line.
    (Path(cfg.run_dir) / "prompts.parquet").unlink()
    with pytest.raises(RunDirError, match=r"the run has not finished \(no prompts\.parquet\)"):
        read_run(cfg.run_dir)


def test_a_report_rendered_again_from_the_directory_keeps_what_failed(tmp_path):
    # run_stats.json kept only a count of failed shards: a report rendered again (open_run → write_report) said
    # "No failed shards" and rewrote the count as 0.
    import orjson

    from engine.execution.results import read_run
    from engine.report.data import report_data
    from engine.report.markdown import render_markdown

    refused = tmp_path / "refused"
    refused.touch()
    judge = {**SCRIPTED, "options": {"refuse_armed": str(refused), "refuse_kind": "judge"}}
    cfg = make_config(tmp_path, judges=[judge], quality={"enabled": False}, accuracy={"enabled": False},
                      strategies=["temperature"])
    result = run(cfg)
    assert result.failed_shards()
    write_report(result, cfg)
    again, config = read_run(cfg.run_dir)
    assert again.failed_shards() == result.failed_shards()
    text = render_markdown(report_data(again, config))
    assert "No failed shards" not in text and "HTTP 401" in text
    write_report(again, config)
    stats = orjson.loads((tmp_path / "run" / "run_stats.json").read_bytes())
    assert sum(s["failed_shards"] for s in stats["stages"]) == sum(len(v) for v in result.failed_shards().values())
