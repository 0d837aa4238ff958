"""explore.html: every group of a run in one self-contained page — its prompt, its responses coloured by the
equivalence classes of a chosen judge, the pairwise matrix (P(equivalent), verdict, the judge's raw answer), general
metrics, quality and accuracy — with filters, search, pages and stable links (#g=<group>).

Model output and prompts are untrusted text. The page's data is JSON inside `<script type="application/json">`
(never executed; `<`, `>`, `&` and the line separators escaped so no text can close the element), the page's own
script is the only code, pinned by its hash in a Content-Security-Policy that also forbids images, frames, forms and
connections, and the script builds every element with textContent — never innerHTML. tests/engine/report/
test_explore.py plants `<script>`, `<img onerror>` and `</script>` in prompts, responses and judge answers and checks
in headless Chromium that nothing runs and the text shows literally.

Large runs: at most `max_groups` groups are embedded (the first ones in the groups table's order), and no more than
`max_text_chars` characters of their text (prompts, responses, traces, the judges' answers): the page's size and its
first render grow with the text, not the groups (10,000 groups of paper-length responses made a 152 MB page, 5 s to
first render, near the longest string a browser parses). A note on the page says how many are shown and gives the
command that writes a page for a subset (`python engine/run.py explore RUN --where …`). Each prompt is held once,
not once per group of it (a prompt's every model and strategy).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from engine.execution.store import atomic_write_bytes
from engine.method.metrics import GENERAL_METRICS

MAX_GROUPS = 10_000
MAX_TEXT_CHARS = 40_000_000  # ~40-80 MB of page: a first render of a few seconds
KEYS = ("prompt_id", "model", "strategy")


def matches(group: dict[str, Any], where: dict[str, list[str]]) -> bool:
    """Whether a group's row has one of the allowed values in every column of `where`: as text, or as the number
    the text names (--where unique_mean=2 finds 2.0)."""
    for column, allowed in where.items():
        value = group.get(column)
        if str(value) in allowed:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and any(
                _number(a) == value for a in allowed):
            continue
        return False
    return True


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def explorer_data(tables: dict[str, pa.Table], *, where: dict[str, list[str]] | None = None,
                  max_groups: int = MAX_GROUPS, max_text_chars: int = MAX_TEXT_CHARS) -> dict[str, Any]:
    """The page's data: one record per group (filtered by `where`: column → allowed values), capped at
    `max_groups` groups and `max_text_chars` characters of text (at least one group is shown); each prompt's text
    once, in `prompts`."""
    groups = tables["groups"].to_pylist()
    if where:
        groups = [g for g in groups if matches(g, where)]
    total = len(groups)
    groups = groups[:max_groups]
    wanted = {tuple(g[k] for k in KEYS) for g in groups}
    prompts = {p["prompt_id"]: p["text"] for p in tables["prompts"].select(["prompt_id", "text"]).to_pylist()}

    def by_group(name: str) -> dict[tuple, list[dict[str, Any]]]:
        out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        table = tables.get(name)
        if table is None:
            return out
        for r in table.to_pylist():
            key = tuple(r[k] for k in KEYS)
            if key in wanted:
                out[key].append(r)
        return out

    responses, judgments, comps = by_group("responses"), by_group("judgments"), by_group("components")
    trace_comps = by_group("trace_components")
    quality, accuracy, rewards = by_group("quality"), by_group("accuracy"), by_group("rewards")
    judges: list[str] = []
    records = []
    shown_prompts: dict[str, str] = {}
    chars = 0
    for g in groups:
        key = tuple(g[k] for k in KEYS)
        size = sum(len(r["text"] or "") + len(r.get("trace") or "") for r in responses.get(key, []))
        size += sum(len(p["raw"] or "") for p in judgments.get(key, []))
        size += len(prompts.get(g["prompt_id"], "")) if g["prompt_id"] not in shown_prompts else 0
        if records and chars + size > max_text_chars:
            break
        chars += size
        shown_prompts[g["prompt_id"]] = prompts.get(g["prompt_id"], "")
        ordered = sorted(responses.get(key, []), key=lambda r: r["sample_idx"])
        texts = [r["text"] for r in ordered]
        traces = [r.get("trace") for r in ordered]
        per_judge: dict[str, Any] = {}
        for c in comps.get(key, []):
            if c["judge"] not in judges:
                judges.append(c["judge"])
            per_judge[c["judge"]] = {
                # .get: run directories written before the bounds were kept open here too
                "unique": c["unique"], "low": c.get("unique_low"), "high": c.get("unique_high"),
                "resolved": c["resolved"],
                "classes": c.get("classes"), "entropy": c.get("semantic_entropy_norm"), "utility": c.get("utility"),
                "pairs": [],
            }
        for p in judgments.get(key, []):
            if p["judge"] in per_judge:
                per_judge[p["judge"]]["pairs"].append(
                    [p["i"], p["j"], p["p_equivalent"], p["verdict"], p["raw"], p.get("decided_by")])
        grades: dict[int, list[int]] = defaultdict(list)
        for q in quality.get(key, []):
            if q["grade"] is not None:
                grades[q["sample_idx"]].append(q["grade"])
        correct = {a["sample_idx"]: a["correct"] for a in accuracy.get(key, [])}
        reward = {r["sample_idx"]: r["reward"] for r in rewards.get(key, [])} if rewards else {}
        records.append({
            # The key as a JSON list: joined with "|", a "|" inside a prompt id or model name made two groups one.
            "id": orjson.dumps([g[k] for k in KEYS]).decode(),
            "prompt_id": g["prompt_id"], "model": g["model"], "strategy": g["strategy"],
            "category": g["category"], "category_source": g.get("category_source"),
            "gold": g.get("gold_category"), "classified": g.get("classified"), "status": g["status"],
            "responses": texts,
            "traces": traces if any(traces) else None,
            "trace_classes": {c["judge"]: c.get("classes") for c in trace_comps.get(key, [])},
            "trace_unique": {c["judge"]: c["unique"] if c["resolved"] else None for c in trace_comps.get(key, [])},
            "unique_mean": g["unique_mean"], "judges": per_judge,
            "metrics": {k: g.get(k) for k in (*GENERAL_METRICS, "semantic_entropy_norm_mean", "utility_mean", "vendi",
                                              "unique_trace_mean") if k in g},
            "grades": [(sum(grades[i]) / len(grades[i])) if grades.get(i) else None for i in range(len(texts))],
            "correct": [correct.get(i) for i in range(len(texts))],
            "reward": [reward.get(i) for i in range(len(texts))] if reward else None,
        })
    # A judge that judged traces only (judge.target: trace; a calibrated judge judges answers only) is a judge of
    # the page too: its strategy classes colour the traces, and with no answer judged its counts fill the list.
    answers_judged = bool(judges)
    for c in (r for rows in trace_comps.values() for r in rows):
        if c["judge"] not in judges:
            judges.append(c["judge"])
    return {"groups": records, "prompts": shown_prompts, "judges": judges, "total": total, "shown": len(records),
            "where": where or {}, "max_groups": max_groups, "max_text_chars": max_text_chars,
            "counts": "answers" if answers_judged or not judges else "traces"}


_UNSAFE = re.compile("[<>&\u2028\u2029]")


def safe_json(value: Any) -> str:
    """JSON that cannot end its <script> element or start markup: every <, >, & and line separator escaped."""
    text = orjson.dumps(value).decode()
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def render_explorer(data: dict[str, Any], title: str) -> str:
    script = _SCRIPT
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src 'none'; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    note = ""
    if data["shown"] < data["total"]:
        cap = (f"at most {data['max_groups']:,} groups" if data["shown"] >= data.get("max_groups", data["shown"])
               else f"at most {data.get('max_text_chars', MAX_TEXT_CHARS):,} characters of text")
        note = (f"This page holds the first {data['shown']} of {data['total']} groups ({cap}). Write a page for a "
                "subset with python engine/run.py explore RUN_DIR --where model=NAME --where strategy=NAME (any "
                "column of the groups table).")
    return _PAGE.format(csp=html.escape(csp, quote=True), title=html.escape(title), note=html.escape(note),
                        data=safe_json(data), script=script, style=_STYLE)


def write_explorer(tables: dict[str, pa.Table], run_dir: str | Path, *, where: dict[str, list[str]] | None = None,
                   max_groups: int = MAX_GROUPS, out: str | Path | None = None,
                   max_text_chars: int = MAX_TEXT_CHARS) -> Path:
    """Write explore.html (or `out`) for a run's tables; returns its path."""
    path = Path(out) if out is not None else Path(run_dir) / "explore.html"
    data = explorer_data(tables, where=where, max_groups=max_groups, max_text_chars=max_text_chars)
    atomic_write_bytes(path, render_explorer(data, f"taskdiv explorer — {Path(run_dir).name}").encode())
    return path


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}
header{padding:8px 12px;background:#f3f3f3;border-bottom:1px solid #ddd;position:sticky;top:0}
header label{margin-right:10px} select,input{font:inherit}
#note{color:#a40;margin:4px 0}
main{display:flex;gap:12px;padding:12px}
#list{width:38%;min-width:280px}
#list table{border-collapse:collapse;width:100%} #list td,#list th{border-bottom:1px solid #eee;padding:3px 4px;text-align:left}
#list tr.row{cursor:pointer} #list tr.row:hover{background:#eef}
#list tr.sel{background:#dde}
#group{flex:1;min-width:0}
.prompt,.resp,.raw{white-space:pre-wrap;word-break:break-word;border:1px solid #ddd;padding:6px;margin:4px 0;border-radius:4px}
.resp{border-left-width:8px}
table.matrix{border-collapse:collapse} table.matrix td,table.matrix th{border:1px solid #ccc;padding:3px 6px;text-align:center}
td.eq{background:#cfe8cf} td.diff{background:#f3d0d0} td.unres{background:#ffe9a8} td.pruned{color:#999}
td.cell{cursor:pointer}
.muted{color:#777}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<header>
<div><strong>{title}</strong> <span id="count"></span></div>
<div id="note">{note}</div>
<div id="filters">
<label>model <select id="f-model"></select></label>
<label>strategy <select id="f-strategy"></select></label>
<label>category <select id="f-category"></select></label>
<label>category from <select id="f-source"></select></label>
<label>generator's own class <select id="f-own"></select></label>
<label>judge <select id="f-judge"></select></label>
<label>unique <select id="f-unique"></select></label>
<label>search <input id="f-search" type="search" placeholder="text in prompt or responses"></label>
</div>
</header>
<main><section id="list"></section><section id="group"><p class="muted">Choose a group.</p></section></main>
<script type="application/json" id="explorer-data">{data}</script>
<script>{script}</script>
</body></html>
"""

# The page's only code. It reads the data element's text as JSON and builds every element with textContent.
_SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  (DATA.groups || []).forEach(function (g) {  // each prompt's text is held once (DATA.prompts), shared by its groups
    g.prompt = Object.prototype.hasOwnProperty.call(DATA.prompts || {}, g.prompt_id) ? DATA.prompts[g.prompt_id] : "";
  });
  var PAGE = 50;
  var COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
                 "#9c755f", "#bab0ac"];
  var state = {page: 0, selected: null};
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  // Our text and untrusted values, alternating: each untrusted one (a model's name, a strategy, a prompt id from a
  // responses file) in a <bdi>, so that a right-to-left override inside it cannot reverse the text around it.
  function line(tag, parts, cls) {
    var e = el(tag, null, cls);
    parts.forEach(function (p, i) { e.appendChild(i % 2 ? el("bdi", p) : document.createTextNode(String(p))); });
    return e;
  }
  function fmt(x, d) { return (x === null || x === undefined) ? "–" : Number(x).toFixed(d === undefined ? 2 : d); }
  // Every filter, the page and the open group live in the URL fragment (#model=…&q=…&g=…): links are stable.
  var FILTERS = {model: "f-model", strategy: "f-strategy", category: "f-category", source: "f-source",
                 own: "f-own", judge: "f-judge", unique: "f-unique", q: "f-search"};
  // A hand-edited link ("#q=100%") is no valid escape: decodeURIComponent throws; thrown here, the page stayed blank.
  function decoded(s) { try { return decodeURIComponent(s); } catch (e) { return s; } }
  function readHash() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var k = part.indexOf("="), key = k < 0 ? part : part.slice(0, k);
      out[decoded(key)] = k < 0 ? "" : decoded(part.slice(k + 1));
    });
    return out;
  }
  function writeHash(extra) {
    var h = readHash(), parts = [];
    Object.keys(FILTERS).forEach(function (k) {
      var v = document.getElementById(FILTERS[k]).value;
      if (v && v !== "all") h[k] = v; else delete h[k];
    });
    h.page = String(state.page);
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    Object.keys(h).forEach(function (k) { parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(h[k])); });
    history.replaceState(null, "", "#" + parts.join("&"));
  }
  function fill(s, values) {
    s.textContent = "";
    s.appendChild(el("option", "all"));
    values.forEach(function (v) { var o = el("option", v); o.value = v; s.appendChild(o); });
  }
  function options(id, values) {
    var s = document.getElementById(id);
    fill(s, values);
    s.addEventListener("change", function () { state.page = 0; writeHash(); render(); });
  }
  function uniq(f) {
    var seen = Object.create(null), out = [];  // no inherited keys: a model named "constructor" is a value
    DATA.groups.forEach(function (g) { var v = String(f(g)); if (!seen[v]) { seen[v] = 1; out.push(v); } });
    // Numbers in order (10 after 9), then words.
    return out.sort(function (a, b) {
      var x = Number(a), y = Number(b), nx = a !== "" && !isNaN(x), ny = b !== "" && !isNaN(y);
      if (nx && ny) return x - y;
      if (nx !== ny) return nx ? -1 : 1;
      return a < b ? -1 : (a > b ? 1 : 0);
    });
  }
  // A judge's entry by name, never an inherited member (a judge named "toString" or "constructor").
  function own(o, k) { return o && Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined; }
  function judgeName() {
    var j = document.getElementById("f-judge").value;
    return (j && j !== "all") ? j : DATA.judges[0];
  }
  // The list's count is the chosen judge's (the first judge's while "all" is chosen; the group view gives the
  // mean over judges); in a run that judged traces only, its count of strategies.
  function uniqueOf(g) {
    var name = judgeName();
    if (DATA.counts === "traces") {
      var t = g.trace_unique || {};
      var tn = own(t, name);
      return tn !== undefined ? (tn === null ? "unresolved" : String(tn)) : "none";
    }
    var j = own(g.judges, name);
    return j ? (j.resolved ? String(j.unique) : "unresolved") : "none";
  }
  options("f-model", uniq(function (g) { return g.model; }));
  options("f-strategy", uniq(function (g) { return g.strategy; }));
  // An uncategorised group (no gold, no reference category) or an unread classification is "?", as the report
  // writes it, apart from the category "none of these" (NONE_OF_THESE): both read "none" and were one value.
  function named(v) {
    return v === null || v === undefined ? "?" : (v === "none" ? "none of these" : String(v));
  }
  options("f-category", uniq(function (g) { return named(g.category); }));
  options("f-source", uniq(function (g) { return named(g.category_source); }));
  // The generator's own classification drove its anchored strategies' wording: where it differs from the judging
  // category, the anchored groups were asked about another category than they are judged under.
  options("f-own", uniq(function (g) { return named(g.classified); }));
  options("f-judge", DATA.judges.slice());
  options("f-unique", uniq(uniqueOf));
  // The counts offered are the chosen judge's: rebuilt when the judge changes (a link's count is kept if the new
  // judge gave it to some group).
  document.getElementById("f-judge").addEventListener("change", function () {
    var u = document.getElementById("f-unique"), kept = u.value;
    fill(u, uniq(uniqueOf));
    u.value = kept;
    if (u.value === "") u.value = "all";
    writeHash(); render();
  });
  // Each keystroke filtered every group again (10,000 groups: ~3 s a pass, the tab blocked ~20 s for a word):
  // the search waits for a pause in typing.
  var typing = null;
  document.getElementById("f-search").addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () { state.page = 0; writeHash(); render(); }, 250);
  });
  function fromHash() {
    var h = readHash();
    var judge = document.getElementById("f-judge");
    judge.value = h.judge === undefined ? "all" : h.judge;
    if (judge.value === "") judge.value = "all";
    fill(document.getElementById("f-unique"), uniq(uniqueOf));  // the linked judge's counts, before they are chosen
    Object.keys(FILTERS).forEach(function (k) {
      var e = document.getElementById(FILTERS[k]);
      e.value = h[k] === undefined ? (k === "q" ? "" : "all") : h[k];
      if (e.value === "" && k !== "q") e.value = "all";  // a value the page does not have
    });
    state.page = h.page ? Math.max(0, parseInt(h.page, 10) || 0) : 0;
  }
  fromHash();

  function val(id) { var v = document.getElementById(id).value; return v === "all" ? null : v; }
  function visible() {
    var m = val("f-model"), s = val("f-strategy"), c = val("f-category"), src = val("f-source"),
        own = val("f-own"), u = val("f-unique"), q = document.getElementById("f-search").value.toLowerCase();
    return DATA.groups.filter(function (g) {
      if (m !== null && String(g.model) !== m) return false;
      if (s !== null && String(g.strategy) !== s) return false;
      if (c !== null && named(g.category) !== c) return false;
      if (src !== null && named(g.category_source) !== src) return false;
      if (own !== null && named(g.classified) !== own) return false;
      if (u !== null && uniqueOf(g) !== u) return false;
      if (q) {
        // Joined and lower-cased once per group, not on every search.
        if (g.hay === undefined) g.hay = [g.prompt].concat(g.responses).join("\n").toLowerCase();
        if (g.hay.indexOf(q) < 0) return false;
      }
      return true;
    });
  }
  function render() {
    var rows = visible();
    document.getElementById("count").textContent = rows.length + " of " + DATA.total + " groups";
    var list = document.getElementById("list");
    list.textContent = "";
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var nav = el("div");
    var prev = el("button", "‹ prev"), next = el("button", "next ›");
    prev.disabled = state.page === 0; next.disabled = state.page >= pages - 1;
    prev.addEventListener("click", function () { state.page--; writeHash(); render(); });
    next.addEventListener("click", function () { state.page++; writeHash(); render(); });
    nav.appendChild(prev); nav.appendChild(el("span", " page " + (state.page + 1) + " / " + pages + " "));
    nav.appendChild(next);
    list.appendChild(nav);
    var t = el("table"), head = el("tr");
    ["prompt", "model", "strategy", "cat."].forEach(function (h) { head.appendChild(el("th", h)); });
    head.appendChild(line("th", [(DATA.counts === "traces" ? "strategies" : "unique") + " (",
                                 judgeName() || "no judge", ")"]));
    t.appendChild(head);
    rows.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (g) {
      var tr = el("tr", null, "row" + (state.selected === g.id ? " sel" : ""));
      tr.setAttribute("data-id", g.id);
      tr.appendChild(el("td", g.prompt.length > 60 ? g.prompt.slice(0, 60) + "…" : g.prompt));
      tr.appendChild(el("td", g.model)); tr.appendChild(el("td", g.strategy));
      tr.appendChild(el("td", named(g.category))); tr.appendChild(el("td", uniqueOf(g)));
      tr.addEventListener("click", function () { writeHash({g: g.id}); render(); });
      t.appendChild(tr);
    });
    list.appendChild(t);
    show();
  }
  function show() {
    var id = readHash().g, box = document.getElementById("group"), g = null;
    if (id === undefined) return;
    for (var k = 0; k < DATA.groups.length; k++) if (DATA.groups[k].id === id) { g = DATA.groups[k]; break; }
    if (!g) return;
    state.selected = id;
    box.textContent = "";
    box.appendChild(line("h2", ["", g.model, " · ", g.strategy, " · category " + named(g.category) +
                               " (" + (g.category_source || "none") + ")"]));
    box.appendChild(line("div", ["prompt ", g.prompt_id, "; gold " + (g.gold || "–") + "; classified as " +
                                 (g.classified || "–") + "; status " + g.status + "; unique (mean over judges) " +
                                 fmt(g.unique_mean)], "muted"));
    box.appendChild(el("div", g.prompt, "prompt"));
    var name = judgeName(), j = own(g.judges, name);
    box.appendChild(line("h3", ["Responses, coloured by ", name || "no judge", "'s classes"]));
    g.responses.forEach(function (text, i) {
      var d = el("div", null, "resp");
      d.setAttribute("data-idx", String(i));
      var cls = (j && j.classes) ? j.classes[i] : null;
      d.setAttribute("data-class", cls === null ? "unknown" : String(cls));
      d.style.borderLeftColor = cls === null ? "#999" : COLOURS[cls % COLOURS.length];
      var meta = "#" + i + (cls === null ? " · class unknown" : " · class " + cls) +
                 " · grade " + fmt(g.grades[i], 1) +
                 (g.correct[i] === null || g.correct[i] === undefined ? "" : " · correct " + g.correct[i]) +
                 (g.reward ? " · reward " + fmt(g.reward[i]) : "");
      d.appendChild(el("div", meta, "muted"));
      d.appendChild(el("div", text));
      if (g.traces && g.traces[i]) {
        var tc = (own(g.trace_classes, name) || [])[i], det = el("details", null, "trace");
        det.appendChild(el("summary", "reasoning trace" + (tc === undefined || tc === null ? "" :
                                                           " · strategy class " + tc)));
        det.appendChild(el("div", g.traces[i]));
        d.appendChild(det);
      }
      box.appendChild(d);
    });
    if (j) {
      box.appendChild(line("h3", ["", name, ": " + (j.resolved ? j.unique + " unique" : "unresolved, between " +
                           j.low + " and " + j.high) + "; semantic entropy " + fmt(j.entropy) + "; utility " +
                           fmt(j.utility)]));
      var n = g.responses.length, cells = {};
      j.pairs.forEach(function (p) { cells[p[0] + "," + p[1]] = p; });
      var t = el("table", null, "matrix"), head = el("tr");
      head.appendChild(el("th", ""));
      for (var c = 0; c < n; c++) head.appendChild(el("th", "#" + c));
      t.appendChild(head);
      var raw = el("div", "Click a cell for the judge's raw answer.", "raw muted");
      for (var a = 0; a < n; a++) {
        var tr = el("tr");
        tr.appendChild(el("th", "#" + a));
        for (var b = 0; b < n; b++) {
          var p = a < b ? cells[a + "," + b] : cells[b + "," + a];
          var td;
          if (a === b) { td = el("td", "·"); }
          else if (!p) { td = el("td", "pruned", "pruned"); }
          else {
            var kind = p[3] === "equivalent" ? "eq" : (p[3] === "different" ? "diff" : "unres");
            td = el("td", p[2] === null ? p[3] : fmt(p[2]), "cell " + kind);
            td.title = p[3];
            (function (pair) {
              td.addEventListener("click", function () {
                raw.textContent = "pair " + pair[0] + "–" + pair[1] + ": " + pair[3] + " (" + (pair[5] || "judge") +
                                  "); raw answer: " + (pair[4] === null ? "–" : pair[4]);
              });
            })(p);
          }
          tr.appendChild(td);
        }
        t.appendChild(tr);
      }
      box.appendChild(t);
      box.appendChild(raw);
    }
    var metrics = el("div", null, "muted");
    Object.keys(g.metrics).forEach(function (k) { metrics.appendChild(el("div", k + ": " + fmt(g.metrics[k], 3))); });
    box.appendChild(el("h3", "General and class measures"));
    box.appendChild(metrics);
  }
  window.addEventListener("hashchange", function () { fromHash(); render(); });
  render();
  // How long the first page took to build, from the start of navigation (tests read it; nothing else does).
  document.body.setAttribute("data-first-render-ms", String(Math.round(performance.now())));
})();
"""
