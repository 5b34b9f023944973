"""The result store never counts a chunk twice, never reuses another experiment's chunks, and
survives damaged files: each is named, set aside, and its chunks computed again."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.errors import UserError
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.models import MODELS
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.plan import replicate_seeds
from kibs_mc.run.store import ResultStore

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
    "replicates=6",
    "executor.chunk_size=2",
]
KIBS = [
    "cluster=small",
    "model.steps=20",
    "tracking=none",
    "executor=serial",
    "replicates=4",
    "executor.chunk_size=2",
]


def run(run_dir, *extra, args=SMALL):
    overrides = [*args, *extra]
    return run_experiment(load_config(overrides), overrides, run_dir)


def chunk_result(first: int, n: int) -> ChunkResult:
    reps = np.arange(first, first + n, dtype=np.int64)
    rows = {
        "scenario": np.full(n, "a", dtype=object),
        "replicate": reps,
        "seed": reps.astype(np.uint64),
        "level": reps * 1.5,
    }
    ts = {
        "replicate": np.repeat(reps, 2),
        "step": np.tile(np.arange(2, dtype=np.int64), n),
        "level": np.repeat(reps * 1.5, 2),
        "scenario": np.full(2 * n, "a", dtype=object),
    }
    return ChunkResult(f"s00000000-r{first:09d}-n{n}", rows, ts, 0.0)


def test_two_writers_of_the_same_chunks_merge_into_one_copy_each(tmp_path):
    """What two runs started at once in one directory leave: every chunk written twice."""
    first, second = (ResultStore(tmp_path, flush_seconds=1e9) for _ in range(2))
    first.open("fp", 3, resume=False)
    second.open("fp", 3, resume=True)  # opened before the first one wrote anything
    for store in (first, second):
        for start in range(0, 9, 3):
            store.write(chunk_result(start, 3))
        store.flush()
    assert len(list(tmp_path.glob("chunks/*.timeseries.parquet"))) == 2
    rows = second.finalize(["a"])
    assert rows["replicate"].to_list() == list(range(9))
    assert pl.read_parquet(tmp_path / "replicates.parquet").height == 9
    assert pl.read_parquet(tmp_path / "timeseries.parquet")["replicate"].to_list() == [
        r for r in range(9) for _ in range(2)
    ]


def test_a_directory_with_parts_and_no_plan_is_refused(tmp_path):
    run(tmp_path / "run")
    (tmp_path / "run" / "plan.json").unlink()
    for resume in ("false", "true"):
        with pytest.raises(UserError, match="no plan.json"):
            run(tmp_path / "run", "model.alpha=0.5", f"resume={resume}")


def test_a_part_computed_for_another_plan_is_never_reused(tmp_path):
    """Each part names its plan: a part of another experiment, whatever plan.json says, is
    refused by name instead of being counted as done (b is a finished run: compacted, no parts)."""
    run(tmp_path / "a", "keep_parts=true")
    run(tmp_path / "b", "model.alpha=0.5")
    stray = sorted((tmp_path / "a" / "chunks").glob("*.parquet"))[0]
    (tmp_path / "b" / "chunks").mkdir()
    shutil.copy(stray, tmp_path / "b" / "chunks" / "part-99999999999999999999-stray.parquet")
    with pytest.raises(
        UserError, match="part-99999999999999999999-stray.parquet was not computed for this experiment"
    ):
        run(tmp_path / "b", "model.alpha=0.5", "resume=true")


@pytest.mark.parametrize("kind", ["rows", "timeseries"])
def test_a_damaged_part_is_named_set_aside_and_computed_again(tmp_path, capsys, kind):
    clean = run(tmp_path / "run", "keep_parts=true", args=KIBS).rows  # the parts stay
    clean_series = pl.read_parquet(tmp_path / "run" / "timeseries.parquet")
    suffix = ".timeseries.parquet" if kind == "timeseries" else ".parquet"
    part = next(
        p
        for p in sorted((tmp_path / "run" / "chunks").glob("*.parquet"))
        if p.name.endswith(suffix) and (kind == "timeseries" or "." not in p.name[:-8])
    )
    os.truncate(part, 300)
    capsys.readouterr()
    resumed = run(tmp_path / "run", "resume=true", args=KIBS)
    err = capsys.readouterr().err
    assert f"damaged result part {part.with_name(part.name.split('.')[0] + '.parquet')}" in err
    assert (tmp_path / "run" / "chunks" / "damaged" / part.name).exists()
    assert resumed.computed_chunks > 0
    assert resumed.rows.equals(clean)
    assert pl.read_parquet(tmp_path / "run" / "timeseries.parquet").equals(clean_series)


@pytest.mark.parametrize("text", ['{"fingerprint": ', "{}", "[]", '{"fingerprint": 1, "chunk_size": "x"}'])
def test_a_damaged_plan_is_named(tmp_path, text):
    run(tmp_path / "run")
    (tmp_path / "run" / "plan.json").write_text(text)
    with pytest.raises(UserError, match=f"{tmp_path / 'run' / 'plan.json'} is damaged"):
        run(tmp_path / "run", "resume=true")


def test_logging_a_run_with_a_damaged_plan_names_the_file(tmp_path, capsys):
    from kibs_mc.tracking.mlflow import main

    run(tmp_path / "run")
    (tmp_path / "run" / "plan.json").write_text('{"fingerprint": ')
    with pytest.raises(SystemExit) as done:
        main([str(tmp_path / "run"), f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "plan.json is damaged" in err and "MLflow" not in err


def test_parts_and_the_plan_are_fsynced_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = ResultStore(tmp_path, flush_seconds=1e9)
    store.open("fp", 3, resume=False)
    store.write(chunk_result(0, 3))
    store.flush()
    published = [src for kind, src in events if kind == "replace"]
    assert {os.path.basename(p) for p in published} >= {"plan.json.tmp"} and len(published) == 3
    for src in published:  # the file's data reached the disk before its new name
        assert ("fsync", src) in events[: events.index(("replace", src))]


def test_a_chunk_with_a_failed_replicate_is_computed_again_on_resume(tmp_path, monkeypatch):
    """A failure may be transient (or, before the fix, a Ctrl-C): resume gives it another try."""
    bad_seed = int(replicate_seeds(load_config(SMALL).seed, 6)[3])
    real = MODELS["cowan_jonard"].simulate

    def flaky(config, seed):
        if seed == bad_seed:
            raise MemoryError("transient")
        return real(config, seed)

    monkeypatch.setattr(MODELS["cowan_jonard"], "simulate", flaky)
    first = run(tmp_path / "run")
    assert first.failed is not None and first.failed["replicate"].to_list() == [3]
    monkeypatch.setattr(MODELS["cowan_jonard"], "simulate", real)
    resumed = run(tmp_path / "run", "resume=true")
    assert (resumed.computed_chunks, resumed.reused_chunks) == (1, 2)
    assert resumed.failed is None and not (tmp_path / "run" / "errors.parquet").exists()
    assert resumed.rows.equals(run(tmp_path / "clean").rows)


def test_the_plan_records_what_a_refused_resume_names(tmp_path):
    run(tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert recorded["inputs"]["executor.chunk_size"] == 2 and recorded["inputs"]["model.alpha"] == 0.1
    with pytest.raises(UserError, match=r"executor.chunk_size \(recorded 2, now 3\)"):
        run(tmp_path / "run", "resume=true", "executor.chunk_size=3")
    with pytest.raises(UserError, match=r"model.alpha \(recorded 0.1, now 0.5\)"):
        run(tmp_path / "run", "resume=true", "model.alpha=0.5")
