"""`python engine/run.py calibrate`: fit the calibrated judge on labelled pairs and write its coefficients.

    python engine/run.py calibrate --pairs ../shared/datasets/darling_equivalence_pairs/train.jsonl \
        --val ../shared/datasets/darling_equivalence_pairs/val.jsonl \
        --noveltybench ../shared/datasets/noveltybench/curated.jsonl --out engine/method/calibrated_judge.json

Fits only on --pairs; --val is scored, never fitted on (engine.method.calibrate).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.cli.common import file_digest, input_file, output_path
from engine.config import MAX_BOOTSTRAP_RESAMPLES
from engine.errors import ConfigError
from engine.execution.preflight import check_role, hub_offline
from engine.inputs.labelled_pairs import load_pairs, noveltybench_categories
from engine.method.calibrate import C_DEFAULT, CV_FOLDS, featurize, fit, scores
from engine.method.calibrated import DEFAULT_COEFFICIENTS, CalibratedJudge
from engine.method.pair_features import RECIPES


def _ci(scored: dict, key: str) -> str:
    ci = scored.get(f"{key}_ci95")
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _scored(judge: CalibratedJudge, x: np.ndarray, pairs: list, y: np.ndarray, resamples: int = 0) -> dict:
    """The judge's scores on labelled pairs as a run scores them (CalibratedJudge.score_pairs): a pair it cannot
    read (a response outside the Latin script) is NaN there, so it is counted apart (`non_latin`), not scored."""
    p = judge.score_pairs(x, [q.category for q in pairs], [q.response_a for q in pairs],
                          [q.response_b for q in pairs])
    known = ~np.isnan(p)
    return {**scores(y[known], p[known], resamples=resamples), "non_latin": int((~known).sum())}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the calibrated (cheap) judge on labelled pairs")
    p.add_argument("--pairs", required=True, help="labelled pairs to fit on (JSONL/CSV/Parquet)")
    p.add_argument("--val", default=None, help="labelled pairs to score the fit on (never fitted on)")
    p.add_argument("--noveltybench", default=None,
                   help="NoveltyBench curated.jsonl, to give DARLING pairs with curated ids their category")
    p.add_argument("--embedder", default="all-minilm-l6-v2", help="embedding model for the cosine feature")
    p.add_argument("--c", type=float, default=C_DEFAULT, help="inverse L2 regularisation strength")
    p.add_argument("--features", choices=sorted(RECIPES), default="cheap38",
                   help="the pair features (engine.method.pair_features.RECIPES; cheap38: all, the shipped judge)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the validation intervals")
    p.add_argument("--out", required=True,
                   help=f"where to write the coefficients (JSON); the shipped judge's are "
                        f"{DEFAULT_COEFFICIENTS.relative_to(DEFAULT_COEFFICIENTS.parents[2])}")


def _pair_text(pair: Any) -> tuple[str, frozenset[str]]:
    """A labelled pair as its texts: the prompt and its two responses in either order."""
    return pair.prompt, frozenset((pair.response_a, pair.response_b))


def cmd_calibrate(args: argparse.Namespace) -> int:
    start = time.perf_counter()  # numba's threading layer for this command is chosen in engine/run.py
    # Every argument is checked before the fit (minutes on 2 cores): a mistake found after it would lose it.
    if not (args.c > 0 and math.isfinite(args.c)):  # inf was written to the coefficients as Infinity (not JSON)
        raise ConfigError(f"--c must be a finite number > 0 (the inverse regularisation strength), got {args.c}")
    if not 0 <= args.resamples <= MAX_BOOTSTRAP_RESAMPLES:  # a huge count stalled after the paid calls
        raise ConfigError(f"--resamples must be between 0 and {MAX_BOOTSTRAP_RESAMPLES:,}, got {args.resamples}")
    output_path(args.out)
    input_file(args.pairs, "--pairs")
    if args.val:
        input_file(args.val, "--val")
    if args.val and file_digest(args.val) == file_digest(args.pairs):
        # Scored on the pairs it was fitted on, the "val" figures in the coefficients' provenance are in-sample.
        raise ConfigError(f"--val {args.val} holds the same pairs as --pairs {args.pairs}: give held-out pairs")
    # As the fit will resolve it: from the Hugging Face cache, or the hub unless HF_HUB_OFFLINE says not to.
    check_role("--embedder", "embed", "local", args.embedder, {}, offline=hub_offline())
    categories = noveltybench_categories(args.noveltybench) if args.noveltybench else None
    train = load_pairs(args.pairs, categories=categories)
    for label, name in ((True, "equivalent"), (False, "different")):
        count = sum(p.equivalent is label for p in train)
        if count < CV_FOLDS:  # the fit's cross-validation raised from scikit-learn (a traceback)
            raise ConfigError(f"--pairs {args.pairs}: {count} pairs labelled {name}; the fit cross-validates in "
                              f"{CV_FOLDS} folds and needs at least {CV_FOLDS} pairs of each label")
    val = load_pairs(args.val, categories=categories) if args.val else None
    if val:
        # Byte-identical files are caught above; a val file sharing some pairs with the training file was scored as
        # "never fitted on".
        seen = {_pair_text(p) for p in train}
        shared = [p.id for p in val if _pair_text(p) in seen]
        if shared:
            raise ConfigError(f"--val {args.val}: {len(shared)} of its {len(val)} pairs are also in --pairs "
                              f"{args.pairs} (the first: {shared[0]}); its figures would not be held out — remove "
                              "them from one file")
    names = RECIPES[args.features]
    x = featurize(train, args.embedder, names)
    y = np.array([int(p.equivalent) for p in train])
    judge = fit(x, [p.category for p in train], y, embedder=args.embedder, names=names, c=args.c)
    cv = judge.provenance["cv_train"]
    judge.provenance.update({
        "fitted_on": {"file": Path(args.pairs).name, "sha256": file_digest(args.pairs), "pairs": len(train),
                      "with_category": sum(p.category is not None for p in train)},
        "recipe": args.features,
        "train": _scored(judge, x, train, y),
        "fit_seconds": round(time.perf_counter() - start, 1),
        "command": "python engine/run.py calibrate " + " ".join(
            f"--{k} {Path(v).name if k in ('pairs', 'val', 'noveltybench') else v}"
            for k, v in (("pairs", args.pairs), ("val", args.val), ("noveltybench", args.noveltybench),
                         ("features", args.features), ("c", args.c)) if v is not None),
    })
    print(f"fitted on {len(train)} pairs ({len(names)} features, {judge.provenance['fit_seconds']} s): "
          f"cross-validated on train AUC {cv['auc']:.3f}, κ {cv['kappa']:.3f}; threshold {judge.threshold:.2f}")
    if val is not None:
        xv = featurize(val, args.embedder, names)
        yv = np.array([int(p.equivalent) for p in val])
        judge.provenance["val"] = {"file": Path(args.val).name, "sha256": file_digest(args.val),
                                   **_scored(judge, xv, val, yv, args.resamples)}
        v = judge.provenance["val"]
        unread = f", {v['non_latin']} outside the Latin script not scored" if v["non_latin"] else ""
        print(f"validation ({len(val)} pairs, never fitted on{unread}): accuracy {_fmt(v['accuracy'])}, "
              f"κ {_fmt(v['kappa'])} {_ci(v, 'kappa')}, AUC {_fmt(v['auc'])} {_ci(v, 'auc')}"
              + (f" ({v['ci95_note']})" if v.get("ci95_note") else ""))
    judge.save(args.out)
    print(f"coefficients written to {args.out}")
    return 0
