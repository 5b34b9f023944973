"""Results on disk: completed chunks buffered briefly, then written as Parquet parts.

The driver ingests each completed chunk into a small in-memory buffer and writes the buffer as
one Parquet part (to a temporary name, then renamed) every ``flush_seconds`` or
``flush_rows`` rows, and always before it returns or dies of an exception. Writing one part
per chunk would cap the driver at a few thousand chunks per second; batching keeps ingest far
above what 1 600 cores produce (``scripts/bench_driver.py``). A driver killed with SIGKILL
loses at most the last ``flush_seconds`` of results: those chunks are simply recomputed by
``resume=true``. Every part carries a ``_chunk`` column naming the chunk of each row, which is
how a resumed run knows what is done.

``finalize`` merges the parts into ``replicates.parquet`` and ``timeseries.parquet`` in plan
order (scenario, then replicate), which makes the files independent of the executor, the
number of workers and the order chunks finished in.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from kibs_mc.analysis.statistics import RunningSummary
from kibs_mc.errors import UserError
from kibs_mc.run.chunk import ChunkResult

PARTS = "chunks"
#: The run directory's record of its plan: fingerprint, chunk size, the invocation's overrides.
PLAN_FILE = "plan.json"
CHUNK_COLUMN = "_chunk"


#: Columns of errors.parquet; seeds are 64-bit unsigned like the replicates' ``seed`` column.
ERROR_SCHEMA = {"scenario": pl.String, "replicate": pl.Int64, "seed": pl.UInt64, "error": pl.String}


def _frame(results: Sequence[ChunkResult], attr: str) -> pl.DataFrame:
    """One frame from the ``rows`` (or ``timeseries``) columns of many chunk results."""
    parts = [(r.key, getattr(r, attr)) for r in results if getattr(r, attr) is not None]
    data: dict[str, pl.Series] = {}
    for name in parts[0][1]:
        values = np.concatenate([cols[name] for _, cols in parts])
        # pl.Series takes an object array of str directly (much faster than .tolist()); the
        # dtype keeps an empty object array (a batch whose replicates all failed) writable.
        data[name] = pl.Series(name, values, dtype=pl.String) if values.dtype == object else \
            pl.Series(name, values)
    counts = [len(next(iter(cols.values()))) for _, cols in parts]
    keys = pl.Series(CHUNK_COLUMN, [k for k, _ in parts])
    data[CHUNK_COLUMN] = keys.gather(np.repeat(np.arange(len(parts)), counts))
    return pl.DataFrame(data)


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp, compression="lz4")
    os.replace(tmp, path)


def read_plan(run_dir: Path) -> dict | None:
    """The plan recorded in ``run_dir`` (None when there is none)."""
    path = Path(run_dir) / PLAN_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


class ResultStore:
    """The run directory's results: chunk parts, merged files, plan fingerprint.

    Args:
        run_dir: the run directory (``hydra.run.dir``).
        flush_seconds: longest time a completed chunk waits in memory before it is on disk.
        flush_rows: most rows (replicate and time-series rows) held in memory before they
            are written.
    """

    def __init__(self, run_dir: Path, flush_seconds: float = 1.0, flush_rows: int = 200_000) -> None:
        self.run_dir = Path(run_dir)
        self.parts = self.run_dir / PARTS
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.summary = RunningSummary()
        self._buffer: list[ChunkResult] = []
        self._buffered_rows = 0
        self._last_flush = time.monotonic()

    # -- progress on disk
    def open(self, fingerprint: str, chunk_size: int, resume: bool,
             overrides: Sequence[str] = (), scenarios: Sequence[tuple[str, Sequence[str]]] = ()) -> set[str]:
        """Prepare the run directory; return the keys of chunks already completed.

        ``plan.json`` records the fingerprint, the chunk size, the invocation's overrides and
        the scenarios (name, overrides), from which a finished run can be logged later.

        Removes temporary files an interrupted run left behind. Raises UserError when the
        directory holds another plan's chunks, or when it holds chunks and ``resume`` is off
        (nothing computed is ever deleted).
        """
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the run directory {self.run_dir}: {exc.strerror}") from None
        for stale in [*self.parts.glob("*.tmp"), *self.run_dir.glob("*.tmp")]:
            stale.unlink(missing_ok=True)
        plan_file = self.run_dir / PLAN_FILE
        done = self.completed()
        recorded = read_plan(self.run_dir)
        if recorded is not None:
            if done and not resume:
                raise UserError(
                    f"run directory {self.run_dir} already holds {len(done)} completed chunks; "
                    "rerun with resume=true to continue it, or pick another hydra.run.dir."
                )
            if resume and recorded.get("fingerprint") != fingerprint:
                raise UserError(
                    f"resume=true, but {self.run_dir} holds a different experiment (its "
                    "configuration, seed or replicate count differ); run it with the same "
                    "overrides, or pick another hydra.run.dir."
                )
        plan = {"fingerprint": fingerprint, "chunk_size": chunk_size, "overrides": list(overrides),
                "scenarios": [[name, list(own)] for name, own in scenarios]}
        tmp = plan_file.with_name(PLAN_FILE + ".tmp")
        tmp.write_text(json.dumps(plan))
        os.replace(tmp, plan_file)
        return done

    def recorded_chunk_size(self) -> int | None:
        recorded = read_plan(self.run_dir)
        return None if recorded is None else int(recorded["chunk_size"])

    def _row_parts(self) -> list[Path]:
        return sorted(p for p in self.parts.glob("*.parquet")
                      if not p.name.endswith((".timeseries.parquet", ".errors.parquet")))

    def completed(self) -> set[str]:
        """Keys of the chunks whose rows are on disk."""
        done: set[str] = set()
        for part in self._row_parts():
            done.update(pl.read_parquet(part, columns=[CHUNK_COLUMN])[CHUNK_COLUMN].unique().to_list())
        return done

    def write(self, result: ChunkResult) -> None:
        """Ingest one completed chunk; it is on disk within ``flush_seconds``."""
        self._buffer.append(result)
        n = len(result.rows["replicate"])
        # Time-series rows count too: at 25 per replicate they are most of what is buffered.
        self._buffered_rows += n + (len(result.timeseries["replicate"]) if result.timeseries else 0)
        if self._buffered_rows >= self.flush_rows or \
                time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered chunks as one part (time series first: the rows mark them done)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        if any(r.timeseries is not None for r in self._buffer):
            _write_atomic(_frame(self._buffer, "timeseries"), self.parts / f"{name}.timeseries.parquet")
        errors = [e for r in self._buffer for e in getattr(r, "errors", ())]
        if errors:
            _write_atomic(pl.DataFrame(errors, schema=ERROR_SCHEMA), self.parts / f"{name}.errors.parquet")
        rows = _frame(self._buffer, "rows")
        _write_atomic(rows, self.parts / f"{name}.parquet")
        self.summary.update(rows)
        self._buffer.clear()
        self._buffered_rows = 0

    def errors(self) -> pl.DataFrame:
        """Replicates that raised instead of finishing: scenario, replicate, seed, error."""
        parts = sorted(self.parts.glob("*.errors.parquet"))
        if not parts:
            return pl.DataFrame()
        errors = pl.concat([pl.read_parquet(p) for p in parts])
        # A chunk recomputed after an interruption may report the same replicate twice.
        return errors.unique(subset=["scenario", "replicate"], keep="first").sort("scenario", "replicate")

    # -- merged outputs
    def finalize(self, scenario_order: Sequence[str]) -> pl.DataFrame:
        """Merge parts into replicates.parquet (and timeseries.parquet); return the rows."""
        self.flush()
        order = {name: i for i, name in enumerate(scenario_order)}
        rank = pl.col("scenario").replace_strict(order, return_dtype=pl.Int64)
        row_parts = self._row_parts()
        rows = pl.concat([pl.read_parquet(p) for p in row_parts]) if row_parts else pl.DataFrame()
        if CHUNK_COLUMN in rows.columns:
            rows = rows.drop(CHUNK_COLUMN)
        if rows.height:
            rows = rows.sort(rank, "replicate")
        _write_atomic(rows, self.run_dir / "replicates.parquet")
        ts_parts = sorted(self.parts.glob("*.timeseries.parquet"))
        if ts_parts:
            _write_timeseries_in_plan_order(ts_parts, self.run_dir / "timeseries.parquet")
        else:
            _write_atomic(pl.DataFrame({"scenario": [], "replicate": [], "step": []},
                                       schema={"scenario": pl.String, "replicate": pl.Int64,
                                               "step": pl.Int64}),
                          self.run_dir / "timeseries.parquet")
        errors = self.errors()
        if errors.height:
            _write_atomic(errors, self.run_dir / "errors.parquet")
        return rows


#: Time-series rows ``finalize`` holds in memory at once. The series are many times the size
#: of the per-replicate rows (25 rows per replicate by default); concatenating and sorting them
#: whole made the driver's peak memory grow by ~4 KB per replicate (``scripts/bench.py memory``).
TS_BLOCK_ROWS = 50_000


def _write_timeseries_in_plan_order(parts: Sequence[Path], path: Path) -> None:
    """Merge time-series parts into ``path`` sorted by (scenario in plan order, replicate, step).

    Chunk keys sort in plan order (``s<scenario index>-r<first replicate>-n<count>``, zero
    padded) and each part holds whole chunks, so the chunks are taken in key order, a block of
    about ``TS_BLOCK_ROWS`` rows at a time, each read from the one part that holds it (a chunk
    recomputed after an interruption may be in two), and the blocks are appended to ``path``
    as Parquet row groups. The driver's memory is one block whatever the run's size, and each
    part is read about once, because chunks complete roughly in plan order.
    """
    import pyarrow.parquet as pq

    where: dict[str, tuple[Path, int]] = {}
    for part in parts:
        counts = pl.read_parquet(part, columns=[CHUNK_COLUMN])[CHUNK_COLUMN].value_counts()
        for key, n in counts.iter_rows():
            where.setdefault(key, (part, n))
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    block: dict[Path, list[str]] = {}
    block_rows = 0

    def write_block() -> None:
        nonlocal writer
        rank = {k: i for i, k in enumerate(sorted(k for keys in block.values() for k in keys))}
        ts = pl.concat([pl.scan_parquet(p).filter(pl.col(CHUNK_COLUMN).is_in(keys)).collect()
                        for p, keys in block.items()])
        ts = ts.with_columns(pl.col(CHUNK_COLUMN).replace_strict(rank, return_dtype=pl.Int64))
        ts = ts.sort(CHUNK_COLUMN, "replicate", "step").drop(CHUNK_COLUMN)
        arrow = ts.select("scenario", *[c for c in ts.columns if c != "scenario"]).to_arrow()
        writer = writer or pq.ParquetWriter(tmp, arrow.schema, compression="lz4")
        writer.write_table(arrow)

    try:
        for key in sorted(where):
            part, n = where[key]
            block.setdefault(part, []).append(key)
            block_rows += n
            if block_rows >= TS_BLOCK_ROWS:
                write_block()
                block, block_rows = {}, 0
        if block:
            write_block()
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no rows in any part: an empty file with the parts' columns
        empty = pl.read_parquet(parts[0]).head(0).drop(CHUNK_COLUMN)
        empty.select("scenario", *[c for c in empty.columns if c != "scenario"]).write_parquet(tmp)
    os.replace(tmp, path)


def write_summary(summary: pl.DataFrame, run_dir: Path) -> Path:
    path = Path(run_dir) / "summary.parquet"
    _write_atomic(summary, path)
    return path


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` atomically (temporary name, then rename)."""
    _write_atomic(frame, Path(path))
    return Path(path)
