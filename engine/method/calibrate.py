"""Fitting the calibrated judge on labelled pairs, and scoring any judge's probabilities against labels.

The fit (chosen by cross-validation on the DARLING train pairs only; issue 16's closing note has the table):
scikit-learn's LogisticRegression on the standardised pair features (engine.method.pair_features) and the category
one-hot (unscaled), L2 with C = 0.03, classes weighted to balance (train is 33% equivalent; an audit's pairs need
not be). The decision threshold is chosen by cross-validation on the training pairs too — out-of-fold probabilities
of 3 × stratified 5-fold, the threshold on 0.20…0.80 that maximises Cohen's κ with the classes weighted 50/50,
smoothed over 5 neighbours — and folded into the intercept, so that p_equivalent >= 0.5 is that threshold and the
run's judge.threshold reads the calibrated judge like any other.

The command is `python engine/run.py calibrate` (engine.cli.calibrate).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from actors.registry import make_embedder
from engine.method.calibrated import CATEGORY_SLOTS, CalibratedJudge, category_one_hot
from engine.method.pair_features import labelled_features

if TYPE_CHECKING:
    from engine.inputs.labelled_pairs import LabelledPair

C_DEFAULT = 0.03
THRESHOLD_GRID = np.round(np.arange(0.20, 0.801, 0.01), 2)
# Resamples (holding both classes) a percentile 95% interval needs: from 40 on, each 2.5% tail holds at least one
# resample; with fewer, its bounds are the extreme draws interpolated, not an interval (and with none, no bound).
MIN_BOOTSTRAP = 40


def featurize(pairs: list[LabelledPair], embedder_name: str, names: Sequence[str]) -> np.ndarray:
    embedder = make_embedder("local", embedder_name)
    return labelled_features([p.prompt for p in pairs], [(p.response_a, p.response_b) for p in pairs],
                             embedder.embed, names)


def _fit_logistic(x: np.ndarray, onehot: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, ...]:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(
        np.hstack([(x - mean) / std, onehot]), y)
    return mean, std, model.coef_[0], float(model.intercept_[0])


def _predict(params: tuple[np.ndarray, ...], x: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    mean, std, coef, intercept = params
    return 1.0 / (1.0 + np.exp(-(np.hstack([(x - mean) / std, onehot]) @ coef + intercept)))


def _balanced(y: np.ndarray) -> np.ndarray:
    return np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))


# Folds of the cross-validation that picks the threshold (each label needs at least this many pairs).
CV_FOLDS = 5


def cv_threshold(x: np.ndarray, onehot: np.ndarray, y: np.ndarray, c: float) -> tuple[float, dict[str, float]]:
    """The decision threshold from out-of-fold probabilities on the training pairs (see the module docstring), and
    the cross-validated AUC and κ (at that threshold, as fitted: unweighted) it rests on."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    folds = []
    for seed in (0, 1, 2):
        p = np.zeros(len(y))
        for train, test in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=seed).split(x, y):
            p[test] = _predict(_fit_logistic(x[train], onehot[train], y[train], c), x[test], onehot[test])
        folds.append(p)
    yy, pp = np.tile(y, 3), np.concatenate(folds)
    weights = _balanced(yy)
    kappas = np.array([cohen_kappa_score(yy, (pp >= t).astype(int), sample_weight=weights) for t in THRESHOLD_GRID])
    threshold = float(THRESHOLD_GRID[int(np.argmax(np.convolve(kappas, np.ones(5) / 5, mode="same")))])
    cv = {"auc": float(np.mean([roc_auc_score(y, p) for p in folds])),
          "kappa": float(np.mean([cohen_kappa_score(y, (p >= threshold).astype(int)) for p in folds])),
          "kappa_balanced": float(np.mean([cohen_kappa_score(y, (p >= threshold).astype(int),
                                                             sample_weight=_balanced(y)) for p in folds])),
          "accuracy": float(np.mean([((p >= threshold) == y).mean() for p in folds]))}
    return threshold, cv


def fit(features: np.ndarray, categories: list[str | None], labels: np.ndarray, *, embedder: str,
        names: Sequence[str], c: float = C_DEFAULT) -> CalibratedJudge:
    """Fit the logistic regression and its threshold (both on these pairs only).

    Args:
        features: (m × len(names)) rows of engine.method.pair_features.
        categories: the category of each pair (None where unknown).
        labels: 1 where the humans said equivalent.
        embedder: the embedding model the embedding features came from (recorded with the coefficients).
        names: the feature names, in column order.
        c: inverse L2 regularisation strength.
    """
    onehot = category_one_hot(categories)
    labels = np.asarray(labels)
    threshold, cv = cv_threshold(features, onehot, labels, c)
    mean, std, coef, intercept = _fit_logistic(features, onehot, labels, c)
    # p >= threshold  <=>  sigma(z - logit(threshold)) >= 0.5
    intercept -= math.log(threshold / (1 - threshold))
    slots = [c if c in CATEGORY_SLOTS else "none" for c in categories]
    return CalibratedJudge(mean=mean.tolist(), std=std.tolist(), coef=coef.tolist(), intercept=intercept,
                           embedder=embedder, features=list(names), threshold=threshold,
                           provenance={"cv_train": cv, "C": c, "class_weight": "balanced",
                                       # which categories the cascade lets it decide (CalibratedJudge.decides)
                                       "category_pairs": {s: slots.count(s) for s in CATEGORY_SLOTS if s in slots}})


def scores(labels: np.ndarray, p: np.ndarray, threshold: float = 0.5, resamples: int = 0,
           seed: int = 0) -> dict[str, Any]:
    """Accuracy, Cohen's κ, ROC AUC and the confusion matrix of probabilities against labels; with `resamples`,
    percentile bootstrap 95% intervals of κ and AUC (pairs resampled). A resample holding one class has neither, so
    `resamples_used` says how many of the `resamples` asked made the intervals; under MIN_BOOTSTRAP of them the
    intervals are None and `ci95_note` says why."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

    if resamples < 0:
        raise ValueError(f"resamples must be 0 or more, got {resamples}")
    labels = np.asarray(labels)
    predicted = (np.asarray(p) >= threshold).astype(int)
    both = len(set(labels.tolist())) > 1
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "kappa": float(cohen_kappa_score(labels, predicted)) if both else None,
        "auc": float(roc_auc_score(labels, p)) if both else None,
        # rows: human 0/1 (zeros for no rows: a judge none of whose verdicts could be read)
        "confusion": (confusion_matrix(labels, predicted, labels=[0, 1]).tolist() if len(labels)
                      else [[0, 0], [0, 0]]),
    }
    if resamples and both:
        kappas, aucs = bootstrap_kappa_auc(labels, predicted, np.asarray(p, dtype=float), resamples, seed)
        if len(kappas) >= MIN_BOOTSTRAP:
            out["kappa_ci95"] = [float(np.percentile(kappas, 2.5)), float(np.percentile(kappas, 97.5))]
            out["auc_ci95"] = [float(np.percentile(aucs, 2.5)), float(np.percentile(aucs, 97.5))]
        else:  # no interval rather than a crash (np.percentile of none) or the extreme draws called one
            out["kappa_ci95"] = out["auc_ci95"] = None
            out["ci95_note"] = (f"no 95% interval: {len(kappas)} of {resamples} resamples held both classes, fewer "
                                f"than the {MIN_BOOTSTRAP} a 2.5% tail needs")
        out["resamples"] = resamples
        out["resamples_used"] = int(len(kappas))
    return out


def bootstrap_kappa_auc(labels: np.ndarray, predicted: np.ndarray, p: np.ndarray, resamples: int, seed: int = 0,
                        chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's κ and ROC AUC of each bootstrap resample of the pairs (drawn with `seed`); resamples holding one
    class only are left out. The values are scikit-learn's cohen_kappa_score and roc_auc_score of each resample
    (tests/engine/method/test_calibrated.py checks them against it): computed here for all resamples at once
    because scikit-learn validates its input on every call, 5-9 ms each, and 1,000 resamples of both took 10-15 s
    of every `agreement` and `calibrate` whatever the number of pairs (100 pairs: 12 s → 0.05 s)."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    n = len(labels)
    rng = np.random.default_rng(seed)
    # AUC from the ranks of the distinct scores: per resample, how many positives and negatives hold each score.
    values, rank = np.unique(p, return_inverse=True)
    kappas, aucs = [], []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        # one (rows, n) draw is the same stream as `rows` draws of n (the order numpy fills the array in)
        draw = rng.integers(0, n, (rows, n))
        y, yhat = labels[draw], predicted[draw]
        positives = y.sum(axis=1)
        keep = (positives > 0) & (positives < n)
        draw, y, yhat, positives = draw[keep], y[keep], yhat[keep], positives[keep]
        negatives = n - positives
        # κ of a 2 × 2 table: observed agreement against the agreement the margins give by chance
        tp = (y & yhat).sum(axis=1)
        tn = ((1 - y) & (1 - yhat)).sum(axis=1)
        said = yhat.sum(axis=1)
        observed = (tp + tn) / n
        chance = (positives * said + negatives * (n - said)) / (n * n)
        kappas.append((observed - chance) / (1 - chance))
        # AUC: each negative counts the positives scored above it, a tie half
        offsets = (np.arange(len(draw)) * len(values))[:, None]
        at = (offsets + rank[draw]).ravel()
        size = len(draw) * len(values)
        pos = np.bincount(at, weights=y.ravel(), minlength=size).reshape(len(draw), len(values))
        neg = np.bincount(at, weights=1 - y.ravel(), minlength=size).reshape(len(draw), len(values))
        above = pos[:, ::-1].cumsum(axis=1)[:, ::-1] - pos  # positives with a strictly higher score
        aucs.append((neg * (above + 0.5 * pos)).sum(axis=1) / (positives * negatives))
    return np.concatenate(kappas), np.concatenate(aucs)
