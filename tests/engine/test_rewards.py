"""Functional diversity as a training reward: hand-computed rewards, category A inverted, unresolved groups without a
reward — through the `rewards` command (resumable) and the TRL-shaped callable.

The judge is the scripted backend: responses written "class k …" are equivalent exactly when their k agree, and
chosen pairs of classes get unreadable verdicts."""

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import dump_yaml
from engine.method.rewards import diversity_rewards, group_rewards
from tests.support.doubles import ScriptedChat


def test_rewards_by_hand():
    assert diversity_rewards([0, 0, 1, 2], "G") == pytest.approx([2 / 3, 2 / 3, 1, 1])
    assert diversity_rewards([0, 0, 1, 2], "A") == pytest.approx([1 / 3, 1 / 3, 0, 0])  # agreeing is rewarded
    assert diversity_rewards([0, 0, 0], "H") == [0.0, 0.0, 0.0]
    assert diversity_rewards([0], "G") == [0.0]
    # Two judges: the mean of their rewards; a judge whose classes are unknown does not enter.
    rewards, judges = group_rewards([{"judge": "a", "classes": [0, 0, 1]}, {"judge": "b", "classes": [0, 1, 2]},
                                     {"judge": "c", "classes": None}], 3, "D")
    assert rewards == pytest.approx([(0.5 + 1) / 2, (0.5 + 1) / 2, 1.0]) and judges == ["a", "b"]
    assert group_rewards([{"judge": "a", "classes": None}], 3, "D") == ([None, None, None], [])


JUDGE = {"name": "scripted", "backend": "python:tests.support.doubles:ScriptedChat", "model": "scripted",
         "batch_size": 4, "options": {"unparseable_classes": [[3, 4]]}}


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [JUDGE], "judges": [JUDGE],
                               "execution": {"executor": "local"}}))
    return path


GROUPS = [
    {"prompt": "Write a story opening.", "category": "G",
     "responses": ["class 0 a", "class 0 b", "class 1 c", "class 2 d"]},
    {"prompt": "What is the capital of France?", "category": "A",
     "responses": ["class 0 Paris", "class 0 Paris.", "class 0 It is Paris", "class 1 Lyon"]},
    # 3 and 4 never get a readable verdict and nothing else joins them: the count, and so the rewards, are unknown.
    {"prompt": "Suggest a name for a cat.", "category": "G", "responses": ["class 3 Tom", "class 4 Kit", "class 5 X"]},
]


def test_the_rewards_command_scores_groups_and_a_rerun_reuses_the_judging(tmp_path, capsys):
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in GROUPS))
    out = tmp_path / "rewards.jsonl"
    argv = ["rewards", "--config", str(write_config(tmp_path)), "--in", str(groups), "--out", str(out),
            "--allow-python-backends", "--quiet"]
    assert main(argv) == 0
    assert "11 rewards for 3 groups" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rewards = {}
    for r in rows:
        rewards.setdefault((r["prompt_id"]), []).append(r["reward"])
    values = list(rewards.values())
    assert values[0] == pytest.approx([2 / 3, 2 / 3, 1, 1])
    assert values[1] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0])  # category A: inverted
    assert values[2] == [None, None, None]
    assert rows[0]["judges"] == ["scripted"] and rows[0]["classes"] == {"scripted": 0}

    # The same groups again: every judgment is read back from the run directory, none asked again.
    calls = len(ScriptedChat.calls)
    assert main(argv) == 0
    assert len(ScriptedChat.calls) == calls
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_the_trl_reward_function_returns_one_reward_per_completion(tmp_path, monkeypatch):
    from engine.api import DiversityReward, load_config

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")  # the config's judge is the scripted backend
    reward = DiversityReward(load_config(write_config(tmp_path)))
    prompts = ["Write a story opening."] * 4 + [[{"role": "user", "content": "Name a colour."}]] * 3
    completions = ["class 0 a", "class 0 b", "class 1 c", "class 2 d",
                   [{"role": "assistant", "content": "class 0 red"}],
                   [{"role": "assistant", "content": "class 1 blue"}],
                   [{"role": "assistant", "content": "class 1 navy"}]]
    out = reward(prompts=prompts, completions=completions, category=["G"] * 4 + ["H"] * 3)
    assert out == pytest.approx([2 / 3, 2 / 3, 1, 1, 1, 0.5, 0.5])
    assert reward.__name__ == "functional_diversity"
