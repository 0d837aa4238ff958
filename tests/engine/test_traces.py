"""Reasoning traces: kept apart from the answers (a server's reasoning field in either of its names, or a <think>
block in the text, or one the chat template opened), never judged as part of an answer, and judged on their own
with the strategy question when judge.target asks for it."""

from pathlib import Path

import httpx
import pytest

from actors.base import (THINK_OPEN, ChatOutput, SamplingParams, pair_sampling, separate_traces, split_harmony,
                         split_reasoning)
from actors.http import OpenAIChatClient, parse_choices
from engine.config import config_from_dict
from engine.method.programs import Request, drive
from engine.report import write_report
from tests.support.doubles import ScriptedChat
from tests.support.runs import run
from tests.support.serve import REASONING_MODES, TEMPLATE_OPENED, ChatServer


@pytest.mark.parametrize("text, answer, trace", [
    ("<think>add them</think>4", "4", "add them"),
    ("  <think>\nadd them\n</think>\n\n4", "4", "add them"),
    ("add them\n</think>\n\n4", "4", "add them"),  # the template opened the block in the prompt
    ("so it is 4.</think>\n4", "4", "so it is 4."),  # the closing tag ends its line
    ("To close the block, write </think> at the end. Done", "To close the block, write </think> at the end. Done",
     None),  # a bare closing tag with text after it on its line is quoted, not the end of a trace
    ("<think>add them, then", "", "add them, then"),  # cut off while thinking: no answer, never the thinking
    ("4", "4", None),
    ("The tag <think>x</think> is how R1 marks it.", "The tag <think>x</think> is how R1 marks it.", None),
    ("", "", None),
    # Magistral's thinking tokens, in text decoded with them kept (a responses file, a server that keeps them).
    ("[THINK]add them[/THINK]4", "4", "add them"),
    ("[THINK]add them, then", "", "add them, then"),
    ("add them[/THINK]\n4", "4", "add them"),
    ("Magistral writes [THINK]x[/THINK] first.", "Magistral writes [THINK]x[/THINK] first.", None),
    ("<think>a [/THINK] b</think>4", "4", "a [/THINK] b"),  # the block's own closing tag ends it
    # Thinking again before the answer: every leading block is the trace (the second was judged as the answer).
    ("<think>add them</think>\n<think>check: 2 + 2</think>\n4", "4", "add them\n\ncheck: 2 + 2"),
    ("<think>add them</think><think>check", "", "add them\n\ncheck"),  # cut off in the second: still no answer
    ("<think>add them</think>4 <think>x</think>", "4 <think>x</think>", "add them"),  # one after the answer: text
    # A bare closing tag in a fenced code block is code the answer shows, not the end of a trace.
    ("Put it last:\n```\n</think>\n```\nthen answer.", "Put it last:\n```\n</think>\n```\nthen answer.", None),
    ("```\nx = 1\n```\nso x is 1\n</think>\n1", "1", "```\nx = 1\n```\nso x is 1"),  # a closed fence before
])
def test_split_reasoning(text, answer, trace):
    assert split_reasoning(text) == (answer, trace)


def test_magistrals_thinking_tokens_split_its_generated_ids():
    # Magistral (2509 on) thinks between control tokens; decoded with special tokens skipped, as backends decode,
    # they vanish and "We need to add.The answer is 4." was judged as its answer. Ids stand in for tokens here; the
    # local backend splits a real tokenizer's ids (tests/actors/test_local.py).
    from actors.base import split_think_tokens

    words = {1: "We need to add.", 2: "The answer is 4.", 3: " ", 8: "</s>", 90: "[THINK]", 91: "[/THINK]"}

    def decode(ids):  # special tokens skipped
        return "".join(words[i] for i in ids if i not in (8, 90, 91))

    marks = (90, 91)
    assert split_think_tokens([90, 1, 91, 2, 8], marks, decode) == ("The answer is 4.", "We need to add.")
    assert split_think_tokens([3, 90, 1, 91, 3, 2], marks, decode) == ("The answer is 4.", "We need to add.")
    assert split_think_tokens([90, 1], marks, decode) == ("", "We need to add.")  # cut off while thinking
    assert split_think_tokens([1, 91, 2], marks, decode) == ("The answer is 4.", "We need to add.")  # opened before
    assert split_think_tokens([2, 8], marks, decode) is None  # no thinking: decoded plainly
    assert split_think_tokens([2, 90, 1, 91], marks, decode) is None  # a block after the answer began
    assert split_think_tokens([90, 1, 91, 3, 90, 1, 91, 2], marks, decode) == (  # thinking twice, then answering
        "The answer is 4.", "We need to add.\n\nWe need to add.")
    assert split_think_tokens([90, 1, 91, 90, 1], marks, decode) == ("", "We need to add.\n\nWe need to add.")
    assert split_think_tokens([90, 1, 91, 2, 90, 1, 91], marks, decode) == (  # a block after the answer: its text
        "The answer is 4.We need to add.", "We need to add.")


@pytest.mark.parametrize("text, expected", [
    ("<|channel|>analysis<|message|>We need to add.<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>",
     ("4", "We need to add.")),
    # vLLM may leave the stop token off; a tool call on commentary is neither answer nor reasoning.
    ("<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>commentary to=functions.f "
     "<|constrain|>json<|message|>{\"x\": 1}<|call|>", ("", "Look it up.")),
    ("<|channel|>analysis<|message|>Still reasoning", ("", "Still reasoning")),  # cut off: no answer
    ("<|channel|>final<|message|>Only an answer.", ("Only an answer.", None)),
    ("No channel at all.", None),  # not harmony: decoded plainly by the caller
])
def test_split_harmony(text, expected):
    assert split_harmony(text) == expected


def test_separate_traces_keeps_a_servers_trace_and_splits_the_rest():
    out = ChatOutput(texts=["A", "<think>t2</think>B", "C"], traces=["t1", None, None])
    assert separate_traces(out) is out
    assert out.texts == ["A", "B", "C"] and out.traces == ["t1", "t2", None]
    bare = separate_traces(ChatOutput(texts=["<think>t</think>x"]))
    assert bare.texts == ["x"] and bare.traces == ["t"]
    assert separate_traces(ChatOutput(error="boom")).traces == []


def test_a_bare_closing_tag_ends_a_thinking_only_where_the_backend_could_not_see_the_prompt():
    # A bare `</think>` ending a line is how a server's completion ends a thinking its template opened in the prompt,
    # which the client cannot see. A backend that rendered the prompt knows (opening_known) and put the tag back where
    # the template opened one: for it, a bare closing tag is the answer's text — a model writing about the tag lost
    # everything before it to a "trace".
    text = "Close the block with\n</think>\nand nothing else."
    assert separate_traces(ChatOutput(texts=[text])).traces == ["Close the block with"]
    known = separate_traces(ChatOutput(texts=[text, "<think>t</think>x"], opening_known=True))
    assert known.texts == [text, "x"] and known.traces == [None, "t"]
    # A greedy output asked for n completions is the one repeated: it keeps what its backend knew (vLLM's went back
    # to a bare-tag split).
    from actors.base import repeat_greedy

    repeated = repeat_greedy(ChatOutput(texts=[text], finish_reasons=["stop"], n_tokens=[9], prompt_tokens=4,
                                        opening_known=True), 3)
    assert repeated.opening_known and repeated.texts == [text] * 3 and repeated.prompt_tokens == 4


def test_every_program_is_sent_answers_only():
    class Thinker:
        name = "thinker"

        def chat(self, conversations, sampling):
            return [ChatOutput(texts=["<think>hmm</think>YES"], finish_reasons=["stop"], n_tokens=[3])
                    for _ in conversations]

    def program():
        (out,) = yield [Request([{"role": "user", "content": "?"}], SamplingParams())]
        return out

    (out,) = drive(Thinker(), [program()])
    assert out.texts == ["YES"] and out.traces == ["hmm"]


def test_parse_choices_reads_both_names_of_the_reasoning_field():
    data = {"choices": [
        {"index": 0, "message": {"content": "4", "reasoning_content": "add"}, "finish_reason": "stop"},
        {"index": 1, "message": {"content": "5", "reasoning": "count"}, "finish_reason": "stop"},
        {"index": 2, "message": {"content": "6", "reasoning": None}, "finish_reason": "stop"},
    ]}
    choices, _ = parse_choices(data, want_logprobs=False)
    assert [(c[0], c[4]) for c in choices] == [("4", "add"), ("5", "count"), ("6", None)]


def test_a_trace_of_whitespace_alone_is_no_trace():
    # A server with its thinking off may send reasoning_content "\n\n": kept, it made the group "traced" and every
    # trace pair with it unresolved, blamed on the judge instead of on the missing trace.
    from engine.execution.tables import trace_status

    (choice,), _ = parse_choices({"choices": [{"message": {"content": "4", "reasoning_content": "\n\n"}}]}, False)
    assert choice[4] is None
    assert trace_status(["a", "b"], ["plan", "\n \n"], shared=None) == "partial"
    assert trace_status(["a", "b"], [" ", None], shared=None) == "none"


def test_parse_choices_reads_a_content_list_its_text_as_the_answer_its_thinking_as_the_trace():
    # Before, a content that was not a string became "" with no trace: every answer of such a model was lost, and
    # the group read as one class.
    magistral = [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me "}, {"type": "text",
                                                                                         "text": "think"}]},
                 {"type": "text", "text": "4"}, {"type": "text", "text": "2"}]
    data = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": magistral}, "finish_reason": "stop"},
        {"index": 1, "message": {"content": [{"type": "thinking", "thinking": "add", "signature": "x"},
                                             {"type": "text", "text": "5"}]}, "finish_reason": "stop"},
        {"index": 2, "message": {"content": [{"type": "text", "text": "6"}]}, "finish_reason": "stop"},
        # Cut off while thinking: no text part — no answer, never the thinking as one.
        {"index": 3, "message": {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]}]},
         "finish_reason": "length"},
        # A reasoning field beside a content list: the field is the trace.
        {"index": 4, "message": {"content": [{"type": "text", "text": "7"}], "reasoning": "count"}},
    ]}
    choices, _ = parse_choices(data, want_logprobs=False)
    assert [(c[0], c[4]) for c in choices] == [("42", "Let me think"), ("5", "add"), ("6", None), ("", "hm"),
                                               ("7", "count")]


@pytest.mark.parametrize("mode", REASONING_MODES)
def test_the_http_backend_keeps_traces_apart_in_each_form_a_server_returns_them(mode):
    with ChatServer(ScriptedChat(think=True), model_name="thinker", reasoning=mode, batch_window_ms=5) as srv:
        conversation = [{"role": "user", "content": "Solve it."}]
        body = {"model": "thinker", "messages": conversation, "n": 3, "seed": 1, "max_tokens": 8}
        raw = httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=30).json()["choices"]
        if mode == "inline":
            assert all(c["message"]["content"].startswith("<think>strategy ") for c in raw)
        elif mode == "parts":  # a list of content parts, the thinking one of them (Magistral's form)
            assert all([p["type"] for p in c["message"]["content"]] == ["thinking", "text"] for c in raw)
        else:  # the server split it off, as vLLM's reasoning parsers do
            assert all(c["message"][mode].startswith("strategy ") for c in raw)
            assert all("<think>" not in c["message"]["content"] for c in raw)
        with OpenAIChatClient("thinker", base_url=srv.base_url, timeout_s=30, max_retries=0) as client:
            (out,) = drive(client, [_ask(conversation, SamplingParams(n=3, seed=1, max_tokens=8))])
    assert len(out.texts) == 3 and all(t.startswith("class ") for t in out.texts)
    assert all(t is not None and t.startswith("strategy ") for t in out.traces)


class _OpenedThinker:
    """A reasoning model as its server sees it: one completion that closes its thinking, one cut off inside it."""

    name = "opened"

    def chat(self, conversations, sampling):
        return [ChatOutput(texts=["<think>plan A\n</think>\n\nanswer A", "<think>still thinking"][:p.n],
                           finish_reasons=["stop", "length"][:p.n], n_tokens=[6, 3][:p.n])
                for p in pair_sampling(conversations, sampling)]


@pytest.mark.parametrize("opened", [True, False])
def test_http_with_a_template_that_opens_the_thinking(opened):
    """A server without a reasoning parser, for a model whose template opens `<think>` in the prompt, returns the
    thinking without its opening tag. With `thinking_opened` the client reads a cut-off completion as no answer;
    without it the client cannot tell, and the thinking reads as the answer (why the option exists)."""
    with ChatServer(_OpenedThinker(), model_name="opened", reasoning=TEMPLATE_OPENED, batch_window_ms=5) as srv:
        conversation = [{"role": "user", "content": "Solve it."}]
        body = {"model": "opened", "messages": conversation, "n": 2, "max_tokens": 8}
        raw = [c["message"]["content"] for c in
               httpx.post(f"{srv.base_url}/chat/completions", json=body, timeout=30).json()["choices"]]
        assert raw == ["plan A\n</think>\n\nanswer A", "still thinking"]
        with OpenAIChatClient("opened", base_url=srv.base_url, timeout_s=30, max_retries=0,
                              thinking_opened=opened) as client:
            (out,) = drive(client, [_ask(conversation, SamplingParams(n=2, max_tokens=8))])
    assert (out.texts[0], out.traces[0]) == ("answer A", "plan A")  # the closing tag ends its line: split either way
    assert (out.texts[1], out.traces[1]) == (("", "still thinking") if opened else ("still thinking", None))
    assert out.opening_known is opened  # told, the client put the tag back: a bare closing tag is then text


def _ask(conversation, sampling):
    (out,) = yield [Request(conversation, sampling)]
    return out


def _config(tmp_path: Path, base_url: str, target: str):
    thinker = {"name": "thinker", "backend": "http", "model": "thinker", "batch_size": 16,
               "options": {"base_url": base_url, "max_retries": 0}}
    judge = {"name": "judge", "backend": "python:tests.support.doubles:ScriptedChat", "model": "judge",
             "batch_size": 16}
    return config_from_dict({
        "run_dir": str(tmp_path / "run"), "prompts": {"source": "builtin", "limit": 4}, "n": 4,
        "strategies": ["temperature", "system_general", "regen_general"],
        "generators": [thinker], "judges": [judge], "judge": {"target": target},
        "execution": {"executor": "local", "shard_size": 8},
    })


def _classes(texts, pattern):
    """The equivalence classes the double's judge implies: the first number after `pattern`, numbered by first
    appearance (as engine.method.components numbers them)."""
    seen: dict[str, int] = {}
    return [seen.setdefault(t.split(pattern, 1)[1].split()[0], len(seen)) for t in texts]


def test_a_run_judges_traces_beside_answers_and_reuses_the_answer_verdicts(tmp_path):
    with ChatServer(ScriptedChat(think=True, classes=3, strategies=2), model_name="thinker",
                    reasoning="reasoning", batch_window_ms=5) as srv:
        first = run(_config(tmp_path, srv.base_url, "answer"))
        assert "trace_components" not in first.tables
        result = run(_config(tmp_path, srv.base_url, "both"))
        cfg = _config(tmp_path, srv.base_url, "both")
        trace_cfg = _config(tmp_path, srv.base_url, "trace")
        trace_only = run(trace_cfg)

    # The answer verdicts of the first run are read back: the target keys nothing.
    (answers,) = [r for r in result.stages if r.stage == "judge[judge]"]
    assert answers.units and answers.units_reused == answers.units
    (traces,) = [r for r in result.stages if r.stage == "judge_trace[judge]"]
    assert traces.units and traces.units_reused == 0

    t = result.tables
    responses = t["responses"].to_pylist()
    assert all("<think>" not in r["text"] and r["text"].startswith("class ") for r in responses)
    per_response = [r for r in responses if r["strategy"] != "system_general"]
    assert per_response and all(r["trace"].startswith("strategy ") for r in per_response)
    assert all(r["trace"] is None for r in responses if r["strategy"] == "system_general")
    assert t["samples"].num_rows == 12

    # No answer was judged with its thinking in it (the double would leave such a pair unresolved).
    assert sum(t["components"]["n_unresolved"].to_pylist()) == 0
    by_group: dict[tuple, list[dict]] = {}
    for r in responses:
        by_group.setdefault((r["prompt_id"], r["strategy"]), []).append(r)
    trace_comps = {(c["prompt_id"], c["strategy"]): c for c in t["trace_components"].to_pylist()}
    comps = {(c["prompt_id"], c["strategy"]): c for c in t["components"].to_pylist()}
    assert set(trace_comps) == {k for k in by_group if k[1] != "system_general"}
    for key, rs in by_group.items():
        rs.sort(key=lambda r: r["sample_idx"])
        assert comps[key]["classes"] == _classes([r["text"] for r in rs], "class ")
        if key in trace_comps:
            assert trace_comps[key]["classes"] == _classes([r["trace"] for r in rs], "strategy ")
            assert trace_comps[key]["unique"] == len(set(trace_comps[key]["classes"]))

    groups = t["groups"].to_pylist()
    for g in groups:
        key = (g["prompt_id"], g["strategy"])
        if g["strategy"] == "system_general":
            assert g["trace_status"] == "shared" and g["unique_trace_mean"] is None
        else:
            assert g["trace_status"] == "traced" and g["trace_judges_in_mean"] == ["judge"]
            assert g["trace_unresolved_judges"] == [] and g["trace_missing_judges"] == []
            assert g["unique_trace_mean"] == trace_comps[key]["unique"]
        assert g["unique_mean"] == comps[key]["unique"]

    text = write_report(result, cfg)["markdown"].read_text()
    assert "Reasoning traces: unique answers and unique strategies" in text
    page = (Path(cfg.run_dir) / "explore.html").read_text()
    assert '"traces":["strategy ' in page and '"trace_classes":{"judge":[' in page
    assert "4 one trace split over all responses (system-prompt strategy)" in text

    # Traces only: the report says the answers were not judged (not that their groups were incomplete), and the
    # summary counts the trace verdicts.
    from engine.cli.run import summary

    paths = write_report(trace_only, trace_cfg)
    assert "Answers not judged." in paths["markdown"].read_text()
    assert f"judgments: 0 (answers), {trace_only.tables['trace_judgments'].num_rows} (traces)" in summary(
        trace_only, paths, 1.0)
    assert trace_only.tables["trace_judgments"].num_rows > 0


# Qwen3's form: the generation prompt opens a thinking block, or, with enable_thinking false, closes an empty one.
QWEN3_STYLE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
               "enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}")


def test_a_thinking_judge_says_so_and_chat_template_kwargs_switch_the_thinking_off(cpu_model):
    from engine.method import taxonomy
    from engine.method.judges import read_verdict
    from engine.method.programs import ask_until_parsed

    def ask():
        conversation = taxonomy.judge_conversation("A", "What is 2 + 2?", "4", "Four.", 2000)
        return ask_until_parsed(conversation, SamplingParams(temperature=0.0, max_tokens=4), read_verdict,
                                taxonomy.JUDGE_REMINDER)

    cpu_model.chat_template = QWEN3_STYLE
    try:
        thinking = cpu_model.chat([[{"role": "user", "content": "What is 2 + 2?"}]],
                                  SamplingParams(temperature=0.0, max_tokens=6))
        (starved,) = drive(cpu_model, [ask()])
        cpu_model.chat_template_kwargs = {"enable_thinking": False}
        plain = cpu_model.chat([[{"role": "user", "content": "What is 2 + 2?"}]],
                               SamplingParams(temperature=0.0, max_tokens=6))
        (answered,) = drive(cpu_model, [ask()])
    finally:
        cpu_model.chat_template, cpu_model.chat_template_kwargs = None, {}
    assert thinking[0].texts[0].startswith(THINK_OPEN)
    assert not plain[0].texts[0].startswith(THINK_OPEN) and separate_traces(plain[0]).traces == [None]
    # Four tokens of thinking and no verdict: an error saying what to switch, asked once (no futile reminder).
    assert starved.value is None and starved.calls == 1 and "enable_thinking: false" in starved.error
    # Thinking off: the model answers at once (what the 135M model writes may not parse; then it is reminded as any
    # unparsed answer), never a thinking error.
    assert answered.error is None and "<think" not in answered.raw and answered.raw.strip()


def test_bad_target_is_named():
    with pytest.raises(Exception, match="judge.target"):
        config_from_dict({"judge": {"target": "thoughts"}})


def test_a_template_that_opens_the_thinking_never_yields_it_as_an_answer(cpu_model):
    """The local backend rendering a reasoning model's kind of template: the generation prompt ends inside <think>,
    so the completion is thinking until it closes the block (SmolLM2 never does: it is cut off while thinking)."""
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    cpu_model.chat_template = template
    try:
        (out,) = cpu_model.chat([[{"role": "user", "content": "What is 2 + 2?"}]],
                                SamplingParams(temperature=0.0, max_tokens=12))
    finally:
        cpu_model.chat_template = None
    assert out.texts[0].startswith(THINK_OPEN)
    raw = out.texts[0]
    separate_traces(out)
    assert "<think>" not in out.texts[0] and "</think>" not in out.texts[0]
    assert out.traces[0] and raw[len(THINK_OPEN):].strip().startswith(out.traces[0][:20])
    if "</think>" not in raw:
        assert out.texts[0] == ""
