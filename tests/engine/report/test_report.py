"""The report of one run: every section with the run's own numbers, a self-contained HTML file, run_stats.json.

One fixture run on the deterministic test double (tests.support.doubles.ScriptedChat) with two judges judging both
orders, so that the judge-agreement and order-disagreement sections have something to measure.
"""

import base64
import dataclasses
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.config import ModelConfig
from engine.config import ReportConfig
from engine.execution.results import read_run
from engine.report import write_report
from engine.report.data import category_name, report_data, report_settings
from engine.report.markdown import render_markdown
from tests.support.runs import SCRIPTED, make_config, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECOND_JUDGE = {**SCRIPTED, "name": "scripted-b"}


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    # Half the groups drawn into the agreement sample; both judges grade quality.
    cfg = make_config(tmp, judges=[SCRIPTED, SECOND_JUDGE], judge={"both_orders": True, "agreement_sample_rate": 0.5},
                      quality={"graders": ["scripted", "scripted-b"]})
    result = run(cfg)
    paths = write_report(result, cfg)
    return cfg, result, paths


def test_write_report_writes_every_file(fixture_run):
    _, _, paths = fixture_run
    for name in ("markdown", "html", "json", "run_stats"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    pngs = sorted(p.name for p in paths["figures"].glob("*.png"))
    assert pngs == sorted(["figure2_unique.png", "figure3a_general.png", "figure3b_functional.png", "spearman.png",
                           "confusion.png", "judge_agreement.png", "throughput.png"])


def test_markdown_has_every_section_with_numbers(fixture_run):
    _, _, paths = fixture_run
    text = paths["markdown"].read_text()
    sections = {}
    for block in re.split(r"\n## ", text)[1:]:
        title, _, body = block.partition("\n")
        sections[title] = body
    expected = ["Functionally unique responses", "Diversity vs quality", "Do general metrics track",
                "General metrics and quality by strategy", "Task classification", "Judging",
                "Accuracy on verifiable sources", "Run throughput"]
    for name in expected:
        (title,) = [t for t in sections if t.startswith(name)]
        body = sections[title]
        if name != "Accuracy on verifiable sources":
            # Real numbers, not only headings: table rows with decimals.
            assert re.search(r"^\|.*\d+\.\d+", body, re.M), f"no numbers in section {title!r}"
    # Intervals are printed as value [low, high].
    assert re.search(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", sections[next(t for t in sections if t.startswith(
        "Functionally unique"))])
    # Every figure the Markdown links exists beside it.
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (paths["markdown"].parent / link).is_file(), link


def test_unique_cells_are_the_means_of_complete_groups(fixture_run):
    cfg, result, paths = fixture_run
    data = orjson.loads(paths["json"].read_bytes())
    groups = result.tables["groups"].to_pylist()
    assert data["unique"]["complete_total"] == len(groups) and data["unique"]["excluded_total"] == 0
    pooled = {"all": lambda c: True, "all but A": lambda c: c != "A"}  # A: more unique responses is worse
    for cell in data["unique"]["cells"]:
        values = [g["unique_mean"] for g in groups if g["model"] == cell["model"] and g["strategy"] ==
                  cell["strategy"] and pooled.get(cell["category"], lambda c: c == cell["category"])(g["category"])]
        assert cell["groups"] == len(values)
        assert cell["estimate"]["value"] == pytest.approx(sum(values) / len(values))
        if cell["category"] == "all":  # 8 prompts: a real interval around the mean
            e = cell["estimate"]
            assert e["low"] <= e["value"] <= e["high"] and e["high"] <= cfg.n
    # Each strategy's pooled row without A, beside the one over all categories, in every table of Figure 2's section.
    assert {c["strategy"] for c in data["unique"]["cells"] if c["category"] == "all but A"} == set(cfg.strategies)
    unique = paths["markdown"].read_text().split("## Functionally unique responses")[1].split("\n## ")[0]
    per_judge = data["unique"]["per_judge"]
    assert unique.count("| all categories but A (A: homogeneity desired; uncategorised left out) |") == \
        2 + len(per_judge)
    # Each judge's own table: its count alone over the whole groups it resolved (one panel), beside Figure 2's.
    assert sorted(per_judge) == sorted(data["judges"]) and len(per_judge) >= 2
    for judge, cells in per_judge.items():
        assert f"Judge {judge} alone" in unique
        for cell in (c for c in cells if c["category"] == "all"):
            values = [dict(g["unique_per_judge"])[judge] for g in groups if g["model"] == cell["model"]
                      and g["strategy"] == cell["strategy"] and judge in dict(g["unique_per_judge"])]
            assert cell["estimate"]["value"] == pytest.approx(sum(values) / len(values))


def test_a_judges_row_in_the_judging_table_is_over_the_whole_groups_it_resolved(fixture_run):
    # Its mean was taken over the groups every judge resolved (a group's unique_mean needs every judge): with the
    # demo's 135M judge beside it, the calibrated judge's row said 15 groups and 4.53 where its own table, over its
    # 48 whole groups, said 3.96. So was each pair's agreement, over the groups a third judge resolved.
    import pyarrow as pa

    from engine.config import ReportConfig
    from engine.report.data import _judging_section

    cfg, result, _ = fixture_run
    t = dict(result.tables)
    comps = t["components"].to_pylist()
    first = (comps[0]["prompt_id"], comps[0]["model"], comps[0]["strategy"])
    for c in comps:  # the second judge could not resolve the first group's count
        if (c["prompt_id"], c["model"], c["strategy"]) == first and c["judge"] == "scripted-b":
            c.update(resolved=False, unique=None)
    groups = t["groups"].to_pylist()
    for g in groups:
        if (g["prompt_id"], g["model"], g["strategy"]) == first:
            g["unique_mean"] = None
    t["components"] = pa.Table.from_pylist(comps, schema=t["components"].schema)
    t["groups"] = pa.Table.from_pylist(groups, schema=t["groups"].schema)
    section = _judging_section(t, cfg, cfg.n, ReportConfig(bootstrap_resamples=50))
    rows = {r["judge"]: r for r in section["per_judge"]}
    whole = [c for c in comps if c["judge"] == "scripted" and c["resolved"] and next(
        g for g in groups if (g["prompt_id"], g["model"], g["strategy"]) == (c["prompt_id"], c["model"],
                                                                             c["strategy"]))["n_responses"] == cfg.n]
    assert rows["scripted"]["groups"] == len(whole) == rows["scripted-b"]["groups"] + 1
    assert rows["scripted"]["unique_mean"] == pytest.approx(sum(c["unique"] for c in whole) / len(whole))


def test_each_judges_own_table_has_the_categories_of_its_own_cells(fixture_run):
    # The per-judge tables took their rows from Figure 2's categories: a category only some judges resolved (so no
    # group of it has a whole-panel mean) had cells in a judge's table but no row.
    _, _, paths = fixture_run
    data = orjson.loads(paths["json"].read_bytes())
    kept = data["unique"]["categories"][:1]
    data["unique"]["categories"] = kept  # as if the other categories' groups had no whole-panel mean
    unique = render_markdown(data).split("## Functionally unique responses")[1].split("\n## ")[0]
    judge = next(iter(data["unique"]["per_judge"]))
    own = unique.split(f"Judge {judge} alone")[0].rsplit("Groups left out", 1)[-1]
    cats = {c["category"] for c in data["unique"]["per_judge"][judge]} - {"all", "all but A"} - set(kept)
    assert cats and all(f"| {category_name(c)} |" in own for c in cats)


def test_agreement_sample_pairs_a_judge_left_unresolved_are_counted_not_dropped():
    from engine.config import ReportConfig
    from engine.report.data import _judge_pair_agreement

    key = {"prompt_id": "p", "model": "m", "strategy": "s"}
    comps = [{**key, "judge": j, "agreement_sample": True, "unique": None, "resolved": False, "judge_category": "G"}
             for j in ("a", "b")]
    verdicts = {"a": ["equivalent", "different", "unparsed"], "b": ["equivalent", "unparsed", "different"]}
    judgments = [{**key, "judge": j, "i": i, "j": k, "verdict": v, "decided_by": "llm"}
                 for j, vs in verdicts.items() for (i, k), v in zip([(0, 1), (0, 2), (1, 2)], vs)]
    out = _judge_pair_agreement("a", "b", judgments, comps, ReportConfig(bootstrap_resamples=10), {}, 3)
    assert (out["pairs_both"], out["pairs_unresolved"], out["verdict_agreement"]) == (1, 2, 1.0)


def test_an_uncategorised_group_is_not_pooled_with_those_where_diversity_is_wanted():
    # It may be an A prompt (no gold label, its classification unread): pooled into "all but A", where more unique
    # responses read as more diverse, it could pull the wrong way. It stays in "all" and in "?".
    from engine.report.data import ALL_BUT_A, _cells
    from engine.report.stats import bootstrap_mean_ci

    groups = [{"model": "m", "strategy": "s", "prompt_id": p, "category": c, "unique_mean": u, "status": "ok",
               "unresolved_judges": [], "missing_judges": []}
              for p, c, u in (("p1", "A", 1.0), ("p2", "G", 3.0), ("p3", None, 5.0))]
    _, cells = _cells(groups, lambda values, clusters: bootstrap_mean_ci(values, clusters=clusters, resamples=10))
    assert [g["prompt_id"] for g in cells[("m", ALL_BUT_A, "s")]] == ["p2"]
    assert [g["prompt_id"] for g in cells[("m", "all", "s")]] == ["p1", "p2", "p3"]
    assert [g["prompt_id"] for g in cells[("m", "?", "s")]] == ["p3"]


def test_a_classification_whose_request_failed_is_no_answer_not_a_wrong_one():
    # Two of four gold-G prompts classified G, two failed (HTTP 503 after retries; a budget spent thinking): the
    # accuracy is over the two answers, 1.0 — before, the failures were "unparsed" and scored 0 (0.5).
    from functools import partial

    from engine.report.data import _classification_section
    from engine.report.stats import bootstrap_mean_ci

    prompts = pa.Table.from_pylist([{"prompt_id": f"p{k}", "gold_category": "G"} for k in range(4)])
    raws = ["G", "G", "<error: HTTP 503 after 6 retries>", "maybe ⟶ <error: spent its budget thinking>"]
    classifications = pa.Table.from_pylist([
        {"prompt_id": f"p{k}", "model": "m", "role": "own", "category": "G" if k < 2 else None, "raw": raw}
        for k, raw in enumerate(raws)])
    (cls,) = _classification_section({"prompts": prompts, "classifications": classifications}, ["m"],
                                     partial(bootstrap_mean_ci, resamples=50, seed=0))
    assert cls["labelled"] == 2 and cls["accuracy"]["value"] == 1.0
    assert cls["failed"] == 2 and cls["unparsed"] == 0
    assert sum(map(sum, cls["confusion"]["counts"])) == 2


def test_the_own_classifications_agreement_leaves_failed_requests_out():
    # Without gold, the yardstick table counted a failed request as a disagreement with the reference (2 of 4,
    # 50%, beside a classification section that leaves failures out): both answers agree, 2 of 2.
    from engine.report.data import _yardstick_section

    prompts = pa.Table.from_pylist([{"prompt_id": f"p{k}", "gold_category": None} for k in range(4)])
    rows = [{"prompt_id": f"p{k}", "model": "reference", "category": "G", "raw": "G", "role": "reference"}
            for k in range(4)]
    rows += [{"prompt_id": f"p{k}", "model": "m", "category": "G" if k < 2 else None, "role": "own",
              "raw": "G" if k < 2 else "<error: HTTP 503 after 6 retries>"} for k in range(4)]
    y = _yardstick_section({"prompts": prompts, "classifications": pa.Table.from_pylist(rows)}, ["m"], None)
    assert y["agreement"] == [{"model": "m", "prompts": 2, "agree": 2, "failed": 2}]


def test_names_are_not_put_in_code_spans_where_their_escapes_would_show(fixture_run):
    # md_text turns & < > | into escapes, which Markdown shows as written inside a code span: a voter "Q&A-7b" read
    # "Q&amp;A-7b" in the rendered report.
    cfg, result, _ = fixture_run
    data = report_data(result, cfg)
    data["yardstick"] = {**(data.get("yardstick") or {"gold": 0, "reference": 1, "uncategorised": 0, "pending": 0,
                                                      "agreement": []}), "voters": ["Q&A-7b"]}
    data["run_dir"] = "runs/a&b"
    text = render_markdown(data)
    assert "Q&amp;A-7b" in text and "`Q&amp;A-7b`" not in text
    assert "run directory: runs/a&amp;b" in text


def test_classification_judges_and_throughput_numbers(fixture_run):
    cfg, result, paths = fixture_run
    data = orjson.loads(paths["json"].read_bytes())
    # The double labels every prompt G; the fixture has one prompt per gold category.
    (cls,) = data["classification"]
    assert cls["labelled"] == 8 and cls["accuracy"]["value"] == pytest.approx(1 / 8)
    assert {r["category"]: r["recall"] for r in cls["recall"]} == {**{c: 0.0 for c in "ABCDEFH"}, "G": 1.0}
    g_column = cls["confusion"]["columns"].index("G")
    assert [row[g_column] for row in cls["confusion"]["counts"]] == [1] * 8

    judging = data["judging"]
    assert judging["judges"] == ["scripted", "scripted-b"] and not judging["single_judge"]
    (pair,) = judging["agreement"]
    # Two copies of one deterministic judge: full agreement on every pair both judged.
    assert pair["pairs_both"] > 0 and pair["verdict_agreement"] == 1.0 and pair["unique_exact"] == 1.0
    assert pair["kappa"] == pytest.approx(1.0)
    # κ is measured only on the agreement sample, where every pair was judged by both judges, in both orders.
    comps = result.tables["components"].to_pylist()
    sampled = [c for c in comps if c["agreement_sample"]]
    assert 0 < len(sampled) < len(comps)
    assert all(c["n_pairs_judged"] == cfg.n * (cfg.n - 1) // 2 for c in sampled)
    assert pair["sample_groups"] == len({(c["prompt_id"], c["model"], c["strategy"]) for c in sampled})
    assert pair["pairs_both"] == pair["sample_groups"] * cfg.n * (cfg.n - 1) // 2
    assert pair["pairs_unresolved"] == 0
    assert judging["agreement_sample"]["calls"] == sum(c["calls_made"] for c in sampled)
    comps = result.tables["components"].to_pylist()
    for row in judging["per_judge"]:
        mine = [c for c in comps if c["judge"] == row["judge"]]
        assert row["pairs_judged"] == sum(c["n_pairs_judged"] for c in mine)
        assert row["calls_saved"] == sum(c["calls_saved"] for c in mine)
        # Both orders judged; the double is symmetric, so no pair flips with the order.
        assert row["order"]["measured"] and row["order"]["pairs"] == row["pairs_judged"]
        assert row["order"]["rate"] == 0.0

    stats = orjson.loads(paths["run_stats"].read_bytes())
    assert stats["schema"] == 1 and stats == data["throughput"]
    assert [s["stage"] for s in stats["stages"]] == [r.stage for r in result.stages]
    by_kind = {s["kind"]: s for s in stats["stages"]}
    assert by_kind["sample"]["rows_per_s"] > 0 and by_kind["sample"]["completion_tokens"] == sum(
        result.tables["responses"]["n_tokens"].to_pylist())
    judge = next(s for s in stats["stages"] if s["stage"] == "judge[scripted]")
    assert judge["pairs_judged"] == next(r for r in judging["per_judge"] if r["judge"] == "scripted")["pairs_judged"]
    assert judge["pairs_per_s"] == pytest.approx(judge["pairs_judged"] / judge["wall_s"])
    assert judge["calls"] == 2 * judge["pairs_judged"]  # both orders
    assert stats["peak_rss_bytes"] == result.peak_rss_bytes > 0


def test_accuracy_and_reward_are_reported_when_the_run_has_them(fixture_run):
    cfg, result, _ = fixture_run
    responses = result.tables["responses"].to_pylist()
    checked = {g["prompt_id"] for g in result.tables["groups"].to_pylist() if g["category"] in ("A", "D")}
    rows = [{"prompt_id": r["prompt_id"], "model": r["model"], "strategy": r["strategy"],
             "sample_idx": r["sample_idx"],
             # Even samples correct, odd wrong, the last one not checkable: per prompt 2 of 3 checked correct.
             "correct": None if r["sample_idx"] == cfg.n - 1 else r["sample_idx"] % 2 == 0,
             "method": "math-verify"} for r in responses if r["prompt_id"] in checked]
    groups = result.tables["groups"]
    reward = pa.array([float(k % 3) for k in range(groups.num_rows)])
    tables = {**result.tables, "accuracy": pa.Table.from_pylist(rows),
              "groups": groups.append_column("reward_mean", reward)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    acc = data["accuracy"]
    assert acc["present"] and len(acc["rows"]) == len(cfg.strategies)
    for row in acc["rows"]:
        assert row["prompts"] == 2 and row["checked"] == 2 * (cfg.n - 1) and row["unchecked"] == 2
        assert row["accuracy"]["value"] == pytest.approx(2 / 3) and row["method"] == "math-verify"
    assert data["tradeoff"]["reward_available"] and data["tradeoff"]["quality_3a"] == "reward model score"
    text = render_markdown(data)
    assert "0.67 [0.67, 0.67]" in text and "math-verify" in text and "| reward |" in text


def test_accuracy_section_reports_the_runs_accuracy_table(fixture_run):
    cfg, result, paths = fixture_run
    data = orjson.loads(paths["json"].read_bytes())
    acc = data["accuracy"]
    table = result.tables["accuracy"].to_pylist()
    assert acc["present"] and acc["rows"]
    for row in acc["rows"]:
        mine = [a for a in table if a["model"] == row["model"] and a["strategy"] == row["strategy"]
                and a["method"] == row["method"]]
        assert row["checked"] + row["unchecked"] == len(mine)
        assert row["checked"] == sum(a["correct"] is not None for a in mine)
        if row["method"] == "math-verify":  # the double's answers ("class 1 response 42") are wrong
            assert row["accuracy"]["value"] == 0.0 and row["prompts"] == 1
    assert "No reward model ran in this run" in paths["markdown"].read_text()


def test_single_judge_one_order_no_quality_no_accuracy_are_said(fixture_run, tmp_path):
    # The fixture run seen as one judge's, judged in one order, without the quality and accuracy stages.
    cfg, result, _ = fixture_run
    tables = {name: t for name, t in result.tables.items() if name not in ("quality", "checklists", "accuracy")}
    tables["groups"] = tables["groups"].drop_columns(["accuracy"])
    for name in ("components", "judgments"):
        t = tables[name]
        tables[name] = t.filter(pc.equal(t["judge"], "scripted"))
    one = dataclasses.replace(result, run_dir=str(tmp_path), tables=tables)
    config = dataclasses.replace(cfg, run_dir=str(tmp_path), judges=cfg.judges[:1],
                                 judge=dataclasses.replace(cfg.judge, both_orders=False),
                                 quality=dataclasses.replace(cfg.quality, graders=[]))
    paths = write_report(one, config)
    text = paths["markdown"].read_text()
    assert "A single judge (scripted)" in text
    assert "Both-order disagreement is not measured" in text and "| not measured |" in text
    assert "quality was not measured in this run" in text
    assert "**Not measured in this run:** this run has no accuracy table" in text
    assert not (paths["figures"] / "judge_agreement.png").exists()
    assert not (paths["figures"] / "figure3a_general.png").exists()


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.links, self.ids, self.text = [], [], [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.imgs.append(attrs.get("src", ""))
        for name in ("href", "src", "action", "srcset", "poster", "data"):
            if name in attrs and not (tag == "img" and name == "src"):
                self.links.append(attrs[name])

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text):
    p = _Collector()
    p.feed(html_text)
    p.close()
    return p


def test_html_is_self_contained_and_embeds_every_figure(fixture_run):
    _, _, paths = fixture_run
    page = parse(paths["html"].read_text())
    assert page.imgs, "no figures in the HTML"
    figures = {p.read_bytes() for p in paths["figures"].glob("*.png")}
    embedded = set()
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == PNG_SIGNATURE and len(png) > 5000  # a drawn matplotlib figure, not a stub
        embedded.add(png)
    assert embedded == figures, "every figure file is embedded, and only those"
    # Nothing outside the file but the explorer written beside it: links are in-page anchors to sections that
    # exist, or explore.html; no script, no stylesheet link.
    anchors = [link for link in page.links if link != "explore.html"]
    assert anchors and all(link.startswith("#") and link[1:] in page.ids for link in anchors)
    assert "explore.html" in page.links and (paths["html"].parent / "explore.html").is_file()
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert "http://" not in paths["html"].read_text() and "https://" not in paths["html"].read_text()
    text = " ".join(page.text)
    for heading in ("Functionally unique responses", "Diversity vs quality", "Spearman", "Task classification",
                    "Judging", "Accuracy on verifiable sources", "Run throughput"):
        assert heading in text


def test_html_escapes_untrusted_text_and_carries_the_small_model_note(fixture_run, tmp_path):
    cfg, result, _ = fixture_run
    hostile = '<script>alert(1)</script><img src="http://example.invalid/x.png">'
    run_dir = tmp_path / "copy"
    shutil.copytree(result.run_dir, run_dir)
    tiny = ModelConfig(name="smollm2-135m", backend="local", model="smollm2-135m")
    config = dataclasses.replace(cfg, run_dir=str(run_dir), judges=[tiny],
                                 quality=dataclasses.replace(cfg.quality, graders=[]))
    bad = dataclasses.replace(result, run_dir=str(run_dir), skipped_inputs=[hostile], load_warnings=[hostile])
    paths = write_report(bad, config)
    html_text = paths["html"].read_text()
    page = parse(html_text)
    assert "script" not in page.tags
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "The judgments in this run are not meaningful." in html_text
    markdown = paths["markdown"].read_text()
    assert "The judgments in this run are not meaningful." in markdown
    # In Markdown the hostile text is shown, not interpreted: no raw tag, no image.
    assert "<script>" not in markdown and "\\<script\\>" in markdown and "![" not in markdown.split(
        "## Failures")[1]


def test_report_settings_come_from_the_config_or_the_defaults(fixture_run):
    cfg, result, _ = fixture_run
    assert report_settings(cfg) == ReportConfig()
    few = dataclasses.make_dataclass("Cfg", [("report", ReportConfig)])(ReportConfig(bootstrap_resamples=50, seed=3))
    assert report_settings(few).bootstrap_resamples == 50 and report_settings(few).seed == 3
    with pytest.raises(Exception, match="ci"):
        ReportConfig(ci=1.5)


def test_read_run_renders_the_same_report_from_the_directory(fixture_run):
    cfg, result, paths = fixture_run
    again, config = read_run(result.run_dir)
    assert set(again.tables) >= {"groups", "components", "judgments", "prompts"}
    assert [s.stage for s in again.stages] == [s.stage for s in result.stages]
    before = orjson.loads(paths["json"].read_bytes())
    after = report_data(again, config)
    for key in ("unique", "spearman", "classification", "judging", "tradeoff"):
        assert orjson.loads(orjson.dumps(after[key])) == before[key], key
    assert [s["rows_per_s"] for s in after["throughput"]["stages"]] == [
        s["rows_per_s"] for s in before["throughput"]["stages"]]


def test_a_directory_without_run_stats_renders_without_throughput(fixture_run, tmp_path):
    _, result, _ = fixture_run
    copy = tmp_path / "copy"
    shutil.copytree(result.run_dir, copy, ignore=shutil.ignore_patterns("run_stats.json", "shards"))
    again, config = read_run(copy)
    assert again.stages == []
    paths = write_report(again, dataclasses.replace(config, run_dir=str(copy)))
    assert "run_stats" not in paths and not (copy / "run_stats.json").exists()
    text = paths["markdown"].read_text()
    assert "No stage records" in text and not (copy / "figures" / "throughput.png").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def test_headless_chromium_renders_the_html(fixture_run, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary on PATH (install Debian's `chromium` package to run this check)")
    from matplotlib.image import imread

    _, _, paths = fixture_run
    shot = tmp_path / "shot.png"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,2000", paths["html"].resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    pixels = imread(io.BytesIO(data))[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    # Not blank: text, tables and the first figures put ink on a good part of the page.
    inked = (pixels.min(axis=2) < 0.85).mean()
    assert inked > 0.02, f"the screenshot is nearly blank ({inked:.3%} inked)"
    assert len({tuple(p) for p in pixels[::20, ::20].reshape(-1, 3).round(2).tolist()}) > 20


def test_a_stage_whose_replies_carried_no_usage_has_an_unknown_cost(fixture_run):
    # An HTTP backend counts replies without token usage (actors.http: usage_missing); their priced tokens were
    # summed as the stage's and the run's cost, a figure that reads as known and is too low.
    from engine.report.run_stats import run_stats

    cfg, result, _ = fixture_run
    stages = [dataclasses.replace(s, backend={**s.backend, "cost_usd": 0.5}) for s in result.stages]
    priced = run_stats(dataclasses.replace(result, stages=stages), cfg)
    assert priced["totals"]["cost_usd"] == pytest.approx(0.5 * len(stages))
    stages[0] = dataclasses.replace(stages[0], backend={**stages[0].backend, "usage_missing": 2})
    unknown = run_stats(dataclasses.replace(result, stages=stages), cfg)
    assert unknown["stages"][0]["cost_usd"] is None and unknown["stages"][0]["usage_missing"] == 2
    assert unknown["stages"][1]["cost_usd"] == 0.5 and unknown["totals"]["cost_usd"] is None


def test_a_stage_whose_replies_carried_no_token_counts_has_unknown_tokens(fixture_run):
    # A server without usage (actors.http: tokens_missing, priced or not): its stage's generated tokens were the 0
    # counted, and the report said 0.0 generated tok/s.
    from engine.report.run_stats import run_stats

    cfg, result, _ = fixture_run
    k = next(i for i, s in enumerate(result.stages) if s.stage.startswith("sample"))
    stages = list(result.stages)
    stages[k] = dataclasses.replace(stages[k], backend={**stages[k].backend, "completion_tokens": 0,
                                                          "tokens_missing": 3})
    stats = run_stats(dataclasses.replace(result, stages=stages), cfg)
    assert stats["stages"][k]["completion_tokens"] is None and stats["stages"][k]["completion_tokens_per_s"] is None


def test_collect_runs_tabulates_run_stats(fixture_run, tmp_path, capsys):
    from tests.support.benchmarks import load_benchmark

    collect = load_benchmark("collect_runs")
    _, _, paths = fixture_run
    run_dir = paths["run_stats"].parent
    stats = orjson.loads(paths["run_stats"].read_bytes())
    assert collect.main([str(run_dir), "--stages"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line for line in lines if line.startswith("| run |") and ("| executor |" in line or "| stage |" in line)]
    assert len(headers) == 2
    mine = [line for line in lines if line.startswith(f"| {run_dir.name} |") and line not in headers]
    assert len(mine) == 1 + len(stats["stages"])  # the run's row, then one per stage
    assert {s["stage"] for s in stats["stages"]} == {line.split("|")[2].strip() for line in mine[1:]}
    # A directory without run_stats.json is skipped with a reason; nothing collected is an error.
    assert collect.main([str(tmp_path)]) == 1
    assert "no run_stats.json" in capsys.readouterr().err


# Figure 2 compares strategies on the same prompts: a prompt short under one strategy leaves the paired cells of
# every strategy, and stays in the unpaired table where its groups are complete.
def test_figure2_is_paired_over_prompts_complete_under_every_strategy():
    from functools import partial

    from engine.report.data import _unique_section
    from engine.report.stats import bootstrap_mean_ci

    def g(prompt, strategy, unique, status="ok"):
        return {"prompt_id": prompt, "model": "m", "strategy": strategy, "category": "G", "status": status,
                "n_responses": 3 if status == "ok" else 2, "unique_mean": unique if status == "ok" else None,
                "unresolved_judges": [], "missing_judges": []}

    groups = [g("p1", "temperature", 1.0), g("p1", "regen_general", 3.0),
              g("p2", "temperature", 2.0), g("p2", "regen_general", None, status="short")]
    u = _unique_section(groups, 3, partial(bootstrap_mean_ci, resamples=50, seed=0),
                        ["temperature", "regen_general"])
    paired = {(c["category"], c["strategy"]): c for c in u["cells"]}
    unpaired = {(c["category"], c["strategy"]): c for c in u["unpaired_cells"]}
    assert paired[("G", "temperature")]["estimate"]["value"] == 1.0 and paired[("G", "temperature")]["groups"] == 1
    assert unpaired[("G", "temperature")]["estimate"]["value"] == 1.5 and unpaired[("G", "temperature")]["groups"] == 2
    assert u["paired_prompts"] == {"m": 1}


def test_agreement_sample_is_a_deterministic_draw_by_group():
    from engine.method.judges import in_agreement_sample

    keys = [(f"p{i}", "m", "s") for i in range(2000)]
    assert not any(in_agreement_sample(k, 0.0) for k in keys) and all(in_agreement_sample(k, 1.0) for k in keys)
    drawn = [k for k in keys if in_agreement_sample(k, 0.05)]
    assert 60 <= len(drawn) <= 140  # ~100 of 2000
    assert drawn == [k for k in keys if in_agreement_sample(k, 0.05)]
    # A larger rate keeps every group a smaller one drew, so raising it only adds judging.
    assert set(drawn) <= {k for k in keys if in_agreement_sample(k, 0.2)}


def test_several_graders_each_grade_and_quality_is_their_mean(fixture_run):
    cfg, result, paths = fixture_run
    quality = result.tables["quality"].to_pylist()
    assert {q["grader"] for q in quality} == {"scripted", "scripted-b"}
    by_response: dict = {}
    for q in quality:
        if q["grade"] is not None:
            by_response.setdefault((q["prompt_id"], q["model"], q["strategy"], q["sample_idx"]), []).append(q["grade"])
    assert all(len(v) == 2 for v in by_response.values())
    for g in result.tables["groups"].to_pylist():
        mine = [sum(v) / len(v) for k, v in by_response.items() if k[:3] == (g["prompt_id"], g["model"], g["strategy"])]
        if mine:
            assert g["quality_mean"] == pytest.approx(sum(mine) / len(mine))
    data = orjson.loads(paths["json"].read_bytes())
    (agree,) = data["graders"]["agreement"]
    assert agree["responses"] == len(by_response) and agree["exact"] == 1.0  # two copies of one grader
    text = paths["markdown"].read_text()
    assert "### Quality by grader" in text


def test_deviations_from_the_paper_come_from_the_run_settings(fixture_run):
    cfg, _, paths = fixture_run
    data = orjson.loads(paths["json"].read_bytes())
    devs = "\n".join(data["deviations"])
    assert "scripted (scripted)" in devs and "GPT-4o" in devs
    assert "No reward model" in devs and "scripted, scripted-b" in devs
    assert "whether or not each is correct" in devs  # B's criterion is one of difference, not of correctness
    section = paths["markdown"].read_text().split("## Deviations from the paper", 1)[1].split("\n## ", 1)[0]
    assert "No reward model" in section
    assert "NoveltyBench" not in devs  # builtin prompts


def test_noveltybench_categories_mapped_from_its_own_are_said_to_be_so():
    # The paper labelled its 100 NoveltyBench prompts one by one; the loader maps NoveltyBench's six categories
    # (35 B where the paper had 16 B in all): the criteria those prompts are judged under follow the mapping.
    from engine.api import build_config
    from engine.report.data import deviations

    prompts = pa.Table.from_pylist([{"source": "noveltybench", "gold_category": "B"},
                                    {"source": "noveltybench", "gold_category": "H"},
                                    {"source": "noveltybench", "gold_category": None},
                                    {"source": "simpleqa", "gold_category": "A"}])
    (said,) = [d for d in deviations(build_config(), prompts) if "NoveltyBench" in d]
    assert said.startswith("The 2 NoveltyBench prompts' gold categories are mapped from NoveltyBench's own categories")


def test_no_answer_and_not_attempted_count_wrong_and_have_their_own_rate():
    from functools import partial

    from engine.report.stats import bootstrap_mean_ci
    from engine.report.data import _accuracy_section

    prompts = pa.Table.from_pylist([{"prompt_id": "m1", "source": "math500"},
                                    {"prompt_id": "q1", "source": "simpleqa"}])
    rows = [  # MATH: one right, one with no final answer; SimpleQA: one right, one "not attempted", one ungraded
        {"prompt_id": "m1", "method": "math-verify", "correct": True, "answered": True},
        {"prompt_id": "m1", "method": "math-verify", "correct": False, "answered": False},
        {"prompt_id": "q1", "method": "grader", "correct": True, "answered": True},
        {"prompt_id": "q1", "method": "grader", "correct": False, "answered": False},
        {"prompt_id": "q1", "method": "grader", "correct": None, "answered": None},
    ]
    accuracy = pa.Table.from_pylist([{"model": "m", "strategy": "temperature", **r} for r in rows])
    out = _accuracy_section({"prompts": prompts, "accuracy": accuracy}, [], ["temperature"],
                            partial(bootstrap_mean_ci, resamples=50, seed=0, ci=0.95))
    by_source = {r["source"]: r for r in out["rows"]}
    for source in ("math500", "simpleqa"):
        r = by_source[source]
        assert r["checked"] == 2 and r["accuracy"]["value"] == 0.5
        assert r["unanswered"] == 1 and r["unanswered_rate"] == 0.5
    assert by_source["simpleqa"]["unchecked"] == 1


def test_figure_3a_needs_no_count_and_3b_does(fixture_run):
    # Figure 3a (vocabulary diversity against quality) kept only groups with a resolved unique count, so a run that
    # judged traces only (no answer count) had an empty 3a, and unresolved groups dropped out of it.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    for g in groups:
        g["unique_mean"] = None  # as in a `judge.target: trace` run
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    tradeoff = report_data(dataclasses.replace(result, tables=tables), cfg)["tradeoff"]
    full = [g for g in groups if g["status"] == "ok" and g["n_responses"] == cfg.n]
    assert tradeoff["points_3b"] == [] and sum(p["groups"] for p in tradeoff["points_3a"]) == len(full) > 0
    # Its contrast (most against least diverse strategy) is paired over the same groups: it drew on groups with a
    # count, and was empty here.
    (contrast,) = [c for c in tradeoff["contrasts"] if c["figure"] == "3a"]
    assert contrast["quality_difference"]["value"] is not None


def test_responses_without_a_grade_are_counted_in_the_tradeoff_section(fixture_run):
    # An unread grade is unknown: out of the quality means, and said — how many, and how many groups have none.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    assert all(g["n_graded"] == g["n_responses"] for g in groups if g["status"] == "ok")  # the double grades all
    first, second = groups[0]["prompt_id"], groups[1]["prompt_id"]
    for g in groups:
        if g["prompt_id"] == first:  # two of its responses' grades unread
            g["n_graded"] = g["n_responses"] - 2
        elif g["prompt_id"] == second:  # no grade at all (its checklist unread)
            g["n_graded"], g["quality_mean"] = 0, None
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    per_prompt = {p: sum(1 for g in groups if g["prompt_id"] == p and g["status"] == "ok") for p in (first, second)}
    # Every group of the fixture has a resolved count: Figures 3a and 3b are over the same groups, said once.
    grades = data["tradeoff"]["grades"]
    assert grades["3a"] == grades["3b"]
    assert grades["3b"]["ungraded"] == 2 * per_prompt[first] + cfg.n * per_prompt[second]
    assert grades["3b"]["groups_without_quality"] == per_prompt[second]
    text = render_markdown(data)
    assert "Figures 3a and 3b (every group with all n responses, each with a resolved count): " in text
    assert f"{grades['3b']['ungraded']} have none" in text and "Figure 3a (" not in text


def test_each_spearman_cell_says_its_groups_where_the_metrics_have_different_numbers(fixture_run):
    # A metric leaves out the groups it has no value for: the groups column gave the first metric's number for all.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    for g in groups[::2]:
        g["vocab_div"] = None
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    ns = {r["metric"]: r["estimate"]["n"] for r in data["spearman"]["rows"] if r["category"] == "all"}
    assert len(set(ns.values())) > 1, ns
    section = render_markdown(data).split("## Do general metrics track", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in section.splitlines() if line.startswith("| all categories |")]
    assert f"| {min(ns.values())}–{max(ns.values())} |" in row
    assert all(f"({n} groups)" in row for n in ns.values()), row
    # A stored NaN is as missing as a None: counted so, never as a value the bootstrap then drops unsaid.
    for g in groups[::2]:
        g["vendi"] = float("nan")
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    cells = report_data(dataclasses.replace(result, tables=tables), cfg)["class_measures"]["cells"]
    assert sum(c["vendi_missing"] for c in cells if c["category"] == "all") >= len(groups[::2])


def test_responses_without_a_reward_are_counted_in_the_tradeoff_section(fixture_run):
    # A response longer than the reward model reads has no score: out of the reward means, and said.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    complete = [g for g in groups if g["status"] == "ok"]
    for k, g in enumerate(groups):
        g["n_rewarded"] = g["n_responses"]
        g["reward_mean"] = float(k % 3)
    complete[0]["n_rewarded"] -= 1
    complete[1]["n_rewarded"], complete[1]["reward_mean"] = 0, None
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema),
              "rewards": pa.table({"reward": [1.0]})}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    rewards = data["tradeoff"]["rewards"]
    assert rewards["unrewarded"] == 1 + complete[1]["n_responses"] and rewards["groups_without_reward"] == 1
    text = render_markdown(data)
    assert f"{rewards['unrewarded']} have none (the conversation is longer than the reward model reads" in text
    # Nothing scored at all: Figure 3a falls back to checklist quality, and says why (not "no reward model ran").
    for g in groups:
        g["n_rewarded"], g["reward_mean"] = 0, None
    tables["groups"] = pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)
    text = render_markdown(report_data(dataclasses.replace(result, tables=tables), cfg))
    assert "The reward model scored no response: Figure 3a uses checklist quality" in text
    # Groups with no reward rows at all (the reward shard failed) are not put down to length.
    for g in groups:
        g["n_rewarded"] = None
    tables["groups"] = pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    assert data["tradeoff"]["rewards"]["unrewarded"] == 0 and data["tradeoff"]["rewards"]["groups_not_scored"] > 0
    assert "were not scored by the reward model (its shard failed" in render_markdown(data)


def test_a_strategy_that_never_completed_does_not_empty_the_paired_figure(fixture_run):
    # A small model that never writes the asked-for headers leaves every system_anchored group short: no prompt was
    # complete under every strategy, and the model's paired table and figure came out empty beside full data.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    never = cfg.strategies[-1]
    for g in groups:
        if g["strategy"] == never:
            g["status"], g["n_responses"] = "short", 1
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    u = data["unique"]
    model = data["models"][0]
    assert u["paired_prompts"][model] > 0 and u["unpaired_strategies"][model] == [never]
    assert any(c["model"] == model for c in u["cells"])
    assert f"every strategy with a complete group (not {never}: none complete)" in render_markdown(data)


def test_a_trace_judges_failed_shard_is_said_not_averaged_away():
    # One trace judge's shard failed: unique_trace_mean averaged the other judges and nothing said so; with no
    # judge's count, the group was put down as "unresolved" whatever the cause.
    import types

    from engine.report.data import _trace_section
    from engine.report.stats import bootstrap_mean_ci

    def group(pid, trace_mean, unresolved, missing, answers=2.0, over_trace_judges=2.0):
        return {"prompt_id": pid, "model": "m", "strategy": "temperature", "category": "D", "status": "ok",
                "n_responses": 3, "unique_mean": answers, "unique_mean_trace_judges": over_trace_judges,
                "trace_status": "traced", "unique_trace_mean": trace_mean,
                "trace_unresolved_judges": unresolved, "trace_missing_judges": missing}

    # A trace count is over every trace judge or unknown (groups_table): p2's, with j2's shard failed, is unknown.
    groups = [group("p1", 2.0, [], [], answers=3.0), group("p2", None, [], ["j2"]),
              group("p3", None, [], ["j1", "j2"]), group("p4", None, ["j1"], ["j2"])]
    config = types.SimpleNamespace(judge=types.SimpleNamespace(target="both"))
    section = _trace_section(groups, 3, config, lambda v, clusters: bootstrap_mean_ci(v, clusters=clusters,
                                                                                          resamples=50))
    cell = next(c for c in section["cells"] if c["category"] == "all")
    assert cell["gaps"]["missing"] == 2 and cell["gaps"]["unresolved"] == 1 and "partial_judges" not in cell["gaps"]
    # Answers and the difference are over the trace judges: p1's answers over every judge (3: the calibrated judge,
    # which judges no trace, among them) would make a difference of −1 where the trace judges see none.
    assert cell["paired"] == 1 and cell["difference"]["value"] == 0.0 and cell["answers"]["value"] == 2.0


def test_the_strategy_table_takes_every_column_over_the_same_groups():
    # The unique count was over complete groups, quality and the general metrics over every group: a one-response
    # short group of a system-prompt strategy weighed in its quality and not in its count.
    from engine.report.data import GENERAL_METRICS, _by_strategy

    def group(pid, status, n_responses, unique, quality, vocab):
        return {"model": "m", "strategy": "system_general", "prompt_id": pid, "status": status,
                "n_responses": n_responses, "unique_mean": unique, "quality_mean": quality,
                **{c: None for c in GENERAL_METRICS}, "vocab_div": vocab}

    (row,) = _by_strategy([group("p1", "ok", 3, 3.0, 4.0, 0.8), group("p2", "short", 1, None, 1.0, 0.0),
                           group("p3", "ok", 3, None, 2.0, 0.6)], 3)
    assert row["unique_mean"] == 3.0 and row["quality_mean"] == 3.0 and row["vocab_div"] == pytest.approx(0.7)
    assert row["groups"] == 2 and row["short_groups"] == 1


def test_responses_cut_off_by_the_token_limit_are_counted_per_strategy(fixture_run):
    # Nothing in the report read finish_reason: responses that ran to sampling.max_tokens were judged, truncated,
    # with nothing to say so.
    from engine.report.data import report_data
    from engine.report.markdown import render_markdown

    cfg, result, _ = fixture_run
    responses = result.tables["responses"]
    first = responses.to_pylist()[0]
    reasons = ["length" if (r["prompt_id"], r["model"], r["strategy"]) == (first["prompt_id"], first["model"],
                                                                          first["strategy"]) else "stop"
               for r in responses.to_pylist()]
    tables = {**result.tables, "responses": responses.set_column(
        responses.schema.get_field_index("finish_reason"), "finish_reason", pa.array(reasons))}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    row = next(r for r in data["by_strategy"] if (r["model"], r["strategy"]) == (first["model"], first["strategy"]))
    # one group's responses cut: one completion of a system-prompt strategy, else each response its own
    assert row["cut_off"] == (1 if first["strategy"].startswith("system_") else reasons.count("length")) > 0
    assert sum(r["cut_off"] for r in data["by_strategy"]) == row["cut_off"]
    assert "| cut off |" in render_markdown(data) and f"| {row['cut_off']} of {row['completions']} |" in \
        render_markdown(data)


def test_cut_off_counts_completions_so_that_system_prompt_and_other_strategies_compare():
    # Only a system-prompt group's last response carries its completion's finish reason, and a completion cut before
    # response n is a short group: counted per response over complete groups, its strategy looked less cut.
    from engine.report.data import GENERAL_METRICS, _by_strategy

    def group(pid, strategy, status, n_responses):
        return {"model": "m", "strategy": strategy, "prompt_id": pid, "status": status, "n_responses": n_responses,
                "unique_mean": None, "quality_mean": None, **{c: None for c in GENERAL_METRICS}}

    def responses(pid, strategy, reasons):
        return [{"prompt_id": pid, "model": "m", "strategy": strategy, "finish_reason": r} for r in reasons]

    groups = [group("p1", "system_general", "ok", 3), group("p2", "system_general", "short", 2),
              group("p3", "system_general", "ok", 3), group("p1", "temperature", "ok", 3),
              group("p2", "temperature", "error", 0)]
    rows = {r["strategy"]: r for r in _by_strategy(groups, 3, [
        *responses("p1", "system_general", ["stop", "stop", "length"]),
        *responses("p2", "system_general", ["stop", "length"]),  # cut inside its third response: short
        *responses("p3", "system_general", ["stop", "stop", "stop"]),
        *responses("p1", "temperature", ["length", "stop", "length"])])}
    assert (rows["system_general"]["cut_off"], rows["system_general"]["completions"]) == (2, 3)
    assert (rows["temperature"]["cut_off"], rows["temperature"]["completions"]) == (2, 3)


def test_the_bounds_of_the_groups_left_out_for_an_unresolved_count_are_shown(fixture_run):
    # Groups whose count did not resolve were only counted as left out: a reader could not see how far the means,
    # over the groups that resolved (the homogeneous ones sooner), might move. Their bounds are tabled beside them.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    target = next(g for g in groups if g["status"] == "ok" and g["n_responses"] == cfg.n)
    target.update(unique_mean=None, unique_low_mean=2.0, unique_high_mean=4.0)
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    u = data["unique"]
    assert u["bounds_unresolved"] == 1
    (cell,) = [b for b in u["bounds"] if (b["model"], b["category"], b["strategy"])
               == (target["model"], target["category"] or "?", target["strategy"])]
    assert cell["unresolved"] == 1 and cell["low"] <= cell["high"]
    assert "Bounds: the mean of the groups' lower – upper bounds" in render_markdown(data)
    # A category none of whose groups resolved (the case the table is for) has its row too.
    for g in groups:
        if g["category"] == target["category"] and g["status"] == "ok" and g["n_responses"] == cfg.n:
            g.update(unique_mean=None, unique_low_mean=1.0, unique_high_mean=3.0)
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    assert target["category"] not in data["unique"]["categories"]
    bounds_table = render_markdown(data).split("Bounds: the mean")[0].rsplit("| category |", 1)[1]
    assert category_name(target["category"]) in bounds_table
    untouched = report_data(result, cfg)["unique"]
    assert untouched["bounds_unresolved"] == 0
    assert "Bounds: the mean" not in render_markdown(report_data(result, cfg))


def test_every_spearman_table_gives_each_metrics_own_group_count():
    # The other-judges and LLM-only tables headed every column with the first metric's count (the main one had been
    # fixed): a metric with fewer groups read as resting on more.
    from engine.report.sections import _spearman_view

    def row(metric, n):
        return {"category": "G", "metric": metric,
                "estimate": {"value": 0.5, "low": 0.1, "high": 0.8, "n": n, "note": ""}}

    rows = [row("vocab_div", 12), row("embed_div", 9)]
    data = {"spearman": {"categories": ["G"], "metrics": ["vocab_div", "embed_div"], "rows": rows,
                         "calibrated_judges": ["cheap"], "rows_other_judges": rows, "other_judges_groups": 12,
                         "cascade": True, "cheap_pairs": 3, "cheap_share": 0.1, "llm_only_groups": 12,
                         "rows_llm_only": rows}}
    tables = [b for b in _spearman_view(data, "95%").blocks if type(b).__name__ == "Table"]
    assert len(tables) == 3
    for table in tables:
        (cells,) = table.rows
        assert cells[1] == "9–12" and cells[2].endswith("(12 groups)") and cells[3].endswith("(9 groups)")


def test_judge_agreement_and_per_judge_groups_are_over_complete_groups(fixture_run):
    # The judge stage writes a count for every group: a group that parsed into no response gets 0 from every judge,
    # and that agreement measured nothing, yet it counted toward "same unique count", ρ and each judge's groups.
    from scipy.stats import spearmanr

    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    comps = result.tables["components"].to_pylist()
    empty = cfg.strategies[1]
    assert empty.startswith("system")
    for g in groups:
        if g["strategy"] == empty:
            g.update(status="short", n_responses=0)
    short = {(g["prompt_id"], g["model"], g["strategy"]) for g in groups if g["status"] == "short"}
    for c in comps:
        if (c["prompt_id"], c["model"], c["strategy"]) in short:
            c.update(n_responses=0, unique=0, unique_low=0, unique_high=0)
        elif c["judge"] == "scripted-b":  # b's count is off by one on every complete group
            c.update(unique=c["unique"] + 1 if c["unique"] < cfg.n else c["unique"] - 1)
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema),
              "components": pa.Table.from_pylist(comps, schema=result.tables["components"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    judging = data["judging"]
    complete = [g for g in groups if g["status"] == "ok" and g["n_responses"] == cfg.n]
    assert len(short) > 0 and len(complete) > 0
    (pair,) = judging["agreement"]
    assert pair["groups_both"] == len(complete) and pair["groups_left_out"] == len(short)
    assert pair["unique_exact"] == 0.0
    assert all(v["exact"] == 0.0 for v in pair["unique_exact_by_category"].values())
    assert sum(v["groups"] for v in pair["unique_exact_by_category"].values()) == len(complete)
    by = {(c["judge"], c["prompt_id"], c["model"], c["strategy"]): c["unique"] for c in comps}
    keys = [(g["prompt_id"], g["model"], g["strategy"]) for g in complete]
    rho = spearmanr([by[("scripted",) + k] for k in keys], [by[("scripted-b",) + k] for k in keys]).statistic
    assert pair["unique_spearman"]["value"] == pytest.approx(rho)
    assert [r["groups"] for r in judging["per_judge"]] == [len(complete)] * 2
    text = render_markdown(data)
    assert f"scripted / scripted-b: {len(short)} groups both counted without all n responses" in text


def test_tradeoff_counts_missing_grades_and_scores_over_the_groups_each_figure_uses(fixture_run):
    # Figure 3a plots every group with all n responses, a group whose count did not resolve included; the missing
    # grades were counted over complete groups only, so those of 3a's other groups went unsaid.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    full = [g for g in groups if g["status"] == "ok" and g["n_responses"] == cfg.n]
    unresolved, resolved = full[:3], full[3]
    for g in unresolved:  # no count, and one response without a grade each
        g.update(unique_mean=None, n_graded=cfg.n - 1)
    resolved["n_graded"] = cfg.n - 2
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    text = render_markdown(data)
    assert f"Figure 3a (every group with all n responses): {cfg.n * len(full) - 5} of {cfg.n * len(full)} " in text
    assert "Figure 3b (the groups with all n responses and a resolved count): " in text
    assert "Figure 3a plots no count: its means are over every group with all n responses" in text
    assert "mean over complete groups" not in text
    grades = data["tradeoff"]["grades"]
    assert grades["3a"] == {"groups": len(full), "responses": cfg.n * len(full), "graded": cfg.n * len(full) - 5,
                            "ungraded": 5, "groups_without_quality": 0}
    assert grades["3b"] == {"groups": len(full) - 3, "responses": cfg.n * (len(full) - 3),
                            "graded": cfg.n * (len(full) - 3) - 2, "ungraded": 2, "groups_without_quality": 0}
    assert sum(p["groups"] for p in data["tradeoff"]["points_3a"]) == len(full)  # what 3a's counts are over


def test_missing_reward_scores_are_counted_over_figure_3a_groups(fixture_run):
    # With a reward score Figure 3a plots it, not checklist quality, over every group with all n responses: its
    # missing scores were counted over complete groups only, and the grades now count toward 3b's groups alone.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    full = [g for g in groups if g["status"] == "ok" and g["n_responses"] == cfg.n]
    unresolved = full[:3]
    for g in unresolved:  # no count, and one response without a grade each
        g.update(unique_mean=None, n_graded=cfg.n - 1)
    full[3]["n_graded"] = cfg.n - 2
    for g in groups:
        g.update(n_rewarded=g["n_responses"], reward_mean=1.0)
    unresolved[0]["n_rewarded"] = cfg.n - 1
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema),
              "rewards": pa.table({"reward": [1.0]})}
    tradeoff = report_data(dataclasses.replace(result, tables=tables), cfg)["tradeoff"]
    assert tradeoff["rewards"]["unrewarded"] == 1 and tradeoff["rewards"]["responses"] == cfg.n * len(full)
    assert list(tradeoff["grades"]) == ["3b"] and tradeoff["grades"]["3b"]["ungraded"] == 2


def test_quality_by_grader_is_a_mean_of_group_means_over_groups_with_all_n_responses(fixture_run):
    # Each grader's mean was over every response of every group, short ones included, where the quality by
    # strategy beside it is a mean of group means over the groups with all n responses: the two did not compare.
    cfg, result, _ = fixture_run
    groups = result.tables["groups"].to_pylist()
    model, strategy = groups[0]["model"], cfg.strategies[1]
    mine = [g for g in groups if g["model"] == model and g["strategy"] == strategy]
    short, one, other = mine[0], mine[1], mine[2]
    short.update(status="short", n_responses=2)
    key = lambda r: (r["prompt_id"], r["model"], r["strategy"])  # noqa: E731
    ids = {name: key(g) for name, g in (("short", short), ("one", one), ("other", other))}
    quality = []
    for r in result.tables["quality"].to_pylist():
        if key(r) == ids["short"]:
            if r["sample_idx"] >= 2:
                continue  # a short group has only its 2 responses
            r["grade"] = 1
        elif key(r) == ids["one"] and r["grader"] == "scripted":
            r["grade"] = 5 if r["sample_idx"] == 0 else None  # one grade read, three not
        elif key(r) == ids["other"] and r["grader"] == "scripted":
            r["grade"] = 2
        quality.append(r)
    tables = {**result.tables, "groups": pa.Table.from_pylist(groups, schema=result.tables["groups"].schema),
              "quality": pa.Table.from_pylist(quality, schema=result.tables["quality"].schema)}
    data = report_data(dataclasses.replace(result, tables=tables), cfg)
    per_group: dict = {}
    for r in quality:
        if r["grader"] == "scripted" and r["grade"] is not None and r["model"] == model and r["strategy"] == strategy:
            per_group.setdefault(r["prompt_id"], []).append(r["grade"])
    full = [g["prompt_id"] for g in mine if g["status"] == "ok" and g["n_responses"] == cfg.n]
    want = sum(sum(per_group[p]) / len(per_group[p]) for p in full) / len(full)
    (row,) = [r for r in data["graders"]["means"] if (r["model"], r["strategy"]) == (model, strategy)]
    assert row["scripted"] == pytest.approx(want)
    responses = [r["grade"] for r in quality if r["grader"] == "scripted" and r["grade"] is not None
                 and r["model"] == model and r["strategy"] == strategy]
    assert sum(responses) / len(responses) != pytest.approx(want)  # the old mean over responses differs here
    assert data["graders"]["ungraded"] == {"scripted": 3, "scripted-b": 0}
    text = render_markdown(data)
    assert "each group's mean grade, then the mean over groups" in text
    assert "scripted: 3 responses of these groups without a grade (unread), out of its means." in text


def test_the_tradeoffs_most_diverse_strategy_is_picked_over_the_prompts_it_is_paired_on():
    # A strategy that lost one group (its least diverse one) had the higher unpaired mean and was named most diverse,
    # while over the prompts both answered — those its quality difference is paired on — it was the least.
    from functools import partial

    from engine.report.data import _tradeoff_section
    from engine.report.stats import bootstrap_mean_ci

    def group(strategy, prompt, unique):
        return {"model": "m", "strategy": strategy, "prompt_id": prompt, "status": "ok", "n_responses": 3,
                "unique_mean": unique, "vocab_div": unique, "quality_mean": 4.0 if strategy == "t" else 3.0,
                "n_graded": 3, "category": "G"}

    groups = [group("t", "p1", 3.0), group("t", "p2", 3.0), group("t", "p3", 0.0),
              group("r", "p1", 2.5), group("r", "p2", 2.5)]  # r's group for p3 failed
    rc = ReportConfig(bootstrap_resamples=50)
    out = _tradeoff_section(groups, 3, ["m"], ["t", "r"], partial(bootstrap_mean_ci, resamples=50, seed=0, ci=0.95),
                            rc, has_quality=True)
    for contrast in out["contrasts"]:
        assert (contrast["most_diverse"], contrast["least_diverse"]) == ("t", "r"), contrast
        assert contrast["quality_difference"]["value"] == pytest.approx(1.0)  # t's 4 − r's 3, over p1 and p2
    assert {c["figure"] for c in out["contrasts"]} == {"3a", "3b"}
