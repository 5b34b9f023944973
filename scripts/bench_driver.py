"""Driver ingest throughput: replicate rows per second the driver takes in.

For each synthetic completed chunk (Cowan-Jonard outcome columns, ``--chunk-size`` rows) the
timed loop does what the driver does with a real one: receive it (unpickle the bytes a worker
sent, as ``ray.get`` does), ingest it into the ResultStore (buffer, running summaries, Parquet
part every second) and, at the end, merge the parts into ``replicates.parquet`` and write the
summary. Prints one JSON object per line: {"name", "value", "unit"}.

    python scripts/bench_driver.py [--rows 2000000] [--chunk-size 50] [--scenarios 6]
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from kibs_mc.analysis.statistics import summarize
from kibs_mc.models.cowan_jonard import OUTCOMES
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.store import ResultStore, write_summary


def synthetic_chunks(rows: int, chunk_size: int, scenarios: int) -> list[bytes]:
    """Pickled chunk results, interleaved across scenarios like the plan's chunks."""
    rng = np.random.default_rng(1)
    names = [f"scenario-{i}" for i in range(scenarios)]
    out = []
    for start in range(0, rows // scenarios, chunk_size):
        reps = np.arange(start, min(start + chunk_size, rows // scenarios), dtype=np.int64)
        n = len(reps)
        for index, name in enumerate(names):
            cols: dict[str, np.ndarray] = {
                "scenario": np.full(n, name, dtype=object),
                "replicate": reps,
                "seed": rng.integers(0, 2**63, n).astype(np.uint64),
            }
            for outcome, dtype in OUTCOMES.items():
                cols[outcome] = (rng.random(n) * 1e4).astype(dtype)
            key = f"s{index:08d}-r{int(reps[0]):09d}-n{n}"
            out.append(pickle.dumps(ChunkResult(key, cols, None, 0.01), protocol=5))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--scenarios", type=int, default=6)
    args = parser.parse_args()
    payloads = synthetic_chunks(args.rows, args.chunk_size, args.scenarios)
    rows = (args.rows // args.scenarios) * args.scenarios
    with tempfile.TemporaryDirectory(prefix="kibs-bench-driver-") as tmp:
        store = ResultStore(Path(tmp))
        store.open("bench", args.chunk_size, resume=False)
        started = time.perf_counter()
        for payload in payloads:
            store.write(pickle.loads(payload))
        store.flush()
        streamed = time.perf_counter() - started
        merged = store.finalize([f"scenario-{i}" for i in range(args.scenarios)])
        write_summary(summarize(merged, list(OUTCOMES)), Path(tmp))
        total = time.perf_counter() - started
        assert merged.height == rows, (merged.height, rows)
    for name, value, unit in (
        ("driver_ingest_rows_per_s", rows / streamed, "rows/s"),
        ("driver_ingest_chunks_per_s", len(payloads) / streamed, "chunks/s"),
        ("driver_end_to_end_rows_per_s", rows / total, "rows/s"),
        ("driver_rows", rows, "rows"),
        ("driver_chunk_size", args.chunk_size, "rows/chunk"),
    ):
        print(json.dumps({"name": name, "value": round(value, 1), "unit": unit}))


if __name__ == "__main__":
    main()
