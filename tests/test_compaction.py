"""A finished run compacts its results: ``chunks/`` is removed, the final files
carry the chunk record (``compacted.json`` names them), the rows equal those of a run that keeps
its parts, resume on a compacted run computes nothing, and a process killed at any step of the
compaction, or of uncompacting a run that has chunks to compute again, loses no chunk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.errors import UserError
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.plan import replicate_seeds
from kibs_mc.run.store import COMPACTED, ResultStore
from tests.slurm import SBATCH_TEMPLATE

RUN = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
    "experiment=cj_docking",
    "replicates=4",
    "executor.chunk_size=2",
    "figures=false",
]
CHUNKS = 12  # 6 scenarios x 2 chunks

# The CLI with a flush after every chunk (one part per chunk, whatever the timing), replicates
# of seed argv[2] in scenario p=0.1 raising (when given), and a hard exit (as SIGKILL: no
# cleanup) at the step named by argv[1]: before compacted.json is written ("manifest"), after
# the first part file is removed ("remove"), after the uncompacted part is published
# ("uncompact").
KILLED = """
import os, sys
from pathlib import Path
from kibs_mc.models import MODELS
from kibs_mc.run import store
where, fail = sys.argv.pop(1), sys.argv.pop(1)
init = store.ResultStore.__init__
def one_part_per_chunk(self, run_dir, flush_seconds=1.0, flush_rows=200_000):
    init(self, run_dir, flush_seconds, 1)
store.ResultStore.__init__ = one_part_per_chunk
real = MODELS["cowan_jonard"].simulate
def simulate(config, seed):
    if fail and seed == int(fail) and config.model.rewire_p == 0.1:
        raise FloatingPointError("planted")
    return real(config, seed)
MODELS["cowan_jonard"].simulate = simulate
write_text, publish, unlink = store.write_text_atomic, store._publish, Path.unlink
def killed_write_text(path, text):
    if where == "manifest" and path.name == store.COMPACTED:
        os._exit(9)
    write_text(path, text)
def killed_publish(tmp, path):
    publish(tmp, path)
    if where == "uncompact" and path.name.endswith("-expanded.parquet"):
        os._exit(9)
def killed_unlink(self, *args, **kwargs):
    unlink(self, *args, **kwargs)
    if where == "remove" and self.parent.name == "chunks" and self.suffix == ".parquet":
        os._exit(9)
store.write_text_atomic, store._publish, Path.unlink = killed_write_text, killed_publish, killed_unlink
from kibs_mc.cli import main
main()
"""


def template_resumes(run_dir: Path) -> bool:
    """Whether the sbatch template's resume check (its own line, run by bash) adds resume=true."""
    check = next(
        line
        for line in SBATCH_TEMPLATE.read_text().splitlines()
        if line.startswith("if ") and "resume=(resume=true)" in line
    )
    out = subprocess.run(
        ["bash", "-c", f'resume=(); {check}; echo "${{resume[@]}}"'],
        check=True,
        env={"PATH": "/usr/bin:/bin", "RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == "resume=true"


def outputs_paths(run_dir: Path) -> list[Path]:
    return [run_dir / f"{name}.parquet" for name in ("replicates", "timeseries")]


def outputs(run_dir: Path) -> list[pl.DataFrame]:
    return [pl.read_parquet(path) for path in outputs_paths(run_dir)]


def cli(where: str, run_dir: Path, *extra: str, fail: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", KILLED, where, str(fail or ""), *RUN, *extra, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def killed(where: str, run_dir: Path, *extra: str, fail: int | None = None) -> list[str]:
    """The part files in chunks/ after a run killed at ``where``."""
    done = cli(where, run_dir, *extra, fail=fail)
    assert done.returncode == 9, done.stderr[-2000:]
    return sorted(p.name for p in (run_dir / "chunks").glob("*.parquet"))


@pytest.mark.slow
def test_compaction_killed_anywhere_loses_no_chunk_and_resume_reuses_all(tmp_path):
    """Killed before compacted.json (an ordinary run with its parts), during the removal of
    chunks/ (compacted, leftover parts), then, resumed to recompute the chunk with a failed
    replicate, killed once its final files are a part again: every resume ends with the rows
    of a run that keeps its parts, a finished run has no chunks/, and resuming it computes
    nothing (another experiment is still refused)."""
    kept_overrides = [*RUN, "keep_parts=true"]
    kept = run_experiment(load_config(kept_overrides), kept_overrides, tmp_path / "kept").run_dir
    assert len(list((kept / "chunks").glob("part-*.parquet"))) >= 1 and not (kept / COMPACTED).exists()
    bad = int(replicate_seeds(load_config(RUN).seed, 4)[1])  # chunk r0 of p=0.1 holds an error
    run_dir = tmp_path / "run"

    assert not template_resumes(tmp_path)  # nothing there yet
    before = killed("manifest", run_dir, fail=bad)
    assert template_resumes(run_dir)
    assert len([n for n in before if n.count(".") == 1]) == CHUNKS and not (run_dir / COMPACTED).exists()
    assert (run_dir / "errors.parquet").exists()  # finalize had run
    during = killed("remove", run_dir, "resume=true", fail=bad)  # the failed chunk fails again
    assert (run_dir / COMPACTED).exists() and len(set(before) - set(during)) == 1  # one removed
    expanding = killed("uncompact", run_dir, "resume=true")  # the error is gone this time
    assert (run_dir / COMPACTED).exists() and any(n.endswith("-expanded.parquet") for n in expanding)

    def assert_compacted_as_kept() -> None:
        assert not (run_dir / "chunks").exists() and not (run_dir / "errors.parquet").exists()
        manifest = json.loads((run_dir / COMPACTED).read_text())
        assert manifest["files"] == ["replicates.parquet", "timeseries.parquet"]
        assert all(a.equals(b) for a, b in zip(outputs(run_dir), outputs(kept), strict=True))
        assert template_resumes(run_dir)  # the sbatch template resumes a finished run too

    resumed = cli("", run_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"chunks: 1 computed, {CHUNKS - 1} reused" in resumed.stdout
    assert_compacted_as_kept()
    written = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in outputs_paths(run_dir)]
    again = cli("", run_dir, "resume=true")  # a compacted run: nothing to compute
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"chunks: 0 computed, {CHUNKS} reused" in again.stdout
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in outputs_paths(run_dir)] == written  # untouched
    assert_compacted_as_kept()
    other = [*RUN, "seed=7", "resume=true"]
    with pytest.raises(UserError, match="different experiment"):  # the plan check holds
        run_experiment(load_config(other), other, run_dir)


def test_a_compacted_run_whose_final_files_are_damaged_computes_its_chunks_again(tmp_path, capsys):
    """The final files are a compacted run's only record: damaged, they are set aside (as a
    damaged part is) and every chunk is computed again, to the same rows."""
    run_dir = tmp_path / "run"
    clean = run_experiment(load_config(RUN), RUN, run_dir).rows
    os.truncate(run_dir / "replicates.parquet", 300)
    capsys.readouterr()
    overrides = [*RUN, "resume=true"]
    resumed = run_experiment(load_config(overrides), overrides, run_dir)
    assert "are not those kibs-mc wrote" in capsys.readouterr().err
    assert (run_dir / "chunks" / "damaged" / "replicates.parquet").exists()
    assert resumed.computed_chunks == CHUNKS and resumed.reused_chunks == 0
    assert resumed.rows.equals(clean) and (run_dir / COMPACTED).exists()


def test_the_store_compacts_only_what_its_final_files_hold_and_reads_it_back(tmp_path):
    """Store level: compact() refuses results written after the last finalize (removing their
    parts would lose them); a compacted store reopens with every chunk done (the errors chunk
    not), and uncompact() gives back the parts' rows with their chunk keys."""

    def result(first: int, errors: list[dict] | None = None) -> ChunkResult:
        reps = np.arange(first, first + 2, dtype=np.int64)
        rows = {
            "scenario": np.full(2, "a", dtype=object),
            "replicate": reps,
            "seed": reps.astype(np.uint64),
            "level": reps * 1.5,
        }
        return ChunkResult(f"s00000000-r{first:09d}-n2", rows, None, 0.0, errors or [])

    store = ResultStore(tmp_path, flush_seconds=1e9)
    store.open("fp", 2, resume=False)
    store.write(result(0))
    store.finalize(["a"])
    failed = {"scenario": "a", "replicate": 5, "seed": 5, "error": "planted"}
    store.write(result(2, [failed]))
    store.flush()
    with pytest.raises(RuntimeError, match="finalize"):
        store.compact()
    rows = store.finalize(["a"])
    assert store.compact() == 3 and not (tmp_path / "chunks").exists()  # 2 parts, 1 errors file
    again = ResultStore(tmp_path)
    assert again.open("fp", 2, resume=True) == {"s00000000-r000000000-n2"}  # r2 holds an error
    assert again.errors().to_dicts() == [failed]
    again.uncompact()
    part = pl.read_parquet(next((tmp_path / "chunks").glob("*-expanded.parquet")))
    assert part.drop("_chunk").equals(rows)
    assert part["_chunk"].to_list() == ["s00000000-r000000000-n2"] * 2 + ["s00000000-r000000002-n2"] * 2
