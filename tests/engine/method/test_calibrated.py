import json

import numpy as np
import pytest

from engine.method.calibrate import fit, scores
from engine.method.calibrated import DEFAULT_COEFFICIENTS, CATEGORY_SLOTS, CalibratedJudge, category_one_hot
from engine.errors import ConfigError
from engine.method.features import FEATURES, length_ratio_matrix, pair_features


def test_one_hot_puts_unknown_categories_in_none():
    m = category_one_hot(["A", None, "Z", "H"])
    assert m.sum(axis=1).tolist() == [1, 1, 1, 1]
    assert m[1, CATEGORY_SLOTS.index("none")] == 1 and m[2, CATEGORY_SLOTS.index("none")] == 1


def test_fit_learns_a_separable_rule_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(400, len(FEATURES)))
    y = (x[:, 0] > 0.5).astype(int)  # equivalent iff cosine is high
    judge = fit(x, [None] * len(x), y, embedder="e")
    p = judge.predict(x, [None] * len(x))
    assert scores(y, p)["accuracy"] > 0.95
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
