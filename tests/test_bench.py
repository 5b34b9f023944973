"""scripts/bench.py keeps its contract: JSON lines with name, value and unit (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run_bench(*args: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_bench_cj_prints_meetings_per_second_as_json():
    lines = run_bench(
        "cj",
        "--agents",
        "20",
        "--degree",
        "4",
        "--categories",
        "3",
        "--meetings",
        "1000",
        "--replicates",
        "2",
    )
    assert [d["name"] for d in lines] == ["cj_meetings_per_s"]
    figure = lines[0]
    assert figure["unit"] == "meetings/s" and figure["value"] > 0
    assert figure["meetings"] == 2000 and figure["agents"] == 20
    assert {"name", "value", "unit"} <= figure.keys()


#: Starts a grandchild that burns CPU for a moment and outlives its parent (as Ray's daemons
#: outlive the driver that started them), then exits at once.
ORPHANING_PARENT = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c",
    "import time\\nend = time.thread_time() + 1.0\\nwhile time.thread_time() < end: pass"])
"""


def test_run_tree_counts_the_cpu_of_descendants_that_outlive_the_run():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench
    finally:
        sys.path.remove(str(REPO / "scripts"))
    run = bench.run_tree([sys.executable, "-c", ORPHANING_PARENT], dict(bench.child_env()), REPO)
    # the parent itself exits at once (a few hundredths of a CPU second): the rest is the
    # orphan's 1 s, read four times a second (its last quarter second may be missed)
    assert run.cpu_s >= 0.7
    assert run.by_class["driver"] < 0.5


def test_bench_pipeline_refuses_an_unknown_run_with_exit_2():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "pipeline", "--runs", "ray_two"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "'ray_two': allowed: serial, auto, ray_<n>cpu" in done.stderr
