"""Reward models with the heads they really have (shared/notes/reward-models.md), on tiny models the tests build:
scores equal a hand computation from the saved tensors, the kind is detected from the checkpoint, and a checkpoint
whose head is missing is refused — never scored with a random head."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from actors.base import BackendError
from actors.registry import make_reward_model
from actors.reward import LocalRewardModel, detect_kind
from tests.support.rewards import athene_like, sequence_classifier

PAIRS = [("Say hi.", "Hi!"), ("Say hi.", "Goodbye forever, and thanks for all the fish."), ("2+2?", "4")]
SCORE_TOKEN = 2  # a token of the tiny vocabulary (Athene's own, 128003, is outside SmolLM2's)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("rewards")
    return {"seqcls": sequence_classifier(root / "seqcls"), "athene": athene_like(root / "athene"),
            "headless": athene_like(root / "headless", with_head=False)}


def hand_scores(folder, pairs, head_key, score_token=None):
    """The reward computed directly from the saved tensors: the decoder's last hidden state at the last token of the
    chat-formatted conversation (plus the scoring token), times the head's weight row."""
    from transformers import AutoTokenizer, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    decoder = LlamaModel.from_pretrained(folder, dtype=torch.float32).eval()
    head = load_file(str(folder / "model.safetensors"))[head_key]
    out = []
    for prompt, response in pairs:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": response}], tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        ids += [score_token] if score_token is not None else []
        with torch.inference_mode():
            hidden = decoder(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        out.append(float(head[0] @ hidden))
    return out


def test_the_kind_is_detected_from_the_checkpoint(folders):
    assert detect_kind(folders["seqcls"]) == "sequence-classification"
    assert detect_kind(folders["athene"]) == "athene"
    with pytest.raises(BackendError, match="cannot tell its head"):
        detect_kind(folders["headless"])


def test_sequence_classification_scores_equal_the_hand_computation(folders):
    rm = LocalRewardModel(str(folders["seqcls"]), batch_size=2)  # batches of 2 pad the shorter pair
    assert rm.kind == "sequence-classification"
    scores = rm.score(PAIRS)
    assert all(math.isfinite(s) for s in scores)
    assert scores == pytest.approx(hand_scores(folders["seqcls"], PAIRS, "score.weight"), abs=1e-5)


def test_athene_scores_read_the_value_head_at_the_scoring_token(folders):
    rm = LocalRewardModel(str(folders["athene"]), score_token_id=SCORE_TOKEN, batch_size=2)
    assert rm.kind == "athene"
    scores = rm.score(PAIRS)
    assert scores == pytest.approx(hand_scores(folders["athene"], PAIRS, "v_head.weight", SCORE_TOKEN), abs=1e-5)
    # Loaded as sequence classification, the same checkpoint would have no `score` head: refused, not randomised.
    with pytest.raises(BackendError, match="score.weight"):
        LocalRewardModel(str(folders["athene"]), kind="sequence-classification")


def test_a_missing_head_is_refused_naming_it(folders):
    with pytest.raises(BackendError, match=r"missing \['v_head.weight'\]"):
        LocalRewardModel(str(folders["headless"]), kind="athene", score_token_id=SCORE_TOKEN)


def test_athenes_scoring_token_must_be_in_the_vocabulary(folders):
    with pytest.raises(BackendError, match="scoring token id 128003 is outside its vocabulary"):
        LocalRewardModel(str(folders["athene"]))


def test_registry_and_errors(folders):
    rm = make_reward_model("local", str(folders["seqcls"]), {"kind": "sequence-classification"})
    assert isinstance(rm, LocalRewardModel)
    with pytest.raises(BackendError, match="neither a folder nor a Hugging Face id"):
        LocalRewardModel("/no/such/reward-model")
    with pytest.raises(BackendError, match="unknown reward backend"):
        make_reward_model("grpc", "x")
    with pytest.raises(BackendError, match="kind must be one of"):
        LocalRewardModel(str(folders["seqcls"]), kind="pairwise")
    # batch_size -1 scored nothing (every reward None, no shard failed); 0 and "8" raised inside the stage
    for bad in (-1, 0, "8", True):
        with pytest.raises(BackendError, match="batch_size must be a whole number >= 1"):
            LocalRewardModel(str(folders["seqcls"]), batch_size=bad)


def test_a_classifier_of_several_labels_is_no_reward_model(tmp_path):
    from tests.support.rewards import sequence_classifier

    folder = sequence_classifier(tmp_path / "two", num_labels=2)
    with pytest.raises(BackendError, match="has one output, this one has 2"):
        LocalRewardModel(str(folder))


def test_a_conversation_longer_than_the_model_reads_is_unscored_not_cut(folders):
    # Cut at the end, a long answer would be scored as the fragment the model saw (a cut-off answer reads as a worse
    # one). It has no score instead; the others are scored as if it were not there, whatever the batching.
    rm = LocalRewardModel(str(folders["seqcls"]), batch_size=2)
    assert rm.max_length == 2048  # the tiny model's max_position_embeddings
    lengths = [len(rm.encode(p, r)) for p, r in PAIRS]
    limit = sorted(lengths)[1]  # the longest pair is one token too many
    short = LocalRewardModel(str(folders["seqcls"]), batch_size=2, max_length=limit)
    scores = short.score(PAIRS)
    expected = hand_scores(folders["seqcls"], PAIRS, "score.weight")
    for length, got, want in zip(lengths, scores, expected):
        assert (got is None) if length > limit else got == pytest.approx(want, abs=1e-5)
    assert scores.count(None) == 1
    # Athene's scoring token counts in the length.
    i = lengths.index(min(lengths))
    for limit, scored in ((lengths[i], False), (lengths[i] + 1, True)):
        athene = LocalRewardModel(str(folders["athene"]), score_token_id=SCORE_TOKEN, max_length=limit)
        assert (athene.score([PAIRS[i]])[0] is not None) is scored
    with pytest.raises(BackendError, match="beyond the model's context of 2048"):
        LocalRewardModel(str(folders["seqcls"]), max_length=4096)
    with pytest.raises(BackendError, match="max_length must be a whole number"):
        LocalRewardModel(str(folders["seqcls"]), max_length="long")


def test_the_weights_type_is_an_option_bfloat16_on_a_gpu_by_default(folders):
    # Athene-RM-8B loaded in float32 whatever the device (32 GB: past a 24 GB card, found when the reward stage
    # loaded, after judging had begun to spend), and `dtype` was refused as an option.
    import torch

    from actors.registry import check_options

    check_options("reward", "local", {"dtype": "bfloat16", "device": "cuda"})
    full = LocalRewardModel(str(folders["athene"]), score_token_id=SCORE_TOKEN)
    half = LocalRewardModel(str(folders["athene"]), score_token_id=SCORE_TOKEN, dtype="bfloat16")
    assert full.net.dtype == torch.float32 and half.net.dtype == torch.bfloat16
    pairs = [("Name a colour.", "Red."), ("Name a colour.", "A deep, velvety crimson.")]
    assert half.score(pairs) == pytest.approx(full.score(pairs), abs=0.05)
    with pytest.raises(BackendError, match="dtype must be one of auto, float32, bfloat16, float16"):
        LocalRewardModel(str(folders["athene"]), score_token_id=SCORE_TOKEN, dtype="fp8")


def test_a_checkpoint_with_its_own_head_code_is_refused_not_scored_with_the_stock_class(folders, tmp_path):
    # ArmoRM-style: the config maps AutoModelForSequenceClassification to the checkpoint's own code (a gating network
    # and more head tensors). transformers loaded the stock class without a word, dropped the extra tensors, and
    # scored: another function than the model's. Refused, naming the code (which is never run: it would raise here).
    import json
    import shutil

    from safetensors.torch import save_file

    custom = tmp_path / "custom"
    shutil.copytree(folders["seqcls"], custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom_rm.CustomRewardModel"}
    config["architectures"] = ["LlamaForRewardModelWithGating"]  # ArmoRM's own: detection cannot name its head
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_custom_rm.py").write_text("raise RuntimeError('the checkpoint's code ran')\n")
    weights = load_file(str(custom / "model.safetensors"))
    save_file({**weights, "gating.weight": torch.zeros(4, 8)}, str(custom / "model.safetensors"))
    assert LocalRewardModel(str(folders["seqcls"])).kind == "sequence-classification"  # the stock one loads
    for kind in ("auto", "sequence-classification"):
        with pytest.raises(BackendError, match=r"ships its own model code \(modeling_custom_rm.CustomRewardModel\)"):
            LocalRewardModel(str(custom), kind=kind)


def test_a_score_that_is_no_number_is_no_score(folders, monkeypatch):
    # float16 on a Llama-3-class model can overflow in a long conversation: a NaN score was counted as rewarded and
    # left out of the mean. It is unscored (None), as a conversation too long to read is.
    rm = LocalRewardModel(str(folders["seqcls"]))
    monkeypatch.setattr(rm, "_forward", lambda encoded: [float("nan"), 1.5, float("inf")][:len(encoded)])
    assert rm.score(PAIRS) == [None, 1.5, None]


def test_a_hub_id_downloads_the_weights_it_needs_not_the_whole_repository(tmp_path, monkeypatch):
    # snapshot_download without patterns fetched every file: Llama-3.1-8B-Instruct's original/consolidated.00.pth too
    # (16 GB more). One format of weights (safetensors where there are any) and the small files go.
    import huggingface_hub

    from actors import hub

    asked = {}

    def snapshot_download(repo, *, revision, cache_dir, token, allow_patterns, ignore_patterns):
        asked[repo] = allow_patterns
        ignored[repo] = ignore_patterns
        return str(tmp_path / repo)

    ignored = {}
    files = {"meta-llama/Llama-3.1-8B-Instruct": ["config.json", "model-00001-of-00004.safetensors",
                                                  "original/consolidated.00.pth", "tokenizer.json"],
             "old/bin-only-rm": ["config.json", "pytorch_model.bin", "tokenizer.model"],
             # Mistral's own consolidated file beside the indexed shards: the same weights twice (14 GB more)
             "mistralai/Mistral-7B-Instruct-v0.3": ["config.json", "consolidated.safetensors",
                                                    "model-00001-of-00003.safetensors",
                                                    "model.safetensors.index.json", "tokenizer.model.v3"]}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files",
                        lambda self, repo, revision=None, token=None: files[repo])
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for repo in files:
        hub.resolve(repo, offline=False)
    llama, old = asked["meta-llama/Llama-3.1-8B-Instruct"], asked["old/bin-only-rm"]
    assert "*.safetensors" in llama and "*.bin" not in llama and not any(p.endswith(".pth") for p in llama)
    assert "*.bin" in old and "*.safetensors" not in old and {"*.json", "*.model"} <= set(old)
    assert ignored["mistralai/Mistral-7B-Instruct-v0.3"] == ["consolidated*.safetensors"]
    assert ignored["meta-llama/Llama-3.1-8B-Instruct"] == []


def tiny_bart_classifier(folder):
    from transformers import BartConfig, BartForSequenceClassification

    torch.manual_seed(0)
    config = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                        num_labels=1)
    BartForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_a_clusters_nodes_check_a_reward_model_with_the_kind_it_was_given(folders, tmp_path, monkeypatch):
    # The driver checked the head with the reward model's kind; the nodes' check (check_models, on a cluster) got its
    # options alone and read kind auto: a checkpoint whose kind must be said was refused there, kind set or not.
    import shutil

    from engine.config import config_from_dict
    from engine.execution.executor import LocalExecutor
    from engine.execution.pipeline import Pipeline

    folder = tmp_path / "score-head"  # a score head under a causal-LM architecture: kind auto cannot tell
    shutil.copytree(folders["seqcls"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForCausalLM"]}))
    seen = []

    def check_models(self, specs, offline):
        seen.extend(specs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(LocalExecutor, "check_models", check_models)
    cfg = config_from_dict({"run_dir": str(tmp_path / "run"), "quality": {"reward_model": {
        "backend": "local", "model": str(folder), "kind": "sequence-classification"}}})
    pipeline = Pipeline(cfg, executor=LocalExecutor(), progress=False)
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            pipeline.run()
    finally:
        pipeline.close()
    from actors.registry import check_model

    reward = [args for where, _, args in seen if where.startswith("quality.reward_model")]
    assert reward and reward[0][3]["kind"] == "sequence-classification"
    check_model(*reward[0], offline=True)  # passes, as on the driver


def test_preflight_refuses_a_reward_model_without_the_head_its_kind_reads(folders, tmp_path):
    # The load refused these only after generation, judging, grading and accuracy were paid for, and the closing
    # advice ("rerun the same command") failed the same way. Preflight reads the files' weight names first.
    from engine.config import config_from_dict
    from engine.errors import ConfigError
    from engine.execution.preflight import preflight
    from tests.support.hub import tiny_chat_model

    chat = tiny_chat_model(tmp_path / "chat")  # a causal LM: no classification head

    def check(model, kind="auto", backend="local"):
        preflight(config_from_dict({"run_dir": str(tmp_path / "run"), "quality": {
            "reward_model": {"backend": backend, "model": str(model), "kind": kind}}}))

    check(folders["seqcls"])
    check(folders["athene"], kind="athene")
    check(folders["seqcls"], kind="sequence-classification")
    check(tiny_bart_classifier(tmp_path / "bart"))  # its head is classification_head.*: refused as headless before
    for model, kind, message in [
            (chat, "sequence-classification", r"its weights hold no classification head \(score\.\*, classifier"),
            (folders["athene"], "sequence-classification", r"no classification head.*it holds a value head, v_head"),
            (folders["headless"], "athene", r"no value head \(v_head\.weight\) for kind athene"),
            (folders["headless"], "auto", "cannot tell its head"),
            ("smollm2-135m", "auto", "'smollm2-135m' is a packaged chat model, not a reward model")]:
        with pytest.raises(ConfigError, match=r"quality\.reward_model\.model: .*" + message):
            check(model, kind)
