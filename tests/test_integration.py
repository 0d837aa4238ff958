"""The real pipeline end to end: the embedded CPU model, the packaged embedder, and a real local Ray."""

from engine.execution.executor import RayExecutor
from tests.support.real_pipeline import check_two_prompt_run, run_two_prompts

LOCAL = {"name": "smollm2-135m", "backend": "local", "model": "smollm2-135m", "batch_size": 64}


def test_real_pipeline_on_two_prompts(ray_session, tmp_path):
    result = run_two_prompts(tmp_path / "run", LOCAL, RayExecutor())
    check_two_prompt_run(tmp_path / "run", result)
    # The embedded default's judge is the 135M model: the report must say its judgments mean nothing.
    assert "not meaningful" in (tmp_path / "run" / "report.md").read_text()
