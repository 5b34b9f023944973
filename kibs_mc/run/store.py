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
computed for, the chunks it holds (those whose replicates raised among them) and its other
files, so a part is never reused for another experiment, a chunk found in two parts (recomputed
after an interruption) is merged once, and a chunk that holds errors is computed again on
resume. Every Parquet file kibs-mc writes also carries the SHA-256 of its own bytes
(``CHECKSUM_KEY``, taken with that value blanked): resume checks every part and every final file
against it before using them, so a flipped bit, an edited value or row, or another run's file is
noticed wherever it lies. Files are fsynced before the rename that publishes them; a part that
cannot be read, is incomplete or fails its check is set aside in ``chunks/damaged/``, named, and
its chunks are computed again.

``compact`` (after the last ``finalize``, unless ``keep_parts=true``) removes ``chunks/``: the
final files then are the run's record. Each carries in its Parquet metadata the plan
fingerprint, its chunks' rows in file order and (replicates.parquet) the chunks holding errors,
and ``compacted.json`` beside them names the files that belong together. Compaction reads the
final files back and checks them before any part is removed. Resume checks every final file
present (listed in ``compacted.json`` or not) and reads a compacted run's chunks from them;
when it has chunks to compute (a chunk with errors), the final files are first written back as
one part ("uncompacted"), so every step of it is crash safe the same way as any part.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from kibs_mc.analysis.statistics import RunningSummary
from kibs_mc.errors import ExecutionError, UserError
from kibs_mc.run import interrupt
from kibs_mc.run.chunk import ChunkResult
from kibs_mc.run.code import CODE, changed_code

PARTS = "chunks"
#: The run directory's record of its plan: fingerprint, chunk size, the invocation's overrides.
PLAN_FILE = "plan.json"
CHUNK_COLUMN = "_chunk"


#: Columns of errors.parquet; seeds are 64-bit unsigned like the replicates' ``seed`` column.
ERROR_SCHEMA = {"scenario": pl.String, "replicate": pl.Int64, "seed": pl.UInt64, "error": pl.String}
#: Parquet metadata keys of a part: the plan fingerprint, its chunks, those holding errors, and
#: (in its rows file) the kinds of its other files (``[".timeseries", ".errors"]``, as written).
PLAN_KEY, CHUNKS_KEY, FAILED_KEY = "kibs_mc.plan", "kibs_mc.chunks", "kibs_mc.failed_chunks"
SIBLINGS_KEY = "kibs_mc.siblings"
#: Parquet metadata keys of a final file: its rows' chunks in file order (``[[key, rows],
#: ...]``, one entry per run of rows) and the name of the finalize that wrote it.
ROWS_KEY, FINAL_KEY = "kibs_mc.chunk_rows", "kibs_mc.final"
#: Written by ``compact`` once the final files hold every chunk: their finalize's name, plan
#: fingerprint and files. While it exists, the final files are the run's record of its chunks.
COMPACTED = "compacted.json"
#: The final files by part-file kind ("" rows, ".timeseries", ".errors").
FINAL_FILES = {"": "replicates.parquet", ".timeseries": "timeseries.parquet", ".errors": "errors.parquet"}
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
        data[name] = (
            pl.Series(name, values, dtype=pl.String) if values.dtype == object else pl.Series(name, values)
        )
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


#: Parquet metadata key of every file kibs-mc writes: the SHA-256 of the file's bytes, taken with
#: this key's own value set to SEAL_PLACEHOLDER (a file cannot hold its own hash otherwise).
CHECKSUM_KEY = "kibs_mc.sha256"
SEAL_PLACEHOLDER = "0" * 64
#: How the key and its value's length sit in the footer: a Parquet KeyValue in Thrift's compact
#: encoding (field 1, the key, a binary; field 2, the value, a binary of 64 bytes).
_SEAL_AT = CHECKSUM_KEY.encode() + b"\x18\x40"
_BLOCK = 1 << 20


def _sealed(metadata: dict[str, str] | None) -> dict[str, str]:
    """``metadata`` with room for the content checksum (filled in by ``_seal``)."""
    return {**(metadata or {}), CHECKSUM_KEY: SEAL_PLACEHOLDER}


def _checksum_at(f: BinaryIO, size: int) -> int | str:
    """The offset of the content checksum's value in an open Parquet file, or why there is
    none."""
    if size < 12:
        return "not a Parquet file (too short)"
    f.seek(size - 8)
    tail = f.read(8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or not 4 <= size - 8 - length < size:
        return "not a Parquet file (no footer)"
    f.seek(size - 8 - length)
    footer = f.read(length)
    at = footer.find(_SEAL_AT)
    if at < 0 or footer.find(_SEAL_AT, at + 1) >= 0:
        return "no content checksum"
    return size - 8 - length + at + len(_SEAL_AT)


def _digest(f: BinaryIO, size: int, at: int) -> str:
    """SHA-256 of the file with the 64 bytes at ``at`` read as SEAL_PLACEHOLDER."""
    h = hashlib.sha256()
    f.seek(0)
    done = 0
    while done < at:
        block = f.read(min(_BLOCK, at - done))
        h.update(block)
        done += len(block)
    h.update(SEAL_PLACEHOLDER.encode())
    f.seek(at + 64)
    while block := f.read(_BLOCK):
        h.update(block)
    return h.hexdigest()


def _seal(path: Path) -> None:
    """Write the content checksum into a Parquet file written with ``_sealed`` metadata."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        at = _checksum_at(f, size)
        if isinstance(at, str):
            raise RuntimeError(f"{path} was written without room for its checksum ({at})")
        f.seek(at)
        if f.read(64) != SEAL_PLACEHOLDER.encode():
            raise RuntimeError(f"{path} is sealed already")
        digest = _digest(f, size, at)
        f.seek(at)
        f.write(digest.encode())


def content_check(path: Path) -> str | None:
    """None when the Parquet file at ``path`` holds what kibs-mc wrote (its content checksum
    matches), else why not: no checksum, or a content changed since (a flipped bit, a row
    edited or added, another run's file)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            at = _checksum_at(f, size)
            if isinstance(at, str):
                return at
            f.seek(at)
            recorded = f.read(64)
            if _digest(f, size, at).encode() != recorded:
                return "content checksum mismatch: changed since kibs-mc wrote it"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


class DamagedFile(Exception):
    """A result file whose content is not what kibs-mc wrote (``content_check``)."""


def _publish(tmp: Path, path: Path) -> None:
    """Seal a fully written temporary Parquet file (its content checksum) and rename it into
    place, durably: the data is fsynced before the rename (a crash never leaves a published file
    with missing blocks) and the directory after it (the new name survives a crash)."""
    _seal(tmp)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _write_atomic(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        frame.write_parquet(tmp, compression="lz4", metadata=_sealed(metadata))
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
        code = (
            int(found.group(1)) if found else next((e for e in FULL_ERRNOS if os.strerror(e) in text), None)
        )
    return code if code in FULL_ERRNOS else None


def out_of_space(code: int, directory: Path) -> ExecutionError:
    """One message for results the file system refused to take (exit 1, resume hint)."""
    return ExecutionError(
        f"cannot write results in {directory}: {os.strerror(code)}. Free space there (or make it writable)."
    )


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
        raise UserError(
            f"{path} is damaged ({exc.msg} at character {exc.pos}); it records which "
            "experiment the run directory holds: restore it, or pick another "
            "hydra.run.dir."
        ) from None
    if not (
        isinstance(plan, dict)
        and isinstance(plan.get("fingerprint"), str)
        and isinstance(plan.get("chunk_size"), int)
        and isinstance(plan.get("overrides", []), list)
    ):
        raise UserError(
            f"{path} is damaged (not a kibs-mc plan: an object with fingerprint, "
            "chunk_size and overrides is expected); restore it, or pick another "
            "hydra.run.dir."
        )
    return plan


def describe_differences(recorded: dict | None, current: dict | None) -> str:
    """``key (recorded a, now b)`` for each setting that differs between two plans (the code
    is named by :func:`refused_resume`)."""
    if not isinstance(recorded, dict) or not current:
        return "its configuration, seed or replicate count differ"
    recorded = {k: v for k, v in recorded.items() if not k.startswith(CODE)}
    current = {k: v for k, v in current.items() if not k.startswith(CODE)}

    def show(value: object) -> str:
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    differ = [
        f"{k} (recorded {show(recorded.get(k))}, now {show(current.get(k))})"
        for k in sorted(set(recorded) | set(current))
        if recorded.get(k) != current.get(k)
    ]
    if not differ:
        return (
            "the scenarios' composed configurations differ although the same settings were "
            "given (a file in conf/ or kibs-mc itself changed since)"
        )
    more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
    return "it differs in " + ", ".join(differ[:5]) + more


def refused_resume(run_dir: Path, recorded: dict | None, current: dict | None) -> UserError:
    """Why ``run_dir`` cannot be resumed with the plan whose inputs are ``current``: the code
    that computes the results changed (named module by module), or the settings differ."""
    recorded = recorded if isinstance(recorded, dict) else {}
    current = current or {}
    if any(k.startswith(CODE) for k in current):
        changed = (
            changed_code(recorded, current)
            if any(k.startswith(CODE) for k in recorded)
            else ["not recorded by the kibs-mc that started it"]
        )
        if changed:
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            settings = describe_differences(recorded, current)
            return UserError(
                f"resume=true, but the code that computes the results is not the code that "
                f"started {run_dir} ({', '.join(changed[:5])}{more}), and a run never mixes "
                "results of two versions. Start afresh: the same command without resume=true "
                "and with another hydra.run.dir (or move the directory away); or finish it with "
                "the kibs-mc that started it."
                + (
                    f" Its settings differ too: {settings.removeprefix('it differs in ')}."
                    if settings.startswith("it differs in")
                    else ""
                )
            )
    return UserError(
        f"resume=true, but {run_dir} holds a different experiment "
        f"({describe_differences(recorded, current)}); run it with the same overrides, or pick "
        "another hydra.run.dir."
    )


@dataclass(frozen=True)
class Part:
    """One flush on disk: ``<stem>.parquet`` (rows), maybe ``.timeseries`` and ``.errors``."""

    stem: str
    plan: str | None
    chunks: tuple[str, ...]
    failed: frozenset[str]
    #: the final files of a compacted run (no ``_chunk`` column; chunk rows in the metadata)
    final: bool = False


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
        #: the name the last ``finalize`` gave the final files (``compact`` records it)
        self._finalized: str | None = None
        self._scenario_order: Sequence[str] = ()
        #: files whose content check passed: path -> (inode, size, mtime) when it did
        self._checked: dict[Path, tuple[int, int, int]] = {}

    # -- progress on disk
    def open(
        self,
        fingerprint: str,
        chunk_size: int,
        resume: bool,
        overrides: Sequence[str] = (),
        scenarios: Sequence[tuple[str, Sequence[str]]] = (),
        inputs: dict | None = None,
    ) -> set[str]:
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
        final = self._scan_final()
        if final is not None:
            if (self.parts / f"{_expanded(final.stem)}.parquet").exists():
                self._drop_manifest()  # killed while uncompacting: the part holds every chunk
            else:
                self._index[final.stem] = final
        self._refuse_other_results(recorded, fingerprint, resume, inputs)
        plan = {
            "fingerprint": fingerprint,
            "chunk_size": chunk_size,
            "overrides": list(overrides),
            "scenarios": [[name, list(own)] for name, own in scenarios],
            "inputs": inputs or {},
        }
        try:
            write_text_atomic(self.run_dir / PLAN_FILE, json.dumps(plan))
        except OSError as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.run_dir) from None
            raise
        return self.completed()

    def _refuse_other_results(
        self, recorded: dict | None, fingerprint: str, resume: bool, inputs: dict | None
    ) -> None:
        """UserError when the parts on disk are not this plan's to continue: parts without a
        ``plan.json``, parts while ``resume`` is off, another plan's ``plan.json`` or parts."""
        if self._index and recorded is None:
            where = (
                f"{COMPACTED} and its files"
                if any(p.final for p in self._index.values())
                else f"{len(self._index)} result parts in {self.parts}"
            )
            raise UserError(
                f"run directory {self.run_dir} holds {where} but no plan.json, so nothing shows "
                "which experiment they belong to; pick another hydra.run.dir (or move them away)."
            )
        if recorded is not None and self._index:
            if not resume:
                raise UserError(
                    f"run directory {self.run_dir} already holds {len(self._chosen())} completed "
                    "chunks; rerun with resume=true to continue it, or pick another hydra.run.dir."
                )
            if recorded["fingerprint"] != fingerprint:
                raise refused_resume(self.run_dir, recorded.get("inputs"), inputs)
        for part in self._index.values():
            if part.plan != fingerprint:
                raise UserError(
                    f"{self.run_dir / COMPACTED if part.final else self.parts / (part.stem + '.parquet')}"
                    " was not computed for this "
                    f"experiment's plan ("
                    + (
                        f"fingerprint {part.plan[:12]}"
                        if part.plan
                        else "no plan fingerprint: an older kibs-mc wrote it"
                    )
                    + f", this plan {fingerprint[:12]}); move it away, or pick another hydra.run.dir."
                )

    def recorded_chunk_size(self) -> int | None:
        plan = read_plan(self.run_dir)
        return None if plan is None else int(plan["chunk_size"])

    def _scan(self) -> dict[str, Part]:
        """Every part on disk by stem, from the Parquet footers; a part any of whose files is
        missing, cannot be read or fails its content check is set aside."""
        index: dict[str, Part] = {}
        for rows in sorted(self.parts.glob("*.parquet")):
            if rows.name.endswith((".timeseries.parquet", ".errors.parquet")):
                continue
            stem = rows.name[: -len(".parquet")]
            try:
                meta = pl.read_parquet_metadata(rows)
                siblings = json.loads(meta[SIBLINGS_KEY])
                for kind in ("", *siblings):
                    self._verify(self.parts / f"{stem}{kind}.parquet")
                chunks = json.loads(meta[CHUNKS_KEY])
                failed = json.loads(meta.get(FAILED_KEY, "[]"))
            except Exception as exc:  # noqa: BLE001 - any unreadable part is set aside alike
                interrupt.raise_if_stopping(exc)  # a stop that came out of Polars is no damage
                self._set_aside(stem, exc)
                continue
            index[stem] = Part(stem, meta.get(PLAN_KEY), tuple(chunks), frozenset(failed))
        return index

    def _verify(self, path: Path) -> None:
        """Raise DamagedFile unless ``path`` holds what kibs-mc wrote; a file checked (or
        written) by this store and unchanged since is not read again."""
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DamagedFile(f"{path.name} is missing") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._checked.get(path) == stamp:
            return
        reason = content_check(path)
        if reason is not None:
            raise DamagedFile(f"{path.name}: {reason}")
        self._checked[path] = stamp

    def _set_aside(self, stem: str, reason: BaseException) -> None:
        """Move the files of a damaged part to chunks/damaged/; its chunks count as not done."""
        damaged = self.parts / DAMAGED
        damaged.mkdir(exist_ok=True)
        for path in self.parts.glob(f"{stem}.*parquet"):
            os.replace(path, damaged / path.name)
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        print(
            f"kibs-mc: warning: damaged result part {self.parts / (stem + '.parquet')} "
            f"({type(reason).__name__}: {first[:200]}) set aside in {damaged}; its chunks are "
            "computed again.",
            file=sys.stderr,
        )

    def _scan_final(self) -> Part | None:
        """The final files as a part when the run is compacted (``compacted.json``), else None.

        Every final file in the run directory is checked, whether the manifest lists it or
        not: it must be listed, carry the manifest's finalize and plan, add up to its chunk rows
        and pass its content check; ``replicates.parquet`` and ``timeseries.parquet`` must be
        there, and ``errors.parquet`` exactly when chunks hold errors. Otherwise the final files
        are set aside (their chunks are computed again)."""
        import pyarrow.parquet as pq

        try:
            text = (self.run_dir / COMPACTED).read_text()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
            stem, plan, files = manifest["stem"], manifest["fingerprint"], manifest["files"]
            present = [name for name in FINAL_FILES.values() if (self.run_dir / name).exists()]
            if not isinstance(files, list) or sorted(files) != sorted(present):
                raise DamagedFile(f"{COMPACTED} lists {files}, the directory holds {present}")
            chunks: list[str] = []
            failed: list[str] = []
            for name in present:
                self._verify(self.run_dir / name)
                meta = pq.read_metadata(self.run_dir / name)
                kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
                if kv.get(FINAL_KEY) != stem or kv.get(PLAN_KEY) != plan:
                    raise DamagedFile(f"{name} was written by another finalize than {COMPACTED} names")
                if sum(n for _, n in json.loads(kv[ROWS_KEY])) != meta.num_rows:
                    raise DamagedFile(f"{name}: its chunk rows do not add up to its rows")
                if name == FINAL_FILES[""]:
                    chunks, failed = json.loads(kv[CHUNKS_KEY]), json.loads(kv[FAILED_KEY])
            needed = [FINAL_FILES[""], FINAL_FILES[".timeseries"]] + (
                [FINAL_FILES[".errors"]] if failed else []
            )
            if sorted(needed) != sorted(present):
                raise DamagedFile(f"the final files are {present}; a finished run has {needed}")
        except Exception as exc:  # noqa: BLE001 - whatever is wrong, the chunks are computed again
            interrupt.raise_if_stopping(exc)
            self._set_aside_final(exc)
            return None
        return Part(stem, plan, tuple(chunks), frozenset(failed), final=True)

    def _set_aside_final(self, reason: BaseException) -> None:
        """Move a compacted run's manifest and final files to chunks/damaged/; its chunks
        count as not done."""
        damaged = self.parts / DAMAGED
        damaged.mkdir(parents=True, exist_ok=True)
        for name in [COMPACTED, *FINAL_FILES.values()]:
            if (self.run_dir / name).exists():
                os.replace(self.run_dir / name, damaged / name)
        _fsync(self.run_dir)
        print(
            f"kibs-mc: warning: the final files of {self.run_dir} are not those kibs-mc wrote "
            f"({type(reason).__name__}: {str(reason)[:200]}); set aside in {damaged}, their "
            "chunks are computed again.",
            file=sys.stderr,
        )

    def _final(self) -> Part | None:
        return next((p for p in self._index.values() if p.final), None)

    def _drop_manifest(self) -> None:
        (self.run_dir / COMPACTED).unlink(missing_ok=True)
        _fsync(self.run_dir)
        self._index = {stem: part for stem, part in self._index.items() if not part.final}

    def uncompact(self) -> None:
        """Write a compacted run's final files back as one part in chunks/ (``_chunk`` column
        from their metadata), then remove ``compacted.json``: the run is an ordinary one with
        parts again, whose final files may be rewritten. A kill before the part is published
        leaves the compacted run; after it, the part holds every chunk (``open`` finishes)."""
        final = self._final() if self._index else self._scan_final()
        if final is None:
            return
        name = _expanded(final.stem)
        meta = {
            PLAN_KEY: final.plan or "",
            CHUNKS_KEY: json.dumps(list(final.chunks)),
            FAILED_KEY: json.dumps(sorted(final.failed)),
        }
        self.parts.mkdir(exist_ok=True)
        written: list[str] = []
        try:
            for kind in (".timeseries", ".errors"):
                source = self.run_dir / FINAL_FILES[kind]
                if source.exists() and _rows_of(source):
                    _with_chunk_column(source, self.parts / f"{name}{kind}.parquet", meta)
                    written.append(kind)
            # the rows last: they mark the part done and name its other files
            rows_meta = {**meta, SIBLINGS_KEY: json.dumps(written)}
            _with_chunk_column(self.run_dir / FINAL_FILES[""], self.parts / f"{name}.parquet", rows_meta)
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.parts) from None
            raise
        self._drop_manifest()
        self._index[name] = Part(name, final.plan, final.chunks, final.failed)

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
        if (
            self._buffered_rows >= self.flush_rows
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered chunks as one part (time series first: the rows mark them done)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        if self._final() is not None:
            self.uncompact()  # new results in a compacted run: its chunks become a part again
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        keys = [r.key for r in self._buffer]
        failed = sorted({r.key for r in self._buffer if getattr(r, "errors", ())})
        meta = {
            PLAN_KEY: self.fingerprint or "",
            CHUNKS_KEY: json.dumps(keys),
            FAILED_KEY: json.dumps(failed),
        }
        rows = _frame(self._buffer, "rows")
        errors = [{**e, CHUNK_COLUMN: r.key} for r in self._buffer for e in getattr(r, "errors", ())]
        files: dict[str, pl.DataFrame] = {}
        if any(r.timeseries is not None for r in self._buffer):
            files[".timeseries"] = _frame(self._buffer, "timeseries")
        if errors:
            files[".errors"] = pl.DataFrame(errors, schema={**ERROR_SCHEMA, CHUNK_COLUMN: pl.String})
        written = list(files)
        try:
            for kind in written:  # the rows last: they mark the part done and name its other files
                self._write_checked(files[kind], self.parts / f"{name}{kind}.parquet", meta)
            self._write_checked(
                rows, self.parts / f"{name}.parquet", {**meta, SIBLINGS_KEY: json.dumps(written)}
            )
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.parts) from None
            raise
        self._index[name] = Part(name, self.fingerprint or None, tuple(keys), frozenset(failed))
        self._finalized = None  # the final files lack this part's chunks until the next finalize
        self.summary.update(rows)
        self._buffer.clear()
        self._buffered_rows = 0

    def _write_checked(self, frame: pl.DataFrame, path: Path, meta: dict[str, str]) -> None:
        """Write a part file; this store then knows its content without reading it again."""
        _write_atomic(frame, path, meta)
        st = path.stat()
        self._checked[path] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self, path: Path, keys: set[str], all_keys: bool) -> pl.DataFrame:
        """The rows of ``keys`` in a part file; a file that fails to read is set aside."""
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001
            raise self._damaged(path, exc, type(exc).__name__) from None
        return frame if all_keys else frame.filter(pl.col(CHUNK_COLUMN).is_in(list(keys)))

    def _damaged(self, path: Path, exc: BaseException, why: str) -> ExecutionError:
        """Set aside the part of ``path``, found damaged while the run merges its parts."""
        stem = path.name.split(".")[0]
        self._set_aside(stem, exc)
        self._index.pop(stem, None)
        return ExecutionError(
            f"result part {path} is damaged ({why}); it was set aside, so its chunks are computed again."
        )

    def _selected(self, kind: str) -> list[tuple[Path, set[str], bool]]:
        """(file, chunk keys taken from it, whether that is all of them) for each part file
        of ``kind`` ("" rows, ".timeseries", ".errors") holding a chosen copy, each checked:
        one whose content changed since it was written is set aside (ExecutionError)."""
        by_stem: dict[str, set[str]] = {}
        for key, part in self._chosen().items():
            by_stem.setdefault(part.stem, set()).add(key)
        out = []
        for stem in sorted(by_stem):
            path = self.parts / f"{stem}{kind}.parquet"
            if path.exists():
                try:
                    self._verify(path)
                except DamagedFile as exc:
                    raise self._damaged(path, exc, str(exc)) from None
                out.append((path, by_stem[stem], by_stem[stem] >= set(self._index[stem].chunks)))
        return out

    def _compacted(self) -> bool:
        """Whether every chosen copy is in the final files (a compacted run, nothing new)."""
        chosen = self._chosen()
        return bool(chosen) and all(part.final for part in chosen.values())

    def errors(self) -> pl.DataFrame:
        """Replicates that raised instead of finishing: scenario, replicate, seed, error."""
        if self._compacted():
            path = self.run_dir / FINAL_FILES[".errors"]
            return pl.read_parquet(path) if path.exists() else pl.DataFrame()
        return self._errors().drop(CHUNK_COLUMN, strict=False)

    def _errors(self) -> pl.DataFrame:
        frames = [self._read(p, keys, everything) for p, keys, everything in self._selected(".errors")]
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames).sort("scenario", "replicate")

    # -- merged outputs
    def finalize(self, scenario_order: Sequence[str]) -> pl.DataFrame:
        """Merge parts into replicates.parquet (and timeseries.parquet); return the rows.

        Each chunk counts once, from the newest part that holds it, whatever else is on disk.
        Each file's metadata records its rows' chunks (``ROWS_KEY``), the plan fingerprint and
        this finalize's name, from which ``compact`` makes the files the run's record. A
        compacted run with nothing new is not rewritten: its files are returned as they are.
        """
        self.flush()
        self._scenario_order = list(scenario_order)
        if self._compacted():
            return pl.read_parquet(self.run_dir / FINAL_FILES[""])
        if self._final() is not None:  # not reached by execute: flush uncompacts first
            self.uncompact()
        newest = max(
            (int(m.group(1)) for stem in self._index if (m := re.fullmatch(r"part-(\d{20})-.*", stem))),
            default=0,
        )
        stem = f"part-{max(time.time_ns(), newest + 1):020d}-compacted"  # after every part
        chosen = self._chosen()
        meta = {PLAN_KEY: self.fingerprint or "", FINAL_KEY: stem}
        order = {name: i for i, name in enumerate(scenario_order)}
        rank = pl.col("scenario").replace_strict(order, return_dtype=pl.Int64)
        frames = [self._read(p, keys, everything) for p, keys, everything in self._selected("")]
        rows = pl.concat(frames) if frames else pl.DataFrame()
        if rows.height:
            rows = rows.sort(rank, "replicate")
        rows_meta = {
            **meta,
            ROWS_KEY: _row_map(rows),
            CHUNKS_KEY: json.dumps(sorted(chosen)),
            FAILED_KEY: json.dumps(sorted(k for k, p in chosen.items() if k in p.failed)),
        }
        if CHUNK_COLUMN in rows.columns:
            rows = rows.drop(CHUNK_COLUMN)
        try:
            _write_atomic(rows, self.run_dir / FINAL_FILES[""], rows_meta)
            ts_parts = self._selected(".timeseries")
            if ts_parts:
                _write_timeseries_in_plan_order(ts_parts, self.run_dir / FINAL_FILES[".timeseries"], meta)
            else:
                _write_atomic(
                    pl.DataFrame(
                        {"scenario": [], "replicate": [], "step": []},
                        schema={"scenario": pl.String, "replicate": pl.Int64, "step": pl.Int64},
                    ),
                    self.run_dir / FINAL_FILES[".timeseries"],
                    {**meta, ROWS_KEY: "[]"},
                )
            errors = self._errors()
            if errors.height:
                _write_atomic(
                    errors.drop(CHUNK_COLUMN),
                    self.run_dir / FINAL_FILES[".errors"],
                    {**meta, ROWS_KEY: _row_map(errors)},
                )
            else:
                (self.run_dir / FINAL_FILES[".errors"]).unlink(missing_ok=True)  # an earlier run's
        except Exception as exc:
            if (code := refused_write(exc)) is not None:
                raise out_of_space(code, self.run_dir) from None
            raise
        self._finalized = stem
        return rows

    # -- compaction
    def _check_final_files(self) -> None:
        """Before the parts go: read the final files back and check their content. A file the
        disk did not keep as written is set aside and the final files written again from the
        parts, once; a second failure ends the run (ExecutionError, the parts kept)."""
        for attempt in range(2):
            damaged = []
            for name in FINAL_FILES.values():
                path = self.run_dir / name
                if path.exists() and (reason := content_check(path)) is not None:
                    damaged.append(f"{name}: {reason}")
                    (self.parts / DAMAGED).mkdir(parents=True, exist_ok=True)
                    os.replace(path, self.parts / DAMAGED / name)
            if not damaged:
                return
            print(
                f"kibs-mc: warning: {'; '.join(damaged)} in {self.run_dir} (set aside in "
                f"{self.parts / DAMAGED}); the final files are written again from the parts.",
                file=sys.stderr,
            )
            if attempt == 0:
                self.finalize(self._scenario_order)
        raise ExecutionError(
            f"the final files written in {self.run_dir} do not read back as written; the parts "
            f"in {self.parts} are kept."
        )

    def compact(self) -> int:
        """Make the final files the run's record and remove ``chunks/``; return the number of
        files removed. Call it after ``finalize``.

        Shared file systems suffer from many small files. Order of work: ``finalize`` has
        published the final files, each with its chunk rows in its metadata; ``compacted.json``
        naming them is published (the commit point); then the parts are removed and
        ``chunks/`` with them (``chunks/damaged/`` stays, if any part was set aside). A kill
        before the manifest leaves an ordinary run with its parts; after it, a compacted run
        whose leftover parts are older than the final files (a resume removes them).
        """
        if self._final() is None:
            if self._finalized is None or self._buffer:
                raise RuntimeError("compact() needs a finalize() after the last results")
            self._check_final_files()
            files = [name for name in FINAL_FILES.values() if (self.run_dir / name).exists()]
            write_text_atomic(
                self.run_dir / COMPACTED,
                json.dumps({"fingerprint": self.fingerprint or "", "stem": self._finalized, "files": files}),
            )
            chosen = self._chosen()
            self._index = {
                self._finalized: Part(
                    self._finalized,
                    self.fingerprint or None,
                    tuple(sorted(chosen)),
                    frozenset(k for k, p in chosen.items() if k in p.failed),
                    final=True,
                )
            }
        removed = 0
        if self.parts.is_dir():
            for path in sorted(self.parts.iterdir()):
                if path.is_file():
                    path.unlink()
                    removed += 1
            if not any(self.parts.iterdir()):
                self.parts.rmdir()
            _fsync(self.run_dir)
        self._index = {stem: part for stem, part in self._index.items() if part.final}
        return removed


def _expanded(stem: str) -> str:
    """The part a compacted run's final files become again (sorts after them: same data)."""
    return stem.removesuffix("-compacted") + "-expanded"


def _row_map(frame: pl.DataFrame) -> str:
    """``[[chunk key, rows], ...]`` for the runs of equal ``_chunk`` values, in row order."""
    if not frame.height:
        return "[]"
    runs = frame[CHUNK_COLUMN].rle()
    return json.dumps(
        [
            [k, n]
            for n, k in zip(
                runs.struct.field("len").to_list(), runs.struct.field("value").to_list(), strict=True
            )
        ]
    )


def _rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def _with_chunk_column(source: Path, dest: Path, meta: dict[str, str]) -> None:
    """Copy a final file to a part file ``dest`` with the ``_chunk`` column its metadata's
    chunk rows give (streamed, a block at a time), published by fsync and rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.ParquetFile(source)
    runs = json.loads((file.metadata.metadata or {})[ROWS_KEY.encode()])
    keys = pa.array([k for k, _ in runs], type=pa.string())
    ends = np.cumsum([n for _, n in runs])
    tmp = dest.with_name(dest.name + ".tmp")
    writer = None
    start = 0
    try:
        for batch in file.iter_batches(batch_size=TS_BLOCK_ROWS):
            at = np.searchsorted(ends, np.arange(start, start + batch.num_rows), side="right")
            start += batch.num_rows
            table = pa.Table.from_batches([batch]).append_column(CHUNK_COLUMN, keys.take(at))
            table = table.replace_schema_metadata(_sealed(meta))
            writer = writer or pq.ParquetWriter(tmp, table.schema, compression="lz4")
            writer.write_table(table)
        if writer is None:  # no rows: an empty part with the file's columns
            schema = file.schema_arrow.append(pa.field(CHUNK_COLUMN, pa.string()))
            schema = schema.with_metadata(_sealed(meta))
            writer = pq.ParquetWriter(tmp, schema, compression="lz4")
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    _publish(tmp, dest)


#: Time-series rows ``finalize`` holds in memory at once. The series are many times the size
#: of the per-replicate rows (25 rows per replicate by default); concatenating and sorting them
#: whole made the driver's peak memory grow by ~4 KB per replicate (``scripts/bench.py memory``).
TS_BLOCK_ROWS = 50_000


def _write_timeseries_in_plan_order(
    parts: Sequence[tuple[Path, set[str], bool]], path: Path, metadata: dict[str, str]
) -> None:
    """Merge time-series parts into ``path`` sorted by (scenario in plan order, replicate, step).

    ``parts``: each file with the chunk keys to take from it (each chunk from one file: the
    store chose which copy counts). Chunk keys sort in plan order (``s<scenario
    index>-r<first replicate>-n<count>``, zero padded) and each part holds whole chunks, so the
    chunks are taken in key order, a block of about ``TS_BLOCK_ROWS`` rows at a time, each read
    from the one part that holds it, and the blocks are appended to ``path`` as Parquet row
    groups. The driver's memory is one block whatever the run's size, and each part is read
    about once, because chunks complete roughly in plan order. ``metadata`` is written with
    the chunk rows of the file (``ROWS_KEY``).
    """
    import pyarrow.parquet as pq

    where: dict[str, tuple[Path, int]] = {}
    for part, keys, _ in parts:
        counts = pl.read_parquet(part, columns=[CHUNK_COLUMN])[CHUNK_COLUMN].value_counts()
        for key, n in counts.iter_rows():
            if key in keys:
                where[key] = (part, n)
    meta = {**metadata, ROWS_KEY: json.dumps([[key, where[key][1]] for key in sorted(where)])}
    tmp = path.with_name(path.name + ".tmp")
    writer = None
    block: dict[Path, list[str]] = {}
    block_rows = 0

    def write_block() -> None:
        nonlocal writer
        rank = {k: i for i, k in enumerate(sorted(k for keys in block.values() for k in keys))}
        frames = [
            pl.scan_parquet(p).filter(pl.col(CHUNK_COLUMN).is_in(keys)).collect() for p, keys in block.items()
        ]
        ts = pl.concat([f.select(frames[0].columns) for f in frames])  # parts' column orders may differ
        ts = ts.with_columns(pl.col(CHUNK_COLUMN).replace_strict(rank, return_dtype=pl.Int64))
        ts = ts.sort(CHUNK_COLUMN, "replicate", "step").drop(CHUNK_COLUMN)
        arrow = ts.select("scenario", *[c for c in ts.columns if c != "scenario"]).to_arrow()
        arrow = arrow.replace_schema_metadata(_sealed(meta))
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
        empty.select("scenario", *[c for c in empty.columns if c != "scenario"]).write_parquet(
            tmp, metadata=_sealed(meta)
        )
    _publish(tmp, path)


def write_summary(summary: pl.DataFrame, run_dir: Path) -> Path:
    path = Path(run_dir) / "summary.parquet"
    _write_atomic(summary, path)
    return path


def write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``frame`` to ``path`` atomically (temporary name, then rename), with ``metadata``
    and its content checksum (:func:`content_check`)."""
    _write_atomic(frame, Path(path), metadata)
    return Path(path)
