"""Shared fixtures: a real local Ray cluster for the session, a run directory, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent
KIBS_MC = [sys.executable, "-m", "kibs_mc"]


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (2 CPUs) shared by the tests of this session."""
    import ray

    from kibs_mc.run.executor.ray import WORKER_ENV

    if not ray.is_initialized():
        ray.init(
            num_cpus=2, include_dashboard=False, runtime_env={"env_vars": WORKER_ENV}, logging_level="WARNING"
        )
    yield ray
    ray.shutdown()


def run_cli(
    *overrides: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m kibs_mc`` with overrides in ``cwd``; returns the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("RAY_ADDRESS", None) if env is None or "RAY_ADDRESS" not in env else None
    return subprocess.run(
        [*KIBS_MC, *overrides], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def kill_after_parts(*overrides: str, cwd: Path, run_dir: Path, parts: int = 2, timeout: float = 120) -> None:
    """Start ``python -m kibs_mc`` and SIGKILL it (no clean-up of any kind) once ``run_dir``
    holds ``parts`` chunk parts, as a crash or an OOM kill would; the run must still be running
    then, or the resume that follows would test nothing."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [*KIBS_MC, *overrides], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while len(list((run_dir / "chunks").glob("part-*.parquet"))) < parts and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert running, f"the run ended (rc={proc.returncode}) before it could be killed after {parts} parts"


@pytest.fixture
def cli(tmp_path):
    """``cli(*overrides)`` runs kibs-mc in a fresh temporary working directory."""

    def _run(*overrides: str, **kw):
        return run_cli(*overrides, cwd=kw.pop("cwd", tmp_path), **kw)

    return _run


#: The slowest files (``pytest --durations``: Slurm jobs, Ray clusters, runs killed and resumed,
#: multi-process runs), slowest first and scheduled first: `make test` hands whole files to its
#: workers as they free up (`--dist loadfile --no-loadscope-reorder`; a worker takes its next
#: file when two tests of its current one are left), so a long file started last would leave
#: one worker running alone at the end.
SLOWEST_FIRST = [
    "test_slurm.py",
    "test_resume.py",
    "test_hostile.py",
    "test_terminal.py",
    "test_distributed.py",
    "test_one_writer.py",
    "test_executor.py",
    "test_calibrate.py",
    "test_robustness.py",
    "test_kind_contract.py",
    "test_executor_contract.py",
    "test_user_guide.py",
    "test_kibs_model.py",
    "test_pipeline.py",
    "test_decision_page.py",
    "test_mlflow_server.py",
    "test_executor_auto.py",
    "test_tracking_store.py",
    "test_disk.py",
    "test_figures.py",
    "test_compare.py",
    "test_compaction.py",
    "test_kibs_mechanisms.py",
]


def pytest_sessionstart(session):
    """Compile the models' Numba kernels once, before any test or xdist worker starts. On a cold
    on-disk cache (a fresh clone) every process that needs a kernel before one has finished
    compiling it compiles it again: the KIBS model's kernels take ~40 s of CPU, and the suite
    starts several such processes at once (Slurm array jobs, both workers, Ray workers).
    A warm cache makes this ~1 s."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller has compiled them
    from kibs_mc.config import load_config
    from kibs_mc.models import get_model

    # all_four over 13 months reaches every KIBS kernel (instruments, projects, exits, entry).
    for overrides in (
        ["cluster=small", "governance=all_four", "model.steps=13"],
        ["model=cowan_jonard", "model.agents=30"],
    ):
        config = load_config(overrides)
        get_model(config.model.name).simulate(config, 1)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file kept


def cut_run(run_dir: Path, dest: Path, below: int) -> Path:
    """A copy of a finished run directory as if the run had been killed once replicates
    ``0..below-1`` of each scenario were written: later rows leave the chunk parts, whose
    metadata (plan fingerprint, chunk keys) stays true to what they hold. A compacted run's
    final files are first made a chunk part again (as a resume that computes does)."""
    from kibs_mc.run.store import ResultStore, write_parquet

    shutil.copytree(run_dir, dest)
    ResultStore(dest).uncompact()
    for part in (dest / "chunks").glob("*.parquet"):
        if "timeseries" in part.name or "errors" in part.name:
            continue
        kept = pl.read_parquet(part).filter(pl.col("replicate") < below)
        if kept.height:
            meta = {k: v for k, v in pl.read_parquet_metadata(part).items() if k.startswith("kibs_mc.")}
            meta["kibs_mc.chunks"] = json.dumps(sorted(kept["_chunk"].unique().to_list()))
            write_parquet(kept, part, meta)  # with its new content checksum
        else:
            part.unlink()
    return dest
