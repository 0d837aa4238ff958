"""The plan: calls counted by hand on a small config, costs from prices, the cost cap refusing a run before any
stage, and `engine/run.py plan` on the paper's preset without a model or the network."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.pipeline import Pipeline
from engine.execution.plan import make_plan
from engine.inputs.prompts import make_prompt

REPO = Path(__file__).resolve().parents[3]
PRICES = {"prompt_per_mtok": 2.5, "completion_per_mtok": 10.0}
API = {"name": "api", "backend": "http", "model": "gpt-4o",
       "options": {"base_url": "http://127.0.0.1:9/v1", "prices": PRICES}}
LOCAL = {"name": "local", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted"}


def cfg(tmp_path, **over):
    return config_from_dict({"run_dir": str(tmp_path / "run"), "n": 3, "strategies": ["temperature", "regen_general"],
                             "generators": [LOCAL], "judges": [API, LOCAL], "quality": {"enabled": False},
                             "accuracy": {"enabled": False}, "sampling": {"max_tokens": 100}, **over})


PROMPTS = [make_prompt("Write a haiku about rain.", source="t", gold_category="G"),
           make_prompt("Plan a picnic.", source="t")]


def by_role(plan):
    return {(r.role, r.model): r for r in plan.roles}


def test_calls_are_counted_as_the_method_makes_them(tmp_path):
    plan = make_plan(cfg(tmp_path), PROMPTS)
    assert (plan.prompts, plan.prompts_without_gold, plan.groups, plan.responses, plan.pairs) == (2, 1, 4, 12, 12)
    r = by_role(plan)
    # own classification: one call per prompt (two with the reminder); the reference: the ungold prompt, per judge
    assert (r[("classify (own)", "local")].calls_low, r[("classify (own)", "local")].calls_high) == (2, 4)
    assert (r[("classify (reference)", "api")].calls_low, r[("classify (reference)", "api")].calls_high) == (1, 2)
    # the local judge generates too: it votes from its own classification of every prompt, no call more
    assert ("classify (reference)", "local") not in r
    # generation: temperature one request per prompt, regen n per prompt; at most n × max_tokens per group
    gen = r[("generate", "local")]
    assert (gen.calls_low, gen.calls_high, gen.output_tokens_high) == (2 + 6, 2 + 6, 4 * 3 * 100)
    # judging: 3 pairs per group; pruning asks between n − 1 = 2 and 3, each possibly twice
    judge = r[("judge", "api")]
    assert (judge.calls_low, judge.calls_high) == (4 * 2, 4 * 3 * 2)
    assert judge.output_tokens_low == 8  # one token where log-probs decide


def test_both_orders_and_text_verdicts_change_the_counts(tmp_path):
    plan = make_plan(cfg(tmp_path, judge={"both_orders": True, "max_tokens": 4},
                         judges=[{**API, "verdict": "text"}]), PROMPTS)
    judge = by_role(plan)[("judge", "api")]
    assert (judge.calls_low, judge.calls_high, judge.output_tokens_high) == (16, 48, 48 * 4)


def test_the_agreement_sample_is_counted_at_the_low_end(tmp_path):
    # Every group drawn: every pair judged, so the low end is the pairs; none drawn: the pruned minimum.
    judge = by_role(make_plan(cfg(tmp_path, judge={"agreement_sample_rate": 1.0}), PROMPTS))[("judge", "api")]
    assert (judge.calls_low, judge.calls_high) == (4 * 3, 4 * 3 * 2)
    judge = by_role(make_plan(cfg(tmp_path, judge={"agreement_sample_rate": 0.0}), PROMPTS))[("judge", "api")]
    assert (judge.calls_low, judge.calls_high) == (4 * 2, 4 * 3 * 2)


def test_judging_every_pair_is_counted_at_the_low_end(tmp_path):
    # judge.all_pairs judges every pair (none implied by union-find): the low end was the pruned minimum.
    judge = by_role(make_plan(cfg(tmp_path, judge={"all_pairs": True}), PROMPTS))[("judge", "api")]
    assert (judge.calls_low, judge.calls_high) == (4 * 3, 4 * 3 * 2)


def test_costs_come_from_prices_and_unpriced_api_models_are_unknown(tmp_path):
    plan = make_plan(cfg(tmp_path), PROMPTS)
    api = [r for r in plan.roles if r.model == "api"]
    want = sum((r.input_tokens_high * 2.5 + r.output_tokens_high * 10.0) / 1e6 for r in api)
    assert plan.cost_high == pytest.approx(want) and 0 < plan.cost_low < plan.cost_high
    unpriced = make_plan(cfg(tmp_path, judges=[{**API, "options": {"base_url": "http://127.0.0.1:9/v1"}}]), PROMPTS)
    assert unpriced.cost_high is None and unpriced.unpriced() == ["classify (reference) api", "judge api"]


def test_the_cost_cap_refuses_before_any_stage(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"text": "Write a haiku about rain.", "gold_category": "G"}\n{"text": "Plan a picnic."}\n')
    config = cfg(tmp_path, prompts={"source": "jsonl", "path": str(jsonl)}, execution={"executor": "local",
                                                                                     "max_cost_usd": 0.001})
    with pytest.raises(ConfigError,
                       match=r"max_cost_usd: the plan's upper bound \$0\.\d\d exceeds the cap \$0\.00") as e:
        Pipeline(config, progress=False).run()
    assert "judge" in str(e.value) and "calls (low–high)" in str(e.value)
    assert not (tmp_path / "run" / "shards").exists()
    # Nor a running config: it read as a run that stopped part-way (explore and compare warned of one).
    assert not (tmp_path / "run" / "config.running.yaml").exists()


def test_the_plan_command_on_the_paper_preset_needs_no_model_and_no_network(capsys, monkeypatch, tmp_path):
    import json

    from engine.api import load_config
    from engine.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    # Nothing fetched yet: the paper's 344 prompts are counted from its composition, and the fetch command named.
    assert main(["plan", "--config", "configs/paper.yaml"]) == 0
    out = capsys.readouterr().out
    assert "prompts: 344" in out and "python engine/run.py fetch simpleqa" in out and "total cost: $" in out
    # Counted as they will run: the benchmarks' gold categories (only Community Alignment and WildBench are
    # classified) and SimpleQA's graded answers (before, 344 were counted as classified and no accuracy at all).
    assert "prompts: 344 (94 without a gold category)" in out and "\naccuracy " in out
    assert "execution.max_cost_usd: $1,100.00 — within" in out  # the preset caps its spend
    # Priced judges and no cap: nothing refuses the run nor stops it, which the plan says.
    assert main(["plan", "--config", "configs/paper.yaml", "--set", "execution.max_cost_usd=null"]) == 0
    assert "execution.max_cost_usd: not set — nothing refuses this run" in capsys.readouterr().out
    # Above the cap the run refuses to start: plan's exit code says so too (2, as the run's), and its JSON carries
    # the verdict and the notes (a script gating on it could not tell).
    assert main(["plan", "--config", "configs/paper.yaml", "--set", "execution.max_cost_usd=1"]) == 2
    assert "execution.max_cost_usd: $1.00 — ABOVE — the run would refuse to start" in capsys.readouterr().out
    assert main(["plan", "--config", "configs/paper.yaml", "--set", "execution.max_cost_usd=1", "--json"]) == 2
    above = json.loads(capsys.readouterr().out)
    assert above["max_cost_usd"] == 1 and above["within_cap"] is False
    assert any("fetch simpleqa" in note for note in above["notes"])
    assert main(["plan", "--config", "configs/paper.yaml", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["within_cap"] is True and plan["max_cost_usd"] == 1100
    cfg = load_config("configs/paper.yaml")
    (accuracy,) = [r for r in plan["roles"] if r["role"] == "accuracy"]
    # SimpleQA's 50, each graded once per response (the low end): each placeholder is its own prompt (before, the 50
    # shared one id, and were graded as one).
    assert accuracy["calls_low"] == 50 * len(cfg.strategies) * len(cfg.generators) * cfg.n == 2500
    if not (REPO.parent / "shared" / "datasets" / "math500" / "test.jsonl").is_file():
        return
    assert main(["fetch", "--from", str(REPO.parent / "shared" / "datasets")]) == 0
    capsys.readouterr()
    assert main(["plan", "--config", "configs/paper.yaml"]) == 0
    out = capsys.readouterr().out
    assert "prompts: 344 (94 without a gold category)" in out and "fetch community_alignment wildbench" in out
    assert "judge" in out and "gpt-4o" in out
    # An error in what is there stops the plan as it would stop the run: before, it was swallowed (a source not
    # fetched was taken to explain it) and the plan counted only the 94 placeholders, exit 0.
    assert main(["plan", "--config", "configs/paper.yaml", "--set", "prompts.paths.simpleqa=/no/such/file.csv"]) == 2
    captured = capsys.readouterr()
    assert "prompts:" not in captured.out and "/no/such/file.csv" in captured.err + captured.out
    # A prompt cap leaves the long prompts out of each source's pool before the draw: the mix keeps its shape.
    assert main(["plan", "--config", "configs/paper.yaml", "--set", "prompts.max_prompt_chars=300"]) == 0
    captured = capsys.readouterr()
    assert "prompts: 344 (94 without a gold category)" in captured.out


def test_generation_requests_follow_what_an_endpoint_serves_per_request(tmp_path):
    def generate(**options):
        gen = {"name": "api-gen", "backend": "http", "model": "m",
               "options": {"base_url": "http://127.0.0.1:9/v1", "prices": PRICES, **options}}
        plan = make_plan(cfg(tmp_path, generators=[gen], strategies=["temperature"]), PROMPTS)
        return by_role(plan)[("generate", "api-gen")]

    # n = 3, two prompts: one request each where n is served at once, three where one completion per request
    # (Anthropic's), one to three for an endpoint not known; each request carries the prompt again.
    one, unknown = generate(completions_per_request=1), generate()
    assert (one.calls_low, one.calls_high) == (6, 6) and (unknown.calls_low, unknown.calls_high) == (2, 6)
    assert one.input_tokens_low == 3 * unknown.input_tokens_low and one.input_tokens_high == unknown.input_tokens_high
    local = by_role(make_plan(cfg(tmp_path, strategies=["temperature"]), PROMPTS))[("generate", "local")]
    assert (local.calls_low, local.calls_high) == (2, 2)
    anthropic = generate(base_url="https://api.anthropic.com/v1/")
    assert (anthropic.calls_low, anthropic.calls_high) == (6, 6)


def test_a_files_groups_are_counted_at_their_size_and_length(tmp_path):
    """A responses file's groups need not hold n responses of max_tokens each: counted as they are, the cap holds
    (before: 2 groups of 6 long responses were planned as 2 x 3 pairs of 100-token answers)."""
    from engine.inputs.responses import ExternalGroup

    long = "word " * 3000  # 15,000 characters: past judge.max_response_chars (4,000) and max_tokens x 4 (400)
    groups = [ExternalGroup(p.prompt_id, "m", "s", [(k, f"{k} {long}") for k in range(6)]) for p in PROMPTS]
    config = cfg(tmp_path, quality={"enabled": True}, judges=[API])
    plan = make_plan(config, PROMPTS, groups)
    assert (plan.groups, plan.responses, plan.pairs) == (2, 12, 30)
    judge, grade = by_role(plan)[("judge", "api")], by_role(plan)[("grade", "api")]
    assert (judge.calls_low, judge.calls_high) == (2 * 5, 30 * 2)
    # judge.all_pairs: every pair of a file's groups too (the low end was the pruned minimum for files only).
    judge = by_role(make_plan(cfg(tmp_path, judges=[API], judge={"all_pairs": True}), PROMPTS, groups))[
        ("judge", "api")]
    assert (judge.calls_low, judge.calls_high) == (30, 30 * 2)
    # Inside a judge prompt each response is cut to 4,000 characters (1,000 tokens): every pair holds two.
    assert judge.input_tokens_high >= 30 * 2 * 2 * 1000
    # A grade prompt holds the whole response (3,750 tokens), each response graded up to twice.
    assert grade.calls_high >= 24 and grade.input_tokens_high >= 12 * 2 * 3750


def test_grades_hold_whole_responses_and_accuracy_counts_prompts_the_run_may_classify_a(tmp_path):
    # Generated responses of 4,096 tokens: a grade prompt holds all of them, not the judge's 4,000-character cut.
    config = cfg(tmp_path, judges=[API], quality={"enabled": True}, sampling={"max_tokens": 4096},
                 accuracy={"enabled": True})
    grade = by_role(make_plan(config, PROMPTS))[("grade", "api")]
    assert grade.input_tokens_high >= 2 * 12 * 4096
    # A gold answer without a gold category (lm-eval's, Inspect's targets): the run's classification decides the
    # check, and A is graded — counted at the high end, not at the low.
    golds = [make_prompt("Capital of France?", source="inspect", gold_answer="Paris"),
             make_prompt("Capital of Peru?", source="inspect", gold_answer="Lima", gold_category="A"),
             make_prompt("Write a poem.", source="inspect", gold_answer="-", gold_category="G")]
    acc = by_role(make_plan(config, golds))[("accuracy", "api")]
    per_prompt = 2 * 3  # strategies x n, one generator
    assert (acc.calls_low, acc.calls_high) == (1 * per_prompt, 2 * 2 * per_prompt)


def test_misspelt_prices_are_refused_in_preflight_naming_the_key(tmp_path):
    from engine.execution.preflight import preflight

    bad = {**API, "options": {**API["options"], "prices": {"prompt_per_mtok": 2.5, "output_per_mtok": 10.0}}}
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.prices: prices must be"):
        preflight(cfg(tmp_path, judges=[bad]))
    # The plan reads such prices as none (unknown cost), never as a KeyError.
    assert by_role(make_plan(cfg(tmp_path, judges=[bad]), PROMPTS))[("judge", "api")].cost(True) is None


def test_a_files_traces_are_priced_at_their_own_length(tmp_path):
    # judge.target both: a file's traces (given, or inline reasoning split off) are judged too, at their length —
    # before, at the answers' length, far below a long trace's.
    from engine.inputs.responses import ExternalGroup

    trace = "step " * 2000  # 10,000 characters: cut to judge.max_response_chars (4,000) in the judge prompt
    given = ExternalGroup(PROMPTS[0].prompt_id, "m", "s", [(k, f"answer {k}") for k in range(3)],
                          traces={k: trace for k in range(3)})
    inline = ExternalGroup(PROMPTS[1].prompt_id, "m", "s", [(k, f"<think>{trace}</think>answer {k}") for k in range(3)])
    answers_only = by_role(make_plan(cfg(tmp_path, judges=[API]), PROMPTS, [given, inline]))[("judge", "api")]
    both = by_role(make_plan(cfg(tmp_path, judges=[API], judge={"target": "both"}), PROMPTS,
                             [given, inline]))[("judge", "api")]
    assert (both.calls_low, both.calls_high) == (answers_only.calls_low, 2 * answers_only.calls_high)
    # 2 groups x 3 pairs x 2 attempts of two 1,000-token traces, beside answers of a few tokens.
    assert both.input_tokens_high - answers_only.input_tokens_high >= 2 * 3 * 2 * 2 * 1000
    assert answers_only.input_tokens_high < 2 * 3 * 2 * 600  # the inline trace is not priced as the answer


def test_an_api_embedder_is_priced_and_counted_twice_beside_a_cheap_judge(tmp_path):
    # The embedder had no role in the plan: an HTTP embedder's tokens were never priced, and one without prices did
    # not make the cost unknown (max_cost_usd passed it).
    embedder = {"backend": "http", "model": "text-embedding-3-large",
                "options": {"base_url": "http://127.0.0.1:9/v1",
                            "prices": {"prompt_per_mtok": 0.13, "completion_per_mtok": 0.0}}, "batch_size": 5}
    embed = by_role(make_plan(cfg(tmp_path, embedder=embedder), PROMPTS))[("embed", "text-embedding-3-large")]
    # 12 responses of 1 to max_tokens (100) tokens, once (the metrics), in batches of 5
    assert (embed.calls_low, embed.input_tokens_low, embed.input_tokens_high) == (3, 12, 1200)
    assert embed.cost(True) == pytest.approx(1200 * 0.13 / 1e6)
    # With the cascade the judges' hosts embed every group's responses again, and its prompt: 2 × 12 + 4 texts
    cascade = make_plan(cfg(tmp_path, embedder=embedder, judge={"cascade": {"enabled": True}}), PROMPTS)
    embed = by_role(cascade)[("embed", "text-embedding-3-large")]
    prompt_tokens = 2 * (7 + 4)  # "Write a haiku about rain." (25 chars) and "Plan a picnic." (14), per strategy
    assert (embed.calls_low, embed.input_tokens_low) == (math.ceil(28 / 5), 2 * 12 + prompt_tokens)
    unpriced = {**embedder, "options": {"base_url": "http://127.0.0.1:9/v1"}}
    plan = make_plan(cfg(tmp_path, embedder=unpriced), PROMPTS)
    assert plan.cost_high is None and "embed text-embedding-3-large" in plan.unpriced()
    assert not [r for r in make_plan(cfg(tmp_path), PROMPTS).roles if r.role == "embed"]  # local: nothing billed


def test_plan_refuses_what_the_run_would_refuse_in_the_config_and_notes_a_key_not_set_here(capsys, monkeypatch):
    # A misspelt option or a bad price passed the plan (exit 0, "within" the cap, priced as unknown) and stopped the
    # run after its models loaded; a key missing on the planning machine is only a note (the run may run elsewhere).
    from engine.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "judges.0.options.base_ur=https://x"]) == 2
    # Named in its file, as the load's own errors are (a model check's message named the key alone).
    assert capsys.readouterr().err.startswith(
        "error: configs/real-audit.yaml: judges[0].options.base_ur: the http chat backend takes no option 'base_ur' "
        "(did you mean 'base_url'?)")
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set",
                 "judges.2.options.prices.prompt_per_mtok=abc"]) == 2
    assert "judges[2].options.prices" in capsys.readouterr().err
    # the cascade's coefficients too (the run refused a missing file the plan had passed)
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "judge.cascade.enabled=true",
                 "--set", "judge.cascade.coefficients=/nonexistent.json"]) == 2
    assert "judge.cascade.coefficients: /nonexistent.json" in capsys.readouterr().err
    assert main(["plan", "--config", "configs/real-audit.yaml"]) == 0
    out = capsys.readouterr().out
    assert "note: judges[1].options.api_key_env: ANTHROPIC_API_KEY is not set here; the run needs it" in out
    # A python: backend without --allow-python-backends: planned and priced, where the run refuses the config.
    monkeypatch.delenv("TASKDIV_ALLOW_PYTHON_BACKENDS", raising=False)
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set",
                 "generators.0.backend=python:tests.support.doubles:ScriptedChat"]) == 2
    assert "generators[0].backend: 'python:tests.support.doubles:ScriptedChat' runs Python code" in \
        capsys.readouterr().err
    # A model folder this machine lacks: exit 0 with nothing said, where the run refuses it.
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "embedder.model=/no/such/embedder"]) == 0
    assert "note: embedder.model: '/no/such/embedder' is neither a packaged model" in capsys.readouterr().out


def test_a_vllm_context_too_short_for_the_system_and_regen_strategies_is_refused_before_generation(capsys,
                                                                                                monkeypatch):
    # n 10 × 1,024 tokens against max_model_len 8,192: every system-prompt group failed row by row
    # at generation, while the temperature groups were judged and paid for.
    from engine.cli import main
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.execution.preflight import preflight

    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "n=10"]) == 2
    assert "generators[0].options.max_model_len (llama-3.1-8b-instruct): 8192 tokens cannot hold the 10240" \
        in capsys.readouterr().err
    config = load_config("configs/real-audit.yaml", {"n": 10})
    with pytest.raises(ConfigError, match="cannot hold the 10240 that system_general, system_anchored ask"):
        preflight(config)
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "n=10", "--set",
                 "strategies=[temperature,regen_general]", "--set", "execution.max_cost_usd=1000"]) == 0
    # (regeneration fills it only at every limit; n = 10 costs more than the preset's cap)


def test_plan_of_a_benchmark_not_fetched_says_plan_never_downloads(tmp_path, capsys, monkeypatch):
    # It said "this run is offline (models.offline)" of a config with offline: false: plan never downloads.
    from engine.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    assert main(["plan", "--config", "configs/real-audit.yaml", "--set", "prompts.source=simpleqa"]) == 2
    err = capsys.readouterr().err
    assert "source simpleqa is not fetched yet, and plan reads only what is cached (it never downloads); the run " \
           "itself would fetch it" in err and "this run is offline" not in err


def test_a_vllm_model_whose_own_context_is_too_short_is_refused_without_max_model_len(tmp_path):
    # Without options.max_model_len vLLM serves the model's own context: a 2,048-token model under n 5 × 512 tokens
    # failed every system-prompt group at generation, as an explicit max_model_len of 2,048 is refused.
    from engine.config import config_from_dict
    from engine.errors import ConfigError
    from engine.execution.preflight import check_written_config, preflight
    from tests.support.hub import tiny_chat_model

    folder = tiny_chat_model(tmp_path / "tiny")  # its config.json: max_position_embeddings 2048

    def config(max_tokens, **options):
        return config_from_dict({"n": 5, "sampling": {"max_tokens": max_tokens},
                                 "generators": [{"name": "tiny", "backend": "vllm", "model": str(folder),
                                                 "options": options}]})

    for check in (preflight, check_written_config):
        with pytest.raises(ConfigError, match=r"generators\[0\]\.model \(tiny\): its context of 2048 tokens .* cannot "
                                              r"hold the 2560 that system_general, system_anchored ask for"):
            check(config(512))
    check_written_config(config(256))  # 1,280 fits
    check_written_config(config(512, max_model_len=4096))  # the option is what vLLM serves
    import json

    stated = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**stated, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}))
    check_written_config(config(512))  # scaled positions: vLLM may serve more than the config states
    for rope in ({"rope_type": "linear", "factor": 4.0}, {"full_attention": {"rope_type": "yarn", "factor": 2}}):
        (folder / "config.json").write_text(json.dumps({**stated, "rope_parameters": rope}))  # transformers 5
        check_written_config(config(512))
    (folder / "config.json").write_text(json.dumps({**stated, "rope_parameters": {"rope_type": "default",
                                                                                  "rope_theta": 1e4}}))
    with pytest.raises(ConfigError, match="its context of 2048 tokens"):
        check_written_config(config(512))


def test_the_cap_counts_only_what_a_rerun_does_not_read_back(tmp_path, capsys):
    """A strategy added to a finished run computes only its groups, yet the cap was held against the whole run's
    bound: a rerun whose new work fits the cap was refused. Groups stored under other settings count again."""
    from engine.cli import main
    from engine.config import dump_yaml
    from tests.support.doubles import ScriptedChat
    from tests.support.serve import ChatServer

    with ChatServer(ScriptedChat()) as server:
        judge = {"name": "j", "backend": "http", "model": "scripted",
                 "options": {"base_url": server.base_url, "prices": {"prompt_per_mtok": 1000.0,
                                                                     "completion_per_mtok": 1000.0}}}

        def config(strategies, cap, **judge_options):
            c = config_from_dict({
                "run_dir": str(tmp_path / "run"), "n": 3, "strategies": strategies, "generators": [LOCAL],
                "judges": [{**judge, "options": {**judge["options"], **judge_options}}],
                "quality": {"enabled": False}, "accuracy": {"enabled": False},
                "prompts": {"source": "builtin", "limit": 2}, "sampling": {"max_tokens": 50},
                "execution": {"executor": "local", "max_cost_usd": cap, "probe_endpoints": False}})
            (tmp_path / "c.yaml").write_text(dump_yaml(c.to_dict(redact=False)))
            return c

        def bound(c):
            from engine.execution.pipeline import load_run_prompts
            from engine.inputs.loaders.paper import PresetReport

            return make_plan(c, load_run_prompts(c, PresetReport(), offline=True)[0]).cost_high

        def run(c):
            pipeline = Pipeline(c, progress=False)
            try:
                return pipeline.run()
            finally:
                pipeline.close()

        one, two = bound(config(["temperature"], None)), bound(config(["temperature", "system_general"], None))
        assert two == pytest.approx(2 * one)
        cap = 1.5 * one  # over one strategy's bound, under both
        run(config(["temperature"], cap))
        asked = len(server.requests)
        # `plan` says what the rerun would count; the rerun runs, and judges only the new strategy's groups.
        assert main(["plan", "--config", str(tmp_path / "c.yaml"), "--allow-python-backends"]) == 0
        shown = capsys.readouterr().out
        assert "reused: 2 of these groups are stored" in shown and "within" in shown
        second = config(["temperature", "system_general"], cap)
        result = run(second)
        assert not result.failed_shards() and len(server.requests) - asked == asked
        # What it cost is said in the report and the command's summary (it was in report.json alone).
        from engine.cli.run import summary
        from engine.report.data import report_data
        from engine.report.markdown import render_markdown

        spent = sum(r.backend["cost_usd"] for r in result.stages if (r.backend or {}).get("cost_usd") is not None)
        assert 0 < spent <= cap
        assert f"Cost of this run, as the backends reported it: ${spent:,.4f}" in render_markdown(
            report_data(result, second))
        assert f"  cost: ${spent:,.4f} as the backends reported it" in summary(
            result, {"html": tmp_path / "r.html", "markdown": tmp_path / "r.md"}, 1.0)
        # The judge asked otherwise (another timeout keys nothing, but its entry differs): all of it counts again.
        with pytest.raises(ConfigError, match=r"upper bound \$[\d.]+ exceeds the cap"):
            run(config(["temperature", "system_general"], cap, timeout_s=31.0))


def test_a_prompt_relabelled_in_place_is_not_counted_as_stored(tmp_path):
    # A gold category or answer edited in the prompts file keys the judging, the checklists and the accuracy checks
    # anew, but the prompt's id (its source and text) stays: the bound counted those groups as stored, free, and the
    # rerun paid for them past it. So did a change of the reference classifiers for prompts without a gold category.
    import json

    from engine.execution.plan import less_stored
    from engine.execution.results import finished_groups
    from tests.support.runs import SCRIPTED, make_config, run

    path = tmp_path / "prompts.jsonl"
    rows = [{"text": "Write a haiku about rain.", "gold_category": "G"},
            {"text": "What is 6 times 7?", "gold_category": "A", "gold_answer": "42"},
            {"text": "Name a colour."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def config(**over):
        return make_config(tmp_path, prompts={"source": "jsonl", "path": str(path)}, n=3,
                           strategies=["temperature"], **over)

    def reused(c):
        from engine.execution.pipeline import load_run_prompts
        from engine.inputs.loaders.paper import PresetReport

        prompts = load_run_prompts(c, PresetReport(), offline=True)[0]
        return less_stored(make_plan(c, prompts), c, prompts, *finished_groups(c.run_dir)).reused_groups

    first = config()
    run(first)
    assert reused(first) == 3
    rows[0]["gold_category"], rows[1]["gold_answer"] = "B", "41"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert reused(config()) == 1  # the unlabelled prompt only
    other_judge = {**SCRIPTED, "name": "other"}
    rows[0]["gold_category"], rows[1]["gold_answer"] = "G", "42"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # Another judge votes the reference classification: the unlabelled prompt may be judged under another category.
    assert reused(config(judges=[SCRIPTED, other_judge])) == 2


def test_a_file_whose_every_group_has_one_response_is_refused_before_any_call(tmp_path, capsys):
    # lm-eval's default is one generation per document (repeats: 1): such a file was classified (paid), every group
    # left out as short, and the report gave it a group size of n.
    import json

    from engine.cli import main

    path = tmp_path / "one.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "response": "x"}) + "\n" for p in ("A?", "B?")))
    config = tmp_path / "c.yaml"
    config.write_text(f"prompts: {{source: responses, path: {path}}}\n")
    assert main(["plan", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "every group (2) has one response" in err and "repeats" in err


def test_a_greedy_system_prompt_group_is_bounded_by_one_attempt():
    # A short completion at temperature 0 is not asked again (greedy decoding splits the same way): the bound
    # counted two attempts, twice what a sweep through 0 can spend.
    from engine.config import config_from_dict
    from engine.execution.pipeline import load_run_prompts
    from engine.inputs.loaders.paper import PresetReport

    def generate(temperature):
        c = config_from_dict({"run_dir": "unused", "prompts": {"source": "builtin", "limit": 2}, "n": 5,
                              "strategies": ["system_general"], "sampling": {"temperature": temperature}})
        (r,) = [r for r in make_plan(c, load_run_prompts(c, PresetReport(), offline=True)[0]).roles
                if r.role == "generate"]
        return r.calls_high, r.output_tokens_high

    assert generate(0.0) == (2, 2 * 5 * 1024) and generate(0.7) == (4, 2 * 2 * 5 * 1024)


def test_a_role_whose_prompts_or_stage_changed_since_the_stored_run_is_counted_again(tmp_path, monkeypatch):
    # An upgrade that changes a stage's texts (the short-answer grader's, 2026-12-03) asks its stored work again:
    # the bound counted it as stored, free, and the run paid for it past the cap. The finished run records what
    # keyed each role's work; a run of a version that recorded nothing counts every role again.
    import json

    from engine.execution import plan as plan_module
    from engine.execution.pipeline import load_run_prompts
    from engine.execution.plan import less_stored
    from engine.execution.results import finished_groups
    from engine.inputs.loaders.paper import PresetReport
    from tests.support.runs import make_config, run

    c = make_config(tmp_path, prompts={"source": "builtin", "limit": 2}, n=3, strategies=["temperature"])
    run(c)
    prompts = load_run_prompts(c, PresetReport(), offline=True)[0]

    def costs():
        stored = finished_groups(c.run_dir)
        return {r.role: r.calls_high for r in less_stored(make_plan(c, prompts), c, prompts, *stored).roles}

    full = {r.role: r.calls_high for r in make_plan(c, prompts).roles}
    assert set(costs().values()) == {0} and set(full.values()) != {0}  # every role stored
    real = plan_module.work_versions
    monkeypatch.setattr(plan_module, "work_versions", lambda: {**real(), "grade": ["another checklist text"]})
    assert costs()["grade"] == full["grade"] and costs()["judge"] == 0
    monkeypatch.setattr(plan_module, "work_versions", real)
    stats = Path(c.run_dir) / "run_stats.json"
    data = json.loads(stats.read_text())
    data.pop("work_versions")  # written by an earlier version
    stats.write_text(json.dumps(data))
    assert costs() == full
