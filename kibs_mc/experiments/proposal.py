"""The ABC-SMC proposal of ``experiment=calibrate``: pyabc's Gaussian kernel around the last
generation's weighted particles, mixed with the prior (defensive importance sampling,
Hesterberg 1995, Technometrics 37:185-194).

A particle's importance weight is prior / proposal. With the kernel alone, one generation's few
heavy particles narrow the next proposal onto themselves, and a particle accepted where that
proposal is thin gets a weight that dwarfs the others': with a dozen parameters on the default
cluster the effective sample size collapsed within a few generations (docs/calibration.md).
Drawing a share of the proposals from the prior bounds every weight by the prior's density over
that share (1 / share times a prior draw's), so the proposal cannot collapse; the price is that
share of proposals spent on the prior's tails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyabc
from pyabc.parameters import Parameter

#: Share of the proposals drawn from the prior (docs/calibration.md, "Library").
PRIOR_SHARE = 0.2


class DefensiveTransition(pyabc.MultivariateNormalTransition):
    """pyabc's multivariate normal kernel (Silverman's bandwidth) mixed with a uniform prior on
    the box ``bounds`` (parameter name -> (low, high), on the scale the prior is uniform on)."""

    def __init__(self, bounds: dict[str, tuple[float, float]], share: float = PRIOR_SHARE) -> None:
        super().__init__()
        self.bounds = dict(bounds)
        self.share = float(share)

    def _box(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        names = list(self.X.columns)
        low = np.array([self.bounds[k][0] for k in names], dtype=float)
        high = np.array([self.bounds[k][1] for k in names], dtype=float)
        return names, low, high

    def rvs_single(self) -> Parameter:
        if np.random.uniform() < self.share:  # noqa: NPY002 - pyabc draws from the global generator
            names, low, high = self._box()
            return Parameter(dict(zip(names, np.random.uniform(low, high), strict=True)))  # noqa: NPY002
        return super().rvs_single()

    def rvs(self, size: int | None = None) -> Parameter | pd.DataFrame:
        if size is None:
            return self.rvs_single()
        return pd.DataFrame([dict(self.rvs_single()) for _ in range(size)])

    def pdf(self, x: Any) -> float | np.ndarray:
        kernel = super().pdf(x)
        names, low, high = self._box()
        if isinstance(x, Parameter | pd.Series | dict):
            values = np.array([x[k] for k in names], dtype=float)
        else:
            values = x[names].to_numpy(dtype=float)
        inside = np.all((values >= low) & (values <= high), axis=-1)
        return (1.0 - self.share) * kernel + self.share * inside / float(np.prod(high - low))
