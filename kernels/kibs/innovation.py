"""Innovation by HTEs along two routes, imitation and independent innovation (docs/ODD.md
s.7.4)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.state import HTE, IMITATIONS, INDEPENDENT, MARKET_IN, Agents, KibsParams, Workspace
from kibs_mc.kernels.rng import uniform
from numba import njit


@njit(cache=True, nogil=True)
def innovate(agents: Agents, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Innovation by HTEs along two routes (paper s.III.C: "imitation innovation capability and
    independent innovation capability"); returns the number of innovations this step.

    Imitation: the potential P_i accumulates knowledge absorbed (meetings, services, platform);
    an imitation happens with probability 1 - exp(-lambda_I conv_i P_i) and earns R_I.
    Independent innovation: the potential Q_i accumulates own R&D; it happens with probability
    1 - exp(-lambda_N conv_i Q_i), earns R_N and adds kappa to the core field (new knowledge;
    an imitation adds none). conv_i = 1 - omega + omega m_i: conversion needs management
    (engineer-founders lack it, paper s.IV.B). The reward comes from the market. Two uniforms per
    living HTE per step whatever happens.
    """
    agent_type = agents.agent_type
    capital = agents.capital
    w = prm.conversion_management_weight
    count = 0
    for i in range(agent_type.shape[0]):
        if not agents.alive[i] or agent_type[i] != HTE:
            continue
        agents.potential[i] += work.gained[i]
        agents.own_potential[i] += work.own_gained[i]
        conversion = 1.0 - w + w * agents.manage[i]
        u_imitate = uniform(rng_state)
        u_own = uniform(rng_state)
        if u_imitate < 1.0 - np.exp(-prm.imitation_rate * conversion * agents.potential[i]):
            count += 1
            work.tally[IMITATIONS] += 1
            agents.innovations[i] += 1
            agents.potential[i] = 0.0
            capital[i] += prm.imitation_reward
            work.ledger[MARKET_IN] += prm.imitation_reward
        if u_own < 1.0 - np.exp(-prm.independent_rate * conversion * agents.own_potential[i]):
            count += 1
            work.tally[INDEPENDENT] += 1
            agents.innovations[i] += 1
            agents.own_potential[i] = 0.0
            agents.knowledge[i, agents.core[i]] += prm.innovation_knowledge
            capital[i] += prm.independent_reward
            work.ledger[MARKET_IN] += prm.independent_reward
    return count
