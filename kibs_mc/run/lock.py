"""One writer per run directory: an exclusive lock held for the whole run.

Two runs writing into one directory would each compute and write every chunk, and the merged
files would hold every replicate twice. The lock is ``flock`` on the run directory itself, which
no one deletes by hand while it holds results, and on ``.kibs-mc.lock`` in it (where the file
system cannot lock a directory, e.g. NFS, the file's lock alone): the kernel releases both when
the holder exits, even killed with SIGKILL, so a stale lock never blocks a resume. The file
names its holder (process, host, start time) for the message a second run gets.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from kibs_mc.errors import UserError

LOCK_FILE = ".kibs-mc.lock"

#: Run directories this process holds (resolved path -> the descriptors of the lock file and of
#: the locked directory, None where it cannot be locked).
_held: dict[Path, tuple[int, int | None]] = {}


def lock_run_dir(run_dir: Path) -> bool:
    """Take the run directory's lock for this process; False when it already held it.

    Raises:
        UserError: another process holds it; the message names the holder.
    """
    path = Path(run_dir).resolve()
    if path in _held:
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot use the run directory {run_dir}: {exc.strerror or exc}") from None
    try:
        directory = _lock_directory(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if directory is not None:
                os.close(directory)
            raise
    except OSError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"run directory {run_dir} is in use by another kibs-mc run ({holder}); wait for it to "
            "finish (then add resume=true to continue it), or pick another hydra.run.dir."
        ) from None
    holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode() + b"\n", 0)
    _held[path] = (fd, directory)
    return True


def _lock_directory(path: Path) -> int | None:
    """Lock the directory itself and return its descriptor; None where the file system cannot
    lock a directory (the lock file alone then serves). Raises BlockingIOError when another
    process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # e.g. EBADF or ENOLCK on NFS, where flock is emulated with byte-range locks
        os.close(fd)
        return None
    return fd


def unlock_run_dir(run_dir: Path) -> None:
    """Release the lock (the process's exit releases it too)."""
    held = _held.pop(Path(run_dir).resolve(), None)
    if held is not None:
        fd, directory = held
        os.ftruncate(fd, 0)
        os.close(fd)
        if directory is not None:
            os.close(directory)
