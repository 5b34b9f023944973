"""The run's report: ``report.md`` and ``report.html`` in the run directory.

It opens with an executive summary that states the answer (:func:`executive_summary`: the
best scenario on the deciding outcome with its rank set, the certified selection when one
ran, what the best one trades off on the other headline outcomes, and how large the
uncertainty is), then the notes, a plain-language reading of the clear effects, the figures'
tables (contrasts, ranks, effects, outcomes) and the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


#: Headline outcomes read out in sentences (the tables show every headline outcome).
READ_OUT = 5


def _rel(effect: float, base: float | None) -> str:
    """``effect`` as a signed percentage of ``base`` (empty when base is 0 or missing)."""
    if base is None or base != base or base == 0:
        return ""
    return f"{100 * effect / abs(base):+.1f}%"


def reading(effects: pl.DataFrame, headline: Sequence[str]) -> list[str]:
    """One sentence per scenario: its clear effects on the first READ_OUT headline outcomes.

    "Clear" is the adjusted decision (``clear``: beyond the smallest effect that matters after
    the multiplicity adjustment), not a per-effect CI that excludes zero."""
    lines = []
    read = list(headline[:READ_OUT])
    for scenario in effects["scenario"].unique(maintain_order=True).to_list():
        part = effects.filter((pl.col("scenario") == scenario) & pl.col("outcome").is_in(read))
        if part.height == 0:
            continue
        baseline = part["baseline"][0]
        up: list[str] = []
        down: list[str] = []
        unclear: list[str] = []
        for r in part.iter_rows(named=True):
            rel = (_rel(abs(r["effect"]), r["baseline_mean"]) or _num(abs(r["effect"]))).lstrip("+")
            if r.get("clear", r["significant"]):
                (up if r["effect"] > 0 else down).append(
                    f"`{r['outcome']}` by {rel} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
                )
            else:
                unclear.append(f"`{r['outcome']}`")
        said = []
        if up:
            said.append("raises " + ", ".join(up))
        if down:
            said.append("lowers " + ", ".join(down))
        if unclear:
            said.append("has no clear effect on " + ", ".join(unclear))
        lines.append(
            f"- **{scenario}** (against `{baseline}`, n={part['n'][0]} paired replicates, "
            f"95% CIs in brackets): {'; '.join(said)}."
        )
    return lines


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class Findings:
    """What the executive summary decides from (the listed scenarios only)."""

    objective: str  # the outcome the answer is about (selection outcome, else the first headline)
    baseline: str
    contrasts: pl.DataFrame  # kibs_mc.analysis.inference.contrasts
    ranks: pl.DataFrame  # kibs_mc.analysis.inference.ranks
    effects: pl.DataFrame  # against the baseline, with ``clear``
    min_effect: float
    relative: bool
    alpha: float
    adjust: str  # "holm" | "bh"
    selection: pl.DataFrame | None = None  # kibs_mc.run.adaptive.Selection.frame
    cost: str | None = None  # the outcome that measures money, when the model has one
    parameters: str | None = None  # where the model's parameter values come from (hand-set or calibrated)
    calibrated: bool = False  # the values come from a calibration (else the ranking is conditional on them)


@dataclass(frozen=True)
class Answer:
    """The best scenario on the objective, as every sentence of the summary reads it."""

    findings: Findings
    headline: Sequence[str]
    ranked: pl.DataFrame  # the objective's ranks, best first
    top: dict[str, Any]  # the best scenario's row of ``ranked``

    @property
    def best(self) -> str:
        return str(self.top["scenario"])

    @property
    def others(self) -> int:
        return self.ranked.height - 1

    @property
    def level(self) -> str:
        """The multiplicity adjustment in words."""
        return "Holm" if self.findings.adjust == "holm" else "Benjamini-Hochberg"

    def effect(self, outcome: str, scenario: str | None = None) -> dict[str, Any] | None:
        """The paired effect of ``scenario`` (default: the best) on ``outcome``, if any."""
        f = self.findings
        part = f.effects.filter(
            (pl.col("outcome") == outcome) & (pl.col("scenario") == (scenario or self.best))
        )
        return part.row(0, named=True) if part.height else None


def answer(f: Findings, headline: Sequence[str]) -> Answer | None:
    """The summary's subject: the best scenario on ``f.objective`` (None without ranks)."""
    ranked = f.ranks.filter(pl.col("outcome") == f.objective).sort("rank")
    if ranked.height == 0:
        return None
    return Answer(f, headline, ranked, ranked.row(0, named=True))


def one_scenario_sentence(a: Answer) -> str | None:
    """A run of one scenario decides nothing: its means on the headline outcomes."""
    if a.others:
        return None
    means = a.findings.ranks.filter(pl.col("scenario") == a.best)
    shown = {r["outcome"]: r["mean"] for r in means.iter_rows(named=True)}
    values = ", ".join(f"`{o}` {_num(shown[o])}" for o in a.headline[:READ_OUT] if o in shown)
    return (
        f"- **`{a.best}`** (one scenario, {int(a.ranked['n'][0])} replicates; nothing to compare "
        f"against): mean {values}."
    )


def best_sentence(a: Answer) -> str | None:
    """The decision: the best scenario, its effect over the baseline and its rank set."""
    f, top = a.findings, a.top
    if not a.others:
        return None
    e = a.effect(f.objective)
    against = ""
    if e is not None:
        rel = _rel(e["effect"], e["baseline_mean"])
        sign = "+" if e["effect"] > 0 else ""
        against = (
            f", {sign}{_num(e['effect'])}{f' ({rel})' if rel else ''} over `{f.baseline}`, "
            f"95% CI {_num(e['ci_low'])} to {_num(e['ci_high'])}"
        )
    sure = top["rank_low"] == top["rank_high"] == 1
    tied = a.ranked.filter(pl.col("rank") == 1).height > 1
    at = "the calibrated values" if f.calibrated else "these hand-set values"
    said = (
        f"- **{'Best (tied)' if tied else 'Best'} for `{f.objective}` ({a.ranked['better'][0]} is "
        f"better): `{a.best}`**, mean {_num(top['mean'])}{against}; it ranks "
        f"{_ordinal(top['rank'])} of {a.ranked.height} [{top['rank_low']}, {top['rank_high']}] "
        f"(95% rank confidence set over replicate noise{f': first at {at}' if sure else ''})."
    )
    if f.calibrated:
        return said
    return said + (
        " The ranking is conditional on the model's hand-set parameter values (no calibration): "
        "it can change once they are calibrated."
    )


def _why_unclear(a: Answer, r: dict[str, Any]) -> str:
    """A contrast of the best one that is not clear, in words: the best one's lead over the
    other with its CI, and why that lead does not decide."""
    flip = 1 if r["scenario"] == a.best else -1  # the best one's lead over the other
    lead, low, high = flip * r["difference"], flip * r["ci_low"], flip * r["ci_high"]
    if flip < 0:
        low, high = high, low
    base = a.top["mean"] - lead if r["scenario"] == a.best else r["scenario_mean"]
    rel = _rel(lead, base)
    margin = _num(r["margin"])
    if not (low > 0 or high < 0):
        why = f"within chance, and not beyond the {margin} that matters"
    elif abs(lead) <= r["margin"]:
        why = f"beyond chance, but smaller than the {margin} that matters"
    else:  # beyond chance and the margin unadjusted: the adjustment (or too few replicates) decides
        p_adj = r["p_holm"] if a.findings.adjust == "holm" else r["p_bh"]
        why = (
            f"beyond chance and above the {margin} that matters, but not clear after "
            f"adjustment, p = {p_adj:.2g}: more replicates would decide"
        )
    other = r["versus"] if r["scenario"] == a.best else r["scenario"]
    return (
        f"`{other}` ({'+' if lead > 0 else ''}{_num(lead)}{f', {rel}' if rel else ''}, 95% CI "
        f"{_num(low)} to {_num(high)}: {why})"
    )


def lead_sentence(a: Answer) -> str | None:
    """How sure: whom the best one is clearly ahead of, and why not of the others."""
    f = a.findings
    if not a.others:
        return None
    pair = f.contrasts.filter(
        (pl.col("outcome") == f.objective) & ((pl.col("scenario") == a.best) | (pl.col("versus") == a.best))
    )
    close = [_why_unclear(a, r) for r in pair.iter_rows(named=True) if not r["clear"]]
    if not close:
        others = "the other scenario" if a.others == 1 else f"all {a.others} others"
        return f"- Clearly ahead of {others} on `{f.objective}` after {a.level} adjustment."
    return (
        f"- Not clearly ahead of {'; '.join(close)} on `{f.objective}` after {a.level} "
        f"adjustment; clearly ahead of the other {a.others - len(close)}."
    )


#: Policies the cost sentence names when their cost differs from the best one's.
COST_NAMED = 4


def cost_sentence(a: Answer) -> str | None:
    """What the best one costs, whether every policy cost the same (else the ones that did not:
    an instrument may leave money it cannot place unspent), and its effect per unit of money."""
    f = a.findings
    if f.cost is None:
        return None
    cost = f.ranks.filter((pl.col("outcome") == f.cost) & (pl.col("scenario") == a.best))
    others = f.ranks.filter((pl.col("outcome") == f.cost) & (pl.col("scenario") != f.baseline))
    if cost.height == 0 or others.height == 0:
        return None
    spread = others["mean"].to_numpy()
    tolerance = 1e-9 * max(abs(spread).max(), 1.0)
    own = float(cost["mean"][0])
    differ = others.filter((pl.col("mean") - own).abs() > tolerance)
    if differ.height == 0:
        budget = "the same budget as every other policy"
    elif differ.height <= COST_NAMED and differ.height < others.height - 1:
        named = ", ".join(f"`{r['scenario']}` {_num(r['mean'])}" for r in differ.iter_rows(named=True))
        budget = f"the same as every other policy's except {named}"
    else:
        budget = f"not the same for every policy ({_num(float(spread.min()))} to {_num(float(spread.max()))})"
    e = a.effect(f.objective)
    per = ""
    if e is not None and e["effect_per_cost"] is not None:
        per = f"; {_num(e['effect_per_cost'])} `{f.objective}` per unit of `{f.cost}`"
    return f"- Its cost (`{f.cost}`) is {_num(cost['mean'][0])}, {budget}{per}."


def selection_sentence(a: Answer) -> str | None:
    """The certified selection (Kim & Nelson), when one ran."""
    sel = a.findings.selection
    if sel is None or sel.height == 0:
        return None
    chosen = sel.filter(pl.col("selected"))
    gone = sel.filter(pl.col("eliminated_after").is_not_null()).sort("eliminated_after")
    dropped = "; ".join(
        f"`{r['scenario']}` eliminated after {r['eliminated_after']}" for r in gone.iter_rows(named=True)
    )
    reps = ", ".join(f"`{r['scenario']}` {r['replicates']}" for r in sel.iter_rows(named=True))
    delta, alpha = sel["delta"][0], sel["alpha"][0]
    if chosen.height:
        return (
            f"- **Certified{'' if a.findings.calibrated else ' at the hand-set values'}**: "
            f"`{chosen['scenario'][0]}` is best on `{sel['outcome'][0]}` "
            f"with probability >= {1 - alpha:.2f} when it leads by at least delta = {_num(delta)} "
            f"(otherwise it is within delta of the best with that probability; "
            f"Kim & Nelson 2001 KN on common random numbers; replicates "
            f"{reps}{'; ' + dropped if dropped else ''})."
        )
    left = ", ".join(f"`{s}`" for s in sel.filter(pl.col("in_contention"))["scenario"].to_list())
    return (
        f"- **Not certified**: {left} still in contention (delta = {_num(delta)}) on "
        f"`{sel['outcome'][0]}` at experiment.max_replicates ({reps})."
    )


def tradeoff_sentence(a: Answer) -> str | None:
    """What the best one trades off against the baseline on the other headline outcomes
    (clear effects only)."""
    f = a.findings
    if a.best == f.baseline:
        return None
    worse: list[str] = []
    gains: list[str] = []
    for outcome in a.headline:
        if outcome in (f.objective, f.cost):
            continue
        r = a.effect(outcome)
        direction = f.ranks.filter(pl.col("outcome") == outcome)
        if r is None or direction.height == 0 or not r["clear"]:
            continue
        good = (r["effect"] > 0) == (direction["better"][0] == "higher")
        (gains if good else worse).append(
            f"`{outcome}` {_rel(r['effect'], r['baseline_mean']) or _num(r['effect'])}"
        )
    if worse:
        also = f"; better on {', '.join(gains)}" if gains else ""
        return (
            f"- Trade-offs of `{a.best}` against `{f.baseline}` (clear effects only): worse on "
            f"{', '.join(worse)}{also}."
        )
    if gains:
        return (
            f"- No clear trade-off: against `{f.baseline}`, `{a.best}` is also better on "
            f"{', '.join(gains)} and clearly worse on no other headline outcome."
        )
    return f"- No clear effect of `{a.best}` on the other headline outcomes."


def uncertainty_sentence(a: Answer) -> str | None:
    """How large the uncertainty is: replicates, clear contrasts, the widest effect CI."""
    f = a.findings
    if not f.contrasts.height:
        return None
    rows = f.effects.filter(pl.col("outcome") == f.objective)
    widest = ""
    if rows.height:
        half = float(((rows["ci_high"] - rows["ci_low"]) / 2).max())  # type: ignore[arg-type]
        base = rows["baseline_mean"][0]
        share = f" ({100 * half / abs(base):.1f}% of the baseline mean)" if base else ""
        widest = f"; the widest 95% CI of an effect on `{f.objective}` is ±{_num(half)}{share}"
    smallest = f"{100 * f.min_effect:g}% of the baseline mean" if f.relative else _num(f.min_effect)
    family = f.contrasts.filter(pl.col("outcome") == f.objective)
    return (
        f"- Uncertainty: {int(a.ranked['n'][0])} paired replicates per scenario; "
        f"{int(family['clear'].sum())} of {family.height} pairwise contrasts on `{f.objective}` are "
        f"clear ({a.level} at alpha = {f.alpha:g} across them, smallest effect that matters: "
        f"{smallest}){widest}."
    )


def parameters_sentence(a: Answer) -> str | None:
    """What the answer rests on: where the parameter values come from (the intervals carry
    replicate noise only, not doubt about the parameters)."""
    return f"- Parameters: {a.findings.parameters}." if a.findings.parameters else None


#: The executive summary's sentences, in order: each builder reads the :class:`Answer` and
#: returns one Markdown bullet, or None when it has nothing to say for this run. A new
#: sentence is a function here and its place in this tuple.
SENTENCES: tuple[Callable[[Answer], str | None], ...] = (
    one_scenario_sentence,
    best_sentence,
    lead_sentence,
    cost_sentence,
    selection_sentence,
    tradeoff_sentence,
    uncertainty_sentence,
    parameters_sentence,
)


def executive_summary(f: Findings, headline: Sequence[str]) -> list[str]:
    """A few sentences a policy maker can act on (see module doc): one per builder of
    :data:`SENTENCES` that has something to say."""
    subject = answer(f, headline)
    if subject is None:
        return []
    return [line for build in SENTENCES if (line := build(subject)) is not None]


#: The lower end of the 95% CI of a policy's probability of being best at or above which the
#: summary of a decision across uncertain worlds calls it certainly the best (and only when
#: the worlds rest on a calibration: without one, the answer is conditional on hand-set values).
CERTAIN = 0.95


def most_often_best(table: pl.DataFrame) -> str:
    """The policy of robustness.parquet most often best; among equals, the smaller mean regret."""
    wide = table.pivot(on="metric", index="policy", values="value")
    return str(wide.sort(["p_best", "regret_mean"], descending=[True, False])["policy"][0])


@dataclass(frozen=True)
class Across:
    """A decision across uncertain worlds (``experiment.kind=robustness``) as the sentences of
    its executive summary read it."""

    table: pl.DataFrame  # robustness.parquet: policy, metric, value, ci_low, ci_high
    worlds: int
    units: str  # the objective's units in words, e.g. "`innovations_total` per unit of `governance_cost`"
    satisfice: str  # what satisficing asks, in words ("to do at least as well as `baseline`")
    #: What the answer is conditional on, in words (e.g. hand-set values of the parameters the
    #: worlds do not vary); None when the worlds draw the calibrated parameters from a posterior.
    conditional: str | None
    stops: str | None = None  # where the best policy stops being best, in words (PRIM), if found
    voi: pl.DataFrame | None = None  # voi.parquet (kibs_mc.analysis.voi.voi_table)
    source: str | None = None  # where the worlds' values come from, in words

    def metric(self, policy: str, name: str) -> dict[str, Any]:
        part = self.table.filter((pl.col("policy") == policy) & (pl.col("metric") == name))
        return part.row(0, named=True)

    @property
    def best(self) -> str:
        return most_often_best(self.table)

    @property
    def certain(self) -> bool:
        return self.conditional is None and self.metric(self.best, "p_best")["ci_low"] >= CERTAIN


def _share(x: float) -> str:
    return f"{100 * x:.0f}%"


def across_best_sentence(a: Across) -> str:
    """The answer: the policy most often best, that probability with its CI, its expected
    regret and how often it satisfices; "certainly" only when the worlds draw the calibrated
    parameters from their posterior and the CI's lower end is at least :data:`CERTAIN`; what the
    ranking is conditional on otherwise."""
    p, r, s = a.metric(a.best, "p_best"), a.metric(a.best, "regret_mean"), a.metric(a.best, "satisficing")
    said = (
        f"- **Best across what is not known: `{a.best}`**, the best policy in {_share(p['value'])} "
        f"of {a.worlds} worlds [{_share(p['ci_low'])}, {_share(p['ci_high'])}] (95% CI over the "
        f"worlds and their replicates); expected regret {_num(r['value'])} [{_num(r['ci_low'])}, "
        f"{_num(r['ci_high'])}] {a.units}; it manages {a.satisfice} in {_share(s['value'])} of "
        f"worlds [{_share(s['ci_low'])}, {_share(s['ci_high'])}]."
    )
    if a.conditional is not None:
        return said + f" The ranking is conditional on {a.conditional}."
    if a.certain:
        return said + (
            f" It is certainly the best policy over this joint uncertainty: the CI's lower end "
            f"is at least {_share(CERTAIN)}."
        )
    return said + (
        f" Not certain: the CI's lower end is below {_share(CERTAIN)} (more worlds or replicates "
        "narrow it where the policies are close; the parameters that matter most are below)."
    )


def across_stops_sentence(a: Across) -> str | None:
    """Where the best policy stops being best (its PRIM box of the other worlds)."""
    if a.metric(a.best, "p_best")["value"] >= 1:
        return f"- `{a.best}` is the best policy in every world drawn."
    if a.stops is None or not a.stops.startswith(", mostly where"):
        return (
            f"- Where `{a.best}` stops being best, PRIM finds no region of the parameters "
            "distinguishable from chance (`discovery.parquet`)."
        )
    return f"- `{a.best}` stops being best{a.stops}."


def across_voi_sentence(a: Across) -> str | None:
    """What to measure next: the parameters whose measurement would lower the expected regret
    the most (EVPPI, with its CI), against what knowing everything would."""
    if a.voi is None or a.voi.height == 0:
        return None
    top = a.voi.row(0, named=True)
    evpi = (
        f"knowing every parameter would lower it by {_num(top['evpi'])} (the expected regret of "
        f"`{top['chosen']}`, the policy with the best mean objective)"
    )
    clear = a.voi.filter(pl.col("ci_low") > 0).head(3)
    if clear.height == 0:
        return (
            f"- What to measure next: no single parameter's measurement would lower the expected "
            f"regret beyond chance (every EVPPI interval reaches 0; the largest, `{top['parameter']}`, "
            f"{_num(top['evppi'])} [{_num(top['ci_low'])}, {_num(top['ci_high'])}]); {evpi}."
        )
    first, *rest = clear.iter_rows(named=True)
    then = "".join(
        f"; measuring `{r['parameter']}` by {_num(r['evppi'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
        for r in rest
    )
    return (
        f"- What to measure next: measuring `{first['parameter']}` would lower the expected regret "
        f"by {_num(first['evppi'])} [{_num(first['ci_low'])}, {_num(first['ci_high'])}] {a.units} "
        f"(EVPPI, 95% CI){then}; {evpi}. The decision depends most on `{first['parameter']}` "
        "(voi.parquet)."
    )


def across_source_sentence(a: Across) -> str | None:
    """Where the worlds' parameter values come from."""
    return f"- Worlds: {a.source}." if a.source else None


#: The executive summary of a decision across uncertain worlds, in order (each builder reads
#: the :class:`Across` and returns one Markdown bullet, or None).
ACROSS_SENTENCES: tuple[Callable[[Across], str | None], ...] = (
    across_best_sentence,
    across_stops_sentence,
    across_voi_sentence,
    across_source_sentence,
)


def across_summary(a: Across) -> list[str]:
    """The bullets of :data:`ACROSS_SENTENCES` that have something to say."""
    return [line for build in ACROSS_SENTENCES if (line := build(a)) is not None]


#: Scenarios the money line names one by one; a run of more (sweeps, worlds x policies) gets
#: the means over all its scenarios.
MONEY_SCENARIOS = 8


def money_sentence(replicates: Path) -> str | None:
    """The money line, for a model whose records carry a money ledger (``replicates.parquet``
    columns ``money_residual``, ``money_at_work_<name>`` and ``money_unspent_<name>``, one per
    policy instrument; docs/ODD.md s.9): the largest conservation residual of any replicate,
    and per scenario (or over all of them, past :data:`MONEY_SCENARIOS`) the money at work per
    instrument and the money not spent, means per replicate, so a user can check the accounts
    without reading the tests. None otherwise."""
    if not Path(replicates).is_file():
        return None
    names = list(pl.read_parquet_schema(replicates))
    if "money_residual" not in names:
        return None
    work = [c for c in names if c.startswith("money_at_work_")]
    idle = [c for c in names if c.startswith("money_unspent_")]
    frame = pl.read_parquet(replicates, columns=["scenario", "money_residual", *work, *idle])
    many = frame["scenario"].n_unique() > MONEY_SCENARIOS
    key = pl.lit(f"all {frame['scenario'].n_unique()} scenarios") if many else pl.col("scenario")
    means = frame.group_by(key.alias("scenario"), maintain_order=True).mean()
    parts = []
    for row in means.iter_rows(named=True):
        spent = [f"{c.removeprefix('money_at_work_')} {_num(row[c])}" for c in work if row[c]]
        unspent = sum(row[c] for c in idle)
        name = row["scenario"] if many else f"`{row['scenario']}`"
        parts.append(
            f"{name} {', '.join(spent) or 'none'}" + (f" (not spent {_num(unspent)})" if unspent else "")
        )
    worst = frame.select(pl.col("money_residual").abs().max()).item() or 0.0
    return (
        f"- Money: at work per replicate, by instrument: {'; '.join(parts)}. Largest conservation "
        f"residual of any replicate {worst:.2g} (capital change minus booked flows; "
        "`replicates.parquet` holds every account)."
    )


def markdown_table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_num(v) if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([head, rule, *body])


def _effects_section(effects: pl.DataFrame, shown: Sequence[str]) -> list[str]:
    eff = effects.filter(pl.col("outcome").is_in(shown)).select(
        "scenario",
        "outcome",
        "baseline_mean",
        "scenario_mean",
        "effect",
        "ci_low",
        "ci_high",
        "effect_size",
        "effect_per_cost",
        *[c for c in ("p_adjusted", "clear") if c in effects.columns],
    )
    return [
        "## Paired effects against the baseline",
        "",
        "Mean paired difference over common-random-number replicates, 95% t "
        "interval; `effect_size` is Glass's delta (effect / baseline sd); "
        "`effect_per_cost` divides by the extra governance cost.",
        "",
        markdown_table(eff),
        "",
    ]


def _ranks_section(findings: Findings, shown: Sequence[str]) -> list[str]:
    ranked = findings.ranks.filter(pl.col("outcome").is_in(shown)).select(
        "outcome", "scenario", "mean", "better", "rank", "rank_low", "rank_high"
    )
    return [
        "## Ranks",
        "",
        "Rank of each scenario's mean (1 = best in the outcome's direction) with its 95% "
        "confidence set `[rank_low, rank_high]` (Mogstad, Romano, Shaikh & Wilhelm 2024: "
        "Holm's step-down over the scenario's one-sided paired t tests against each other one).",
        "",
        markdown_table(ranked),
        "",
    ]


def _contrasts_section(findings: Findings) -> list[str]:
    level = "Holm" if findings.adjust == "holm" else "Benjamini-Hochberg"
    con = findings.contrasts.select(
        "outcome",
        "scenario",
        "versus",
        "difference",
        "ci_low",
        "ci_high",
        "margin",
        "p_value",
        "p_holm",
        "p_bh",
        "clear",
    )
    return [
        "## Pairwise contrasts",
        "",
        f"Every pair of scenarios on every headline outcome: mean paired difference "
        f"(`scenario` - `versus`) on the replicates both have, with its 95% t interval; "
        f"`p_value` tests whether the difference exceeds `margin` (the smallest effect that "
        f"matters); `clear` = {level}-adjusted p below {findings.alpha:g} across the "
        f"contrasts of the same outcome (one family per outcome; `p_bh`: Benjamini-Hochberg, "
        "for comparison).",
        "",
        markdown_table(con),
        "",
    ]


def _outcomes_section(summary: pl.DataFrame, shown: Sequence[str]) -> list[str]:
    summ = summary.filter(pl.col("outcome").is_in(shown)).select(
        "scenario", "outcome", "n", "mean", "sd", "ci_low", "ci_high"
    )
    return [
        "## Outcomes per scenario",
        "",
        "Mean across replicates with the 95% t interval.",
        "",
        markdown_table(summ),
        "",
    ]


#: The style of every HTML page kibs-mc writes (the run's report and the decision page).
PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right}th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
    "overflow:auto}"
)


def html_page(title: str, markdown_text: str, style: str = "") -> str:
    """A self-contained HTML page of ``markdown_text`` (tables and fenced code)."""
    import html

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}{style}</style></head><body>{body}</body></html>\n"
    )


def write_report(
    run_dir: Path,
    *,
    title: str,
    headline: Sequence[str] = (),
    tables: Mapping[str, pl.DataFrame] | None = None,
    figures: Sequence[Path] = (),
    text: Mapping[str, Sequence[str]] | None = None,
    findings: Findings | None = None,
) -> tuple[Path, Path]:
    """Write report.md and report.html; returns both paths. The configuration shown is the
    run directory's ``config.yaml``.

    Args:
        headline: the outcomes the text reads out and the tables show, in order (the model's
            headline outcomes, :func:`kibs_mc.models.headline`).
        tables: ``summary`` (per scenario and outcome) and ``effects`` (paired, against the
            baseline), each optional (a calibration has neither).
        text: ``summary``: the executive summary's bullets (Markdown) of a kind that decides
            without findings (a calibration, a robustness experiment), after the findings' own;
            ``notes``: notes; ``sections``: Markdown sections of the experiment kind (e.g. a
            sweep's sensitivity indices), placed after the effects.
        findings: contrasts, ranks and the selection, for the executive summary and tables.
    """
    run_dir = Path(run_dir)
    shown = list(headline)
    outcomes = (tables or {}).get("summary", pl.DataFrame())
    effects = (tables or {}).get("effects", pl.DataFrame())
    text = text or {}
    parts = [f"# {title}", ""]
    summary_lines = executive_summary(findings, shown) if findings is not None else []
    summary_lines += [line if line.startswith("- ") else f"- {line}" for line in text.get("summary", ())]
    money = money_sentence(run_dir / "replicates.parquet") if summary_lines else None
    summary_lines += [money] if money else []
    if summary_lines:
        parts += ["## Executive summary", "", *summary_lines, ""]
    if text.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in text["notes"]], ""]
    if effects.height:
        parts += ["## What the scenarios do", "", *reading(effects, shown), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{f.stem}]({f.name})\n" for f in figures]
    if effects.height:
        parts += _effects_section(effects, shown)
    if findings is not None and findings.contrasts.height:
        parts += _ranks_section(findings, shown) + _contrasts_section(findings)
    for section in text.get("sections", ()):
        parts += [section.rstrip(), ""]
    if outcomes.height:
        parts += _outcomes_section(outcomes, shown)
    config = run_dir / "config.yaml"
    config_yaml = config.read_text() if config.is_file() else ""
    parts += ["## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""]
    markdown_text = "\n".join(parts)
    md_path = run_dir / "report.md"
    md_path.write_text(markdown_text.rstrip("\n") + "\n")  # one final newline, whatever the sections end with
    html_path = run_dir / "report.html"
    html_path.write_text(html_page(title, markdown_text))
    return md_path, html_path


def read_summary(report_md: Path) -> list[str]:
    """The executive summary's bullets of a written ``report.md`` (none when it has none)."""
    text = Path(report_md).read_text() if Path(report_md).is_file() else ""
    section = text.split("\n## Executive summary\n", 1)[1:]
    if not section:
        return []
    body = section[0].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]
