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
    ({"judges": [{"backend": "http", "model": "gpt-4o",
                  "options": {"base_url": "https://api.example.com/v1", "api_key_env": "TASKDIV_UNSET_KEY_VAR"}}]},
     r"judges\[0\]\.options\.api_key_env: the environment variable TASKDIV_UNSET_KEY_VAR is not set"),
    ({"embedder": {"model": "/nope"}}, r"embedder\.model"),
    ({"generators": [{"backend": "python:tests.nowhere:Thing"}]}, r"generators\[0\]\.backend: cannot import"),
])
def test_bad_models_are_named_by_their_key(over, message):
    with pytest.raises(ConfigError, match=message):
        preflight(cfg(**over))


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


def test_an_unwritable_run_dir_is_a_clear_error(tmp_path, capsys):
    from engine.cli import main

    # A folder cannot be made inside a file, whoever runs the test (root ignores permission bits).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["--run-dir", str(blocker / "run"), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert f"run_dir {blocker / 'run'}: cannot write there" in err and "Traceback" not in err
