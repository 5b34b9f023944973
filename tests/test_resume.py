"""SIGKILL the driver mid-experiment, resume: completed chunks reused, output equals an uninterrupted
run's, no corrupt or stale files. (The same on a multi-node Ray cluster: test_cluster.py.)"""

from __future__ import annotations

import shutil
import time

import polars as pl
import pytest

from tests.conftest import REPO, kill_after_parts, run_cli

pytestmark = pytest.mark.slow

SLOW = [
    "model=cowan_jonard",
    "model.agents=100",
    "model.degree=4",
    "model.tolerance=0.0",
    "model.max_meetings=1000000",
    "tracking=none",
    "replicates=80",
    "executor.chunk_size=4",
    "executor=serial",
    "figures=false",
]


SMALL_CJ = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "tracking=none",
    "executor=serial",
    "replicates=4",
    "executor.chunk_size=2",
    "figures=false",
]


def test_sigkilled_driver_resumes_from_its_completed_chunks(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SLOW, f"hydra.run.dir={run_dir}"]
    kill_after_parts(*args, cwd=tmp_path, run_dir=run_dir)
    parts = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run_dir / "chunks").glob("*.parquet")}
    done = pl.concat([pl.read_parquet(p) for p in parts])["_chunk"].n_unique()  # all readable
    assert 0 < done < 20
    (run_dir / "chunks" / "part-stale.parquet.tmp").write_bytes(b"half a file")  # as a kill would leave
    resumed = run_cli(*args, "resume=true", "keep_parts=true", cwd=tmp_path)  # parts stay to be compared
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"chunks: {20 - done} computed, {done} reused" in resumed.stdout
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == stamp for p, stamp in parts.items())
    assert not list(run_dir.rglob("*.tmp"))
    fresh = run_cli(*SLOW, f"hydra.run.dir={tmp_path / 'fresh'}", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert pl.read_parquet(run_dir / "replicates.parquet").equals(
        pl.read_parquet(tmp_path / "fresh" / "replicates.parquet")
    )


def test_resume_refuses_another_experiment(tmp_path):
    small = [*SMALL_CJ, f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_cli(*small, cwd=tmp_path).returncode == 0
    other = run_cli(*small, "seed=5", "resume=true", cwd=tmp_path)
    assert other.returncode == 2 and "different experiment" in other.stderr
    assert "Traceback" not in other.stderr


def code_copy(tmp_path):
    """A copy of the package whose modules a test may edit (kernels and conf/ shared, read only)."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "kibs_mc", src / "kibs_mc", ignore=shutil.ignore_patterns("__pycache__", "kernels")
    )
    (src / "kibs_mc" / "kernels").symlink_to(REPO / "kernels")
    (src / "conf").symlink_to(REPO / "conf")
    return src


def test_resume_across_a_change_of_the_model_code_is_refused_naming_the_module(tmp_path):
    """A run directory never holds replicates of two versions of the model: the plan's
    fingerprint covers the code; a comment or docstring is not code."""
    src = code_copy(tmp_path)
    env = {"PYTHONPATH": str(src)}
    small = [*SMALL_CJ, f"hydra.run.dir={tmp_path / 'run'}"]
    first = run_cli(*small, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    model = src / "kibs_mc" / "models" / "cowan_jonard.py"
    text = model.read_text()
    model.write_text(text.replace('"""', '"""A docstring edited. ', 1) + "\n# a comment\n")
    same = run_cli(*small, "resume=true", cwd=tmp_path, env=env)
    assert same.returncode == 0 and "chunks: 0 computed, 2 reused" in same.stdout, same.stderr[-2000:]
    assert '"knowledge_mean": mean,' in text
    model.write_text(text.replace('"knowledge_mean": mean,', '"knowledge_mean": 2 * mean,'))
    before = (tmp_path / "run" / "replicates.parquet").read_bytes()
    changed = run_cli(*small, "resume=true", cwd=tmp_path, env=env)
    assert changed.returncode == 2, changed.stderr[-2000:]
    message = changed.stderr.strip()
    assert "module kibs_mc.models.cowan_jonard" in message and "without resume=true" in message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert (tmp_path / "run" / "replicates.parquet").read_bytes() == before  # nothing touched


def test_the_code_fingerprint_covers_the_kernels_and_the_packages_they_use():
    from kibs_mc.run.code import code_inputs

    kibs, cj = code_inputs("kibs"), code_inputs("cowan_jonard")
    assert {
        "code:kibs_mc.models.kibs.replicate",
        "code:kibs_mc.kernels.kibs",
        "code:kibs_mc.kernels.rng",
    } <= set(kibs)
    assert "code:kibs_mc.models.kibs.replicate" not in cj and "code:kibs_mc.models.cowan_jonard" in cj
    assert {"code:numpy", "code:numba", "code:python"} <= set(kibs)


def test_a_local_ray_cluster_that_cannot_start_ends_the_run_with_one_message_and_resume_completes_it(
    tmp_path,
):
    """Ray's start-up failing (here: its temporary directory cannot be made) ends the run in
    seconds with one line and the resume command; the chunks the driver computed meanwhile are
    kept. (Before: a traceback; a raylet killed while starting, a 30-60 s wait then a traceback.)"""
    (tmp_path / "a-file").write_text("")
    small = [a for a in SMALL_CJ if not a.startswith(("replicates=", "executor="))]
    args = [*small, "replicates=20", "executor.chunk_size=2", f"hydra.run.dir={tmp_path / 'run'}"]
    started = time.monotonic()
    ray = ["executor=ray", "executor.num_cpus=2"]
    failed = run_cli(*args, *ray, cwd=tmp_path, env={"RAY_TMPDIR": str(tmp_path / "a-file" / "ray")})
    assert failed.returncode == 1, failed.stderr[-2000:]
    message = [line for line in failed.stderr.splitlines() if line.startswith("kibs-mc:")]
    assert len(message) == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert "the local Ray cluster did not start" in message[0] and "resume=true" in message[0]
    assert time.monotonic() - started < 120
    resumed = run_cli(*args, "executor=serial", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def _raylet_of(proc, timeout: float):
    """The raylet among ``proc``'s descendants, the moment it appears (polled every 5 ms)."""
    import psutil

    me, deadline = psutil.Process(proc.pid), time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for child in me.children(recursive=True):
            try:
                if child.name() == "raylet":
                    return child
            except psutil.Error:
                pass
        time.sleep(0.005)
    return None


def test_a_local_ray_cluster_whose_start_stalls_ends_the_run_within_a_bound(tmp_path):
    """A raylet that stops answering while the local cluster starts (here: stopped with SIGSTOP
    the moment it appears) ends the run with one line and the resume command within a bounded
    time (Ray's own wait for its node, 30 s); the run does not hang. The chunks the driver
    computed meanwhile are kept and resume completes the run."""
    import subprocess
    import sys

    import psutil

    small = [a for a in SMALL_CJ if not a.startswith(("replicates=", "executor="))]
    args = [
        *small,
        "model.agents=200",
        "replicates=40",
        "executor.chunk_size=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kibs_mc", *args, "executor=ray", "executor.num_cpus=2"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    raylet = None
    try:
        raylet = _raylet_of(proc, timeout=120)
        assert raylet is not None, "the local cluster's raylet never appeared"
        raylet.suspend()
        stalled = time.monotonic()
        _, err = proc.communicate(timeout=150)
        ended = time.monotonic() - stalled
    finally:
        if proc.poll() is None:
            proc.kill()
        if raylet is not None:  # the raylet and its agents, which would outlive it
            try:
                family = [raylet, *raylet.children(recursive=True)]
                raylet.resume()
            except psutil.Error:
                family = [raylet]
            for process in family:
                try:
                    process.kill()
                except psutil.Error:
                    pass
    assert proc.returncode == 1, err[-2000:]
    message = [line for line in err.splitlines() if line.startswith("kibs-mc:")]
    assert len(message) == 1 and "Traceback" not in err, err[-2000:]
    assert "the local Ray cluster did not start" in message[0] and "resume=true" in message[0]
    assert ended < 90, f"the run ended {ended:.0f} s after its raylet stalled"
    resumed = run_cli(*args, "executor=serial", "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_a_calibration_resumed_across_a_change_of_the_model_code_is_refused_naming_the_module(tmp_path):
    """Its generations would mix simulations of two versions of the model otherwise."""
    import json

    from kibs_mc.config import load_config
    from kibs_mc.errors import UserError
    from kibs_mc.experiments.pipeline import run_experiment

    args = [
        "experiment=calibrate",
        "cluster=small",
        "model.steps=12",
        "tracking=none",
        "executor=serial",
        "calibration.parameters=[{key: model.tie_decay, low: 0.01, high: 0.5}]",
        "calibration.targets=synthetic",
        "calibration.template=recovery",
        "calibration.truth.model.tie_decay=0.1",
        "calibration.population=6",
        "calibration.generations=1",
        "calibration.ppc_draws=2",
        "calibration.synthetic_replicates=2",
    ]
    run_experiment(load_config(args), args, tmp_path / "cal")
    spec_file = tmp_path / "cal" / "calibration_spec.json"
    spec = json.loads(spec_file.read_text())
    assert "code:kibs_mc.models.kibs.replicate" in spec["code"]
    spec["code"]["code:kibs_mc.models.kibs.replicate"] = "0" * 16  # as the model's code was then
    spec_file.write_text(json.dumps(spec, sort_keys=True))
    with pytest.raises(UserError, match="module kibs_mc.models.kibs.replicate"):
        run_experiment(load_config([*args, "resume=true"]), [*args, "resume=true"], tmp_path / "cal")
