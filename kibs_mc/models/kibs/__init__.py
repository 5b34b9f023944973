"""The cluster model ``kibs``: a high-tech cluster with embedded KIBS firms, universities,
intermediaries and banks, under the four governance interfaces of the seed paper (docs/ODD.md).

- ``schema``: the config groups ``model`` (dynamics), ``cluster`` (who, where, the initial
  network) and ``governance`` (the levers);
- ``build``: one random cluster; ``governance``: levers -> kernel parameters;
- ``replicate``: one replicate run and measured, and the model's registry entry ``MODEL``.
"""

from kibs_mc.models.kibs.replicate import MODEL, OUTCOMES, simulate_replicate

__all__ = ["MODEL", "OUTCOMES", "simulate_replicate"]
