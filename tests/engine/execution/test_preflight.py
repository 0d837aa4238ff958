"""Bad models and keys fail before any stage, naming the config key."""

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.preflight import preflight


def cfg(**over):
    return config_from_dict({"run_dir": "unused", **over})


def test_the_demo_defaults_pass():
    preflight(cfg())


@pytest.mark.parametrize("over,message", [
    ({"generators": [{"backend": "local", "model": "/no/such/model"}]},
     r"generators\[0\]\.model: '/no/such/model' is neither a packaged model"),
    ({"judges": [{"name": "a"}, {"name": "b", "backend": "vllm", "model": "./missing-folder"}]},
     r"judges\[1\]\.model: './missing-folder' is neither a packaged model, an existing file or folder"),
    ({"judges": [{"backend": "http", "model": "gpt-4o"}]}, r"judges\[0\]\.options\.base_url"),
    # A bracket left open was a ValueError from urlsplit (a traceback from `plan` and `run`); a port that is no
    # number passed until the endpoint probe, after Ray started. Neither message quotes the URL's secrets.
    ({"judges": [{"backend": "http", "model": "gpt-4o",
                  "options": {"base_url": "https://user:SECRETPW@[api.example.com/v1?key=SECRETKEY"}}]},
     r"judges\[0\]\.options\.base_url: an http\(s\) URL is needed for the http backend, got '<[^S]*$"),
    ({"judges": [{"backend": "http", "model": "gpt-4o", "options": {"base_url": "https://api.example.com:abc/v1"}}]},
     r"judges\[0\]\.options\.base_url: an http\(s\) URL is needed"),
    # User info and no host: passed every check, then every row failed ("https:///v1/…").
    ({"judges": [{"backend": "http", "model": "gpt-4o", "options": {"base_url": "https://u:SECRETKEY@/v1"}}]},
     r"judges\[0\]\.options\.base_url: an http\(s\) URL is needed for the http backend, got '[^S]*$"),
    ({"judges": [{"backend": "http", "model": "gpt-4o",
                  "options": {"base_url": "https://api.example.com/v1", "api_key_env": "TASKDIV_UNSET_KEY_VAR"}}]},
     r"judges\[0\]\.options\.api_key_env: the environment variable TASKDIV_UNSET_KEY_VAR is not set"),
    ({"embedder": {"model": "/nope"}}, r"embedder\.model"),
    # An option's value was checked only when the client was built, in the judge's actors (after generation was paid
    # for); a quoted number was a TypeError there, which the endpoint probe let through as a warning.
    ({"judges": [{"backend": "http", "model": "gpt-4o",
                  "options": {"base_url": "https://api.example.com/v1", "timeout_s": "30"}}]},
     r"judges\[0\]\.options\.timeout_s: must be a number of seconds > 0, got '30'"),
    ({"judges": [{"backend": "http", "model": "gpt-4o",
                  "options": {"base_url": "https://api.example.com/v1", "max_concurrency": 0}}]},
     r"judges\[0\]\.options\.max_concurrency: must be an integer >= 1, got 0"),
    ({"generators": [{"backend": "python:tests.nowhere:Thing"}]}, r"generators\[0\]\.backend: cannot import"),
    # The cascade's coefficients were read only once judging began, after the classification was paid for
    ({"judge": {"cascade": {"enabled": True, "coefficients": "/no/such/coef.json"}}},
     r"judge\.cascade\.coefficients: .*/no/such/coef\.json"),
    # Ray 2.60 no longer hides a node's GPUs from an actor that reserved none
    ({"embedder": {"options": {"device": "cuda"}}}, r"embedder\.num_gpus: options\.device is 'cuda' but the model "
                                                     r"reserves no GPU"),
    ({"quality": {"reward_model": {"backend": "local", "model": "/no/such/rm"}}}, r"quality\.reward_model\.model"),
])
def test_bad_models_are_named_by_their_key(over, message):
    with pytest.raises(ConfigError, match=message):
        preflight(cfg(**over))


def test_a_local_generator_must_hold_what_the_system_prompt_strategies_ask(tmp_path):
    # A budget past the local backend's context (n 5 × 1,024 tokens in one completion) passed preflight and failed
    # every system-prompt group at generation, while the other strategies' groups were paid for.
    from tests.support.hub import tiny_chat_model

    with pytest.raises(ConfigError, match=r"generators\[0\]\.options\.max_context \(smollm2-135m\): options\."
                                          r"max_context 4096 cannot hold the 5120 tokens"):
        preflight(cfg(generators=[{"options": {"max_context": 4096}}]))
    preflight(cfg(generators=[{"options": {"max_context": 8192}}]))
    preflight(cfg(generators=[{"options": {"max_context": 4096}}], strategies=["temperature", "regen_general"]))
    folder = tiny_chat_model(tmp_path / "tiny")  # states a context of 2,048
    with pytest.raises(ConfigError, match=r"its context of 2048 tokens \(max_position_embeddings"):
        preflight(cfg(generators=[{"name": "tiny", "model": str(folder)}]))


def test_every_problem_is_said_at_once(monkeypatch):
    # The real-audit preset on a machine without its three keys stopped at the first; the user found the next one
    # only by running it again (75 s an attempt in the vLLM environment).
    for k in ("TASKDIV_UNSET_A", "TASKDIV_UNSET_B"):
        monkeypatch.delenv(k, raising=False)
    api = {"backend": "http", "model": "m", "options": {"base_url": "https://api.example.com/v1"}}
    with pytest.raises(ConfigError) as info:
        preflight(cfg(generators=[{"backend": "local", "model": "/no/such/model"}],
                      judges=[{**api, "name": "a", "options": {**api["options"], "api_key_env": "TASKDIV_UNSET_A"}},
                              {**api, "name": "b", "options": {**api["options"], "api_key_env": "TASKDIV_UNSET_B"}}]))
    lines = str(info.value).splitlines()
    assert lines[0] == "3 problems, before any model was called:"
    assert lines[1].startswith("  - generators[0].model: '/no/such/model' is neither")
    assert "judges[0].options.api_key_env: the environment variable TASKDIV_UNSET_A is not set" in lines[2]
    assert "judges[1].options.api_key_env: the environment variable TASKDIV_UNSET_B is not set" in lines[3]


def test_a_gpu_device_with_a_reserved_gpu_or_in_this_process_passes(monkeypatch):
    import torch

    preflight(cfg(embedder={"options": {"device": "cuda"}, "num_gpus": 0.1}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    preflight(cfg(embedder={"options": {"device": "cuda"}}, execution={"executor": "local"}))


def test_a_cuda_device_this_process_lacks_is_refused_before_any_stage(monkeypatch):
    # In this process a judge on device: cuda failed only when it loaded, after classification, sampling and
    # grading had run (a traceback: "Torch not compiled with CUDA enabled").
    import torch

    local = {"execution": {"executor": "local"}}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.device \(smollm2-135m\): 'cuda', but this machine "
                                         r"has no CUDA device torch can use"):
        preflight(cfg(judges=[{"options": {"device": "cuda"}}], **local))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"embedder\.options\.device \(.*\): 'cuda:1', but this machine has 1 CUDA"):
        preflight(cfg(embedder={"options": {"device": "cuda:1"}}, **local))


def test_an_uncached_hub_id_fails_offline(monkeypatch, tmp_path):
    # Hub ids resolve from the Hugging Face cache when offline (tests/engine/execution/test_hub_models.py has the
    # cached case); here the cache is empty.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match=r"generators\[0\]\.model: 'meta-llama/Llama-3.1-8B-Instruct' cannot be"):
        preflight(cfg(generators=[{"backend": "vllm", "model": "meta-llama/Llama-3.1-8B-Instruct"}]), offline=True)


def test_responses_source_does_not_check_generators():
    preflight(cfg(prompts={"source": "responses", "path": "x.jsonl"},
                  generators=[{"backend": "local", "model": "/no/such/model"}]))


def test_the_cli_reports_a_bad_model_without_a_traceback(tmp_path, capsys):
    from engine.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\ngenerators:\n  - {{model: /no/such/model}}\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "generators[0].model" in err and "Traceback" not in err
    # The run made its folder and wrote nothing there: a mistyped run_dir is not left as an empty run directory.
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # one the user made stays
    assert main(["--config", str(config)]) == 2
    assert (tmp_path / "run").is_dir()


def test_an_unwritable_run_dir_is_a_clear_error(tmp_path, capsys):
    from engine.cli import main

    # A folder cannot be made inside a file, whoever runs the test (root ignores permission bits).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["--run-dir", str(blocker / "run"), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert f"run_dir {blocker / 'run'}: cannot write there" in err and "Traceback" not in err


def http_generator(base_url, temperature, **options):
    return {"name": "api", "backend": "http", "model": "m", "temperature": temperature,
            "options": {"base_url": base_url, **options}}


def test_vllm_sampling_overrides_cannot_replace_the_runs_settings():
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.sampling_overrides\.temperature: the run sets"):
        preflight(cfg(judges=[{"backend": "vllm", "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                               "options": {"sampling_overrides": {"repetition_penalty": 1.1, "temperature": 0.3}}}]))


@pytest.mark.parametrize("base_url, temperature, options, message", [
    # The run's own fields may be removed, not given a value: the rows would be labelled with one setting and
    # sampled with another.
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": {"temperature": 0.7}},
     r"generators\[0\]\.options\.extra_body\.temperature: the run sets this field from temperature"),
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": {"max_completion_tokens": 9}},
     r"generators\[0\]\.options\.extra_body\.max_completion_tokens: .*options\.max_tokens_field"),
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": {"model": None}}, r"extra_body\.model: .*cannot be set"),
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": ["reasoning_effort"]},
     r"generators\[0\]\.options\.extra_body: extra_body must be a mapping"),
    # A model that takes no temperature samples at the endpoint's default: the generator must say that one.
    ("https://api.anthropic.com/v1/", 0.5, {"extra_body": {"temperature": None, "top_p": None}},
     r"generators\[0\]\.temperature \(api\): options\.extra_body removes temperature .* its default 1, not at "
     r"0\.5: set this generator's temperature to 1"),
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": {"temperature": None}},
     r"generators\[0\]\.temperature \(api\): .*not known here: set options\.default_temperature"),
    ("http://127.0.0.1:9/v1", 0.5, {"extra_body": {"top_p": None}, "default_top_p": 1.0},
     r"generators\[0\]\.top_p \(api\): .*its default 1, not at 0\.9"),
])
def test_extra_body_cannot_relabel_what_is_sampled(monkeypatch, base_url, temperature, options, message):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    if "anthropic" in base_url:
        options = {**options, "api_key_env": "ANTHROPIC_API_KEY"}
    with pytest.raises(ConfigError, match=message):
        preflight(cfg(generators=[http_generator(base_url, temperature, **options)]))


@pytest.mark.parametrize("base_url, temperature, top_p, options", [
    ("https://api.anthropic.com/v1/", 1.0, 1.0, {"extra_body": {"temperature": None, "top_p": None}}),
    ("http://127.0.0.1:9/v1", 0.7, 0.9, {"extra_body": {"temperature": None}, "default_temperature": 0.7}),
    ("http://127.0.0.1:9/v1", 0.0, 0.9, {"extra_body": {"top_p": None, "n": None, "reasoning_effort": "none"}}),
])
def test_extra_body_that_removes_fields_at_the_endpoints_defaults_passes(monkeypatch, base_url, temperature, top_p,
                                                                         options):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    if "anthropic" in base_url:
        options = {**options, "api_key_env": "ANTHROPIC_API_KEY"}
    preflight(cfg(generators=[{**http_generator(base_url, temperature, **options), "top_p": top_p}]))


# Gemini's and Hugging Face's keys are valid variable names ([A-Za-z0-9_]): they were echoed as "the environment
# variable AIzaSy… is not set".
@pytest.mark.parametrize("key_env", ["sk-proj-Abc123SECRETSECRETSECRET456", ["OPENAI_API_KEY"], "MY KEY",
                                     "AIzaSyA1234567890SECRETxyzSECRET", "hf_SECRETabcdEFGH1234567890SECRET",
                                     "Xk2SECRETq9Lm4Rt7SECRETvB8nW1", "a3f9SECRETc0de5b7e1d2f4a6b8c9d0e1f"])
def test_an_api_key_put_where_its_variable_name_goes_is_refused_unshown(key_env, tmp_path, capsys):
    # The likeliest slip: the key pasted into api_key_env. It was printed in the error ("the environment variable
    # sk-proj-… is not set"); a list crashed preflight with a traceback (os.environ.get).
    from engine.cli import main

    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "judges": [
        {"backend": "http", "model": "gpt-4o", "options": {"base_url": "https://api.example.com/v1",
                                                          "api_key_env": key_env}}]}))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "judges[0].options.api_key_env: must name the environment variable" in err
    assert "SECRET" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "shards").exists()


def test_variable_names_are_still_names():
    from actors.base import api_key_env_problem

    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "my_key", "ANTHROPIC_API_KEY_PROJECT_2026", "HF_TOKEN",
                 "Together_Key_2", "AzureOpenAIKeyEastUS2", "OpenAI_API_Key_Prod2", "MISTRAL_API_KEY_2024_12_01"):
        assert api_key_env_problem(name) is None, name
    hex_key = "3f9c0de5b7e1d2f4a6b8c9d0e1f22a1b"  # a hex key is a valid name too
    assert "not hold the key" in api_key_env_problem(hex_key) and hex_key not in api_key_env_problem(hex_key)


def test_a_vllm_model_without_vllm_is_refused_here_and_left_to_the_nodes_of_a_cluster():
    # Without vLLM in this Python (the README's real-audit command ran .venv's), a vLLM generator passed preflight
    # and failed when its actors started, after the reference classification was paid for.
    import importlib.util

    from engine.execution.preflight import check_role

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this Python: nothing is missing")
    with pytest.raises(ConfigError, match=r"generators\[0\]\.backend: the vllm backend needs vLLM, which .* "
                                          r"\(\.venv-vllm/bin/python"):
        preflight(cfg(generators=[{"backend": "vllm", "model": "smollm2-135m"}]))
    deferred: list[str] = []  # a joined cluster: its nodes check again, where vLLM may be
    check_role("generators[0]", "chat", "vllm", "smollm2-135m", {}, deferred=deferred)
    assert len(deferred) == 1 and deferred[0].startswith("generators[0].backend: the vllm backend needs vLLM")


def test_the_calibrated_judge_needs_the_embedder_it_was_fitted_with_on_its_backend():
    # Only the model's name was compared: an HTTP server naming its model all-minilm-l6-v2 passed, and the features
    # moved with whatever it embeds with.
    http = {"backend": "http", "model": "all-minilm-l6-v2", "options": {"base_url": "https://emb.example.com/v1"}}
    with pytest.raises(ConfigError, match=r"judges\[1\]\.model: the coefficients were fitted with the local embedder "
                                          r"'all-minilm-l6-v2'.*embedder\.backend is 'http'"):
        preflight(cfg(judges=[{"name": "a"}, {"name": "cheap", "backend": "calibrated"}], embedder=http))
    with pytest.raises(ConfigError, match=r"judge\.cascade\.coefficients: .*embedder\.backend is 'http'"):
        preflight(cfg(judge={"cascade": {"enabled": True}}, embedder=http))


VLLM_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("over, message", [
    # vLLM's parallelism and device were read first when the stages' plans were made: a traceback mid-run (or every
    # shard failed, for a device), after the stages before were paid; `plan` priced the config.
    ({"generators": [{"backend": "vllm", "model": VLLM_MODEL, "options": {"tensor_parallel_size": 0}}]},
     r"generators\[0\]\.options\.tensor_parallel_size: must be an integer >= 1, got 0"),
    ({"judges": [{"backend": "vllm", "model": VLLM_MODEL,
                  "options": {"distributed_executor_backend": "uni", "tensor_parallel_size": 2}}]},
     r"judges\[0\]\.options\.distributed_executor_backend: the 'uni' executor runs one worker"),
    ({"judges": [{"backend": "vllm", "model": VLLM_MODEL, "options": {"distributed_executor_backend": "rayy"}}]},
     r"judges\[0\]\.options\.distributed_executor_backend: distributed_executor_backend must be uni, mp or ray"),
    ({"judges": [{"backend": "vllm", "model": VLLM_MODEL, "options": {"device": "tpu"}}]},
     r"judges\[0\]\.options\.device: must be cpu or cuda"),
    # vLLM samples 0 < t < 0.01 at 0.01, without a word: the rows would be labelled t=0.005.
    ({"generators": [{"name": "g", "backend": "vllm", "model": VLLM_MODEL, "temperature": [0.0, 0.005, 1.0]}]},
     r"generators\[0\]\.temperature \(g@t=0\.005\): 0\.005: vLLM samples any temperature above 0 and below 0\.01"),
    # Anthropic's host caps temperature at 1: the run refused it, `plan` priced it.
    ({"generators": [{"name": "claude", "backend": "http", "model": "claude-x", "temperature": 1.5,
                      "options": {"base_url": "https://api.anthropic.com/v1/", "api_key_env": "TASKDIV_UNSET"}}]},
     r"generators\[0\]\.temperature \(claude\): 1\.5 is above the 1 this endpoint serves"),
    ({"execution": {"executor": "ray"}, "judges": [{"backend": "local", "options": {"device": "cuda"}}]},
     r"judges\[0\]\.num_gpus: options\.device is 'cuda' but the model reserves no GPU"),
])
def test_plan_refuses_what_the_run_would_for_the_config_alone(over, message):
    from engine.execution.preflight import check_written_config

    with pytest.raises(ConfigError, match=message):
        check_written_config(cfg(**over))
    if "TASKDIV_UNSET" not in str(over):
        with pytest.raises(ConfigError, match=message):
            preflight(cfg(**over))


def test_prompts_without_a_gold_category_and_only_calibrated_judges_are_refused_before_anything_runs(tmp_path,
                                                                                                       capsys):
    # Found at the reference classification: after the running config was written and the endpoints probed (a paid
    # request), and `plan` had priced the run.
    import json

    from engine.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": "Name a colour."}) + "\n" + json.dumps(
        {"text": "Write a haiku.", "gold_category": "G"}) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "prompts": {"source": "jsonl",
                                                                                "path": str(prompts)},
                                  "judges": [{"name": "cal", "backend": "calibrated"}],
                                  "quality": {"enabled": False}, "accuracy": {"enabled": False},
                                  "execution": {"executor": "local"}}))
    for command in (["plan", "--config", str(config)], ["--config", str(config)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "judges: 1 prompts have no gold category and every judge is calibrated" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
