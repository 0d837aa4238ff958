"""Models by Hugging Face id, as a cluster's nodes see them: a real Hugging Face cache layout with a tiny model this
test builds, hub access off (HF_HUB_OFFLINE=1). A cached id passes preflight and runs end to end on the local
backend in Ray workers (the cache's location reaches them); a missing one fails in preflight, naming the role, the
model and what was tried. HF_TOKEN is used where set and written nowhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.execution.pipeline import Pipeline
from engine.execution.preflight import preflight
from tests.support.hub import cache_folder, tiny_chat_model

SCRIPTED = {"name": "judge", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
            "batch_size": 16}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    cache_folder(cache, "testorg/tiny-chat", tiny_chat_model(tmp_path_factory.mktemp("tiny")))
    return cache


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def config(tmp_path, model, **over):
    return config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "per_category": 1, "limit": 2}, "n": 2,
        "strategies": ["temperature"], "sampling": {"max_tokens": 4},
        "generators": [{"name": "tiny", "backend": "local", "model": model, "batch_size": 8}],
        "judges": [SCRIPTED], "quality": {"enabled": False}, "accuracy": {"enabled": False}, **over,
    })


def test_a_cached_id_passes_preflight_offline(offline_cache, tmp_path):
    import importlib.util

    from engine.errors import ConfigError

    preflight(config(tmp_path, "testorg/tiny-chat"))
    on_vllm = config(tmp_path, "testorg/tiny-chat", generators=[{"backend": "vllm", "model": "testorg/tiny-chat"}])
    if importlib.util.find_spec("vllm") is None:  # the id resolved; what is missing is vLLM itself
        with pytest.raises(ConfigError, match=r"generators\[0\]\.backend: the vllm backend needs vLLM"):
            preflight(on_vllm)
    else:
        preflight(on_vllm)


def test_a_revision_pinned_id_reaches_vllm_as_that_revisions_folder(offline_cache):
    # vLLM was handed "testorg/tiny-chat@main" as the model: the hub's id check refuses it on the worker, after
    # preflight had passed it. It gets the snapshot folder of that revision (vLLM itself is not needed here).
    from actors.base import BackendError
    from actors.vllm import resolve_vllm_model

    snapshot = next((offline_cache / "models--testorg--tiny-chat" / "snapshots").iterdir())
    for pinned in ("testorg/tiny-chat@main", f"testorg/tiny-chat@{snapshot.name}"):
        assert Path(resolve_vllm_model(pinned)) == snapshot
    assert resolve_vllm_model("testorg/tiny-chat") == "testorg/tiny-chat"  # vLLM resolves a plain id itself
    with pytest.raises(BackendError, match="hub access is off"):
        resolve_vllm_model("testorg/tiny-chat@v9")


class LoopbackHub:
    """The Hugging Face hub's two model routes preflight reads, on loopback: a public model, and a gated one whose
    card answers anyone (as the hub's does) while its auth-check refuses a token without access (403, GatedRepo)."""

    def __init__(self, token_with_access: str) -> None:
        import http.server
        import json
        import threading

        hub = self
        self.seen_tokens: list[str | None] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("authorization")
                hub.seen_tokens.append(auth)
                gated = self.path.startswith("/api/models/testorg/gated")
                if self.path.endswith("/auth-check") and gated and auth != f"Bearer {token_with_access}":
                    self.send_response(403)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("X-Error-Message", "Access to model testorg/gated is restricted.")
                    body = b'{"error": "Access to model testorg/gated is restricted."}'
                elif self.path.startswith(("/api/models/testorg/gated", "/api/models/testorg/open")):
                    self.send_response(200)
                    name = self.path.split("/")[4]
                    body = json.dumps({"id": f"testorg/{name}", "modelId": f"testorg/{name}", "sha": "a" * 40,
                                       "gated": "manual" if gated else False, "private": False}).encode()
                else:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    body = b'{"error": "Repository not found"}'
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_gated_model_without_access_fails_preflight_online(tmp_path, monkeypatch):
    # Online, an uncached id is checked on the hub. model_info answers for a gated model whatever the token, so
    # preflight passed it and the download failed on the worker, after the run had begun paying.
    import huggingface_hub.constants

    hub = LoopbackHub(token_with_access="hf_granted")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, at import (tests: on)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_no_access_token")
    try:
        preflight(config(tmp_path, "testorg/open-model"), offline=False)
        with pytest.raises(ConfigError) as info:
            preflight(config(tmp_path, "testorg/gated-model"), offline=False)
        message = str(info.value)
        assert "generators[0].model: 'testorg/gated-model' cannot be resolved" in message
        assert "GatedRepoError" in message and "accept its licence" in message and "hf_no_access" not in message
        monkeypatch.setenv("HF_TOKEN", "hf_granted")
        preflight(config(tmp_path, "testorg/gated-model"), offline=False)
        assert "Bearer hf_granted" in hub.seen_tokens
    finally:
        hub.server.shutdown()


@pytest.mark.parametrize("backend", ["local", "vllm"])
def test_a_missing_id_fails_in_preflight_naming_what_was_tried(offline_cache, tmp_path, backend):
    cfg = config(tmp_path, "x", generators=[{"name": "g", "backend": backend, "model": "testorg/missing"}])
    with pytest.raises(ConfigError) as info:
        preflight(cfg)
    message = str(info.value)
    assert "generators[0].model: 'testorg/missing' cannot be resolved" in message
    assert str(offline_cache) in message and "hub access is off" in message and "huggingface-cli download" in message


def test_the_command_line_stops_before_any_stage(offline_cache, tmp_path, capsys):
    from engine.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\ngenerators:\n  - {{model: testorg/missing}}\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "testorg/missing" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "shards").exists()


def test_offline_is_a_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert config(tmp_path, "x").models.resolved_offline() is False  # auto: the environment says nothing
    assert config(tmp_path, "x", models={"offline": True}).models.resolved_offline() is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert config(tmp_path, "x").models.resolved_offline() is True
    assert config(tmp_path, "x", models={"offline": False}).models.resolved_offline() is False
    with pytest.raises(ConfigError, match="models.offline"):
        config(tmp_path, "x", models={"offline": "sometimes"})


def test_a_cached_id_runs_end_to_end_in_ray_workers(ray_session, offline_cache, tmp_path, monkeypatch):
    token = "hf_" + os.urandom(12).hex()
    monkeypatch.setenv("HF_TOKEN", token)
    # The embedder is a double: what runs on the workers here is the hub id's model (a real sentence-transformers
    # model in one more worker took ~10 s of this test's 2 cores).
    cfg = config(tmp_path, "testorg/tiny-chat", execution={"executor": "ray", "shard_size": 2},
                 embedder={"backend": "python:tests.support.doubles:HashEmbedder", "model": "hash"})
    pipeline = Pipeline(cfg, progress=False)
    try:
        result = pipeline.run()
    finally:
        pipeline.close()
    assert not result.failed_shards()
    responses = result.tables["responses"]
    assert responses.num_rows == 2 * 2 and set(responses["model"].to_pylist()) == {"tiny"}
    assert all(isinstance(t, str) for t in responses["text"].to_pylist())
    # The token was in this process's environment, never written: not in the run directory, not in Ray's logs.
    session = Path(ray_session._private.worker._global_node.get_session_dir_path())
    for folder in (Path(cfg.run_dir), session / "logs"):
        for f in folder.rglob("*"):
            if f.is_file():
                assert token.encode() not in f.read_bytes(), f


# Pinned weights: a hub id is a branch that moves when its authors push, and a local folder may be trained into again.
# Shards were keyed by the name as written, so a rerun read the old weights' shards as the new weights' answers.
HASHED = {"backend": "python:tests.support.doubles:HashEmbedder", "model": "hash"}


def _run_local(cfg):
    from tests.support.runs import run

    return run(cfg)


def _written_model(cfg) -> str:
    import yaml

    return yaml.safe_load((Path(cfg.run_dir) / "config.yaml").read_text())["generators"][0]["model"]


def _sample(result):
    return next(r for r in result.stages if r.stage.startswith("sample"))


def test_a_hub_id_runs_pinned_to_its_commit_and_a_push_samples_again(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first_commit, pushed_commit = "1" * 40, "2" * 40
    cache_folder(cache, "testorg/moving", tiny_chat_model(tmp_path / "v1"), commit=first_commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = config(tmp_path, "testorg/moving", execution={"executor": "local"}, embedder=HASHED)
    first = _run_local(cfg)
    assert _written_model(cfg) == f"testorg/moving@{first_commit}"  # the run's record names the weights it used
    assert cfg.generators[0].model == "testorg/moving"  # the caller's config is left as written
    again = _run_local(cfg)
    assert _sample(again).units_reused == _sample(again).units > 0
    # The authors push: main moves to other weights. The rerun samples them, never reading the old ones' shards.
    cache_folder(cache, "testorg/moving", tiny_chat_model(tmp_path / "v2", seed=1), commit=pushed_commit)
    moved = _run_local(cfg)
    assert _sample(moved).units_reused == 0
    assert _written_model(cfg) == f"testorg/moving@{pushed_commit}"
    texts = lambda r: r.tables["responses"]["text"].to_pylist()  # noqa: E731
    assert texts(moved) != texts(first)  # the new weights answered


def test_a_local_checkpoint_trained_again_into_its_folder_samples_again(tmp_path):
    import shutil

    from actors.hub import folder_digest

    folder = tiny_chat_model(tmp_path / "checkpoint")
    cfg = config(tmp_path, str(folder), execution={"executor": "local"}, embedder=HASHED)
    _run_local(cfg)
    again = _run_local(cfg)
    assert _sample(again).units_reused == _sample(again).units > 0
    tiny_chat_model(folder, seed=1)  # trained again, saved over the same files
    moved = _run_local(cfg)
    assert _sample(moved).units_reused == 0
    # A copy elsewhere (another node's disk, other file times) is the same checkpoint.
    copied = shutil.copytree(folder, tmp_path / "copy")
    assert folder_digest(Path(copied)) == folder_digest(folder)


def test_pinning_touches_only_models_that_load_weights(tmp_path, monkeypatch):
    # Online: an uncached id is pinned to the commit the hub names for it; an API model's name, a packaged model and
    # an id already pinned to a commit stay as written; an id nothing resolves is said, and keyed as written.
    import huggingface_hub.constants

    from engine.execution.preflight import pin_weights

    hub = LoopbackHub(token_with_access="hf_granted")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = {"name": "api", "backend": "http", "model": "testorg/open-model",
           "options": {"base_url": "http://127.0.0.1:9/v1"}}
    try:
        cfg = config(tmp_path, "testorg/open-model", judges=[SCRIPTED, api],
                     generators=[{"name": "hub", "model": "testorg/open-model"},
                                 {"name": "packaged", "model": "smollm2-135m"},
                                 {"name": "fixed", "model": f"testorg/open-model@{'b' * 40}"},
                                 {"name": "gone", "model": "testorg/unknown"}])
        pinned, notes = pin_weights(cfg, offline=False)
    finally:
        hub.server.shutdown()
    assert [g.model for g in pinned.generators] == [f"testorg/open-model@{'a' * 40}", "smollm2-135m",
                                                    f"testorg/open-model@{'b' * 40}", "testorg/unknown"]
    assert pinned.judges[1].model == "testorg/open-model"  # an API's model name
    assert pinned.embedder.model == cfg.embedder.model and not pinned.embedder.weights
    assert len(notes) == 1 and notes[0].startswith("generators[3].model: 'testorg/unknown' resolves to no commit")
    assert [g.model for g in cfg.generators][0] == "testorg/open-model"  # the given config is untouched


def test_a_snapshot_a_pinned_run_downloaded_is_found_by_an_offline_rerun(tmp_path, monkeypatch):
    # A pinned run's workers download "org/name@<commit>", which writes no refs/main: an offline rerun of the same
    # config was refused in preflight ("no entry in the Hugging Face cache") beside the weights it had loaded. The
    # cache's one snapshot of the id is its weights; of two, which one is main cannot be told, and the run is refused.
    from engine.errors import ConfigError
    from engine.execution.preflight import pin_weights, preflight

    cache = tmp_path / "cache"
    commit = "3" * 40
    cache_folder(cache, "testorg/pulled", tiny_chat_model(tmp_path / "v1"), commit=commit, ref=None)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = config(tmp_path, "testorg/pulled", execution={"executor": "local"}, embedder=HASHED)
    preflight(cfg)
    pinned, notes = pin_weights(cfg, offline=True)
    assert pinned.generators[0].model == f"testorg/pulled@{commit}" and not notes
    cache_folder(cache, "testorg/pulled", tiny_chat_model(tmp_path / "v2", seed=1), commit="4" * 40, ref=None)
    with pytest.raises(ConfigError, match="no entry in the Hugging Face cache"):
        preflight(cfg)
    pinned.generators[0].model = "testorg/pulled@" + "5" * 40  # a commit the cache lacks: the hint names it
    with pytest.raises(ConfigError, match=f"huggingface-cli download testorg/pulled --revision {'5' * 40}"):
        preflight(pinned)


def test_vllms_revision_option_is_the_revision_pinned(tmp_path, monkeypatch):
    # vLLM reads `revision` of a hub id, not of a folder: pinning the id to main's commit handed vLLM main's snapshot
    # under a key that still said revision v0.3.
    from actors.registry import pinned_weights

    cache = tmp_path / "cache"
    cache_folder(cache, "testorg/tagged", tiny_chat_model(tmp_path / "main"), commit="6" * 40)
    cache_folder(cache, "testorg/tagged", tiny_chat_model(tmp_path / "v03", seed=1), commit="7" * 40, ref="v0.3")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert pinned_weights("vllm", "testorg/tagged", True, "v0.3") == (f"testorg/tagged@{'7' * 40}", "")
    assert pinned_weights("vllm", "testorg/tagged", True) == (f"testorg/tagged@{'6' * 40}", "")


def test_a_folders_digest_sees_a_change_in_the_middle_of_its_weights_and_not_a_trainers_files(tmp_path):
    # Of a large file only the first and last MiB were read: a fine-tune of a few layers (tensors in the middle of a
    # safetensors file) kept the digest, and the old weights' shards were read. A README or a trainer's state beside
    # the weights changed it, and everything was computed again.
    import numpy as np

    from actors.hub import folder_digest

    folder = tmp_path / "model"
    folder.mkdir()
    weights = np.random.default_rng(0).integers(0, 255, 24 << 20, dtype=np.uint8)
    (folder / "model.safetensors").write_bytes(weights.tobytes())
    (folder / "config.json").write_text('{"model_type": "llama"}')
    before = folder_digest(folder)
    for name in ("README.md", "trainer_state.json", "optimizer.pt", "rng_state_0.pth", "training_args.bin"):
        (folder / name).write_bytes(b"x" * 100)
    assert folder_digest(folder) == before
    middle = len(weights) // 2
    weights[middle:middle + (2 << 20)] ^= 1  # two MiB of layers in the middle trained again
    (folder / "model.safetensors").write_bytes(weights.tobytes())
    assert folder_digest(folder) != before
    (folder / "chat_template.jinja").write_text("{{ messages }}")  # what the loader reads changes the digest
    assert folder_digest(folder) != before
