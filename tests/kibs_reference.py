"""Slow pure-Python twin of the cluster-model step kernels (kernels/kibs/, version 3), for
tests only.

Written from docs/ODD.md section 7 with Python floats, lists of neighbours per agent and the
SplitMix64 twin of tests/reference.py (two streams: the cluster's and the instruments'). Rows
are Python lists; removing a tie moves the row's last tie into the freed place, as the kernel's
padded CSR does, so the two can be compared slot by slot. Money flows are booked in the same
ledger accounts as the kernel's (their indices are the only thing taken from the kernel).
"""

from __future__ import annotations

import math

from kibs_mc.kernels.kibs import (  # the ledger's account indices (names only)
    COSTS_OUT,
    DEFAULTS,
    ENTRY_IN,
    EXIT_OUT,
    FEES,
    FIXED_COSTS,
    GOV_DEPTH,
    GOV_SPENT,
    GOV_STRATEGIC,
    GOV_TO,
    GOV_UNSPENT,
    HTE_KIBS_SERVICES,
    HTE_SPENDING,
    INTEREST,
    INTEREST_OUT,
    JOINT_VALUE,
    KIBS_COSTS,
    KIBS_GROSS,
    MARKET_IN,
    P_PARTNERS,
    PLATFORM_COSTS,
    PROJECT_COSTS,
    RD_COSTS,
    T_PARTNERS,
)

from tests.reference import SplitMix64

HTE, T_KIBS, P_KIBS, UNI, INT, FIN = range(6)
KIBS = (T_KIBS, P_KIBS)
# the instrument table (docs/ODD.md s.7.6)
STRATEGIC, MANAGEMENT, BUSINESS, INFORMATION = range(4)
N_INSTRUMENTS = 4
HTE_ONLY = (True, True, True, False)
ENROL_ORDER = (BUSINESS, STRATEGIC, MANAGEMENT, INFORMATION)


class Twin:
    """The cluster state as Python lists, built from a ClusterState (copied) after enrolment."""

    def __init__(self, state, prm, seed_state: int) -> None:
        ties = state.ties
        a = state.agents
        self.t = [int(x) for x in a.agent_type]
        self.pos = [list(map(float, r)) for r in a.position]
        self.k = [list(map(float, r)) for r in a.knowledge]
        self.core = [int(x) for x in a.core]
        self.m = [float(x) for x in a.manage]
        self.cap = [float(x) for x in a.capital]
        self.pot = [float(x) for x in a.potential]
        self.own = [float(x) for x in a.own_potential]
        self.innov = [int(x) for x in a.innovations]
        self.alive = [bool(x) for x in a.alive]
        self.enrolled = [[bool(x) for x in row] for row in a.enrolled]  # the instrument table
        self.capacity = [int(ties.indptr[i + 1] - ties.indptr[i]) for i in range(len(self.t))]
        self.rows = []
        for i in range(len(self.t)):
            lo = int(ties.indptr[i])
            hi = lo + int(ties.row_len[i])
            self.rows.append(
                [[int(ties.indices[p]), float(ties.weights[p]), bool(ties.partner[p])] for p in range(lo, hi)]
            )
        self.traits = prm.traits
        self.prm = prm
        self.rng = SplitMix64(0)
        self.rng.state = seed_state
        self.ledger = [float(x) for x in state.work.ledger]
        self.policy = SplitMix64(0)
        self.policy.state = int(state.work.policy[0])
        self.firm = [int(x) for x in a.firm]
        self.partner = [int(x) for x in a.partner]
        self.partner_firm = [int(x) for x in a.partner_firm]
        self.alignment = [float(x) for x in a.alignment]
        self.project = [float(x) for x in a.project]
        self.per_unit = [float(x) for x in state.work.per_unit]
        self.served = [float(x) for x in state.work.served]
        self.demand = [float(x) for x in state.work.demand]
        self.delivered = [0.0] * 4
        self.entered = int(state.work.clock[2])
        tally = state.work.tally  # partnerships formed at the start
        self.partners = {T_KIBS: int(tally[T_PARTNERS]), P_KIBS: int(tally[P_PARTNERS])}
        self.projects_run = 0
        self.joint = 0
        self.matches = 0
        self.step = int(state.work.clock[0])
        self.last = self.step
        self.born = [int(x) for x in state.work.born]
        self.young_entrants = 0  # HTE entrants observed for 24 steps before the run's end
        self.young_exits = 0  # ... that exited within 24 steps of entry
        self.exited_innovations: dict[int, int] = {}  # exited HTEs by innovation count
        self.exits = {"hte": 0, "kibs": 0, "fin": 0}
        self.imitations = 0
        self.independent = 0

    # ----------------------------------------------------------------- ties
    def slot(self, i: int, j: int) -> int:
        for p, tie in enumerate(self.rows[i]):
            if tie[0] == j:
                return p
        return -1

    def add(self, i: int, j: int, w: float, part: bool) -> bool:
        if i == j or self.slot(i, j) >= 0:
            return False
        if len(self.rows[i]) >= self.capacity[i] or len(self.rows[j]) >= self.capacity[j]:
            return False
        self.rows[i].append([j, w, part])
        self.rows[j].append([i, w, part])
        return True

    def _drop(self, i: int, p: int) -> None:
        row = self.rows[i]
        row[p] = row[-1]
        row.pop()

    def remove(self, i: int, p: int) -> None:
        j = self.rows[i][p][0]
        q = self.slot(j, i)
        self._drop(i, p)
        if q >= 0:
            self._drop(j, q)

    def set_w(self, i: int, p: int, w: float) -> None:
        j = self.rows[i][p][0]
        self.rows[i][p][1] = w
        q = self.slot(j, i)
        if q >= 0:
            self.rows[j][q][1] = w

    def best_tied(self, i: int, t: int, by_management: bool) -> int:
        best, best_value = -1, -1.0
        for j, _, _ in self.rows[i]:
            if self.t[j] != t or not self.alive[j]:
                continue
            value = self.m[j] if by_management else sum(self.k[j])
            if value > best_value:
                best, best_value = j, value
        return best

    # ----------------------------------------------------------------- learning
    def absorptive(self, i: int) -> float:
        prm = self.prm
        if not prm.adaptive_absorption:
            return prm.fixed_absorption
        kbar = sum(self.k[i]) / len(self.k[i])
        if kbar <= 0:
            return 0.0
        w = prm.absorption_management_weight
        return prm.absorptive_base[self.t[i]] * kbar / (kbar + prm.knowledge_half) * (1 - w + w * self.m[i])

    @staticmethod
    def distance(x: list[float], y: list[float]) -> float:
        den = sum(x) + sum(y)
        return sum(abs(a - b) for a, b in zip(x, y, strict=True)) / den if den > 0 else 0.0

    def phi(self, a: float, delta: float) -> float:
        b = self.prm.optimum_base + self.prm.optimum_slope * a
        return max(0.0, delta * (b - delta)) / (0.25 * b * b)

    def rate(self, i: int, delta: float) -> float:
        """a_i phi_i(delta), without tau and sharing."""
        a = self.absorptive(i)
        return a * self.phi(a, delta) if self.prm.distance_learning else a

    def sharing(self, w: float) -> float:
        return 1 - self.prm.trust_weight + self.prm.trust_weight * w

    def learning_value(self, i: int, j: int) -> float:
        r = self.rate(i, self.distance(self.k[i], self.k[j]))
        return sum(r * (y - x) for x, y in zip(self.k[i], self.k[j], strict=True) if y > x)

    def can_trade(self, i: int, j: int) -> bool:
        pairs = list(zip(self.k[i], self.k[j], strict=True))
        ahead_i = any(x - y > self.prm.tolerance * max(x, y) for x, y in pairs)
        ahead_j = any(y - x > self.prm.tolerance * max(x, y) for x, y in pairs)
        return ahead_i and ahead_j

    def meet(self, i: int, p: int, gained: list[float]) -> None:
        prm = self.prm
        j, w, _ = self.rows[i][p]
        if prm.barter and not self.can_trade(i, j):
            return
        delta = self.distance(self.k[i], self.k[j])
        share = prm.transfer_efficiency * self.sharing(w)
        ai, aj = self.absorptive(i), self.absorptive(j)
        if prm.distance_learning:
            ri = ai * self.phi(ai, delta) * share
            rj = aj * self.phi(aj, delta) * share
        else:
            ri, rj = ai * share, aj * share
        gi = gj = 0.0
        for f in range(len(self.k[i])):
            x, y = self.k[i][f], self.k[j][f]
            if y > x:
                self.k[i][f] = x + ri * (y - x)
                gi += ri * (y - x)
            elif x > y:
                self.k[j][f] = y + rj * (x - y)
                gj += rj * (x - y)
        gained[i] += gi
        gained[j] += gj
        if gi + gj > 0 and prm.network_dynamics and prm.tie_reinforcement > 0:
            self.set_w(i, p, w + prm.tie_reinforcement * (1 - w))
        for h, kk, g in ((i, j, gi), (j, i, gj)):
            if self.t[h] != HTE or self.t[kk] not in KIBS:
                continue
            served = g > 0
            if self.t[kk] == P_KIBS and self.m[kk] > self.m[h]:
                self.m[h] += prm.consulting_rate * (self.m[kk] - self.m[h])
                served = True
            if served and prm.service_fee > 0:
                self.cap[h] -= prm.service_fee
                self.cap[kk] += prm.service_fee
                for account in (KIBS_GROSS, FEES, HTE_KIBS_SERVICES, HTE_SPENDING):
                    self.book(account, prm.service_fee)

    def choose(self, i: int, u: float) -> int:
        row = self.rows[i]
        target = u * sum(t[1] for t in row)
        acc = 0.0
        for p, tie in enumerate(row):
            acc += tie[1]
            if target < acc:
                return p
        return len(row) - 1

    def meetings(self, order: list[int], gained: list[float]) -> None:
        n = len(self.t)
        if not self.prm.random_draw:
            for k in range(n - 1, 0, -1):
                r = self.rng.integer(k + 1)
                order[k], order[r] = order[r], order[k]
        for k in range(n):
            i = self.rng.integer(n) if self.prm.random_draw else order[k]
            if not self.alive[i] or not self.rows[i]:
                continue
            self.meet(i, self.choose(i, self.rng.uniform()), gained)

    # ----------------------------------------------------------------- instruments
    def book(self, account: int, amount: float) -> None:
        self.ledger[account] += amount

    def book_gov(self, k: int, t: int, money: float, unit_cost: float) -> None:
        self.book(GOV_SPENT, money)
        self.book(GOV_STRATEGIC + k, money)
        self.book(GOV_TO + k * 6 + t, money)
        if money > unit_cost:
            self.book(GOV_DEPTH + k, money - unit_cost)

    def slots_of(self, t: int) -> list[int]:
        return [j for j in range(len(self.t)) if self.t[j] == t]  # living or not, slot order

    def partner_of(self, i: int) -> int:
        j = self.partner[i]
        if j >= 0 and self.alive[j] and self.firm[j] == self.partner_firm[i]:
            return j
        return -1

    def on_platform(self, i: int) -> bool:
        return self.enrolled[i][INFORMATION] and self.per_unit[INFORMATION] > 0

    def platform_capacity(self) -> None:
        prm = self.prm
        members = sum(1 for i in range(len(self.t)) if self.alive[i] and self.enrolled[i][INFORMATION])
        ints = sum(1 for i in range(len(self.t)) if self.alive[i] and self.t[i] == INT)
        money = prm.money[INFORMATION]
        if money <= 0 or ints == 0 or members == 0:
            self.per_unit[INFORMATION] = 0.0
        elif prm.unit_cost[INFORMATION] <= 0:
            self.per_unit[INFORMATION] = 1.0
        else:
            self.per_unit[INFORMATION] = min(1.0, money / (prm.unit_cost[INFORMATION] * members))

    def partner_load(self) -> tuple[dict[int, int], dict[int, int]]:
        """Per KIBS, its current partnerships that joint work has not tied yet, and all of them."""
        held: dict[int, int] = {}
        partners: dict[int, int] = {}
        for h in range(len(self.t)):
            if self.alive[h] and self.t[h] == HTE:
                j = self.partner_of(h)
                if j >= 0:
                    partners[j] = partners.get(j, 0) + 1
                    if self.slot(h, j) < 0:
                        held[j] = held.get(j, 0) + 1
        return held, partners

    def partner_room(self, i: int, j: int, held: dict[int, int]) -> bool:
        need = 0 if self.slot(i, j) >= 0 else 1
        return len(self.rows[j]) + held.get(j, 0) + need <= self.capacity[j]

    def covers_partner(self, j: int, partners: dict[int, int]) -> bool:
        """j's capital covers H months of its outlay share for its partnerships and one more."""
        prm = self.prm
        need = prm.partner_cover * (partners.get(j, 0) + 1) * prm.risk_share * prm.project_outlay
        return need <= 0 or self.cap[j] >= need

    def partnership(self, i: int) -> None:
        d = len(self.k[i])
        techs = [j for j in range(len(self.t)) if self.alive[j] and self.t[j] == T_KIBS]
        pros = [j for j in range(len(self.t)) if self.alive[j] and self.t[j] == P_KIBS]
        k_t = 0.0
        for j in techs:
            for x in self.k[j]:
                k_t += x
        m_p = 0.0
        for j in pros:
            m_p += self.m[j]
        kbar = sum(self.k[i]) / d
        tech_deficit = 1 - kbar / (k_t / (len(techs) * d)) if techs and k_t > 0 else -1.0
        manage_deficit = 1 - self.m[i] / (m_p / len(pros)) if pros and m_p > 0 else -1.0
        want = P_KIBS if manage_deficit > tech_deficit else T_KIBS
        slots = self.slots_of(want)
        if self.on_platform(i):
            candidates = slots
        else:
            candidates = [j for j, _, _ in self.rows[i] if self.t[j] == want]
            if slots:
                candidates += [slots[self.policy.integer(len(slots))] for _ in range(self.prm.search_draws)]
        held, partners = self.partner_load()
        best, best_value = -1, 0.0
        for j in candidates:
            if not self.alive[j] or not self.partner_room(i, j, held):
                continue
            if not self.covers_partner(j, partners):
                continue
            value = self.m[j] - self.m[i] if want == P_KIBS else self.learning_value(i, j)
            if value > best_value:
                best, best_value = j, value
        if best < 0:
            return
        self.partner[i] = best
        self.partner_firm[i] = self.firm[best]
        self.alignment[i] = self.prm.alignment_start
        self.project[i] = 0.0
        self.partners[want] += 1

    def kibs_value(self, k: int, t: int) -> float:
        return self.m[k] if t == P_KIBS else sum(self.k[k])

    def contract(self, i: int, t: int) -> int:
        j = self.best_tied(i, t, t == P_KIBS)
        if j >= 0:
            return j
        free = [k for k in self.slots_of(t) if self.alive[k] and len(self.rows[k]) < self.capacity[k]]
        if self.on_platform(i):
            best, best_value = -1, -1.0
            for k in free:
                if self.kibs_value(k, t) > best_value:
                    best, best_value = k, self.kibs_value(k, t)
            return best
        slots = self.slots_of(t)
        if not slots:
            return -1
        best, best_value = -1, -1.0
        for _ in range(self.prm.search_draws):
            k = slots[self.policy.integer(len(slots))]
            if k in free and self.kibs_value(k, t) > best_value:
                best, best_value = k, self.kibs_value(k, t)
        return best

    def recipients(self) -> list[int]:
        r = [0, 0, 0, 0]
        for i in range(len(self.t)):
            if self.alive[i] and self.t[i] == HTE:
                r[STRATEGIC] += self.enrolled[i][STRATEGIC] and self.partner_of(i) >= 0
                r[MANAGEMENT] += self.enrolled[i][MANAGEMENT]
                r[BUSINESS] += self.enrolled[i][BUSINESS]
        return r

    def consulting(self, r: list[int]) -> None:
        prm = self.prm
        money = prm.money[MANAGEMENT] / r[MANAGEMENT]
        self.per_unit[MANAGEMENT] = money
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][MANAGEMENT] and self.t[i] == HTE):
                continue
            j = self.contract(i, P_KIBS)
            if j < 0:
                self.book(GOV_UNSPENT + MANAGEMENT, money)
                continue
            self.cap[j] += money
            self.book_gov(MANAGEMENT, P_KIBS, money, prm.unit_cost[MANAGEMENT])
            for account in (KIBS_GROSS, HTE_KIBS_SERVICES, HTE_SPENDING):
                self.book(account, money)
            gap = self.m[j] - self.m[i]
            step = (1 - math.exp(-prm.consulting_effect * money)) * gap if gap > 0 else 0.0
            if step > 0:
                self.m[i] += step
                self.delivered[MANAGEMENT] += step
                self.add(i, j, prm.new_tie_weight, False)

    def vouchers(self, r: list[int], gained: list[float]) -> None:
        prm = self.prm
        voucher = prm.money[BUSINESS] / r[BUSINESS]
        self.per_unit[BUSINESS] = voucher
        service = voucher * (1 - prm.platform_fee_share)
        fee = voucher * prm.platform_fee_share
        unis = [k for k in range(len(self.t)) if self.alive[k] and self.t[k] == UNI]
        cost = prm.unit_cost[BUSINESS]
        fees = 0.0
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][BUSINESS] and self.t[i] == HTE):
                continue
            j = self.contract(i, T_KIBS) if service > 0 else -1
            if j >= 0:
                self.cap[j] += service
                self.book_gov(BUSINESS, T_KIBS, service, cost * (1 - prm.platform_fee_share))
                for account in (KIBS_GROSS, HTE_KIBS_SERVICES, HTE_SPENDING):
                    self.book(account, service)
                depth = 1 - math.exp(-prm.service_effect * service)
                self.served[i] = depth
                rate = self.rate(i, self.distance(self.k[i], self.k[j])) * depth
                moved = 0.0
                for f in range(len(self.k[i])):
                    if self.k[j][f] > self.k[i][f]:
                        g = rate * (self.k[j][f] - self.k[i][f])
                        self.k[i][f] += g
                        moved += g
                gained[i] += moved
                self.delivered[BUSINESS] += moved
                if moved > 0:
                    self.add(i, j, prm.new_tie_weight, False)
            else:
                self.book(GOV_UNSPENT + BUSINESS, service)
            if unis and fee > 0:
                self.book_gov(BUSINESS, UNI, fee, cost * prm.platform_fee_share)
                self.book(HTE_SPENDING, fee)
                fees += fee
            else:
                self.book(GOV_UNSPENT + BUSINESS, fee)
        self.book(PLATFORM_COSTS, fees)
        self.book(COSTS_OUT, fees)
        if fees == 0:
            self.per_unit[BUSINESS] = 0.0

    def broker(self, i: int) -> None:
        prm = self.prm
        n = len(self.t)
        best, best_value = -1, 0.0
        for _ in range(prm.match_candidates):
            j = self.policy.integer(n)
            if j == i or not self.alive[j] or not self.enrolled[j][INFORMATION]:
                continue
            if self.slot(i, j) >= 0 or len(self.rows[j]) >= self.capacity[j]:
                continue
            value = self.learning_value(i, j)
            if value > best_value:
                best, best_value = j, value
        if best >= 0 and self.add(i, best, prm.new_tie_weight, False):
            self.matches += 1

    def information(self, gained: list[float]) -> None:
        prm = self.prm
        money = prm.money[INFORMATION]
        share = self.per_unit[INFORMATION]
        if share <= 0:
            self.book(GOV_UNSPENT + INFORMATION, money)
            return
        members = [i for i in range(len(self.t)) if self.alive[i] and self.enrolled[i][INFORMATION]]
        d = len(self.k[0])
        pool = [0.0] * d
        for i in members:
            for f in range(d):
                pool[f] += self.k[i][f]
        pool = [x / len(members) for x in pool]
        upkeep = share * prm.unit_cost[INFORMATION] * len(members)
        budget = money - upkeep
        q = min(1.0, budget / (prm.match_cost * len(members))) if prm.match_cost > 0 else 0.0
        matches = 0
        intensity = prm.codified_transfer * share * prm.transfer_efficiency
        for i in members:
            if intensity > 0:
                rate = intensity * self.rate(i, self.distance(self.k[i], pool))
                moved = 0.0
                for f in range(d):
                    if pool[f] > self.k[i][f]:
                        g = rate * (pool[f] - self.k[i][f])
                        self.k[i][f] += g
                        moved += g
                gained[i] += moved
                self.delivered[INFORMATION] += moved
            if q > 0 and budget >= prm.match_cost and self.policy.uniform() < q:
                budget -= prm.match_cost
                matches += 1
                self.broker(i)
        spent = upkeep + matches * prm.match_cost
        self.book_gov(INFORMATION, INT, spent, upkeep)
        self.book(PLATFORM_COSTS, spent)
        self.book(COSTS_OUT, spent)
        self.book(GOV_UNSPENT + INFORMATION, money - spent)

    def instruments(self, gained: list[float]) -> list[int]:
        prm = self.prm
        self.per_unit = [0.0] * 4
        if prm.money[INFORMATION] > 0:
            self.platform_capacity()
        if prm.money[STRATEGIC] > 0:
            for i in range(len(self.t)):
                reached = self.alive[i] and self.enrolled[i][STRATEGIC] and self.t[i] == HTE
                if reached and self.partner_of(i) < 0:
                    self.partnership(i)
        r = self.recipients()
        for k in (MANAGEMENT, BUSINESS):
            if prm.money[k] > 0 and r[k] == 0:
                self.book(GOV_UNSPENT + k, prm.money[k])
        if prm.money[MANAGEMENT] > 0 and r[MANAGEMENT] > 0:
            self.consulting(r)
        if prm.money[BUSINESS] > 0 and r[BUSINESS] > 0:
            self.vouchers(r, gained)
        if prm.money[INFORMATION] > 0:
            self.information(gained)
        return r

    # ----------------------------------------------------------------- joint projects, market
    def demand_factor(self, c: int) -> float:
        prm = self.prm
        if prm.market_elasticity == 0:
            return 1.0
        return (1 + self.demand[c] / prm.market_capacity) ** -prm.market_elasticity

    def joint_work(self, i: int, j: int) -> None:
        prm = self.prm
        p = self.slot(i, j)
        if p < 0:
            self.add(i, j, prm.new_tie_weight, True)
            return
        self.rows[i][p][2] = True
        self.rows[j][self.slot(j, i)][2] = True
        if prm.network_dynamics:
            w = self.rows[i][p][1]
            self.set_w(i, p, w + prm.tie_reinforcement * (1 - w))

    def projects(self, r: list[int]) -> None:
        prm = self.prm
        if prm.money[STRATEGIC] <= 0:
            return
        if r[STRATEGIC] == 0:
            self.book(GOV_UNSPENT + STRATEGIC, prm.money[STRATEGIC])
            return
        grant = prm.money[STRATEGIC] / r[STRATEGIC]
        self.per_unit[STRATEGIC] = grant
        w_m = prm.conversion_management_weight
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][STRATEGIC] and self.t[i] == HTE):
                continue
            j = self.partner_of(i)
            if j < 0:
                continue
            self.projects_run += 1
            self.book_gov(STRATEGIC, HTE, grant, prm.unit_cost[STRATEGIC])
            own_i = (1 - prm.risk_share) * prm.project_outlay if self.cap[i] > 0 else 0.0
            own_j = prm.risk_share * prm.project_outlay if self.cap[j] > 0 else 0.0
            self.cap[i] -= own_i
            self.cap[j] -= own_j
            resources = grant + own_i + own_j
            self.book(PROJECT_COSTS, resources)
            self.book(COSTS_OUT, resources)
            self.book(HTE_SPENDING, grant + own_i)
            self.book(KIBS_COSTS, own_j)
            g = self.alignment[i]
            used = resources * (1 - prm.opportunism * (1 - g))
            if prm.distance_learning:
                phi = self.phi(self.absorptive(i), self.distance(self.k[i], self.k[j]))
            else:
                phi = 1.0
            built = prm.project_yield * phi * (1 - w_m + w_m * max(self.m[i], self.m[j]))
            built *= used**prm.project_elasticity
            if built > 0:
                self.project[i] += built
                self.joint_work(i, j)
            c = self.core[i]
            size = self.project[i]
            hazard = prm.project_rate * size * self.demand_factor(c)
            if self.policy.uniform() < 1 - math.exp(-hazard):
                self.joint += 1
                self.innov[i] += 1
                self.demand[c] += 1
                self.k[i][c] += size
                self.k[j][c] += size
                self.delivered[STRATEGIC] += 2 * size
                value = prm.joint_value * size
                self.book(MARKET_IN, value)
                self.book(JOINT_VALUE, value)
                self.cap[j] += prm.benefit_share * value
                self.book(KIBS_GROSS, prm.benefit_share * value)
                self.cap[i] += (1 - prm.benefit_share) * value
                self.project[i] = 0.0
                self.alignment[i] = g + prm.alignment_gain * (1 - g)
            else:
                self.alignment[i] = g - prm.alignment_wear * g

    # ----------------------------------------------------------------- production, innovation
    def produce(self, own: list[float]) -> None:
        prm = self.prm
        for i in range(len(self.t)):
            if not self.alive[i]:
                continue
            if self.t[i] == UNI:
                self.k[i][self.core[i]] += prm.uni_rate
            elif self.t[i] == T_KIBS and self.cap[i] > 0 and prm.t_kibs_rate > 0:
                self.k[i][self.core[i]] += prm.t_kibs_rate
                self.cap[i] -= prm.t_kibs_cost
                for account in (COSTS_OUT, RD_COSTS, KIBS_COSTS):
                    self.book(account, prm.t_kibs_cost)
            elif self.t[i] == HTE and self.cap[i] > 0 and prm.rd_gain > 0:
                self.k[i][self.core[i]] += prm.rd_gain
                own[i] += prm.rd_gain
                cost = prm.rd_cost * (1 - prm.rd_cost_cut * self.served[i])
                self.cap[i] -= cost
                for account in (COSTS_OUT, RD_COSTS, HTE_SPENDING):
                    self.book(account, cost)

    def platform(self, gained: list[float]) -> None:
        prm = self.prm
        fee = prm.platform_fee_share * self.per_unit[BUSINESS]
        intensity = prm.platform_transfer * (1 - math.exp(-prm.platform_effect * fee))
        if intensity <= 0:
            return
        unis = [i for i in range(len(self.t)) if self.alive[i] and self.t[i] == UNI]
        if not unis:
            return
        d = len(self.k[0])
        pool = [0.0] * d
        for u in unis:
            for f in range(d):
                pool[f] += self.k[u][f]
        pool = [x / len(unis) for x in pool]
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][BUSINESS] and self.t[i] == HTE):
                continue
            r = intensity * prm.transfer_efficiency * self.rate(i, self.distance(self.k[i], pool))
            moved = 0.0
            for f in range(d):
                if pool[f] > self.k[i][f]:
                    g = r * (pool[f] - self.k[i][f])
                    self.k[i][f] += g
                    moved += g
            gained[i] += moved
            self.delivered[BUSINESS] += moved

    def innovate(self, gained: list[float], own: list[float]) -> None:
        prm = self.prm
        w = prm.conversion_management_weight
        for i in range(len(self.t)):
            if not self.alive[i] or self.t[i] != HTE:
                continue
            self.pot[i] += gained[i]
            self.own[i] += own[i]
            c = self.core[i]
            conversion = (1 - w + w * self.m[i]) * self.demand_factor(c)
            u_imitate, u_own = self.rng.uniform(), self.rng.uniform()
            if u_imitate < 1 - math.exp(-prm.imitation_rate * conversion * self.pot[i]):
                self.imitations += 1
                self.innov[i] += 1
                self.pot[i] = 0.0
                self.cap[i] += prm.imitation_reward
                self.book(MARKET_IN, prm.imitation_reward)
                self.demand[c] += 1
            if u_own < 1 - math.exp(-prm.independent_rate * conversion * self.own[i]):
                self.independent += 1
                self.innov[i] += 1
                self.own[i] = 0.0
                self.k[i][c] += prm.innovation_knowledge
                self.cap[i] += prm.independent_reward
                self.book(MARKET_IN, prm.independent_reward)
                self.demand[c] += 1

    # ----------------------------------------------------------------- finance
    def draw(self, i: int, t: int) -> None:
        tr = self.traits
        for c in range(2):
            u1, u2 = self.rng.uniform(), self.rng.uniform()
            z = math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
            self.pos[i][c] = min(1.0, max(0.0, 0.5 + tr.spread[t] * z))
        d = len(self.k[i])
        for f in range(d):
            u = self.rng.uniform()
            self.k[i][f] = tr.level[t] * (1 - tr.knowledge_spread + 2 * tr.knowledge_spread * u)
        self.core[i] = self.rng.integer(d)
        self.k[i][self.core[i]] *= tr.core_boost
        self.m[i] = min(1.0, max(0.0, tr.manage_mean[t] + tr.manage_spread * (2 * self.rng.uniform() - 1)))
        self.t[i] = t
        self.cap[i] = float(tr.capital[t])
        self.pot[i] = 0.0
        self.own[i] = 0.0
        self.partner[i] = self.partner_firm[i] = -1
        self.alignment[i] = self.project[i] = 0.0

    def accept(self, i: int, j: int) -> float:
        dist = math.hypot(self.pos[i][0] - self.pos[j][0], self.pos[i][1] - self.pos[j][1])
        return math.exp(-dist / self.prm.distance_scale) * (1 - self.distance(self.k[i], self.k[j]))

    def banks(self, i: int) -> list[tuple[int, float]]:
        return [(j, w) for j, w, _ in self.rows[i] if self.t[j] == FIN and self.alive[j]]

    def exit(self, i: int) -> None:
        banks = self.banks(i)
        total = sum(w for _, w in banks)
        if self.cap[i] < 0 and self.t[i] != FIN and total > 0:
            for j, w in banks:
                self.cap[j] += self.cap[i] * w / total
            self.book(DEFAULTS, -self.cap[i])
            self.cap[i] = 0.0
        self.book(EXIT_OUT, self.cap[i])
        self.cap[i] = 0.0
        self.alive[i] = False
        while self.rows[i]:
            self.remove(i, len(self.rows[i]) - 1)

    def finance(self) -> None:
        prm = self.prm
        n = len(self.t)
        for i in range(n):
            if not self.alive[i]:
                continue
            t = self.t[i]
            if t == HTE:
                self.cap[i] -= prm.fixed_cost
                for account in (COSTS_OUT, FIXED_COSTS, HTE_SPENDING):
                    self.book(account, prm.fixed_cost)
            elif t in KIBS:
                self.cap[i] -= prm.kibs_fixed_cost
                for account in (COSTS_OUT, FIXED_COSTS, KIBS_COSTS):
                    self.book(account, prm.kibs_fixed_cost)
            elif t != FIN:
                continue
            if t == FIN:
                if self.cap[i] >= 0:
                    continue
            else:
                if self.cap[i] < 0:
                    owed = prm.interest * (-self.cap[i])
                    self.cap[i] -= owed
                    banks = self.banks(i)
                    total = sum(w for _, w in banks)
                    if total > 0:
                        for j, w in banks:
                            self.cap[j] += owed * w / total
                        self.book(INTEREST, owed)
                    else:
                        self.book(COSTS_OUT, owed)
                        self.book(INTEREST_OUT, owed)
                    if t in KIBS:
                        self.book(KIBS_COSTS, owed)
                    elif t == HTE:
                        self.book(HTE_SPENDING, owed)
                bank = sum(w for _, w in self.banks(i))
                if self.cap[i] >= -prm.credit_line * min(1.0, bank):
                    continue
            self.exits["hte" if t == HTE else "fin" if t == FIN else "kibs"] += 1
            if t == HTE:
                count = self.innov[i]
                self.exited_innovations[count] = self.exited_innovations.get(count, 0) + 1
                b = self.born[i]
                if b > 0 and self.step - b <= 24 and b + 24 <= self.last:
                    self.young_exits += 1
            self.exit(i)
            u_start = self.rng.uniform()
            u = {k: self.rng.uniform() for k in ENROL_ORDER}
            if u_start >= prm.startup_prob:
                continue
            self.draw(i, t)
            if t == HTE:
                self.cap[i] = prm.startup_capital
            self.book(ENTRY_IN, self.cap[i])
            self.alive[i] = True
            self.firm[i] = n + self.entered
            self.entered += 1
            self.innov[i] = 0
            self.born[i] = self.step
            if t == HTE and self.step + 24 <= self.last:
                self.young_entrants += 1
            for k in range(N_INSTRUMENTS):
                self.enrolled[i][k] = (t == HTE or not HTE_ONLY[k]) and u[k] < prm.reach[k]
            for _ in range(prm.startup_search):
                j = self.rng.integer(n)
                if self.alive[j] and j != i and self.rng.uniform() < self.accept(i, j):
                    self.add(i, j, prm.new_tie_weight, False)
            if self.enrolled[i][STRATEGIC]:
                self.partnership(i)

    # ----------------------------------------------------------------- network
    def decay(self) -> None:
        prm = self.prm
        for i in range(len(self.t)):
            if not self.alive[i]:
                continue
            for p in range(len(self.rows[i]) - 1, -1, -1):
                j, w, part = self.rows[i][p]
                if j < i or part:
                    continue
                w *= 1 - prm.tie_decay
                if w < prm.tie_floor:
                    self.remove(i, p)
                else:
                    self.set_w(i, p, w)

    def form(self) -> None:
        prm = self.prm
        n = len(self.t)
        w0 = prm.new_tie_weight
        for i in range(n):
            if not self.alive[i]:
                continue
            if self.rng.uniform() < prm.triadic_p and self.rows[i]:
                j = self.rows[i][self.rng.integer(len(self.rows[i]))][0]
                if self.rows[j]:
                    self.add(i, self.rows[j][self.rng.integer(len(self.rows[j]))][0], w0, False)
            if self.rng.uniform() < prm.proximity_p:
                j = self.rng.integer(n)
                if self.alive[j] and j != i and self.rng.uniform() < self.accept(i, j):
                    self.add(i, j, w0, False)
            if self.t[i] == INT and self.rng.uniform() < prm.broker_p and len(self.rows[i]) > 1:
                a = self.rows[i][self.rng.integer(len(self.rows[i]))][0]
                b = self.rows[i][self.rng.integer(len(self.rows[i]))][0]
                self.add(a, b, w0, False)

    # ----------------------------------------------------------------- replicate
    def run(self, steps: int) -> None:
        n = len(self.t)
        order = list(range(n))
        self.last = self.step + steps
        for _ in range(steps):
            self.step += 1
            gained = [0.0] * n
            own = [0.0] * n
            if self.prm.money[BUSINESS] > 0:
                self.served = [0.0] * n
            self.meetings(order, gained)
            r = self.instruments(gained)
            if self.prm.production:
                self.produce(own)
                self.platform(gained)
            self.demand = [x * self.prm.market_keep for x in self.demand]
            self.projects(r)
            if self.prm.innovation:
                self.innovate(gained, own)
            if self.prm.finance:
                self.finance()
            if self.prm.network_dynamics:
                self.decay()
                self.form()
