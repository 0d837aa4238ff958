"""explore.html at scale: how long a headless Chromium takes to first paint the explorer of 1,000 to 20,000 groups.

The page's goal is a first render within 2 s for 10,000 groups on this 2-core machine (it shows one page of 50 rows,
whatever the total). Timing a browser on a shared 2-core machine is noisy, so the number lives here, not in a unit
test (tests/engine/report/test_explore.py checks that 10,000 groups render, paged, without a bound on the time).

The groups are one scripted run's (tests/support doubles, two judges), repeated under new ids as the test does; the
page records its own first render (`data-first-render-ms`: performance.now() when the first page of rows is drawn).
Each size is rendered `--repeat` times; the table gives the best and the median, and the ratio to the 1,000-group
page (the rest of the cost grows with the data the page parses).

    .venv/bin/python benchmarks/explore_render.py            # 1k, 5k, 10k, 20k groups, 3 renders each

Needs Debian's `chromium` on PATH. Prints the machine's load before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TASKDIV_ALLOW_PYTHON_BACKENDS", "1")

GOAL_MS = 2000


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("no Chromium on PATH: apt-get install chromium")


def first_render_ms(binary: str, page: Path, profile: Path) -> tuple[int, int]:
    out = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          "--virtual-time-budget=5000", f"--user-data-dir={profile}", "--dump-dom",
                          page.resolve().as_uri()], capture_output=True, text=True, timeout=300)
    ms = re.search(r'data-first-render-ms="(\d+)"', out.stdout)
    rows = len(re.findall(r'<tr class="row', out.stdout))
    if not ms:
        sys.exit(f"the page recorded no first render:\n{out.stderr[-2000:]}")
    return int(ms.group(1)), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000,20000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from engine.report.explore import explorer_data, render_explorer
    from tests.support.runs import SCRIPTED, make_config, run

    binary = chromium()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = make_config(tmp, judges=[SCRIPTED, {**SCRIPTED, "name": "scripted-b"}],
                          strategies=["temperature", "regen_general"])
        data = explorer_data(dict(run(cfg).tables))
        base = data["groups"]
        rows = []
        for size in [int(s) for s in args.sizes.split(",")]:
            many = [{**base[k % len(base)], "id": f"{k}|{base[k % len(base)]['id']}"} for k in range(size)]
            page = tmp / f"explore-{size}.html"
            page.write_text(render_explorer({**data, "groups": many, "total": size, "shown": size}, str(size)))
            times, shown = [], 0
            for k in range(args.repeat):
                ms, shown = first_render_ms(binary, page, tmp / f"profile-{size}-{k}")
                times.append(ms)
            rows.append((size, page.stat().st_size, min(times), statistics.median(times), shown))
    load_after = os.getloadavg()
    base_ms = rows[0][3]
    print(f"Chromium: {subprocess.run([binary, '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"{os.cpu_count()} CPUs; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print()
    print("| groups | page size | first render, best | median | × 1k-group page | rows drawn | goal (10k ≤ 2 s) |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for size, nbytes, best, median, shown in rows:
        goal = ("met" if median <= GOAL_MS else "not met") if size == 10_000 else ""
        print(f"| {size:,} | {nbytes / 1e6:.1f} MB | {best} ms | {median:.0f} ms | {median / base_ms:.1f}× | "
              f"{shown} | {goal} |")


if __name__ == "__main__":
    main()
