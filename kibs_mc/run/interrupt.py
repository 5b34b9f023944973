"""Ctrl-C (SIGINT) and SIGTERM that stop a run cleanly, never recorded as a failed replicate.

A SIGINT raised as KeyboardInterrupt inside a Numba kernel comes out as ``SystemError: ...
returned a result with an exception set`` (or is lost), which a chunk would record as a failed
replicate. So while the driver's main thread computes a replicate, the first SIGINT only sets a
flag: the replicate finishes and its chunk then stops with KeyboardInterrupt (the unfinished
chunk is not written; resume computes it). Anywhere else, and for a second SIGINT, it raises
KeyboardInterrupt at once, as Python's default handler does.

SIGTERM (what ``kill``, Slurm's ``scancel`` and a job's time limit send) is handled the same
way where the program asks for it (:func:`terminate_as_interrupt`, which the ``kibs-mc`` command
calls), as :class:`Terminated`, a KeyboardInterrupt: completed chunks are written and the run
ends with its resume hint instead of being killed mid-write.

The handler's exception can land inside a library call that turns it into one of its own (Polars
reports a KeyboardInterrupt raised in a function it calls back as a ``ComputeError``, or as a
``TypeError`` about an "unprintable" object), or inside code that takes any exception as a damaged
file. So the handlers also record that a stop was asked for (:func:`stop_requested`), and an
exception that leaves a run after that is the stop (:func:`deferred_interrupts`,
:func:`raise_if_stopping`), whatever its type.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_computing = threading.Event()  # the main thread is inside a replicate
_terminated = threading.Event()  # the signal that stops the run is SIGTERM
_stopping = threading.Event()  # a SIGINT or SIGTERM arrived since the run began


class Terminated(KeyboardInterrupt):
    """The run was stopped by SIGTERM (exit status 143 in ``kibs-mc``), not by Ctrl-C."""


def _stop() -> KeyboardInterrupt:
    return Terminated() if _terminated.is_set() else KeyboardInterrupt()


def _handler(signum: int, frame: object) -> None:
    if signum == signal.SIGTERM:
        _terminated.set()
    _stopping.set()
    if _computing.is_set() and not _requested.is_set():
        _requested.set()
        return
    raise _stop()


def _terminate(signum: int, frame: object) -> None:
    _terminated.set()
    _stopping.set()
    raise Terminated


def stop_requested() -> bool:
    """Whether a SIGINT or SIGTERM arrived since the last run began (or, outside a run, since
    :func:`terminate_as_interrupt`), the first of them perhaps deferred to a replicate's end."""
    return _stopping.is_set()


def raise_if_stopping(exc: BaseException) -> None:
    """Raise the stop (KeyboardInterrupt, :class:`Terminated` for SIGTERM) in place of ``exc``
    where a signal asked for one: the exception a library made of the handler's, or any other
    that came while the run was being stopped, is the stop; otherwise return."""
    if _stopping.is_set() and not isinstance(exc, KeyboardInterrupt):
        raise _stop() from exc


def by_sigterm() -> bool:
    """Whether the last run was stopped by SIGTERM rather than by Ctrl-C."""
    return _terminated.is_set()


def terminate_as_interrupt() -> None:
    """From now on SIGTERM stops this process as Ctrl-C does (raising :class:`Terminated`),
    where SIGTERM has its default action (main thread only)."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


@contextmanager
def kept_sigterm() -> Iterator[None]:
    """Around a call that installs its own SIGTERM handler (``ray.init`` makes SIGTERM a bare
    ``sys.exit(15)``): this process's handler is put back afterwards, and a SIGTERM that came
    while the call's handler was in place stops the run as :class:`Terminated`."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    ours = main and before in (_terminate, _handler)
    try:
        yield
    except SystemExit as exc:  # a SIGTERM met the call's own handler: it is this process's stop
        if not (ours and exc.code == signal.SIGTERM):
            raise
        _terminated.set()
        _stopping.set()
        raise Terminated from exc
    finally:
        if ours:
            signal.signal(signal.SIGTERM, before)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Install the handler for the duration of a run (main thread, default handlers only: an
    ignored SIGINT, or one the embedding program handles, is left alone; SIGTERM only where
    :func:`terminate_as_interrupt` asked for it). An exception that leaves the run after a
    signal asked it to stop leaves as that stop (:func:`raise_if_stopping`)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _requested.clear()
    _terminated.clear()
    _stopping.clear()
    term = signal.getsignal(signal.SIGTERM) is _terminate
    signal.signal(signal.SIGINT, _handler)
    if term:
        signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    except Exception as exc:  # the stop, come out of a library as another exception
        raise_if_stopping(exc)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if term:
            signal.signal(signal.SIGTERM, _terminate)
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
    """Raise KeyboardInterrupt (:class:`Terminated` for SIGTERM) if a SIGINT or SIGTERM arrived
    during the last replicate."""
    if _requested.is_set() and threading.current_thread() is threading.main_thread():
        raise _stop()


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised because of, a KeyboardInterrupt (e.g. Numba's
    SystemError that wraps one), or came while a signal asked the run to stop."""
    if _stopping.is_set():
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
