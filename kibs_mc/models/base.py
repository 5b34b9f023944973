"""The contract every model fulfils, so that the pipeline above it never names a model.

A model is one module (plus its ``conf/model/<name>.yaml``) with a module-level ``MODEL`` that
satisfies :class:`Model`, added to :data:`kibs_mc.models.MODELS`. The run layer calls
``simulate`` for each replicate; the configuration layer registers ``schema`` (and ``groups``)
with Hydra; the resource check calls ``replicate_bytes`` and ``timeseries_rows``; the analysis
and the terminal read ``outcomes`` and ``headline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class Model(Protocol):
    """A simulation model of kibs-mc.

    Attributes:
        name: the value of ``model.name`` and of the Hydra choice ``model=<name>``.
        schema: the dataclass of the ``model`` config group (declared with
            :func:`kibs_mc.fields.setting`; its ``name`` field has this model's name as only choice).
        outcomes: column name -> NumPy dtype of each outcome in ``replicates.parquet``, in order.
        headline: the outcomes read out first (terminal, report, progress precision), in order.
        lower_is_better: the outcomes whose smaller values are better (ranks, the best scenario
            of the report, selection); every other outcome is better when higher.
        groups: further config groups the model reads (group name -> schema), e.g. ``cluster``;
            the root configuration adds them (:func:`kibs_mc.config.schema.build_config`).
        cost: the outcome that measures spending, or None: paired effects are also given per
            unit of its extra over the baseline (``effect_per_cost``).
        tags: config groups whose values tag each scenario's MLflow run (e.g. the levers).
        accounts: column name -> NumPy dtype of further columns of ``replicates.parquet`` that
            are records, not outcomes (e.g. a money ledger): written beside the outcomes, never
            compared between scenarios; ``simulate``'s row holds them too. May be empty. A
            ledger named ``money_residual``, ``money_at_work_<instrument>`` and
            ``money_unspent_<instrument>`` makes the report's money line
            (``kibs_mc.analysis.report.money_sentence``).
    """

    name: str
    schema: type
    outcomes: Mapping[str, type]
    headline: tuple[str, ...]
    lower_is_better: tuple[str, ...]
    groups: Mapping[str, type]
    cost: str | None
    tags: tuple[str, ...]
    accounts: Mapping[str, type]

    def simulate(self, config: Any, seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """One replicate of ``config`` (a scenario's whole validated configuration) from the
        64-bit ``seed``: the outcome row (each outcome a scalar) and the time series (column
        name -> equal-length arrays, ``step`` included), or None when the model has none.
        Every random draw comes from ``seed`` (docs/ODD.md §4, stochasticity)."""
        ...

    def replicate_bytes(self, config: Any) -> int:
        """An upper-ish estimate of one replicate's peak memory in a worker (bytes)."""
        ...

    def timeseries_rows(self, config: Any) -> int:
        """Time-series rows one replicate of ``config`` writes (0 without time series), for
        the disk estimate."""
        ...
