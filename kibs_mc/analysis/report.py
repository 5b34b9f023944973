"""The run's report: ``report.md`` and ``report.html`` in the run directory.

It opens with an executive summary that states the answer (:func:`executive_summary`: the
best scenario on the deciding outcome with its rank set, the certified selection when one
ran, what the best one trades off on the other headline outcomes, and how large the
uncertainty is), then the notes, a plain-language reading of the clear effects, the figures'
tables (contrasts, ranks, effects, outcomes) and the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def executive_summary(f: Findings, headline: Sequence[str]) -> list[str]:
    """A few sentences a policy maker can act on (see module doc)."""
    ranked = f.ranks.filter(pl.col("outcome") == f.objective).sort("rank")
    if ranked.height == 0:
        return []
    k = ranked.height
    better = ranked["better"][0]
    top = ranked.row(0, named=True)
    best = top["scenario"]
    tied = ranked.filter(pl.col("rank") == 1)["scenario"].to_list()
    lines = []
    effect = f.effects.filter((pl.col("outcome") == f.objective) & (pl.col("scenario") == best))
    against = ""
    if effect.height:
        e = effect.row(0, named=True)
        rel = _rel(e["effect"], e["baseline_mean"])
        ci = f"95% CI {_num(e['ci_low'])} to {_num(e['ci_high'])}"
        sign = "+" if e["effect"] > 0 else ""
        against = (
            f", {sign}{_num(e['effect'])} ({rel}) over `{f.baseline}`, {ci}"
            if rel
            else f", {sign}{_num(e['effect'])} over `{f.baseline}`, {ci}"
        )
    sure = top["rank_low"] == top["rank_high"] == 1
    rank_text = (
        f"ranks {_ordinal(top['rank'])} of {k} [{top['rank_low']}, {top['rank_high']}] "
        f"(95% rank confidence set{': certainly first' if sure else ''})"
    )
    lead = "Best" if len(tied) == 1 else "Best (tied)"
    lines.append(
        f"- **{lead} for `{f.objective}` ({better} is better): `{best}`**, mean "
        f"{_num(top['mean'])}{against}; it {rank_text}."
    )
    # who it is not clearly ahead of
    pair = f.contrasts.filter(
        (pl.col("outcome") == f.objective) & ((pl.col("scenario") == best) | (pl.col("versus") == best))
    )
    level = "Holm" if f.adjust == "holm" else "Benjamini-Hochberg"
    close = []
    for r in pair.iter_rows(named=True):
        if r["clear"]:
            continue
        flip = 1 if r["scenario"] == best else -1  # the best one's lead over the other
        lead, low, high = flip * r["difference"], flip * r["ci_low"], flip * r["ci_high"]
        if flip < 0:
            low, high = high, low
        base = top["mean"] - lead if r["scenario"] == best else r["scenario_mean"]
        rel = _rel(lead, base)
        margin = _num(r["margin"])
        if not (low > 0 or high < 0):
            why = f"within chance, and not beyond the {margin} that matters"
        elif abs(lead) <= r["margin"]:
            why = f"beyond chance, but smaller than the {margin} that matters"
        else:  # beyond chance and the margin unadjusted: the adjustment (or too few replicates) decides
            p_adj = r["p_holm"] if f.adjust == "holm" else r["p_bh"]
            why = (
                f"beyond chance and above the {margin} that matters, but not clear after "
                f"adjustment, p = {p_adj:.2g}: more replicates would decide"
            )
        other = r["versus"] if r["scenario"] == best else r["scenario"]
        close.append(
            f"`{other}` ({'+' if lead > 0 else ''}{_num(lead)}{f', {rel}' if rel else ''}, 95% CI "
            f"{_num(low)} to {_num(high)}: {why})"
        )
    if close:
        lines.append(
            f"- Not clearly ahead of {'; '.join(close)} on `{f.objective}` after {level} "
            f"adjustment; clearly ahead of the other {k - 1 - len(close)}."
        )
    else:
        lines.append(f"- Clearly ahead of all {k - 1} others on `{f.objective}` after {level} adjustment.")
    if f.cost is not None:
        cost = f.ranks.filter((pl.col("outcome") == f.cost) & (pl.col("scenario") == best))
        others = f.ranks.filter((pl.col("outcome") == f.cost) & (pl.col("scenario") != f.baseline))
        if cost.height and others.height:
            c = cost["mean"][0]
            spread = others["mean"].to_numpy()
            equal = bool(spread.max() - spread.min() <= 1e-9 * max(abs(spread).max(), 1.0))
            budget = (
                "the same budget as every other policy" if equal else "a budget that differs from the others'"
            )
            per = f.effects.filter((pl.col("outcome") == f.objective) & (pl.col("scenario") == best))
            per_text = ""
            if per.height and per["effect_per_cost"][0] is not None:
                per_text = f"; {_num(per['effect_per_cost'][0])} `{f.objective}` per unit of `{f.cost}`"
            lines.append(f"- Its cost (`{f.cost}`) is {_num(c)}, {budget}{per_text}.")
    if f.selection is not None and f.selection.height:
        sel = f.selection
        chosen = sel.filter(pl.col("selected"))
        gone = sel.filter(pl.col("eliminated_after").is_not_null()).sort("eliminated_after")
        dropped = "; ".join(
            f"`{r['scenario']}` eliminated after {r['eliminated_after']}" for r in gone.iter_rows(named=True)
        )
        reps = ", ".join(f"`{r['scenario']}` {r['replicates']}" for r in sel.iter_rows(named=True))
        delta, alpha = sel["delta"][0], sel["alpha"][0]
        if chosen.height:
            lines.append(
                f"- **Certified**: `{chosen['scenario'][0]}` is best on `{sel['outcome'][0]}` "
                f"within delta = {_num(delta)}, probability of correct selection >= "
                f"{1 - alpha:.2f} (Kim & Nelson 2001 KN on common random numbers; replicates "
                f"{reps}{'; ' + dropped if dropped else ''})."
            )
        else:
            left = ", ".join(f"`{s}`" for s in sel.filter(pl.col("in_contention"))["scenario"].to_list())
            lines.append(
                f"- **Not certified**: {left} still in contention (delta = {_num(delta)}) on "
                f"`{sel['outcome'][0]}` at experiment.max_replicates ({reps})."
            )
    # trade-offs of the best against the baseline on the other headline outcomes
    if best != f.baseline:
        trade = []
        for outcome in headline:
            if outcome in (f.objective, f.cost):
                continue
            row = f.effects.filter((pl.col("outcome") == outcome) & (pl.col("scenario") == best))
            direction = f.ranks.filter(pl.col("outcome") == outcome)
            if row.height == 0 or direction.height == 0 or not row["clear"][0]:
                continue
            r = row.row(0, named=True)
            good = (r["effect"] > 0) == (direction["better"][0] == "higher")
            rel = _rel(r["effect"], r["baseline_mean"]) or _num(r["effect"])
            trade.append((good, f"`{outcome}` {rel}"))
        worse = [t for g, t in trade if not g]
        gains = [t for g, t in trade if g]
        if worse:
            also = f"; better on {', '.join(gains)}" if gains else ""
            lines.append(
                f"- Trade-offs of `{best}` against `{f.baseline}` (clear effects only): worse on "
                f"{', '.join(worse)}{also}."
            )
        elif gains:
            lines.append(
                f"- No clear trade-off: against `{f.baseline}`, `{best}` is also better on "
                f"{', '.join(gains)} and clearly worse on no other headline outcome."
            )
        else:
            lines.append(f"- No clear effect of `{best}` on the other headline outcomes.")
    # how large the uncertainty is
    fam = f.contrasts
    n = int(ranked["n"][0])
    effect_rows = f.effects.filter(pl.col("outcome") == f.objective)
    widest = ""
    if effect_rows.height:
        half = float(((effect_rows["ci_high"] - effect_rows["ci_low"]) / 2).max())  # type: ignore[arg-type]
        base = effect_rows["baseline_mean"][0]
        share = f" ({100 * half / abs(base):.1f}% of the baseline mean)" if base else ""
        widest = f"; the widest 95% CI of an effect on `{f.objective}` is ±{_num(half)}{share}"
    smallest = f"{100 * f.min_effect:g}% of the baseline mean" if f.relative else _num(f.min_effect)
    lines.append(
        f"- Uncertainty: {n} paired replicates per scenario; {int(fam['clear'].sum())} of "
        f"{fam.height} pairwise contrasts are clear ({level} at alpha = {f.alpha:g} across all "
        f"of them, smallest effect that matters: {smallest}){widest}."
    )
    if f.parameters:  # the intervals carry replicate noise only, not doubt about the parameters
        lines.append(f"- Parameters: {f.parameters}.")
    return lines


def markdown_table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join(_num(v) if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([head, rule, *body])


def write_report(
    run_dir: Path,
    title: str,
    config_yaml: str,
    summary: pl.DataFrame,
    effects: pl.DataFrame,
    headline: Sequence[str],
    figures: Sequence[Path],
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
    findings: Findings | None = None,
) -> tuple[Path, Path]:
    """Write report.md and report.html; returns both paths.

    Args:
        headline: the outcomes the text reads out and the tables show, in order (the model's
            headline outcomes, :func:`kibs_mc.models.headline`).
        sections: Markdown sections of the experiment kind (e.g. a sweep's sensitivity
            indices), placed after the effects.
        findings: contrasts, ranks and the selection, for the executive summary and tables.
    """
    import markdown

    run_dir = Path(run_dir)
    shown = list(headline)
    parts = [f"# {title}", ""]
    summary_lines = executive_summary(findings, shown) if findings is not None else []
    if summary_lines:
        parts += ["## Executive summary", "", *summary_lines, ""]
    if notes:
        parts += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if effects.height:
        parts += ["## What the scenarios do", "", *reading(effects, shown), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{f.stem}]({f.name})\n" for f in figures]
    if effects.height:
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
        parts += [
            "## Paired effects against the baseline",
            "",
            "Mean paired difference over common-random-number replicates, 95% percentile "
            "bootstrap CI; `effect_size` is Glass's delta (effect / baseline sd); "
            "`effect_per_cost` divides by the extra governance cost.",
            "",
            markdown_table(eff),
            "",
        ]
    if findings is not None and findings.contrasts.height:
        level = "Holm" if findings.adjust == "holm" else "Benjamini-Hochberg"
        ranked = findings.ranks.filter(pl.col("outcome").is_in(shown)).select(
            "outcome", "scenario", "mean", "better", "rank", "rank_low", "rank_high"
        )
        parts += [
            "## Ranks",
            "",
            "Rank of each scenario's mean (1 = best in the outcome's direction) with its 95% "
            "confidence set `[rank_low, rank_high]` (Mogstad, Romano, Shaikh & Wilhelm 2024: "
            "simultaneous bootstrap CIs of the scenario's paired differences).",
            "",
            markdown_table(ranked),
            "",
        ]
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
        parts += [
            "## Pairwise contrasts",
            "",
            f"Every pair of scenarios on every headline outcome: mean paired difference "
            f"(`scenario` - `versus`) with its 95% percentile bootstrap CI; `p_value` tests "
            f"whether the difference exceeds `margin` (the smallest effect that matters); "
            f"`clear` = {level}-adjusted p below {findings.alpha:g} across all "
            f"{findings.contrasts.height} contrasts (`p_bh`: Benjamini-Hochberg, for "
            "comparison).",
            "",
            markdown_table(con),
            "",
        ]
    for section in sections:
        parts += [section.rstrip(), ""]
    if summary.height:  # a calibration has no scenarios
        summ = summary.filter(pl.col("outcome").is_in(shown)).select(
            "scenario", "outcome", "n", "mean", "sd", "ci_low", "ci_high"
        )
        parts += [
            "## Outcomes per scenario",
            "",
            "Mean across replicates with the 95% t interval.",
            "",
            markdown_table(summ),
            "",
        ]
    parts += ["## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""]
    text = "\n".join(parts)
    md_path = run_dir / "report.md"
    md_path.write_text(text.rstrip("\n") + "\n")  # one final newline, whatever the sections end with
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
        "overflow:auto}</style></head><body>" + body + "</body></html>\n"
    )
    html_path = run_dir / "report.html"
    html_path.write_text(html)
    return md_path, html_path
