"""Real multi-node Ray: a head and a second node started with `ray start`, kibs-mc attached via
``executor.address`` and via ``ray job submit``; faults (worker processes and a whole node
killed, the driver SIGKILLed) leave the final replicates.parquet equal to the serial oracle's.

Slow (~1-2 min on 2 cores): it starts real Ray processes. It runs in ``make test``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from tests.ray_nodes import RAY, RayNodes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SMALL = ["model=cowan_jonard", "model.agents=60", "model.degree=4", "model.categories=5", "tracking=none"]
#: Replicates of ~50 ms each (no convergence: tolerance 0, a fixed number of meetings), in
#: chunks of 4, so tasks last ~0.2 s and a fault lands while chunks are in flight.
SLOW = [
    "model=cowan_jonard",
    "model.agents=100",
    "model.degree=4",
    "model.tolerance=0.0",
    "model.max_meetings=1000000",
    "tracking=none",
    "replicates=96",
    "executor.chunk_size=4",
]


@pytest.fixture(scope="module")
def ray_nodes():
    c = RayNodes()
    try:
        c.start_head(num_cpus=1)
        c.wait_for_cpus(1)
        c.join_node(num_cpus=1)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def slow_oracle(tmp_path_factory) -> pl.DataFrame:
    return oracle(tmp_path_factory.mktemp("oracle"), SLOW)


def oracle(tmp_path: Path, overrides: list[str]) -> pl.DataFrame:
    """The serial executor's replicates, in this process."""
    args = [*overrides, "executor=serial"]
    result = run_experiment(load_config(args), args, tmp_path / "serial")
    return pl.read_parquet(result.run_dir / "replicates.parquet")


def kibs_mc(ray_nodes: RayNodes, overrides: list[str], cwd: Path) -> subprocess.Popen:
    """The CLI as a driver attached to the Ray nodes."""
    args = [sys.executable, "-m", "kibs_mc", *overrides, f"executor.address={ray_nodes.address}"]
    return subprocess.Popen(
        args,
        cwd=cwd,
        env={**ray_nodes.client_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def test_address_and_job_submit_match_the_serial_executor(ray_nodes, tmp_path):
    overrides = [*SMALL, "experiment=cj_docking", "replicates=10", "executor.chunk_size=3"]
    want = oracle(tmp_path, overrides)
    finish(kibs_mc(ray_nodes, [*overrides, f"hydra.run.dir={tmp_path / 'address'}"], tmp_path))
    assert pl.read_parquet(tmp_path / "address" / "replicates.parquet").equals(want)
    # `ray job submit`: the same CLI as the job's entrypoint, RAY_ADDRESS set by Ray.
    ray_nodes.wait_for_dashboard()
    # The dashboard answers before its job agent has registered; until then Ray refuses the
    # submission ("No available agent to submit job, please try again later"): retry that only.
    deadline = time.monotonic() + 120
    while True:
        job = subprocess.run(
            [
                RAY,
                "job",
                "submit",
                f"--address={ray_nodes.dashboard_url}",
                "--",
                sys.executable,
                "-m",
                "kibs_mc",
                *overrides,
                f"hydra.run.dir={tmp_path / 'job'}",
            ],
            env=ray_nodes.client_env(),
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        if "No available agent to submit job" not in job.stderr + job.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    assert pl.read_parquet(tmp_path / "job" / "replicates.parquet").equals(want)


def test_killed_worker_processes_lose_nothing(ray_nodes, tmp_path, slow_oracle):
    want = slow_oracle
    proc = kibs_mc(ray_nodes, [*SLOW, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    killed = []
    for _ in range(3):  # SIGKILL a worker in the middle of a chunk, three times
        wait_for(lambda: proc.poll() is not None or ray_nodes.task_pids(), what="a running chunk")
        pids = ray_nodes.task_pids()
        if not pids:
            break
        time.sleep(0.1)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])
        time.sleep(0.3)
    out = finish(proc)
    assert killed, out
    assert pl.read_parquet(tmp_path / "run" / "replicates.parquet").equals(want)


def test_driver_sigkill_then_resume_reuses_completed_chunks(ray_nodes, tmp_path, slow_oracle):
    want = slow_oracle
    run_dir = tmp_path / "run"
    args = [*SLOW, f"hydra.run.dir={run_dir}"]
    proc = kibs_mc(ray_nodes, args, tmp_path)
    wait_for(lambda: len(list((run_dir / "chunks").glob("part-*.parquet"))) >= 2, what="two parts")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run_dir / "chunks").glob("*.parquet")}
    for part in parts:  # every part left by the killed driver is complete Parquet
        pl.read_parquet(part)
    done = pl.concat([pl.read_parquet(p, columns=["_chunk"]) for p in parts])["_chunk"].n_unique()
    assert 0 < done < 24
    out = finish(kibs_mc(ray_nodes, [*args, "resume=true", "keep_parts=true"], tmp_path))  # parts stay
    assert f"chunks: {24 - done} computed, {done} reused" in out, out[-2000:]
    for part, stamp in parts.items():  # reused, not rewritten
        assert (part.stat().st_ino, part.stat().st_mtime_ns) == stamp
    assert not list(run_dir.rglob("*.tmp"))
    assert pl.read_parquet(run_dir / "replicates.parquet").equals(want)


def test_killed_worker_node_loses_nothing(ray_nodes, tmp_path, slow_oracle):
    """Last in the module: the second node dies and does not come back."""
    want = slow_oracle
    node = ray_nodes.nodes[1]
    proc = kibs_mc(ray_nodes, [*SLOW, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    wait_for(
        lambda: proc.poll() is not None or ray_nodes.task_pids(node=node),
        what="a chunk running on the second node",
    )
    assert proc.poll() is None
    ray_nodes.kill_node(node)
    out = finish(proc)
    assert pl.read_parquet(tmp_path / "run" / "replicates.parquet").equals(want), out[-2000:]
