"""The backend registry's option rules: every option of every backend is classified as transport (left out of shard
keys) or output (kept in them), and an option a backend does not take is refused in preflight, naming it."""

import pytest

from actors.registry import (BACKEND_CLASSES, OUTPUT_OPTIONS, TRANSPORT_OPTIONS, ModelCheckError, backend_options,
                             check_model)
from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.preflight import preflight

BACKENDS = [(role, backend) for role, backends in BACKEND_CLASSES.items() for backend in backends]


@pytest.mark.parametrize("role,backend", BACKENDS)
def test_every_option_of_every_backend_is_transport_or_output(role, backend):
    named, _ = backend_options(role, backend)
    assert not TRANSPORT_OPTIONS & OUTPUT_OPTIONS
    unclassified = named - TRANSPORT_OPTIONS - OUTPUT_OPTIONS
    assert not unclassified, f"{role}/{backend}: classify {sorted(unclassified)} in actors/registry.py"


def test_a_longer_timeout_keeps_a_judges_shard_keys():
    # Before: read_s_per_token, timeout_retries, max_reply_bytes and allow_insecure_http were kept in shard keys,
    # so raising a timeout after a slow first run re-keyed every judgment and paid for it again.
    def identity(**options):
        cfg = config_from_dict({"judges": [{"name": "j", "backend": "http", "model": "m",
                                            "options": {"base_url": "http://127.0.0.1:9/v1", **options}}]})
        return cfg.judges[0].identity()

    assert identity() == identity(read_s_per_token=0.2, timeout_retries=3, max_reply_bytes=1 << 20,
                                  timeout_s=300, completions_per_request=1, max_temperature=1.0)
    assert identity() != identity(extra_body={"top_k": 5})


def test_an_unknown_option_is_refused_naming_the_closest(monkeypatch):
    with pytest.raises(ModelCheckError) as info:
        check_model("chat", "http", "m", {"base_url": "http://127.0.0.1:9/v1", "timeout": 30})
    assert info.value.key == "options.timeout" and "did you mean 'timeout_s'" in str(info.value)
    with pytest.raises(ModelCheckError, match="did you mean 'device'"):
        check_model("embed", "local", "all-minilm-l6-v2", {"devcie": "cpu"})
    with pytest.raises(ModelCheckError, match="takes no option 'score_token'"):
        check_model("reward", "local", "/tmp", {"kind": "athene", "score_token": 3})
    check_model("embed", "local", "all-minilm-l6-v2", {"device": "cpu", "batch_size": 8})


def test_preflight_names_the_config_key_of_a_misspelt_option(tmp_path):
    cfg = config_from_dict({
        "run_dir": str(tmp_path / "run"),
        "judges": [{"name": "j", "backend": "http", "model": "m",
                    "options": {"base_url": "http://127.0.0.1:9/v1", "max_retry": 3}}],
    })
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.max_retry: .*did you mean 'max_retries'"):
        preflight(cfg)


@pytest.mark.parametrize("backend,role", [("vllm", "chat"), ("vllm", "embed"), ("vllm", "reward"), ("local", "chat")])
def test_options_that_run_code_need_the_python_backends_opt_in(monkeypatch, backend, role):
    # vLLM passed any EngineArgs field through: trust_remote_code ran a hub repository's Python, worker classes
    # were imported by name — from a config, which is data, without --allow-python-backends.
    monkeypatch.delenv("TASKDIV_ALLOW_PYTHON_BACKENDS", raising=False)
    for key, value in (("trust_remote_code", True), ("worker_extension_cls", "evil.Ext")):
        with pytest.raises(ModelCheckError, match=rf"{key}.*--allow-python-backends") as info:
            check_model(role, backend, "smollm2-135m" if role == "chat" else "x", {key: value})
        assert info.value.key == f"options.{key}"


@pytest.mark.parametrize("key", ["hf_token", "token", "api_key", "client_secret", "password"])
def test_a_secret_is_never_an_option_and_never_copied(key):
    # options.hf_token (an EngineArgs field) was taken, logged at the engine's start and written to config.yaml.
    with pytest.raises(ModelCheckError, match="secrets come from the environment only"):
        check_model("chat", "vllm", "smollm2-135m", {key: "hf_SECRET123"})
    cfg = config_from_dict({"run_dir": "unused", "judges": [{"name": "v", "backend": "vllm", "model": "m",
                                                            "options": {key: "hf_SECRET123", "dtype": "float32"}}]})
    dumped = str(cfg.to_dict())
    assert "hf_SECRET123" not in dumped and "float32" in dumped


def test_a_secret_nested_in_an_option_is_refused_by_its_path(monkeypatch):
    # extra_body is sent with every request: a key there was taken, and written to the run directory's config.
    monkeypatch.setenv("TASKDIV_TEST_KEY", "sk-test-0123456789abcdef")
    options = {"base_url": "https://api.example.com/v1", "api_key_env": "TASKDIV_TEST_KEY",
               "extra_body": {"provider": {"api_key": "sk-SECRET"}, "top_k": 5}}
    with pytest.raises(ModelCheckError, match="'api_key' would hold a secret") as info:
        check_model("chat", "http", "gpt-4o", options)
    assert info.value.key == "options.extra_body.provider.api_key" and "sk-SECRET" not in str(info.value)
    check_model("chat", "http", "gpt-4o", {**options, "extra_body": {"top_k": 5, "max_tokens_hint": 3}})


def test_a_malformed_url_is_named_without_its_credentials():
    from actors.http import chat_completions_url

    url = "htps://alice:sk-SECRET@api.example.com/v1?key=AIzaSECRET"
    with pytest.raises(ModelCheckError) as info:
        check_model("chat", "http", "gpt-4o", {"base_url": url})
    with pytest.raises(Exception) as direct:
        chat_completions_url(url)
    for message in (str(info.value), str(direct.value)):
        assert "SECRET" not in message and "api.example.com" in message


def test_a_backend_built_on_a_hosts_thread_goes_to_that_hosts_set(monkeypatch):
    # The local executor builds its hosts' stages on their own threads at once. With one process-wide stack, a host
    # that entered `sharing` while another was still building took that one's next backend (a cascade judge's
    # embedder landed in the metrics host, which closed it when it was released).
    import threading
    import time

    from actors import registry

    monkeypatch.setattr(registry, "_build", lambda role, backend, model, options: (time.sleep(0.05), object())[1])
    judge_host, metrics_host = registry.SharedBackends(), registry.SharedBackends()
    metrics_entered, judge_done = threading.Event(), threading.Event()

    def judge_thread():
        with registry.sharing(judge_host):
            registry.make_chat_backend("local", "judge-model")
            metrics_entered.wait(5)  # the metrics host is inside `sharing` now, on its own thread
            registry.make_embedder("local", "cascade-embedder")
        judge_done.set()

    def metrics_thread():
        with registry.sharing(metrics_host):
            metrics_entered.set()
            registry.make_embedder("local", "metrics-embedder")
            judge_done.wait(5)

    threads = [threading.Thread(target=judge_thread), threading.Thread(target=metrics_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    import orjson

    assert {orjson.loads(k)[2] for k in judge_host._built} == {"judge-model", "cascade-embedder"}
    assert {orjson.loads(k)[2] for k in metrics_host._built} == {"metrics-embedder"}
