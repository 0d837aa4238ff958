"""Judge: pairwise functional-equivalence verdicts for each group, by one judge model, with union-find pruning; or by
the calibrated cheap judge (CalibratedJudgeStage: every pair, no LLM call)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Iterable

import numpy as np
import orjson
import pyarrow as pa

from engine.config import JudgeConfig, from_dict
from engine.method.judges import GroupJudgment, PairVerdict, has_answer, judge_group, no_answer
from engine.method.programs import first_token_sampling
from engine.stages.base import GROUP_INPUTS, GROUP_KEY, IDX, PRIOR, BackendStage, Stage

# One judged pair of a group, as this stage writes it (a list of these per group and judge): the fields of
# engine.method.judges.PairVerdict.
PAIR_TYPE = pa.struct(
    [
        ("i", pa.int64()),
        ("j", pa.int64()),
        ("p_equivalent", pa.float64()),
        ("verdict", pa.string()),
        ("raw", pa.string()),
        ("p_forward", pa.float64()),
        ("p_reverse", pa.float64()),
        ("calls", pa.int64()),
        ("decided_by", pa.string()),
        ("p_cheap", pa.float64()),
        ("p_audit", pa.float64()),
        ("read_from", pa.string()),
    ]
)

class JudgeStage(BackendStage):
    """Judges every group of a batch together: each round asks, for every unfinished group, its next pair.

    Args:
        model: the judge's spec.
        settings: the run's `judge:` settings (engine.config.JudgeConfig) as a dict.
        target: "answer" (the input's `responses` are the responses) or "trace" (they are the responses' reasoning
            traces: the judge asks whether two follow the same strategy, and the cascade, fitted on answers, is
            off).
    """

    name = "judge"
    # A group sent again after one of its calls failed carries the output it was stored with (PRIOR): the pairs it
    # answered then, paid for, are taken from it, not asked again.
    reads_prior = True
    # Judge shards are keyed by it: bump when what a verdict means changes (2: unresolved pairs are recorded apart
    # from "different", and how each verdict was read; 3: log-probs decide only where the text confirms a verdict;
    # 4: log-probs leaning against the text give way to it, and "NO DIFFERENCE" is no verdict).
    version = "4"
    required_inputs = {
        **GROUP_INPUTS,
        "judge_category": "the category whose equivalence criterion applies (null: the generic criterion)",
        "text": "the user prompt",
        "responses": "the group's responses",
        "agreement_sample": "whether the group is in the agreement sample (judged in full by every judge)",
    }
    output_schema = pa.schema(
        [
            *GROUP_KEY,
            ("judge", pa.string()),
            ("judge_category", pa.string()),
            ("n_responses", pa.int64()),
            ("pairs", pa.list_(PAIR_TYPE)),
            ("calls_made", pa.int64()),
            ("calls_saved", pa.int64()),
            ("n_unresolved", pa.int64()),
            ("order_disagreements", pa.int64()),
            ("cheap_decided", pa.int64()),
            ("agreement_sample", pa.bool_()),
        ]
    )

    def __init__(self, model: dict[str, Any], settings: dict[str, Any], target: str = "answer",
                 embedder: dict[str, Any] | None = None, coefficients: dict[str, Any] | None = None) -> None:
        super().__init__(model)
        if target not in ("answer", "trace"):
            raise ValueError(f"stage 'judge': target must be 'answer' or 'trace', got {target!r}")
        self.target = target
        self.settings = from_dict(JudgeConfig, settings, "judge")
        # Greedy; a few tokens (CONFIRM_TOKENS) where the first one's top-20 log-probs decide and the text confirms
        # them, judge.max_tokens where the verdict is read from text.
        self.sampling = first_token_sampling(model.get("verdict", "auto"), self.settings.max_tokens)
        self.calibrated = self.embedder = None
        if self.settings.cascade.enabled and target == "answer":
            from actors.registry import make_embedder
            from engine.method.calibrated import CalibratedJudge

            if embedder is None:
                raise ValueError("stage 'judge': the cascade needs the run's embedder spec")
            self.calibrated = (CalibratedJudge.from_data(coefficients, "judge.cascade.coefficients")
                               if coefficients is not None
                               else CalibratedJudge.load(self.settings.cascade.coefficients))
            self.embedder = make_embedder(embedder["backend"], embedder["model"], embedder.get("options"))

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        cheap: list[Any] = [None] * len(rows)
        if self.calibrated is not None:
            from engine.method.calibrated import pair_lookup

            # A category the cheap judge has no labelled pairs of is the LLM's to judge, every pair (decides()).
            cheap = [pair_lookup(p, len(r["responses"])) if self.calibrated.decides(r["judge_category"]) else None
                     for r, p in zip(rows, _score(self.calibrated, self.embedder.embed, rows))]
        programs = [
            judge_group(r["judge_category"], r["text"], list(r["responses"]), self.settings, self.sampling,
                        cheap=cheap[k],
                        full=bool(r["agreement_sample"]),
                        target=self.target,
                        known=answered_pairs(r.get(PRIOR)))
            for k, r in enumerate(rows)
        ]
        for k, (r, g) in enumerate(zip(rows, self.drive(programs))):
            yield judged_row(k, r, self.model_name, g)


# Verdicts a judge gave that a rerun keeps: read (or unreadable, or split by the orders, as a group judged without a
# failure keeps them); "error" is the failed call itself, and "no_answer" pairs are never asked. A pair the cheap
# judge decided is kept for its cascade audit, where the LLM answered it.
ANSWERED = ("equivalent", "different", "unparsed", "order_split")


def answered_pairs(prior: str | None) -> dict[tuple[int, int], PairVerdict] | None:
    """The LLM-judged pairs of a group's stored output (JSON, PRIOR) that were answered, by (i, j), and the pairs
    the calibrated judge decided whose cascade audit the LLM answered; None without one. The calibrated judge's
    decisions cost nothing and are made again (judge_group); what the LLM answered was paid for."""
    if not prior:
        return None
    pairs = orjson.loads(prior).get("pairs") or []
    return {(p["i"], p["j"]): PairVerdict(**p) for p in pairs
            if (p.get("verdict") in ANSWERED and p.get("decided_by") != "cheap")
            or (p.get("decided_by") == "cheap" and p.get("p_audit") is not None)}


def judged_row(k: int, row: dict[str, Any], judge: str, g: GroupJudgment) -> dict[str, Any]:
    """One output row of a judge stage: the group's key, the judge, and its GroupJudgment."""
    return {
        IDX: k,
        "prompt_id": row["prompt_id"],
        "model": row["model"],
        "strategy": row["strategy"],
        "judge": judge,
        "judge_category": row["judge_category"],
        "n_responses": len(row["responses"]),
        "pairs": [asdict(p) for p in g.pairs],
        "calls_made": g.calls_made,
        "calls_saved": g.calls_saved,
        "n_unresolved": g.n_unresolved,
        "order_disagreements": g.order_disagreements,
        "cheap_decided": g.cheap_decided,
        "agreement_sample": g.full,
    }


# The raw text of a pair the calibrated judge gives no probability: a non-finite feature (an embedder that returned
# NaN), or a response mostly outside the Latin script (engine.method.calibrated.latin_script).
NO_PROBABILITY = "no probability (a response outside the Latin script the judge reads, or a non-finite feature)"


class CalibratedJudgeStage(Stage):
    """The calibrated cheap judge as a judge of its own (`backend: calibrated`): P(equivalent) of every pair of each
    group from similarity features of the responses, no LLM call, the same output as JudgeStage.

    Every pair is scored (it costs one embedding per response), so the agreement sample needs nothing more. It runs in
    the embedder's host, so the embedding model is loaded once for it and the metrics.

    Args:
        model: the judge's spec: `model` is the coefficients file ("default": the shipped ones).
        settings: the run's `judge:` settings (its threshold makes the verdicts, as for every judge).
        embedder: the run's embedder spec; it must be the one the coefficients were fitted with.
    """

    name = "judge"
    version = JudgeStage.version
    required_inputs = {k: v for k, v in JudgeStage.required_inputs.items()}
    output_schema = JudgeStage.output_schema

    def __init__(self, model: dict[str, Any], settings: dict[str, Any], embedder: dict[str, Any],
                 coefficients: dict[str, Any] | None = None) -> None:
        from actors.registry import make_embedder
        from engine.method.calibrated import CalibratedJudge

        self.model_name = model["name"]
        self.settings = from_dict(JudgeConfig, settings, "judge")
        # The driver sends the coefficients it read (a node need not hold the file); a path alone is read here.
        self.judge = (CalibratedJudge.from_data(coefficients, model["model"]) if coefficients is not None
                      else CalibratedJudge.load(None if model["model"] == "default" else model["model"]))
        self.embedder = make_embedder(embedder["backend"], embedder["model"], embedder.get("options"))

    def process(self, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        threshold = self.settings.threshold
        scored = _score(self.judge, self.embedder.embed, rows)
        for k, (r, p) in enumerate(zip(rows, scored)):
            responses = list(r["responses"])
            answered = [has_answer(t) for t in responses]
            pairs = [PairVerdict(int(i), int(j), float(q), "equivalent" if q >= threshold else "different", raw="",
                                 calls=0, decided_by="calibrated", read_from="calibrated")
                     if answered[i] and answered[j] and math.isfinite(q) else
                     # as judge_group: a pair without an answer is unresolved; so is one whose probability is no
                     # number (an embedder that returned NaN): NaN >= threshold is false, which read "different"
                     no_answer(int(i), int(j)) if not (answered[i] and answered[j]) else
                     PairVerdict(int(i), int(j), None, "unparsed", raw=NO_PROBABILITY,
                                 calls=0, decided_by="calibrated", read_from=None)
                     for (i, j), q in zip(zip(*np.triu_indices(len(responses), 1)), p)]
            unresolved = sum(v.p_equivalent is None for v in pairs)
            full = bool(r["agreement_sample"])
            yield judged_row(k, r, self.model_name, GroupJudgment(pairs, cheap_decided=len(pairs) - unresolved,
                                                                  n_unresolved=unresolved, full=full))


def _score(judge: Any, embed: Any, rows: list[dict[str, Any]]) -> list[np.ndarray]:
    """The calibrated judge's P(equivalent) of every pair of each row's group (CalibratedJudge.score_groups)."""
    return judge.score_groups(embed, [r["text"] for r in rows], [list(r["responses"]) for r in rows],
                              [r["judge_category"] for r in rows])
