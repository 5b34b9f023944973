"""Ctrl-C (SIGINT) that stops a run cleanly, never recorded as a failed replicate.

A SIGINT raised as KeyboardInterrupt inside a Numba kernel comes out as ``SystemError: ...
returned a result with an exception set`` (or is lost), which a chunk would record as a failed
replicate. So while the driver's main thread computes a replicate, the first SIGINT only sets a
flag: the replicate finishes and its chunk then stops with KeyboardInterrupt (the unfinished
chunk is not written; resume computes it). Anywhere else, and for a second SIGINT, it raises
KeyboardInterrupt at once, as Python's default handler does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_computing = threading.Event()  # the main thread is inside a replicate


def _handler(signum: int, frame: object) -> None:
    if _computing.is_set() and not _requested.is_set():
        _requested.set()
        return
    raise KeyboardInterrupt


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Install the handler for the duration of a run (main thread, default handler only: an
    ignored SIGINT, or one the embedding program handles, is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _requested.clear()
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _requested.clear()


@contextmanager
def replicate() -> Iterator[None]:
    """Around one replicate's computation: defers a first SIGINT to its end."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _computing.set()
    try:
        yield
    finally:
        if main:
            _computing.clear()


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived during the last replicate."""
    if _requested.is_set() and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised because of, a KeyboardInterrupt (e.g. Numba's
    SystemError that wraps one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
