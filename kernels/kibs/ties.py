"""The padded CSR network (``Ties``): finding, making, dropping and reweighting a tie in O(row),
both copies at once through the mirror slots."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.state import Ties
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def find_slot(ties: Ties, i: int, j: int) -> int:
    """Position of j in i's row, or -1 when i and j are not tied."""
    start = ties.indptr[i]
    indices = ties.indices
    for p in range(start, start + ties.row_len[i]):
        if indices[p] == j:
            return p
    return -1


@njit(cache=True, nogil=True)
def mirror_slots(indptr: np.ndarray, row_len: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``Ties.mirror`` of padded CSR rows in which every tie is stored in both rows once."""
    mirror = np.full(indices.shape[0], -1, dtype=np.int64)
    for i in range(row_len.shape[0]):
        for p in range(indptr[i], indptr[i] + row_len[i]):
            j = indices[p]
            if j > i:
                for q in range(indptr[j], indptr[j] + row_len[j]):
                    if indices[q] == i:
                        mirror[p] = q
                        mirror[q] = p
                        break
    return mirror


@njit(cache=True, nogil=True, inline="always")
def add_tie(ties: Ties, i: int, j: int, w: float, is_partner: bool) -> bool:
    """Tie i and j with weight w; False (and nothing changed) if i == j, they are already tied,
    or either row is full."""
    if i == j or find_slot(ties, i, j) >= 0:
        return False
    indptr, row_len, indices, weights, partner, mirror = ties
    if row_len[i] >= indptr[i + 1] - indptr[i] or row_len[j] >= indptr[j + 1] - indptr[j]:
        return False
    p = indptr[i] + row_len[i]
    q = indptr[j] + row_len[j]
    indices[p] = j
    indices[q] = i
    weights[p] = w
    weights[q] = w
    partner[p] = is_partner
    partner[q] = is_partner
    mirror[p] = q
    mirror[q] = p
    row_len[i] += 1
    row_len[j] += 1
    return True


@njit(cache=True, nogil=True, inline="always")
def _drop_slot(ties: Ties, i: int, p: int) -> None:
    indptr, row_len, indices, weights, partner, mirror = ties
    last = indptr[i] + row_len[i] - 1
    if last != p:
        indices[p] = indices[last]
        weights[p] = weights[last]
        partner[p] = partner[last]
        mirror[p] = mirror[last]
        mirror[mirror[p]] = p  # the moved tie's other copy points to its new slot
    mirror[last] = -1
    row_len[i] -= 1


@njit(cache=True, nogil=True, inline="always")
def remove_tie(ties: Ties, i: int, p: int) -> None:
    """Remove the tie in slot p of i's row, and its mirror in the other row. The last tie of
    each row moves into the freed slot."""
    j = ties.indices[p]
    q = ties.mirror[p]
    _drop_slot(ties, i, p)
    _drop_slot(ties, j, q)


@njit(cache=True, nogil=True, inline="always")
def set_weight(ties: Ties, i: int, p: int, w: float) -> None:
    """Set the weight of the tie in slot p of i's row and of its mirror."""
    ties.weights[p] = w
    ties.weights[ties.mirror[p]] = w
