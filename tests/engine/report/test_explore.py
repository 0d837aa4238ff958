"""explore.html: every group of a run on one self-contained page — checked in a real headless Chromium.

The page keeps its filters and the open group in the URL fragment, so each check loads the page at a link
(`file://…/explore.html#strategy=…&g=…`) and reads the DOM Chromium leaves after the page's script ran
(`--dump-dom`). Prompts, responses and a judge's raw answer carry planted markup; the page must show it as text
and run none of it. Screenshots land in the test's output folder.
"""

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pytest

from engine.report.explore import explorer_data, render_explorer, safe_json, write_explorer
from tests.support.runs import SCRIPTED, make_config, run

PAYLOAD = ('<script>document.title="PWNED"</script></script>'
           '<img src=x onerror="document.body.setAttribute(\'data-pwned\',\'1\')">')


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A real run (the scripted backend, two judges) whose first prompt, first response and first judge answer
    carry markup; returns (tables, explore.html path)."""
    tmp = tmp_path_factory.mktemp("explore")
    cfg = make_config(tmp, judges=[SCRIPTED, {**SCRIPTED, "name": "scripted-b"}],
                      strategies=["temperature", "regen_general"])
    result = run(cfg)
    t = dict(result.tables)

    def plant(table, column, row):
        values = table[column].to_pylist()
        values[row] = PAYLOAD + " " + (values[row] or "")
        return table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.string()))

    first = t["groups"]["prompt_id"][0].as_py()
    t["prompts"] = plant(t["prompts"], "text", t["prompts"]["prompt_id"].to_pylist().index(first))
    t["responses"] = plant(t["responses"], "text", 0)
    t["judgments"] = plant(t["judgments"], "raw", 0)
    path = write_explorer(t, tmp / "run")
    return t, path


def dom(path: Path, fragment: str, tmp_path: Path, shot: str | None = None) -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary on PATH (install Debian's `chromium` package to run this check)")
    url = path.resolve().as_uri() + "#" + fragment
    common = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000",
              f"--user-data-dir={tmp_path / 'profile'}"]
    if shot:
        subprocess.run([*common, f"--screenshot={tmp_path / shot}", "--window-size=1400,1000", url],
                       capture_output=True, text=True, timeout=120)
        assert (tmp_path / shot).is_file()
    out = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert "<body" in out.stdout, out.stderr[-2000:]
    return out.stdout


def count_shown(page: str) -> tuple[int, int]:
    m = re.search(r'<span id="count">(\d+) of (\d+) groups</span>', page)
    assert m, page[:2000]
    return int(m.group(1)), int(m.group(2))


def group_id(g: dict) -> str:
    return json.dumps([g["prompt_id"], g["model"], g["strategy"]], separators=(",", ":"))


def test_the_data_is_inert_json_and_the_only_script_is_pinned(planted):
    tables, path = planted
    page = path.read_text()
    data = explorer_data(tables)
    assert data["shown"] == data["total"] == tables["groups"].num_rows
    assert "<" not in safe_json(data) and "\u2028" not in safe_json({"x": "\u2028"})
    # One element of data (never executed) and one of code, whose hash the Content-Security-Policy pins.
    assert page.count('<script type="application/json"') == 1 and page.count("<script>") == 1
    assert "script-src 'sha256-" in unescape(page) and "img-src 'none'" in unescape(page)
    assert PAYLOAD not in page  # the planted markup appears only escaped
    # A group's id is its key as a JSON list: joined with "|", prompt "p|m" of model "x" and prompt "p" of model
    # "m|x" were one id, and the second group could not be opened.
    assert [json.loads(g["id"]) for g in data["groups"]] == [
        [g["prompt_id"], g["model"], g["strategy"]] for g in tables["groups"].to_pylist()]


def test_filters_group_view_search_and_no_planted_code_runs(planted, tmp_path):
    tables, path = planted
    groups = tables["groups"].to_pylist()
    total = len(groups)

    page = dom(path, "", tmp_path, shot="explore-list.png")
    assert count_shown(page) == (total, total)

    temperature = sum(g["strategy"] == "temperature" for g in groups)
    assert count_shown(dom(path, "strategy=temperature", tmp_path)) == (temperature, total)
    category = groups[0]["category"]
    both = sum(g["strategy"] == "regen_general" and g["category"] == category for g in groups)
    assert count_shown(dom(path, f"strategy=regen_general&category={category}", tmp_path)) == (both, total)

    # The first group, open: its responses carry the classes of the components table, for either judge.
    g = groups[0]
    comps = {c["judge"]: c for c in tables["components"].to_pylist()
             if (c["prompt_id"], c["model"], c["strategy"]) == (g["prompt_id"], g["model"], g["strategy"])}
    for judge in ("scripted", "scripted-b"):
        page = dom(path, f"judge={judge}&g={quote(group_id(g), safe='')}", tmp_path,
                   shot="explore-group.png" if judge == "scripted" else None)
        shown = [None if c == "unknown" else int(c) for c in re.findall(r'data-class="([^"]*)"', page)]
        assert shown == comps[judge]["classes"]
        n = g["n_responses"]
        judged = comps[judge]["n_pairs_judged"]
        cells = len(re.findall(r'<td class="cell ', page))
        assert cells == 2 * judged  # each judged pair in both halves of the matrix; pruned pairs say so
        assert page.count(">pruned<") == n * (n - 1) - 2 * judged
        # Planted markup shows as text and runs nowhere.
        assert not re.search(r"<body[^>]*data-pwned", page), "a planted onerror handler ran"
        assert not re.search(r"<title>[^<]*PWNED", page), "a planted script ran"
        assert "<img" not in page  # no planted element was created at all
        assert unescape(page).count('document.title="PWNED"') >= 2  # in the prompt and in the first response

    # Search finds a response by its text.
    word = next(w for w in re.findall(r"[A-Za-z]{6,}", tables["responses"]["text"][3].as_py())
                if w not in PAYLOAD)
    texts = {}
    for r in tables["responses"].to_pylist():
        texts.setdefault((r["prompt_id"], r["model"], r["strategy"]), []).append(r["text"])
    prompts = {p["prompt_id"]: p["text"] for p in tables["prompts"].to_pylist()}
    hits = sum(1 for g in groups if word.lower() in "\n".join(
        [prompts[g["prompt_id"]], *texts.get((g["prompt_id"], g["model"], g["strategy"]), [])]).lower())
    assert count_shown(dom(path, f"q={quote(word)}", tmp_path)) == (hits, total)


def test_ten_thousand_groups_render_one_page_of_rows(planted, tmp_path):
    # How long the first render takes is measured in benchmarks/explore_render.py (a browser's time on a shared
    # 2-core machine is no unit test: under the suite's own load it crossed 2 s by 67 ms).
    tables, _ = planted
    data = explorer_data(tables)
    base = data["groups"]
    many = [{**base[k % len(base)], "id": f"{k}|{base[k % len(base)]['id']}"} for k in range(10_000)]
    data = {**data, "groups": many, "total": len(many), "shown": len(many)}
    path = tmp_path / "explore-10k.html"
    path.write_text(render_explorer(data, "10k"))
    page = dom(path, "", tmp_path)
    assert count_shown(page) == (10_000, 10_000)
    assert re.search(r'data-first-render-ms="\d+"', page)  # the page got as far as its first render
    assert len(re.findall(r'<tr class="row', page)) == 50  # one page of rows, not ten thousand


def test_a_capped_page_says_how_to_write_a_subset(planted, tmp_path):
    tables, _ = planted
    path = write_explorer(tables, tmp_path, max_groups=2, out=tmp_path / "capped.html")
    text = path.read_text()
    assert "first 2 of" in text and "engine/run.py explore" in text


def test_a_page_is_capped_by_its_text_too_and_holds_each_prompt_once(planted, tmp_path):
    # The cap counted groups alone: 10,000 groups of paper-length responses made a 152 MB page (5 s to its first
    # render), and each prompt was written once per group of it (every model and strategy).
    from engine.report.explore import explorer_data

    tables, _ = planted
    whole = explorer_data(tables)
    assert "prompt" not in whole["groups"][0] and set(whole["prompts"]) == {g["prompt_id"] for g in whole["groups"]}
    first = tables["responses"].to_pylist()[0]
    one = len(first["text"])
    data = explorer_data(tables, max_text_chars=one)
    assert data["shown"] == 1 < whole["shown"]  # one group always, however long
    path = write_explorer(tables, tmp_path, max_text_chars=one, out=tmp_path / "text-capped.html")
    assert "first 1 of" in path.read_text() and f"at most {one:,} characters of text" in path.read_text()
    g = tables["groups"].to_pylist()[0]  # its prompt carries the planted markup: shown as text, from `prompts`
    page = dom(path, f"g={quote(group_id(g), safe='')}", tmp_path)
    assert count_shown(page) == (1, len(tables["groups"])) and unescape(page).count('document.title="PWNED"') >= 2


def test_the_generators_own_classification_filters(planted, tmp_path):
    """The generator's own class (what its anchored strategies were worded for) is a filter of its own: the groups
    where it differs from the judging category are the ones to read."""
    tables, _ = planted
    groups = tables["groups"]
    own = groups["classified"].to_pylist()
    own[0] = "H" if own[0] != "H" else "G"  # one group the generator put in another category
    t = {**tables, "groups": groups.set_column(groups.schema.get_field_index("classified"), "classified",
                                               pa.array(own, pa.string()))}
    (tmp_path / "run").mkdir()
    path = write_explorer(t, tmp_path / "run")
    assert count_shown(dom(path, f"own={own[0]}", tmp_path)) == (own.count(own[0]), len(own))
    assert 0 < own.count(own[0]) < len(own)
    page = dom(path, f"own={own[0]}&g={quote(group_id(t['groups'].to_pylist()[0]), safe='')}", tmp_path)
    assert f"classified as {own[0]}" in unescape(page)


def _page(tables, tmp_path, name):
    (tmp_path / name).mkdir()
    return write_explorer(tables, tmp_path / name)


def test_the_counts_offered_are_the_chosen_judges(planted, tmp_path):
    # The count filter's choices were built once, from the first judge's counts: a count only the second judge
    # gave could not be chosen, and a link to it (#judge=B&unique=k) silently showed every group.
    tables, _ = planted
    comps = tables["components"].to_pylist()
    odd = 1 + max(c["unique"] for c in comps if c["resolved"])
    second = next(c for c in comps if c["judge"] == "scripted-b")
    second["unique"], second["resolved"] = odd, True
    path = _page({**tables, "components": pa.Table.from_pylist(comps, schema=tables["components"].schema)},
                 tmp_path, "odd")
    total = tables["groups"].num_rows
    page = dom(path, f"judge=scripted-b&unique={odd}", tmp_path)
    assert count_shown(page) == (1, total)
    assert f'<option value="{odd}">' in page and "unique (<bdi>scripted-b</bdi>)" in page
    assert count_shown(dom(path, f"judge=scripted&unique={odd}", tmp_path)) == (total, total)  # not scripted's
    # A hand-typed link that is no valid escape ("100%"): decodeURIComponent threw and the page stayed blank.
    assert count_shown(dom(path, "q=100%", tmp_path)) == (0, total)


def test_a_run_that_judged_traces_only_shows_its_judges_and_counts(planted, tmp_path):
    # With judge.target: trace the answers' components table is empty: the page offered no judge, listed every
    # group's count as "none" and hid the traces' strategy classes.
    tables, _ = planted
    comps = tables["components"]
    path = _page({**tables, "components": comps.slice(0, 0), "trace_components": comps}, tmp_path, "traces")
    data = explorer_data({**tables, "components": comps.slice(0, 0), "trace_components": comps})
    assert data["judges"] == ["scripted", "scripted-b"] and data["counts"] == "traces"
    page = dom(path, "", tmp_path)
    assert "strategies (<bdi>scripted</bdi>)" in page and '<option value="scripted-b">' in page
    scripted = [c for c in comps.to_pylist() if c["judge"] == "scripted"]
    k = str(scripted[0]["unique"])
    assert count_shown(dom(path, f"unique={k}", tmp_path))[0] == sum(
        1 for c in scripted if c["resolved"] and str(c["unique"]) == k)


def test_uncategorised_is_apart_from_none_of_these_and_names_are_never_inherited_members(planted, tmp_path):
    # An uncategorised group (category null) and one in "none of these" (NONE_OF_THESE, "none") were one filter
    # value; a generator named "constructor" was no value at all (an object's inherited member read as seen), and a
    # judge named "toString" found a function as its counts. Components written before their bounds were a KeyError.
    tables, _ = planted
    groups = tables["groups"].to_pylist()
    for k, g in enumerate(groups):
        g["category"] = None if k % 2 else "none"
        g["classified"] = None if k % 2 else "none"
    groups[0]["model"] = "constructor"
    first = {k: groups[0][k] for k in ("prompt_id", "model", "strategy")}
    comps = [{**c, "model": "constructor"} if c["prompt_id"] == first["prompt_id"] and c["strategy"] == first[
        "strategy"] and c["model"] == tables["groups"]["model"][0].as_py() else c
             for c in tables["components"].to_pylist()]
    components = pa.Table.from_pylist(comps, schema=tables["components"].schema)
    components = components.drop_columns(["unique_low", "unique_high"])
    path = _page({**tables, "groups": pa.Table.from_pylist(groups, schema=tables["groups"].schema),
                  "components": components}, tmp_path, "names")
    page = unescape(dom(path, "", tmp_path))
    total, uncategorised = len(groups), len(groups) // 2
    assert count_shown(dom(path, "category=%3F", tmp_path)) == (uncategorised, total)
    assert count_shown(dom(path, quote("category=none of these", safe="="), tmp_path)) == (
        total - uncategorised, total)
    assert count_shown(dom(path, "own=%3F", tmp_path)) == (uncategorised, total)
    assert '<option value="constructor">' in page
    assert count_shown(dom(path, "model=constructor", tmp_path)) == (1, total)


def test_a_right_to_left_override_in_a_name_reverses_nothing_around_it(planted, tmp_path):
    # A model name (from a responses file) holding U+202E reversed the rest of the group's heading: each untrusted
    # value of a heading is isolated in a <bdi>.
    tables, _ = planted
    data = explorer_data(tables)
    first = dict(data["groups"][0], model="evil\u202eRTL", prompt_id="p\u202eid")
    data = {**data, "groups": [first, *data["groups"][1:]]}
    path = tmp_path / "explore-rtl.html"
    path.write_text(render_explorer(data, "rtl"))
    page = dom(path, f"g={quote(first['id'], safe='')}", tmp_path)
    heading = re.search(r"<h2>(.*?)</h2>", page).group(1)
    assert heading.startswith("<bdi>evil\u202eRTL</bdi> · <bdi>") and "</bdi> · category " in heading
    assert "prompt <bdi>p\u202eid</bdi>; gold" in page


def test_a_right_to_left_override_in_a_judges_name_reverses_nothing_around_it(planted, tmp_path):
    # The judge's name (from a config, or a received run's) was joined into the headings as plain text.
    import json

    tables, _ = planted
    data = explorer_data(tables)
    judge = data["judges"][0]
    data = json.loads(json.dumps(data).replace(json.dumps(judge), json.dumps(judge + "\u202eesrever")))
    path = tmp_path / "explore-rtl-judge.html"
    path.write_text(render_explorer(data, "rtl"))
    page = dom(path, f"g={quote(data['groups'][0]['id'], safe='')}", tmp_path)
    evil = f"<bdi>{judge}\u202eesrever</bdi>"
    assert f"Responses, coloured by {evil}'s classes" in page
    assert f"<h3>{evil}: " in page and f"({evil})</th>" in page
