"""The Cowan-Jonard (2004) barter model: its schema, outcomes, and one replicate (build the
network and knowledge, run to steady state, measure).

docs/ODD.md §8; the kernels are in ``kibs_mc.kernels.cowan_jonard``. The docking case of
the cluster model, and the smallest example of a :class:`~kibs_mc.models.base.Model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import numpy as np

from kibs_mc.errors import ConfigError
from kibs_mc.fields import setting
from kibs_mc.kernels import cowan_jonard as kernel
from kibs_mc.kernels.network import watts_strogatz
from kibs_mc.kernels.rng import new_state


@dataclass(frozen=True)
class CowanJonardConfig:
    """The Cowan-Jonard (2004) barter model, docs/ODD.md §8."""

    name: str = setting("cowan_jonard", choices=("cowan_jonard",))  # names the model: model=<name>
    agents: int = setting(500, ge=2, le=10_000_000)
    degree: int = setting(10, ge=2)
    categories: int = setting(10, ge=1, le=10_000)
    alpha: float = setting(0.1, gt=0.0, le=1.0)
    tolerance: float = setting(0.01, ge=0.0, lt=1.0)
    rewire_p: float = setting(0.1, ge=0.0, le=1.0)
    max_meetings: int = setting(10_000_000, ge=1)
    initial_max: float = setting(10.0, gt=0.0)

    def check(self, path: str) -> None:
        if self.degree % 2:
            raise ConfigError(f"{path}.degree", self.degree, "allowed: an even number (degree/2 ties a side)")
        if self.degree >= self.agents:
            raise ConfigError(
                f"{path}.degree", self.degree, f"allowed: an even number below {path}.agents={self.agents}"
            )


class CowanJonardScenario(Protocol):
    """What a replicate reads of a scenario's configuration."""

    @property
    def model(self) -> CowanJonardConfig: ...


#: Outcome columns of ``replicates.parquet`` with their dtypes, in order.
OUTCOMES: dict[str, type] = {
    "knowledge_mean": np.float64,
    "knowledge_var": np.float64,
    "knowledge_cv": np.float64,
    "meetings": np.int64,
    "trades": np.int64,
    "converged": np.bool_,
}


def knowledge_outcomes(knowledge: np.ndarray) -> dict[str, float]:
    """Mean level, and variance and coefficient of variation of the agents' mean levels."""
    agent_means = knowledge.mean(axis=1)
    mean = float(knowledge.mean())
    return {
        "knowledge_mean": mean,
        "knowledge_var": float(agent_means.var()),
        "knowledge_cv": float(agent_means.std() / mean) if mean > 0 else 0.0,
    }


def simulate_replicate(config: CowanJonardScenario, seed: int) -> tuple[dict, None]:
    """Run one replicate to steady state; the random stream is drawn in this order:
    network rewiring, initial knowledge, meetings."""
    model = config.model
    rng_state = new_state(seed)
    indptr, indices = watts_strogatz(model.agents, model.degree, model.rewire_p, rng_state)
    knowledge = kernel.initial_knowledge(model.agents, model.categories, rng_state, model.initial_max)
    meetings, trades, converged = kernel.run_replicate(
        indptr,
        indices,
        knowledge,
        rng_state,
        model.alpha,
        model.tolerance,
        model.max_meetings,
        model.agents,
    )
    row = knowledge_outcomes(knowledge)
    row.update(meetings=meetings, trades=trades, converged=converged)
    return row, None


def replicate_bytes(config: CowanJonardScenario) -> int:
    """Peak memory of one replicate, with 50% slack: knowledge (agents x categories float64),
    the CSR network and the edge list it is built from."""
    m = config.model
    knowledge = m.agents * m.categories * 8
    network = (m.agents + 1) * 8 + m.agents * m.degree * 8 + m.agents * m.degree * 8
    return int(1.5 * (knowledge + network))


class CowanJonard:
    """The model's entry in the registry (:class:`kibs_mc.models.base.Model`)."""

    name: str = "cowan_jonard"
    schema: type = CowanJonardConfig
    outcomes: Mapping[str, type] = OUTCOMES
    headline: tuple[str, ...] = ("knowledge_mean", "knowledge_cv", "meetings", "converged")
    lower_is_better: tuple[str, ...] = ("knowledge_cv",)  # unequal knowledge
    groups: Mapping[str, type] = MappingProxyType({})  # it reads only `model`
    cost: str | None = None  # no spending measured
    tags: tuple[str, ...] = ()
    accounts: Mapping[str, type] = MappingProxyType({})  # no records beside the outcomes

    def simulate(self, config: CowanJonardScenario, seed: int) -> tuple[dict, None]:
        return simulate_replicate(config, seed)

    def replicate_bytes(self, config: CowanJonardScenario) -> int:
        return replicate_bytes(config)

    def timeseries_rows(self, config: CowanJonardScenario) -> int:
        return 0  # no time series


MODEL = CowanJonard()
