"""The batch paths on a real one-node Slurm (``tests/slurm.py``): the sbatch template (a Ray
cluster inside one allocation) gives the serial run's results, survives ``scancel`` plus the
same ``sbatch`` again and a requeue, and leaves no process of the job behind; Hydra multirun
with the submitit launcher runs one array task per job, each with its own run directory,
MLflow run and resume."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kibs_mc.run.lock import lock_run_dir, unlock_run_dir
from kibs_mc.run.store import COMPACTED
from tests import slurm
from tests.conftest import run_cli
from tests.ray_nodes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not slurm.installed(), reason=slurm.NOT_INSTALLED)]

#: Ray CPUs of the job: the node's, at most two (the tests' clusters stay small).
CPUS = min(2, os.cpu_count() or 1)
#: The job activates the virtual environment that runs these tests.
VENV = Path(sys.prefix) if (Path(sys.prefix) / "bin" / "activate").exists() else None

#: Thirty Cowan-Jonard chunks of about a quarter of a second each: a few seconds of work on two
#: CPUs, long enough to be interrupted after its first results are on disk.
SLOW = [
    "model=cowan_jonard",
    "model.agents=100",
    "model.degree=4",
    "model.tolerance=0.0",
    "model.max_meetings=1000000",
    "tracking=none",
    "replicates=60",
    "executor.chunk_size=2",
]
SLOW_CHUNKS = 30
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Slurm for this module, stopped (its jobs cancelled) at the end."""
    directory = tmp_path_factory.mktemp("slurm")
    instance = slurm.start(directory)
    yield instance
    slurm.stop(directory)


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory) -> Path:
    """The SLOW experiment run serially, uninterrupted."""
    where = tmp_path_factory.mktemp("reference")
    done = run_cli(*SLOW, "executor=serial", f"hydra.run.dir={where / 'run'}", cwd=where)
    assert done.returncode == 0, done.stderr[-2000:]
    return where / "run"


def job_env(tmp_path: Path, run_dir: Path) -> dict[str, str]:
    env = {"RUN_DIR": str(run_dir), "RAY_PORT": str(free_port())}
    if VENV is not None:
        env["VENV"] = str(VENV)
    return env


def sbatch_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--nodes=1",
        f"--cpus-per-task={CPUS}",
        f"--output={tmp_path}/job-%j.out",
        "--open-mode=append",
        *extra,
        str(slurm.SBATCH_TEMPLATE),
    ]


def wait_for_parts(run_dir: Path, job: int, cluster: slurm.LocalSlurm, at_least: int = 1) -> None:
    deadline = time.monotonic() + 240
    while len(list((run_dir / "chunks").glob("part-*[0-9a-f].parquet"))) < at_least:
        assert time.monotonic() < deadline, f"job {job} wrote no results within 240 s"
        assert cluster.state(job) in ("PENDING", "RUNNING", "CONFIGURING"), (
            f"job {job} ended before it was interrupted: {cluster.state(job)}"
        )
        time.sleep(0.1)


def wait_until_released(cluster: slurm.LocalSlurm, job: int) -> None:
    """Until the node is idle again: slurmd has ended the job and cleaned up after it."""
    deadline = time.monotonic() + 120
    while True:
        nodes = cluster.run("sinfo", "-h", "-N", "-o", "%t").stdout.split()
        if nodes and all(s == "idle" for s in nodes):
            return
        assert time.monotonic() < deadline, f"job {job} still holds the node after 120 s: {nodes}"
        time.sleep(0.2)


def assert_nothing_left(cluster: slurm.LocalSlurm, job: int, within: float = 60) -> None:
    """No process of ``job`` is left. One just killed (Slurm's SIGKILL after the job, or the
    script's) can take a moment to go on a loaded machine, so this waits up to ``within``
    seconds; a process left behind stays, and fails the test however long it waits."""
    deadline = time.monotonic() + within
    while (left := cluster.job_pids(job)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of job {job} still running: " + "; ".join(
        f"{p}: {slurm.process_title(p)[:120]}" for p in left
    )


def assert_same_results(run_dir: Path, reference: Path) -> None:
    for name in ("replicates.parquet", "timeseries.parquet", "summary.parquet"):
        assert_frame_equal(pl.read_parquet(run_dir / name), pl.read_parquet(reference / name))


def one_line(text: str) -> str:
    """``text`` with every run of white space made one blank (the terminal output wraps long lines)."""
    return " ".join(text.split())


def job_log(tmp_path: Path, job: int) -> str:
    return one_line((tmp_path / f"job-{job}.out").read_text())


def test_scancel_mid_run_then_the_same_sbatch_resumes_to_the_serial_results_leaving_no_process(
    cluster, tmp_path, slow_reference
):
    """The template's first job (no results yet: no resume) is cancelled once results are on
    disk; the same sbatch again (resume=true) ends normally with the serial run's results. No
    process of either job is left: after a scancel, and after a job that ended by itself."""
    run_dir = tmp_path / "run"
    env = job_env(tmp_path, run_dir)
    job = cluster.submit(*sbatch_args(tmp_path), *SLOW, cwd=tmp_path, env=env)
    wait_for_parts(run_dir, job, cluster)
    cluster.run("scancel", str(job))
    cluster.wait_state(job, ("CANCELLED",))
    wait_until_released(cluster, job)
    assert_nothing_left(cluster, job)
    assert not (run_dir / "replicates.parquet").exists()  # it really was interrupted

    again = cluster.submit(*sbatch_args(tmp_path), *SLOW, cwd=tmp_path, env=env)
    cluster.wait_state(again, ENDED)
    log = job_log(tmp_path, again)
    assert cluster.state(again) == "COMPLETED", log[-3000:]
    assert "Ray up after" in log  # it ran on the job's own Ray cluster
    found = re.search(r"chunks: (\d+) computed, (\d+) reused", log)
    assert found, log[-3000:]
    computed, reused = map(int, found.groups())
    assert reused > 0 and computed > 0 and computed + reused == SLOW_CHUNKS, found.group(0)
    assert_same_results(run_dir, slow_reference)
    wait_until_released(cluster, again)
    assert_nothing_left(cluster, again)


def test_a_requeued_job_continues_to_the_uninterrupted_results(cluster, tmp_path, slow_reference):
    run_dir = tmp_path / "run"
    job = cluster.submit(
        "--requeue", *sbatch_args(tmp_path), *SLOW, cwd=tmp_path, env=job_env(tmp_path, run_dir)
    )
    wait_for_parts(run_dir, job, cluster)
    cluster.run("scontrol", "requeue", str(job))
    # Slurm holds a requeued batch job for 120 s before it may start again; release it now.
    cluster.wait_state(job, ("PENDING",))
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    cluster.wait_state(job, ENDED, timeout=300)
    log = job_log(tmp_path, job)  # both runs of the job append to one log
    assert cluster.state(job) == "COMPLETED", log[-3000:]
    assert cluster.restarts(job) >= 1
    found = re.findall(r"chunks: (\d+) computed, (\d+) reused", log)
    assert len(found) == 1, log[-3000:]  # the first run never finished
    computed, reused = map(int, found[0])
    assert reused > 0 and computed + reused == SLOW_CHUNKS, found
    assert_same_results(run_dir, slow_reference)
    wait_until_released(cluster, job)
    assert_nothing_left(cluster, job)


def array_task_logs(sweep: Path) -> dict[int, str]:
    """Array task index -> its stdout and stderr, from the submitit folder of a sweep."""
    logs: dict[int, str] = {}
    for path in sorted((sweep / ".submitit").glob("*/*_log.*")):
        # <array job>_<task>/, or <job>/ when a one-job multirun is submitted as a plain job
        task = int(path.parent.name.rsplit("_", 1)[1]) if "_" in path.parent.name else 0
        logs[task] = logs.get(task, "") + " " + one_line(path.read_text())
    return logs


def test_hydra_multirun_with_the_submitit_launcher_runs_each_job_as_an_array_task(cluster, tmp_path):
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher",
        reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]')",
    )
    import mlflow

    sweep, db = tmp_path / "sweep", tmp_path / "mlflow.db"
    jobs = [
        "cluster=small",
        "replicates=4",
        "figures=false",
        "executor=serial",
        f"tracking.uri=sqlite:///{db}",
    ]
    multirun = [
        "-m",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        "governance.information=0,1",
        *jobs,
    ]
    # The store exists before the array's tasks log to it at once (creating an SQLite store from
    # several processes at the same moment is MLflow's own race, not this test's subject).
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment("kibs-mc")
    done = run_cli(*multirun, cwd=tmp_path, env=cluster.env)
    assert done.returncode == 0, done.stderr[-3000:]
    # One Slurm job array, one task per multirun job.
    scripts = list((sweep / ".submitit").glob("*/*_submission.sh"))
    assert len(scripts) == 1 and "#SBATCH --array=0-1" in scripts[0].read_text()
    logs = array_task_logs(sweep)
    assert sorted(logs) == [0, 1]
    for task, log in logs.items():
        assert "chunks: 4 computed, 0 reused" in log, log[-3000:]
        assert f"results: {sweep / str(task)}" in log
    # Each job's run directory holds what a laptop run of the same overrides writes.
    laptop = run_cli(
        "governance.information=1",
        *jobs[:-1],
        "tracking=none",
        f"hydra.run.dir={tmp_path / 'laptop'}",
        cwd=tmp_path,
    )
    assert laptop.returncode == 0, laptop.stderr[-2000:]
    assert_same_results(sweep / "1", tmp_path / "laptop")
    first = {n: pl.read_parquet(sweep / str(n) / "replicates.parquet") for n in (0, 1)}
    assert not first[0].equals(first[1])  # the two jobs did differ
    # Each job is its own MLflow parent run, pointing at its run directory.
    runs = mlflow.search_runs(
        experiment_names=["kibs-mc"], filter_string="tags.kibs_mc.experiment = 'single'"
    )
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert sorted(parents["tags.kibs_mc.run_dir"]) == [str(sweep / "0"), str(sweep / "1")]

    # Resume: job 1's array task lost everything (e.g. pre-empted before its first results);
    # the same multirun with resume=true reuses job 0's chunks and recomputes job 1's.
    for path in [*(sweep / "1").glob("*.parquet"), sweep / "1" / COMPACTED]:
        path.unlink()
    assert not (sweep / "1" / "chunks").exists()  # compacted: the final files were the record
    # A third job that fails when it runs (its run directory is in use by another run: nothing
    # the up-front check of the overrides can see) fails the multirun: its status would
    # otherwise stay in its array task. The other two jobs' results are there all the same.
    (sweep / ".submitit").rename(tmp_path / "first-submitit")
    lock_run_dir(sweep / "2")  # this test process is the other run
    try:
        again = run_cli(
            *[a.replace("=0,1", "=0,1,0.5") for a in multirun], "resume=true", cwd=tmp_path, env=cluster.env
        )
    finally:
        unlock_run_dir(sweep / "2")
    assert again.returncode != 0
    assert "ended with exit status 2" in again.stderr, again.stderr[-3000:]
    logs = array_task_logs(sweep)
    assert f"run directory {sweep / '2'} is in use by another kibs-mc run" in logs[2], logs[2][-3000:]
    assert "chunks: 0 computed, 4 reused" in logs[0], logs[0][-3000:]
    assert "chunks: 4 computed, 0 reused" in logs[1], logs[1][-3000:]
    for n in (0, 1):
        assert_frame_equal(pl.read_parquet(sweep / str(n) / "replicates.parquet"), first[n])
