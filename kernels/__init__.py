"""Numba kernels of kibs-mc: pure functions over NumPy arrays.

Shipped as ``kibs_mc.kernels``. Nothing here knows of Ray, Hydra, files or globals: every
function takes a network in CSR arrays (``indptr``, ``indices``), state arrays, and a
per-replicate random state (``kibs_mc.kernels.rng``), and returns arrays or scalars.

Every kernel is ``@njit(cache=True, nogil=True)``: compiled once and cached on disk, and it
releases the GIL while it runs, so other threads of the same process (the start-up of a local
Ray cluster, progress display) proceed while a replicate computes.
"""

__all__ = ["cowan_jonard", "kibs", "network", "rng"]
