import itertools
import math
import random

import networkx as nx
import orjson
import pytest

from actors.base import ChatOutput, SamplingParams
from engine.config import CascadeConfig, JudgeConfig
from engine.method.judges import UnionFind, judge_group
from engine.method.programs import drive

SAMPLING = SamplingParams(temperature=0.0, max_tokens=4, logprobs=20)


class EdgeJudge:
    """Says YES for pairs in `edges` (by response text), NO otherwise, with log-probs unless `text_only`."""

    name = "edges"

    def __init__(self, edges, text_only=False, answer=None):
        self.edges = {frozenset(e) for e in edges}
        self.text_only = text_only
        self.answer = answer
        self.calls = 0

    def chat(self, conversations, sampling):
        outs = []
        for conv in conversations:
            self.calls += 1
            text = conv[1]["content"]
            a = text.split('Response 1:\n"""')[1].split('"""')[0]
            b = text.split('Response 2:\n"""')[1].split('"""')[0]
            yes = frozenset((a, b)) in self.edges
            if self.answer is not None:
                outs.append(ChatOutput(texts=[self.answer(conv)]))
                continue
            lp = None if self.text_only else [{"YES": -0.01, "NO": -5.0} if yes else {"YES": -5.0, "NO": -0.01}]
            outs.append(ChatOutput(texts=["YES" if yes else "NO"], first_token_logprobs=lp))
        return outs

    def close(self):
        pass


def components(n, edges):
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    return nx.number_connected_components(g)


def judge(responses, backend, **settings):
    (g,) = drive(backend, [judge_group("G", "p", responses, JudgeConfig(**settings), SAMPLING)])
    return g


def count_from(g, n):
    return components(n, [(p.i, p.j) for p in g.pairs if p.verdict == "equivalent"])


def random_partition(rng, n, k):
    labels = [rng.randrange(k) for _ in range(n)]
    return labels


# Pruned judging gives exactly the counts of full judging.
@pytest.mark.parametrize("seed", range(20))
def test_pruned_equals_full_on_random_partitions(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 9)
    labels = random_partition(rng, n, rng.randint(1, n))
    responses = [f"r{k}" for k in range(n)]
    edges = [(responses[a], responses[b]) for a, b in itertools.combinations(range(n), 2) if labels[a] == labels[b]]
    full = judge(responses, EdgeJudge(edges), all_pairs=True)
    pruned = judge(responses, EdgeJudge(edges))
    assert count_from(pruned, n) == count_from(full, n) == len(set(labels))
    assert len(full.pairs) == n * (n - 1) // 2
    assert pruned.calls_made + pruned.calls_saved == n * (n - 1) // 2


@pytest.mark.parametrize("seed", range(20))
def test_calls_equal_the_certificate_minimum(seed):
    rng = random.Random(100 + seed)
    n = rng.randint(2, 12)
    k = rng.randint(1, n)
    labels = random_partition(rng, n, k)
    order = list(range(n))
    rng.shuffle(order)  # any order of responses
    responses = [f"r{k}" for k in order]
    lab = {f"r{k}": labels[k] for k in range(n)}
    edges = [(a, b) for a, b in itertools.combinations(responses, 2) if lab[a] == lab[b]]
    backend = EdgeJudge(edges)
    g = judge(responses, backend)
    sizes = [labels.count(c) for c in set(labels)]
    minimum = (n - len(sizes)) + sum(a * b for a, b in itertools.combinations(sizes, 2))
    assert backend.calls == g.calls_made == minimum


@pytest.mark.parametrize("seed", range(20))
def test_non_transitive_judge_still_matches_full_judging(seed):
    rng = random.Random(200 + seed)
    n = rng.randint(2, 9)
    responses = [f"r{k}" for k in range(n)]
    edges = [(a, b) for a, b in itertools.combinations(responses, 2) if rng.random() < 0.3]
    full = judge(responses, EdgeJudge(edges), all_pairs=True)
    pruned = judge(responses, EdgeJudge(edges))
    expected = components(n, [(responses.index(a), responses.index(b)) for a, b in edges])
    assert count_from(pruned, n) == count_from(full, n) == expected


def test_verdict_from_logprobs_is_a_probability():
    g = judge(["a", "b"], EdgeJudge([("a", "b")]))
    (p,) = g.pairs
    assert 0.99 < p.p_equivalent < 1.0 and p.verdict == "equivalent"


def test_verdict_from_text_when_no_logprobs():
    g = judge(["a", "b"], EdgeJudge([], text_only=True))
    assert g.pairs[0].p_equivalent == 0.0 and g.pairs[0].verdict == "different"


def test_unparsed_is_retried_once_then_recorded_not_counted_as_different():
    backend = EdgeJudge([], answer=lambda conv: "maybe")
    g = judge(["a", "b", "c"], backend)
    assert backend.calls == 6  # 3 pairs × (ask + one retry)
    assert all(p.verdict == "unparsed" and p.p_equivalent is None for p in g.pairs)
    assert g.n_unresolved == 3 and g.calls_made == 6


def test_retry_carries_a_reminder_and_can_succeed():
    answers = iter(["hmm", "YES"])
    seen = []

    def answer(conv):
        seen.append(conv)
        return next(answers)

    g = judge(["a", "b"], EdgeJudge([], answer=answer))
    assert g.pairs[0].verdict == "equivalent" and "⟶" in g.pairs[0].raw
    assert seen[1][-1]["content"].startswith("Answer with a single word")


def test_both_orders_are_averaged_and_disagreement_counted():
    def biased(conv):
        # Position bias: YES whenever the first response is "a".
        return "YES" if 'Response 1:\n"""a"""' in conv[1]["content"] else "NO"

    g = judge(["a", "b"], EdgeJudge([], answer=biased), both_orders=True)
    (p,) = g.pairs
    # A YES and a NO read from text average to 0.5, on the threshold: that pair was "equivalent" (every split merged
    # the two responses); the orders contradict each other, so it is unresolved and the count has bounds.
    assert (p.p_forward, p.p_reverse, p.p_equivalent, p.verdict) == (1.0, 0.0, None, "order_split")
    assert g.order_disagreements == 1 and g.calls_made == 2 and g.n_unresolved == 1
    from dataclasses import asdict

    from engine.method.components import count_components

    row = dict.fromkeys(["prompt_id", "model", "strategy", "judge", "judge_category", "calls_made", "calls_saved",
                         "order_disagreements", "cheap_decided"])
    (c,) = count_components([{**row, "n_responses": 2, "pairs": [asdict(p)]}], 0.5)
    assert (c["unique_low"], c["unique_high"], c["unique"]) == (1, 2, None)


class FailingOrder(EdgeJudge):
    """An EdgeJudge whose requests with `first` as Response 1 fail transiently (retries exhausted) while `down`."""

    def __init__(self, edges, first, unreadable=False):
        super().__init__(edges)
        self.first, self.unreadable, self.down, self.asked = first, unreadable, True, []

    def chat(self, conversations, sampling):
        outs = super().chat(conversations, sampling)
        for k, conv in enumerate(conversations):
            self.asked.append(conv[1]["content"].split('Response 1:\n"""')[1].split('"""')[0])
            if self.down and self.asked[-1] == self.first:
                outs[k] = (ChatOutput(texts=["Maybe."]) if self.unreadable
                           else ChatOutput(texts=[], error="HTTP 503 after 4 attempts", transient=True))
        return outs


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_pair_sent_again_with_one_order_failed_asks_that_order_only(first):
    # With both_orders, a pair whose one order's request failed was decided by the other order alone; its row was
    # sent again, and the rerun kept that one-order verdict as answered: the failed order was never asked again.
    from dataclasses import asdict

    from engine.stages.judge import answered_pairs

    backend = FailingOrder([("a", "b")], first=first)
    settings = JudgeConfig(both_orders=True)
    (g,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING)])
    (p,) = g.pairs
    assert p.verdict == "equivalent" and (p.p_forward is None) == (first == "a") and g.calls_made == 2
    known = answered_pairs(orjson.dumps({"pairs": [asdict(p)]}).decode())
    backend.down, backend.asked = False, []
    (again,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING, known=known)])
    (q,) = again.pairs
    assert backend.asked == [first]  # the failed order only; the answered one is the first run's
    assert q.verdict == "equivalent" and q.p_forward is not None and q.p_reverse is not None
    assert q.p_equivalent == pytest.approx((q.p_forward + q.p_reverse) / 2) and q.calls == 3
    assert "<error:" not in q.raw and q.raw.count(" || ") == 1


def test_a_pair_with_one_order_unreadable_and_the_other_failed_asks_the_failed_one_again():
    # Unreadable in one order, failed in the other: the pair was "unparsed", kept as answered, and the failed order
    # was never asked — the pair, and under the every-judge rule its group's mean, stayed unresolved for good.
    from dataclasses import asdict

    from engine.stages.judge import answered_pairs

    class Split(FailingOrder):
        def chat(self, conversations, sampling):
            outs = super().chat(conversations, sampling)
            for k, conv in enumerate(conversations):
                if conv[1]["content"].split('Response 1:\n"""')[1].startswith("a"):
                    outs[k] = ChatOutput(texts=["Maybe."])
            return outs

    backend = Split([("a", "b")], first="b")
    settings = JudgeConfig(both_orders=True)
    (g,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING)])
    (p,) = g.pairs
    assert p.verdict == "unparsed" and "<error:" in p.raw
    known = answered_pairs(orjson.dumps({"pairs": [asdict(p)]}).decode())
    backend.down, backend.asked = False, []
    (again,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING, known=known)])
    (q,) = again.pairs
    assert backend.asked == ["b"] and q.verdict == "equivalent" and q.p_forward is None and q.p_reverse is not None


def test_a_pair_with_one_order_unreadable_is_not_asked_again():
    # An unreadable answer was paid for: the pair stands on its other order, as in the run that asked it.
    from dataclasses import asdict

    from engine.stages.judge import answered_pairs

    backend = FailingOrder([("a", "b")], first="b", unreadable=True)
    settings = JudgeConfig(both_orders=True)
    (g,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING)])
    (p,) = g.pairs
    assert p.verdict == "equivalent" and p.p_reverse is None and g.calls_made == 3  # reminded once
    known = answered_pairs(orjson.dumps({"pairs": [asdict(p)]}).decode())
    backend.asked = []
    (again,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING, known=known)])
    assert backend.asked == [] and again.pairs[0] == p


def test_both_orders_doubles_calls_saved():
    g = judge(["a", "b", "c"], EdgeJudge([("a", "b"), ("b", "c"), ("a", "c")]), both_orders=True)
    assert g.calls_saved == 2 and g.calls_made == 4


def test_single_and_empty_groups():
    assert judge(["only"], EdgeJudge([])).pairs == []
    assert judge([], EdgeJudge([])).pairs == []


def test_union_find():
    uf = UnionFind(5)
    uf.union(0, 1)
    uf.union(3, 4)
    uf.union(1, 4)
    assert uf.find(0) == uf.find(3) and uf.find(2) != uf.find(0)


# The cascade: a cheap judge decides confident pairs, the LLM the rest.
from engine.method.judges import audited  # noqa: E402


def cascade(low=0.2, high=0.8, audit_rate=0.0):
    return JudgeConfig(cascade=CascadeConfig(enabled=True, low=low, high=high, audit_rate=audit_rate))


def judge_cascade(responses, backend, cheap, settings):
    (g,) = drive(backend, [judge_group("G", "p", responses, settings, SAMPLING, cheap=cheap)])
    return g


def test_a_pair_the_cheap_judge_gives_no_probability_goes_to_the_llm_and_keeps_no_nan():
    # NaN (a response outside the Latin script, a NaN feature): NaN <= low and NaN >= high are both false, so the
    # LLM was asked already; the judgments table kept the NaN as the cheap judge's value.
    import math

    backend = EdgeJudge([("a", "b")])
    g = judge_cascade(["a", "b", "c"], backend, lambda i, j: math.nan if j == 1 else 0.01, cascade())
    by_pair = {(p.i, p.j): p for p in g.pairs}
    assert by_pair[(0, 1)].decided_by != "cheap" and by_pair[(0, 1)].p_cheap is None
    assert by_pair[(0, 1)].verdict == "equivalent" and by_pair[(0, 2)].decided_by == "cheap"


def test_confident_pairs_skip_the_llm_and_unsure_ones_use_it():
    backend = EdgeJudge([("a", "c")])
    probs = {(0, 1): 0.05, (0, 2): 0.5, (1, 2): 0.95}
    g = judge_cascade(["a", "b", "c"], backend, lambda i, j: probs[(i, j)], cascade())
    by_pair = {(p.i, p.j): p for p in g.pairs}
    assert by_pair[(0, 1)].decided_by == "cheap" and by_pair[(0, 1)].verdict == "different"
    assert by_pair[(0, 2)].decided_by == "llm" and by_pair[(0, 2)].verdict == "equivalent"
    assert by_pair[(0, 2)].p_cheap == 0.5
    assert by_pair[(1, 2)].decided_by == "cheap" and by_pair[(1, 2)].verdict == "equivalent"
    assert backend.calls == 1 and g.cheap_decided == 2


def test_cheap_equivalent_verdicts_prune_like_llm_ones():
    backend = EdgeJudge([])
    g = judge_cascade(["a", "b", "c"], backend, lambda i, j: 0.99, cascade())
    assert backend.calls == 0 and g.cheap_decided == 2 and g.calls_saved == 1


def test_audit_asks_the_llm_without_changing_the_verdict():
    backend = EdgeJudge([])  # the LLM says "different" to everything
    g = judge_cascade(["a", "b"], backend, lambda i, j: 0.99, cascade(audit_rate=1.0))
    (p,) = g.pairs
    assert p.verdict == "equivalent" and p.decided_by == "cheap" and p.p_audit is not None and p.p_audit < 0.5
    assert g.calls_made == 1


def test_a_group_sent_again_keeps_its_answered_cascade_audits():
    # A retried group kept the LLM's answered pairs but asked every audit of a cheap decision again (and paid again).
    from dataclasses import asdict

    from engine.stages.judge import answered_pairs

    backend = FailingOrder([], first="b")  # the audit of (0, 1) is answered; the LLM's call on (1, 2) fails
    probs = {(0, 1): 0.99, (0, 2): 0.5, (1, 2): 0.5}
    settings = cascade(audit_rate=1.0)
    g = judge_cascade(["a", "b", "c"], backend, lambda i, j: probs[(i, j)], settings)
    by_pair = {(p.i, p.j): p for p in g.pairs}
    assert by_pair[(0, 1)].p_audit is not None and by_pair[(1, 2)].verdict == "error"
    assert backend.asked == ["a", "a", "b"]  # the audit of (0, 1), then (0, 2) and (1, 2)
    known = answered_pairs(orjson.dumps({"pairs": [asdict(p) for p in g.pairs]}).decode())
    backend.down, backend.asked = False, []
    (again,) = drive(backend, [judge_group("G", "p", ["a", "b", "c"], settings, SAMPLING,
                                           cheap=lambda i, j: probs[(i, j)], known=known)])
    assert backend.asked == ["b"]  # the failed pair only
    assert [asdict(p) for p in again.pairs][0] == asdict(by_pair[(0, 1)])  # its audit as the first run had it
    # An audit whose one order failed rested on the other alone: it is asked again, not kept.
    settings = JudgeConfig(both_orders=True, cascade=CascadeConfig(enabled=True, low=0.2, high=0.8, audit_rate=1.0))
    backend = FailingOrder([], first="b")
    (g,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING, cheap=lambda i, j: 0.99)])
    (audit,) = g.pairs
    assert audit.p_audit is not None and "<error:" in audit.raw
    known = answered_pairs(orjson.dumps({"pairs": [asdict(audit)]}).decode())
    backend.down, backend.asked = False, []
    (again,) = drive(backend, [judge_group("G", "p", ["a", "b"], settings, SAMPLING, cheap=lambda i, j: 0.99,
                                           known=known)])
    assert sorted(backend.asked) == ["a", "b"] and "<error:" not in again.pairs[0].raw


def test_audit_draw_is_deterministic_and_near_its_rate():
    draws = [audited("p", f"a{k}", "b", 0.3) for k in range(2000)]
    assert draws == [audited("p", f"a{k}", "b", 0.3) for k in range(2000)]
    assert 0.25 < sum(draws) / len(draws) < 0.35


def test_cascade_off_ignores_the_cheap_judge():
    backend = EdgeJudge([])
    g = judge_cascade(["a", "b"], backend, lambda i, j: 0.99, JudgeConfig())
    assert backend.calls == 1 and g.pairs[0].decided_by == "llm" and g.pairs[0].p_cheap is None


def test_a_response_without_an_answer_is_never_judged_and_its_pairs_stay_unresolved():
    # A reasoning model cut off while thinking leaves an empty answer. Asked, a judge would call two of them
    # "equivalent" (one class of failures) or each "different" (a unique response each): both read an unknown as a
    # value. Not asked, their pairs are "no_answer" and the group's count is left to its bounds.
    backend = EdgeJudge([("", " "), ("4", "four")])
    g = judge(["", " ", "4", "four"], backend)
    assert backend.calls == 1  # "4" vs "four" only
    verdicts = {(p.i, p.j): p.verdict for p in g.pairs}
    assert verdicts.pop((2, 3)) == "equivalent"
    assert set(verdicts.values()) == {"no_answer"} and len(verdicts) == 5
    assert g.n_unresolved == 5 and all(p.p_equivalent is None and p.calls == 0 for p in g.pairs if p.i < 2)
    # Nor does the cascade's calibrated judge decide them.
    g = judge_cascade(["", "4"], EdgeJudge([]), lambda i, j: 0.01, cascade())
    assert [p.verdict for p in g.pairs] == ["no_answer"] and g.cheap_decided == 0


def test_the_calibrated_judge_stage_leaves_pairs_without_an_answer_unresolved():
    from engine.stages.judge import CalibratedJudgeStage

    stage = CalibratedJudgeStage({"name": "cheap", "model": "default"}, {},
                                 {"backend": "local", "model": "all-minilm-l6-v2"})
    rows = [{"prompt_id": "p", "model": "m", "strategy": "temperature", "judge_category": "A", "text": "2+2?",
             "responses": ["4", "", "The answer is 4."], "agreement_sample": False}]
    (out,) = list(stage.process(rows))
    verdicts = {(p["i"], p["j"]): p["verdict"] for p in out["pairs"]}
    assert verdicts[(0, 1)] == verdicts[(1, 2)] == "no_answer" and verdicts[(0, 2)] in ("equivalent", "different")
    assert out["n_unresolved"] == 2 and out["cheap_decided"] == 1


@pytest.mark.parametrize("text,first,verdict", [
    ("No.", {"No": -0.05, "Yes": -3.0}, "logprobs"),
    ("YES, they", {"YES": -0.1, "NO": -2.5}, "logprobs"),
    # The first token was read alone: "No difference" (equivalent) as NO, "N/A" as NO by its "N", a hedge as YES.
    ("No difference in", {"No": -0.05, "Yes": -3.0}, None),
    ("N/A", {"N": -0.1, "Yes": -3.0, "No": -3.0}, None),
    ("Yes and no", {"Yes": -0.1, "No": -2.5}, None),
    # Log-probs leaning the other way than the text: the judge wrote NO ("No" its likeliest token, the YES variants
    # likelier together; or "**" first, its answer after it) and was recorded "equivalent".
    ("No", {"No": math.log(0.40), "Yes": math.log(0.30), " yes": math.log(0.15), "YES": math.log(0.10)}, "text"),
    ("**No**", {"**": math.log(0.36), "Yes": math.log(0.30), "No": math.log(0.25)}, "text"),
    ("**Yes**", {"**": math.log(0.36), "Yes": math.log(0.30), "No": math.log(0.25)}, "logprobs"),
])
def test_log_probs_decide_only_where_the_text_gives_a_verdict_they_lean_to(text, first, verdict):
    from engine.method.judges import read_verdict
    from engine.method.parsing import parse_verdict

    read = read_verdict(ChatOutput(texts=[text], first_token_logprobs=[first]))
    assert (read[1] if read else None) == verdict
    if read is not None:
        assert (read[0] >= 0.5) is parse_verdict(text)


def test_a_cascade_audit_whose_llm_verdict_cannot_be_read_is_counted_unresolved():
    # The report kept only audits with a readable LLM probability: all three unreadable, it showed no audit table
    # at all; mixed, the audited count dropped the unreadable ones without a word.
    from dataclasses import asdict

    from engine.config import ReportConfig
    from engine.report.data import _cascade_audit

    class Maybe:
        def chat(self, convs, sampling):
            return [ChatOutput(texts=["maybe"]) for _ in convs]

        def close(self):
            pass

    settings = JudgeConfig(cascade=CascadeConfig(enabled=True, low=0.2, high=0.8, audit_rate=1.0))
    (group,) = drive(Maybe(), [judge_group("G", "p", ["a", "b", "c"], settings,
                                           SamplingParams(temperature=0.0, max_tokens=4), cheap=lambda i, j: 0.01)])
    rows = [dict(asdict(p), prompt_id="p") for p in group.pairs]
    assert all(r["decided_by"] == "cheap" and r["p_audit"] is None and r["calls"] > 0 for r in rows)
    audit = _cascade_audit(rows, 0.5, ReportConfig())
    assert audit is not None and audit["pairs"] == 0 and audit["unresolved"] == 3
    rows[0]["p_audit"] = 0.1  # one read: "different", as the cheap verdict
    audit = _cascade_audit(rows, 0.5, ReportConfig())
    assert (audit["pairs"], audit["unresolved"], audit["agree"]) == (1, 2, 1)
    # Cheap decisions that were not audited are no audit.
    assert _cascade_audit([{**r, "calls": 0, "raw": "", "p_audit": None} for r in rows], 0.5, ReportConfig()) is None
