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
from kibs_mc.run.store import COMPACTED, ResultStore, content_check

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
    "replicates=6",
    "executor.chunk_size=2",
    "figures=false",
]
KIBS = [
    "cluster=small",
    "model.steps=20",
    "tracking=none",
    "executor=serial",
    "replicates=4",
    "executor.chunk_size=2",
    "figures=false",
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


# ------------------------------------------------------------------ files that prove their content


def flip(path, bit):
    data = bytearray(path.read_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def rows_parts(run_dir):
    return sorted(p for p in (run_dir / "chunks").glob("*.parquet") if p.name.count(".") == 1)


def test_every_parquet_file_of_a_run_carries_a_content_checksum_that_holds(tmp_path):
    run(tmp_path / "run", "keep_parts=true", args=KIBS)
    files = sorted((tmp_path / "run").rglob("*.parquet"))
    assert len(files) >= 8 and any("chunks" in str(p) for p in files)
    assert [p for p in files if content_check(p) is not None] == []


def test_any_single_bit_flip_in_a_part_is_named_set_aside_and_computed_again(tmp_path, capsys):
    """Anywhere in the file: data pages, page headers, footer. (Before, most flips in the footer
    went unnoticed and flips in the data pages changed the results or raised.)"""
    clean = run(tmp_path / "clean", "keep_parts=true", args=KIBS)
    series = pl.read_parquet(tmp_path / "clean" / "timeseries.parquet")
    rng = np.random.default_rng(27)
    for i in range(8):
        run_dir = tmp_path / f"flip{i}"
        shutil.copytree(tmp_path / "clean", run_dir)
        files = sorted((run_dir / "chunks").glob("*.parquet"))  # rows and time series
        part = files[i % len(files)]
        flip(part, int(rng.integers(part.stat().st_size * 8)))
        capsys.readouterr()
        resumed = run(run_dir, "keep_parts=true", "resume=true", args=KIBS)
        err = capsys.readouterr().err
        stem = part.name.split(".")[0]
        assert f"damaged result part {run_dir / 'chunks' / stem}.parquet" in err, err
        # the checksum, or the Parquet reader on a footer the flip made unreadable
        said = ("content checksum mismatch", "not a Parquet file", "File out of specification")
        assert any(reason in err for reason in said), err
        assert resumed.computed_chunks > 0
        assert resumed.rows.equals(clean.rows)
        assert pl.read_parquet(run_dir / "timeseries.parquet").equals(series)


def test_a_part_edited_with_its_metadata_kept_is_set_aside(tmp_path, capsys):
    clean = run(tmp_path / "run", "keep_parts=true", args=KIBS)
    part = rows_parts(tmp_path / "run")[0]
    meta = {k: v for k, v in pl.read_parquet_metadata(part).items() if k.startswith("kibs_mc.")}
    edited = pl.read_parquet(part).with_columns(pl.col("innovations_total") * 2)
    edited.write_parquet(part, metadata=meta)  # the chunk record and the old checksum kept
    capsys.readouterr()
    resumed = run(tmp_path / "run", "keep_parts=true", "resume=true", args=KIBS)
    assert "content checksum mismatch" in capsys.readouterr().err
    assert resumed.computed_chunks > 0 and resumed.rows.equals(clean.rows)


def test_a_part_whose_time_series_file_is_gone_is_set_aside(tmp_path, capsys):
    clean = run(tmp_path / "run", "keep_parts=true", args=KIBS)
    series = pl.read_parquet(tmp_path / "run" / "timeseries.parquet")
    part = rows_parts(tmp_path / "run")[0]
    part.with_name(part.name.replace(".parquet", ".timeseries.parquet")).unlink()
    capsys.readouterr()
    resumed = run(tmp_path / "run", "keep_parts=true", "resume=true", args=KIBS)
    assert "timeseries.parquet is missing" in capsys.readouterr().err
    assert resumed.rows.equals(clean.rows)
    assert pl.read_parquet(tmp_path / "run" / "timeseries.parquet").equals(series)


@pytest.mark.parametrize("change", ["duplicated row", "foreign time series"])
def test_every_final_file_of_a_compacted_run_is_checked_not_only_those_compacted_json_lists(
    tmp_path, capsys, change
):
    clean = run(tmp_path / "run", args=KIBS)
    series = pl.read_parquet(tmp_path / "run" / "timeseries.parquet")
    if change == "duplicated row":
        path = tmp_path / "run" / "replicates.parquet"
        meta = {k: v for k, v in pl.read_parquet_metadata(path).items() if k.startswith("kibs_mc.")}
        frame = pl.read_parquet(path)
        pl.concat([frame, frame.head(1)]).write_parquet(path, metadata=meta)
    else:  # another run's time series, and a manifest that no longer lists the file
        run(tmp_path / "other", "seed=7", args=KIBS)
        shutil.copy(tmp_path / "other" / "timeseries.parquet", tmp_path / "run" / "timeseries.parquet")
        manifest = json.loads((tmp_path / "run" / COMPACTED).read_text())
        manifest["files"] = ["replicates.parquet"]
        (tmp_path / "run" / COMPACTED).write_text(json.dumps(manifest))
    capsys.readouterr()
    resumed = run(tmp_path / "run", "resume=true", args=KIBS)
    err = capsys.readouterr().err
    assert f"the final files of {tmp_path / 'run'} are not those kibs-mc wrote" in err
    assert "Traceback" not in err
    assert (resumed.computed_chunks, resumed.reused_chunks) == (2, 0)
    assert resumed.rows.equals(clean.rows)
    assert pl.read_parquet(tmp_path / "run" / "timeseries.parquet").equals(series)


def test_compaction_reads_the_final_files_back_and_rewrites_one_the_disk_did_not_keep(tmp_path, capsys):
    store = ResultStore(tmp_path, flush_seconds=1e9)
    store.open("fp", 3, resume=False)
    for start in range(0, 9, 3):
        store.write(chunk_result(start, 3))
    rows = store.finalize(["a"])
    flip(tmp_path / "replicates.parquet", 8 * 40)  # as a disk returning other bytes would
    assert store.compact() > 0
    assert "replicates.parquet: content checksum mismatch" in capsys.readouterr().err
    assert (tmp_path / "chunks" / "damaged" / "replicates.parquet").exists()
    assert content_check(tmp_path / "replicates.parquet") is None
    assert pl.read_parquet(tmp_path / "replicates.parquet").equals(rows)
