"""Fetching the public sources, for real over loopback: a file server the test runs (with Range support and a
dropped connection), a Hugging Face-style folder layout for `--from`, and manifests the test writes — fetch,
resume, checksum mismatch, offline and not cached, import; then the real manifests against ../shared/datasets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine.cli import main
from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.inputs import fetch
from engine.inputs.sources import load_prompts
from tests.support.files import FileServer

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "datasets"
MATH_ROWS = [{"problem": f"What is {k} + {k}?", "answer": str(2 * k), "subject": "Algebra", "level": 1 + k % 5,
              "unique_id": f"test/algebra/{k}.json"} for k in range(40)]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A served math500-shaped file, its manifest pointing at the server, and an empty cache."""
    files = tmp_path / "served"
    files.mkdir()
    data = "".join(json.dumps(r) + "\n" for r in MATH_ROWS).encode()
    (files / "test.jsonl").write_bytes(data)
    manifests = tmp_path / "sources"
    manifests.mkdir()
    monkeypatch.setattr(fetch, "SOURCES_DIR", manifests)
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))

    def manifest(url: str, sha256: str | None = None, name: str = "math500") -> None:
        (manifests / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "title": "test math", "license": "MIT", "homepage": "https://example.org",
            "loader": "math500", "main": "test.jsonl",
            "files": [{"name": "test.jsonl", "url": f"{url}/test.jsonl",
                       "sha256": sha256 or hashlib.sha256(data).hexdigest(), "size": len(data)}]}))

    return files, data, manifest


def test_fetch_downloads_verifies_and_caches(served):
    files, data, manifest = served
    with FileServer(files) as server:
        manifest(server.url)
        cached = fetch.fetch("math500", progress=False)
        assert cached["test.jsonl"].read_bytes() == data
        again = fetch.fetch("math500", progress=False)  # cached and verified: nothing is asked for
        assert again == cached and len(server.requests) == 1
    record = json.loads((fetch.source_dir("math500") / fetch.FETCHED).read_text())
    assert record["files"]["test.jsonl"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_interrupted_transfer_resumes_where_it_stopped(served):
    files, data, manifest = served
    with FileServer(files, cut_after={"test.jsonl": 1000}) as server:
        manifest(server.url)
        with pytest.raises(fetch.FetchError, match="rerun `fetch` to resume from 1000 bytes"):
            fetch.fetch("math500", progress=False)
        cached = fetch.fetch("math500", progress=False)
        assert server.requests == [("test.jsonl", None), ("test.jsonl", "bytes=1000-")]
    assert cached["test.jsonl"].read_bytes() == data
    assert not list(fetch.source_dir("math500").glob("*.part"))


def test_a_checksum_mismatch_deletes_the_file_and_names_both_hashes(served):
    files, data, manifest = served
    wrong = "0" * 64
    with FileServer(files) as server:
        manifest(server.url, sha256=wrong)
        with pytest.raises(fetch.FetchError) as info:
            fetch.fetch("math500", progress=False)
    message = str(info.value)
    assert "math500" in message and wrong in message and hashlib.sha256(data).hexdigest() in message
    assert not any(fetch.source_dir("math500").iterdir())


def test_offline_and_not_cached_stops_before_any_stage_with_the_command(served, tmp_path):
    _, _, manifest = served
    manifest("http://127.0.0.1:9")
    with pytest.raises(fetch.FetchError, match=r"run `python engine/run\.py fetch math500`"):
        fetch.ensure("math500", offline=True)
    from engine.execution.pipeline import Pipeline

    cfg = config_from_dict({"run_dir": str(tmp_path / "run"), "prompts": {"source": "math500"},
                            "models": {"offline": True},
                            "generators": [{"backend": "python:tests.support.doubles:ScriptedChat", "model": "x"}],
                            "judges": [{"backend": "python:tests.support.doubles:ScriptedChat", "model": "x"}],
                            "execution": {"executor": "local"}})
    with pytest.raises(fetch.FetchError, match="fetch math500"):
        Pipeline(cfg, progress=False).run()
    assert not (tmp_path / "run" / "shards").exists()


def test_import_from_a_folder_then_the_config_names_the_source_only(served, tmp_path, capsys):
    files, data, manifest = served
    manifest("http://127.0.0.1:9")  # never reached: the files come from a folder
    have = tmp_path / "have" / "math500"
    have.mkdir(parents=True)
    (have / "test.jsonl").write_bytes(data)
    assert main(["fetch", "math500", "--from", str(tmp_path / "have")]) == 0
    assert "verified (sha256 + size)" in capsys.readouterr().out
    prompts = load_prompts(config_from_dict({"prompts": {"source": "math500"}}).prompts, offline=True)
    assert len(prompts) == 40 and prompts[0].gold_answer == "0" and prompts[0].gold_category == "D"
    (have / "test.jsonl").write_bytes(data[:-10] + b"0000000000")  # a corrupted copy is refused
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):
        fetch.import_from("math500", tmp_path / "have")


def test_an_unpinned_hugging_face_source_imports_from_its_layout_and_records_the_hashes(tmp_path, monkeypatch):
    manifests = tmp_path / "sources"
    manifests.mkdir()
    monkeypatch.setattr(fetch, "SOURCES_DIR", manifests)
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    (manifests / "wildbench.yaml").write_text(yaml.safe_dump({
        "name": "wildbench", "title": "WildBench", "license": "see card", "homepage": "https://example.org",
        "loader": "wildbench", "main": "v2/*.parquet", "hf_dataset": "allenai/WildBench", "revision": None,
        "files": [{"pattern": "v2/*.parquet"}]}))
    rows = [json.loads(line) for line in (REPO / "tests" / "test_data" / "wildbench_sample.jsonl").read_text().splitlines()
            if line.strip()]
    layout = tmp_path / "hf" / "wildbench" / "v2"
    layout.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), layout / "test-00000-of-00001.parquet")
    src = fetch.source("wildbench")
    assert not src.pinned
    fetch.import_from("wildbench", tmp_path / "hf")
    record = json.loads((fetch.source_dir("wildbench") / fetch.FETCHED).read_text())
    assert list(record["files"]) == ["v2/test-00000-of-00001.parquet"]
    prompts = load_prompts(config_from_dict({"prompts": {"source": "wildbench"}}).prompts, offline=True)
    assert len(prompts) == len(rows)


# The real manifests.
def test_every_manifest_loads_and_the_readme_table_is_generated_from_them():
    known = fetch.sources()
    assert {"simpleqa", "math500", "macgyver", "noveltybench", "wildbench", "community_alignment",
            "darling_pairs"} == set(known)
    readme = (REPO / "README.md").read_text()
    assert fetch.source_table() in readme


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_the_stored_files_verify_against_the_pinned_manifests(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    for name, src in fetch.sources().items():
        if src.pinned:
            files = fetch.import_from(name, SHARED)
            assert set(files) == {f.name for f in src.files}, name


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets is not present")
def test_the_paper_preset_names_sources_only_and_draws_from_the_cache(tmp_path, monkeypatch):
    from engine.config import load_config

    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    config = load_config(REPO / "configs" / "paper.yaml")
    assert config.prompts.source == "paper" and not config.prompts.paths and not config.prompts.path
    with pytest.raises(ConfigError, match=r"fetch .*simpleqa"):  # nothing cached yet, offline
        load_prompts(config.prompts, offline=True)
    assert main(["fetch", "--from", str(SHARED)]) == 0
    with pytest.raises(ConfigError, match=r"fetch community_alignment wildbench"):
        load_prompts(config.prompts, offline=True)
    prompts = load_prompts(config.prompts, offline=True, skip_missing=True)
    assert len(prompts) == 250  # the two Hugging Face-only sources are not here
