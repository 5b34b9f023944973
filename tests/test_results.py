"""Summaries kept while results stream in agree with the summary of all rows."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from kibs_mc.analysis.statistics import summarize
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.store import ResultStore


def chunk(scenario_index: int, scenario: str, first: int, values: np.ndarray) -> ChunkResult:
    n = len(values)
    reps = np.arange(first, first + n, dtype=np.int64)
    rows = {
        "scenario": np.full(n, scenario, dtype=object),
        "replicate": reps,
        "seed": reps.astype(np.uint64),
        "level": values,
    }
    return ChunkResult(f"s{scenario_index:08d}-r{first:09d}-n{n}", rows, None, 0.0)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    flush_every=st.integers(1, 4),
)
def test_running_summary_matches_the_summary_of_all_rows(tmp_path_factory, sizes, seed, flush_every):
    rng = np.random.default_rng(seed)
    store = ResultStore(tmp_path_factory.mktemp("run"), flush_seconds=1e9, flush_rows=10**9)
    store.open("fp", 1, resume=False)
    first = {"a": 0, "b": 0}
    for i, size in enumerate(sizes):  # chunks of both scenarios, flushed in batches
        name = "ab"[i % 2]
        store.write(chunk(i % 2, name, first[name], rng.normal(10 * (i % 2), 1 + i % 3, size)))
        first[name] += size
        if i % flush_every == 0:
            store.flush()
    store.flush()
    rows = store.finalize(["a", "b"])
    want = summarize(rows, ["level"]).sort("scenario")
    got = store.summary.frame().sort("scenario")
    assert got["n"].to_list() == want["n"].to_list()
    assert np.allclose(got["mean"].to_numpy(), want["mean"].to_numpy())
    assert np.allclose(got["sd"].to_numpy(), want["sd"].to_numpy(), equal_nan=True)
    halves = ((want["ci_high"] - want["ci_low"]) / 2).drop_nans().drop_nulls()
    widest = store.summary.widest_half_width("level")
    if halves.len():
        assert np.isclose(widest, halves.max())
    else:
        assert widest is None
    assert store.summary.widest_half_width("no such outcome") is None


def test_progress_shows_the_running_precision(tmp_path):
    from kibs_mc.experiments.pipeline import running_precision

    store = ResultStore(tmp_path, flush_seconds=1e9, flush_rows=10**9)
    store.open("fp", 1, resume=False)
    assert running_precision(store, "level") == ""  # nothing yet
    store.write(chunk(0, "a", 0, np.array([1.0, 2.0, 3.0, 4.0])))
    store.flush()
    want = summarize(pl.DataFrame({"scenario": ["a"] * 4, "level": [1.0, 2.0, 3.0, 4.0]}), ["level"])
    half = (want["ci_high"][0] - want["ci_low"][0]) / 2
    assert running_precision(store, "level") == f"level ±{half:.3g}"
