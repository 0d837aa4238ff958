"""`python engine/run.py calibrate`: fit the calibrated judge on labelled pairs and write its coefficients.

    python engine/run.py calibrate --pairs ../shared/datasets/darling_equivalence_pairs/train.jsonl \
        --val ../shared/datasets/darling_equivalence_pairs/val.jsonl \
        --noveltybench ../shared/datasets/noveltybench/curated.jsonl --out engine/calibrated_judge.json

Fits only on --pairs; --val is scored, never fitted on. scikit-learn's LogisticRegression does the fit (standardised
numeric features, the category one-hot unscaled).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from engine.calibrated import DEFAULT_COEFFICIENTS, CalibratedJudge, category_one_hot
from engine.features import pair_features
from engine.labelled_pairs import LabelledPair, load_pairs, noveltybench_categories


def featurize(pairs: list[LabelledPair], embedder_name: str) -> np.ndarray:
    from actors.embed import LocalEmbedder

    embedder = LocalEmbedder(embedder_name)
    return pair_features([(p.response_a, p.response_b) for p in pairs], embedder.embed)


def fit(features: np.ndarray, categories: list[str | None], labels: np.ndarray, *, embedder: str,
        c: float = 1.0) -> CalibratedJudge:
    """Fit the logistic regression.

    Args:
        features: (m × 4) numeric features in engine.features.FEATURES order.
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


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the calibrated (cheap) judge on labelled pairs")
    p.add_argument("--pairs", required=True, help="labelled pairs to fit on (JSONL/CSV/Parquet)")
    p.add_argument("--val", default=None, help="labelled pairs to score the fit on (never fitted on)")
    p.add_argument("--noveltybench", default=None,
                   help="NoveltyBench curated.jsonl, to give DARLING pairs with curated ids their category")
    p.add_argument("--embedder", default="all-minilm-l6-v2", help="embedding model for the cosine feature")
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 regularisation strength")
    p.add_argument("--out", default=str(DEFAULT_COEFFICIENTS), help="where to write the coefficients (JSON)")


def cmd_calibrate(args: argparse.Namespace) -> int:
    categories = noveltybench_categories(args.noveltybench) if args.noveltybench else None
    train = load_pairs(args.pairs, categories=categories)
    x = featurize(train, args.embedder)
    y = np.array([int(p.equivalent) for p in train])
    judge = fit(x, [p.category for p in train], y, embedder=args.embedder, c=args.c)
    judge.provenance = {
        "fitted_on": {"file": Path(args.pairs).name, "sha256": _digest(args.pairs), "pairs": len(train),
                      "with_category": sum(p.category is not None for p in train)},
        "train": scores(y, judge.predict(x, [p.category for p in train])),
        "command": "python engine/run.py calibrate " + " ".join(
            f"--{k} {Path(v).name if k in ('pairs', 'val', 'noveltybench') else v}"
            for k, v in (("pairs", args.pairs), ("val", args.val), ("noveltybench", args.noveltybench),
                         ("c", args.c)) if v is not None),
    }
    print(f"fitted on {len(train)} pairs: train accuracy {judge.provenance['train']['accuracy']:.3f}, "
          f"κ {judge.provenance['train']['kappa']:.3f}")
    if args.val:
        val = load_pairs(args.val, categories=categories)
        xv = featurize(val, args.embedder)
        yv = np.array([int(p.equivalent) for p in val])
        judge.provenance["val"] = {"file": Path(args.val).name, "sha256": _digest(args.val),
                                   **scores(yv, judge.predict(xv, [p.category for p in val]))}
        v = judge.provenance["val"]
        print(f"validation ({len(val)} pairs, never fitted on): accuracy {v['accuracy']:.3f}, κ {v['kappa']:.3f}, "
              f"AUC {v['auc']:.3f}")
    judge.save(args.out)
    print(f"coefficients written to {args.out}")
    return 0
