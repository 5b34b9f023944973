"""Innovation by HTEs along two routes, imitation and independent innovation, for a finite
market whose demand in a field falls as launches in it accumulate (docs/ODD.md s.7.4)."""

from __future__ import annotations

import numpy as np
from kibs_mc.kernels.kibs.state import HTE, IMITATIONS, INDEPENDENT, MARKET_IN, Agents, KibsParams, Workspace
from kibs_mc.kernels.rng import uniform
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def demand_factor(work: Workspace, prm: KibsParams, field: int) -> float:
    """The market's demand for one more innovation in ``field``:

        D_c = (1 + L_c / Q)^(-epsilon),

    L_c the launches in the field over the market's memory (a decaying count, :func:`age_market`),
    Q the launches that halve demand at epsilon = 1, epsilon the elasticity of demand with
    respect to the field's recent launches (epsilon = 0: an unlimited market). A launch needs a
    buyer: every route's launch hazard is scaled by D_c."""
    if prm.market_elasticity == 0.0:
        return 1.0
    return (1.0 + work.demand[field] / prm.market_capacity) ** -prm.market_elasticity


@njit(cache=True, nogil=True, inline="always")
def launch(work: Workspace, field: int) -> None:
    """An innovation launched in ``field`` adds to the market's count."""
    work.demand[field] += 1.0


@njit(cache=True, nogil=True)
def age_market(work: Workspace, prm: KibsParams) -> None:
    """Once a step, the launch counts fade: L_c <- k L_c, k = 1 - 1 / memory (months)."""
    for f in range(work.demand.shape[0]):
        work.demand[f] *= prm.market_keep


@njit(cache=True, nogil=True)
def innovate(agents: Agents, work: Workspace, rng_state: np.ndarray, prm: KibsParams) -> int:
    """Innovation by HTEs along two routes (paper s.III.C: "imitation innovation capability and
    independent innovation capability"); returns the number of innovations this step.

    Imitation: the potential P_i accumulates knowledge absorbed (meetings, services, platforms);
    an imitation is launched with probability 1 - exp(-lambda_I conv_i P_i D_c) and earns R_I.
    Independent innovation: the potential Q_i accumulates own R&D; it is launched with
    probability 1 - exp(-lambda_N conv_i Q_i D_c), earns R_N and adds kappa to the core field
    (new knowledge; an imitation adds none). conv_i = 1 - omega + omega m_i: conversion needs
    management (engineer-founders lack it, paper s.IV.B); D_c the demand in i's core field c
    (:func:`demand_factor`, read once per HTE and step). The reward comes from the market. Two
    uniforms per living HTE per step whatever happens.
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
        c = agents.core[i]
        conversion = (1.0 - w + w * agents.manage[i]) * demand_factor(work, prm, c)
        u_imitate = uniform(rng_state)
        u_own = uniform(rng_state)
        if u_imitate < 1.0 - np.exp(-prm.imitation_rate * conversion * agents.potential[i]):
            count += 1
            work.tally[IMITATIONS] += 1
            agents.innovations[i] += 1
            agents.potential[i] = 0.0
            capital[i] += prm.imitation_reward
            work.ledger[MARKET_IN] += prm.imitation_reward
            launch(work, c)
        if u_own < 1.0 - np.exp(-prm.independent_rate * conversion * agents.own_potential[i]):
            count += 1
            work.tally[INDEPENDENT] += 1
            agents.innovations[i] += 1
            agents.own_potential[i] = 0.0
            agents.knowledge[i, c] += prm.innovation_knowledge
            capital[i] += prm.independent_reward
            work.ledger[MARKET_IN] += prm.independent_reward
            launch(work, c)
    return count
