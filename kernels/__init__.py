"""Numba kernels of kibs-mc: pure functions over NumPy arrays.

Shipped as ``kibs_mc.kernels``. Nothing here knows of Ray, Hydra, files or globals: every
function takes a network in CSR arrays (``indptr``, ``indices``), state arrays, and a
per-replicate random state (``kibs_mc.kernels.rng``), and returns arrays or scalars.
"""
