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
