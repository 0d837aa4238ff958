"""What a run will cost before it starts: model calls, tokens and (where prices are given) dollars, per role.

Computed from the config and the prompts alone — no model is loaded, no network is reached — so it runs in preflight
(`execution.max_cost_usd` refuses a run whose upper bound exceeds the cap) and as `engine/run.py plan`.

Counting rules (per generator, strategy and prompt; n responses per group):
- classification: one call per prompt by each generator, and one per prompt without a gold category by each
  reference classifier (the judges, or `classifier`) that is not also a generator; up to two with the format
  reminder;
- temperature: one request for n completions (an endpoint serving k per request: ceil(n / k), Anthropic's k = 1;
  another HTTP endpoint: one to n, since it may serve fewer and each request pays for its prompt); system_*: one
  completion holding n responses (n × max_tokens), up to two attempts (one at temperature 0: greedy decoding would
  split the same way again); regen_*: n requests, turn k carrying the k earlier answers;
- judging: a group has n(n−1)/2 pairs; union-find pruning asks between n − 1 (everything equivalent) and all of
  them, times two with both_orders, and an unreadable verdict is asked once more; the groups of the agreement sample
  (judge.agreement_sample_rate, a draw by group known before the run) have all their pairs judged; one to
  CONFIRM_TOKENS output tokens where log-probs decide, judge.max_tokens where text does; judging reasoning traces
  too (judge.target) adds nothing to the low end (a model that does not reason has none) and every pair again to the
  high end;
- quality: one checklist per prompt, one grade per response; accuracy: one grader call per response to a prompt
  with a short gold answer (at the high end also where the prompt has no gold category: the run's classification
  may make it A); each up to twice.
Input tokens are estimated from characters (CHARS_PER_TOKEN), generated responses at their max_tokens (cut to
judge.max_response_chars inside judge prompts, whole inside grade prompts), a file's responses at their length and
its groups at their size. The low end assumes the fewest calls and the shortest answers (one token), the high end
every pair judged, every answer asked twice and every generation at max_tokens. Not in it: a request re-sent after a
timeout (`timeout_retries`, once by default; the server may have billed the first).
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from actors.base import prices_problem, split_reasoning
from actors.registry import completions_per_request
from engine.config import CALIBRATED, ModelConfig, RunConfig
from engine.inputs.prompts import Prompt
from engine.method import taxonomy
from engine.method.accuracy import accuracy_method
from engine.method.judges import in_agreement_sample
from engine.method.programs import CONFIRM_TOKENS

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
    # Groups the last finished run in the run directory stored and this config reads back by key (less_stored):
    # their work is left out of the roles' figures.
    reused_groups: int = 0

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


def _role(roles: dict, role: str, m: ModelConfig | SimpleNamespace) -> RoleCost:
    key = (role, m.name)
    if key not in roles:
        # Prices as preflight checks them; unusable ones price nothing: an unknown cost.
        given = m.options.get("prices")
        prices = given if given is not None and prices_problem(given) is None else None
        roles[key] = RoleCost(role, m.name, m.backend, prices=prices)
    return roles[key]


def make_plan(config: RunConfig, prompts: list[Prompt], external_groups: Sequence[Any] | None = None) -> Plan:
    """The plan of `config` over `prompts`; external_groups: groups of responses from elsewhere (no generation),
    each with `responses` [(index, text)] and its key — counted as they are (their sizes and texts, not n responses
    of max_tokens each: a file's groups may be larger and its responses longer)."""
    n, strategies, sampling = config.n, list(config.strategies), config.sampling
    roles: dict[tuple[str, str], RoleCost] = {}
    ungold = [p for p in prompts if not p.gold_category]
    generated = external_groups is None
    external = [] if generated else list(external_groups)
    generators = list(config.generators) if generated else []
    groups = len(prompts) * len(strategies) * len(generators) if generated else len(external)
    pairs_per_group = n * (n - 1) // 2
    sizes = [len(g.responses) for g in external]
    responses = groups * n if generated else sum(sizes)
    pairs = groups * pairs_per_group if generated else sum(k * (k - 1) // 2 for k in sizes)
    voters = config.voters

    classify_in = [tokens(len(taxonomy.classify_prompt(p.text))) for p in prompts]
    # A sweep's generators classify once (greedy, alike for every value: engine.execution.pipeline.classify).
    for base, g in {(g.sweep or {}).get("base", g.name): g for g in generators}.items():
        _role(roles, "classify (own)", replace(g, name=base)).add(
            (len(prompts), 2 * len(prompts)), (sum(classify_in), 2 * sum(classify_in)),
            (len(prompts), 2 * CLASSIFY_TOKENS * len(prompts)))
    ungold_in = [tokens(len(taxonomy.classify_prompt(p.text))) for p in ungold]
    # A classifier that is also a generator votes from its own classification of every prompt, counted above.
    classifying = [g.classify_identity() for g in generators]
    for v in voters:
        if ungold and v.classify_identity() not in classifying:
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
        temperature = g.temperature if g.temperature is not None else sampling.temperature
        attempts = 1 if temperature == 0 else 2  # a short system-prompt completion is not asked again when greedy
        for strategy in strategies:
            for p in prompts:
                prompt_tokens = tokens(len(p.text)) + 10
                if strategy.startswith("system"):
                    system = tokens(len(taxonomy.system_prompt("system_general", None, n)) + 400)
                    r.add((1, attempts), (prompt_tokens + system, attempts * (prompt_tokens + system)),
                          (n, attempts * n * m))
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
    cut = config.judge.max_response_chars or None
    # A response as a judge sees it (cut to judge.max_response_chars) and as a grader does (whole): generated ones at
    # their max_tokens, a file's at their length.
    full_chars = sampling.max_tokens * CHARS_PER_TOKEN
    response_chars = min(full_chars, cut) if cut else full_chars
    by_prompt = {p.prompt_id: p for p in prompts}
    frame = {p.prompt_id: tokens(len(taxonomy.judge_prompt(p.gold_category, p.text, "", ""))
                                 + len(taxonomy.JUDGE_SYSTEM)) for p in by_prompt.values()}
    mean_frame = sum(frame.values()) / len(frame) if frame else 0
    mean_judge_in = mean_frame + tokens(2 * response_chars)
    rate = config.judge.agreement_sample_rate
    if generated:
        # judge.all_pairs: every pair is judged, none implied by union-find
        low_calls = groups * (pairs_per_group if config.judge.all_pairs else n - 1) * orders
        # The agreement sample (judge.agreement_sample_rate) is a deterministic draw by group: every pair of each
        # drawn group is judged, so its groups are known here and their pairs join the low end.
        drawn = sum(in_agreement_sample((p.prompt_id, g.name, s), rate)
                    for p in prompts for g in generators for s in strategies)
        low_calls += 0 if config.judge.all_pairs else drawn * (pairs_per_group - (n - 1)) * orders
        high_calls = groups * pairs_per_group * orders * 2
        judge_in_low, judge_in_high = low_calls * mean_judge_in, high_calls * mean_judge_in
    # judge.target: traces are judged only where every response has one (none, from a model that does not reason),
    # so they add nothing to the low end and, for generated responses, the answers' high end again.
    answers, traces = (config.judge.target in ("answer", "both")), (config.judge.target in ("trace", "both"))
    if generated:
        low_calls, high_calls = low_calls * answers, high_calls * (answers + traces)
        judge_in_low, judge_in_high = judge_in_low * answers, judge_in_high * (answers + traces)
    else:
        low_calls = high_calls = 0
        judge_in_low = judge_in_high = 0.0
        for g, k in zip(external, sizes):
            if k < 2:
                continue
            every = k * (k - 1) // 2
            least = every if config.judge.all_pairs or in_agreement_sample((g.prompt_id, g.model, g.strategy), rate) \
                else k - 1
            # Each response's answer and trace: the file's trace, else its inline reasoning split off, as the run
            # reads them (engine.inputs.responses); traces are judged where every response has one.
            parts = [(t, g.traces[i]) if g.traces.get(i) else split_reasoning(t) for i, t in g.responses]
            texts = ([[a for a, _ in parts]] if answers else []) + \
                ([[tr for _, tr in parts]] if traces and all(tr for _, tr in parts) else [])
            for kind, judged in enumerate(texts):
                lengths = [min(len(t), cut) if cut else len(t) for t in judged]
                # Every pair's input: the frame and both texts; summed over all pairs each text is in k − 1.
                pair_in = frame.get(g.prompt_id, mean_frame) + tokens(2 * sum(lengths) / k)
                high_calls += every * orders * 2
                judge_in_high += every * orders * 2 * pair_in
                if kind == 0 and answers:
                    low_calls += least * orders
                    judge_in_low += least * orders * (frame.get(g.prompt_id, mean_frame) + tokens(2 * min(lengths)))
    for j in config.llm_judges:  # a calibrated judge makes no model call
        # Where log-probs decide, a few tokens are written beside them (CONFIRM_TOKENS: the text confirms the
        # verdict); the low end's model may stop after one ("YES").
        text = config.judge.max_tokens
        out_high = {"logprobs": CONFIRM_TOKENS, "auto": max(CONFIRM_TOKENS, text)}.get(j.verdict, text)
        _role(roles, "judge", j).add((low_calls, high_calls), (int(judge_in_low), int(judge_in_high)),
                                     (low_calls, high_calls * out_high))
    # Embedding: the metrics embed every response once; a cheap judge (a calibrated judge, or the cascade's in the
    # judge's host) embeds them again with their prompt. Billed only where the embedder is an API (backend http):
    # a local or vLLM embedder costs nothing a plan counts, and gets no row.
    e = config.embedder
    if e.backend == "http":
        _embedding(roles, config, prompts, None if generated else external, responses, groups)
    # Quality and accuracy (the grader).
    for g in (config.graders if config.quality.enabled else []):
        grader = _role(roles, "grade", g)
        checklist_in = sum(tokens(len(taxonomy.checklist_prompt(p.gold_category, p.text))) for p in prompts)
        grader.add((len(prompts), 2 * len(prompts)), (checklist_in, 2 * checklist_in),
                   (len(prompts) * 20, 2 * len(prompts) * config.quality.checklist_max_tokens))
        # A grade prompt holds the prompt, its checklist (at most checklist_max_tokens) and the whole response
        # (graders do not cut it).
        frame_of = {p.prompt_id: tokens(len(taxonomy.GRADE_PROMPT) + len(p.text)) + config.quality.checklist_max_tokens
                    for p in prompts}
        if generated:
            grade_in = sum(frame_of.values()) * len(strategies) * len(generators) * n + tokens(full_chars) * responses
        else:
            grade_in = sum(frame_of.get(group.prompt_id, 0) + tokens(len(t))
                           for group in external for _, t in group.responses)
        grader.add((responses, 2 * responses), (int(grade_in), int(2 * grade_in)),
                   (responses, 2 * responses * GRADE_TOKENS))
    if config.accuracy.enabled:
        # A prompt's category decides its check: the gold one where given, else the one the run classifies it as,
        # unknown here — any of them could be A (graded), so the high end counts such prompts, the low end not.
        def graded(category_unknown_as: str | None) -> set[str]:
            return {p.prompt_id for p in prompts
                    if accuracy_method(p.source, p.gold_category or category_unknown_as, p.gold_answer) == "grader"}

        # The grader's prompt: the question, its gold answer and the whole response.
        acc_frame = {p.prompt_id: tokens(len(taxonomy.SHORT_ANSWER_GRADER) + len(p.text) + len(p.gold_answer or ""))
                     for p in prompts}
        counts = []
        for ids in (graded(None), graded("A")):
            if generated:
                per_prompt = len(strategies) * len(generators) * n
                calls = len(ids) * per_prompt
                chars = sum(acc_frame[i] for i in ids) * per_prompt + calls * tokens(full_chars)
            else:
                mine = [(group.prompt_id, t) for group in external if group.prompt_id in ids
                        for _, t in group.responses]
                calls, chars = len(mine), sum(acc_frame[i] + tokens(len(t)) for i, t in mine)
            counts.append((calls, chars))
        (low, low_in), (high, high_in) = counts
        if high:
            _role(roles, "accuracy", config.grader).add((low, 2 * high), (int(low_in), int(2 * high_in)),
                                                        (low, 2 * high * ACCURACY_TOKENS))
    return Plan(prompts=len(prompts), prompts_without_gold=len(ungold), groups=groups, responses=responses,
                pairs=pairs, roles=list(roles.values()))


def work_versions() -> dict[str, list[str]]:
    """What keys each role's work beside the config: the texts its stages send (taxonomy's fingerprints) and the
    stages' versions. A finished run records them (run_stats.json), and `less_stored` counts a role's stored work as
    stored only where they are the same: a grader's prompt changed by an upgrade asks every check again, which the
    bound had counted as stored, free."""
    from engine.method import taxonomy
    from engine.method.accuracy import ACCURACY_VERSION
    from engine.method.calibrated import RULES_VERSION
    from engine.method.math import MATH_EXTRACTION_VERSION
    from engine.stages.checklist import ChecklistStage
    from engine.stages.classify import ClassifyStage
    from engine.stages.grade import GradeStage
    from engine.stages.judge import JudgeStage
    from engine.stages.metrics import MetricsStage
    from engine.stages.sample import SampleStage

    v = taxonomy.prompt_versions()
    return {"classify": [v["classify"], ClassifyStage.version], "generate": [v["sample"], SampleStage.version],
            "judge": [v["judge"], v["judge_trace"], JudgeStage.version, RULES_VERSION],
            "grade": [v["checklist"], v["grade"], ChecklistStage.version, GradeStage.version],
            "accuracy": [v["accuracy"], ACCURACY_VERSION, MATH_EXTRACTION_VERSION], "embed": [MetricsStage.version]}


def less_stored(plan: Plan, config: RunConfig, prompts: list[Prompt], stored: RunConfig,
                stored_groups: set[tuple[str, str, str]], stored_labels: dict[str, tuple],
                stored_versions: dict[str, Any] | None = None) -> Plan:
    """`plan` less the work of the groups the last finished run in the run directory stored (`stored`, its config;
    `stored_groups`, its complete groups as (prompt_id, model, strategy); `stored_labels`, its prompts' (source,
    gold_category, gold_answer) by id) that this config reads back by key and never pays for again — an invocation's
    cap holds its own spending, and a strategy added to a finished run was refused for the whole run's bound.
    Conservative: only where the settings that key the work are equal (n, sampling, the category source, the
    reference classifiers; a generator, judge, grader or embedder entry as it was; the judging, quality and accuracy
    settings for their roles) and for prompts labelled as they were (a gold category or answer edited in place keys
    the judging, the checklists, anchored sampling and the accuracy checks anew: they were counted as stored and the
    rerun paid for them past the bound); and for the roles whose work versions (`stored_versions`, work_versions()
    as that run recorded them; none from an older version) are the same; anything else counts again."""
    if config.n != stored.n or _unswept_sampling(config) != _unswept_sampling(stored) \
            or config.category_source != stored.category_source:
        return plan
    if config.voters != stored.voters:  # the prompts without a gold category may be judged under another one
        prompts = [p for p in prompts if p.gold_category is not None]

    def kept(model: Any, others: Sequence[Any]) -> bool:
        return any(model == other for other in others)

    # Each generator as it samples (its temperature and top_p, its own or the run's): a sweep's values are its own
    # after expansion, so a value added to a list leaves the others' groups stored — the whole run had been counted.
    generators = [g for g in config.generators if kept(_sampling_as(g, config), [_sampling_as(s, stored)
                                                                                  for s in stored.generators])]
    strategies = [s for s in config.strategies if s in stored.strategies]
    done = [p for p in prompts if stored_labels.get(p.prompt_id) == (p.source, p.gold_category, p.gold_answer)
            and all((p.prompt_id, g.name, s) in stored_groups for g in generators for s in strategies)]
    if not (generators and strategies and done):
        return plan
    shared = copy.copy(config)  # not dataclasses.replace: __post_init__ would expand a sweep again
    shared.generators, shared.strategies = generators, strategies
    reused = {(r.role, r.model): r for r in make_plan(shared, done).roles}
    same = {("generate", g.name) for g in generators}
    same |= {("classify (own)", (g.sweep or {}).get("base", g.name)) for g in generators}
    same |= {("classify (reference)", v.name) for v in config.voters if kept(v, stored.voters)}
    if config.judge == stored.judge:
        same |= {("judge", j.name) for j in config.llm_judges if kept(j, stored.llm_judges)}
    if stored.quality.enabled and config.quality == stored.quality:
        same |= {("grade", g.name) for g in config.graders if kept(g, stored.graders)}
    if stored.accuracy.enabled and config.accuracy == stored.accuracy and config.graders and stored.graders \
            and config.grader == stored.grader:
        same.add(("accuracy", config.grader.name))
    if config.embedder == stored.embedder:
        same.add(("embed", config.embedder.model))
    current = work_versions()
    unchanged = {role for role, v in current.items() if (stored_versions or {}).get(role) == v}
    roles = []
    for r in plan.roles:
        kind = r.role.split(" (")[0]  # "classify (own)", "classify (reference)" → classify
        old = reused.get((r.role, r.model)) if (r.role, r.model) in same and kind in unchanged else None
        if old is not None:
            r = replace(r, **{k: max(0, getattr(r, k) - getattr(old, k)) for k in (
                "calls_low", "calls_high", "input_tokens_low", "input_tokens_high", "output_tokens_low",
                "output_tokens_high")})
        roles.append(r)
    return replace(plan, roles=roles, reused_groups=len(done) * len(generators) * len(strategies))


def _unswept_sampling(config: RunConfig) -> dict[str, Any]:
    """The run's sampling settings other than temperature and top_p, which key each generator as it takes them."""
    return {k: v for k, v in asdict(config.sampling).items() if k not in ("temperature", "top_p")}


def _sampling_as(g: ModelConfig, config: RunConfig) -> ModelConfig:
    """A generator with the temperature and top_p it samples at (its own, else the run's), and its sweep record
    without what was configured (a value added to a generator's own list changes that record on every value)."""
    return replace(g, temperature=config.sampling.temperature if g.temperature is None else g.temperature,
                   top_p=config.sampling.top_p if g.top_p is None else g.top_p,
                   sweep={k: v for k, v in (g.sweep or {}).items() if k != "configured"})


def agreement_plan(config: RunConfig, judge: ModelConfig, pairs: Sequence[Any]) -> RoleCost:
    """What `engine/run.py agreement --judge NAME` may cost: each labelled pair (its `prompt`, `response_a`,
    `response_b`, `category`) where both responses answer is judged as a run judges a pair — both orders with
    judge.both_orders, an unreadable verdict asked once more, each response cut to judge.max_response_chars. A cascade
    sends only its unsure pairs, unknown before it scores them: the high end counts them all."""
    from engine.method.judges import has_answer

    orders = 2 if config.judge.both_orders else 1
    cut = config.judge.max_response_chars or None
    text = config.judge.max_tokens
    out_high = {"logprobs": CONFIRM_TOKENS, "auto": max(CONFIRM_TOKENS, text)}.get(judge.verdict, text)
    asked = [p for p in pairs if has_answer(p.response_a) and has_answer(p.response_b)]
    prompt_in = sum(tokens(len(taxonomy.judge_prompt(p.category, p.prompt, p.response_a[:cut], p.response_b[:cut]))
                           + len(taxonomy.JUDGE_SYSTEM)) for p in asked)
    cost = _role({}, "judge", judge)  # its prices read as the run's plan reads them
    calls = len(asked) * orders
    cost.add((0, 2 * calls), (0, 2 * orders * prompt_in), (0, 2 * calls * out_high))
    return cost


def _embedding(roles: dict, config: RunConfig, prompts: list[Prompt], external: list[Any] | None, responses: int,
               groups: int) -> None:
    """The API embedder's role: every response once (the metrics), and again with its group's prompt where a cheap
    judge reads them (a calibrated judge, or the cascade's, in the judge's host); batches of embedder.batch_size."""
    e, generated = config.embedder, external is None
    passes = 1 + bool(config.judge.cascade.enabled or any(j.backend == CALIBRATED for j in config.judges))
    if generated:
        low, high = responses, responses * config.sampling.max_tokens
        per_group_prompts = sum(tokens(len(p.text)) for p in prompts) * len(config.strategies) * len(
            config.generators)
    else:
        low = high = sum(tokens(len(t)) for g in external for _, t in g.responses)
        text = {p.prompt_id: p.text for p in prompts}
        per_group_prompts = sum(tokens(len(text[g.prompt_id])) for g in external if g.prompt_id in text)
    extra = (passes - 1) * per_group_prompts
    calls = math.ceil((passes * responses + (passes - 1) * groups) / max(1, e.batch_size))
    _role(roles, "embed", SimpleNamespace(name=e.model, backend=e.backend, options=e.options)).add(
        (calls, calls), (passes * low + extra, passes * high + extra), (0, 0))


def _usd(x: float | None) -> str:
    return "unknown (no prices)" if x is None else f"${x:,.2f}"


def render_plan(plan: Plan) -> str:
    """The plan as the text `engine/run.py plan` prints."""
    lines = [
        f"prompts: {plan.prompts} ({plan.prompts_without_gold} without a gold category)   groups: {plan.groups}   "
        f"responses: {plan.responses}   pairs: {plan.pairs}",
        *([f"reused: {plan.reused_groups} of these groups are stored by the last finished run in the run directory "
           "and read back at no cost; their work is not counted below"] if plan.reused_groups else []),
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
