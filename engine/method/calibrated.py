"""A cheap judge: logistic regression over pair features and the category, fitted on human-labelled pairs.

p(equivalent) = σ(w · z + b), where z holds the standardised pair features of engine.method.pair_features (the
shipped judge: 38 of them — embedding cosine with and without the prompt's direction, n-gram overlap and
containment, numbers, first and last sentences, capitalised and bold words, list items, the shape of the text) and
a one-hot of the category (A–H, or none). The decision threshold, chosen by cross-validation on the training pairs,
is folded into b, so p >= 0.5 is the judge's verdict. Two responses with the same text (`same_text`: whitespace and
case aside) are equivalent under every category's criterion, so such a pair is 1 whatever its features say — the
features of two short identical answers ("42" and "42") carry little (their content-word sets are empty), and the
model would otherwise call them different. A pair with a response written mostly outside the Latin script
(`latin_script`) is unknown (NaN: the cascade asks its LLM judge, a calibrated judge alone leaves it unresolved): its
word features are those of two empty texts and its embedder English-only, so Russian or Chinese paraphrases scored
0.03–0.08 — confidently "different". It costs one embedding per response and one per prompt, and no
LLM call: a judge of its own (`backend: calibrated`), or the cascade's first pass that sends the pairs it is unsure
about to the LLM judge.

The shipped coefficients (engine/method/calibrated_judge.json) are fitted by `python engine/run.py calibrate` on the
DARLING/NoveltyBench human labels (train split only); the file records what they were fitted on, their
cross-validated scores on train and their agreement on the validation split, with bootstrap intervals.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engine.errors import ConfigError
from engine.method.pair_features import BASE_FEATURES, PAIR_FEATURES, groups_features
from engine.method.taxonomy import LETTERS

DEFAULT_COEFFICIENTS = Path(__file__).resolve().parent / "calibrated_judge.json"
# Keys the shards of every stage the calibrated judge decides in (its own, the cascade's LLM judges) beside its
# coefficients: bump when a rule outside the coefficients changes a probability (2: the same text is equivalent;
# 3: a response outside the Latin script is unknown).
RULES_VERSION = "3"
CATEGORY_SLOTS = (*LETTERS, "none")


def same_text(a: str, b: str) -> bool:
    """Whether two responses say the same thing word for word (whitespace and case aside); two empty ones do not
    count (an empty response is a failure to answer, not an answer)."""
    a, b = " ".join((a or "").split()).casefold(), " ".join((b or "").split()).casefold()
    return bool(a) and a == b


def latin_script(text: str) -> bool:
    """Whether the text is one the judge's features can read: no letters at all (numbers, code, symbols), or at
    least half its letters Latin (Basic Latin to Latin Extended-B: English, French, German, Vietnamese's base…). The
    word features read [a-z0-9] words only and were fitted on English pairs."""
    letters = [c for c in text or "" if c.isalpha()]
    return not letters or 2 * sum(c < "\u0250" for c in letters) >= len(letters)


def labelled_same_text(pairs: Sequence[Any]) -> list[bool]:
    """`same_text` of labelled pairs (engine.inputs.labelled_pairs.LabelledPair)."""
    return [same_text(p.response_a, p.response_b) for p in pairs]


def text_rules(a: Sequence[str], b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The rules outside the coefficients, for each pair (a[k], b[k]): whether its two texts are the same
    (`same_text`: equivalent, 1, whatever the features say) and whether the judge cannot read it (a response mostly
    outside the Latin script, `latin_script`, and the texts not the same: unknown, NaN). One place for both, so that
    a run (`score_groups`), `agreement` and `calibrate` score a pair alike."""
    script = {t: latin_script(t) for t in {*a, *b}}  # once per distinct text: a group's response is in n - 1 pairs
    same = np.array([same_text(x, y) for x, y in zip(a, b)], dtype=bool)
    unreadable = np.array([not (script[x] and script[y]) for x, y in zip(a, b)], dtype=bool) & ~same
    return same, unreadable


def pair_lookup(p: np.ndarray, n: int) -> Callable[[int, int], float]:
    """(i, j) → P(equivalent), i < j, from the row-major upper-triangle scores of a group of n (`score_groups`)."""

    def lookup(i: int, j: int) -> float:
        return float(p[i * n - i * (i + 1) // 2 + (j - i - 1)])

    return lookup


def category_one_hot(categories: Sequence[str | None]) -> np.ndarray:
    out = np.zeros((len(categories), len(CATEGORY_SLOTS)), dtype=np.float64)
    for k, c in enumerate(categories):
        out[k, CATEGORY_SLOTS.index(c if c in LETTERS else "none")] = 1.0
    return out


# Labelled pairs of a category the cheap judge needs before the cascade lets it decide that category's pairs.
MIN_CATEGORY_PAIRS = 10


@dataclass
class CalibratedJudge:
    """Fitted coefficients and the transform they apply.

    Attributes:
        mean / std: standardisation of the numeric features (in `features` order).
        coef: weights of the standardised numeric features, then of the category one-hot (CATEGORY_SLOTS order).
        intercept: the bias, the decision threshold folded in (p >= 0.5 is "equivalent").
        features: the names of the pair features (engine.method.pair_features.PAIR_FEATURES), in column order.
        threshold: the threshold chosen by cross-validation on the training pairs (already in the intercept).
        embedder: the embedding model the cosine feature was computed with (features from another embedder are not
            comparable).
        provenance: what the coefficients were fitted on and how they scored on held-out data.
    """

    mean: list[float]
    std: list[float]
    coef: list[float]
    intercept: float
    embedder: str = "all-minilm-l6-v2"
    features: list[str] = field(default_factory=lambda: list(BASE_FEATURES))
    categories: list[str] = field(default_factory=lambda: list(CATEGORY_SLOTS))
    threshold: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)

    def decides(self, category: str | None) -> bool:
        """Whether the cheap judge may decide a pair of this category in the cascade: its labelled pairs held some
        of it (provenance.category_pairs, at least MIN_CATEGORY_PAIRS). The DARLING pairs carry categories B, C,
        G and H only (and most none): their equivalence is one of content, and the criterion of A (the same final
        answer) or D (the same strategy, whatever the answer) is one the LLM judge is asked and the cheap one never
        saw. Coefficients without the record decide every category, as they did."""
        counts = (self.provenance or {}).get("category_pairs")
        if counts is None:
            return True
        slot = category if category in CATEGORY_SLOTS else "none"
        return counts.get(slot, 0) >= MIN_CATEGORY_PAIRS

    def design(self, features: np.ndarray, categories: Sequence[str | None]) -> np.ndarray:
        numeric = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return np.hstack([numeric, category_one_hot(categories)])

    def predict(self, features: np.ndarray, categories: Sequence[str | None],
                same: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
        """P(equivalent) for each feature row (columns in `features` order); 1 where `same` (the pair's two texts are
        the same, `same_text`) — give it wherever the texts are at hand."""
        z = self.design(features, categories) @ np.asarray(self.coef) + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return p if same is None else np.where(np.asarray(same, dtype=bool), 1.0, p)

    def score_pairs(self, features: np.ndarray, categories: Sequence[str | None], a: Sequence[str],
                    b: Sequence[str]) -> np.ndarray:
        """P(equivalent) of the pairs (a[k], b[k]) whose feature rows these are, with `text_rules` applied: 1 where
        the texts are the same, NaN (unknown: unresolved alone, the LLM's in the cascade) where the judge cannot
        read them. Every scorer of texts goes through here (`predict` alone knows neither rule)."""
        same, unreadable = text_rules(a, b)
        if not len(same):
            return np.zeros(0)
        return np.where(unreadable, np.nan, self.predict(features, categories, same))

    def score_groups(self, embed: Callable[[list[str]], np.ndarray], prompts: Sequence[str],
                     groups: Sequence[Sequence[str]], categories: Sequence[str | None]) -> list[np.ndarray]:
        """P(equivalent) of every pair i < j of each group, in row-major order ((0,1), (0,2), …; `pair_lookup`),
        with one embedding call for the batch's responses and prompts (each distinct text once, by `embed`, the
        model named `embedder`) and one kernel call per measure.

        Args:
            prompts / groups / categories: each group's prompt, responses and category.
        """
        texts = list(dict.fromkeys(t for prompt, group in zip(prompts, groups) for t in (*group, prompt)))
        vectors = embed(texts) if texts else np.zeros((0, 1), np.float32)
        index = {t: k for k, t in enumerate(texts)}
        features = groups_features(list(prompts), [list(g) for g in groups],
                                   vectors[[index[t] for g in groups for t in g]],
                                   vectors[[index[p] for p in prompts]], self.features)
        out = []
        for f, g, c in zip(features, groups, categories):
            if not len(f):
                out.append(np.zeros(0))
                continue
            i, j = np.triu_indices(len(g), 1)
            out.append(self.score_pairs(f, [c] * len(f), [g[k] for k in i], [g[k] for k in j]))
        return out

    def save(self, path: str | Path) -> None:
        """Write the coefficients whole or not at all (a file beside it, renamed over it): a judge in use reads
        this file, and one cut short by a crash would be a judge with no coefficients."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "CalibratedJudge":
        path = Path(path) if path else DEFAULT_COEFFICIENTS
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: calibrated-judge coefficients not found (fit them with "
                              f"`python engine/run.py calibrate --pairs FILE --out {path}`)") from exc
        except (IsADirectoryError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a calibrated-judge coefficients file (a JSON object from `python "
                              f"engine/run.py calibrate`): {type(exc).__name__}") from None
        return cls.from_data(data, path)

    @classmethod
    def from_data(cls, data: Any, path: str | Path = "coefficients") -> "CalibratedJudge":
        """The judge of coefficients already read (a file's JSON, or `asdict` of a loaded judge: what the driver
        sends its stages, so that a node never reads the file), checked as `load` checks a file; `path` names them
        in errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a calibrated-judge coefficients file (a JSON object from `python "
                              "engine/run.py calibrate`)")
        try:
            judge = cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{path}: not a calibrated-judge coefficients file ({exc})") from None
        # Shapes before values: `coef: 1.0` raised a bare TypeError from len() in preflight, and provenance's
        # category_pairs as a list passed here to raise AttributeError mid-run, in decides().
        for key in ("coef", "mean", "std", "features", "categories"):
            if not isinstance(getattr(judge, key), list):
                raise ConfigError(f"{path}: {key} must be a list, got {type(getattr(judge, key)).__name__}")
        if not all(isinstance(f, str) for f in judge.features) or len(set(judge.features)) != len(judge.features):
            raise ConfigError(f"{path}: features must be distinct names, got {judge.features}")
        if not isinstance(judge.embedder, str) or not isinstance(judge.provenance, dict):
            raise ConfigError(f"{path}: embedder must be a model name and provenance an object")
        counts = judge.provenance.get("category_pairs")
        if counts is not None and not (isinstance(counts, dict) and all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in counts.items())):
            raise ConfigError(f"{path}: provenance.category_pairs must map categories to pair counts, got {counts!r}")
        unknown = [f for f in judge.features if f not in PAIR_FEATURES]
        if unknown or judge.categories != list(CATEGORY_SLOTS):
            raise ConfigError(f"{path}: coefficients were fitted on features {unknown or judge.features} this "
                              f"version does not compute (known: engine.method.pair_features.PAIR_FEATURES) or on "
                              f"categories {judge.categories} (expected {list(CATEGORY_SLOTS)})")
        expected = len(judge.features) + len(CATEGORY_SLOTS)
        if len(judge.coef) != expected or {len(judge.mean), len(judge.std)} != {len(judge.features)}:
            raise ConfigError(f"{path}: expected {expected} coefficients and {len(judge.features)} means and "
                              f"standard deviations, got {len(judge.coef)}, {len(judge.mean)} and {len(judge.std)}")
        numbers = [*judge.coef, *judge.mean, *judge.std, judge.intercept, judge.threshold]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in numbers) \
                or any(s <= 0 for s in judge.std) or not 0 < judge.threshold < 1:
            # A NaN would make every probability NaN, and every verdict "different" (NaN >= t is false).
            raise ConfigError(f"{path}: coefficients must be finite numbers, standard deviations > 0 and the "
                              "threshold in (0, 1) (refit with `python engine/run.py calibrate`)")
        return judge
