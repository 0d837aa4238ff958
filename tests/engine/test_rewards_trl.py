"""DiversityReward inside TRL's own GRPOTrainer (not our assumption of how TRL calls a reward function): two real
training steps on the packaged SmolLM2-135M, the calibrated judge scoring each step's groups, with plain-text and
conversational prompts. Slow (~1-2 min on 2 cores) and needs TRL, which is not a dependency of ours:

    .venv/bin/pip install trl datasets && .venv/bin/python -m pytest -m slow tests/engine/test_rewards_trl.py
"""

import pytest

from engine.config import dump_yaml
from engine.method.rewards import diversity_rewards

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("conversational", [False, True], ids=["text", "chat"])
def test_grpo_trains_with_the_diversity_reward(tmp_path, conversational):
    # Skipped inside the test, not at import: the default run deselects it without reporting a skip.
    trl = pytest.importorskip("trl", reason="TRL is not installed (pip install trl datasets): this test runs GRPO")
    datasets = pytest.importorskip("datasets", reason="TRL's datasets package is not installed (pip install datasets)")
    from actors.local import resolve_model_dir
    from engine.api import DiversityReward

    config = tmp_path / "judges.yaml"
    config.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "execution": {"executor": "local"},
                                 "judges": [{"name": "cheap", "backend": "calibrated"}]}))
    seen = []

    class Recording(DiversityReward):
        def __call__(self, prompts, completions, **kwargs):
            out = super().__call__(prompts, completions, **kwargs)
            seen.append((list(prompts), list(completions), dict(kwargs), out, list(self.last_rows)))
            return out

    rows = [{"prompt": "Write a slogan for a bakery.", "category": "G"}, {"prompt": "Name a colour.", "category": "H"}]
    if conversational:
        rows = [{**r, "prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows]
    # Evaluation samples each prompt num_generations_eval (2) times: its batch is both prompts' 2 generations.
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=4, per_device_train_batch_size=4,
                          num_generations_eval=2, per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=2,
                          max_steps=2, max_completion_length=8, logging_steps=1, report_to=[], use_cpu=True,
                          save_strategy="no", seed=0)
    trainer = trl.GRPOTrainer(model=str(resolve_model_dir("smollm2-135m")), args=args,
                              reward_funcs=[Recording(config, num_generations=4, num_generations_eval=2)],
                              train_dataset=datasets.Dataset.from_list(rows),
                              eval_dataset=datasets.Dataset.from_list(rows))
    trainer.train()

    assert len(seen) == 3  # one call per step, each a batch of one prompt's 4 generations; then the evaluation's
    evaluation = seen.pop()
    assert len(evaluation[0]) == len(evaluation[3]) == 4 and len({str(p) for p in evaluation[0]}) == 2
    # Two groups of two (a completion without an answer — the 135M model at 8 tokens can give one — leaves its
    # group: fewer rows, never a group of four).
    ids = [r["prompt_id"] for r in evaluation[4]]
    assert set(ids) <= {"p0", "p1"} and ids == sorted(ids) and max(ids.count("p0"), ids.count("p1")) <= 2
    for prompts, completions, kwargs, out, last_rows in seen:
        assert len(prompts) == len(completions) == len(out) == 4
        assert isinstance(completions[0], list if conversational else str)
        # TRL passes the dataset's other columns: the category is the group's yardstick.
        assert len(set(kwargs["category"])) == 1 and {r["category"] for r in last_rows} == set(kwargs["category"])
        # The rewards are the judge's classes through the formula, in TRL's order (the completions with an answer;
        # one without gets None).
        assert all(r["response"].strip() for r in last_rows)
        classes = [r["classes"]["cheap"] for r in last_rows]
        expected = diversity_rewards(classes, kwargs["category"][0])  # None for each of a group of one
        assert [o for o in out if o is not None] == pytest.approx([e for e in expected if e is not None])
    logged = [h["rewards/functional_diversity/mean"] for h in trainer.state.log_history
              if "rewards/functional_diversity/mean" in h]
    assert len(logged) == 2 and all(0.0 <= v <= 1.0 for v in logged)
    # The share of unknown rewards, through TRL's log_metric (the calibrated judge resolves every pair: a
    # completion without an answer is the only unknown).
    unresolved = [h["functional_diversity/unresolved_frac"] for h in trainer.state.log_history
                  if "functional_diversity/unresolved_frac" in h]
    assert unresolved == [sum(o is None for o in call[3]) / 4 for call in seen]
    assert trainer.state.log_history[-2]["eval_functional_diversity/unresolved_frac"] == \
        pytest.approx(sum(o is None for o in evaluation[3]) / 4)
