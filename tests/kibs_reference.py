"""Slow pure-Python twin of the cluster-model step kernels (kernels/kibs/, version 2), for
tests only.

Written from docs/ODD.md section 7 with Python floats, lists of neighbours per agent and the
SplitMix64 twin of tests/reference.py. Rows are Python lists; removing a tie moves the row's
last tie into the freed place, as the kernel's padded CSR does, so the two can be compared
slot by slot. Money flows are booked in the same ledger accounts as the kernel's.
"""

from __future__ import annotations

import math

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
        self.ledger: dict[str, float] = {
            k: 0.0
            for k in (
                "gov",
                "market",
                "costs",
                "entry",
                "exit",
                "kibs_gross",
                "kibs_costs",
                "interest",
                "defaults",
                "hte_kibs",
                "hte_spend",
            )
        }
        self.step = int(state.work.clock[0])
        self.last = self.step
        self.born = [int(x) for x in state.work.born]
        self.young_entrants = 0  # HTE entrants observed for 24 steps before the run's end
        self.young_exits = 0  # ... that exited within 24 steps of entry
        self.exited_innovations: dict[int, int] = {}  # exited HTEs by innovation count
        self.exits = {"hte": 0, "kibs": 0, "fin": 0}
        self.imitations = 0
        self.independent = 0
        self.projects_won = 0

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

    def first_partner(self, i: int) -> int:
        for tie in self.rows[i]:
            if tie[2]:
                return tie[0]
        return -1

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

    def sharing(self, w: float, part: bool) -> float:
        prm = self.prm
        s = 1 - prm.trust_weight + prm.trust_weight * w
        if part:
            s *= 1 - prm.opportunism * (1 - prm.goal_alignment)
        return s

    def synergy(self, i: int) -> float:
        return 1 + self.prm.information_synergy if self.enrolled[i][INFORMATION] else 1.0

    def can_trade(self, i: int, j: int) -> bool:
        pairs = list(zip(self.k[i], self.k[j], strict=True))
        ahead_i = any(x - y > self.prm.tolerance * max(x, y) for x, y in pairs)
        ahead_j = any(y - x > self.prm.tolerance * max(x, y) for x, y in pairs)
        return ahead_i and ahead_j

    def meet(self, i: int, p: int, gained: list[float]) -> None:
        prm = self.prm
        j, w, part = self.rows[i][p]
        if prm.barter and not self.can_trade(i, j):
            return
        delta = self.distance(self.k[i], self.k[j])
        tau = prm.transfer_efficiency
        c = int(self.enrolled[i][INFORMATION]) + int(self.enrolled[j][INFORMATION])
        if c:
            tau += prm.information_gain * (1 - tau) * 0.5 * c
        share = tau * self.sharing(w, part)
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
                self.ledger["kibs_gross"] += prm.service_fee
                self.ledger["hte_kibs"] += prm.service_fee
                self.ledger["hte_spend"] += prm.service_fee

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
        best, best_value = -1, 0.0
        for j in range(len(self.t)):
            if not self.alive[j] or self.t[j] != want:
                continue
            if self.slot(i, j) < 0 and len(self.rows[j]) >= self.capacity[j]:
                continue
            if want == P_KIBS:
                value = self.m[j] - self.m[i]
            else:
                r = self.rate(i, self.distance(self.k[i], self.k[j]))
                value = sum(r * (y - x) for x, y in zip(self.k[i], self.k[j], strict=True) if y > x)
            if value > best_value:
                best, best_value = j, value
        if best < 0:
            return
        p = self.slot(i, best)
        if p >= 0:
            self.set_w(i, p, 1.0)
            self.rows[i][p][2] = True
            self.rows[best][self.slot(best, i)][2] = True
        else:
            self.add(i, best, 1.0, True)

    def contract(self, i: int, t: int, by_management: bool) -> int:
        j = self.best_tied(i, t, by_management)
        if j >= 0:
            return j
        best, best_value = -1, -1.0
        for k in range(len(self.t)):
            if self.t[k] != t or not self.alive[k] or len(self.rows[k]) >= self.capacity[k]:
                continue
            value = self.m[k] if by_management else sum(self.k[k])
            if value > best_value:
                best, best_value = k, value
        if best >= 0 and self.add(i, best, self.prm.new_tie_weight, False):
            return best
        return -1

    def recipients(self) -> list[int]:
        r = [0, 0, 0, 0]
        for i in range(len(self.t)):
            if not self.alive[i]:
                continue
            if self.t[i] == HTE:
                r[STRATEGIC] += self.enrolled[i][STRATEGIC] and self.first_partner(i) >= 0
                r[MANAGEMENT] += self.enrolled[i][MANAGEMENT]
                r[BUSINESS] += self.enrolled[i][BUSINESS]
            elif self.t[i] == INT:
                r[INFORMATION] += 1
        return r

    def instruments(self, gained: list[float]) -> list[int]:
        prm = self.prm
        n = len(self.t)
        if prm.money[STRATEGIC] > 0:
            for i in range(n):
                reached = self.alive[i] and self.enrolled[i][STRATEGIC] and self.t[i] == HTE
                if reached and self.first_partner(i) < 0:
                    self.partnership(i)
        r = self.recipients()
        if prm.money[MANAGEMENT] > 0 and r[MANAGEMENT] > 0:
            money = prm.money[MANAGEMENT] / r[MANAGEMENT]
            for i in range(n):
                if not (self.alive[i] and self.enrolled[i][MANAGEMENT] and self.t[i] == HTE):
                    continue
                j = self.contract(i, P_KIBS, True)
                if j < 0:
                    continue
                self.cap[j] += money
                self.ledger["gov"] += money
                self.ledger["kibs_gross"] += money
                self.ledger["hte_kibs"] += money
                self.ledger["hte_spend"] += money
                if self.m[j] > self.m[i]:
                    step = 1 - math.exp(-prm.consulting_effect * money * self.synergy(i))
                    self.m[i] += step * (self.m[j] - self.m[i])
        if prm.money[BUSINESS] > 0 and r[BUSINESS] > 0:
            voucher = prm.money[BUSINESS] / r[BUSINESS]
            service = voucher * (1 - prm.platform_fee_share)
            platform = voucher * prm.platform_fee_share
            unis = [k for k in range(n) if self.alive[k] and self.t[k] == UNI]
            for i in range(n):
                if not (self.alive[i] and self.enrolled[i][BUSINESS] and self.t[i] == HTE):
                    continue
                j = self.contract(i, T_KIBS, False)
                if j >= 0 and service > 0:
                    self.cap[j] += service
                    self.ledger["gov"] += service
                    self.ledger["kibs_gross"] += service
                    self.ledger["hte_kibs"] += service
                    self.ledger["hte_spend"] += service
                    depth = 1 - math.exp(-prm.service_effect * service * self.synergy(i))
                    rate = self.rate(i, self.distance(self.k[i], self.k[j])) * depth
                    for f in range(len(self.k[i])):
                        if self.k[j][f] > self.k[i][f]:
                            g = rate * (self.k[j][f] - self.k[i][f])
                            self.k[i][f] += g
                            gained[i] += g
                if unis and platform > 0:
                    for k in unis:
                        self.cap[k] += platform / len(unis)
                    self.ledger["gov"] += platform
                    self.ledger["hte_spend"] += platform
        if prm.money[INFORMATION] > 0 and r[INFORMATION] > 0:
            for k in range(n):
                if self.alive[k] and self.t[k] == INT:
                    self.cap[k] += prm.money[INFORMATION] / r[INFORMATION]
            self.ledger["gov"] += prm.money[INFORMATION]
        return r

    def projects(self, r: list[int]) -> None:
        prm = self.prm
        if prm.money[STRATEGIC] <= 0 or r[STRATEGIC] == 0:
            return
        grant = prm.money[STRATEGIC] / r[STRATEGIC]
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][STRATEGIC] and self.t[i] == HTE):
                continue
            j = self.first_partner(i)
            if j < 0:
                continue
            self.ledger["gov"] += grant
            self.ledger["costs"] += prm.project_cost
            rest = prm.project_cost - grant
            self.cap[i] -= (1 - prm.risk_share) * rest
            self.cap[j] -= prm.risk_share * rest
            self.ledger["kibs_costs"] += prm.risk_share * rest
            self.ledger["hte_spend"] += (1 - prm.risk_share) * prm.project_cost
            a = self.absorptive(i)
            phi = self.phi(a, self.distance(self.k[i], self.k[j])) if prm.distance_learning else 1.0
            w = prm.conversion_management_weight
            conversion = 1 - w + w * max(self.m[i], self.m[j])
            hazard = prm.project_rate * phi * self.sharing(1.0, True) * conversion * self.synergy(i)
            if self.rng.uniform() < 1 - math.exp(-hazard):
                self.projects_won += 1
                self.independent += 1
                self.innov[i] += 1
                self.ledger["market"] += prm.project_value
                self.cap[j] += prm.benefit_share * prm.project_value
                self.ledger["kibs_gross"] += prm.benefit_share * prm.project_value
                self.cap[i] += (1 - prm.benefit_share) * prm.project_value
                self.k[i][self.core[i]] += prm.innovation_knowledge
                self.k[j][self.core[i]] += prm.innovation_knowledge

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
                self.ledger["costs"] += prm.t_kibs_cost
                self.ledger["kibs_costs"] += prm.t_kibs_cost
            elif self.t[i] == HTE and self.cap[i] > 0 and prm.rd_gain > 0:
                self.k[i][self.core[i]] += prm.rd_gain
                own[i] += prm.rd_gain
                cost = prm.rd_cost_member if self.enrolled[i][BUSINESS] else prm.rd_cost
                self.cap[i] -= cost
                self.ledger["costs"] += cost
                self.ledger["hte_spend"] += cost

    def platform(self, gained: list[float]) -> None:
        unis = [i for i in range(len(self.t)) if self.alive[i] and self.t[i] == UNI]
        if not unis or self.prm.platform_transfer <= 0:
            return
        d = len(self.k[0])
        pool = [sum(self.k[u][f] for u in unis) / len(unis) for f in range(d)]
        for i in range(len(self.t)):
            if not (self.alive[i] and self.enrolled[i][BUSINESS] and self.t[i] == HTE):
                continue
            learn = self.rate(i, self.distance(self.k[i], pool))
            r = self.prm.platform_transfer * self.prm.transfer_efficiency * learn
            for f in range(d):
                if pool[f] > self.k[i][f]:
                    g = r * (pool[f] - self.k[i][f])
                    self.k[i][f] += g
                    gained[i] += g

    def innovate(self, gained: list[float], own: list[float]) -> None:
        prm = self.prm
        w = prm.conversion_management_weight
        for i in range(len(self.t)):
            if not self.alive[i] or self.t[i] != HTE:
                continue
            self.pot[i] += gained[i]
            self.own[i] += own[i]
            conversion = 1 - w + w * self.m[i]
            u_imitate, u_own = self.rng.uniform(), self.rng.uniform()
            if u_imitate < 1 - math.exp(-prm.imitation_rate * conversion * self.pot[i]):
                self.imitations += 1
                self.innov[i] += 1
                self.pot[i] = 0.0
                self.cap[i] += prm.imitation_reward
                self.ledger["market"] += prm.imitation_reward
            if u_own < 1 - math.exp(-prm.independent_rate * conversion * self.own[i]):
                self.independent += 1
                self.innov[i] += 1
                self.own[i] = 0.0
                self.k[i][self.core[i]] += prm.innovation_knowledge
                self.cap[i] += prm.independent_reward
                self.ledger["market"] += prm.independent_reward

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
            self.ledger["defaults"] -= self.cap[i]
            self.cap[i] = 0.0
        self.ledger["exit"] += self.cap[i]
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
                self.ledger["costs"] += prm.fixed_cost
                self.ledger["hte_spend"] += prm.fixed_cost
            elif t in KIBS:
                self.cap[i] -= prm.kibs_fixed_cost
                self.ledger["costs"] += prm.kibs_fixed_cost
                self.ledger["kibs_costs"] += prm.kibs_fixed_cost
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
                        self.ledger["interest"] += owed
                    else:
                        self.ledger["costs"] += owed
                    if t in KIBS:
                        self.ledger["kibs_costs"] += owed
                    elif t == HTE:
                        self.ledger["hte_spend"] += owed
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
            self.ledger["entry"] += self.cap[i]
            self.alive[i] = True
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
            if self.rng.uniform() < prm.long_range_p and self.enrolled[i][INFORMATION]:
                j = self.rng.integer(n)
                if self.alive[j] and j != i and self.rng.uniform() < 1 - self.distance(self.k[i], self.k[j]):
                    self.add(i, j, w0, False)

    # ----------------------------------------------------------------- replicate
    def run(self, steps: int) -> None:
        n = len(self.t)
        order = list(range(n))
        self.last = self.step + steps
        for _ in range(steps):
            self.step += 1
            gained = [0.0] * n
            own = [0.0] * n
            self.meetings(order, gained)
            r = self.instruments(gained)
            if self.prm.production:
                self.produce(own)
                self.platform(gained)
            self.projects(r)
            if self.prm.innovation:
                self.innovate(gained, own)
            if self.prm.finance:
                self.finance()
            if self.prm.network_dynamics:
                self.decay()
                self.form()
