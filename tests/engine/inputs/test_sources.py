"""Prompt sources by name (engine.inputs.sources): `prompts.options` checked against each loader before anything is
read or fetched, and the paper's mix telling why a source could not be fetched — a real loopback server answering
404 for the release files, and the Hugging Face call refusing as a gated dataset does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from engine.config import config_from_dict
from engine.errors import ConfigError
from engine.inputs.loaders.paper import COUNTS, PresetReport
from engine.inputs.sources import load_prompts
from tests.support.files import FileServer, manifests_folder

REPO = Path(__file__).resolve().parents[3]
TEST_DATA = REPO / "tests" / "test_data"
CA_SAMPLE = TEST_DATA / "community_alignment_sample.csv"


def prompts_cfg(**prompts):
    return config_from_dict({"prompts": prompts}).prompts


@pytest.fixture
def nb_file(tmp_path):
    path = tmp_path / "curated.jsonl"
    path.write_text(json.dumps({"id": "c-1", "category": "Creativity", "prompt": "Write a poem."}) + "\n")
    return path


# prompts.options: before, passed as they were to the loader — a misspelt name was a TypeError traceback.
def test_an_option_the_loader_does_not_take_names_the_key_and_what_it_takes(nb_file):
    with pytest.raises(ConfigError, match=r"prompts\.options\.lang: not an option of the noveltybench source; "
                                          r"accepted: category_map"):
        load_prompts(prompts_cfg(source="noveltybench", path=str(nb_file), options={"lang": "en"}))


@pytest.mark.parametrize("source,options,expected", [
    ("noveltybench", {"category_map": ["Creativity", "G"]}, "a mapping of strings to strings or null"),
    ("noveltybench", {"category_map": {"Creativity": 7}}, "a mapping of strings to strings or null"),
    ("community_alignment", {"lang": 5}, "a string or null"),
    ("community_alignment", {"text_field": None}, "a string"),
])
def test_an_option_of_the_wrong_type_is_a_config_error(nb_file, source, options, expected):
    path = nb_file if source == "noveltybench" else CA_SAMPLE
    key = next(iter(options))
    with pytest.raises(ConfigError, match=rf"prompts\.options\.{key}: expected {expected}, got"):
        load_prompts(prompts_cfg(source=source, path=str(path), options=options))


def test_valid_options_reach_the_loader(nb_file):
    prompts = load_prompts(prompts_cfg(source="noveltybench", path=str(nb_file),
                                       options={"category_map": {"Creativity": "H"}}))
    assert [p.gold_category for p in prompts] == ["H"]
    assert len(load_prompts(prompts_cfg(source="community_alignment", path=str(CA_SAMPLE),
                                        options={"lang": None}))) == 5
    with pytest.raises(ConfigError, match=r"prompts\.options\.category_map: letters must be A-H"):
        load_prompts(prompts_cfg(source="noveltybench", path=str(nb_file),
                                 options={"category_map": {"Creativity": "Z"}}))


@pytest.mark.parametrize("source", ["paper", "builtin"])
def test_sources_without_loader_options_refuse_them(source, tmp_path, monkeypatch):
    # Before, silently dropped: a paper run "with" a category_map drew with the default one.
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match=rf"prompts\.options\.category_map: the {source} source takes no"):
        load_prompts(prompts_cfg(source=source, options={"category_map": {"Creativity": "H"}}), offline=True)


# The paper's mix online: each source's own failure, never "this run is offline".
@pytest.fixture
def unreachable_sources(tmp_path, monkeypatch):
    """Manifests for the paper's six sources: release files on a loopback server that has none of them (404), and
    Hugging Face datasets whose hub call is refused as a gated dataset's is without a token."""
    manifests = manifests_folder(tmp_path, monkeypatch)
    empty = tmp_path / "served"
    empty.mkdir()
    import huggingface_hub

    class GatedHub:
        def dataset_info(self, repo_id, token=None):
            raise RuntimeError(f"401 Client Error: access to dataset {repo_id} is restricted")

    monkeypatch.setattr(huggingface_hub, "HfApi", GatedHub)
    with FileServer(empty) as server:
        for name in COUNTS:
            common = {"name": name, "title": name, "license": "MIT", "homepage": "https://example.org",
                      "loader": name}
            if name in ("community_alignment", "wildbench"):
                body = {**common, "main": "*.parquet", "hf_dataset": f"org/{name}", "revision": None,
                        "files": [{"pattern": "*.parquet"}]}
            else:
                body = {**common, "main": f"{name}.csv",
                        "files": [{"name": f"{name}.csv", "url": f"{server.url}/{name}.csv"}]}
            (manifests / f"{name}.yaml").write_text(yaml.safe_dump(body))
        yield


def test_an_online_paper_mix_says_why_each_source_could_not_be_fetched(unreachable_sources):
    with pytest.raises(ConfigError) as info:
        load_prompts(prompts_cfg(source="paper"), offline=False)
    message = str(info.value)
    assert "offline" not in message
    assert "simpleqa: GET http" in message and "simpleqa.csv: HTTP 404" in message
    assert "wildbench: fetching the Hugging Face dataset org/wildbench failed" in message
    assert "401 Client Error: access to dataset org/wildbench is restricted" in message


def test_an_online_paper_mix_skipping_sources_keeps_the_reason_in_each_warning(unreachable_sources, tmp_path):
    math = tmp_path / "test.jsonl"
    math.write_text("".join(json.dumps({"problem": f"What is {k} + {k}?", "answer": str(2 * k), "subject": "Algebra",
                                        "level": 1 + k % 5, "unique_id": f"test/algebra/{k}.json"}) + "\n"
                            for k in range(10)))
    report = PresetReport()
    prompts = load_prompts(prompts_cfg(source="paper", missing_sources="skip", paths={"math500": str(math)}),
                           report=report, offline=False)
    assert prompts and {p.source for p in prompts} == {"math500"}
    warnings = {w.split(":")[0]: w for w in report.warnings if "no file" in w}
    assert set(warnings) == set(COUNTS) - {"math500"}
    assert "HTTP 404" in warnings["macgyver"] and "401 Client Error" in warnings["community_alignment"]
    assert report.selections["macgyver"].note == warnings["macgyver"]
