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

Every part proves what it holds: its Parquet metadata names the plan fingerprint it was
computed for and the chunks it holds (those whose replicates raised among them), so a part is
never reused for another experiment, a chunk found in two parts (recomputed after an
interruption) is merged once, and a chunk that holds errors is computed again on resume. Files
are fsynced before the rename that publishes them; a part that cannot be read is set aside in
``chunks/damaged/`` and its chunks are computed again.

``compact`` (after the last ``finalize``, unless ``keep_parts=true``) replaces the parts by
one part holding each chunk's chosen copy, so a finished run holds a handful of files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from kibs_mc.analysis.statistics import RunningSummary
from kibs_mc.errors import ExecutionError, UserError
from kibs_mc.run.chunk import ChunkResult

PARTS = "chunks"
#: The run directory's record of its plan: fingerprint, chunk size, the invocation's overrides.
PLAN_FILE = "plan.json"
CHUNK_COLUMN = "_chunk"


#: Columns of errors.parquet; seeds are 64-bit unsigned like the replicates' ``seed`` column.
ERROR_SCHEMA = {"scenario": pl.String, "replicate": pl.Int64, "seed": pl.UInt64, "error": pl.String}
#: Parquet metadata keys of a part: the plan fingerprint, its chunks, those holding errors.
PLAN_KEY, CHUNKS_KEY, FAILED_KEY = "kibs_mc.plan", "kibs_mc.chunks", "kibs_mc.failed_chunks"
#: Where parts that cannot be read are moved (never deleted: they may still be inspected).
DAMAGED = "damaged"
#: Write errors that mean "this file system takes no more results": disk full, quota, file
#: size limit, read-only or not writable.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


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


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path) -> None:
    """Rename a fully written temporary file into place, durably: the data is fsynced before
    the rename (a crash never leaves a published file with missing blocks) and the directory
    after it (the new name survives a crash)."""
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _write_atomic(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        frame.write_parquet(tmp, compression="lz4", metadata=metadata)
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file (plan.json, config.yaml) by fsync and rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refused_write(exc: BaseException) -> int | None:
    """The errno when ``exc`` is a write the file system refused (full, quota, file too large,
    read-only), else None. Polars and Arrow report the OS error inside their own exceptions
    (``... File too large (os error 27)``)."""
    if isinstance(exc, (UserError, ExecutionError)):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        text = str(exc)
        found = re.search(r"os error (\d+)", text)
        code = int(found.group(1)) if found else next(
            (e for e in FULL_ERRNOS if os.strerror(e) in text), None)
    return code if code in FULL_ERRNOS else None


def out_of_space(code: int, directory: Path) -> ExecutionError:
    """One message for results the file system refused to take (exit 1, resume hint)."""
    return ExecutionError(f"cannot write results in {directory}: {os.strerror(code)}. Free space "
                          "there (or make it writable).")


def read_plan(run_dir: Path) -> dict | None:
    """The run directory's plan.json, or None when there is none.

    Raises UserError naming the file when it is not a kibs-mc plan (truncated, edited...).
    """
    path = Path(run_dir) / PLAN_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc}).") from None
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is damaged ({exc.msg} at character {exc.pos}); it records which "
                        "experiment the run directory holds: restore it, or pick another "
                        "hydra.run.dir.") from None
    if not (isinstance(plan, dict) and isinstance(plan.get("fingerprint"), str)
            and isinstance(plan.get("chunk_size"), int) and isinstance(plan.get("overrides", []), list)):
        raise UserError(f"{path} is damaged (not a kibs-mc plan: an object with fingerprint, "
                        "chunk_size and overrides is expected); restore it, or pick another "
                        "hydra.run.dir.")
    return plan


def describe_differences(recorded: dict | None, current: dict | None) -> str:
    """``key (recorded a, now b)`` for each input that differs between two plans."""
    if not isinstance(recorded, dict) or not current:
        return "its configuration, seed or replicate count differ"

    def show(value: object) -> str:
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    differ = [f"{k} (recorded {show(recorded.get(k))}, now {show(current.get(k))})"
              for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    if not differ:
        return ("the scenarios' composed configurations differ although the same settings were "
                "given (a file in conf/ or kibs-mc itself changed since)")
    more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
    return "it differs in " + ", ".join(differ[:5]) + more


@dataclass(frozen=True)
class Part:
    """One flush on disk: ``<stem>.parquet`` (rows), maybe ``.timeseries`` and ``.errors``."""

    stem: str
    plan: str | None
    chunks: tuple[str, ...]
    failed: frozenset[str]


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
        self.fingerprint: str | None = None
        self._index: dict[str, Part] = {}

    # -- progress on disk
    def open(self, fingerprint: str, chunk_size: int, resume: bool,
             overrides: Sequence[str] = (), scenarios: Sequence[tuple[str, Sequence[str]]] = (),
             inputs: dict | None = None) -> set[str]:
        """Prepare the run directory; return the keys of chunks already completed.

        ``plan.json`` records the fingerprint, the chunk size, the invocation's overrides and
        the scenarios (name, overrides), from which a finished run can be logged later.

        Removes temporary files an interrupted run left behind and sets damaged parts aside.
        Raises UserError when the directory holds another plan's chunks, chunks without a
        plan, or chunks while ``resume`` is off (nothing computed is ever deleted).

        Args:
            inputs: what the fingerprint hashes, as flat ``key: value`` pairs; recorded in
                plan.json so that a refused resume can name what differs.
        """
        self.fingerprint = fingerprint
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            for stale in [*self.parts.glob("*.tmp"), *self.run_dir.glob("*.tmp")]:
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise UserError(f"cannot use the run directory {self.run_dir}: {exc.strerror}") from None
        recorded = read_plan(self.run_dir)
        self._index = self._scan()
        if self._index and recorded is None:
            raise UserError(
                f"run directory {self.run_dir} holds {len(self._index)} result parts in "
                f"{self.parts} but no plan.json, so nothing shows which experiment they belong "
                "to; pick another hydra.run.dir (or move chunks/ away)."
            )
        if recorded is not None and self._index:
            if not resume:
                raise UserError(
                    f"run directory {self.run_dir} already holds {len(self._chosen())} completed "
                    "chunks; rerun with resume=true to continue it, or pick another hydra.run.dir."
                )
            if recorded["fingerprint"] != fingerprint:
                raise UserError(
                    f"resume=true, but {self.run_dir} holds a different experiment "
                    f"({describe_differences(recorded.get('inputs'), inputs)}); run it with the "
                    "same overrides, or pick another hydra.run.dir."
                )
        for part in self._index.values():
            if part.plan != fingerprint:
                raise UserError(
                    f"{self.parts / (part.stem + '.parquet')} was not computed for this "
                    f"experiment's plan (" + (f"fingerprint {part.plan[:12]}" if part.plan else
                                               "no plan fingerprint: an older kibs-mc wrote it")
                    + f", this plan {fingerprint[:12]}); move it away, or pick another hydra.run.dir."
                )
        plan = {"fingerprint": fingerprint, "chunk_size": chunk_size, "overrides": list(overrides),
                "scenarios": [[name, list(own)] for name, own in scenarios], "inputs": inputs or {}}
        try:
            write_text_atomic(self.run_dir / PLAN_FILE, json.dumps(plan))
        except OSError as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.run_dir) from None
            raise
        return self.completed()

    def recorded_chunk_size(self) -> int | None:
        plan = read_plan(self.run_dir)
        return None if plan is None else int(plan["chunk_size"])

    def _scan(self) -> dict[str, Part]:
        """Every part on disk by stem, from the Parquet footers (no data is read); a part
        any of whose files cannot be read is set aside."""
        index: dict[str, Part] = {}
        for rows in sorted(self.parts.glob("*.parquet")):
            if rows.name.endswith((".timeseries.parquet", ".errors.parquet")):
                continue
            stem = rows.name[: -len(".parquet")]
            try:
                meta = pl.read_parquet_metadata(rows)
                for kind in ("timeseries", "errors"):
                    sibling = self.parts / f"{stem}.{kind}.parquet"
                    if sibling.exists():
                        pl.read_parquet_metadata(sibling)
                chunks = json.loads(meta.get(CHUNKS_KEY, "null"))
                if chunks is None:  # written before parts carried their chunk keys
                    chunks = pl.read_parquet(rows, columns=[CHUNK_COLUMN])[CHUNK_COLUMN].unique().to_list()
                failed = json.loads(meta.get(FAILED_KEY, "[]"))
            except Exception as exc:  # noqa: BLE001 - any unreadable part is set aside alike
                self._set_aside(stem, exc)
                continue
            index[stem] = Part(stem, meta.get(PLAN_KEY), tuple(chunks), frozenset(failed))
        return index

    def _set_aside(self, stem: str, reason: BaseException) -> None:
        """Move the files of a damaged part to chunks/damaged/; its chunks count as not done."""
        damaged = self.parts / DAMAGED
        damaged.mkdir(exist_ok=True)
        for path in self.parts.glob(f"{stem}.*parquet"):
            os.replace(path, damaged / path.name)
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        print(f"kibs-mc: warning: damaged result part {self.parts / (stem + '.parquet')} "
              f"({type(reason).__name__}: {first[:200]}) set aside in {damaged}; its chunks are "
              "computed again.", file=sys.stderr)

    def _chosen(self) -> dict[str, Part]:
        """For each chunk key, the part whose copy counts: the newest (part names sort by
        time), e.g. a chunk recomputed after an interruption or because it held errors."""
        chosen: dict[str, Part] = {}
        for stem in sorted(self._index):
            for key in self._index[stem].chunks:
                chosen[key] = self._index[stem]
        return chosen

    def completed(self) -> set[str]:
        """Keys of the chunks whose rows are on disk, without errors (a chunk with a failed
        replicate is computed again on resume: the failure may have been transient)."""
        return {k for k, part in self._chosen().items() if k not in part.failed}

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
        keys = [r.key for r in self._buffer]
        failed = sorted({r.key for r in self._buffer if getattr(r, "errors", ())})
        meta = {PLAN_KEY: self.fingerprint or "", CHUNKS_KEY: json.dumps(keys),
                FAILED_KEY: json.dumps(failed)}
        rows = _frame(self._buffer, "rows")
        try:
            if any(r.timeseries is not None for r in self._buffer):
                _write_atomic(_frame(self._buffer, "timeseries"),
                              self.parts / f"{name}.timeseries.parquet", meta)
            errors = [{**e, CHUNK_COLUMN: r.key} for r in self._buffer for e in getattr(r, "errors", ())]
            if errors:
                _write_atomic(pl.DataFrame(errors, schema={**ERROR_SCHEMA, CHUNK_COLUMN: pl.String}),
                              self.parts / f"{name}.errors.parquet", meta)
            _write_atomic(rows, self.parts / f"{name}.parquet", meta)
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.parts) from None
            raise
        self._index[name] = Part(name, self.fingerprint or None, tuple(keys), frozenset(failed))
        self.summary.update(rows)
        self._buffer.clear()
        self._buffered_rows = 0

    def _read(self, path: Path, keys: set[str], all_keys: bool) -> pl.DataFrame:
        """The rows of ``keys`` in a part file; a file that fails to read is set aside."""
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001
            stem = path.name.split(".")[0]
            self._set_aside(stem, exc)
            self._index.pop(stem, None)
            raise ExecutionError(f"result part {path} is damaged ({type(exc).__name__}); it was "
                                 "set aside, so its chunks are computed again.") from None
        return frame if all_keys else frame.filter(pl.col(CHUNK_COLUMN).is_in(list(keys)))

    def _selected(self, kind: str) -> list[tuple[Path, set[str], bool]]:
        """(file, chunk keys taken from it, whether that is all of them) for each part file
        of ``kind`` ("" rows, ".timeseries", ".errors") holding a chosen copy."""
        by_stem: dict[str, set[str]] = {}
        for key, part in self._chosen().items():
            by_stem.setdefault(part.stem, set()).add(key)
        out = []
        for stem in sorted(by_stem):
            path = self.parts / f"{stem}{kind}.parquet"
            if path.exists():
                out.append((path, by_stem[stem], by_stem[stem] >= set(self._index[stem].chunks)))
        return out

    def errors(self) -> pl.DataFrame:
        """Replicates that raised instead of finishing: scenario, replicate, seed, error."""
        frames = [self._read(p, keys, everything) for p, keys, everything in self._selected(".errors")]
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames).drop(CHUNK_COLUMN).sort("scenario", "replicate")

    # -- merged outputs
    def finalize(self, scenario_order: Sequence[str]) -> pl.DataFrame:
        """Merge parts into replicates.parquet (and timeseries.parquet); return the rows.

        Each chunk counts once, from the newest part that holds it, whatever else is on disk.
        """
        self.flush()
        order = {name: i for i, name in enumerate(scenario_order)}
        rank = pl.col("scenario").replace_strict(order, return_dtype=pl.Int64)
        frames = [self._read(p, keys, everything) for p, keys, everything in self._selected("")]
        rows = pl.concat(frames) if frames else pl.DataFrame()
        if CHUNK_COLUMN in rows.columns:
            rows = rows.drop(CHUNK_COLUMN)
        if rows.height:
            rows = rows.sort(rank, "replicate")
        try:
            _write_atomic(rows, self.run_dir / "replicates.parquet")
            ts_parts = self._selected(".timeseries")
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
            else:
                (self.run_dir / "errors.parquet").unlink(missing_ok=True)  # an earlier run's
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.run_dir) from None
            raise
        return rows

    # -- compaction
    def compact(self) -> int:
        """Replace the parts by one part holding each chunk's chosen copy; return the number
        of part files removed (0 when there is at most one part).

        Shared file systems suffer from many small files; a finished run keeps ``chunks/``
        as one part (rows, time series, errors) with the same metadata as any part: the plan
        fingerprint, its chunks and those holding errors, so resume and the plan checks work
        as before. Order of work: the new part is written and published (time series and
        errors first, the rows last, as in ``flush``), the directory fsynced, then the old
        parts are removed. A crash at any point leaves the old parts, or the new part, or
        both (the newest copy of a chunk counts; they hold the same rows): never a chunk lost.
        """
        import pyarrow.parquet as pq

        self.flush()
        chosen = self._chosen()
        stems = set(self._index)
        if len(stems) <= 1:
            return 0
        keys = sorted(chosen)
        failed = sorted(k for k, part in chosen.items() if k in part.failed)
        meta = {PLAN_KEY: self.fingerprint or "", CHUNKS_KEY: json.dumps(keys),
                FAILED_KEY: json.dumps(failed)}
        name = f"part-{time.time_ns():020d}-compact"
        try:
            for kind in (".timeseries", ".errors", ""):
                selected = self._selected(kind)
                if not selected:
                    continue
                path = self.parts / f"{name}{kind}.parquet"
                tmp = path.with_name(path.name + ".tmp")
                writer = None
                try:
                    for part, part_keys, everything in selected:
                        table = self._read(part, part_keys, everything).to_arrow()
                        if writer is None:
                            schema = table.schema.with_metadata(meta)
                            writer = pq.ParquetWriter(tmp, schema, compression="lz4")
                        writer.write_table(table.cast(schema))
                finally:
                    if writer is not None:
                        writer.close()
                _publish(tmp, path)
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.parts) from None
            raise
        _fsync(self.parts)
        removed = 0
        for stem in sorted(stems):
            for path in self.parts.glob(f"{stem}.*parquet"):
                path.unlink()
                removed += 1
        for orphan in self.parts.glob("*.parquet"):  # a sibling whose rows were never published
            if orphan.name.split(".")[0] != name:
                orphan.unlink()
                removed += 1
        _fsync(self.parts)
        self._index = {name: Part(name, self.fingerprint or None, tuple(keys), frozenset(failed))}
        return removed



#: Time-series rows ``finalize`` holds in memory at once. The series are many times the size
#: of the per-replicate rows (25 rows per replicate by default); concatenating and sorting them
#: whole made the driver's peak memory grow by ~4 KB per replicate (``scripts/bench.py memory``).
TS_BLOCK_ROWS = 50_000


def _write_timeseries_in_plan_order(parts: Sequence[tuple[Path, set[str], bool]], path: Path) -> None:
    """Merge time-series parts into ``path`` sorted by (scenario in plan order, replicate, step).

    ``parts``: each file with the chunk keys to take from it (each chunk from one file: the
    store chose which copy counts). Chunk keys sort in plan order (``s<scenario
    index>-r<first replicate>-n<count>``, zero padded) and each part holds whole chunks, so the
    chunks are taken in key order, a block of about ``TS_BLOCK_ROWS`` rows at a time, each read
    from the one part that holds it, and the blocks are appended to ``path`` as Parquet row
    groups. The driver's memory is one block whatever the run's size, and each part is read
    about once, because chunks complete roughly in plan order.
    """
    import pyarrow.parquet as pq

    where: dict[str, tuple[Path, int]] = {}
    for part, keys, _ in parts:
        counts = pl.read_parquet(part, columns=[CHUNK_COLUMN])[CHUNK_COLUMN].value_counts()
        for key, n in counts.iter_rows():
            if key in keys:
                where[key] = (part, n)
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
        empty = pl.read_parquet(parts[0][0]).head(0).drop(CHUNK_COLUMN)
        empty.select("scenario", *[c for c in empty.columns if c != "scenario"]).write_parquet(tmp)
    _publish(tmp, path)


def write_summary(summary: pl.DataFrame, run_dir: Path) -> Path:
    path = Path(run_dir) / "summary.parquet"
    _write_atomic(summary, path)
    return path


def write_parquet(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` atomically (temporary name, then rename)."""
    _write_atomic(frame, Path(path))
    return Path(path)
