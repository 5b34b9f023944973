"""One writer per run directory, and a Ctrl-C that stops a run: exit 130, every completed chunk
kept, no replicate recorded as failed, and resume then equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.run.lock import lock_run_dir, unlock_run_dir
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

#: About 0.15 s per replicate on one core, 15 chunks: a SIGINT after the first part lands
#: while the kernels run.
LONG = [
    "cluster=small",
    "model.steps=600",
    "tracking=none",
    "executor=serial",
    "replicates=200",
    "executor.chunk_size=2",
    "figures=false",
]


def test_a_second_run_into_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    lock_run_dir(run_dir)  # this test process is the run holding it
    try:
        proc = run_cli(
            "model=cowan_jonard",
            "model.agents=60",
            "model.degree=4",
            "tracking=none",
            "executor=serial",
            "replicates=2",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
        )
    finally:
        unlock_run_dir(run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"is in use by another kibs-mc run (pid {os.getpid()} on" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / ".hydra").exists() and not (run_dir / "chunks").exists()


def test_deleting_the_lock_file_by_hand_does_not_let_a_second_writer_in(tmp_path):
    run_dir = tmp_path / "run"
    lock_run_dir(run_dir)
    try:
        (run_dir / ".kibs-mc.lock").unlink()  # as a user cleaning up "stale" files would
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from kibs_mc.run.lock import lock_run_dir; lock_run_dir({str(run_dir)!r})",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        unlock_run_dir(run_dir)
    assert proc.returncode != 0 and "is in use by another kibs-mc run" in proc.stderr, proc.stderr[-2000:]


def test_the_lock_is_held_during_a_run_and_released_after_it(tmp_path, monkeypatch):
    from kibs_mc.run import store

    seen = []
    real_flush = store.ResultStore.flush

    def flush(self):
        if self._buffer:  # while results are written, another writer is refused
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from kibs_mc.run.lock import "
                    f"lock_run_dir; lock_run_dir({str(self.run_dir)!r})",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            seen.append(proc.returncode != 0 and "in use by another kibs-mc run" in proc.stderr)
        real_flush(self)

    monkeypatch.setattr(store.ResultStore, "flush", flush)
    args = [
        "model=cowan_jonard",
        "model.agents=60",
        "model.degree=4",
        "tracking=none",
        "executor=serial",
        "replicates=2",
    ]
    run_experiment(load_config(args), args, tmp_path / "run")
    assert seen and all(seen)
    lock_run_dir(tmp_path / "run")  # free again once the run is over
    unlock_run_dir(tmp_path / "run")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pl.DataFrame:
    """The LONG run's replicates, uninterrupted: what every stopped and resumed run must equal."""
    return run_experiment(load_config(LONG), LONG, tmp_path_factory.mktemp("clean") / "run").rows


@pytest.mark.parametrize(
    "sig,executor,status,says",
    [
        (signal.SIGINT, "serial", 130, "interrupted"),
        (signal.SIGTERM, "serial", 143, "terminated (SIGTERM)"),
        (signal.SIGTERM, "ray", 143, "terminated (SIGTERM)"),  # ray.init's own SIGTERM handler is undone
    ],
)
def test_ctrl_c_or_sigterm_stops_a_run_and_resume_completes_it(
    tmp_path, uninterrupted, sig, executor, status, says
):
    """SIGTERM is what kill, Slurm's scancel and a job's time limit send: handled as Ctrl-C."""
    run_dir = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kibs_mc",
            *[a for a in args if a != "executor=serial"],
            f"executor={executor}",
        ],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list((run_dir / "chunks").glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert f"{says}; completed chunks are kept in {run_dir}" in err and "Traceback" not in err
    assert f"resume=true hydra.run.dir={run_dir}" in err
    assert not list((run_dir / "chunks").glob("*.errors.parquet")), "an interrupt recorded as a failure"
    assert not (run_dir / "replicates.parquet").exists()
    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "reused" in resumed.stdout and " 0 reused" not in resumed.stdout
    assert not (run_dir / "errors.parquet").exists()
    assert pl.read_parquet(run_dir / "replicates.parquet").equals(uninterrupted)


def stop_inside_polars(signum: int) -> str:
    """In a fresh interpreter (its own signal handlers): a run whose driver is inside a Polars
    call when the signal's handler runs; what leaves the run. Polars calls the function below
    back and reports the handler's KeyboardInterrupt as its own ComputeError."""
    from kibs_mc.run import interrupt

    def group_of(rows: pl.DataFrame) -> pl.DataFrame:
        os.kill(os.getpid(), signum)  # the handler runs here, inside Polars' group_by
        return rows

    interrupt.terminate_as_interrupt()
    try:
        with interrupt.deferred_interrupts():
            pl.DataFrame({"g": [1, 2], "x": [1.0, 2.0]}).group_by("g").map_groups(group_of)
    except KeyboardInterrupt as stop:
        return f"{type(stop).__name__} by_sigterm={interrupt.by_sigterm()}"
    except Exception as exc:  # noqa: BLE001 - what the test is about
        return f"leaked {type(exc).__name__}: {exc}"
    return "not stopped"


@pytest.mark.parametrize(
    "sig,stop",
    [(signal.SIGTERM, "Terminated by_sigterm=True"), (signal.SIGINT, "KeyboardInterrupt by_sigterm=False")],
)
def test_a_signal_that_lands_inside_a_polars_call_still_stops_the_run_as_that_signal(sig, stop):
    from tests.fresh import call_fresh

    assert call_fresh(stop_inside_polars, int(sig), timeout=120) == stop


def sigterm_while_ray_init_holds_the_handler() -> str:
    """In a fresh interpreter: a SIGTERM while a call inside ``kept_sigterm`` has installed the
    handler ``ray.init`` installs while it starts a cluster (``sys.exit(signum)``,
    ray/_private/worker.py); what leaves the run."""
    from kibs_mc.run import interrupt

    interrupt.terminate_as_interrupt()
    try:
        with interrupt.deferred_interrupts(), interrupt.kept_sigterm():
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init does
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
    except KeyboardInterrupt as stop:
        return f"{type(stop).__name__} by_sigterm={interrupt.by_sigterm()}"
    except SystemExit as exc:
        return f"SystemExit({exc.code})"
    return "not stopped"


def test_a_sigterm_while_ray_starts_its_cluster_stops_the_run_as_sigterm():
    from tests.fresh import call_fresh

    assert call_fresh(sigterm_while_ray_init_holds_the_handler, timeout=120) == "Terminated by_sigterm=True"
