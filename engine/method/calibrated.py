"""A cheap judge: logistic regression over similarity features and the category, fitted on human-labelled pairs.

p(equivalent) = σ(w · z + b), where z holds the standardised features of engine.method.features (embedding cosine,
Jaccard, NCD, length ratio) and a one-hot of the category (A–H, or none). It costs one embedding per response and
no LLM call, so the cascade lets it decide the pairs it is confident about and sends the rest to the LLM judge.

The shipped coefficients (engine/method/calibrated_judge.json) are fitted by `python engine/run.py calibrate` on the
DARLING/NoveltyBench human labels (train split only); the file records what they were fitted on and their
agreement on the validation split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.errors import ConfigError
from engine.method.features import FEATURES
from engine.method.taxonomy import LETTERS

DEFAULT_COEFFICIENTS = Path(__file__).resolve().parent / "calibrated_judge.json"
CATEGORY_SLOTS = (*LETTERS, "none")


def category_one_hot(categories: Sequence[str | None]) -> np.ndarray:
    out = np.zeros((len(categories), len(CATEGORY_SLOTS)), dtype=np.float64)
    for k, c in enumerate(categories):
        out[k, CATEGORY_SLOTS.index(c if c in LETTERS else "none")] = 1.0
    return out


@dataclass
class CalibratedJudge:
    """Fitted coefficients and the transform they apply.

    Attributes:
        mean / std: standardisation of the numeric features (in FEATURES order).
        coef: weights of the standardised numeric features, then of the category one-hot (CATEGORY_SLOTS order).
        intercept: the bias.
        embedder: the embedding model the cosine feature was computed with (features from another embedder are not
            comparable).
        provenance: what the coefficients were fitted on and how they scored on held-out data.
    """

    mean: list[float]
    std: list[float]
    coef: list[float]
    intercept: float
    embedder: str = "all-minilm-l6-v2"
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    categories: list[str] = field(default_factory=lambda: list(CATEGORY_SLOTS))
    provenance: dict[str, Any] = field(default_factory=dict)

    def design(self, features: np.ndarray, categories: Sequence[str | None]) -> np.ndarray:
        numeric = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.hstack([numeric, category_one_hot(categories)])

    def predict(self, features: np.ndarray, categories: Sequence[str | None]) -> np.ndarray:
        """P(equivalent) for each feature row (rows in FEATURES order)."""
        z = self.design(features, categories) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path | None = None) -> "CalibratedJudge":
        path = Path(path) if path else DEFAULT_COEFFICIENTS
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: calibrated-judge coefficients not found (fit them with "
                              f"`python engine/run.py calibrate --pairs FILE --out {path}`)") from exc
        judge = cls(**data)
        if judge.features != list(FEATURES) or judge.categories != list(CATEGORY_SLOTS):
            raise ConfigError(f"{path}: coefficients were fitted on features {judge.features}, expected "
                              f"{list(FEATURES)} and categories {list(CATEGORY_SLOTS)}")
        if len(judge.coef) != len(FEATURES) + len(CATEGORY_SLOTS):
            raise ConfigError(f"{path}: expected {len(FEATURES) + len(CATEGORY_SLOTS)} coefficients, "
                              f"got {len(judge.coef)}")
        return judge
