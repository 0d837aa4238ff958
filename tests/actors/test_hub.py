"""actors.hub on a Hugging Face cache laid out as huggingface_hub writes it (tests.support.hub): a snapshot that a
download stopped part-way through, and HF_TOKEN as users' environments hold it."""

from __future__ import annotations

import json

import pytest

from actors import hub
from actors.base import BackendError
from actors.registry import ModelCheckError, _check_weights
from tests.support.hub import cache_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _snapshot(cache, tmp_path, repo, files):
    src = tmp_path / repo.replace("/", "_")
    src.mkdir()
    for name, data in files.items():
        (src / name).write_text(data)
    return cache_folder(cache, repo, src)


def _fake_download(monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files",
                        lambda self, repo, revision=None, token=None: ["config.json", "model.safetensors"])

    def snapshot_download(repo, **kwargs):
        asked.append(repo)
        return "/downloaded"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return asked


def test_a_snapshot_with_its_config_but_not_its_weights_is_not_the_model(cache, tmp_path, monkeypatch):
    # AutoConfig / AutoTokenizer, or a download stopped part-way, leave config.json without the weights: the
    # folder was taken for the model (preflight passed, the load failed on a worker) and never downloaded again.
    _snapshot(cache, tmp_path, "org/partial", {"config.json": "{}", "tokenizer.json": "{}"})
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    _snapshot(cache, tmp_path, "org/sharded", {"config.json": "{}", "model.safetensors.index.json": json.dumps(index),
                                               "model-00001-of-00002.safetensors": "w"})
    whole = _snapshot(cache, tmp_path, "org/whole", {"config.json": "{}", "model.safetensors": "w"})
    with pytest.raises(BackendError, match=r"without weights .* hub access is off"):
        hub.resolve("org/partial", offline=True)
    with pytest.raises(BackendError, match="without model-00002-of-00002.safetensors"):
        hub.resolve("org/sharded", offline=True)
    assert hub.resolve("org/whole", offline=True) == whole
    with pytest.raises(ModelCheckError, match=r"lacks weights .* hub access is off"):
        _check_weights("org/partial", offline=True)
    _check_weights("org/whole", offline=True)
    asked = _fake_download(monkeypatch)  # online: the download completes it (only what is missing is fetched)
    assert str(hub.resolve("org/sharded", offline=False)) == "/downloaded" and asked == ["org/sharded"]
    hub.resolve("org/whole", offline=False)
    assert asked == ["org/sharded"]  # a whole snapshot is used as it is, without asking the hub


def test_hf_token_is_read_as_huggingface_hub_would_and_never_shown(cache, monkeypatch):
    # Passed explicitly, the token skipped huggingface_hub's own cleaning: a trailing \r (a CRLF .env file) was
    # refused by the HTTP library in a message quoting the header, and that message went into the run's error.
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETsecret123\r\n")
    assert hub.hf_token() == "hf_SECRETsecret123"
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET\x7fsecret")
    with pytest.raises(BackendError) as info:
        hub.resolve("org/absent", offline=False)
    assert "HF_TOKEN holds a character" in str(info.value) and "SECRET" not in str(info.value)
    monkeypatch.setenv("HF_TOKEN", "  ")
    assert hub.hf_token() is None
    import huggingface_hub

    def refused(self, repo, revision=None, token=None):
        raise RuntimeError(f"Illegal header value b'Bearer {token}'")

    monkeypatch.setenv("HF_TOKEN", "hf_SECRETsecret123")
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", refused)
    with pytest.raises(BackendError) as info:
        hub.resolve("org/absent", offline=False)
    assert "hf_SECRET" not in str(info.value) and "<redacted>" in str(info.value)
