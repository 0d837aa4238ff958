"""The embedded CPU model, for real: SmolLM2-135M-Instruct from its PyPI wheel through transformers."""

import os
import shutil

import pytest

from actors.base import BackendError, SamplingParams
from actors.local import LocalChatModel, cache_root, converted_folder, packaged_gguf, resolve_model_dir

HELLO = [{"role": "user", "content": "Say hello."}]


def test_the_packaged_gguf_is_converted_once_to_a_cached_folder(cpu_model):
    folder = resolve_model_dir("smollm2-135m")
    assert folder.is_relative_to(cache_root()) and (folder / "model.safetensors").is_file()
    assert resolve_model_dir("smollm2-135m") == folder


def test_the_conversion_is_keyed_by_the_files_content_not_its_path_or_mtime(tmp_path, monkeypatch):
    # A reinstalled wheel (another venv, another CI run) holds the same file at another path with another mtime:
    # keyed on those, each install left a 500 MB folder behind.
    monkeypatch.setenv("TASKDIV_CACHE", str(tmp_path / "cache"))
    packaged = packaged_gguf("smollm2-135m")
    copies = []
    for i, day in enumerate((1_600_000_000, 1_700_000_000)):
        copy = tmp_path / f"venv{i}" / packaged.name
        copy.parent.mkdir()
        shutil.copyfile(packaged, copy)
        os.utime(copy, (day, day))
        copies.append(copy)
    assert converted_folder(copies[0]) == converted_folder(copies[1]) == converted_folder(packaged)
    with open(copies[1], "ab") as f:  # another file is another model
        f.write(b"\0")
    assert converted_folder(copies[1]) != converted_folder(copies[0])


def test_n_samples_with_token_counts_and_finish_reasons(cpu_model):
    (out,) = cpu_model.chat([HELLO], SamplingParams(n=3, max_tokens=6, seed=1))
    assert len(out.texts) == len(out.n_tokens) == len(out.finish_reasons) == 3
    assert all(0 < n <= 6 for n in out.n_tokens) and set(out.finish_reasons) <= {"stop", "length"}
    assert out.prompt_tokens > 0 and out.error is None
    # The prompt was rendered here: a thinking its template opened would have its tag back, so a bare closing tag
    # in these texts is the answer's own (actors.base.split_reasoning).
    assert out.opening_known


def test_greedy_is_deterministic_and_batch_independent(cpu_model):
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    alone = cpu_model.chat([HELLO], greedy)[0].texts
    other = [{"role": "user", "content": "Write one word about the sea, then a much longer sentence."}]
    batched = cpu_model.chat([other, HELLO], greedy)[1].texts
    assert alone == batched


def test_first_token_logprobs_are_a_top_k_distribution(cpu_model):
    (out,) = cpu_model.chat([HELLO], SamplingParams(temperature=0.0, max_tokens=2, logprobs=5))
    (top,) = out.first_token_logprobs
    assert len(top) == 5 and all(lp <= 0 for lp in top.values())
    # Greedy decoding takes the most probable token, which leads the top list.
    best = max(top, key=top.get)
    assert out.texts[0].startswith(best.strip()) or best.strip() == ""


def test_a_prompt_longer_than_the_context_fails_its_row_only(cpu_model):
    # Past the model's own context (SmolLM2: 8,192 tokens), the default limit.
    huge = [{"role": "user", "content": "word " * 9000}]
    ok, too_long = cpu_model.chat([HELLO, huge], SamplingParams(max_tokens=4, seed=0))
    assert ok.error is None and ok.texts
    assert too_long.error is not None and "exceeds the model's context" in too_long.error and not too_long.texts


def test_stats_count_requests_and_tokens(cpu_model):
    before = cpu_model.stats()
    cpu_model.chat([HELLO, HELLO], SamplingParams(max_tokens=3, seed=0))
    after = cpu_model.stats()
    assert after["requests"] - before["requests"] == 2
    assert after["completion_tokens"] > before["completion_tokens"]


def test_a_missing_model_is_a_clear_error():
    with pytest.raises(BackendError, match="neither a packaged model"):
        LocalChatModel("/no/such/model")


HARMONY_TOKENS = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"]


def packaged_model_with_special_tokens(folder, tokens):
    """The packaged model's folder (linked) with `tokens` added to its tokenizer as special tokens, as a model family's
    own tokenizer has them: (folder, tokenizer)."""
    from transformers import AutoTokenizer

    folder.mkdir()
    for f in resolve_model_dir("smollm2-135m").iterdir():
        (folder / f.name).symlink_to(f)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_a_harmony_models_completion_is_split_into_its_final_answer_and_its_analysis(tmp_path):
    """gpt-oss writes its reasoning and its answer on harmony channels, marked by special tokens. Decoded with them
    skipped (as before) the completion reads "analysisWe need to add.assistantfinalThe answer is 4." and the
    reasoning is judged as part of the answer. The packaged model's folder with harmony's markers added to its
    tokenizer (as special tokens, as in gpt-oss's tokenizer) stands in for gpt-oss."""
    folder, tokenizer = packaged_model_with_special_tokens(tmp_path / "harmony-model", HARMONY_TOKENS)
    model = LocalChatModel(str(folder))
    assert model.harmony
    completion = ("<|channel|>analysis<|message|>We need to add.<|end|><|start|>assistant<|channel|>final"
                  "<|message|>The answer is 4.<|return|>")
    ids = tokenizer.encode(completion, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "analysisWe need to add.assistantfinalThe answer is 4."
    assert model.decode(ids) == ("The answer is 4.", "We need to add.")
    # Cut off while reasoning: no answer, never the reasoning as one.
    assert model.decode(tokenizer.encode("<|channel|>analysis<|message|>We need", add_special_tokens=False)) == \
        ("", "We need")
    # Text without channels decodes as before, and the model still answers.
    assert model.decode(tokenizer.encode("Hello there.", add_special_tokens=False)) == ("Hello there.", None)
    (out,) = model.chat([HELLO], SamplingParams(temperature=0.0, max_tokens=6))
    assert out.error is None and out.texts[0] and out.traces is None
    model.close()


def test_the_packaged_model_is_no_harmony_model(cpu_model):
    assert not cpu_model.harmony and cpu_model.think_ids is None


def test_a_magistral_models_completion_is_split_at_its_thinking_tokens(tmp_path):
    """Magistral (2509 on) thinks between its [THINK] and [/THINK] control tokens. Decoded with special tokens
    skipped they vanish, and "We need to add.The answer is 4." was judged as its answer. The packaged model's folder
    with the two tokens added as special tokens (as in Magistral's tokenizer) stands in for Magistral."""
    folder, tokenizer = packaged_model_with_special_tokens(tmp_path / "magistral-model", ["[THINK]", "[/THINK]"])
    model = LocalChatModel(str(folder))
    assert model.think_ids == tuple(tokenizer.convert_tokens_to_ids(["[THINK]", "[/THINK]"])) and not model.harmony
    ids = tokenizer.encode("[THINK]We need to add.[/THINK]The answer is 4.", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "We need to add.The answer is 4."
    assert model.decode(ids + [tokenizer.eos_token_id]) == ("The answer is 4.", "We need to add.")
    assert model.decode(tokenizer.encode("[THINK]We need", add_special_tokens=False)) == ("", "We need")
    assert model.decode(tokenizer.encode("Hello there.", add_special_tokens=False)) == ("Hello there.", None)
    (out,) = model.chat([HELLO], SamplingParams(temperature=0.0, max_tokens=6))
    assert out.error is None and out.texts[0] and out.traces is None
    model.close()


def test_greedy_with_n_above_one_is_the_one_answer_n_times(cpu_model):
    # A temperature sweep through 0 asks for n responses at temperature 0: generate() refused num_return_sequences
    # > 1 without sampling (a ValueError out of the whole batch). Greedy decoding has one answer.
    before = cpu_model.stats()["completion_tokens"]
    (out,) = cpu_model.chat([HELLO], SamplingParams(n=3, temperature=0.0, max_tokens=6, logprobs=3))
    assert cpu_model.stats()["completion_tokens"] - before == out.n_tokens[0]  # generated once, counted once
    (alone,) = cpu_model.chat([HELLO], SamplingParams(temperature=0.0, max_tokens=6, logprobs=3))
    assert out.error is None and out.texts == alone.texts * 3 and out.finish_reasons == alone.finish_reasons * 3
    assert out.first_token_logprobs == alone.first_token_logprobs * 3


def test_greedy_requests_of_different_n_in_one_call_each_get_their_own_n(cpu_model):
    # They shared a batch generated with its first member's n (by prompt length): a temperature-0 sweep point's
    # group of n beside a regeneration turn's n = 1 came back with one response, stored as complete.
    long = [{"role": "user", "content": "Name three fruits and say why each one is good for you."}]
    greedy = SamplingParams(temperature=0.0, max_tokens=4)
    for order in ((long, HELLO), (HELLO, long)):
        outs = cpu_model.chat(list(order), [greedy.with_(n=3), greedy])
        assert [len(o.texts) for o in outs] == [3, 1]
        assert outs[0].texts == cpu_model.chat([order[0]], greedy)[0].texts * 3


def test_a_stop_string_is_matched_in_the_generated_text_only(cpu_model):
    # transformers' stop_strings matched the end of the whole sequence: "\nHello" met the rendered prompt's
    # "assistant\n" and the first generated "Hello" and stopped after one token (vLLM generates on).
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    (plain,) = cpu_model.chat([HELLO], greedy)
    assert plain.texts[0].startswith("Hello")
    for stop in (("\nHello",), ("assistant\nHello",)):
        (out,) = cpu_model.chat([HELLO], greedy.with_(stop=stop))
        assert out.texts == plain.texts and out.n_tokens == plain.n_tokens
    (cut,) = cpu_model.chat([HELLO], greedy.with_(stop=(plain.texts[0][6:9],)))
    assert cut.texts == [plain.texts[0][:6]] and cut.finish_reasons == ["stop"]


def test_seeded_sampling_is_reproducible_with_another_model_sampling_on_another_thread(cpu_model):
    # torch's generator is the process's: two models sampling at once on a LocalExecutor's threads interleaved
    # their draws, and a seeded run gave other samples each time.
    from concurrent.futures import ThreadPoolExecutor

    from actors.local import LocalChatModel

    other = LocalChatModel("smollm2-135m")
    one, two = SamplingParams(n=2, max_tokens=8, seed=1), SamplingParams(n=2, max_tokens=8, seed=2)
    alone = (cpu_model.chat([HELLO], one)[0].texts, other.chat([HELLO], two)[0].texts)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            a, b = pool.submit(cpu_model.chat, [HELLO], one), pool.submit(other.chat, [HELLO], two)
            assert (a.result()[0].texts, b.result()[0].texts) == alone


def test_the_models_generation_config_does_not_shape_the_samples(cpu_model, monkeypatch):
    # generate() starts from the model's generation_config.json: a repetition_penalty there (Qwen2.5-Instruct's is
    # 1.05) reshaped every sample, a distribution other than the one labelled (and than vLLM's, which applies none).
    greedy = SamplingParams(temperature=0.0, max_tokens=24)
    before = cpu_model.chat([HELLO], greedy)[0].texts
    monkeypatch.setattr(cpu_model.model.generation_config, "repetition_penalty", 3.0)
    assert cpu_model.chat([HELLO], greedy)[0].texts == before


def test_the_models_own_end_tokens_end_a_completion(cpu_model, monkeypatch):
    # Gemma-3 and Llama-3 list end tokens besides the tokenizer's eos in generation_config: generate() stops at
    # them, and the completion was counted one token long and said to be cut at the limit.
    greedy = SamplingParams(temperature=0.0, max_tokens=8)
    (out,) = cpu_model.chat([HELLO], greedy)
    ids = cpu_model.tokenizer(out.texts[0], add_special_tokens=False)["input_ids"]
    end = ids[2]
    monkeypatch.setattr(cpu_model.model.generation_config, "eos_token_id", [cpu_model.tokenizer.eos_token_id, end])
    (cut,) = cpu_model.chat([HELLO], greedy)
    # two tokens and the end token, counted as vLLM counts it (len(token_ids)) and APIs' usage does
    assert cut.finish_reasons == ["stop"] and cut.n_tokens == [3]
    assert cut.texts[0] == cpu_model.tokenizer.decode(ids[:2]).strip() or out.texts[0].startswith(cut.texts[0])


# A template that drops the system role (as Phi-3-mini's first one did) and one that refuses it (as Gemma's).
DROPS_SYSTEM = ("{% for m in messages %}{% if m['role'] != 'system' %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
                "{% endif %}{% endfor %}<|assistant|>")
REFUSES_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                  "supported') }}{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}<|assistant|>")


@pytest.mark.parametrize("template", [DROPS_SYSTEM, REFUSES_SYSTEM])
def test_a_template_without_the_system_role_gets_the_system_text_in_the_first_user_turn(template, monkeypatch):
    # The judge's instructions and the system-prompt strategies' were lost without a word (or every such row
    # refused): the system text now opens the first user turn, as lm-eval does.
    from actors.local import LocalChatModel

    model = LocalChatModel("smollm2-135m", chat_template=template)
    assert model.fold_system
    rendered = []
    real = model.tokenizer.apply_chat_template
    monkeypatch.setattr(model.tokenizer, "apply_chat_template",
                        lambda conv, **kw: (rendered.append(real(conv, **{**kw, "tokenize": False})),
                                            real(conv, **kw))[1])
    conv = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Name a colour."}]
    (out,) = model.chat([conv], SamplingParams(temperature=0.0, max_tokens=2))
    assert out.error is None and rendered == ["<|user|>Answer in French.\n\nName a colour.<|end|><|assistant|>"]


def test_the_packaged_models_template_keeps_the_system_role(cpu_model):
    assert cpu_model.fold_system is False
