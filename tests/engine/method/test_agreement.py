"""The agreement and calibrate commands end to end, on small labelled files."""

import json

import numpy as np
import pytest

from engine.method.agreement import agreement_report
from engine.cli import main
from engine.inputs.labelled_pairs import LabelledPair


def pairs_file(tmp_path, n=12, start=0):
    """n labelled pairs, half equivalent; `start` numbers them (pairs of other numbers share no text)."""
    rows = []
    for k in range(start, start + n):
        same = k % 2 == 0
        a = f"class {k % 3} the cat sat on the mat number {k}"
        b = a if same else f"class {(k + 1) % 3} quantum chromodynamics lecture {k * 7}"
        rows.append({"prompt": "Say something.", "response_a": a, "response_b": b, "label": int(same),
                     "category": "G" if k - start < n // 2 else None})
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_report_counts_unparsed_apart_and_breaks_down_by_category():
    pairs = [LabelledPair(str(k), "p", "a", "b", k % 2 == 0, "G" if k < 2 else None) for k in range(4)]
    report = agreement_report(pairs, np.array([0.9, 0.1, np.nan, 0.8]), 0.5)
    assert report["unparsed"] == 1 and report["n"] == 3
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["by_category"]["G"]["accuracy"] == 1.0 and report["by_category"]["none"]["n"] == 1


def test_a_pair_with_an_empty_response_is_not_scored_as_a_run_would_not_judge_it():
    # The calibrated judge gave such pairs a probability (~0.001, "different") and they entered accuracy and κ; a
    # run leaves them unresolved (no_answer).
    from engine.method.agreement import calibrated_probabilities

    pairs = [LabelledPair("0", "p", "a cat", "", False, None), LabelledPair("1", "p", "  ", "a dog", False, None),
             LabelledPair("2", "p", "a cat", "a cat", True, None)]
    p = calibrated_probabilities(pairs, None, "all-minilm-l6-v2")
    assert np.isnan(p[:2]).all() and p[2] >= 0.5
    report = agreement_report(pairs, p, 0.5)
    assert report["no_answer"] == 2 and report["unparsed"] == 0 and report["n"] == 1


def test_report_gives_bootstrap_intervals_around_kappa_and_auc():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    p = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)  # informative, far from perfect
    pairs = [LabelledPair(str(k), "p", "a", "b", bool(y), None) for k, y in enumerate(labels)]
    report = agreement_report(pairs, p, 0.5, resamples=300)
    for key in ("kappa", "auc"):
        low, high = report[f"{key}_ci95"]
        assert low < report[key] < high and high - low > 0.05
    assert report["resamples"] == 300 and "kappa_ci95" not in agreement_report(pairs, p, 0.5)


def test_calibrate_then_agreement_with_the_calibrated_judge(tmp_path, capsys):
    pairs = pairs_file(tmp_path)
    (tmp_path / "held").mkdir()
    val = pairs_file(tmp_path / "held", n=10, start=100)
    coef = tmp_path / "coef.json"
    # Scored on its own training pairs, "val" was in-sample: refused before the fit.
    assert main(["calibrate", "--pairs", str(pairs), "--val", str(pairs), "--out", str(coef)]) == 2
    assert "holds the same pairs as --pairs" in capsys.readouterr().err and not coef.exists()
    # So is a val file sharing some of them (this one: the training file's first 10, the responses swapped in one).
    (tmp_path / "shared").mkdir()
    shared = pairs_file(tmp_path / "shared", n=10)
    lines = shared.read_text().splitlines()
    first = json.loads(lines[1])
    first["response_a"], first["response_b"] = first["response_b"], first["response_a"]
    shared.write_text("\n".join([lines[0], json.dumps(first), *lines[2:]]) + "\n")
    assert main(["calibrate", "--pairs", str(pairs), "--val", str(shared), "--out", str(coef)]) == 2
    assert "10 of its 10 pairs are also in --pairs" in capsys.readouterr().err and not coef.exists()
    assert main(["calibrate", "--pairs", str(pairs), "--val", str(val), "--out", str(coef)]) == 0
    fitted = json.loads(coef.read_text())
    assert fitted["provenance"]["val"]["n"] == 10 and fitted["provenance"]["fitted_on"]["pairs"] == 12
    out = tmp_path / "agreement.json"
    capsys.readouterr()
    assert main(["agreement", "--pairs", str(val), "--judge", "calibrated", "--coefficients", str(coef),
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pairs"] == 10 and report["accuracy"] >= 0.9  # identical vs unrelated texts: easy
    assert report["resamples"] == 1000 and len(report["kappa_ci95"]) == 2 and report["in_sample"] is False
    printed = capsys.readouterr().out
    assert "Cohen's κ" in printed and "IN-SAMPLE" not in printed
    # On the pairs it was fitted on, the score is said to be in-sample.
    assert main(["agreement", "--pairs", str(pairs), "--judge", "calibrated", "--coefficients", str(coef),
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["in_sample"] is True
    assert capsys.readouterr().out.startswith("IN-SAMPLE: the calibrated judge was fitted on these very pairs")
    assert main(["agreement", "--pairs", str(pairs), "--judge", "calibrated", "--resamples", "-1"]) == 2
    assert "--resamples must be between 0 and 1,000,000" in capsys.readouterr().err


def scripted_config(tmp_path):
    """A run config whose one judge is the scripted double (it says YES when both responses start "class k")."""
    config = tmp_path / "run.yaml"
    config.write_text("judges:\n  - {name: scripted, backend: 'python:tests.support.doubles:ScriptedChat', model: s}\n")
    return config


def test_agreement_with_an_llm_judge_of_a_config(tmp_path, capsys):
    config = scripted_config(tmp_path)
    out = tmp_path / "agreement.json"
    assert main(["agreement", "--pairs", str(pairs_file(tmp_path)), "--config", str(config), "--judge", "scripted",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # The double says YES exactly when both responses start with the same "class k": it agrees with these labels.
    assert report["accuracy"] == 1.0 and report["llm_calls"] == 12 and report["unparsed"] == 0


def test_agreement_counts_the_pairs_the_two_orders_split_apart(tmp_path, capsys):
    # With judge.both_orders, a YES one way and a NO the other is no verdict (as in a run): those pairs were left out
    # of κ and AUC as "unparsed", unsaid — exactly the contested ones.
    config = tmp_path / "run.yaml"
    config.write_text("judge: {both_orders: true}\njudges:\n  - {name: biased, backend: "
                      "'python:tests.support.doubles:ScriptedChat', model: s, verdict: text, "
                      "options: {first_wins: true}}\n")
    out = tmp_path / "agreement.json"
    assert main(["agreement", "--pairs", str(pairs_file(tmp_path)), "--config", str(config), "--judge", "biased",
                 "--allow-python-backends", "--resamples", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["order_split"] == 4 and report["unparsed"] == 4  # the different pairs k = 3, 5, 9, 11
    assert "(4 of them split by the two orders — one each way, no verdict — and left out of the scores)" \
        in capsys.readouterr().out


def test_agreement_checks_its_arguments_before_judging_and_says_when_nothing_was_read(tmp_path, capsys):
    # --resamples -1 was refused after every pair had been judged (the calls lost); a judge none of whose verdicts
    # could be read crashed in scikit-learn with the call count unprinted; --out in a missing folder was a
    # traceback after the report.
    from tests.support.doubles import ScriptedChat

    config = tmp_path / "run.yaml"
    config.write_text("judges:\n  - {name: scripted, backend: 'python:tests.support.doubles:ScriptedChat', model: s,"
                      " options: {unparseable_judge: true}}\n")
    base = ["agreement", "--pairs", str(pairs_file(tmp_path)), "--config", str(config), "--judge", "scripted",
            "--allow-python-backends"]
    ScriptedChat.calls.clear()
    for extra, message in ((["--resamples", "-1"], "--resamples must be between 0 and 1,000,000"),
                           (["--resamples", "100000000000"], "--resamples must be between 0 and 1,000,000"),
                           (["--limit", "0"], "--limit must be 1 or more"),
                           (["--out", str(tmp_path / "nowhere" / "a.json")], "does not exist")):
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not ScriptedChat.calls  # refused before any judge was asked
    out = tmp_path / "agreement.json"
    assert main(base + ["--limit", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 pairs, 4 unparsed — no verdict to score" in printed and "LLM calls:" in printed
    report = json.loads(out.read_text())
    assert report["n"] == 0 and report["kappa"] is None and report["llm_calls"] >= 4


def test_calibrate_checks_its_arguments_before_fitting(tmp_path, capsys):
    pairs = pairs_file(tmp_path)
    out = tmp_path / "coef.json"
    for extra, message in ((["--out", str(tmp_path / "nowhere" / "c.json")], "does not exist"),
                           (["--out", str(out), "--val", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
                           (["--out", str(out), "--c", "0"], "--c must be a finite number > 0"),
                           (["--out", str(out), "--c", "inf"], "--c must be a finite number > 0"),
                           (["--out", str(out), "--resamples", "-1"], "--resamples must be between 0 and 1,000,000"),
                           (["--out", str(out), "--embedder", "bogus"], "--embedder.model: 'bogus'")):
        assert main(["calibrate", "--pairs", str(pairs), *extra]) == 2
        err = capsys.readouterr()
        assert message in err.err and "fitted on" not in err.out, (extra, err)
    assert not out.exists()
    # Too few pairs of a label for the cross-validation's folds: scikit-learn's ValueError was a traceback.
    (tmp_path / "few").mkdir()
    (tmp_path / "one").mkdir()
    for few, label_counts in ((pairs_file(tmp_path / "few", n=3), "2 pairs labelled equivalent"),
                              (pairs_file(tmp_path / "one", n=12), None)):
        if label_counts is None:  # all one label
            rows = [json.loads(line) | {"label": 1} for line in few.read_text().splitlines()]
            few.write_text("".join(json.dumps(r) + "\n" for r in rows))
            label_counts = "0 pairs labelled different"
        assert main(["calibrate", "--pairs", str(few), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert label_counts in err and "needs at least 5 pairs of each label" in err and "Traceback" not in err
    # A coefficients file that is not one is a clear error, not a JSON traceback
    assert main(["agreement", "--pairs", str(pairs), "--coefficients", str(pairs)]) == 2
    assert "not a calibrated-judge coefficients file" in capsys.readouterr().err


def test_unknown_judge_is_a_clear_error(tmp_path, capsys):
    assert main(["agreement", "--pairs", str(pairs_file(tmp_path)), "--judge", "gpt-9"]) == 2
    assert "not a judge of the config" in capsys.readouterr().err


def with_non_latin(tmp_path, n=12, start=0):
    """pairs_file's pairs and three more in Russian ("class k" kept, so the scripted LLM judge can read them): two
    the calibrated judge cannot read, and one of the same text twice (equivalent whatever the script)."""
    path = pairs_file(tmp_path, n, start)
    story = "Жил-был кот по имени Мурзик, он очень любил рыбу и спал на солнце"
    rows = [{"prompt": "Tell a story.", "response_a": f"class 1 {story}.", "response_b": f"class 1 {story}, да.",
             "label": 1, "category": "G"},
            {"prompt": "Tell a story.", "response_a": f"class 1 {story}.", "response_b": "class 2 Это совсем другое.",
             "label": 0, "category": None},
            {"prompt": "Tell a story.", "response_a": f"class 0 {story}.", "response_b": f"class 0  {story}.",
             "label": 1, "category": None}]
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_the_calibrated_judge_leaves_pairs_outside_the_latin_script_unscored_and_counts_them_apart(tmp_path, capsys):
    # agreement scored them with predict alone (Russian paraphrases 0.03-0.08, "different") and counted them in κ and
    # AUC, where a run gives them no probability; now NaN, counted as non_latin (not "unparsed"), out of the scores.
    from engine.method.agreement import calibrated_probabilities
    from engine.inputs.labelled_pairs import load_pairs

    pairs = load_pairs(with_non_latin(tmp_path))
    p = calibrated_probabilities(pairs, None, "all-minilm-l6-v2")
    assert np.isnan(p[12:14]).all() and p[14] == 1.0 and np.isfinite(p[:12]).all()
    from engine.method.agreement import non_latin

    assert non_latin(pairs).tolist() == [False] * 12 + [True, True, False]
    out = tmp_path / "agreement.json"
    assert main(["agreement", "--pairs", str(with_non_latin(tmp_path)), "--judge", "calibrated", "--resamples", "0",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["non_latin"] == 2 and report["unparsed"] == 0 and report["n"] == 13 and report["pairs"] == 15
    assert "2 with a response outside the Latin script" in capsys.readouterr().out


def test_the_cascade_sends_pairs_outside_the_latin_script_to_the_llm_as_a_run_does(tmp_path, capsys):
    # With low = high the cheap judge decides every pair it scores; it "decided" the Russian ones too, which a
    # run's cascade sends to the LLM judge.
    config = tmp_path / "run.yaml"
    config.write_text("judge: {cascade: {low: 0.5, high: 0.5}}\njudges:\n  - {name: scripted, backend: "
                      "'python:tests.support.doubles:ScriptedChat', model: s}\n")
    out = tmp_path / "agreement.json"
    assert main(["agreement", "--pairs", str(with_non_latin(tmp_path)), "--config", str(config), "--judge",
                 "cascade:scripted", "--allow-python-backends", "--resamples", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["llm_pairs"] == 2 and report["cheap_pairs"] == 13 and report["cheap_non_latin"] == 2
    assert report["n"] == 15 and report["unparsed"] == 0 and "non_latin" not in report  # the LLM's verdicts count
    assert "2 outside the Latin script went to the LLM" in capsys.readouterr().out


def test_calibrate_scores_train_and_val_as_a_run_would(tmp_path, capsys):
    # calibrate scored val with predict alone: the pairs a run leaves unknown entered its recorded κ and AUC.
    pairs = pairs_file(tmp_path)
    (tmp_path / "held").mkdir()
    coef = tmp_path / "coef.json"
    assert main(["calibrate", "--pairs", str(pairs), "--val", str(with_non_latin(tmp_path / "held", n=10, start=100)),
                 "--resamples", "0", "--out", str(coef)]) == 0
    provenance = json.loads(coef.read_text())["provenance"]
    assert provenance["val"]["n"] == 11 and provenance["val"]["non_latin"] == 2
    assert provenance["train"]["non_latin"] == 0 and provenance["train"]["n"] == 12
    assert "2 outside the Latin script not scored" in capsys.readouterr().out


def test_agreement_keeps_a_paid_llm_report_when_the_bootstrap_keeps_too_few_resamples(tmp_path, capsys):
    # Two pairs and one resample holding one class: np.percentile of nothing raised IndexError after the LLM calls,
    # and the report was lost. Now no interval, and the report says how many resamples were kept.
    config = scripted_config(tmp_path)
    out = tmp_path / "agreement.json"
    assert main(["agreement", "--pairs", str(pairs_file(tmp_path)), "--config", str(config), "--judge", "scripted",
                 "--allow-python-backends", "--limit", "2", "--resamples", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["llm_calls"] >= 2 and report["kappa_ci95"] is None and report["resamples_used"] == 0
    assert report["resamples"] == 1 and "held both classes" in report["ci95_note"]
    assert "bootstrap: 0 of 1 resamples held both classes" in capsys.readouterr().out
