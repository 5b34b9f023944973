"""SIGKILL the driver mid-experiment, resume: completed chunks reused, output equals an uninterrupted
run's, no corrupt or stale files. (The same on a multi-node Ray cluster: test_cluster.py.)"""

from __future__ import annotations

import polars as pl
import pytest

from tests.conftest import kill_after_parts, run_cli

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
    small = [
        "model=cowan_jonard",
        "model.agents=60",
        "model.degree=4",
        "tracking=none",
        "executor=serial",
        "replicates=4",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    assert run_cli(*small, cwd=tmp_path).returncode == 0
    other = run_cli(*small, "seed=5", "resume=true", cwd=tmp_path)
    assert other.returncode == 2 and "different experiment" in other.stderr
    assert "Traceback" not in other.stderr
