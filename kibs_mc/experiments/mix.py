"""``experiment.kind=mix``: which split of the budget over the interfaces, and for how much
money, across uncertain worlds (docs/mix.md).

The policies are the experiment's scenarios (the six governance settings: the references) and
every split of the budget over ``mix.shares`` in steps of 1/``mix.resolution`` (a lattice of
the simplex, at each of ``mix.budgets``), crossed with the robustness worlds
(:class:`~kibs_mc.experiments.robustness.Robustness`). Every (world, policy) is one scenario of
the ordinary plan, so chunks, executors and resume are those of every experiment; a split runs
only once the search proposes it (:class:`MixRounds`): generation 0 is a scrambled Sobol design,
each later generation NSGA-II's proposals (Optuna's sampler, replayed from the seed and the
results reached, so a resumed search proposes the same). World w owns the replicates
[w B, (w + 1) B) of the root seed's stream, B = ``replicates + mix.confirm_max``: the first
``replicates`` are the search (common seeds within the world), the rest are fresh seeds for the
confirmation, in which KN (Kim & Nelson 2001) adds replicates in every world to the pick, the
runner-up and the equal split until one is certified best (decided from the rows reached, so a
resumed run takes the same decisions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from kibs_mc.analysis import mix as mx
from kibs_mc.analysis import robustness as rb
from kibs_mc.analysis.effects import choose_baseline
from kibs_mc.analysis.inference import t_interval
from kibs_mc.analysis.report import markdown_table
from kibs_mc.analysis.selection import KNResult, next_count
from kibs_mc.analysis.voi import MIN_WORLDS, voi_table
from kibs_mc.config import Config, UncertainParameter
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.kind import Finished, KindOutput
from kibs_mc.experiments.robustness import Robustness, check_parameter, space_of
from kibs_mc.experiments.rounds import Round, Rows
from kibs_mc.run.plan import Scenario, ScenarioSpec, listed_scenarios
from kibs_mc.run.store import write_parquet

#: The equal split's name (at each budget: ``equal@<budget>``).
EQUAL = "equal"


@dataclass(frozen=True)
class Candidate:
    name: str
    shares: tuple[float, ...]
    budget: float | None  # None: the configured budget


#: Most splits per budget the lattice may hold (each is a scenario in every world).
MAX_LATTICE = 20_000


def _budgets(config: Config) -> list[float | None]:
    """The budgets the search chooses among (None: the configured one, without ``mix.budgets``)."""
    return list(config.mix.budgets) or [None]


def _interface(key: str) -> str:
    return key.rpartition(".")[2]


def lattice_name(config: Config, counts: Sequence[int], budget: float | None) -> str:
    """A lattice split's name: its shares in percent (``s40-30-20-10``), ``@<budget>`` with
    ``mix.budgets``."""
    m = config.mix.resolution
    own = "s" + "-".join(f"{100 * k / m:.3g}" for k in counts)
    return own if budget is None else f"{own}@{budget:g}"


def policy_name(config: Config, counts: Sequence[int], budget: float | None) -> str:
    """The policy a lattice split is: at the configured budget the equal split and the corners
    are listed settings (``mix.equal``; a corner by its interface's name); at another budget
    they are ``equal@<budget>`` and ``<interface>@<budget>``; any other split its
    :func:`lattice_name`."""
    mix, m = config.mix, config.mix.resolution
    listed = budget is None or budget == configured_budget(config)
    names = {n for n, _ in listed_scenarios(config)}
    at = "" if budget is None else f"@{budget:g}"
    if m in counts:
        corner = _interface(mix.shares[list(counts).index(m)])
        if not listed:
            return corner + at
        if corner in names:
            return corner
    if len(set(counts)) == 1:
        if not listed:
            return EQUAL + at
        if mix.equal in names:
            return mix.equal
    return lattice_name(config, counts, budget)


def candidates(config: Config) -> list[Candidate]:
    """The splits the search may propose: every point of the lattice of 1/``mix.resolution`` of
    the simplex at each budget but the listed settings (:func:`policy_name`), and with
    ``mix.budgets`` the equal split at each budget where the lattice misses it."""
    mix = config.mix
    d, m = len(mix.shares), mix.resolution
    names = {n for n, _ in listed_scenarios(config)}
    out: list[Candidate] = []
    for b in _budgets(config):
        points = mx.lattice(d, m)
        for counts in points:
            name = policy_name(config, counts, b)
            if name not in names:
                out.append(Candidate(name, tuple(k / m for k in counts), b))
        if b is not None and b != configured_budget(config) and m % d:
            out.append(Candidate(f"{EQUAL}@{b:g}", (1.0 / d,) * d, b))
    return out


def search_of(config: Config) -> mx.Search:
    """The optimiser's settings."""
    mix = config.mix
    return mx.Search(len(mix.shares), mix.resolution, len(_budgets(config)), mix.generations, config.seed)


def first_generation(config: Config) -> list[mx.Point]:
    """Generation 0: ``mix.candidates`` splits of a scrambled Sobol design on the simplex at
    each budget, snapped to the lattice (each point once)."""
    mix = config.mix
    design = mx.simplex_design(mix.candidates, len(mix.shares), config.seed)
    points = [(mx.snap(p, mix.resolution), b) for b in range(len(_budgets(config))) for p in design]
    return list(dict.fromkeys(points))


def point_policy(config: Config, point: mx.Point) -> str:
    return policy_name(config, point[0], _budgets(config)[point[1]])


def references(config: Config) -> list[str]:
    """The policies every search runs: the listed settings and, with ``mix.budgets``, the equal
    split and the corners at each budget."""
    names = [n for n, _ in listed_scenarios(config)]
    d, m = len(config.mix.shares), config.mix.resolution
    for b in config.mix.budgets:
        if b == configured_budget(config):
            continue
        corners = [tuple(m * (i == j) for j in range(d)) for i in range(d)]
        names += [f"{EQUAL}@{b:g}", *[policy_name(config, c, b) for c in corners]]
    return names


def configured_budget(config: Config) -> float:
    """The budget the listed settings spend: the value of ``mix.budget``."""
    node: object = config
    for part in config.mix.budget.split("."):
        node = getattr(node, part)
    return float(node)  # type: ignore[arg-type]  # a number: check() refuses other keys


def _label(config: Config) -> str:
    """The budget label of the listed settings ('' without ``mix.budgets``)."""
    return f"{configured_budget(config):g}" if config.mix.budgets else ""


def splits(config: Config) -> tuple[list[str], dict[str, str]]:
    """The policies the pick is chosen among and each one's budget label ('' for the configured
    budget): the listed scenarios but the baseline (splits of the configured budget: the six
    governance settings are the simplex's four corners and its centre) and the candidates."""
    exp = config.experiment
    names = [s.name for s in exp.scenarios]
    base = choose_baseline(names, exp.baseline)
    level = {n: _label(config) for n in names if n != base}
    level.update({c.name: "" if c.budget is None else f"{c.budget:g}" for c in candidates(config)})
    return list(level), level


def equal_split(config: Config, label: str) -> str:
    """The equal split's policy at a budget label."""
    return config.mix.equal if label == _label(config) else f"{EQUAL}@{label}"


def _overrides(config: Config, c: Candidate) -> list[str]:
    own = [f"{k}={v!r}" for k, v in zip(config.mix.shares, c.shares, strict=True)]
    return own if c.budget is None else [*own, f"{config.mix.budget}={c.budget!r}"]


def without_decisions(config: Config) -> Config:
    """``config`` whose uncertainty space leaves out the keys the search decides (``mix.shares``
    and ``mix.budget``: e.g. ``governance.budget`` of ``uncertainty=policy``), so the worlds
    vary what is not known and the search what is chosen."""
    decided = {*config.mix.shares, config.mix.budget}
    space = config.uncertainty
    kept = [p for p in space.parameters if p.key not in decided]
    if len(kept) == len(space.parameters):
        return config
    return replace(config, uncertainty=replace(space, parameters=kept))


def search_size(config: Config) -> int:
    """Search replicates each world holds for a policy: ``mix.search_max`` (at least
    ``replicates``, which every policy runs)."""
    return max(config.replicates, config.mix.search_max)


def block(config: Config) -> int:
    """Replicates each world owns in the root seed's stream: the search's and the fresh ones."""
    return search_size(config) + config.mix.confirm_max


@dataclass(frozen=True)
class Decision:
    """What the rows reached say: the search's tables, its screening and the confirmation."""

    data: rb.Outcomes  # the search's first ``replicates`` of every policy run
    first: pl.DataFrame  # mix_table from them: what the optimiser is told
    table: pl.DataFrame  # ``first`` with the screened splits' rows from all their search replicates
    screening: mx.Confirmation  # KN among the best splits at the leader's money, on the search seeds
    confirmation: mx.Confirmation  # KN among the pick, the runner-up and the equal split, fresh seeds


class Mix(Robustness):
    name = "mix"
    requires = (*Robustness.requires, "optuna")  # type: ignore[assignment]  # Robustness: tuple[str]

    # -- before any work
    def check(self, config: Config) -> None:
        config = without_decisions(config)
        super().check(config)
        mix = config.mix
        if len(mix.shares) < 2:
            raise ConfigError(
                "mix.shares", list(mix.shares), "allowed: at least two keys whose values split the budget"
            )
        for i, key in enumerate(mix.shares):
            check_parameter(config, f"mix.shares[{i}]", UncertainParameter(key=key, low=0.0, high=1.0))
        for i, b in enumerate(mix.budgets):
            if not b > 0:
                raise ConfigError(f"mix.budgets[{i}]", b, "allowed: a budget > 0")
        if mix.budgets:
            low, high = min(mix.budgets), max(mix.budgets)
            check_parameter(config, "mix.budget", UncertainParameter(key=mix.budget, low=low, high=high))
        names = {n for n, _ in listed_scenarios(config)}
        if not mix.budgets and mix.equal not in names:
            raise ConfigError(
                "mix.equal",
                mix.equal,
                "allowed: one of the listed scenarios (" + ", ".join(sorted(names)) + ")",
            )
        size = math.comb(mix.resolution + len(mix.shares) - 1, len(mix.shares) - 1)
        if size > MAX_LATTICE:
            raise ConfigError(
                "mix.resolution",
                mix.resolution,
                f"allowed: a resolution whose lattice has at most {MAX_LATTICE} splits "
                f"({len(mix.shares)} shares in steps of 1/{mix.resolution}: {size})",
            )
        clash = sorted(names & _candidate_names(config))
        if clash:
            raise ConfigError(
                "experiment.scenarios",
                clash,
                "allowed: names other than the candidates' (s<shares in percent>, equal@<budget>)",
            )

    def prepare(self, config: Config, overrides: Sequence[str]) -> tuple[Config, list[str]]:
        """As every kind's, the worlds' space without the keys the search decides."""
        config, overrides = super().prepare(config, overrides)
        return without_decisions(config), list(overrides)

    # -- the plan
    def policies(self, config: Config) -> list[ScenarioSpec]:
        """The references (``experiment.scenarios``) then every split the search may propose
        (run only once proposed: :class:`MixRounds`)."""
        return [*listed_scenarios(config), *[(c.name, _overrides(config, c)) for c in candidates(config)]]

    def scenario_specs(self, config: Config, overrides: Sequence[str]) -> list[ScenarioSpec]:
        params = space_of(config).parameters
        specs: list[ScenarioSpec] = []
        for row in self.worlds(config).iter_rows(named=True):
            values = [f"{p.key}={_format(row[p.key], p.integer)}" for p in params]
            for name, own in self.policies(config):
                specs.append((self.scenario_name(config, row["world"], name), [*own, *values]))
        return specs

    def first_replicates(self, config: Config, specs: Sequence[ScenarioSpec]) -> list[int]:
        count = len(self.policies(config))
        return [(i // count) * block(config) for i in range(len(specs))]

    def rounds(self, config: Config, scenarios: Sequence[Scenario]) -> MixRounds:
        return MixRounds(self, config, tuple(scenarios))

    # -- deciding from the rows reached
    def decide(
        self, config: Config, rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: Mapping[int, int]
    ) -> Decision:
        """The search's tables, its screening and KN's confirmation from the replicates each
        scenario had reached."""
        objective, mix = config.robustness.objective, config.mix
        worlds = self.worlds(config)["world"].to_list()
        R, S = config.replicates, search_size(config)
        names = evaluated(self, config, scenarios, counts)
        frame = _local(rows, scenarios, counts)
        search = frame.filter((pl.col("local") < S) & pl.col("policy").is_in(names))
        first_rows = search.filter(pl.col("local") < R).with_columns(
            (pl.col("world") * R + pl.col("local")).alias("replicate")
        )
        cost = objective.cost if objective.per_money else None
        data = rb.to_arrays(first_rows, worlds, names, objective.outcome, cost, R)
        maximize = objective.direction == "max"
        base = choose_baseline([s.name for s in config.experiment.scenarios], config.experiment.baseline)
        first = mx.mix_table(data, names.index(base), objective.per_money, maximize)
        among, level = splits(config)
        ranked = first.filter(pl.col("policy").is_in(among)).sort("rank")["policy"].to_list()
        at = [p for p in ranked if level[p] == level[ranked[0]]][: mix.screen]
        delta = _delta(config, data, at[0])
        screened = close(
            at, [_fresh_means(search, p, len(worlds), objective.outcome) for p in at], R, delta, maximize
        )
        observed = [_fresh_means(search, p, len(worlds), objective.outcome) for p in screened]
        if S > R >= 2:
            screening = mx.confirm(
                screened, ["screened"] * len(screened), observed, delta, mix.alpha, R, maximize
            )
        else:  # nothing to screen: every split keeps its search replicates
            done = KNResult(survivors=list(range(len(screened))), done=True)
            screening = mx.Confirmation(
                screened, ["screened"] * len(screened), observed, done, delta, mix.alpha
            )
        table = self.widened(config, first, search, screening, base)
        systems, roles = mx.contenders(table, among, lambda label: equal_split(config, label), level)
        fresh = frame.filter(pl.col("local") >= S)
        observations = [_fresh_means(fresh, s, len(worlds), objective.outcome) for s in systems]
        delta = _delta(config, data, systems[0])
        confirmation = mx.confirm(systems, roles, observations, delta, mix.alpha, mix.first_stage, maximize)
        return Decision(data, first, table, screening, confirmation)

    def widened(
        self, config: Config, first: pl.DataFrame, search: pl.DataFrame, screening: mx.Confirmation, base: str
    ) -> pl.DataFrame:
        """``first`` with each screened split's row from all the search replicates it ran
        (paired with the baseline's, which runs along), ``replicates`` per world, re-ranked."""
        objective, S, R = config.robustness.objective, search_size(config), config.replicates
        worlds = self.worlds(config)["world"].to_list()
        ran = dict(zip(screening.systems, (len(x) for x in screening.observations), strict=True))
        table = first.with_columns(pl.lit(R, dtype=pl.Int64).alias("replicates"))
        for policy in [p for p, n in ran.items() if n > R]:
            pair = search.filter(pl.col("policy").is_in([base, policy])).with_columns(
                (pl.col("world") * S + pl.col("local")).alias("replicate")
            )
            cost = objective.cost if objective.per_money else None
            data = rb.to_arrays(pair, worlds, [base, policy], objective.outcome, cost, S)
            row = mx.mix_table(data, 0, objective.per_money, objective.direction == "max")
            row = row.filter(pl.col("policy") == policy).drop("rank", "on_front")
            table = table.update(
                row.with_columns(pl.lit(ran[policy], dtype=pl.Int64).alias("replicates")), on="policy"
            )
        return mx.ranked(table, objective.direction == "max")

    # -- after the run
    def analyse(self, finished: Finished) -> KindOutput:
        config, run_dir = finished.config, finished.run_dir
        scenarios, counts = _reached(self, config, finished.rows)
        decision = self.decide(config, finished.rows, scenarios, counts)
        objective, rob = config.robustness.objective, config.robustness
        names = decision.data.policies  # the policies evaluated
        base = choose_baseline([s.name for s in config.experiment.scenarios], config.experiment.baseline)
        maximize = objective.direction == "max"
        worlds = self.worlds(config)
        write_parquet(worlds, run_dir / "worlds.parquet")
        scoring = rb.Scoring(names.index(base), objective.per_money, maximize, rob.satisfice)
        robust = rb.robustness_table(decision.data, scoring, config.seed, samples=rob.bootstrap)
        write_parquet(robust, run_dir / "robustness.parquet")
        table = self.mix_frame(config, decision.table, robust)
        write_parquet(table, run_dir / "mix.parquet")
        confirmation = decision.confirmation.frame()
        write_parquet(confirmation, run_dir / "confirmation.parquet")
        front = front_figure(run_dir, table, objective.outcome) if config.figures else None
        figures = [front] if front is not None else []
        lines = self.mix_lines(config, table, decision.confirmation)
        lines[1:1] = screening_lines(config, decision.screening)
        lines.append(self.where_and_what_next(config, decision, worlds, run_dir))
        section = self.mix_section(config, table, confirmation, lines)
        children = [
            {
                "name": r["policy"],
                "params": {"policy": r["policy"], "worlds": rob.worlds, "replicates": config.replicates},
                "metrics": {
                    k: float(r[k])
                    for k in ("objective", "effect", "money", "p_best", "regret_mean")
                    if r[k] is not None and np.isfinite(r[k])
                },
            }
            for r in table.iter_rows(named=True)
        ]
        unlisted = set(finished.rows["scenario"].unique().to_list())
        return KindOutput(
            figures=figures, sections=[section], unlisted=unlisted, children=children, lines=lines
        )

    def where_and_what_next(
        self, config: Config, decision: Decision, worlds: pl.DataFrame, run_dir: Path
    ) -> str:
        """Where the pick stops being the best split (PRIM over the worlds: discovery.parquet)
        and what to measure next for the split decision (EVPPI among the splits: voi.parquet)."""
        objective, rob = config.robustness.objective, config.robustness
        names = decision.data.policies  # the policies evaluated
        base = choose_baseline([s.name for s in config.experiment.scenarios], config.experiment.baseline)
        among = [p for p in splits(config)[0] if p in names]
        j = rb.world_objective(decision.data, names.index(base), objective.per_money)[0]
        j = j[:, [names.index(p) for p in among]]
        maximize = objective.direction == "max"
        pick = decision.confirmation.systems[0]
        score = np.where(np.isfinite(j), j if maximize else -j, -np.inf)
        not_best = score.argmax(axis=1) != among.index(pick)
        discovery, trajectory = rb.discover(
            worlds,
            {(pick, "not_best"): not_best},
            density=rob.density,
            seed=config.seed,
            box_bootstrap=rob.box_bootstrap,
        )
        write_parquet(discovery, run_dir / "discovery.parquet")
        write_parquet(trajectory, run_dir / "discovery_trajectory.parquet")
        value = voi_table(worlds, j, among, maximize, config.seed)
        write_parquet(value, run_dir / "voi.parquet")
        where = (
            f"`{pick}` is the best split in every world"
            if not not_best.any()
            else f"`{pick}` is not the best split in {int(not_best.sum())} of {len(not_best)} worlds"
            + rb.where_words(discovery, rb.ranges_of(worlds), pick, "not_best")
        )
        if value.height == 0:
            return where + f" (EVPPI needs at least {MIN_WORLDS} worlds)."
        top = value.row(0, named=True)
        return (
            where + f". Worth measuring first for the split: `{top['parameter']}` (EVPPI {top['evppi']:.3g} "
            f"[{top['ci_low']:.3g}, {top['ci_high']:.3g}] in the objective's units; voi.parquet)."
        )

    @staticmethod
    def mix_frame(config: Config, table: pl.DataFrame, robust: pl.DataFrame) -> pl.DataFrame:
        """mix.parquet: per policy its shares and budget (null for the references), money,
        robust objective and effect with CIs, P(best) and mean regret with CIs, rank, front."""
        wide = robust.filter(pl.col("metric").is_in(["p_best", "regret_mean"])).pivot(
            on="metric", index="policy", values=["value", "ci_low", "ci_high"]
        )
        wide = wide.rename(
            {
                f"{v}_{m}": (m if v == "value" else f"{m}_{v}")
                for m in ("p_best", "regret_mean")
                for v in ("value", "ci_low", "ci_high")
            }
        )
        shares = {c.name: c for c in candidates(config)}
        keys = [k.rpartition(".")[2] for k in config.mix.shares]
        d = len(keys)
        split = {p: c.shares for p, c in shares.items()}  # the listed equal split and corners too
        split.update({config.mix.equal: (1.0 / d,) * d})
        split.update({k: tuple(float(i == j) for j in range(d)) for i, k in enumerate(keys)})
        extra = pl.DataFrame(
            {
                "policy": table["policy"],
                **{
                    k: [split[p][i] if p in split else None for p in table["policy"]]
                    for i, k in enumerate(keys)
                },
                "budget": [
                    (shares[p].budget if shares[p].budget is not None else None) if p in shares else None
                    for p in table["policy"]
                ],
                "candidate": [p in shares for p in table["policy"]],
            },
            schema_overrides={k: pl.Float64 for k in [*keys, "budget"]},
        )
        return extra.join(table, on="policy", maintain_order="left").join(
            wide, on="policy", how="left", maintain_order="left"
        )

    @staticmethod
    def mix_lines(config: Config, table: pl.DataFrame, c: mx.Confirmation) -> list[str]:
        o = config.robustness.objective
        pick = c.systems[0]
        row = table.filter(pl.col("policy") == pick).row(0, named=True)
        units = f"`{o.outcome}` per unit of `{o.cost}`" if o.per_money else f"`{o.outcome}`"
        found = (
            f"The search across {config.robustness.worlds} worlds puts split `{pick}` first: "
            f"{row['objective']:.3g} {units} [{row['objective_ci_low']:.3g}, {row['objective_ci_high']:.3g}] "
            "(95% t interval over the worlds)"
            + (f", P(best) {row['p_best']:.2f} among all policies" if "p_best" in row else "")
        )
        equal = next((s for s, r in zip(c.systems, c.roles, strict=True) if "equal_split" in r), None)
        if equal is not None and equal != pick:
            e = table.filter(pl.col("policy") == equal).row(0, named=True)
            found += (
                f"; the equal split `{equal}`: {e['objective']:.3g} [{e['objective_ci_low']:.3g}, "
                f"{e['objective_ci_high']:.3g}]; paired effect on `{o.outcome}` against the baseline "
                f"{row['effect']:.3g} [{row['effect_ci_low']:.3g}, {row['effect_ci_high']:.3g}] against "
                f"{e['effect']:.3g} [{e['effect_ci_low']:.3g}, {e['effect_ci_high']:.3g}]"
            )
        found += "."
        others = ", ".join(f"`{s}` ({r})" for s, r in zip(c.systems[1:], c.roles[1:], strict=True)) or "none"
        n = max(len(x) for x in c.observations) if c.observations else 0
        against = (
            f"against {others} on fresh seeds (KN, delta = {c.delta:g} `{o.outcome}`, alpha = {c.alpha:g})"
        )
        if c.selected == pick and len(c.systems) > 1:
            verdict = (
                f"Confirmed: `{pick}` is the best split {against}, after up to {n} fresh replicates per "
                f"world: within delta of the best with probability >= {1 - c.alpha:g}."
            )
        elif c.selected is not None and len(c.systems) > 1:
            verdict = (
                f"Not confirmed: {against}, KN selects `{c.selected}` instead of the search's pick, "
                f"so `{c.selected}` is the best split (within delta, probability >= {1 - c.alpha:g})."
            )
        elif len(c.systems) == 1:
            verdict = f"`{pick}` had no contender at its money to confirm against."
        else:
            alive = [c.systems[i] for i in c.result.survivors]
            out = [f"`{s}` (eliminated at stage {r})" for s, r in _eliminated(c)]
            verdict = (
                f"Not certified: {against}, " + " and ".join(f"`{s}`" for s in alive) + " are still in "
                f"contention after {n} fresh replicates per world (mix.confirm_max = "
                f"{config.mix.confirm_max}): within noise of each other"
                + (f"; out: {', '.join(out)}." if out else ".")
            )
        if equal is not None and equal != pick:
            lead, low, high = c.lead(c.systems.index(equal))
            if np.isfinite(lead):
                verdict += (
                    f" On the fresh seeds `{pick}` leads the equal split by {lead:.3g} "
                    f"[{low:.3g}, {high:.3g}] `{o.outcome}` (mean over the worlds, paired 95% t interval)."
                )
        return [found, verdict]

    def mix_section(
        self, config: Config, table: pl.DataFrame, confirmation: pl.DataFrame, lines: list[str]
    ) -> str:
        keys = [k.rpartition(".")[2] for k in config.mix.shares]
        shown = table.sort("rank").select(
            "policy",
            *keys,
            "budget",
            "money",
            "objective",
            "objective_ci_low",
            "objective_ci_high",
            "effect",
            "p_best",
            "regret_mean",
            "replicates",
            "on_front",
        )
        return "\n".join(
            [
                "## Best mix",
                "",
                f"{int(table['candidate'].sum())} splits of the budget over "
                + ", ".join(f"`{k}`" for k in config.mix.shares)
                + f" in steps of 1/{config.mix.resolution}, proposed in generations: a scrambled Sobol "
                f"design of {config.mix.candidates} points, then {config.mix.generations} generations "
                "of as many NSGA-II proposals (Optuna), each told the robust results of the ones before; "
                "and the equal split"
                + (
                    f", at budgets {', '.join(f'{b:g}' for b in config.mix.budgets)}"
                    if config.mix.budgets
                    else ""
                )
                + f", beside the experiment's {len(config.experiment.scenarios)} settings, across "
                f"{config.robustness.worlds} worlds x {config.replicates} replicates (common seeds within a "
                "world). `objective`: mean over the worlds of each world's objective, with its 95% "
                "t interval over the worlds; `effect`: paired effect against the baseline; `money`: "
                "spending above the baseline's; `on_front`: no policy spends less and does better "
                "(the front of money against robust effect, `mix_front.png`). `mix.parquet`; KN's "
                "confirmation on fresh seeds: `confirmation.parquet`.",
                "",
                *lines,
                "",
                markdown_table(shown.with_columns(pl.selectors.float().round_sig_figs(3))),
                "",
                markdown_table(confirmation),
                "",
            ]
        )


def screening_lines(config: Config, s: mx.Confirmation) -> list[str]:
    """Where the search's replicates grew (none when ``mix.search_max`` adds none)."""
    R, S = config.replicates, search_size(config)
    if S <= R or len(s.systems) < 2:
        return []
    ran = ", ".join(f"`{p}` {len(x)}" for p, x in zip(s.systems, s.observations, strict=True))
    out = ", ".join(f"`{p}` at stage {r}" for p, r in _eliminated(s)) or "none"
    return [
        f"Search replicates grew where splits were close: KN (delta = {s.delta:g}, alpha = {s.alpha:g}) on "
        f"the search seeds among the {len(s.systems)} best splits at the leader's money, from {R} up to "
        f"mix.search_max = {S} replicates per world; each ran {ran}; dropped: {out}."
    ]


def _candidate_names(config: Config) -> set[str]:
    """Every name a candidate may have, whether or not a listed setting stands for it."""
    d, m = len(config.mix.shares), config.mix.resolution
    names = set()
    for b in _budgets(config):
        names |= {lattice_name(config, c, b) for c in mx.lattice(d, m)}
        if b is not None:
            names |= {f"{EQUAL}@{b:g}", *[f"{_interface(k)}@{b:g}" for k in config.mix.shares]}
    return names


def _eliminated(c: mx.Confirmation) -> list[tuple[str, int]]:
    """The systems KN dropped, with the stage at which it dropped each."""
    return [(c.systems[i], r) for i, r in sorted(c.result.eliminated_at.items())]


def _format(value: float, integer: bool) -> str:
    return str(int(value)) if integer else repr(float(value))


def _local(rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: Mapping[int, int]) -> pl.DataFrame:
    """The rows reached, each with its ``world``, ``policy`` and ``local`` replicate number in
    its world's block."""
    reached = pl.DataFrame(
        {
            "scenario": [sc.name for sc in scenarios],
            "first": [sc.first_replicate for sc in scenarios],
            "count": [counts[sc.index] for sc in scenarios],
        },
        schema={"scenario": pl.String, "first": pl.Int64, "count": pl.Int64},
    )
    split = pl.col("scenario").str.split_exact("/", 1)
    return (
        rows.join(reached, on="scenario")
        .with_columns(
            (pl.col("replicate") - pl.col("first")).alias("local"),
            split.struct.field("field_0").str.slice(1).cast(pl.Int64).alias("world"),
            split.struct.field("field_1").alias("policy"),
        )
        .filter(pl.col("local") < pl.col("count"))
    )


def close(policies: list[str], observed: list[np.ndarray], n: int, delta: float, maximize: bool) -> list[str]:
    """The first policy (the leader) and those within noise of it: the paired 95% t interval
    of the leader's lead over the first ``n`` observations (common seeds) reaches down to
    ``delta`` or below."""
    if n < 2:
        return policies[:1]
    sign = 1.0 if maximize else -1.0
    lead = observed[0][:n]
    kept = policies[:1]
    for p, x in zip(policies[1:], observed[1:], strict=True):
        d = sign * (lead - x[:n])
        if len(d) == n and (not np.isfinite(d).all() or t_interval(d, 0.95)[0] <= delta):
            kept.append(p)
    return kept


def _delta(config: Config, data: rb.Outcomes, pick: str) -> float:
    """KN's indifference zone: ``mix.delta``, or with ``mix.relative`` that share of the pick's
    mean outcome over the search's first replicates."""
    mix = config.mix
    if not mix.relative:
        return mix.delta
    with np.errstate(all="ignore"):
        delta = mix.delta * abs(float(np.nanmean(data.y[:, data.policies.index(pick), :])))
    return delta if delta > 0 else mix.delta  # a pick without outcome: delta as given


def _fresh_means(fresh: pl.DataFrame, policy: str, worlds: int, outcome: str) -> np.ndarray:
    """A system's fresh replicates, each the mean over the worlds of ``outcome`` at one local
    replicate number, in order, as long as every world has them (the same seeds per system)."""
    mine = fresh.filter(pl.col("policy") == policy)
    if mine.height == 0:
        return np.zeros(0)
    per = (
        mine.group_by("local")
        .agg(pl.col(outcome).cast(pl.Float64).mean().alias("m"), pl.len().alias("n"))
        .sort("local")
    )
    complete = per.filter(pl.col("n") == worlds)
    locals_ = complete["local"].to_numpy()
    start = int(per["local"].to_numpy().min())
    run = locals_ == np.arange(start, start + len(locals_))  # consecutive from the first fresh one
    stop = int(np.argmin(run)) if not run.all() else len(run)
    return complete["m"].to_numpy()[:stop]


def evaluated(
    kind: Mix, config: Config, scenarios: Sequence[Scenario], counts: Mapping[int, int]
) -> list[str]:
    """The policies with the search's ``replicates`` in every world, in the plan's order."""
    least: dict[str, int] = {}
    for sc in scenarios:
        policy = sc.name.partition("/")[2]
        least[policy] = min(least.get(policy, counts[sc.index]), counts[sc.index])
    return [n for n, _ in kind.policies(config) if least.get(n, 0) >= config.replicates]


def objectives(config: Config, table: pl.DataFrame) -> dict[str, tuple[float, ...]]:
    """What the optimiser maximises per evaluated policy: the robust objective, or with
    ``mix.budgets`` the robust effect and less money (the front)."""
    sign = 1.0 if config.robustness.objective.direction == "max" else -1.0
    if config.mix.budgets:
        return {r["policy"]: (sign * r["effect"], -r["money"]) for r in table.iter_rows(named=True)}
    return {r["policy"]: (sign * r["objective"],) for r in table.iter_rows(named=True)}


def generation(config: Config, table: pl.DataFrame) -> tuple[int, list[str]]:
    """The search's first generation not yet evaluated and its policies (none when done), from
    the table of the policies evaluated so far."""
    values = objectives(config, table)
    g, points = mx.propose(
        search_of(config), first_generation(config), lambda p: values.get(point_policy(config, p))
    )
    return g, list(dict.fromkeys(point_policy(config, p) for p in points))


def scenarios_of(kind: Mix, config: Config) -> list[Scenario]:
    """The scenarios as the decisions see them (index, name, overrides, first replicate), not
    composed: each carries ``config`` itself."""
    specs = kind.scenario_specs(config, [])
    firsts = kind.first_replicates(config, specs)
    return [
        Scenario(i, name, tuple(own), config, first)
        for i, ((name, own), first) in enumerate(zip(specs, firsts, strict=True))
    ]


def _reached(kind: Mix, config: Config, rows: pl.DataFrame) -> tuple[list[Scenario], dict[int, int]]:
    """The scenarios and each one's replicate count in the rows."""
    scenarios = scenarios_of(kind, config)
    n = dict(rows.group_by("scenario").agg(pl.len()).iter_rows())
    return scenarios, {sc.index: int(n.get(sc.name, 0)) for sc in scenarios}


@dataclass(frozen=True)
class MixRounds:
    """The search (``replicates`` of every policy in every world), then KN's rounds: fresh
    replicates in every world for the contenders still in KN's set, until one is certified or
    ``mix.confirm_max``."""

    kind: Mix
    config: Config
    scenarios: tuple[Scenario, ...]

    def _with(self, counts: Mapping[int, int], policies: set[str]) -> dict[int, int]:
        """``counts`` with the search's replicates for every scenario of ``policies``."""
        R = self.config.replicates
        return {
            sc.index: max(counts.get(sc.index, 0), R if sc.name.partition("/")[2] in policies else 0)
            for sc in self.scenarios
        }

    def first(self) -> dict[int, int]:
        config = self.config
        zero = set(references(config)) | {point_policy(config, p) for p in first_generation(config)}
        return self._with({}, zero)

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        config = self.config
        mix, S = config.mix, search_size(config)
        decision = self.kind.decide(config, rows(), self.scenarios, counts)
        _, proposed = generation(config, decision.first)
        if proposed:  # the optimiser's next generation
            return Round(self._with(counts, set(proposed)))
        s = decision.screening
        reached = min(len(s.observations[i]) for i in s.result.survivors)
        if not s.result.done and reached < S:  # more search replicates where splits are close
            want = next_count(s.result, reached, max(2, config.replicates // 2), S)
            base = choose_baseline([x.name for x in config.experiment.scenarios], config.experiment.baseline)
            return Round(self._upto(counts, {s.systems[i] for i in s.result.survivors} | {base}, want))
        c = decision.confirmation
        reached = min(len(c.observations[i]) for i in c.result.survivors)
        if c.result.done or reached >= mix.confirm_max:
            return Round(dict(counts), self.kind.mix_lines(config, decision.table, c)[1:])
        if reached < mix.first_stage:
            want = mix.first_stage
        else:
            want = next_count(c.result, reached, max(2, mix.first_stage // 2), mix.confirm_max)
        return Round(self._upto(counts, {c.systems[i] for i in c.result.survivors}, S + want))

    def _upto(self, counts: Mapping[int, int], policies: set[str], count: int) -> dict[int, int]:
        """``counts`` with at least ``count`` replicates for every scenario of ``policies``."""
        return {
            sc.index: max(counts[sc.index], count)
            if sc.name.partition("/")[2] in policies
            else counts[sc.index]
            for sc in self.scenarios
        }


def front_figure(run_dir: Path, table: pl.DataFrame, outcome: str) -> Path | None:
    """mix_front.png: money against robust effect, the front joined, the references labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table.filter(pl.col("effect").is_finite() & pl.col("money").is_finite())
    if ok.height == 0:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cand, ref = ok.filter(pl.col("candidate")), ok.filter(~pl.col("candidate"))
    ax.scatter(cand["money"], cand["effect"], s=18, color="tab:blue", label="candidate splits")
    ax.scatter(ref["money"], ref["effect"], s=30, marker="s", color="tab:orange", label="settings")
    for r in ref.iter_rows(named=True):
        ax.annotate(
            r["policy"], (r["money"], r["effect"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    best = ok.sort("rank").row(0, named=True)
    ax.annotate(
        best["policy"],
        (best["money"], best["effect"]),
        fontsize=7,
        xytext=(3, -9),
        textcoords="offset points",
    )
    f = ok.filter(pl.col("on_front")).sort("money")
    ax.plot(f["money"], f["effect"], "-", color="black", lw=1, label="front")
    ax.set_xlabel("money above the baseline's")
    ax.set_ylabel(f"effect on {outcome} (mean over worlds)")
    ax.legend(fontsize=7)
    fig.suptitle("Money against robust effect")
    fig.tight_layout()
    path = Path(run_dir) / "mix_front.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
