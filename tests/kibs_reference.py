"""Slow pure-Python twin of the cluster-model step kernels (kernels/kibs.py), for tests only.

Written from docs/ODD.md section 7 with Python floats, lists of neighbours per agent and the
SplitMix64 twin of tests/reference.py. Rows are Python lists; removing a tie moves the row's
last tie into the freed place, as the kernel's padded CSR does, so the two can be compared
slot by slot.
"""

from __future__ import annotations

import math

from tests.reference import SplitMix64

HTE, T_KIBS, P_KIBS, UNI, INT, FIN = range(6)


class Twin:
    """The cluster state as Python lists, built from a ClusterState (copied)."""

    def __init__(self, state, traits, prm, seed_state: int) -> None:
        ties = state.ties
        state = state.agents
        self.t = [int(x) for x in state.agent_type]
        self.pos = [list(map(float, r)) for r in state.position]
        self.k = [list(map(float, r)) for r in state.knowledge]
        self.core = [int(x) for x in state.core]
        self.m = [float(x) for x in state.manage]
        self.cap = [float(x) for x in state.capital]
        self.pot = [float(x) for x in state.potential]
        self.innov = [int(x) for x in state.innovations]
        self.alive = [bool(x) for x in state.alive]
        self.member = [bool(x) for x in state.member]
        self.capacity = [int(ties.indptr[i + 1] - ties.indptr[i]) for i in range(len(self.t))]
        self.rows = []
        for i in range(len(self.t)):
            a = int(ties.indptr[i])
            b = a + int(ties.row_len[i])
            self.rows.append([[int(ties.indices[p]), float(ties.weights[p]), bool(ties.partner[p])]
                              for p in range(a, b)])
        self.traits = traits
        self.prm = prm
        self.rng = SplitMix64(0)
        self.rng.state = seed_state
        self.revenue = 0.0
        self.exits = 0
        self.innovations_total = 0

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

    # ----------------------------------------------------------------- learning
    def absorptive(self, i: int) -> float:
        prm = self.prm
        if not prm.adaptive_absorption:
            return prm.fixed_absorption
        kbar = sum(self.k[i]) / len(self.k[i])
        if kbar <= 0:
            return 0.0
        w = prm.absorption_management_weight
        base = prm.absorptive_base[self.t[i]]
        return base * kbar / (kbar + prm.knowledge_half) * (1 - w + w * self.m[i])

    @staticmethod
    def distance(x: list[float], y: list[float]) -> float:
        den = sum(x) + sum(y)
        return sum(abs(a - b) for a, b in zip(x, y, strict=True)) / den if den > 0 else 0.0

    def rate(self, i: int, delta: float) -> float:
        prm = self.prm
        a = self.absorptive(i)
        if prm.distance_learning:
            b = prm.optimum_base + prm.optimum_slope * a
            phi = max(0.0, delta * (b - delta)) / (b * b / 4)
        else:
            phi = 1.0
        return a * prm.transfer_efficiency * phi

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
        delta = self.distance(self.k[i], self.k[j]) * ((1 - prm.goal_alignment) if part else 1.0)
        ri, rj = self.rate(i, delta), self.rate(j, delta)
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
            if self.t[h] != HTE or self.t[kk] not in (T_KIBS, P_KIBS):
                continue
            served = g > 0
            if self.t[kk] == P_KIBS and self.m[kk] > self.m[h]:
                self.m[h] += prm.consulting_rate * (self.m[kk] - self.m[h])
                served = True
            if served:
                self.cap[h] -= prm.service_fee
                self.cap[kk] += prm.service_fee
                self.revenue += prm.service_fee

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

    # ----------------------------------------------------------------- production, innovation
    def produce(self, gained: list[float]) -> None:
        prm = self.prm
        for i in range(len(self.t)):
            if not self.alive[i]:
                continue
            if self.t[i] == UNI:
                self.k[i][self.core[i]] += prm.uni_rate
            elif self.t[i] == T_KIBS:
                self.k[i][self.core[i]] += prm.t_kibs_rate
            elif self.t[i] == HTE and self.cap[i] > 0 and prm.rd_gain > 0:
                self.k[i][self.core[i]] += prm.rd_gain
                gained[i] += prm.rd_gain
                self.cap[i] -= prm.rd_cost_member if self.member[i] else prm.rd_cost

    def platform(self, gained: list[float]) -> None:
        unis = [i for i in range(len(self.t)) if self.alive[i] and self.t[i] == UNI]
        if not unis or self.prm.platform_transfer <= 0:
            return
        d = len(self.k[0])
        pool = [sum(self.k[u][f] for u in unis) / len(unis) for f in range(d)]
        for i in range(len(self.t)):
            if not (self.alive[i] and self.member[i] and self.t[i] == HTE):
                continue
            r = self.prm.platform_transfer * self.rate(i, self.distance(self.k[i], pool))
            for f in range(d):
                if pool[f] > self.k[i][f]:
                    g = r * (pool[f] - self.k[i][f])
                    self.k[i][f] += g
                    gained[i] += g

    def innovate(self, gained: list[float]) -> None:
        prm = self.prm
        for i in range(len(self.t)):
            if not self.alive[i] or self.t[i] != HTE:
                continue
            self.pot[i] += gained[i]
            w = prm.conversion_management_weight
            p = 1 - math.exp(-prm.innovation_rate * (1 - w + w * self.m[i]) * self.pot[i])
            if self.rng.uniform() < p:
                self.innovations_total += 1
                self.innov[i] += 1
                self.pot[i] = 0.0
                self.k[i][self.core[i]] += prm.innovation_knowledge
                reward = prm.innovation_reward
                j = self.first_partner(i)
                if j >= 0 and prm.benefit_share > 0:
                    self.cap[j] += prm.benefit_share * reward
                    self.revenue += prm.benefit_share * reward
                    reward -= prm.benefit_share * reward
                self.cap[i] += reward

    # ----------------------------------------------------------------- finance
    def draw_hte(self, i: int) -> None:
        tr = self.traits
        for c in range(2):
            u1, u2 = self.rng.uniform(), self.rng.uniform()
            z = math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
            self.pos[i][c] = min(1.0, max(0.0, 0.5 + tr.spread[HTE] * z))
        d = len(self.k[i])
        for f in range(d):
            u = self.rng.uniform()
            self.k[i][f] = tr.level[HTE] * (1 - tr.knowledge_spread + 2 * tr.knowledge_spread * u)
        self.core[i] = self.rng.integer(d)
        self.k[i][self.core[i]] *= tr.core_boost
        self.m[i] = min(1.0, max(0.0, tr.manage_mean[HTE] + tr.manage_spread * (2 * self.rng.uniform() - 1)))

    def accept(self, i: int, j: int) -> float:
        dist = math.hypot(self.pos[i][0] - self.pos[j][0], self.pos[i][1] - self.pos[j][1])
        return math.exp(-dist / self.prm.distance_scale) * (1 - self.distance(self.k[i], self.k[j]))

    def partnership(self, i: int) -> None:
        best, best_value = -1, 0.0
        for j in range(len(self.t)):
            if not self.alive[j] or self.t[j] not in (T_KIBS, P_KIBS):
                continue
            if self.slot(i, j) < 0 and len(self.rows[j]) >= self.capacity[j]:
                continue
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

    def finance(self) -> None:
        prm = self.prm
        n = len(self.t)
        for i in range(n):
            if not self.alive[i] or self.t[i] != HTE:
                continue
            j = self.first_partner(i)
            if j >= 0:
                self.cap[i] -= (1 - prm.risk_share) * prm.fixed_cost
                self.cap[j] -= prm.risk_share * prm.fixed_cost
            else:
                self.cap[i] -= prm.fixed_cost
            if self.cap[i] < 0:
                self.cap[i] -= prm.interest * (-self.cap[i])
            bank = sum(tie[1] for tie in self.rows[i] if self.t[tie[0]] == FIN)
            if self.cap[i] >= -prm.credit_line * min(1.0, bank):
                continue
            self.exits += 1
            self.alive[i] = False
            while self.rows[i]:
                self.remove(i, len(self.rows[i]) - 1)
            u_start, u_member, u_partner = self.rng.uniform(), self.rng.uniform(), self.rng.uniform()
            self.rng.uniform()
            if u_start >= prm.startup_prob:
                continue
            self.draw_hte(i)
            self.cap[i] = prm.startup_capital
            self.pot[i] = 0.0
            self.alive[i] = True
            self.member[i] = u_member < prm.platform_share
            for _ in range(prm.startup_search):
                j = self.rng.integer(n)
                if self.alive[j] and j != i and self.rng.uniform() < self.accept(i, j):
                    self.add(i, j, prm.new_tie_weight, False)
            if u_partner < prm.partnership_share:
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
            if self.rng.uniform() < prm.long_range_p:
                j = self.rng.integer(n)
                if self.alive[j] and j != i and self.rng.uniform() < 1 - self.distance(self.k[i], self.k[j]):
                    self.add(i, j, w0, False)

    # ----------------------------------------------------------------- replicate
    def run(self, steps: int) -> None:
        n = len(self.t)
        order = list(range(n))
        for _ in range(steps):
            gained = [0.0] * n
            self.meetings(order, gained)
            if self.prm.production:
                self.produce(gained)
                self.platform(gained)
            if self.prm.innovation:
                self.innovate(gained)
            if self.prm.finance:
                self.finance()
            if self.prm.network_dynamics:
                self.decay()
                self.form()
