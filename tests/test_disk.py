"""Disk: the up-front estimate counts what a run writes, and a file system that stops taking
results mid-run ends the run with one message naming the directory, exit 1 and the resume
command; resume then gives the same results as an undisturbed run."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.models import get_model
from kibs_mc.run.limits import FIXED_OUTPUT_BYTES, estimate
from kibs_mc.run.plan import build_scenarios
from tests.conftest import run_cli

KIBS = [
    "cluster=small",
    "model.steps=60",
    "tracking=none",
    "executor=serial",
    "replicates=20",
    "executor.chunk_size=20",
]


def test_the_disk_estimate_covers_the_results_and_the_rest(tmp_path):
    result = run_experiment(load_config(KIBS), KIBS, tmp_path / "run")
    run_dir = tmp_path / "run"
    results = [
        *(run_dir / "chunks").glob("*.parquet"),
        run_dir / "replicates.parquet",
        run_dir / "timeseries.parquet",
    ]  # grow with the replicates
    rows_and_series = sum(p.stat().st_size for p in results)
    other = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file() and p not in results)
    config = load_config(KIBS)
    scenarios = build_scenarios(config, KIBS)
    model = get_model("kibs")
    est = estimate([sc.config for sc in scenarios], len(model.outcomes) + len(model.accounts), 20, 1)
    assert result.rows.height == 20
    assert est.disk_bytes - FIXED_OUTPUT_BYTES >= rows_and_series  # parts and merged files
    assert FIXED_OUTPUT_BYTES >= other  # figures, report, summaries, config, plan


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill, as ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("limit,where", [(6500, "chunks"), (50000, "run")])
def test_a_file_system_that_refuses_results_ends_the_run_with_one_message(tmp_path, limit, where):
    """6 500 bytes: the first chunk part is refused (plan.json, ~5.3 KB, and config.yaml are
    written; the part's files are 7-40 KB); 50 000: the figures are (every Parquet file of this
    run is smaller: replicates.parquet, with its money ledger, about 36 KB)."""
    run_dir = tmp_path / "run"
    args = [*KIBS, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "kibs_mc", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = [line for line in proc.stderr.splitlines() if line.startswith("kibs-mc:")]
    assert len(message) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    directory = run_dir / "chunks" if where == "chunks" else run_dir
    assert f"cannot write results in {directory}: File too large" in message[0]
    assert f"resume=true hydra.run.dir={run_dir}" in message[0]
    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    clean = run_experiment(load_config(KIBS), KIBS, tmp_path / "clean").rows
    assert pl.read_parquet(run_dir / "replicates.parquet").equals(clean)
    assert (run_dir / "report.html").exists() and (run_dir / "timeseries.png").exists()
