"""A finished run compacts chunks/ into one part (issue 15 item 4): rows identical to a run that
keeps its parts, resume after compaction reuses every chunk, and a process killed at any point
of the compaction loses no computed chunk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.conftest import run_cli

RUN = ["model=cowan_jonard", "model.agents=60", "model.degree=4", "model.categories=5", "tracking=none",
       "executor=serial", "experiment=cj_docking", "replicates=4", "executor.chunk_size=2"]
CHUNKS = 12  # 6 scenarios x 2 chunks

# The CLI with a flush after every chunk (one part per chunk, whatever the timing) and a hard
# exit (as SIGKILL: no cleanup) at the compaction step named by argv[1].
KILLED = """
import os, sys
from pathlib import Path
from kibs_mc.run import store
where = sys.argv.pop(1)
init = store.ResultStore.__init__
def one_part_per_chunk(self, run_dir, flush_seconds=1.0, flush_rows=200_000):
    init(self, run_dir, flush_seconds, 1)
store.ResultStore.__init__ = one_part_per_chunk
publish, unlink = store._publish, Path.unlink
def killed_publish(tmp, path):
    if where == "publish" and path.name.endswith("-compact.parquet"):
        os._exit(9)
    publish(tmp, path)
def killed_unlink(self, *args, **kwargs):
    unlink(self, *args, **kwargs)
    if where == "unlink" and self.parent.name == "chunks" and self.suffix == ".parquet":
        os._exit(9)
store._publish, Path.unlink = killed_publish, killed_unlink
from kibs_mc.cli import main
main()
"""


def outputs(run_dir: Path) -> list[pl.DataFrame]:
    return [pl.read_parquet(run_dir / f"{name}.parquet") for name in ("replicates", "timeseries")]


def killed_at(where: str, run_dir: Path, *extra: str) -> list[Path]:
    killed = subprocess.run([sys.executable, "-c", KILLED, where, *RUN, *extra, f"hydra.run.dir={run_dir}"],
                            cwd=run_dir.parent, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    return sorted((run_dir / "chunks").glob("*.parquet"))


def test_compaction_killed_anywhere_loses_no_chunk_and_resume_reuses_all(tmp_path):
    """Killed before the compacted part is published (the parts remain), then, resumed, killed
    after the first old part file is removed (the compacted part holds every chunk): resume
    computes nothing, the rows equal those of a run that keeps its parts, and a finished run
    holds one part, which a further resume reuses whole (and the plan checks still refuse
    another experiment)."""
    kept = run_cli(*RUN, "keep_parts=true", f"hydra.run.dir={tmp_path / 'kept'}", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert len(list((tmp_path / "kept" / "chunks").glob("part-*[0-9a-f].parquet"))) >= 1
    run_dir = tmp_path / "run"
    before = killed_at("publish", run_dir)
    assert len(before) == CHUNKS and not any(p.name.endswith("-compact.parquet") for p in before)
    during = killed_at("unlink", run_dir, "resume=true")
    compacted = [p for p in during if p.name.endswith("-compact.parquet")]
    assert len(compacted) == 1 and len(during) == len(before)  # one old file removed
    assert pl.read_parquet(compacted[-1])["_chunk"].n_unique() == CHUNKS
    for _ in range(2):  # finishes the compaction; then resumes the compacted run
        resumed = run_cli(*RUN, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert f"chunks: 0 computed, {CHUNKS} reused" in resumed.stdout
        assert all(a.equals(b) for a, b in zip(outputs(run_dir), outputs(tmp_path / "kept"), strict=True))
        files = sorted(p.name for p in (run_dir / "chunks").iterdir())
        assert len({f.split(".")[0] for f in files}) == 1 and "-compact." in files[0], files
    other = run_cli(*RUN, "seed=7", f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert other.returncode == 2 and "different experiment" in other.stderr  # plan check holds
