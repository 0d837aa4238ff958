"""Loaders for the public benchmarks the paper draws its prompts from, one module per source.

Each loader is ``load(path, *, on_error="fail", report=None) -> list[Prompt]``: it reads the benchmark's own file
format, maps its rows to `Prompt`s (gold category and answer where the source implies them), and reports a bad row
as an InputError naming the file, the line and the source's own field name, or, with on_error="skip", records it
in the LoadReport and goes on. `engine.inputs.loaders.paper.load_paper` samples the paper's 344-prompt mix from them.
"""

from __future__ import annotations

from typing import Callable

from engine.inputs.loaders import community_alignment, macgyver, math500, noveltybench, simpleqa, wildbench
from engine.inputs.prompts import Prompt

Loader = Callable[..., list[Prompt]]

LOADERS: dict[str, Loader] = {
    "simpleqa": simpleqa.load,
    "math500": math500.load,
    "macgyver": macgyver.load,
    "noveltybench": noveltybench.load,
    "community_alignment": community_alignment.load,
    "wildbench": wildbench.load,
}

__all__ = ["LOADERS", "Loader"]
