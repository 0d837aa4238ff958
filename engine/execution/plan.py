"""What a run will cost before it starts: model calls, tokens and (where prices are given) dollars, per role.

Computed from the config and the prompts alone — no model is loaded, no network is reached — so it runs in preflight
(`execution.max_cost_usd` refuses a run whose upper bound exceeds the cap) and as `engine/run.py plan`.

Counting rules (per generator, strategy and prompt; n responses per group):
- classification: one call per prompt by each generator, and one per prompt without a gold category by each
  reference classifier (the judges, or `classifier`); up to two with the format reminder;
- temperature: one request for n completions (an endpoint serving k per request: ceil(n / k), Anthropic's k = 1;
  another HTTP endpoint: one to n, since it may serve fewer and each request pays for its prompt); system_*: one
  completion holding n responses (n × max_tokens), up to two attempts; regen_*: n requests, turn k carrying the k
  earlier answers;
- judging: a group has n(n−1)/2 pairs; union-find pruning asks between n − 1 (everything equivalent) and all of
  them, times two with both_orders, and an unreadable verdict is asked once more; the groups of the agreement sample
  (judge.agreement_sample_rate, a draw by group known before the run) have all their pairs judged; one output token
  where log-probs decide, judge.max_tokens where text does; judging reasoning traces too (judge.target) adds nothing
  to the low end (a model that does not reason has none) and every pair again to the high end;
- quality: one checklist per prompt, one grade per response; accuracy: one grader call per response to a prompt
  with a short gold answer; each up to twice.
Input tokens are estimated from characters (CHARS_PER_TOKEN), responses at their max_tokens (cut to
judge.max_response_chars inside judge prompts). The low end assumes the fewest calls and the shortest answers
(one token), the high end every pair judged, every answer asked twice and every generation at max_tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from actors.registry import completions_per_request
from engine.config import ModelConfig, RunConfig
from engine.inputs.prompts import Prompt
from engine.method import taxonomy
from engine.method.accuracy import accuracy_method
from engine.method.judges import in_agreement_sample

# A rough, model-independent estimate (English text, BPE tokenizers); plan figures are estimates, not tokens.
CHARS_PER_TOKEN = 4.0
CLASSIFY_TOKENS = 8
GRADE_TOKENS = 3
ACCURACY_TOKENS = 4


def tokens(text_chars: float) -> int:
    return int(math.ceil(text_chars / CHARS_PER_TOKEN))


@dataclass
class RoleCost:
    """The calls and tokens one model makes in one role, as a range."""

    role: str
    model: str
    backend: str
    calls_low: int = 0
    calls_high: int = 0
    input_tokens_low: int = 0
    input_tokens_high: int = 0
    output_tokens_low: int = 0
    output_tokens_high: int = 0
    prices: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, calls: tuple[int, int], input_tokens: tuple[int, int], output_tokens: tuple[int, int]) -> None:
        self.calls_low += calls[0]
        self.calls_high += calls[1]
        self.input_tokens_low += input_tokens[0]
        self.input_tokens_high += input_tokens[1]
        self.output_tokens_low += output_tokens[0]
        self.output_tokens_high += output_tokens[1]

    def cost(self, high: bool) -> float | None:
        if self.prices is None:
            return None if self.backend == "http" else 0.0
        i = self.input_tokens_high if high else self.input_tokens_low
        o = self.output_tokens_high if high else self.output_tokens_low
        return (i * self.prices["prompt_per_mtok"] + o * self.prices["completion_per_mtok"]) / 1e6


@dataclass
class Plan:
    """A run's plan: counts, and a RoleCost per (role, model)."""

    prompts: int
    prompts_without_gold: int
    groups: int
    responses: int
    pairs: int
    roles: list[RoleCost]

    @property
    def cost_low(self) -> float | None:
        costs = [r.cost(False) for r in self.roles]
        return None if any(c is None for c in costs) else sum(costs)

    @property
    def cost_high(self) -> float | None:
        costs = [r.cost(True) for r in self.roles]
        return None if any(c is None for c in costs) else sum(costs)

    def unpriced(self) -> list[str]:
        """API models whose cost is unknown (no options.prices)."""
        return [f"{r.role} {r.model}" for r in self.roles if r.cost(True) is None]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_low"], out["cost_high"] = self.cost_low, self.cost_high
        for r, d in zip(self.roles, out["roles"]):
            d["cost_low"], d["cost_high"] = r.cost(False), r.cost(True)
        return out


def _role(roles: dict, role: str, m: ModelConfig) -> RoleCost:
    key = (role, m.name)
    if key not in roles:
        prices = m.options.get("prices") if isinstance(m.options.get("prices"), dict) else None
        roles[key] = RoleCost(role, m.name, m.backend, prices=prices)
    return roles[key]


def make_plan(config: RunConfig, prompts: list[Prompt], external_groups: int | None = None) -> Plan:
    """The plan of `config` over `prompts` (external_groups: groups of responses from elsewhere, no generation)."""
    n, strategies, sampling = config.n, list(config.strategies), config.sampling
    roles: dict[tuple[str, str], RoleCost] = {}
    ungold = [p for p in prompts if not p.gold_category]
    generated = external_groups is None
    generators = list(config.generators) if generated else []
    groups = len(prompts) * len(strategies) * len(generators) if generated else external_groups
    pairs_per_group = n * (n - 1) // 2
    voters = config.voters

    classify_in = [tokens(len(taxonomy.classify_prompt(p.text))) for p in prompts]
    # A sweep's generators classify once (greedy, alike for every value: engine.execution.pipeline.classify).
    for base, g in {(g.sweep or {}).get("base", g.name): g for g in generators}.items():
        _role(roles, "classify (own)", replace(g, name=base)).add((len(prompts), 2 * len(prompts)), (sum(classify_in), 2 * sum(classify_in)),
                                              (len(prompts), 2 * CLASSIFY_TOKENS * len(prompts)))
    ungold_in = [tokens(len(taxonomy.classify_prompt(p.text))) for p in ungold]
    for v in voters:
        if ungold:
            _role(roles, "classify (reference)", v).add((len(ungold), 2 * len(ungold)),
                                                        (sum(ungold_in), 2 * sum(ungold_in)),
                                                        (len(ungold), 2 * CLASSIFY_TOKENS * len(ungold)))

    # Generation.
    for g in generators:
        r = _role(roles, "generate", g)
        m = sampling.max_tokens
        # Requests for n completions of one conversation: one where n is served at once (local, vLLM), ceil(n / k)
        # where an endpoint serves k per request (Anthropic's: 1), one to n for another HTTP endpoint (it may serve
        # fewer, and each request pays for its prompt again).
        per_request = completions_per_request(g.backend, g.options)
        requests_for_n = ((math.ceil(n / per_request),) * 2 if per_request
                          else (1, n) if g.backend == "http" else (1, 1))
        for strategy in strategies:
            for p in prompts:
                prompt_tokens = tokens(len(p.text)) + 10
                if strategy.startswith("system"):
                    system = tokens(len(taxonomy.system_prompt("system_general", None, n)) + 400)
                    r.add((1, 2), (prompt_tokens + system, 2 * (prompt_tokens + system)), (n, 2 * n * m))
                elif strategy.startswith("regen"):
                    followup = tokens(200)
                    turns_in_low = sum(prompt_tokens + k * (1 + followup) for k in range(n))
                    turns_in_high = sum(prompt_tokens + k * (m + followup) for k in range(n))
                    r.add((n, n), (turns_in_low, turns_in_high), (n, n * m))
                else:  # temperature, and any strategy of one request for n completions
                    low, high = requests_for_n
                    r.add((low, high), (low * prompt_tokens, high * prompt_tokens), (n, n * m))
    # Judging.
    orders = 2 if config.judge.both_orders else 1
    response_chars = sampling.max_tokens * CHARS_PER_TOKEN
    if config.judge.max_response_chars:
        response_chars = min(response_chars, config.judge.max_response_chars)
    by_prompt = {p.prompt_id: p for p in prompts}
    judge_in = [tokens(len(taxonomy.judge_prompt(p.gold_category, p.text, "", "")) + len(taxonomy.JUDGE_SYSTEM)
                       + 2 * response_chars) for p in by_prompt.values()]
    mean_judge_in = sum(judge_in) / len(judge_in) if judge_in else 0
    low_calls = groups * (n - 1) * orders
    # The agreement sample (judge.agreement_sample_rate) is a deterministic draw by group: every pair of each drawn
    # group is judged, so its groups are known here and their pairs join the low end.
    if generated:
        drawn = sum(in_agreement_sample((p.prompt_id, g.name, s), config.judge.agreement_sample_rate)
                    for p in prompts for g in generators for s in strategies)
    else:
        drawn = round(external_groups * config.judge.agreement_sample_rate)
    low_calls += drawn * (pairs_per_group - (n - 1)) * orders
    high_calls = groups * pairs_per_group * orders * 2
    # judge.target: traces are judged only where every response has one (none, from a model that does not reason),
    # so they add nothing to the low end and the answers' high end again.
    answers, traces = (config.judge.target in ("answer", "both")), (config.judge.target in ("trace", "both"))
    low_calls, high_calls = low_calls * answers, high_calls * (answers + traces)
    for j in config.llm_judges:  # a calibrated judge makes no model call
        out_high = 1 if j.verdict == "logprobs" else config.judge.max_tokens
        _role(roles, "judge", j).add((low_calls, high_calls), (int(low_calls * mean_judge_in),
                                                               int(high_calls * mean_judge_in)),
                                     (low_calls, high_calls * out_high))
    # Quality and accuracy (the grader).
    for g in (config.graders if config.quality.enabled else []):
        grader = _role(roles, "grade", g)
        checklist_in = sum(tokens(len(taxonomy.checklist_prompt(p.gold_category, p.text))) for p in prompts)
        grader.add((len(prompts), 2 * len(prompts)), (checklist_in, 2 * checklist_in),
                   (len(prompts) * 20, 2 * len(prompts) * config.quality.checklist_max_tokens))
        grade_calls = groups * n
        grade_in = tokens(len(taxonomy.GRADE_PROMPT) + 400 + response_chars) + mean_judge_in / 4
        grader.add((grade_calls, 2 * grade_calls), (int(grade_calls * grade_in), int(2 * grade_calls * grade_in)),
                   (grade_calls, 2 * grade_calls * GRADE_TOKENS))
    if config.accuracy.enabled:
        graded = [p for p in prompts if accuracy_method(p.source, p.gold_category, p.gold_answer) == "grader"]
        per_prompt = (len(strategies) * len(generators) if generated else
                      max(1, round(groups / max(1, len(prompts)))))
        calls = len(graded) * per_prompt * n
        if calls:
            acc_in = tokens(len(taxonomy.SHORT_ANSWER_GRADER) + response_chars + 200)
            _role(roles, "accuracy", config.grader).add((calls, 2 * calls), (calls * acc_in, 2 * calls * acc_in),
                                                        (calls, 2 * calls * ACCURACY_TOKENS))
    return Plan(prompts=len(prompts), prompts_without_gold=len(ungold), groups=groups, responses=groups * n,
                pairs=groups * pairs_per_group, roles=list(roles.values()))


def _usd(x: float | None) -> str:
    return "unknown (no prices)" if x is None else f"${x:,.2f}"


def render_plan(plan: Plan) -> str:
    """The plan as the text `engine/run.py plan` prints."""
    lines = [
        f"prompts: {plan.prompts} ({plan.prompts_without_gold} without a gold category)   groups: {plan.groups}   "
        f"responses: {plan.responses}   pairs: {plan.pairs}",
        "",
        f"{'role':<22} {'model':<28} {'calls (low–high)':>22} {'input tokens (low–high)':>28} "
        f"{'output tokens (low–high)':>28} {'cost USD (low–high)':>30}",
    ]
    for r in plan.roles:
        cost = ("–" if r.backend != "http" and r.prices is None else
                f"{_usd(r.cost(False))} – {_usd(r.cost(True))}" if r.prices else "unknown (no prices)")
        lines.append(f"{r.role:<22} {r.model[:28]:<28} {r.calls_low:>10,} – {r.calls_high:<9,} "
                     f"{r.input_tokens_low:>13,} – {r.input_tokens_high:<12,} "
                     f"{r.output_tokens_low:>13,} – {r.output_tokens_high:<12,} {cost:>30}")
    lines += ["", f"total cost: {_usd(plan.cost_low)} – {_usd(plan.cost_high)}"
              + ("" if not plan.unpriced() else f"   (no prices for: {', '.join(plan.unpriced())}; give "
                 "options.prices: {prompt_per_mtok, completion_per_mtok} in USD)"),
              f"(tokens estimated at {CHARS_PER_TOKEN:g} characters per token; low: fewest calls and one-token "
              "answers, high: every pair judged, every answer asked twice, every generation at max_tokens)"]
    return "\n".join(lines)
