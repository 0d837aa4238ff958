import re

import pytest

from engine.config import RunConfig, config_from_dict, load_config
from engine.errors import ConfigError


def test_defaults_are_the_papers():
    cfg = RunConfig()
    assert cfg.n == 5
    assert (cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.max_tokens) == (1.0, 0.9, 1024)
    assert cfg.strategies == ["temperature", "system_general", "system_anchored", "regen_general", "regen_anchored"]


def test_demo_config_loads():
    from engine.cli.common import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG)
    assert cfg.n == 5 and len(cfg.strategies) == 5 and cfg.prompts.per_category >= 2


def test_nested_values_and_overrides():
    cfg = config_from_dict({"judge": {"both_orders": True}, "generators": [{"name": "m", "temperature": 0.5}]},
                           overrides={"sampling.max_tokens": 32, "n": 3})
    assert cfg.judge.both_orders and cfg.generators[0].temperature == 0.5
    assert cfg.sampling.max_tokens == 32 and cfg.n == 3


# Errors name the file and the key path.
def test_unknown_key_names_the_path(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sampling:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: sampling\.temprature: unknown key"):
        load_config(path)


def test_wrong_type_names_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("n: five\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: n: expected an integer, got 'five'"):
        load_config(path)


def test_wrong_type_in_a_list_names_the_index():
    with pytest.raises(ConfigError, match=r"judges\[1\]\.num_actors: expected an integer"):
        config_from_dict({"judges": [{"name": "a"}, {"name": "b", "num_actors": "many"}]})


def test_bool_is_not_an_integer():
    with pytest.raises(ConfigError, match="n: expected an integer"):
        config_from_dict({"n": True})


def test_literal_values_are_checked():
    with pytest.raises(ConfigError, match=r"prompts\.on_error: expected one of 'fail', 'skip'"):
        config_from_dict({"prompts": {"on_error": "ignore"}})


def test_invalid_values():
    with pytest.raises(ConfigError, match="n: must be >= 2"):
        config_from_dict({"n": 1})
    with pytest.raises(ConfigError, match="unknown"):
        config_from_dict({"strategies": ["temperature", "beam"]})
    with pytest.raises(ConfigError, match="unique"):
        config_from_dict({"judges": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ConfigError, match=r"judges\[0\]\.backend: must be one of"):
        config_from_dict({"judges": [{"backend": "grpc"}]})
    # NumPy's generator takes no negative seed: a finished run lost its report to a traceback.
    with pytest.raises(ConfigError, match=r"report\.seed: must be an integer >= 0, got -1"):
        config_from_dict({"report": {"seed": -1}})
    # A negative checklist budget lowered the plan's cost bound under the cap; 0 failed after sampling was paid.
    for bad in (-2000, 0):
        with pytest.raises(ConfigError, match=r"quality\.checklist_max_tokens: must be a whole number of tokens >= 1"):
            config_from_dict({"quality": {"checklist_max_tokens": bad}})
    # "" wrote the run into the current folder (a user's own config.yaml there was replaced).
    with pytest.raises(ConfigError, match="run_dir: must name a folder"):
        config_from_dict({"run_dir": "  "})


def test_a_key_that_is_not_a_name_is_refused_naming_where(tmp_path):
    # YAML 1.1 reads an unquoted `on:` as true and `0.9:` as a number: sorting them among the names was a TypeError.
    path = tmp_path / "c.yaml"
    path.write_text("on: 1\nfoo: 2\n")
    with pytest.raises(ConfigError, match=r"the key True is not a name \(YAML reads an unquoted on/off/yes/no"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^<config>: sampling: the key 0.9 is not a name$"):
        config_from_dict({"sampling": {"temperature": 1.0, 0.9: "top_p"}})
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options: the key 2 is not a name"):
        config_from_dict({"judges": [{"options": {"device": "cpu", 2: "x"}}]})
    # a value under an option may map numbers (logit_bias: token ids)
    config_from_dict({"judges": [{"options": {"extra_body": {"logit_bias": {42: -100}}}}]})


def test_a_check_across_keys_names_the_overrides_that_set_them(tmp_path):
    # The cascade's low set by --set against the file's default threshold: the error blamed the file alone.
    path = tmp_path / "small.yaml"
    path.write_text("n: 3\n")
    with pytest.raises(ConfigError, match=r"small\.yaml with --set judge\.cascade\.enabled, judge\.cascade\.low: "
                                          r"judge\.threshold"):
        load_config(path, {"judge.cascade.enabled": True, "judge.cascade.low": 0.6})


def test_a_sweep_record_that_does_not_hold_its_generators_values_is_refused():
    # An edited record labelled groups sampled at 0.2 as a sweep's 1.0 in the report.
    with pytest.raises(ConfigError, match=r"generators\[0\]\.sweep: records temperature 1.0 and top_p 0.9, but"):
        config_from_dict({"generators": [{"name": "g", "temperature": 0.2,
                                          "sweep": {"base": "h", "temperature": 1.0, "top_p": 0.9}}]})
    swept = config_from_dict({"sampling": {"temperature": [0.3, 1.0]}})
    again = config_from_dict(swept.to_dict(redact=False))  # a run's own config.yaml reads back
    assert [g.name for g in again.generators] == [g.name for g in swept.generators]


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n: 5\nsampling: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+: invalid YAML"):
        load_config(path)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # The last of two `judges:` blocks (or two `n:`) won, unsaid: the first block's judges were dropped.
    path = tmp_path / "twice.yaml"
    path.write_text("n: 5\njudges:\n  - {name: a}\nsampling: {temperature: 1.0}\njudges:\n  - {name: b}\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: line 5: .*the key 'judges' is given twice .*first at line 2"):
        load_config(path)
    path.write_text("generators:\n  - {name: a, model: x, model: y}\n")
    with pytest.raises(ConfigError, match=r"the key 'model' is given twice"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("section, message", [
    ({"generators": [{"name": "g", "num_actors": 0}]}, r"generators\[0\]\.num_actors: must be >= 1, got 0"),
    ({"judges": [{"name": "j", "batch_size": 0}]}, r"judges\[0\]\.batch_size: must be >= 1, got 0"),
    ({"embedder": {"num_actors": 0}}, r"embedder\.num_actors: must be >= 1"),
    ({"embedder": {"batch_size": -1}}, r"embedder\.batch_size: must be >= 1"),
    ({"quality": {"reward_model": {"model": "rm", "num_gpus": -1}}},
     r"quality\.reward_model\.num_gpus: must be a finite number >= 0"),
], ids=["generator-actors", "judge-batch", "embedder-actors", "embedder-batch", "reward-gpus"])
def test_actor_pool_fields_are_checked_for_every_model_role(section, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(section)


# Sampling and judge settings are checked when the config loads, naming the key, not when a worker builds a stage.
@pytest.mark.parametrize("section, message", [
    ({"sampling": {"top_p": 1.5}}, r"sampling\.top_p: must be in \(0, 1\], got 1.5"),
    ({"sampling": {"temperature": -1}}, r"sampling\.temperature: must be in \[0, 5\]"),
    ({"sampling": {"max_tokens": 0}}, r"sampling\.max_tokens: must be an integer >= 1"),
    ({"generators": [{"temperature": 7}]}, r"generators\[0\]\.temperature: must be in \[0, 5\]"),
    ({"judge": {"threshold": 1.2}}, r"judge\.threshold: must be in \[0, 1\]"),
    # The cascade's confident pairs are read against the threshold: outside the band, a confident p of 0.92 read
    # "different" under threshold 0.95.
    ({"judge": {"threshold": 0.95, "cascade": {"enabled": True}}},
     r"judge\.threshold: with the cascade on, need cascade\.low < threshold <= cascade\.high, got low 0\.1, "
     r"threshold 0\.95, high 0\.9"),
    ({"judge": {"cascade": {"enabled": True, "low": 0.6, "high": 0.9}}}, r"judge\.threshold: with the cascade on"),
    ({"judge": {"max_response_chars": -1}}, r"judge\.max_response_chars: must be >= 0"),
    ({"judge": {"cascade": {"audit_rate": 2}}}, r"judge\.cascade\.audit_rate: must be in \[0, 1\]"),
    ({"embedder": {"backend": "grpc"}}, r"embedder\.backend: must be one of local, vllm, http"),
    ({"quality": {"reward_model": {"model": "rm", "backend": "http"}}},
     r"quality\.reward_model\.backend: must be one of local, vllm, got 'http'"),
    ({"strategies": ["temperature", "nucleus"]}, r"strategies: unknown \['nucleus'\]; choose from temperature"),
    # Taken before, silently: each group sampled and paid twice; shard_size 0 a traceback after preflight, -1 an
    # empty run; NaN a cost cap that let everything through; a negative limit cut prompts off the end.
    ({"strategies": ["temperature", "temperature"]}, r"strategies: each strategy once"),
    ({"execution": {"shard_size": 0}}, r"execution\.shard_size: must be an integer >= 1"),
    ({"execution": {"shard_size": -1}}, r"execution\.shard_size: must be an integer >= 1"),
    ({"execution": {"max_cost_usd": float("nan")}}, r"execution\.max_cost_usd: must be a number >= 0"),
    ({"execution": {"num_cpus": -2}}, r"execution\.num_cpus: must be an integer >= 1"),
    ({"report": {"bootstrap_resamples": 10**11}}, r"report\.bootstrap_resamples: must be between 1 and 1,000,000"),
    # "expected Literal or bool": the choices as written in a config.
    ({"models": {"offline": "false"}}, r"models\.offline: expected 'auto' or true or false, got 'false'"),
    # NaN passed `< 0` (Ray then said the actor "needs nothing"); inf seconds overflowed the math checker after the
    # paid stages.
    ({"embedder": {"num_cpus": float("nan")}}, r"embedder\.num_cpus: must be a finite number >= 0, got nan"),
    ({"judges": [{"num_gpus": float("inf")}]}, r"judges\[0\]\.num_gpus: must be a finite number >= 0"),
    ({"accuracy": {"math_timeout_s": float("inf")}}, r"accuracy\.math_timeout_s: must be a number of seconds > 0"),
    ({"execution": {"object_store_memory": -1}}, r"execution\.object_store_memory: must be an integer of bytes"),
    ({"prompts": {"limit": -2}}, r"prompts\.limit: must be an integer >= 1"),
    ({"prompts": {"per_category": 0}}, r"prompts\.per_category: must be an integer >= 1"),
    # Another source's keys were ignored: the given simpleqa file unread, the cache read instead.
    ({"prompts": {"source": "simpleqa", "paths": {"simpleqa": "x.csv"}}},
     r"prompts\.paths: is read by the 'paper' source only, and this one is 'simpleqa'.*prompts\.path"),
    ({"prompts": {"source": "builtin", "format": "inspect"}}, r"prompts\.format: is read by the 'responses' source"),
    # Judging is greedy: a judge's or classifier's temperature was recorded in config.yaml and never used.
    ({"judges": [{"temperature": 0.7}]}, r"judges\[0\]\.temperature: judging, classifying and grading are greedy"),
    ({"classifier": {"top_p": 0.5}}, r"classifier\.top_p: judging, classifying and grading are greedy"),
    # `sweep` is the run's: by hand it crashed (KeyError 'base') or let a list temperature reach the sampler.
    ({"generators": [{"name": "g", "sweep": {"temperature": 1}}]}, r"generators\[0\]\.sweep: is set by the run"),
    ({"generators": [{"name": "g", "temperature": [0.3, 0.6], "sweep": {"base": "x"}}]},
     r"generators\[0\]\.sweep: is set by the run"),
])
def test_settings_are_validated_on_load_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(section)


def test_strategy_names_come_from_the_registry(monkeypatch):
    from engine.method import strategies

    monkeypatch.setitem(strategies.STRATEGIES, "my_strategy", strategies.STRATEGIES["temperature"])
    assert config_from_dict({"strategies": ["my_strategy"]}).strategies == ["my_strategy"]


# --set reaches list items; a bad index, key or value is one line naming it (exit code 2 on the command line).
def test_overrides_walk_into_lists_and_fill_in_default_lists():
    cfg = config_from_dict({"judges": [{"name": "a"}, {"name": "b"}]},
                           {"judges.1.backend": "http", "judges.1.options": {"base_url": "http://127.0.0.1:9/v1"},
                            "generators.0.model": "/models/x", "sampling.max_tokens": 7})
    assert cfg.judges[1].backend == "http" and cfg.judges[0].backend == "local"
    assert cfg.generators[0].model == "/models/x" and cfg.sampling.max_tokens == 7


@pytest.mark.parametrize("override, message", [
    ({"judges.2.model": "x"}, r"override 'judges.2.model': judges has 1 item\(s\), so index 2 is out of range"),
    ({"judges.first.model": "x"}, r"judges is a list; expected an index, got 'first'"),
    ({"n.x": 1}, r"override 'n.x': n is a int, not a mapping or a list"),
    ({"judges.0.colour": "red"}, r"judges\[0\]\.colour: unknown key"),
    ({"judges.0.batch_size": "many"}, r"judges\[0\]\.batch_size: expected an integer, got 'many'"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({}, override)


def test_a_bad_value_from_set_is_blamed_on_the_override_not_the_file():
    # The file says verdict: text and n: 5; the error named the file ("configs/x.yaml: judges[1].verdict: …").
    data = {"n": 5, "judges": [{"name": "a"}, {"name": "b", "verdict": "text"}]}
    with pytest.raises(ConfigError, match=r"^override 'judges\.1\.verdict' \(--set\): judges\[1\]\.verdict: "
                                          r"expected one of"):
        config_from_dict(data, {"judges.1.verdict": "txt"}, source="configs/x.yaml")
    with pytest.raises(ConfigError, match=r"^override 'n' \(--set\): n: expected an integer"):
        config_from_dict(data, {"n": "abc"}, source="configs/x.yaml")
    with pytest.raises(ConfigError, match=r"^configs/x\.yaml: judges\[1\]\.verdict"):  # the file's own mistake
        config_from_dict({**data, "judges": [{"name": "a"}, {"name": "b", "verdict": "txt"}]}, {"n": 3},
                         source="configs/x.yaml")


def test_a_config_error_names_its_file_once(tmp_path, monkeypatch, capsys):
    # The load's errors name the file themselves; a model check's opened with the key alone and gets it in front.
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("n: 1\n")
    assert main(["plan", "--config", "my.yaml"]) == 2
    assert capsys.readouterr().err.startswith("error: my.yaml: n: must be >= 2")
    (tmp_path / "my.yaml").write_text("generators:\n  - {backend: local, model: smollm2-135m, options: {nope: 1}}\n")
    assert main(["plan", "--config", "my.yaml"]) == 2
    assert capsys.readouterr().err.startswith("error: my.yaml: generators[0].options.nope: ")


@pytest.mark.parametrize("argv, message", [
    (["--set", "judges.3.model=x"], "judges has 2 item(s)"),
    (["--set", "nokey"], "expected key=value"),
    (["--set", "n=[unclosed"], "not valid YAML"),
    (["--set", "generators.0.options.api_key=sk-SECRET: [x"], "--set generators.0.options.api_key=…: the value is"),
    (["--set", "sampling.top_p=7"], "sampling.top_p: must be in (0, 1]"),
    (["--config", "."], "is a folder, expected a YAML config file"),
    (["--run-dir", ""], "run_dir: must name a folder"),  # was ignored: the config's own run_dir ran
    (["--config", "/no/such.yaml"], "config file not found"),
])
def test_the_command_line_reports_bad_input_in_one_line(argv, message, capsys):
    from engine.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1
    assert "SECRET" not in err


def test_a_finished_runs_config_and_a_rewards_config_are_read_with_ignored_settings_taken(tmp_path):
    # Refusing settings that would be ignored must not lock users out of runs written before (explore, compare,
    # report read config.yaml back) or of `rewards`, whose prompts become the --in file.
    from engine.api import _rewards_config
    from engine.config import dump_yaml, lenient_settings

    old = {"prompts": {"source": "builtin", "format": "lm-eval"}, "judges": [{"name": "j", "temperature": 0.7}]}
    with pytest.raises(ConfigError):
        config_from_dict(old)
    with lenient_settings():
        assert config_from_dict(old).judges[0].temperature == 0.7
    path = tmp_path / "my-run.yaml"
    path.write_text(dump_yaml({"prompts": {"source": "paper", "paths": {"simpleqa": "x.csv"}, "format": "lm-eval"}}))
    groups = tmp_path / "groups.jsonl"
    groups.write_text("")
    cfg = _rewards_config(path, groups)
    assert cfg.prompts.source == "responses" and cfg.prompts.format == "lm-eval" and not cfg.prompts.paths


def test_a_config_file_without_a_run_dir_runs_in_a_directory_of_its_own(tmp_path):
    # The default was runs/demo: the README's real-audit snippet saved as my-run.yaml ran in the demo's directory and
    # replaced its tables and report.
    from engine.config import load_config

    path = tmp_path / "my-run.yaml"
    path.write_text("n: 3\n")
    assert load_config(path).run_dir == "runs/my-run"
    path.write_text("n: 3\nrun_dir: elsewhere\n")
    assert load_config(path).run_dir == "elsewhere"
    assert load_config(path, {"run_dir": "x"}).run_dir == "x"


@pytest.mark.parametrize("data, key", [
    ({"sampling": {"seed": 2 ** 64}}, "sampling.seed"),
    ({"generators": [{"name": "g", "backend": "local", "model": "smollm2-135m",
                      "options": {"extra_body": {"seed": -2 ** 70}}}]}, "generators[0].options.extra_body.seed"),
])
def test_an_integer_wider_than_64_bits_is_refused_naming_its_key(data, key):
    # Shard keys hash the settings as JSON (orjson holds no wider integer): the run stopped with a TypeError
    # traceback after its classification had run, and been paid for.
    with pytest.raises(ConfigError, match=re.escape(key) + ".*wider than 64 bits"):
        config_from_dict(data)
    from engine.execution.store import content_key

    assert content_key(config_from_dict({"sampling": {"seed": 2 ** 64 - 1}}).to_dict())


def test_an_empty_config_file_is_said_to_run_every_default(tmp_path, caplog):
    # A blank file (or comments alone) ran a 48-prompt audit of the defaults without a word.
    path = tmp_path / "blank.yaml"
    path.write_text("# to fill in\n")
    assert load_config(path).prompts.source == "builtin"
    assert "the config is empty: every setting is its default" in caplog.text
