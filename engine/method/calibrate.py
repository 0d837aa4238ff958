"""Fitting the calibrated judge on labelled pairs, and scoring any judge's probabilities against labels.

scikit-learn's LogisticRegression does the fit (standardised numeric features, the category one-hot unscaled).
The command is `python engine/run.py calibrate` (engine.cli.calibrate).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from actors.registry import make_embedder
from engine.method.calibrated import CalibratedJudge, category_one_hot
from engine.method.features import pair_features

if TYPE_CHECKING:
    from engine.inputs.labelled_pairs import LabelledPair


def featurize(pairs: list[LabelledPair], embedder_name: str) -> np.ndarray:
    embedder = make_embedder("local", embedder_name)
    return pair_features([(p.response_a, p.response_b) for p in pairs], embedder.embed)


def fit(features: np.ndarray, categories: list[str | None], labels: np.ndarray, *, embedder: str,
        c: float = 1.0) -> CalibratedJudge:
    """Fit the logistic regression.

    Args:
        features: (m × 4) numeric features in engine.method.features.FEATURES order.
        categories: the category of each pair (None where unknown).
        labels: 1 where the humans said equivalent.
        embedder: the embedding model the cosine feature came from (recorded with the coefficients).
        c: inverse L2 regularisation strength.
    """
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std[std == 0] = 1.0
    design = np.hstack([(features - mean) / std, category_one_hot(categories)])
    model = LogisticRegression(C=c, max_iter=1000).fit(design, labels)
    return CalibratedJudge(mean=mean.tolist(), std=std.tolist(), coef=model.coef_[0].tolist(),
                           intercept=float(model.intercept_[0]), embedder=embedder)


def scores(labels: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, Cohen's κ, ROC AUC and the confusion matrix of probabilities against labels."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

    predicted = (p >= threshold).astype(int)
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else None,
        "kappa": float(cohen_kappa_score(labels, predicted)) if len(set(labels)) > 1 else None,
        "auc": float(roc_auc_score(labels, p)) if len(set(labels)) > 1 else None,
        "confusion": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),  # rows: human 0/1
    }
