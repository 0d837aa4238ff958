import collections
import json
import logging

import pytest

from engine.config import load_config
from engine.errors import ConfigError, InputError
from engine.inputs.loaders import LOADERS
from engine.inputs.loaders.paper import COUNTS, PresetReport, load_paper
from engine.inputs.prompts import LoadReport

from .conftest import REPO, TEST_DATA

REAL = {
    "simpleqa": "simpleqa/simple_qa_test_set.csv",
    "math500": "math500/test.jsonl",
    "macgyver": "macgyver/problem_solution_pair.csv",
    "noveltybench": "noveltybench/curated.jsonl",
}


@pytest.fixture
def real_paths(shared_file):
    return {source: str(shared_file(relative)) for source, relative in REAL.items()}


def ids(prompts, source=None):
    return [p.prompt_id for p in prompts if source is None or p.source == source]


def test_registry_and_preset_name_the_same_sources():
    assert set(LOADERS) == set(COUNTS) and sum(COUNTS.values()) == 344


# The paper's composition, from the stored files.
def test_draws_the_papers_mix_from_the_stored_sources(real_paths):
    report = PresetReport()
    prompts = load_paper(real_paths, seed=0, report=report)
    assert collections.Counter(p.source for p in prompts) == {"simpleqa": 50, "math500": 50, "macgyver": 50,
                                                              "noveltybench": 100}
    levels = collections.Counter(p.meta["level"] for p in prompts if p.source == "math500")
    assert levels == {level: 10 for level in range(1, 6)}
    assert all(p.meta["solvable"] and p.meta["unconventional"] for p in prompts if p.source == "macgyver")
    assert {(p.meta["preset"]["name"], p.meta["preset"]["seed"], p.meta["preset"]["version"])
            for p in prompts} == {("paper", 0, 2)}
    math = next(p for p in prompts if p.source == "math500")
    assert math.meta["preset"]["stratum"] == f"level {math.meta['level']}"
    assert report.selections["macgyver"].pool == 956 and report.selections["simpleqa"].pool == 4326
    assert report.warnings == [
        "community_alignment: no file (neither given nor fetched), skipped (50 prompts of the paper's mix missing)",
        "wildbench: no file (neither given nor fetched), skipped (44 prompts of the paper's mix missing)",
    ]
    assert (report.selections["wildbench"].path, report.selections["wildbench"].taken) == (None, 0)


def test_the_draw_is_fixed_by_the_seed(real_paths):
    first = load_paper(real_paths, seed=0)
    assert ids(load_paper(real_paths, seed=0)) == ids(first)
    other = load_paper(real_paths, seed=1)
    assert ids(other, "simpleqa") != ids(first, "simpleqa") and ids(other, "noveltybench") == ids(first, "noveltybench")


def test_each_source_draws_independently_of_the_others(real_paths):
    without_simpleqa = {k: v for k, v in real_paths.items() if k != "simpleqa"}
    assert ids(load_paper(without_simpleqa, seed=3), "math500") == ids(load_paper(real_paths, seed=3), "math500")


def test_config_file_names_sources_only_and_is_valid():
    config = load_config(REPO / "configs" / "paper.yaml")
    prompts = config.prompts
    # No path outside the repository: the benchmarks come from the cache of fetched sources (engine.inputs.fetch).
    assert prompts.source == "paper" and not prompts.paths and not prompts.path and prompts.seed == 0
    assert config.n == 5 and len(config.judges) == 3


# Short pools and missing sources, on the fixtures.
def test_short_pools_are_taken_whole_and_the_shortfall_recorded(caplog):
    report = PresetReport()
    paths = {"community_alignment": str(TEST_DATA / "community_alignment_sample.csv"),
             "wildbench": str(TEST_DATA / "wildbench_sample.jsonl")}
    with caplog.at_level(logging.WARNING, logger="engine.inputs.loaders.paper"):
        prompts = load_paper(paths, seed=0, report=report)
    # WildBench's pool is its single-turn rows: the sample's three-turn row ends in a turn that needs its history.
    assert collections.Counter(p.source for p in prompts) == {"community_alignment": 3, "wildbench": 3}
    assert all(p.meta["n_turns"] == 1 for p in prompts if p.source == "wildbench")
    assert "community_alignment: pool too small, took all: 3 of 50" in report.warnings
    assert "wildbench: pool too small, took all: 3 of 44" in report.warnings
    assert not any("last user turn of a longer conversation" in w for w in report.warnings)
    assert sum("neither given nor fetched" in w for w in report.warnings) == 4
    assert "wildbench: pool too small" in caplog.text


def test_math_levels_short_of_ten_are_named(write):
    rows = [json.dumps({"problem": f"P{k}", "answer": "1", "level": 1 if k < 3 else 2}) for k in range(15)]
    report = PresetReport()
    prompts = load_paper({"math500": str(write("m.jsonl", rows))}, seed=0, report=report)
    assert collections.Counter(p.meta["level"] for p in prompts) == {1: 3, 2: 10}
    assert ("math500: pool too small, took all: level 1: 3 of 10; level 3: 0 of 10; level 4: 0 of 10; "
            "level 5: 0 of 10") in report.warnings


def test_plain_load_report_collects_skipped_rows(write):
    path = write("n.jsonl", ['{"prompt": "A", "category": "Creativity"}', '{"prompt": ""}'])
    report = LoadReport()
    prompts = load_paper({"noveltybench": str(path)}, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["A"] and [e.line for e in report.skipped] == [2]
    with pytest.raises(InputError, match="empty prompt text"):
        load_paper({"noveltybench": str(path)})


def test_unknown_source_is_a_config_error():
    with pytest.raises(ConfigError, match="prompts.paths: unknown source 'gsm8k'"):
        load_paper({"gsm8k": "x.jsonl"})


def test_a_prompt_cap_leaves_long_prompts_out_of_the_pools_before_the_draw(real_paths):
    # Cut after the draw, MATH-500's levels came out unbalanced (long problems are the hard ones) and sources short.
    report = PresetReport()
    prompts = load_paper(real_paths, seed=0, report=report, max_prompt_chars=300)
    assert all(len(p.text) <= 300 for p in prompts)
    assert collections.Counter(p.meta["level"] for p in prompts if p.source == "math500") == {
        level: 10 for level in range(1, 6)}
    assert any(w.startswith("math500: ") and "over prompts.max_prompt_chars (300) left out of the pool of 500" in w
               for w in report.warnings)


def test_a_limit_on_the_preset_draws_across_its_sources(real_paths):
    # The first 100 of the mix were SimpleQA's 50 and MATH-500's 50: categories A and D alone. The limit draws each
    # source's share (250 prompts here: 20% / 20% / 20% / 40%), with the seed, and twice the same.
    from engine.config import PromptsConfig
    from engine.inputs.sources import load_prompts

    cfg = PromptsConfig(source="paper", paths=real_paths, missing_sources="skip", limit=100, seed=2)
    prompts = load_prompts(cfg, skip_missing=True)
    assert collections.Counter(p.source for p in prompts) == {"simpleqa": 20, "math500": 20, "macgyver": 20,
                                                              "noveltybench": 40}
    assert ids(load_prompts(cfg, skip_missing=True)) == ids(prompts)
    whole = load_prompts(PromptsConfig(source="paper", paths=real_paths, missing_sources="skip", seed=2),
                         skip_missing=True)
    assert set(ids(prompts)) < set(ids(whole))
    odd = load_prompts(PromptsConfig(source="paper", paths=real_paths, missing_sources="skip", limit=7, seed=2),
                       skip_missing=True)
    assert len(odd) == 7 and collections.Counter(p.source for p in odd)["noveltybench"] == 3
