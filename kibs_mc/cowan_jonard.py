"""One replicate of the Cowan-Jonard model: build the network and knowledge, run, measure.

MODEL.md section 2; the kernels are in ``kibs_mc.kernels.cowan_jonard``.
"""

from __future__ import annotations

import numpy as np

from kibs_mc.config import Config, CowanJonardConfig
from kibs_mc.kernels import cowan_jonard as kernel
from kibs_mc.kernels.network import watts_strogatz
from kibs_mc.kernels.rng import new_state

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


def simulate_replicate(config: Config, seed: int) -> tuple[dict, None]:
    """Run one replicate to steady state; the random stream is drawn in this order:
    network rewiring, initial knowledge, meetings."""
    model: CowanJonardConfig = config.model
    rng_state = new_state(seed)
    indptr, indices = watts_strogatz(model.agents, model.degree, model.rewire_p, rng_state)
    knowledge = kernel.initial_knowledge(model.agents, model.categories, rng_state, model.initial_max)
    meetings, trades, converged = kernel.run_replicate(
        indptr, indices, knowledge, rng_state,
        model.alpha, model.tolerance, model.max_meetings, model.agents,
    )
    row = knowledge_outcomes(knowledge)
    row.update(meetings=meetings, trades=trades, converged=converged)
    return row, None
