"""Hints that fetch a coming meeting's data into the caches (LLVM ``llvm.prefetch``). They
change no value; large clusters use them (``KibsParams.prefetch_from``,
docs/performance.md)."""

from __future__ import annotations

from kibs_mc.kernels.kibs.state import Agents, Ties, Workspace
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _emit_prefetch(builder, ptr, write):  # type: ignore[no-untyped-def]
    i32 = ir.IntType(32)
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    rw, high_locality, data = ir.Constant(i32, write), ir.Constant(i32, 3), ir.Constant(i32, 1)
    builder.call(fn, [builder.bitcast(ptr, i8p), rw, high_locality, data])


def _prefetch_intrinsic(write: int):  # type: ignore[no-untyped-def]
    """An intrinsic ``f(arr, row, col)`` that hints the CPU to fetch ``arr[row]`` (1-D; col is
    ignored) or ``arr[row, col]`` (2-D) into the caches (LLVM ``llvm.prefetch``, high locality;
    ``write``: the line will be written, so it is fetched for ownership). Changes no value."""

    @intrinsic
    def fetch(typingctx, arr, row, col):  # type: ignore[no-untyped-def]
        if not isinstance(arr, types.Array) or arr.ndim > 2:
            return None
        sig = types.void(arr, types.intp, types.intp)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            index = [args[1]] if aryty.ndim == 1 else [args[1], args[2]]
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, index, wraparound=False)
            _emit_prefetch(builder, ptr, write)
            return context.get_dummy_value()

        return sig, codegen

    return fetch


prefetch = _prefetch_intrinsic(0)
prefetch_write = _prefetch_intrinsic(1)


@njit(cache=True, nogil=True, inline="always")
def _prefetch_agent(agents: Agents, ties: Ties, work: Workspace, i: int) -> None:
    """Fetch what a meeting of i reads first: its row's place and length, its state (a
    knowledge row may straddle two cache lines: both ends)."""
    prefetch(ties.row_len, i, 0)
    prefetch(ties.indptr, i, 0)
    prefetch(agents.alive, i, 0)
    prefetch(agents.agent_type, i, 0)
    prefetch(agents.manage, i, 0)
    prefetch(agents.capital, i, 0)
    prefetch(work.gained, i, 0)
    prefetch_write(agents.knowledge, i, 0)
    prefetch_write(agents.knowledge, i, agents.knowledge.shape[1] - 1)


@njit(cache=True, nogil=True, inline="always")
def _prefetch_ties(ties: Ties, i: int) -> None:
    """Fetch i's row of ties, both ends of each array (weights for the partner draw, the
    chosen tie's other end, flag and mirror slot); ``indptr[i]`` and ``row_len[i]`` were
    fetched earlier."""
    start = ties.indptr[i]
    prefetch(ties.weights, start, 0)
    prefetch(ties.indices, start, 0)
    prefetch(ties.partner, start, 0)
    prefetch(ties.mirror, start, 0)
    last = start + ties.row_len[i] - 1
    if last > start:
        prefetch(ties.weights, last, 0)
        prefetch(ties.indices, last, 0)
        prefetch(ties.partner, last, 0)
        prefetch(ties.mirror, last, 0)
