"""How often a judge agrees with human labels on response pairs (the command: engine.cli.agreement).

Reports accuracy, Cohen's κ, the confusion matrix and a per-category breakdown (pairs without a category are
counted under "none"). An LLM judge's unparseable verdicts are counted and left out of accuracy and κ, never
counted as "different"; so, apart, are the pairs the calibrated judge cannot read (a response outside the Latin
script: `non_latin`), NaN as in a run, which the cascade sends to its LLM judge, as a run does. The LLM judge runs
in this process with the run config's judge settings (both orders, response cut, cascade thresholds); use `--limit`
for a quick look.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from actors.base import BackendError
from actors.registry import make_chat_backend
from engine.errors import ConfigError, TaskdivError
from engine.method.calibrate import featurize, scores
from engine.method.calibrated import CalibratedJudge, text_rules
from engine.method.judges import has_answer, judge_pair
from engine.method.programs import DriveStats, drive, first_token_sampling

if TYPE_CHECKING:
    from engine.config import JudgeConfig
    from engine.inputs.labelled_pairs import LabelledPair


def answered(pairs: list[LabelledPair]) -> np.ndarray:
    """Whether both responses of each pair have an answer: a run judges no pair with an empty response (it is
    unresolved, `no_answer`), so neither is it scored here."""
    return np.array([has_answer(p.response_a) and has_answer(p.response_b) for p in pairs], dtype=bool)


def non_latin(pairs: list[LabelledPair]) -> np.ndarray:
    """Whether the calibrated judge cannot read each pair (a response mostly outside the Latin script, the two texts
    not the same: calibrated.text_rules); a pair without an answer is `no_answer` instead, never both."""
    return text_rules([p.response_a for p in pairs], [p.response_b for p in pairs])[1] & answered(pairs)


def calibrated_probabilities(pairs: list[LabelledPair], coefficients: str | None, embedder: str,
                             cascade: bool = False) -> np.ndarray:
    """P(equivalent) from the calibrated judge, as a run's (CalibratedJudge.score_pairs): NaN for a pair with an
    empty response or one it cannot read (`non_latin`). With `cascade`, NaN too where a run's cascade would not let
    it decide (a category its labelled pairs held none of: CalibratedJudge.decides), so that those pairs go to the
    LLM, as in a run."""
    judge = CalibratedJudge.load(coefficients)
    if judge.embedder != embedder:
        raise ConfigError(f"the coefficients were fitted with embedder {judge.embedder!r}, not {embedder!r}")
    p = judge.score_pairs(featurize(pairs, embedder, judge.features), [p.category for p in pairs],
                          [p.response_a for p in pairs], [p.response_b for p in pairs])
    usable = answered(pairs)
    if cascade:
        usable &= np.array([judge.decides(pair.category) for pair in pairs], dtype=bool)
    return np.where(usable, p, np.nan)


def llm_probabilities(pairs: list[LabelledPair], model_spec: dict[str, Any], settings: JudgeConfig,
                      batch_size: int, cheap: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """P(equivalent) from an LLM judge (NaN where unparsed); with `cheap`, the cascade decides confident pairs."""
    judge_settings = settings
    sampling = first_token_sampling(model_spec.get("verdict", "auto"), judge_settings.max_tokens)
    backend = make_chat_backend(model_spec["backend"], model_spec["model"], model_spec.get("options"))
    out = np.full(len(pairs), np.nan)
    asked = answered(pairs)
    todo = [k for k, ok in enumerate(asked) if ok]  # as a run: a pair without an answer is not asked
    if cheap is not None:
        c = judge_settings.cascade
        confident = [k for k in todo if cheap[k] <= c.low or cheap[k] >= c.high]
        out[confident] = cheap[confident]
        todo = [k for k in todo if k not in set(confident)]
    stats = DriveStats()
    split = 0  # judge.both_orders: the two orders one each way, their mean on the threshold (no verdict, as in a run)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            programs = [judge_pair(pairs[k].category, pairs[k].prompt, pairs[k].response_a, pairs[k].response_b,
                                   judge_settings, sampling) for k in chunk]
            for k, verdict in zip(chunk, drive(backend, programs, stats)):
                out[k] = np.nan if verdict.p_equivalent is None else verdict.p_equivalent
                split += verdict.verdict == "order_split"
    except BackendError as exc:  # the endpoint refused the configuration (a bad key, no credit): said plainly
        raise TaskdivError(f"judge {model_spec.get('name') or model_spec['model']}: {exc}") from None
    finally:
        spent = (backend.stats() if callable(getattr(backend, "stats", None)) else {}).get("cost_usd")
        backend.close()
    return out, {"llm_pairs": len(todo), "cheap_pairs": int(asked.sum()) - len(todo),
                 "llm_calls": stats.calls, "order_split": split, "cost_usd": spent}


def agreement_report(pairs: list[LabelledPair], p: np.ndarray, threshold: float,
                     resamples: int = 0, unscored: np.ndarray | None = None) -> dict[str, Any]:
    """The judge's agreement over its parsed pairs; with `resamples`, percentile bootstrap 95% intervals of κ and
    AUC (pairs resampled: 100 labelled pairs leave κ uncertain by about ±0.17). `unscored`: the pairs the judge
    cannot score by its own rule (the calibrated judge's `non_latin`), NaN in `p`, counted apart from the unparsed
    (a verdict that could not be read is another thing than a pair never scored) and, like them, out of κ and AUC."""
    labels = np.array([int(x.equivalent) for x in pairs])
    empty = ~answered(pairs)
    apart = np.zeros(len(pairs), bool) if unscored is None else np.asarray(unscored, bool) & ~empty
    parsed = ~np.isnan(p) & ~apart  # an unknown is no value, whatever number a caller left there
    report = {"pairs": len(pairs), "unparsed": int((~parsed & ~empty & ~apart).sum()), "no_answer": int(empty.sum()),
              **({} if unscored is None else {"non_latin": int(apart.sum())}), "threshold": threshold,
              **scores(labels[parsed], p[parsed], threshold, resamples=resamples)}
    by_category: dict[str, list[int]] = defaultdict(list)
    for k, pair in enumerate(pairs):
        if parsed[k]:
            by_category[pair.category or "none"].append(k)
    report["by_category"] = {
        cat: {"n": len(ks), "accuracy": float(((p[ks] >= threshold).astype(int) == labels[ks]).mean()),
              "human_equivalent_rate": float(labels[ks].mean())}
        for cat, ks in sorted(by_category.items())
    }
    return report
