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
    # One response has none to differ from: (n - 1) = 0, no reward (0 would read "all equivalent").
    assert diversity_rewards([0], "G") == [None]
    assert group_rewards([{"judge": "a", "classes": [0]}], 1, "G") == ([None], [])
    # Two judges: the mean of their rewards; a judge whose classes are unknown does not enter.
    rewards, judges = group_rewards([{"judge": "a", "classes": [0, 0, 1]}, {"judge": "b", "classes": [0, 1, 2]},
                                     {"judge": "c", "classes": None}], 3, "D")
    assert rewards == pytest.approx([(0.5 + 1) / 2, (0.5 + 1) / 2, 1.0]) and judges == ["a", "b"]
    assert group_rewards([{"judge": "a", "classes": None}], 3, "D") == ([None, None, None], [])
    # A category the classifier could not give: whether agreeing or differing is rewarded is unknown (an
    # uncategorised A prompt rewarded the odd answer out most).
    assert group_rewards([{"judge": "a", "classes": [0, 0, 1]}], 3, None) == ([None, None, None], [])


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
    # Each row says what it scores: the prompt and the response, not only their keys.
    assert rows[0]["prompt"] == "Write a story opening." and rows[0]["response"] == "class 0 a"

    # The same groups again: every judgment is read back from the run directory, none asked again.
    calls = len(ScriptedChat.calls)
    assert main(argv) == 0
    assert len(ScriptedChat.calls) == calls
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


@pytest.mark.parametrize("empty_response", [False, True])
def test_input_rows_the_config_skips_are_said(tmp_path, capsys, empty_response):
    # prompts.on_error: skip left a bad row out with no word: "3 rewards for 1 groups written", exit 0. With an
    # empty response in the file too (read, then scored from a batch of our own), it was a log line only.
    groups = tmp_path / "groups.jsonl"
    good = {"prompt": "Name a colour.", "category": "H",
            "responses": ["class 0 red", "class 1 blue", *([""] if empty_response else ["class 2 green"])]}
    groups.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "Name a fruit.", "category": "Z",
                                                             "responses": ["class 0 a", "class 1 b"]}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [JUDGE], "judges": [JUDGE],
                                 "prompts": {"on_error": "skip"}, "execution": {"executor": "local"}}))
    out = tmp_path / "rewards.jsonl"
    assert main(["rewards", "--config", str(config), "--in", str(groups), "--out", str(out),
                 "--allow-python-backends", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "3 rewards for 1 groups" in captured.out and "1 input rows skipped" in captured.out
    assert "skipped input row: " in captured.err and ":2: field 'category'" in captured.err


def test_a_groups_file_left_with_one_answer_per_group_gives_null_rewards_not_an_error(tmp_path, capsys):
    # An audit refuses a file whose every group has one response; the rewards' own batch of answering responses was
    # refused the same way (naming our file, exit 2) where each group kept one answer. Such groups get None, said.
    groups = tmp_path / "groups.jsonl"
    groups.write_text(json.dumps({"prompt": "Name a tree.", "category": "H",
                                  "responses": ["class 0 oak", "", "<think>a tree, perhaps"]}) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [JUDGE], "judges": [JUDGE],
                                 "execution": {"executor": "local"}}))
    out = tmp_path / "rewards.jsonl"
    assert main(["rewards", "--config", str(config), "--in", str(groups), "--out", str(out),
                 "--allow-python-backends", "--quiet"]) == 0
    printed = capsys.readouterr().out
    # The empty one and the one cut off while thinking (the file's text, its <think> never closed).
    assert "3 rewards for 1 groups" in printed and "2 of them give no answer" in printed
    assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [None, None, None]


def test_groups_rewarded_by_only_some_judges_are_counted(tmp_path, capsys):
    # The third group is unresolved for the judge that cannot read classes 3 and 4, resolved for the other: its
    # rewards are the other's alone — said in the summary, and each row names the judges that entered.
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in GROUPS))
    config = tmp_path / "config.yaml"
    config.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [JUDGE],
                                 "judges": [JUDGE, {**JUDGE, "name": "reader", "options": {}}],
                                 "execution": {"executor": "local"}}))
    out = tmp_path / "rewards.jsonl"
    assert main(["rewards", "--config", str(config), "--in", str(groups), "--out", str(out),
                 "--allow-python-backends", "--quiet"]) == 0
    assert "11 rewards for 3 groups written" in (printed := capsys.readouterr().out)
    assert "; 1 groups rewarded by only some of the 2 judges" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[-1]["judges"] == ["reader"] and rows[-1]["reward"] == 1.0
    assert rows[0]["judges"] == ["scripted", "reader"]


def test_a_judging_shard_that_failed_is_said_and_exits_3_as_a_run_does(tmp_path, capsys):
    # The judge refused (a revoked key): every reward was null, said to be for "no judge's classes known", exit 0.
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in GROUPS))
    refused = tmp_path / "refused"
    refused.touch()
    config = tmp_path / "config.yaml"
    judge = {**JUDGE, "options": {**JUDGE.get("options", {}), "refuse_armed": str(refused), "refuse_kind": "judge"}}
    config.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [judge], "judges": [judge],
                                 "execution": {"executor": "local"}}))
    out = tmp_path / "rewards.jsonl"
    argv = ["rewards", "--config", str(config), "--in", str(groups), "--out", str(out), "--allow-python-backends",
            "--quiet"]
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "11 without a reward (a stage's shards failed" in captured.out
    assert "shards failed for good" in captured.err and "HTTP 401" in captured.err
    refused.unlink()
    assert main(argv) == 0 and "11 rewards for 3 groups" in capsys.readouterr().out


def test_rewards_in_an_audits_run_directory_is_refused_and_a_renumbered_file_is_said(tmp_path, capsys):
    # Given the config an audit ran with, rewards finished a run in the audit's directory: its tables (and
    # config.yaml) were replaced by the rewards run's, beside the audit's stale report.
    audit = tmp_path / "run"
    audit.mkdir()
    (audit / "config.yaml").write_text(dump_yaml({"prompts": {"source": "paper"}, "quality": {"enabled": True}}))
    (audit / "groups.parquet").write_bytes(b"the audit's table")
    groups = tmp_path / "groups.jsonl"
    # One response per row, numbered from 1: the run numbers them from 0, and says so.
    groups.write_text("".join(json.dumps({"prompt": "Write a story opening.", "category": "G", "sample_idx": k + 1,
                                          "response": f"class {k} x"}) + "\n" for k in range(3)))
    argv = ["rewards", "--config", str(write_config(tmp_path)), "--in", str(groups), "--out",
            str(tmp_path / "r.jsonl"), "--allow-python-backends", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds a run that is not a rewards run (its prompts from paper)" in err and "--run-dir" in err
    assert (audit / "groups.parquet").read_bytes() == b"the audit's table"
    # (A whole rewards run in another directory prints the load's warnings; here the loader's, without the run.)
    from engine.inputs.prompts import LoadReport
    from engine.inputs.responses import load_responses

    report = LoadReport()
    load_responses(groups, report=report)
    (warning,) = report.warnings
    assert "sample_idx of 1 group(s) do not run 0, 1, …, k-1" in warning and "1→0, 2→1, 3→2" in warning


def test_rewards_refuses_what_it_would_lose_or_ignore_before_judging(tmp_path, capsys):
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in GROUPS))
    base = ["rewards", "--config", str(write_config(tmp_path)), "--in", str(groups), "--allow-python-backends"]
    assert main(base + ["--out", str(groups)]) == 2  # the groups file would be replaced by its rewards
    assert "is the --in file" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "no-such-folder" / "r.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path)]) == 2
    assert "is a folder, expected a file name" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "r.jsonl"), "--set", "prompts.limit=1"]) == 2
    assert "--set prompts.limit: rewards sets this itself" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before any run started


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


def test_reasoning_in_a_groups_file_is_its_trace_never_part_of_the_answer(tmp_path, monkeypatch):
    from engine.api import score_rewards

    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in [
        # Inline: a leading block, and thinking ended by a bare closing line (R1's template opens the block).
        {"prompt": "What is 17 x 23?", "category": "D",
         "responses": ["<think>class 7 17*20+17*3</think>class 0 391", "class 9 23*17\n</think>\nclass 0 It is 391",
                       "class 1 400"]},
        # Given apart: `traces` (a null there means none given: inline reasoning is still split off).
        {"prompt": "Name a colour.", "category": "H", "responses": ["class 0 red", "<think>hmm</think>class 1 blue"],
         "traces": ["thought of red", None]},
    ]))
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    rows = score_rewards(write_config(tmp_path), groups)
    by = {(r["prompt"], r["sample_idx"]): r for r in rows}
    assert [by[("What is 17 x 23?", i)]["response"] for i in range(3)] == ["class 0 391", "class 0 It is 391",
                                                                            "class 1 400"]
    assert [by[("What is 17 x 23?", i)]["trace"] for i in range(3)] == ["class 7 17*20+17*3", "class 9 23*17", None]
    # The scripted judge answers "maybe" to any <think> left in an answer: resolved rewards prove none was.
    assert [by[("What is 17 x 23?", i)]["reward"] for i in range(3)] == pytest.approx([0.5, 0.5, 1.0])
    assert [by[("Name a colour.", i)]["trace"] for i in range(2)] == ["thought of red", "hmm"]
    assert [by[("Name a colour.", i)]["reward"] for i in range(2)] == pytest.approx([1.0, 1.0])


def test_a_response_without_an_answer_leaves_its_group_and_the_others_are_rewarded(tmp_path, monkeypatch, capsys):
    # One empty answer (or one cut off while thinking) made every pair with it unresolved, so the whole group's
    # rewards were null; DiversityReward scored the others among themselves. Now both paths do.
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in [
        {"prompt": "Write a story opening.", "category": "G",
         "responses": ["class 0 a", "class 0 b", "<think>class 4 still thinking", "class 1 c", ""]},
        {"prompt": "Name a colour.", "category": "H", "responses": ["class 0 red", "class 1 blue"]},
        {"prompt": "Name a fruit.", "category": "H", "responses": ["", "<think>hmm"]}]))
    out = tmp_path / "rewards.jsonl"
    argv = ["rewards", "--config", str(write_config(tmp_path)), "--in", str(groups), "--out", str(out),
            "--allow-python-backends", "--quiet"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by = {(r["prompt"], r["sample_idx"]): r for r in rows}
    assert [by[("Write a story opening.", i)]["reward"] for i in range(5)] == pytest.approx([0.5, 0.5, None, 1.0,
                                                                                              None])
    assert by[("Write a story opening.", 3)]["response"] == "class 1 c"
    assert by[("Write a story opening.", 2)]["judges"] == [] and by[("Write a story opening.", 2)]["category"] == "G"
    assert [by[("Name a colour.", i)]["reward"] for i in range(2)] == pytest.approx([1.0, 1.0])
    assert [by[("Name a fruit.", i)]["reward"] for i in range(2)] == [None, None]
    assert len(rows) == 9


def test_rewards_from_a_config_whose_only_judge_is_calibrated(tmp_path):
    # Quality and accuracy need an LLM judge; scoring rewards turns them off, so such a config is enough.
    from engine.api import DiversityReward

    path = tmp_path / "cheap.yaml"
    path.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "judges": [{"name": "cheap", "backend": "calibrated"}],
                               "execution": {"executor": "local"}}))
    groups = tmp_path / "groups.jsonl"
    groups.write_text(json.dumps({"prompt": "Name a colour.", "category": "H",
                                  "responses": ["Red.", "red", "The colour of a clear sky at noon: blue."]}) + "\n")
    out = tmp_path / "rewards.jsonl"
    assert main(["rewards", "--config", str(path), "--in", str(groups), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["judges"] for r in rows] == [["cheap"]] * 3
    assert rows[0]["classes"]["cheap"] == rows[1]["classes"]["cheap"]  # the same text, case aside: equivalent
    assert all(r["reward"] is not None for r in rows)
    reward = DiversityReward(path)
    assert reward(prompts=["Name a colour."] * 2, completions=["Red.", "red"], category=["H", "H"]) == [0.0, 0.0]


def _scripted_reward(tmp_path, **kwargs):
    from engine.api import DiversityReward, load_config

    return DiversityReward(load_config(write_config(tmp_path)), **kwargs)


def test_the_trl_reward_function_groups_by_the_whole_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path)
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    plain = [{"role": "user", "content": "Name a colour."}]
    # Two prompts that differ in their system message only are two groups.
    out = reward(prompts=[system, system, plain, plain],
                 completions=["class 0 red", "class 0 red.", "class 0 red", "class 1 blue"], category=["H"] * 4)
    assert out == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert [r["prompt"] for r in reward.last_rows] == ["Name a colour."] * 4  # one user turn: its text
    # A follow-up turn is judged as the task it continues: the judges read the conversation, not "Shorter." alone.
    follow_up = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe Paris."},
                 {"role": "assistant", "content": "Paris is the capital of France, on the Seine."},
                 {"role": "user", "content": [{"type": "text", "text": "Shorter."}]}]
    reward(prompts=[follow_up] * 2, completions=["class 0 Capital of France.", "class 1 On the Seine."],
           category=["H"] * 2)
    assert {r["prompt"] for r in reward.last_rows} == {
        "User: Describe Paris.\n\nAssistant: Paris is the capital of France, on the Seine.\n\nUser: Shorter."}
    # Messages without a role (as in TRL's own examples), content as parts, a reasoning_content trace, a `reasoning`
    # one beside a null reasoning_content (a model_dump of a message), and thinking cut off with no content.
    out = reward(prompts=["Name a fruit."] * 6,
                 completions=[[{"content": "class 0 apple"}],
                              [{"role": "assistant", "content": [{"type": "text", "text": "class 0 "},
                                                                 {"type": "text", "text": "pear"}]}],
                              [{"role": "assistant", "content": "class 2 kiwi", "reasoning_content": "class 5 hmm"}],
                              [{"role": "assistant", "content": "class 3 fig", "reasoning_content": None,
                                "reasoning": "class 6 well"}],
                              [{"role": "assistant", "content": None, "reasoning_content": "class 7 still thinking"}],
                              # TRL's parsed response for some templates (LFM2.5): the thinking under `thinking`.
                              [{"role": "assistant", "content": "class 9 plum", "thinking": "class 8 mm"}]],
                 category=["H"] * 6)
    assert [r["response"] for r in reward.last_rows] == ["class 0 apple", "class 0 pear", "class 2 kiwi",
                                                         "class 3 fig", "class 9 plum"]
    assert [r["trace"] for r in reward.last_rows] == [None, None, "class 5 hmm", "class 6 well", "class 8 mm"]
    # The completion cut off while thinking has no answer: no reward (never "unique" for failing to answer), and the
    # others are scored among themselves (5 of them).
    assert out[4] is None
    assert out[:4] + out[5:] == pytest.approx([0.75, 0.75, 1.0, 1.0, 1.0])
    # So is an inline block never closed; a group left with one answer has none to differ from.
    assert reward(prompts=["Name a tree."] * 3, completions=["<think>hmm", "class 1 oak", "   "]) == [None] * 3
    assert reward(prompts=["Name a tree."] * 2, completions=["", ""]) == [None, None] and reward.last_rows == []


def test_num_generations_keeps_duplicate_rows_apart_and_refuses_partial_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path, num_generations=2)
    # The same dataset row twice in a batch: two groups of two, not one of four.
    out = reward(prompts=["Name a colour."] * 4, completions=["class 0 red", "class 0 red!", "class 0 red",
                                                              "class 1 blue"], category=["H"] * 4)
    assert out == pytest.approx([0.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="do not split into groups of num_generations=2"):
        reward(prompts=["Name a colour."] * 3, completions=["a", "b", "c"])
    with pytest.raises(ValueError, match="completion 1 answers another prompt"):
        reward(prompts=["Name a colour.", "Name a fruit."], completions=["a", "b"])
    # A category that is none: named by its place in the batch (it named the batch file we write, line 1).
    with pytest.raises(ValueError, match=r"category\[1\] \(the dataset's `category` column\): expected one of A-H"):
        reward(prompts=["Name a colour."] * 2, completions=["a", "b"], category=["H", "X"])
    with pytest.raises(ValueError, match="num_generations must be a positive integer"):
        _scripted_reward(tmp_path, num_generations=0)


def test_an_evaluation_batch_is_grouped_by_num_generations_eval(tmp_path, monkeypatch):
    # TRL samples an evaluation batch's prompts num_generations_eval times and says nothing of which batch it is.
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path, num_generations=4, num_generations_eval=2)
    colours = ["class 0 red", "class 1 blue", "class 0 red", "class 0 red."]
    # A training batch: one prompt's 4 generations.
    assert reward(prompts=["Name a colour."] * 4, completions=colours, category=["H"] * 4) == \
        pytest.approx([1 / 3, 1.0, 1 / 3, 1 / 3])
    # An evaluation batch: two prompts x 2 (does not split into 4s of one prompt), and 6 (not a multiple of 4).
    assert reward(prompts=["Name a colour."] * 2 + ["Name a fruit."] * 2, completions=colours,
                  category=["H"] * 4) == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert len(reward(prompts=["a"] * 2 + ["b"] * 2 + ["c"] * 2, completions=["class 0 x"] * 6)) == 6
    with pytest.raises(ValueError, match="do not split into groups of num_generations=4; completion 1 answers another "
                                         "prompt than the others of its group of num_generations_eval=2"):
        reward(prompts=["a", "b", "b", "b", "c", "c"], completions=["x"] * 6)
    with pytest.raises(ValueError, match="num_generations_eval needs num_generations"):
        _scripted_reward(tmp_path, num_generations_eval=2)


def test_the_larger_group_size_wins_unless_trl_shows_the_mode(tmp_path, monkeypatch):
    # Evaluation groups of 4 also split into runs of 2 (training's size): split so, a group's rewards would be
    # computed over half of it. Where the mode is unknown the larger size that fits is taken; where TRL's trainer
    # shows it (log_metric is its method, its model in train() or eval() mode) that mode's size is.
    from types import SimpleNamespace

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path, num_generations=2, num_generations_eval=4)
    colours = ["class 0 red", "class 1 blue", "class 0 red.", "class 2 green"] * 2
    four = reward(prompts=["Name a colour."] * 4 + ["Name a fruit."] * 4, completions=colours, category=["H"] * 8)
    assert four == pytest.approx([2 / 3, 1.0, 2 / 3, 1.0] * 2)

    class Trainer:
        def __init__(self, training):
            self.model = SimpleNamespace(training=training)

        def log_metric(self, name, value):
            pass

    # The same dataset row twice in a training batch: two groups of two, as TRL laid them out.
    two = reward(prompts=["Name a colour."] * 4, completions=colours[:4], category=["H"] * 4,
                 log_metric=Trainer(True).log_metric)
    assert two == pytest.approx([1.0, 1.0, 1.0, 1.0])
    evaluated = reward(prompts=["Name a colour."] * 4, completions=colours[:4], category=["H"] * 4,
                       log_metric=Trainer(False).log_metric)
    assert evaluated == pytest.approx([2 / 3, 1.0, 2 / 3, 1.0])


def test_thinking_cut_off_under_a_template_that_opens_it_is_no_answer(tmp_path, monkeypatch):
    # DeepSeek-R1's template (and Qwen3's thinking models') opens <think> in the prompt: TRL's completion starts
    # inside the thinking, and one cut off at max_completion_length has no tag at all. Before, it was judged as an
    # answer and rewarded as a unique one (1.0) for failing to answer.
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    completions = ["class 6 one\n</think>\nclass 0 red", "class 7 hmm, maybe crimson or",
                   "class 8 two\n</think>\nclass 0 red."]
    assert _scripted_reward(tmp_path)(prompts=["Name a colour."] * 3, completions=completions,
                                      category=["H"] * 3) == pytest.approx([0.5, 1.0, 0.5])  # unflagged: the bug
    reward = _scripted_reward(tmp_path, thinking_opened=True)
    assert reward(prompts=["Name a colour."] * 3, completions=completions, category=["H"] * 3) == [0.0, None, 0.0]
    assert [r["trace"] for r in reward.last_rows] == ["class 6 one", "class 8 two"]
    # A parsed message keeps its parser's split: its content is the answer, not thinking to hide.
    parsed = [[{"role": "assistant", "content": "class 0 red"}], [{"role": "assistant", "content": "class 1 b"}]]
    assert reward(prompts=["Name a colour."] * 2, completions=parsed, category=["H"] * 2) == [1.0, 1.0]

    # Unset, it is read from the trainer's chat template, where TRL shows the trainer (log_metric is its method).
    class Tokenizer:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return "<|User|>" + messages[0]["content"] + "<|Assistant|><think>\n"

    class Trainer:
        processing_class = Tokenizer()

        def log_metric(self, name, value):
            pass

    auto = _scripted_reward(tmp_path)
    # A string prompt: TRL tokenizes it as it is, without the template, so only a prompt whose own text opens the
    # block (a dataset rendered with the template) starts its completions inside one. Read from the template, every
    # plain answer of a plain prompt was taken as cut off while thinking (no reward at all).
    rendered = "<|User|>Name a colour.<|Assistant|><think>\n"
    assert auto(prompts=[rendered] * 3, completions=completions, category=["H"] * 3,
                log_metric=Trainer().log_metric) == [0.0, None, 0.0]
    assert auto.thinking_opened is True
    plain = ["class 0 red", "class 1 blue"]
    assert auto(prompts=["Name a colour."] * 2, completions=plain, category=["H"] * 2,
                log_metric=Trainer().log_metric) == [1.0, 1.0]
    # Conversational prompts: without a response template on the tokenizer, TRL 1.16 wraps the decoded text, unsplit,
    # as one assistant message — it starts inside the thinking as the string did (a message cut off while thinking
    # was rewarded 1.0). With one, TRL parses it and the content is the answer.
    wrapped = [[{"role": "assistant", "content": c}] for c in completions]
    asked = [{"role": "user", "content": "Name a colour."}]
    assert auto(prompts=[asked] * 3, completions=wrapped, category=["H"] * 3,
                log_metric=Trainer().log_metric) == [0.0, None, 0.0]
    Tokenizer.response_template = {"x-regex": "…"}
    parsing = _scripted_reward(tmp_path)
    assert parsing(prompts=[asked] * 2, completions=parsed, category=["H"] * 2,
                   log_metric=Trainer().log_metric) == [1.0, 1.0]
    assert parsing.thinking_opened is True and parsing.completions_parsed is True

    # DeepSeek-V3.1's template opens the block only when the trainer renders with thinking on
    # (GRPOConfig.chat_template_kwargs): read without it, the template said "closed", and a completion cut off while
    # thinking was judged as an answer and rewarded 1.0.
    class Switch:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize, thinking=False):
            return "<|User|>" + messages[0]["content"] + "<|Assistant|>" + ("<think>" if thinking else "</think>")

    class Thinking:
        processing_class = Switch()
        chat_template = None
        chat_template_kwargs = {"thinking": True}

        def log_metric(self, name, value):
            pass

    switched = _scripted_reward(tmp_path)
    assert switched(prompts=[asked] * 3, completions=wrapped,
                    category=["H"] * 3, log_metric=Thinking().log_metric) == [0.0, None, 0.0]
    Thinking.chat_template_kwargs = {}
    off = _scripted_reward(tmp_path)
    off(prompts=[asked] * 3, completions=wrapped, category=["H"] * 3, log_metric=Thinking().log_metric)
    assert off.thinking_opened is False


def test_a_completion_that_is_only_a_tool_call_has_no_reward_and_stops_nothing(tmp_path, monkeypatch):
    # TRL's parsed response for a tool call (Qwen3's template): no `content` — before, a ValueError out of the
    # reward function stopped the trainer.
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    call = [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]}]
    out = _scripted_reward(tmp_path)(prompts=["Name a colour."] * 3,
                                     completions=["class 0 red", call, [{"role": "assistant", "content": "class 1 b"}]],
                                     category=["H"] * 3)
    assert out == [1.0, None, 1.0]


def test_the_trl_reward_function_probes_an_api_judge_once_not_every_step(tmp_path):
    from engine.api import DiversityReward, build_config
    from tests.support.doubles import request_kind
    from tests.support.serve import ChatServer

    with ChatServer(ScriptedChat()) as server:
        judge = {"name": "j", "backend": "http", "model": "scripted",
                 "options": {"base_url": server.base_url, "max_retries": 1}}
        reward = DiversityReward(build_config(run_dir=str(tmp_path / "run"), judges=[judge],
                                              execution={"executor": "local"}))
        for colour in ("red", "green"):
            assert reward(prompts=[f"Name a {colour} thing."] * 3, category=["H"] * 3,
                          completions=["class 0 a", "class 1 b", "class 0 c"]) == [0.5, 1.0, 0.5]
        kinds = [request_kind(r.body["messages"]) for r in server.requests]
    assert kinds.count("probe") == 1 and kinds.count("judge") >= 2


def test_rewards_refuse_a_judge_target_other_than_the_answers(tmp_path, monkeypatch, capsys):
    # Rewards are read from the answers' classes: with judge.target: trace every reward was null (exit 0, the cause
    # unsaid); with both, the traces were judged every batch for nothing.
    from engine.api import DiversityReward
    from engine.errors import ConfigError

    groups = tmp_path / "groups.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in GROUPS))
    for target in ("trace", "both"):
        code = main(["rewards", "--config", str(write_config(tmp_path)), "--in", str(groups), "--out",
                     str(tmp_path / "r.jsonl"), "--allow-python-backends", "--set", f"judge.target={target}"])
        err = capsys.readouterr().err
        assert code == 2 and f"judge.target: {target}" in err and "set judge.target: answer" in err
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    from engine.api import load_config

    with pytest.raises(ConfigError, match="judge.target: trace"):
        DiversityReward(load_config(write_config(tmp_path), {"judge.target": "trace"}))


def test_the_share_of_unknown_rewards_is_logged_through_trls_log_metric(tmp_path, monkeypatch):
    from engine.api import UNRESOLVED_METRIC

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path)
    logged = []
    # The cat group's classes 3 and 4 never get a readable verdict: its 3 rewards are unknown, of 7.
    out = reward(prompts=["Name a colour."] * 4 + ["Suggest a name for a cat."] * 3,
                 completions=["class 0 red", "class 1 blue", "class 0 red", "class 0 red.", "class 3 Tom",
                              "class 4 Kit", "class 5 X"],
                 category=["H"] * 7, log_metric=lambda name, value: logged.append((name, value)))
    assert out[4:] == [None, None, None] and None not in out[:4]
    assert logged == [(UNRESOLVED_METRIC, pytest.approx(3 / 7))]


def test_a_prompts_image_is_compared_by_its_pixels_not_by_the_object_holding_them(tmp_path, monkeypatch):
    from PIL import Image

    from engine.method.rewards import prompt_key

    def vision_prompt(colour):  # TRL's vision-language prompts: the image inside the user message's content
        return [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (4, 4), colour)},
                                             {"type": "text", "text": "Describe the image."}]}]

    assert prompt_key(vision_prompt("red")) == prompt_key(vision_prompt("red"))  # two objects, one image
    assert prompt_key(vision_prompt("red")) != prompt_key(vision_prompt("blue"))
    assert prompt_key([{"role": "user", "content": [{"type": "image", "image": b"\x89PNG"}]}]) == \
        prompt_key([{"role": "user", "content": [{"type": "image", "image": bytearray(b"\x89PNG")}]}])

    class Opaque:  # compared by its address only: refused, not a group of its own
        pass

    with pytest.raises(ValueError, match="a prompt holds a value of type Opaque that cannot be compared by content"):
        prompt_key([{"role": "user", "content": [{"type": "image", "image": Opaque()}]}])
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path, num_generations=2)
    assert reward(prompts=[vision_prompt("red"), vision_prompt("red")], completions=["class 0 a", "class 1 b"],
                  category=["G", "G"]) == [1.0, 1.0]
    assert reward.last_rows[0]["prompt"] == "Describe the image."


def _rank(rank: int, world: int, port: int, config: str, queue) -> None:
    """One process of a two-process group, as TRL runs reward functions on several GPUs: each gets its slice."""
    import os

    import torch.distributed as dist

    from engine.api import DiversityReward

    os.environ["TASKDIV_ALLOW_PYTHON_BACKENDS"] = "1"
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        reward = DiversityReward(config, num_generations=4)
        # The global batch: three prompts x 4 generations, 6 completions per process: the second prompt's
        # generations are split 2 / 2 across the processes.
        prompts = ["Write a story opening."] * 4 + ["Name a colour."] * 4 + ["Name a fruit."] * 4
        completions = ["class 0 a", "class 0 b", "class 1 c", "class 2 d", "class 0 red", "class 1 blue",
                       "class 1 navy", "class 1 sky", "class 0 fig", "class 1 kiwi", "class 2 lime", "class 3 plum"]
        categories = ["G"] * 4 + ["H"] * 8
        mine = slice(rank * 6, rank * 6 + 6)
        try:
            queue.put((rank, reward(prompts=prompts[mine], completions=completions[mine], category=categories[mine])))
        except Exception as exc:  # reported, not left to the parent's timeout
            queue.put((rank, f"{type(exc).__name__}: {exc}"))
            raise
    finally:
        dist.destroy_process_group()


def test_several_processes_score_whole_groups_and_each_gets_its_slice(tmp_path):
    import socket

    import torch.multiprocessing as mp

    config = write_config(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_rank, args=(r, 2, port, str(config), queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    # The colour prompt scored as one group of four (alone, each process would have scored two groups of two:
    # [1, 1] and [0, 0]).
    assert results[0] == pytest.approx([2 / 3, 2 / 3, 1, 1, 1, 1 / 3])
    assert results[1] == pytest.approx([1 / 3, 1 / 3, 1, 1, 1, 1])


def test_the_trl_reward_function_reads_its_batches_as_its_own_whatever_the_configs_prompts(tmp_path, monkeypatch):
    # A config written for `rewards --in` on lm-eval files (prompts.format: lm-eval), or with a prompt size cap,
    # passed the constructor; the first reward call, after the trainer had loaded and generated, failed reading the
    # batch (in our format) with them.
    from engine.api import DiversityReward

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    for prompts in ({"source": "responses", "path": "samples.jsonl", "format": "lm-eval"},
                    {"max_prompt_chars": 5, "on_error": "fail"}):
        path = tmp_path / "c.yaml"
        path.write_text(dump_yaml({"run_dir": str(tmp_path / "run"), "generators": [JUDGE], "judges": [JUDGE],
                                   "prompts": prompts, "execution": {"executor": "local"}}))
        reward = DiversityReward(path)
        try:
            assert reward(prompts=["Name a colour."] * 3, completions=["class 0 x", "class 0 y", "class 1 z"],
                          category=["G"] * 3) == pytest.approx([0.5, 0.5, 1.0])
        finally:
            reward.close()


def test_an_empty_groups_file_and_ctrl_c_are_said_plainly(tmp_path, capsys, monkeypatch):
    import engine.cli.rewards as command

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    argv = ["rewards", "--config", str(write_config(tmp_path)), "--in", str(empty), "--out", str(tmp_path / "o.jsonl"),
            "--allow-python-backends", "--quiet"]
    assert main(argv) == 2
    assert f"{empty}: empty, all rows skipped or none selected" in capsys.readouterr().err

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "cmd_rewards", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_the_trl_reward_function_checks_its_models_when_it_is_made(tmp_path, monkeypatch):
    # Fail before spending: a trainer builds its reward functions before it loads its model and generates, so a bad
    # judge is refused there, not at the first reward call.
    from engine.api import DiversityReward, build_config
    from engine.errors import ConfigError

    api = {"name": "api", "backend": "http", "model": "m",
           "options": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "TASKDIV_TEST_MISSING_KEY"}}
    monkeypatch.delenv("TASKDIV_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.api_key_env: .*TASKDIV_TEST_MISSING_KEY"):
        DiversityReward(build_config(run_dir=str(tmp_path / "run"), judges=[api]))
    misspelt = {**api, "options": {"base_url": "http://127.0.0.1:9/v1", "timeout": 5}}
    with pytest.raises(ConfigError, match=r"judges\[0\]\.options\.timeout: .*did you mean 'timeout_s'"):
        DiversityReward(build_config(run_dir=str(tmp_path / "run"), judges=[misspelt]))
    assert not (tmp_path / "run").exists()


def test_the_trl_reward_function_loads_its_judges_once_for_every_batch(tmp_path, monkeypatch):
    # Each batch was a run that loaded the judges, classifier and embedder and stopped them at its end (an embedded
    # Ray started and shut down too): at every training step. One executor now serves every batch until close().
    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    reward = _scripted_reward(tmp_path)
    for k in range(3):
        out = reward(prompts=[f"Name colour {k}."] * 3, completions=["class 0 red", "class 0 red.", "class 1 b"],
                     category=["H"] * 3)
        assert out == pytest.approx([0.5, 0.5, 1.0])
    loads = reward._executor.load_seconds()
    assert loads and all(len(times) == 1 for times in loads.values()), loads
    executor = reward._executor
    reward.close()
    assert reward._executor is None and not executor._hosts
    # A later batch starts a new one.
    assert reward(prompts=["Name a fruit."] * 2, completions=["class 0 fig", "class 1 kiwi"],
                  category=["H"] * 2) == pytest.approx([1.0, 1.0])
    reward.close()


def test_a_second_reward_function_on_the_run_directory_never_swaps_its_batch_for_the_first_ones(tmp_path,
                                                                                               monkeypatch):
    # The batch was written into the run directory before the run took its lock: a second reward function's step,
    # arriving while the first's run held the lock, overwrote the batch (then failed at the lock), and the first
    # returned the rewards of the second's completions as its own.
    import engine.execution.pipeline as pipeline_module
    from engine.api import DiversityReward, load_config
    from engine.errors import RunDirError

    monkeypatch.setenv("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")
    first, second = (DiversityReward(load_config(write_config(tmp_path))) for _ in range(2))
    prompts, completions = ["Write a story opening."] * 4, ["class 0 a", "class 0 b", "class 1 c", "class 2 d"]
    real, refused = pipeline_module.preflight, []

    def preflight(*args, **kwargs):  # the first's run holds the lock here: the second's step arrives now
        if not refused:
            with pytest.raises(RunDirError, match="in use by another run"):
                second(prompts=["Name a colour."] * 4, completions=["class 0 x"] * 4, category=["G"] * 4)
            refused.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "preflight", preflight)
    out = first(prompts=prompts, completions=completions, category=["G"] * 4)
    assert refused and out == pytest.approx([2 / 3, 2 / 3, 1, 1])
    assert [r["response"] for r in first.last_rows] == completions


@pytest.mark.parametrize("version, parsed", [("5.3.0", True), ("5.0.0", True), ("5.0.0.dev0", False),
                                             ("4.57.1", False)])
def test_completions_are_taken_as_parsed_where_trl_parses_them(monkeypatch, version, parsed):
    # TRL parses conversational completions with transformers >= 5.0.0 by packaging's order: a 5.0.0.dev0 is before
    # it (TRL hands the decoded text unparsed), and was taken as parsed (the major number alone was read).
    import transformers

    from engine.method.rewards import trainer_parses_completions

    class Tokenizer:
        response_template = {"x-regex": "…"}

    class Trainer:
        processing_class = Tokenizer()

    monkeypatch.setattr(transformers, "__version__", version)
    assert trainer_parses_completions(Trainer()) is parsed
