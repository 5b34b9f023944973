"""finalize merges time-series parts in plan order a block at a time (bounded driver memory)."""

from __future__ import annotations

import numpy as np
import polars as pl

from kibs_mc.run import store as results
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.store import ResultStore


def chunk_result(scenario_index: int, scenario: str, first: int, n: int, steps: int = 3) -> ChunkResult:
    reps = np.arange(first, first + n, dtype=np.int64)
    rows = {
        "scenario": np.full(n, scenario, dtype=object),
        "replicate": reps,
        "seed": reps.astype(np.uint64),
        "outcome": reps * 0.5,
    }
    ts = {
        "replicate": np.repeat(reps, steps),
        "step": np.tile(np.arange(steps, dtype=np.int64), n),
        "level": np.repeat(reps, steps) + np.tile(np.arange(steps), n) / 10,
    }
    ts["scenario"] = np.full(n * steps, scenario, dtype=object)
    key = f"s{scenario_index:08d}-r{first:09d}-n{n}"
    return ChunkResult(key, rows, ts, 0.0)


def test_timeseries_are_merged_in_plan_order_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "TS_BLOCK_ROWS", 7)  # many blocks, each smaller than a part
    store = ResultStore(tmp_path, flush_seconds=1e9, flush_rows=10**9)
    store.open("fp", 4, resume=False)
    chunks = [
        chunk_result(s, name, first, 4)
        for first in range(0, 12, 4)
        for s, name in enumerate(["zeta", "alpha"])
    ]
    rng = np.random.default_rng(3)
    for i in rng.permutation(len(chunks)):  # completion order is arbitrary
        store.write(chunks[i])
        if i % 2:
            store.flush()  # several parts, each with chunks of both scenarios
    store.flush()
    store.write(chunks[0])  # a chunk recomputed after an interruption: in two parts
    store.flush()
    store.finalize(["zeta", "alpha"])
    merged = pl.read_parquet(tmp_path / "timeseries.parquet")
    assert merged.columns == ["scenario", "replicate", "step", "level"]
    assert merged["scenario"].to_list() == ["zeta"] * 36 + ["alpha"] * 36
    assert merged["replicate"].to_list() == [r for r in range(12) for _ in range(3)] * 2
    assert merged["step"].to_list() == [0, 1, 2] * 24
    assert np.allclose(merged["level"], merged["replicate"] + merged["step"] / 10)


def test_time_series_rows_count_towards_a_flush(tmp_path):
    """A buffer is written once it holds flush_rows rows, time-series rows included: a big
    chunk of long series must not wait in memory because it has few replicate rows."""
    store = ResultStore(tmp_path, flush_seconds=1e9, flush_rows=100)
    store.open("fp", 10, resume=False)
    store.write(chunk_result(0, "a", 0, 10, steps=3))  # 10 + 30 rows: stays buffered
    assert not list(store.parts.glob("*.parquet"))
    store.write(chunk_result(0, "a", 10, 10, steps=20))  # + 10 + 200 rows: written
    assert len(list(store.parts.glob("*.timeseries.parquet"))) == 1
    assert store.completed() == {"s00000000-r000000000-n10", "s00000000-r000000010-n10"}
