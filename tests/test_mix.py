"""experiment=mix (docs/mix.md): the search over budget shares and its confirmation by KN.

A planted response (a known best split and a known diminishing return of money, with noise
shared by the policies of a world and noise of their own) drives the kind's own rounds and
decisions (:class:`kibs_mc.experiments.mix.MixRounds`, ``Mix.decide``) exactly as the pipeline
does, from the rows reached after each round; the cluster model runs the kind end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from kibs_mc.analysis.mix import Search, lattice, propose, simplex_design, snap
from kibs_mc.config import load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments import get_kind, run_experiment
from kibs_mc.experiments.mix import (
    block,
    candidates,
    first_generation,
    point_policy,
    scenarios_of,
    screening_lines,
    search_size,
)
from kibs_mc.experiments.rounds import Round

QUICK = ["cluster=small", "model.steps=12", "executor=serial", "tracking=none"]
#: Worlds of a space of hand-set ranges, not the shipped posterior (planted responses need no
#: calibration, and a refusal's key must not depend on the shipped file being current).
HAND_WORLDS = ["uncertainty=default", "uncertainty.posterior=null"]

#: The listed settings' shares (strategic, management, business, information).
SETTINGS = {
    "baseline": (0.0, 0.0, 0.0, 0.0),
    "strategic": (1.0, 0.0, 0.0, 0.0),
    "management": (0.0, 1.0, 0.0, 0.0),
    "business": (0.0, 0.0, 1.0, 0.0),
    "information": (0.0, 0.0, 0.0, 1.0),
    "all_four": (0.25, 0.25, 0.25, 0.25),
}
SPENT_PER_BUDGET = 10_000.0  # governance_cost per unit of budget


def planted_search(overrides, best, scale, common_sd, own_sd, seed=1):
    """Run the kind's rounds on a planted response: outcome = scale * sqrt(budget / 0.05) *
    (1 - 2 |shares - best|^2) for a split (0 for the baseline), plus noise common to a world's
    policies at a replicate and noise of each policy's own. Returns the kind, the config, the
    scenarios, the final counts and the rows."""
    config = load_config(["experiment=mix", *HAND_WORLDS, *overrides])
    kind = get_kind(config)
    scenarios = scenarios_of(kind, config)
    split_of = {c.name: (c.shares, c.budget or 0.05) for c in candidates(config)}
    split_of.update({n: (s, 0.05) for n, s in SETTINGS.items()})
    rng = np.random.default_rng(seed)
    total = block(config)
    worlds = config.robustness.worlds
    common = rng.normal(0, common_sd, size=(worlds, total))
    own = {sc.name: rng.normal(0, own_sd, size=total) for sc in scenarios}

    def rows(counts):
        frames = []
        for sc in scenarios:
            world, policy = int(sc.name.partition("/")[0][1:]), sc.name.partition("/")[2]
            shares, budget = split_of[policy]
            n = counts[sc.index]
            if n == 0:  # a split the search did not propose
                continue
            if policy == "baseline":
                mean, spent = 0.0, 0.0
            else:
                gap = np.sum((np.asarray(shares) - np.asarray(best)) ** 2)
                mean, spent = scale * np.sqrt(budget / 0.05) * (1 - 2 * gap), budget * SPENT_PER_BUDGET
            frames.append(
                pl.DataFrame(
                    {
                        "scenario": [sc.name] * n,
                        "replicate": sc.first_replicate + np.arange(n),
                        "innovations_total": mean + common[world, :n] + own[sc.name][:n],
                        "governance_cost": np.full(n, spent),
                    }
                )
            )
        return pl.concat(frames)

    rounds = kind.rounds(config, scenarios)
    counts = {sc.index: 0 for sc in scenarios}
    step = Round(rounds.first())
    while step.left(counts):
        counts.update({i: max(counts[i], t) for i, t in step.targets.items()})
        step = rounds.after(lambda: rows(counts), counts)
    return kind, config, scenarios, counts, rows(counts)


def test_a_split_is_a_point_of_the_simplex_and_the_design_spreads_over_it():
    points = simplex_design(64, 4, seed=3)
    assert points.shape == (64, 4) and np.allclose(points.sum(axis=1), 1) and (points >= 0).all()
    assert (points.max(axis=0) > 0.6).all()  # every interface gets most of the budget somewhere
    assert np.array_equal(points, simplex_design(64, 4, seed=3))
    assert not np.array_equal(points, simplex_design(64, 4, seed=4))


def test_the_optimisers_generations_are_a_function_of_the_seed_and_the_results():
    assert len(lattice(4, 10)) == 286 and all(sum(p) == 10 for p in lattice(4, 10))
    assert snap([0.44, 0.31, 0.17, 0.08], 10) == (4, 3, 2, 1) and sum(snap([1 / 3] * 3, 10)) == 10
    search = Search(dims=4, resolution=10, budgets=1, generations=3, seed=5)
    first = list(dict.fromkeys((snap(p, 10), 0) for p in simplex_design(8, 4, seed=5)))
    target = np.array([0.1, 0.2, 0.3, 0.4])

    def run(seed):
        told: dict = {}
        generations = []
        while True:
            g, points = propose(replace(search, seed=seed), first, told.get)
            if not points:
                return generations, told
            generations.append(points)
            for p in points:  # a smooth response: the closer to target, the better
                told.setdefault(p, (-float(np.sum((np.array(p[0]) / 10 - target) ** 2)),))

    generations, told = run(5)
    assert len(generations) == 4 and generations[0] == first
    assert generations == run(5)[0]  # replayed from the seed and the values: the same proposals
    assert generations[1:] != run(6)[0][1:]
    assert max(told.values()) > max(told[p] for p in first)  # later generations improve on the first


def test_the_planted_best_split_and_the_diminishing_return_of_money_are_recovered():
    best = (0.4, 0.3, 0.2, 0.1)
    overrides = [
        "replicates=4",
        "robustness.worlds=4",
        "mix.candidates=16",
        "mix.budgets=[0.05,0.1]",
        "mix.delta=1.0",
        "mix.first_stage=5",
        "mix.confirm_max=200",
    ]
    kind, config, scenarios, counts, rows = planted_search(overrides, best, 100.0, 20.0, 2.0)
    decision = kind.decide(config, rows, scenarios, counts)
    table, confirmation = decision.table, decision.confirmation
    shares = {c.name: np.array(c.shares) for c in candidates(config)}
    nearest = min((n for n in shares if n.endswith("@0.05")), key=lambda n: np.sum((shares[n] - best) ** 2))
    # money has a diminishing return (sqrt): per unit of money the smaller budget wins
    assert confirmation.systems[0].endswith("@0.05")
    # the certified split is the design's nearest to the planted best, or within KN's delta of it
    chosen = confirmation.selected
    assert chosen is not None
    true = {n: 100 * (1 - 2 * np.sum((s - best) ** 2)) for n, s in shares.items()}
    assert true[nearest] - true[chosen] <= config.mix.delta
    assert np.sqrt(np.sum((shares[chosen] - best) ** 2)) <= 0.2  # stated tolerance
    # the optimiser found it: not in the Sobol generation, and most of the lattice never ran
    first = {point_policy(config, p) for p in first_generation(config)}
    assert chosen not in first and max(true[n] for n in first if n in true) < true[chosen]
    assert table.height < len(shares) / 2
    # the effect doubles the money for sqrt(2) the effect: recovered within 5%
    effect = dict(zip(table["policy"], table["effect"], strict=True))
    assert effect["equal@0.1"] / effect["all_four"] == pytest.approx(np.sqrt(2), rel=0.05)  # all_four: 0.05
    # the front: no money, then the best split of each budget (every other spends as much for less)
    front = set(table.filter(pl.col("on_front"))["policy"])
    best_at = {
        b: max((n for n in effect if n.endswith(f"@{b}")), key=lambda n: effect[n]) for b in ("0.05", "0.1")
    }
    assert front == {"baseline", *best_at.values()}
    assert "strategic@0.1" in shares and shares["strategic@0.1"].tolist() == [1.0, 0.0, 0.0, 0.0]
    # at the configured budget (0.05) the equal split and the corners are the listed settings
    assert not {"equal@0.05", "strategic@0.05"} & set(shares)


def test_where_the_equal_split_is_best_confirmation_refuses_the_searchs_noisy_pick():
    overrides = [
        "replicates=2",
        "robustness.worlds=2",
        "mix.candidates=16",
        "mix.delta=3.0",
        "mix.first_stage=10",
        "mix.confirm_max=600",
    ]
    kind, config, scenarios, counts, rows = planted_search(overrides, (0.25,) * 4, 100.0, 5.0, 20.0, seed=4)
    confirmation = kind.decide(config, rows, scenarios, counts).confirmation
    pick = confirmation.systems[0]
    assert pick != "all_four", "the planted noise was meant to mislead the search"
    assert "equal_split" in confirmation.roles[confirmation.systems.index("all_four")]
    assert confirmation.selected == "all_four"
    # on the fresh seeds the noisy pick trails the equal split by about what was planted (3 or more)
    lead = confirmation.frame().filter(pl.col("policy") == "all_four").row(0, named=True)
    assert lead["pick_lead_ci_low"] < lead["pick_lead"] < 0 and lead["pick_lead_ci_high"] < 3
    assert kind.mix_lines(config, kind.decide(config, rows, scenarios, counts).table, confirmation)[
        1
    ].startswith("Not confirmed")


def test_a_pick_within_noise_of_its_contenders_is_not_called_best():
    overrides = [
        "replicates=2",
        "robustness.worlds=2",
        "mix.candidates=16",
        "mix.delta=0.1",
        "mix.first_stage=5",
        "mix.confirm_max=12",
    ]
    # a flat response: every split is as good as every other, the noise decides the search
    kind, config, scenarios, counts, rows = planted_search(overrides, (0.25,) * 4, 0.0, 5.0, 20.0, seed=2)
    decision = kind.decide(config, rows, scenarios, counts)
    assert decision.confirmation.selected is None
    assert max(len(x) for x in decision.confirmation.observations) == 12  # mix.confirm_max reached
    verdict = kind.mix_lines(config, decision.table, decision.confirmation)[1]
    assert verdict.startswith("Not certified") and "still in contention" in verdict


def test_search_replicates_grow_only_where_the_best_splits_are_close():
    overrides = [
        "replicates=3",
        "robustness.worlds=2",
        "mix.candidates=16",
        "mix.generations=2",
        "mix.screen=6",
        "mix.search_max=15",
        "mix.delta=1.0",
        "mix.first_stage=5",
        "mix.confirm_max=10",
    ]
    best = (0.4, 0.3, 0.2, 0.1)  # its lattice neighbours tie: 4 * (1 - 2 * 0.02) * 100
    kind, config, scenarios, counts, rows = planted_search(overrides, best, 400.0, 5.0, 3.0, seed=3)
    decision = kind.decide(config, rows, scenarios, counts)
    shares = {c.name: np.array(c.shares) for c in candidates(config)}
    shares.update({n: np.array(s) for n, s in SETTINGS.items() if n != "baseline"})
    true = {n: 400 * (1 - 2 * np.sum((shares[n] - best) ** 2)) for n in shares}
    ran = dict(zip(decision.table["policy"], decision.table["replicates"], strict=True))
    six = decision.first.filter(pl.col("policy").is_in(list(shares))).sort("rank")["policy"].to_list()[:6]
    top = max(true[p] for p in six)
    tied = [p for p in six if true[p] == pytest.approx(top)]
    far = [p for p in six if top - true[p] >= 16]  # 16 innovations: 5 sd of a paired difference
    assert len(tied) >= 2 and far, "the planted response was meant to give both"
    assert all(ran[p] > 3 for p in tied) and all(ran[p] == 3 for p in far)
    assert set(decision.screening.systems) == {p for p, n in ran.items() if n > 3}
    assert max(ran.values()) <= 15 and all(n == 3 for p, n in ran.items() if p not in six)
    # the baseline ran along, so a grown split's effect uses all its replicates
    assert counts[next(sc.index for sc in scenarios if sc.name == "w0/baseline")] >= max(ran.values())
    assert "Search replicates grew" in screening_lines(config, decision.screening)[0]


def test_a_relative_indifference_zone_is_a_share_of_the_picks_mean_outcome():
    overrides = [
        "replicates=2",
        "robustness.worlds=2",
        "mix.candidates=4",
        "mix.first_stage=3",
        "mix.confirm_max=6",
    ]
    relative = [*overrides, "mix.relative=true", "mix.delta=0.05"]
    kind, config, scenarios, counts, rows = planted_search(relative, (0.25,) * 4, 100.0, 5.0, 5.0)
    confirmation = kind.decide(config, rows, scenarios, counts).confirmation
    pick = rows.filter(pl.col("scenario").str.ends_with("/" + confirmation.systems[0]))
    search = pick.filter(pl.col("replicate") % block(config) < 2)  # each world's block: search, then fresh
    assert confirmation.delta == pytest.approx(0.05 * abs(search["innovations_total"].mean()))


def test_the_worlds_vary_what_is_not_known_and_the_search_what_is_chosen():
    overrides = ["experiment=mix", *QUICK, "uncertainty=policy", "uncertainty.posterior=null"]
    config = load_config(overrides)
    kind = get_kind(config)  # governance.budget is in the policy space and the search's: not refused
    prepared, _ = kind.prepare(config, overrides)
    keys = [p.key for p in prepared.uncertainty.parameters]
    assert "governance.budget" not in keys and "governance.unit_cost.strategic" in keys
    worlds = kind.worlds(prepared)
    assert "governance.budget" not in worlds.columns and "governance.unit_cost.strategic" in worlds.columns


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("mix.shares=[]", "mix.shares"),
        ("mix.shares=[governance.strategic,model.nope]", "mix.shares[1].key"),
        ("mix.equal=nowhere", "mix.equal"),
        ("mix.budgets=[0.05,-1.0]", "mix.budgets[1]"),
        ("mix.delta=0", "mix.delta"),
    ],
)
def test_bad_mix_settings_are_refused_naming_the_key(override, says):
    with pytest.raises(ConfigError) as refused:
        get_kind(load_config(["experiment=mix", *QUICK, *HAND_WORLDS, override]))
    assert says in str(refused.value)


def test_the_cluster_model_runs_the_search_and_its_confirmation(tmp_path):
    overrides = [
        "experiment=mix",
        *[o for o in QUICK if o != "tracking=none"],
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "replicates=2",
        "robustness.worlds=2",
        "robustness.bootstrap=100",
        "mix.candidates=3",
        "mix.generations=1",
        "mix.resolution=4",
        "mix.screen=3",
        "mix.search_max=4",
        "mix.first_stage=2",
        "mix.confirm_max=3",
    ]
    result = run_experiment(load_config(overrides), overrides, tmp_path / "run")
    table = pl.read_parquet(tmp_path / "run" / "mix.parquet")
    config = load_config(overrides)
    first = {point_policy(config, p) for p in first_generation(config)}
    splits = set(table.filter(pl.col("candidate"))["policy"])
    assert set(table["policy"]) == {*SETTINGS, *splits} and first - set(SETTINGS) <= splits
    assert len(splits) <= 2 * 3 and all(p.startswith("s") for p in splits)  # two generations of three
    assert table.filter(pl.col("candidate"))[
        ["strategic", "management", "business", "information"]
    ].sum_horizontal().to_list() == pytest.approx([1.0] * len(splits))
    confirmation = pl.read_parquet(tmp_path / "run" / "confirmation.parquet")
    assert confirmation["role"][0].startswith("pick") and any(
        "equal_split" in r for r in confirmation["role"]
    )
    fresh = result.rows.filter(pl.col("replicate") % block(config) >= search_size(config))  # 4 + 3 per world
    assert set(fresh["scenario"].str.split("/").list.get(1)) <= set(confirmation["policy"])
    assert (tmp_path / "run" / "mix_front.png").is_file() and (tmp_path / "run" / "voi.parquet").is_file()
    # the default worlds: the shipped posterior and the policy-response ranges but the budget
    worlds = pl.read_parquet(tmp_path / "run" / "worlds.parquet")
    assert "governance.budget" not in worlds.columns and "governance.unit_cost.business" in worlds.columns
    assert "## Best mix" in (tmp_path / "run" / "report.md").read_text()
    # the decision page (kibs-mc report) shows the pick's confirmation and the front
    from kibs_mc.analysis.decision import page_markdown, read_run

    page = page_markdown([read_run(tmp_path / "run", "mix")])
    best = page[page.index("## Best mix: mix") :]
    assert f"The search's pick: `{confirmation['policy'][0]}`" in best and "front of money" in best
    assert all(f"| {p} |" in best for p in table.filter(pl.col("on_front"))["policy"])
    # MLflow: one child per policy with its robust metrics, the tables as the parent's artifacts
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = client.search_runs(
        [client.get_experiment_by_name("kibs-mc").experiment_id],
        f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'",
    )
    assert {r.info.run_name for r in children} == set(table["policy"])
    assert all("objective" in r.data.metrics for r in children)
    logged = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"mix.parquet", "confirmation.parquet", "mix_front.png"} <= logged
    # a search killed midway (here: world 0 after its first fresh round, world 1 not begun)
    # resumes to the same rows, the same front and the same confirmation
    from tests.conftest import cut_run

    cut = cut_run(tmp_path / "run", tmp_path / "cut", below=4)
    again = [*overrides, "resume=true"]
    resumed = run_experiment(load_config(again), again, cut)
    assert resumed.computed_chunks > 0 and resumed.rows.equals(result.rows)
    for name in ("mix.parquet", "confirmation.parquet"):
        assert pl.read_parquet(cut / name).equals(pl.read_parquet(tmp_path / "run" / name))
