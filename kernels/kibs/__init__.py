"""The cluster model, version 2: HTEs, KIBS, universities, intermediaries and banks as firms
with balance sheets, and the four governance interfaces as policy instruments in money.

MODEL.md section 3; every equation is written out in ``docs/ODD.md`` (section 7, "Submodels"),
which ties it to the paragraph of the seed paper it represents. One module per part of the
model, every public name re-exported here:

- ``state``: agent types, ledger accounts, counters, the instrument table, the state tuples
  (``Agents``, ``Ties``, ``Workspace``, ``KibsParams``, ``TypeTraits``), drawing an agent;
- ``ties``: the padded CSR network; ``knowledge``: what a meeting can transfer;
- ``meetings``: the hot kernel; ``caching``: cache hints for large clusters;
- ``instruments``: who each instrument reaches and one function per instrument;
- ``projects``: joint projects of strategic partners; ``production``: knowledge production
  and the universities' platform; ``innovation``: the HTEs' two routes;
- ``finance``: costs, interest, exits and entry; ``dynamics``: network dynamics;
- ``step``: a replicate's steps in order (``run_replicate``) and the measures.

Money is conserved: every flow is either between two balance sheets (fees, consulting and
service contracts, benefit and risk shares, interest, defaults) or crosses the cluster's
boundary and is booked in the ``Workspace`` ledger (government money in, market revenue in,
costs out, entrants' capital in, the net worth of exiting firms out), so that the sum of
capital over living agents changes by exactly the booked external flows (a test checks it).
Randomness comes only from the replicate's SplitMix64 state.
"""

from __future__ import annotations

from kibs_mc.kernels.kibs.caching import (
    prefetch,
    prefetch_write,
)
from kibs_mc.kernels.kibs.dynamics import (
    decay_ties,
    form_ties,
    proximity_accept,
)
from kibs_mc.kernels.kibs.finance import (
    bank_weight,
    credit_limit,
    exit_firm,
    finance,
    pay_banks,
)
from kibs_mc.kernels.kibs.innovation import (
    innovate,
)
from kibs_mc.kernels.kibs.instruments import (
    consulting,
    contract_with,
    count_recipients,
    enrol,
    form_partnership,
    information_platform,
    instruments,
    rank_kibs,
    seek_partners,
    vouchers,
)
from kibs_mc.kernels.kibs.knowledge import (
    absorptive_capacity,
    choose_partner,
    cognitive_distance,
    learning,
    profile_distance,
    sharing,
    transfer,
)
from kibs_mc.kernels.kibs.meetings import (
    meet,
    meetings,
    meetings_ahead,
)
from kibs_mc.kernels.kibs.production import (
    platform_transfer,
    produce_knowledge,
)
from kibs_mc.kernels.kibs.projects import (
    joint_projects,
)
from kibs_mc.kernels.kibs.state import (
    ABOVE_OPTIMUM,
    BELOW_OPTIMUM,
    BUSINESS,
    COSTS_OUT,
    DEFAULTS,
    ENROL_ORDER,
    ENTRY_IN,
    EXIT_OUT,
    FIN,
    FIN_EXITS,
    GOV_BUSINESS,
    GOV_INFORMATION,
    GOV_MANAGEMENT,
    GOV_SPENT,
    GOV_STRATEGIC,
    HTE,
    HTE_EXITS,
    HTE_KIBS_SERVICES,
    HTE_ONLY,
    HTE_SPENDING,
    IMITATIONS,
    INDEPENDENT,
    INFORMATION,
    INNOVATION_BINS,
    INSTRUMENT_NAMES,
    INT,
    INTEREST,
    KIBS_COSTS,
    KIBS_EXITS,
    KIBS_GROSS,
    MANAGEMENT,
    MARKET_IN,
    N_INSTRUMENTS,
    N_LEDGER,
    N_TALLY,
    N_TYPES,
    P_KIBS,
    P_PARTNERS,
    PREDICT_AHEAD,
    PREFETCH_AHEAD,
    PREFETCH_FROM,
    PROJECT_SUCCESS,
    PROJECTS,
    STRATEGIC,
    SURPLUS,
    T_KIBS,
    T_PARTNERS,
    TYPE_NAMES,
    UNI,
    YOUNG_ENTRANTS,
    YOUNG_EXITS,
    YOUNG_WINDOW,
    Agents,
    KibsParams,
    Ties,
    TypeTraits,
    Workspace,
    draw_agent,
    is_kibs,
    workspace,
)
from kibs_mc.kernels.kibs.step import (
    average_clustering,
    hte_mean_knowledge,
    living_capital,
    run_replicate,
)
from kibs_mc.kernels.kibs.ties import (
    add_tie,
    best_tied,
    find_slot,
    first_partner,
    mirror_slots,
    remove_tie,
    set_weight,
)

__all__ = [
    "HTE",
    "T_KIBS",
    "P_KIBS",
    "UNI",
    "INT",
    "FIN",
    "TYPE_NAMES",
    "N_TYPES",
    "GOV_SPENT",
    "MARKET_IN",
    "COSTS_OUT",
    "ENTRY_IN",
    "EXIT_OUT",
    "KIBS_GROSS",
    "KIBS_COSTS",
    "INTEREST",
    "DEFAULTS",
    "SURPLUS",
    "GOV_STRATEGIC",
    "GOV_MANAGEMENT",
    "GOV_BUSINESS",
    "GOV_INFORMATION",
    "HTE_KIBS_SERVICES",
    "HTE_SPENDING",
    "N_LEDGER",
    "HTE_EXITS",
    "KIBS_EXITS",
    "FIN_EXITS",
    "IMITATIONS",
    "INDEPENDENT",
    "PROJECTS",
    "PROJECT_SUCCESS",
    "BELOW_OPTIMUM",
    "ABOVE_OPTIMUM",
    "T_PARTNERS",
    "P_PARTNERS",
    "YOUNG_ENTRANTS",
    "YOUNG_EXITS",
    "N_TALLY",
    "STRATEGIC",
    "MANAGEMENT",
    "BUSINESS",
    "INFORMATION",
    "N_INSTRUMENTS",
    "INSTRUMENT_NAMES",
    "HTE_ONLY",
    "ENROL_ORDER",
    "YOUNG_WINDOW",
    "INNOVATION_BINS",
    "Agents",
    "Ties",
    "Workspace",
    "TypeTraits",
    "KibsParams",
    "PREFETCH_FROM",
    "PREFETCH_AHEAD",
    "PREDICT_AHEAD",
    "is_kibs",
    "draw_agent",
    "workspace",
    "prefetch",
    "prefetch_write",
    "find_slot",
    "mirror_slots",
    "add_tie",
    "remove_tie",
    "set_weight",
    "first_partner",
    "best_tied",
    "absorptive_capacity",
    "profile_distance",
    "cognitive_distance",
    "learning",
    "transfer",
    "choose_partner",
    "sharing",
    "meet",
    "meetings_ahead",
    "meetings",
    "produce_knowledge",
    "platform_transfer",
    "enrol",
    "count_recipients",
    "form_partnership",
    "rank_kibs",
    "contract_with",
    "seek_partners",
    "consulting",
    "vouchers",
    "information_platform",
    "instruments",
    "joint_projects",
    "innovate",
    "bank_weight",
    "pay_banks",
    "credit_limit",
    "exit_firm",
    "finance",
    "proximity_accept",
    "decay_ties",
    "form_ties",
    "hte_mean_knowledge",
    "living_capital",
    "average_clustering",
    "run_replicate",
]
