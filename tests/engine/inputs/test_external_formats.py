"""Outputs of other tools as groups of responses: lm-evaluation-harness --log_samples files, Inspect AI eval logs
(JSON and the zipped .eval archive) and NoveltyBench generation files — sample files written here from each tool's
documented layout — and a run that audits an Inspect log end to end."""

import json
import zipfile

import pytest

from engine.errors import InputError
from engine.inputs.external_formats import detect_format
from engine.inputs.prompts import LoadReport
from engine.inputs.responses import load_responses


def _lm_eval_line(doc_id, prompt, generations, filt="none", old=False, target="391"):
    arguments = [[prompt, {"until": ["\n\n"], "do_sample": True}]] if old else {
        "gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["\n\n"], "do_sample": True, "temperature": 1.0}}}
    return {"doc_id": doc_id, "doc": {"question": prompt}, "target": target, "arguments": arguments,
            "resps": [generations], "filtered_resps": [generations[0]], "filter": filt,
            "metrics": ["exact_match"], "doc_hash": "d", "prompt_hash": "p", "target_hash": "t", "exact_match": 0.0}


def write_lm_eval(folder, lines):
    # lm-eval writes <output_path>/<model name, sanitized>/samples_<task>_<ISO date>.jsonl
    path = folder / "meta-llama__Llama-3.1-8B-Instruct" / "samples_gsm8k_2025-01-02T03-04-05.123456.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_lm_eval_samples_with_repeats(tmp_path):
    path = write_lm_eval(tmp_path, [
        _lm_eval_line(0, "Q: 17 x 23?\nA:", ["391", "17*23=391", "391."]),
        _lm_eval_line(0, "Q: 17 x 23?\nA:", ["391", "17*23=391", "391."], filt="strict-match"),  # same doc, filter 2
        _lm_eval_line(1, "Q: 2 + 2?\nA:", ["4", "four"], old=True, target="4"),
    ])
    assert detect_format(path) == "lm-eval"
    prompts, groups = load_responses(path)
    assert len(prompts) == 2 and len(groups) == 2
    g = groups[0]
    assert (g.model, g.strategy) == ("meta-llama__Llama-3.1-8B-Instruct", "lm-eval:gsm8k")
    assert [t for _, t in g.responses] == ["391", "17*23=391", "391."]
    assert prompts[0].prompt_id == "gsm8k:0" and prompts[0].gold_answer == "391" and prompts[0].source == "gsm8k"
    assert prompts[1].text == "Q: 2 + 2?\nA:"  # the older `arguments: [[prompt, kwargs]]` layout


def test_lm_eval_errors_name_the_line_and_field(tmp_path):
    bad = _lm_eval_line(1, "Q?", ["a"])
    bad["resps"] = [[1, 2]]  # a loglikelihood task's numbers, not generations
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, "Q: hi?", ["a", "b"]), bad])
    with pytest.raises(InputError, match=r"samples_gsm8k_.*\.jsonl:2: field 'resps'"):
        load_responses(path)
    report = LoadReport()
    _, groups = load_responses(path, on_error="skip", report=report)
    assert len(groups) == 1 and len(report.skipped) == 1


def _inspect_sample(sample_id, epoch, prompt, completion, chat=False):
    message_input = [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": prompt}]}] if chat else prompt
    return {"id": sample_id, "epoch": epoch, "input": message_input, "target": "Paris",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
            "output": {"model": "openai/gpt-4o-mini",
                       "choices": [{"message": {"role": "assistant", "content": completion}, "stop_reason": "stop"}],
                       "completion": completion},
            "scores": {"match": {"value": "C"}}}


def _inspect_header():
    return {"version": 2, "status": "success",
            "eval": {"run_id": "r1", "task": "capitals", "task_version": 0, "model": "openai/gpt-4o-mini",
                     "config": {"epochs": 3}, "dataset": {"name": "capitals", "samples": 2}},
            "plan": {"steps": [{"solver": "generate"}]}, "results": {"total_samples": 2}}


def test_inspect_json_log_epochs_form_groups(tmp_path):
    samples = [_inspect_sample(k, e, f"Capital of country {k}?", f"Answer {k}.{e}", chat=k == 2)
               for k in (1, 2) for e in (1, 2, 3)]
    path = tmp_path / "2025-01-02T03-04-05_capitals_abc.json"
    path.write_text(json.dumps({**_inspect_header(), "samples": samples}))
    assert detect_format(path) == "inspect"
    prompts, groups = load_responses(path)
    assert [len(g.responses) for g in groups] == [3, 3]
    assert groups[0].model == "openai/gpt-4o-mini" and groups[0].strategy == "inspect:capitals"
    assert [t for _, t in groups[1].responses] == ["Answer 2.1", "Answer 2.2", "Answer 2.3"]
    assert prompts[1].text == "Capital of country 2?"  # the user message's text parts, not the system prompt
    assert prompts[0].gold_answer == "Paris"


def test_inspect_eval_archive(tmp_path):
    path = tmp_path / "2025-01-02T03-04-05_capitals_abc.eval"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("_journal/start.json", json.dumps({"version": 2}))
        z.writestr("header.json", json.dumps(_inspect_header()))
        for k in (1, 2):
            for e in (1, 2):
                z.writestr(f"samples/{k}_epoch_{e}.json", json.dumps(_inspect_sample(k, e, f"Q{k}", f"A{k}{e}")))
        z.writestr("summaries.json", "[]")
    assert detect_format(path) == "inspect"
    prompts, groups = load_responses(path)
    assert len(prompts) == 2 and [[t for _, t in g.responses] for g in groups] == [["A11", "A12"], ["A21", "A22"]]

    broken = tmp_path / "broken.eval"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("header.json", json.dumps(_inspect_header()))
        z.writestr("samples/1_epoch_1.json", json.dumps({"id": 1, "epoch": 1, "input": "Q", "output": {}}))
    with pytest.raises(InputError, match=r"broken\.eval:samples/1_epoch_1\.json: field 'output'"):
        load_responses(broken)


def test_an_inspect_archive_compressed_with_zstd(tmp_path):
    # Inspect writes .eval members with zstd since 0.3.206; Python 3.11's zipfile cannot read them, and the error
    # (NotImplementedError) escaped the reader, even with on_error="skip".
    from tests.support.zips import write_zstd_zip

    path = tmp_path / "2026-05-02T03-04-05_capitals_abc.eval"
    members = {"_journal/start.json": b"{}", "header.json": json.dumps(_inspect_header()).encode()}
    for k in (1, 2):
        for e in (1, 2):
            members[f"samples/{k}_epoch_{e}.json"] = json.dumps(_inspect_sample(k, e, f"Q{k}", f"A{k}{e}")).encode()
    write_zstd_zip(path, members)
    with zipfile.ZipFile(path) as z:  # the real condition: this Python cannot read the members itself
        with pytest.raises(NotImplementedError):
            z.read("header.json")
    prompts, groups = load_responses(path)
    assert len(prompts) == 2 and [[t for _, t in g.responses] for g in groups] == [["A11", "A12"], ["A21", "A22"]]
    assert groups[0].model == "openai/gpt-4o-mini"  # the header was read
    write_zstd_zip(path, members, frames=3)  # a member of several frames (zstd allows it) reads the same
    assert [[t for _, t in g.responses] for g in load_responses(path)[1]] == [["A11", "A12"], ["A21", "A22"]]

    # A member whose data does not match the directory's CRC is that member's error, named.
    broken = tmp_path / "broken.eval"
    write_zstd_zip(broken, {"header.json": json.dumps(_inspect_header()).encode(),
                            "samples/1_epoch_1.json": members["samples/1_epoch_1.json"],
                            "samples/2_epoch_1.json": members["samples/2_epoch_1.json"]},
                   corrupt="samples/2_epoch_1.json")
    with pytest.raises(InputError, match=r"broken\.eval:samples/2_epoch_1\.json: .*CRC"):
        load_responses(broken)
    report = LoadReport()
    prompts, groups = load_responses(broken, on_error="skip", report=report)
    assert len(groups) == 1 and len(report.skipped) == 1


def test_inspect_choices_are_responses_and_reasoning_parts_their_traces(tmp_path):
    # A sample generated with num_choices 3 holds 3 responses (before: the first alone, a group of one); with two
    # epochs, 2 x 3. Inspect's reasoning content parts are each response's trace, never its answer.
    def sample(epoch, answers):
        return {"id": 1, "epoch": epoch, "input": "Name a colour.", "target": "",
                "output": {"model": "m", "completion": answers[0],
                           "choices": [{"message": {"role": "assistant", "content": [
                               {"type": "reasoning", "reasoning": f"think {a}"}, {"type": "text", "text": a}]}}
                               for a in answers]}}

    path = tmp_path / "colours.json"
    path.write_text(json.dumps({**_inspect_header(), "samples": [sample(1, ["Blue", "Red", "Green"]),
                                                                 sample(2, ["Teal", "Red", "Pink"])]}))
    _, (group,) = load_responses(path)
    assert [t for _, t in group.responses] == ["Blue", "Red", "Green", "Teal", "Red", "Pink"]
    assert [k for k, _ in group.responses] == [0, 1, 2, 3, 4, 5]
    assert group.traces == {k: f"think {a}" for k, a in enumerate(["Blue", "Red", "Green", "Teal", "Red", "Pink"])}
    # A choice cut off while thinking (reasoning, no text; Inspect's completion is then ""): an empty answer with
    # its trace, the sample's other choices kept.
    cut = sample(1, ["Blue", "Red"])
    cut["output"]["choices"][1]["message"]["content"] = [{"type": "reasoning", "reasoning": "hmm"}]
    path.write_text(json.dumps({**_inspect_header(), "samples": [cut]}))
    _, (group,) = load_responses(path)
    assert [t for _, t in group.responses] == ["Blue", ""] and group.traces == {0: "think Blue", 1: "hmm"}


def test_a_lm_eval_multiple_choice_file_is_refused_not_read_as_generations(tmp_path):
    # What lm-eval really writes for a loglikelihood task: one request per choice (context, continuation), and the
    # scores sanitised to text. Before, "(-1.5, False)" was read as the model's one response.
    line = {"doc_id": 0, "doc": {"question": "2+2?"}, "target": "1",
            "arguments": {"gen_args_0": {"arg_0": "Q: 2+2?\nA:", "arg_1": " 3"},
                          "gen_args_1": {"arg_0": "Q: 2+2?\nA:", "arg_1": " 4"}},
            "resps": [["(-1.5, False)"], ["(-0.2, True)"]], "filtered_resps": ["(-1.5, False)", "(-0.2, True)"],
            "filter": "none", "metrics": ["acc"], "acc": 1.0}
    path = write_lm_eval(tmp_path, [line])
    with pytest.raises(InputError, match=r"jsonl:1: field 'arguments'.*loglikelihood and multiple-choice"):
        load_responses(path)


def test_noveltybench_generations(tmp_path):
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "curated-1", "prompt": "Name a color.", "model": "gemma-2-9b", "generations": ["Blue.", "Red.", "Blue"]},
        {"id": "curated-2", "prompt": "Tell me a joke.", "model": "gemma-2-9b", "generations": ["A", "B"]},
    ]))
    assert detect_format(path) == "noveltybench"
    prompts, groups = load_responses(path)
    assert [p.prompt_id for p in prompts] == ["noveltybench:curated-1", "noveltybench:curated-2"]
    assert groups[0].model == "gemma-2-9b" and [t for _, t in groups[0].responses] == ["Blue.", "Red.", "Blue"]


# Bytes that are not UTF-8, and a byte-order mark: each a line's error (or nothing), never a decoding traceback or
# a silently wrong format.
def _nb_line(k, prompt):
    return json.dumps({"id": f"curated-{k}", "prompt": prompt, "model": "m", "generations": ["a", "b"]}).encode()


def _lm_eval_bytes(k, prompt):
    return json.dumps(_lm_eval_line(k, prompt, ["x", "y"])).encode()


@pytest.mark.parametrize("fmt,make", [("lm-eval", _lm_eval_bytes), ("noveltybench", _nb_line)])
def test_a_bad_byte_late_in_the_file_is_that_lines_error(tmp_path, fmt, make):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / ("samples_gsm8k_2025-01-02T03-04-05.jsonl" if fmt == "lm-eval" else "generations.jsonl")
    bad = make(2, "Caf\u00e9?").replace("Caf\\u00e9".encode(), b"Caf\xe9")  # Latin-1 é: not UTF-8
    assert b"\xe9" in bad
    path.write_bytes(b"\n".join([make(0, "Q0?"), make(1, "Q1?"), bad]) + b"\n")
    assert detect_format(path) == fmt
    with pytest.raises(InputError, match="invalid UTF-8") as info:
        load_responses(path)
    assert (info.value.path, info.value.line) == (str(path), 3)
    report = LoadReport()
    prompts, groups = load_responses(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["Q0?", "Q1?"] and len(groups) == 2
    assert [e.line for e in report.skipped] == [3]


def test_a_bad_byte_on_the_first_line_does_not_hide_the_format(tmp_path):
    # Before, the detector read the file as UTF-8 and fell back to our own format on a decoding error: every line
    # was then refused for lacking `prompt`… `response`, and under skip the whole file vanished.
    path = tmp_path / "generations.jsonl"
    first = _nb_line(1, "Caf\u00e9?").replace("Caf\\u00e9".encode(), b"Caf\xe9")
    path.write_bytes(first + b"\n" + _nb_line(2, "Tell me a joke.") + b"\n")
    assert detect_format(path) == "noveltybench"
    report = LoadReport()
    prompts, groups = load_responses(path, on_error="skip", report=report)
    assert [p.text for p in prompts] == ["Tell me a joke."] and groups[0].strategy == "noveltybench"
    assert [(e.line, "invalid UTF-8" in e.reason) for e in report.skipped] == [(1, True)]


def test_a_byte_order_mark_is_dropped_from_tool_outputs(tmp_path):
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, "Q: 17 x 23?\nA:", ["391", "17*23=391"])])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert detect_format(path) == "lm-eval"
    prompts, groups = load_responses(path)
    assert prompts[0].text == "Q: 17 x 23?\nA:" and len(groups[0].responses) == 2
    log = tmp_path / "log.json"
    samples = [_inspect_sample(1, e, "Capital of France?", f"Paris {e}") for e in (1, 2)]
    log.write_bytes(b"\xef\xbb\xbf" + json.dumps({**_inspect_header(), "samples": samples}).encode())
    assert detect_format(log) == "inspect"
    assert [t for _, t in load_responses(log)[1][0].responses] == ["Paris 1", "Paris 2"]


def test_an_inspect_log_is_audited_end_to_end(tmp_path):
    from tests.support.runs import SCRIPTED, make_config, run

    path = tmp_path / "log.json"
    samples = [_inspect_sample(k, e, f"Write a line about the number {k}.", f"Line {k} take {e}")
               for k in (1, 2) for e in (1, 2, 3)]
    path.write_text(json.dumps({**_inspect_header(), "samples": samples}))
    cfg = make_config(tmp_path, prompts={"source": "responses", "path": str(path)}, judges=[SCRIPTED])
    result = run(cfg)
    groups = result.tables["groups"].to_pylist()
    assert {(g["model"], g["strategy"]) for g in groups} == {("openai/gpt-4o-mini", "inspect:capitals")}
    assert all(g["n_responses"] == 3 for g in groups) and len(groups) == 2
    assert result.tables["judgments"].num_rows > 0


def _lying_sizes(path, member, stated):
    """Rewrite `member`'s uncompressed size in its local header and the central directory to `stated` (a writer's
    word, which zipfile trusts)."""
    import struct

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        offset = z.getinfo(member).header_offset
    struct.pack_into("<L", data, offset + 22, stated)  # local file header: uncompressed size
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + name_len] == member.encode():
            struct.pack_into("<L", data, central + 24, stated)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def test_an_archive_member_is_never_inflated_past_its_stated_size_or_by_a_method_inspect_does_not_use(tmp_path):
    # A 10 MB member stating 100 bytes: one read() inflated it whole (up to a gigabyte per call) before zipfile cut
    # it; a bzip2 or LZMA member (which Inspect never writes) was inflated in one call without any limit.
    header = json.dumps(_inspect_header())
    good = json.dumps(_inspect_sample(1, 1, "Q1", "A1"))
    bomb = tmp_path / "bomb.eval"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.json", header)
        z.writestr("samples/1_epoch_1.json", good)
        z.writestr("samples/2_epoch_1.json", b" " * 10_000_000)
    _lying_sizes(bomb, "samples/2_epoch_1.json", 100)
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"bomb\.eval:samples/2_epoch_1\.json: not valid JSON \(Bad CRC"):
            load_responses(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, peak  # read whole, the member was inflated to its 10 MB first
    report = LoadReport()
    _, groups = load_responses(bomb, on_error="skip", report=report)
    assert len(groups) == 1 and len(report.skipped) == 1

    bzip = tmp_path / "bzip.eval"
    with zipfile.ZipFile(bzip, "w") as z:
        z.writestr("header.json", header)
        z.writestr("samples/1_epoch_1.json", good, compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(InputError, match=r"samples/1_epoch_1\.json: compressed with zip method 12"):
        load_responses(bzip)


def test_json_nested_too_deeply_or_holding_a_lone_surrogate_is_that_lines_error(tmp_path):
    # json raised RecursionError past every reader's handling (on_error: skip too); a lone surrogate ("\ud800")
    # was read and failed later in Arrow, far from its line.
    lines = [_lm_eval_line(0, "Q0", ["a", "b"]), _lm_eval_line(1, "Q1", ["c", "d"])]
    path = write_lm_eval(tmp_path, lines)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], "[" * 200_000 + "]" * 200_000, text[1].replace('"c"', '"c \\ud800"')]) + "\n")
    with pytest.raises(InputError, match=r":2: not valid JSON \(nested too deeply\)"):
        load_responses(path)
    report = LoadReport()
    prompts, _ = load_responses(path, on_error="skip", report=report)
    assert len(prompts) == 1 and len(report.skipped) == 2
    assert any(":3: not valid JSON (a string holds a lone UTF-16 surrogate" in str(e) for e in report.skipped)


def test_malformed_tool_outputs_are_errors_naming_the_field_never_tracebacks(tmp_path):
    # An archive whose header's `eval` is no object, a doc_id that is no id: each raised out of the reader (an
    # AttributeError, a TypeError), a traceback even under on_error: skip.
    for k, value in enumerate([None, "x", [1]]):
        path = tmp_path / f"h{k}.eval"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("header.json", json.dumps({"eval": value}))
            z.writestr("samples/1_epoch_1.json", json.dumps(_inspect_sample(1, 1, "Q1", "A1")))
        prompts, groups = load_responses(path)
        assert len(groups) == 1 and groups[0].strategy == "inspect:inspect"  # no task named: the default
    odd = _lm_eval_line(1, "Q: 2 + 2?\nA:", ["4"])
    odd["doc_id"] = {"i": 1}
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, "Q: hi?", ["a", "b"]), odd])
    with pytest.raises(InputError, match=r"\.jsonl:2: field 'doc_id': expected an integer or a string, got dict"):
        load_responses(path)
    report = LoadReport()
    assert len(load_responses(path, on_error="skip", report=report)[1]) == 1 and len(report.skipped) == 1


def test_lm_eval_records_without_a_doc_id_are_each_a_document(tmp_path):
    # A second record without doc_id was taken for the first one's repeat under another filter, and dropped unsaid.
    lines = [_lm_eval_line(0, "Q0?", ["a"])] + [_lm_eval_line(None, f"Q{k}?", ["a"]) for k in (1, 2, 3)]
    for line in lines[1:]:
        del line["doc_id"]
    prompts, groups = load_responses(write_lm_eval(tmp_path, lines), fmt="lm-eval")
    assert [p.text for p in prompts] == ["Q0?", "Q1?", "Q2?", "Q3?"] and len(groups) == 4


def test_our_rows_in_a_json_file_with_a_version_field_are_not_taken_for_an_inspect_log(tmp_path):
    path = tmp_path / "resp.json"
    path.write_text("".join(json.dumps({"prompt": f"P{k}", "response": "a", "model": "m", "version": "2024-06"})
                            + "\n" for k in range(2)))
    assert detect_format(path) == "taskdiv"
    assert len(load_responses(path)[1]) == 2
    one_line = tmp_path / "one-line-log.json"
    one_line.write_text(json.dumps({**_inspect_header(), "samples": [_inspect_sample(1, 1, "Q", "A")]}))
    assert detect_format(one_line) == "inspect"


def test_an_archive_whose_samples_inflate_past_the_caps_is_refused_before_any_is_read(tmp_path, monkeypatch):
    # Each sample was capped (64 MiB), their sum not: 6 samples deflated into 368 KB held 377 million characters.
    from engine.inputs import external_formats

    path = tmp_path / "bomb.eval"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k in range(3):
            sample = _inspect_sample(k, 1, f"Q{k}", "a" * (7 * 1024 * 1024))
            z.writestr(f"samples/{k}_epoch_1.json", json.dumps(sample))
    with pytest.raises(InputError, match=r"bomb\.eval: its samples inflate to \d+ bytes from \d+: over the"):
        load_responses(path)
    monkeypatch.setattr(external_formats, "MAX_ARCHIVE_RATIO", 10**6)
    monkeypatch.setattr(external_formats, "MAX_ARCHIVE_BYTES", 10 * 1024 * 1024)
    with pytest.raises(InputError, match="its samples inflate to"):  # and the total alone
        load_responses(path)


def _chat_arg(messages):
    # lm-eval's JsonChatStr (chat API models with --apply_chat_template): a NamedTuple of one JSON string, which
    # json.dumps writes as a one-element list.
    return [json.dumps(messages)]


def test_lm_eval_chat_requests_read_their_user_messages_as_the_prompt(tmp_path):
    chat = _lm_eval_line(0, _chat_arg([{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Name a fruit."}]), ["Apple", "Banana"])
    old = _lm_eval_line(1, _chat_arg([{"role": "user", "content": [{"type": "text", "text": "Name a tree."}]}]),
                        ["Oak", "Elm"], old=True)
    path = write_lm_eval(tmp_path, [chat, old])
    prompts, groups = load_responses(path)
    assert [p.text for p in prompts] == ["Name a fruit.", "Name a tree."]
    assert [[t for _, t in g.responses] for g in groups] == [["Apple", "Banana"], ["Oak", "Elm"]]


@pytest.mark.parametrize("arg,message", [
    (["not json"], "gen_args_0.arg_0: a one-element list .* not JSON"),
    ([json.dumps({"role": "user"})], "not a JSON list of chat messages"),
    (_chat_arg([{"role": "system", "content": "Be brief."}]), "no user message text"),
])
def test_lm_eval_chat_requests_without_a_prompt_name_the_line_and_field(tmp_path, arg, message):
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, "Q: hi?", ["a", "b"]), _lm_eval_line(1, arg, ["x", "y"])])
    with pytest.raises(InputError, match=message) as info:
        load_responses(path)
    assert (info.value.line, info.value.field) == (2, "arguments")


def test_few_shot_turns_before_the_question_are_not_read_as_the_prompt(tmp_path):
    # Every user turn was joined: few-shot demonstrations (user and assistant turns) made a prompt nobody sent — each
    # demonstration's question without its answer, then the real one — which the classifier and judges read.
    shots = [{"role": "system", "content": "Answer briefly."},
             {"role": "user", "content": "Q: What is 2 + 2?\nA:"}, {"role": "assistant", "content": "4"},
             {"role": "user", "content": "Q: What is 3 + 3?\nA:"}, {"role": "assistant", "content": "6"},
             {"role": "user", "content": "Q: What is 17 x 23?\nA:"}]
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, _chat_arg(shots), ["391", "17*23 = 391"])])
    (prompt,), _ = load_responses(path)
    assert prompt.text == "Q: What is 17 x 23?\nA:"
    sample = {**_inspect_sample(1, 1, "x", "Madrid."), "input": shots[:-1] + [
        {"role": "user", "content": [{"type": "text", "text": "Capital of Spain?"}]}]}
    log = tmp_path / "fewshot.json"
    log.write_text(json.dumps({**_inspect_header(), "samples": [sample, {**sample, "epoch": 2}]}))
    (prompt,), _ = load_responses(log)
    assert prompt.text == "Capital of Spain?"


def test_a_list_of_accepted_answers_gives_its_first_as_the_gold_answer(tmp_path):
    # lm-eval writes a target with str(): a list of aliases (TriviaQA, NQ) arrived as "['8', 'eight']" and was
    # graded as that answer (a right "8" was wrong); an Inspect target list was dropped without a word.
    path = write_lm_eval(tmp_path, [_lm_eval_line(0, "Q: 5 + 3?\nA:", ["8", "eight"], target="['8', 'eight']"),
                                    _lm_eval_line(1, "Q: a list?\nA:", ["[1, 2]", "[2]"], target="[1, 2]"),
                                    _lm_eval_line(2, "Q: odd?\nA:", ["x", "y"], target="[oops"),
                                    _lm_eval_line(3, "Q: code?\nA:", ["x", "y"], target="[__import__('os')]")])
    prompts, _ = load_responses(path)
    assert [p.gold_answer for p in prompts] == ["8", "[1, 2]", "[oops", "[__import__('os')]"]
    samples = [{**_inspect_sample(1, e, "Capital of Italy?", "Rome."), "target": ["Rome", "Roma"]} for e in (1, 2)]
    log = tmp_path / "aliases.json"
    log.write_text(json.dumps({**_inspect_header(), "samples": samples}))
    (prompt,), _ = load_responses(log)
    assert prompt.gold_answer == "Rome"


def test_an_epoch_that_returned_fewer_choices_keeps_its_own_indices(tmp_path):
    # Numbered by the sample's own choice count, epoch 2's one choice took index 1 — epoch 1's second — and the whole
    # log was refused ("duplicate sample_idx 1"), naming a field Inspect logs do not have.
    def sample(epoch, texts):
        s = _inspect_sample(1, epoch, "Name a colour.", texts[0])
        s["output"]["choices"] = [{"message": {"role": "assistant", "content": t}} for t in texts]
        return s

    log = tmp_path / "short.json"
    header = {**_inspect_header(), "plan": {"steps": [], "config": {"num_choices": 2}}}
    log.write_text(json.dumps({**header, "samples": [sample(1, ["red", "blue"]), sample(2, ["green"]),
                                                    sample(3, ["teal", "pink"])]}))
    report = LoadReport()
    _, (group,) = load_responses(log, report=report)
    assert [t for _, t in group.responses] == ["red", "blue", "green", "teal", "pink"]
    assert report.warnings and "do not run 0, 1" in report.warnings[0]  # the gap is said


def test_a_lm_eval_file_written_beside_its_json_output_path_takes_the_model_from_its_results(tmp_path):
    # --output_path exp/results.json writes the samples into exp/, not <model>/: the model was read as "exp".
    folder = tmp_path / "exp"
    folder.mkdir()
    stamp = "2025-01-02T03-04-05.123456"
    path = folder / f"samples_gsm8k_{stamp}.jsonl"
    path.write_text(json.dumps(_lm_eval_line(0, "Q: 2 + 2?\nA:", ["4", "four"])) + "\n")
    (folder / f"results_{stamp}.json").write_text(json.dumps({"model_name": "acme/Varied-7B", "results": {}}))
    _, (group,) = load_responses(path)
    assert group.model == "acme/Varied-7B"
    # In the folder lm-eval names after the model, the folder's name stands (the groups stored under it keep it).
    named = write_lm_eval(tmp_path / "out", [_lm_eval_line(0, "Q: 2 + 2?\nA:", ["4", "four"])])
    (named.parent / f"results_{stamp}.json").write_text(
        json.dumps({"model_name": "meta-llama/Llama-3.1-8B-Instruct"}))
    _, (group,) = load_responses(named)
    assert group.model == "meta-llama__Llama-3.1-8B-Instruct"


def test_an_inspect_archive_whose_header_is_no_object_is_read_without_it(tmp_path):
    path = tmp_path / "odd.eval"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("header.json", json.dumps(["not", "an", "object"]))
        for e in (1, 2):
            z.writestr(f"samples/1_epoch_{e}.json", json.dumps(_inspect_sample(1, e, "Capital of Spain?", f"M{e}")))
    _, (group,) = load_responses(path)
    assert [t for _, t in group.responses] == ["M1", "M2"]


def test_files_given_by_mistake_are_refused_saying_what_they_are(tmp_path):
    # An lm-eval results file was refused as "an Inspect eval log with samples"; a sample Inspect could not generate
    # was "no response" without its error; a folder was "no such file".
    results = tmp_path / "results_2025-01-02T03-04-05.json"
    results.write_text(json.dumps({"results": {"gsm8k": {}}, "configs": {}, "versions": {}, "samples": None,
                                   "model_name": "m"}, indent=2))
    with pytest.raises(InputError, match="an lm-eval results file.*samples_<task>_<date>.jsonl"):
        load_responses(results)
    failed = {**_inspect_sample(1, 1, "Capital of Spain?", ""), "error": {"message": "ConnectionError(refused)"}}
    failed["output"] = {"model": "m", "choices": []}
    log = tmp_path / "errored.json"
    log.write_text(json.dumps({**_inspect_header(), "samples": [failed]}))
    with pytest.raises(InputError, match=r"no response .*the sample failed in Inspect: ConnectionError\(refused\)"):
        load_responses(log)
    with pytest.raises(InputError, match="a folder: give one file of it"):
        load_responses(tmp_path)
