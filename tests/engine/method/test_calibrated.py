import json
from pathlib import Path

import numpy as np
import pytest

from engine.method.calibrate import bootstrap_kappa_auc, fit, scores
from engine.method.calibrated import DEFAULT_COEFFICIENTS, CATEGORY_SLOTS, CalibratedJudge, category_one_hot
from engine.errors import ConfigError
from engine.method.features import FEATURES, length_ratio_matrix, pair_features
from engine.method.pair_features import (BASE_FEATURES, PAIR_FEATURES, RECIPES, group_features, labelled_features,
                                         text_features)


def test_one_hot_puts_unknown_categories_in_none():
    m = category_one_hot(["A", None, "Z", "H"])
    assert m.sum(axis=1).tolist() == [1, 1, 1, 1]
    assert m[1, CATEGORY_SLOTS.index("none")] == 1 and m[2, CATEGORY_SLOTS.index("none")] == 1


def test_fit_learns_a_separable_rule_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(400, len(FEATURES)))
    y = (x[:, 0] > 0.5).astype(int)  # equivalent iff cosine is high
    judge = fit(x, [None] * len(x), y, embedder="e", names=BASE_FEATURES)
    p = judge.predict(x, [None] * len(x))
    assert scores(y, p)["accuracy"] > 0.95
    # The cross-validated threshold is folded into the intercept: p >= 0.5 is the verdict at that threshold.
    assert 0.2 <= judge.threshold <= 0.8 and judge.provenance["cv_train"]["auc"] > 0.95
    path = tmp_path / "coef.json"
    judge.save(path)
    again = CalibratedJudge.load(path)
    np.testing.assert_allclose(again.predict(x, [None] * len(x)), p)


def test_load_rejects_foreign_coefficients(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"mean": [0], "std": [1], "coef": [1, 2], "intercept": 0, "features": ["x"]}))
    with pytest.raises(ConfigError, match="fitted on features"):
        CalibratedJudge.load(path)
    with pytest.raises(ConfigError, match="not found"):
        CalibratedJudge.load(tmp_path / "none.json")


def test_the_shipped_coefficients_load_and_record_their_validation():
    judge = CalibratedJudge.load(DEFAULT_COEFFICIENTS)
    val = judge.provenance["val"]
    assert val["n"] == 100 and 0.0 <= val["accuracy"] <= 1.0 and "kappa" in val
    assert judge.provenance["fitted_on"]["file"] == "train.jsonl"


def test_length_ratio():
    m = length_ratio_matrix(["ab", "abcd", ""])
    assert m[0, 1] == 0.5 and m[2, 2] == 1.0 and m[0, 2] == 0.0


def test_pair_features_of_identical_and_disjoint_pairs():
    def embed(texts):
        vectors = np.array([[1.0, 0.0] if "cat" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
        return vectors

    f = pair_features([("the cat sat", "the cat sat"), ("cat", "dog ran")], embed)
    assert f[0].tolist() == pytest.approx([1.0, 1.0, f[0, 2], 1.0]) and f[0, 2] < 0.5
    assert f[1, 0] == 0.0 and f[1, 1] == 0.0 and f[1, 3] == pytest.approx(3 / 7)


def test_text_features_by_hand():
    f = text_features("Name a fruit.", "**Apple** is red. It grows on trees.\n- one\n- two 3",
                      "Apple, 3 of them.\nBanana")
    assert f["num_any"] == 1.0 and f["same_last_num"] == 1.0 and f["num_jac"] == 1.0
    assert f["bold_jac"] == 0.0 and f["bold_any"] == 0.0  # only one side has bold text
    assert f["first_w_jac"] == pytest.approx(1 / 6)  # {apple, is, red} and {apple, 3, of, them}: 1 word of 6
    assert f["bullet_ratio"] == 0.0 and f["lines_ratio"] == pytest.approx(2 / 3)
    assert f["prompt_loglen"] == pytest.approx(np.log1p(len("Name a fruit.")))
    same = text_features("p", "The same text.", "The same text.")
    assert same["w2_jac"] == same["w3_cont"] == same["first_exact"] == same["difflib_500"] == 1.0
    assert set(same) == set(PAIR_FEATURES) - set(BASE_FEATURES) - {"ncd_both", "cos_resid", "cos_ap_mean",
                                                                    "cos_ap_absdiff"}


def test_group_and_labelled_pairs_get_the_same_features():
    texts = ["Paris is the capital.", "It is Paris.", "Lyon, I think."]

    def embed(batch):
        rng = {t: np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in batch}
        v = np.array([rng[t] for t in batch])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    vectors = embed(texts + ["Capital of France?"])
    rows = group_features("Capital of France?", texts, vectors[:3], vectors[3], PAIR_FEATURES)
    pairs = [(texts[0], texts[1]), (texts[0], texts[2]), (texts[1], texts[2])]
    assert np.allclose(rows, labelled_features(["Capital of France?"] * 3, pairs, embed, PAIR_FEATURES), atol=1e-6)
    # The base four are the engine's similarity features.
    base = pair_features(pairs, embed)
    assert np.allclose(rows[:, :4], base, atol=1e-6)
    assert len(RECIPES["cheap38"]) == 38 and set(RECIPES["cheap38"]) == set(PAIR_FEATURES) - {"ncd", "difflib_500"}


def test_every_recipe_is_order_free_and_the_ordered_features_are_not():
    """A judge's verdict must not depend on which of two responses a group holds first. NCD compresses a·b and
    difflib's ratio takes the first longest match in a: both change with the order (the shipped judge's train pairs
    had 3 of 1,000 verdicts flip with it); their order-free means do not."""
    texts = ["Lyon is not. Paris is the capital.", "Paris it is.", "Lyon is a large French city; not the capital."]

    def embed(batch):
        v = np.array([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in batch])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    prompt = "Capital of France?"
    forward = group_features(prompt, texts, embed(texts), embed([prompt])[0], PAIR_FEATURES)
    backward = group_features(prompt, texts[::-1], embed(texts[::-1]), embed([prompt])[0], PAIR_FEATURES)
    # Pair (i, j) of the reversed group is pair (2-j, 2-i): row-major order (0,1), (0,2), (1,2) maps 0→2, 1→1, 2→0.
    backward = backward[[2, 1, 0]]
    names = list(PAIR_FEATURES)
    moved = {f for k, f in enumerate(names) if not np.allclose(forward[:, k], backward[:, k], atol=1e-9)}
    assert moved == {"ncd", "difflib_500"}
    for recipe in RECIPES.values():
        assert not set(recipe) & moved


def test_validation_scores_carry_bootstrap_intervals():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.6 + rng.uniform(size=200) * 0.5, 0, 1)
    s = scores(y, p, resamples=200)
    assert s["kappa_ci95"][0] <= s["kappa"] <= s["kappa_ci95"][1] and s["auc_ci95"][0] <= s["auc"] <= s["auc_ci95"][1]


@pytest.mark.parametrize("n, decimals", [(6, 1), (40, 2), (150, 6)])
def test_the_bootstrap_gives_scikit_learns_kappa_and_auc_of_each_resample(n, decimals):
    # The resamples' κ and AUC are computed all at once (scikit-learn's per-call checks cost seconds a run): each
    # must be what scikit-learn gives for that resample, drawn as the loop drew it, ties of scores included.
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(y * 0.3 + rng.uniform(size=n), 0, 1), decimals)
    predicted = (p >= 0.5).astype(int)
    draws = np.random.default_rng(7)
    want_k, want_a = [], []
    for _ in range(120):
        i = draws.integers(0, n, n)
        if len(set(y[i].tolist())) == 2:
            want_k.append(cohen_kappa_score(y[i], predicted[i]))
            want_a.append(roc_auc_score(y[i], p[i]))
    kappas, aucs = bootstrap_kappa_auc(y, predicted, p, 120, seed=7, chunk=50)
    assert len(kappas) == len(want_k) and (n > 6 or len(want_k) < 120)
    assert np.allclose(kappas, want_k, rtol=0, atol=1e-12) and np.allclose(aucs, want_a, rtol=0, atol=1e-12)


def test_the_same_text_twice_is_equivalent_whatever_the_features_say():
    """Two identical short answers have little to go on (no content words): the shipped model alone gave "42" and
    "42" p = 0.40 with the real embedder; the judge calls every pair with the same text (whitespace and case aside)
    equivalent."""
    from engine.method.calibrated import pair_lookup, same_text

    judge = CalibratedJudge.load(DEFAULT_COEFFICIENTS)
    responses = ["42", " 42\n", "41", "", ""]
    unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    prompt = np.array([0.6, 0.8], dtype=np.float32)
    vectors = {t: v for t, v in zip(responses, unit)} | {"What is 6*7?": prompt}
    (p,) = judge.score_groups(lambda texts: np.array([vectors[t] for t in texts]), ["What is 6*7?"], [responses],
                              ["A"])
    assert p[0] == 1.0 and (p[1:] < 1.0).all()  # "42"/" 42\n" only; two empty responses are no shared answer
    lookup = pair_lookup(p, 5)
    assert lookup(0, 1) == 1.0 and lookup(0, 2) == p[1] and lookup(1, 2) == p[4] and lookup(3, 4) == p[-1]
    assert same_text("Paris", "paris ") and not same_text("", "") and not same_text("Paris", "Paris.")


def test_a_response_outside_the_latin_script_gets_no_probability_and_the_cascade_asks_the_llm():
    # The word features read [a-z0-9] words: two Russian or Chinese texts had the features of two empty texts, and
    # equivalent paraphrases scored 0.03-0.08, confidently "different", and the cascade never asked its LLM judge
    # (tests/engine/method/test_judges.py: a pair without a probability goes to it).
    from engine.method.calibrated import latin_script, pair_lookup

    assert latin_script("The capital is Paris.") and latin_script("La capitale est Paris, à côté.")
    assert latin_script("42 + 7 = 49") and latin_script("") and latin_script("Столица — Paris, Paris, Paris!")
    assert not latin_script("Столица Франции — Париж.") and not latin_script("法国的首都是巴黎。")
    judge = CalibratedJudge.load(DEFAULT_COEFFICIENTS)
    responses = ["Столица Франции — Париж.", "Это Париж.", "The capital is Paris.", "It is Paris.", "Это Париж."]

    def embed(batch):
        return np.array([[1.0, 0.0] if "Пар" in t or "Paris" in t else [0.6, 0.8] for t in batch], dtype=np.float32)

    (p,) = judge.score_groups(embed, ["Capital of France?"], [responses], ["F"])
    lookup = pair_lookup(p, 5)
    assert np.isnan(lookup(0, 1)) and np.isnan(lookup(0, 2)) and np.isnan(lookup(1, 3))
    assert np.isfinite(lookup(2, 3)) and lookup(1, 4) == 1.0  # English read; the same text is the same anywhere



def test_pair_features_and_harmony_channels_take_linear_time_on_adversarial_text():
    # Audited responses have no length limit: on 20,000 newlines the list-item pattern took 11 s for one pair
    # (quadratic), a bold line followed by 20,000 spaces 3.5 s, and 8,000 message-less harmony channels 15 s.
    import time

    from actors.base import split_harmony
    from engine.method.pair_features import text_features

    def best_of_three(f, text):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            f(text)
            times.append(time.perf_counter() - start)
        return min(times)

    for f, make in ((lambda t: text_features("p", t, "x"), lambda k: "\n" * k),
                    (lambda t: text_features("p", t, "x"), lambda k: "**a**" + " " * k + "x"),
                    (split_harmony, lambda k: "<|channel|>x" * (k // 10))):
        small, large = best_of_three(f, make(20_000)), best_of_three(f, make(80_000))
        assert large < 0.2 or large < 1.0 and large / max(small, 1e-4) < 8, (small, large)


DARLING = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "darling_equivalence_pairs"


@pytest.mark.skipif(not DARLING.is_dir(), reason="../shared/datasets is not present")
def test_the_linear_list_item_pattern_finds_what_the_fitted_one_found_on_the_labelled_pairs():
    # The shipped coefficients were fitted with `^\s*…` before the marker (quadratic on runs of blank lines); the
    # linear pattern must give the same items on the pairs they were fitted and scored on, or `calibrate` would no
    # longer reproduce them. A first rewrite ([ \t]+ after the marker too) changed two pairs' item_head_jac.
    import re

    from engine.method.pair_features import LIST_ITEM

    fitted = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(.*)$", re.M)
    for name in ("train.jsonl", "val.jsonl"):
        for line in (DARLING / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for text in (row["generation_0"], row["generation_1"]):
                assert LIST_ITEM.findall(text) == fitted.findall(text)


def test_a_probability_that_is_no_number_is_unresolved_not_different(tmp_path):
    # An embedder that returned NaN for one text made every pair with it NaN, read as "different" (NaN >= t is
    # false), resolved; coefficients with a NaN loaded too.
    from engine.config import JudgeConfig
    from engine.stages.judge import CalibratedJudgeStage

    stage = CalibratedJudgeStage.__new__(CalibratedJudgeStage)
    stage.model_name, stage.settings = "calibrated", JudgeConfig()
    stage.judge = CalibratedJudge.load(DEFAULT_COEFFICIENTS)

    class Embedder:
        def embed(self, texts):
            return np.array([[np.nan, np.nan] if t == "broken" else [1.0, 0.0] if t.startswith("a") else [0.6, 0.8]
                             for t in texts], dtype=np.float32)

    stage.embedder = Embedder()
    row = {"prompt_id": "p", "model": "m", "strategy": "s", "text": "Say something.", "judge_category": "G",
           "responses": ["a cat sat", "broken", "a dog ran"], "agreement_sample": False}
    (out,) = stage.process([row])
    verdicts = {(p["i"], p["j"]): (p["verdict"], p["p_equivalent"]) for p in out["pairs"]}
    assert verdicts[(0, 1)] == ("unparsed", None) and verdicts[(1, 2)] == ("unparsed", None)
    assert verdicts[(0, 2)][0] in ("equivalent", "different") and out["n_unresolved"] == 2

    data = json.loads(DEFAULT_COEFFICIENTS.read_text())
    for bad in ({"std": [float("nan")] + data["std"][1:]}, {"threshold": 1.5}, {"intercept": float("inf")}):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**data, **bad}))
        with pytest.raises(ConfigError, match="must be finite numbers"):
            CalibratedJudge.load(path)
    # Shapes: a TypeError from len() in preflight, or an AttributeError mid-run in decides(), before.
    for bad, message in (({"coef": 1.0}, "coef must be a list"), ({"features": None}, "features must be a list"),
                         ({"features": data["features"][:-1] + data["features"][:1]}, "must be distinct names"),
                         ({"embedder": None}, "embedder must be a model name"),
                         ({"provenance": {**data["provenance"], "category_pairs": ["B", 3]}},
                          "category_pairs must map categories to pair counts")):
        path.write_text(json.dumps({**data, **bad}))
        with pytest.raises(ConfigError, match=message):
            CalibratedJudge.load(path)


def test_the_bootstrap_says_how_many_resamples_it_kept_and_gives_no_interval_from_too_few():
    # Resamples holding one class were dropped unsaid ("resamples": 1000 where 662 made the intervals), and with none
    # kept np.percentile of nothing raised IndexError — in `agreement`, after an LLM judge's calls were paid.
    y = np.zeros(20, int)
    y[3] = 1  # one positive in 20: about a third of the resamples miss it
    p = np.linspace(0.05, 0.95, 20)
    s = scores(y, p, resamples=1000)
    kept = len(bootstrap_kappa_auc(y, (p >= 0.5).astype(int), p, 1000)[0])
    assert s["resamples"] == 1000 and s["resamples_used"] == kept and 600 < kept < 1000
    from engine.method.calibrate import MIN_BOOTSTRAP

    assert len(s["kappa_ci95"]) == 2 and "ci95_note" not in s
    s = scores(np.array([0, 1]), np.array([0.2, 0.8]), resamples=1, seed=0)  # the one resample: one class
    assert s["resamples_used"] == 0 and s["kappa_ci95"] is None and s["auc_ci95"] is None
    assert "0 of 1 resamples held both classes" in s["ci95_note"] and s["kappa"] == 1.0
    # kept, but too few for a 2.5% tail: no interval rather than the extreme draws called one
    y, p = np.tile([0, 1], 50), np.tile([0.3, 0.7], 50)
    few, enough = scores(y, p, resamples=MIN_BOOTSTRAP - 1), scores(y, p, resamples=MIN_BOOTSTRAP)
    assert few["resamples_used"] == MIN_BOOTSTRAP - 1 and few["kappa_ci95"] is None and "ci95_note" in few
    assert enough["kappa_ci95"] is not None and "ci95_note" not in enough


def test_score_pairs_is_what_a_run_scores_a_pair():
    # agreement and calibrate scored labelled pairs with predict alone, which knows neither the same-text rule nor
    # the Latin-script one a run applies (score_groups): one helper now holds both, and score_groups goes through it.
    judge = CalibratedJudge.load(DEFAULT_COEFFICIENTS)
    responses = ["Столица Франции — Париж.", "Это Париж.", "The capital is Paris.", "It is Paris.", "Это Париж.",
                 "it is  paris."]

    def embed(batch):
        return np.array([[1.0, 0.0] if "Пар" in t or "aris" in t else [0.6, 0.8] for t in batch], dtype=np.float32)

    (run,) = judge.score_groups(embed, ["Capital of France?"], [responses], ["G"])
    i, j = np.triu_indices(len(responses), 1)
    a, b = [responses[k] for k in i], [responses[k] for k in j]
    vectors = embed([*responses, "Capital of France?"])
    features = group_features("Capital of France?", responses, vectors[:-1], vectors[-1], judge.features)
    scored = judge.score_pairs(features, ["G"] * len(a), a, b)
    assert np.array_equal(scored, run, equal_nan=True)
    plain = judge.predict(features, ["G"] * len(a))
    latin = np.array([not any("\u0400" <= c <= "\u04ff" for c in x + y) for x, y in zip(a, b)])
    same = np.array([" ".join(x.split()).casefold() == " ".join(y.split()).casefold() for x, y in zip(a, b)])
    assert np.isnan(scored[~latin & ~same]).all() and (scored[same] == 1.0).all() and same.sum() == 2
    assert np.array_equal(scored[latin & ~same], plain[latin & ~same])  # Latin text: the coefficients alone
