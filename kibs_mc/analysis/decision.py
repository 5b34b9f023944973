"""The decision page: finished runs side by side in one self-contained HTML file.

    kibs-mc report RUN_DIR [RUN_DIR ...]            # writes decision.html here
    kibs-mc report hand-set=DIR calibrated=DIR -o page.html

Each run is read from the files it wrote (``config.yaml``, ``report.md``, ``ranks.parquet``,
``effects.parquet``, ``robustness.parquet``, ``per_world.parquet``, ``ppc.parquet``, its
figures), whatever its kind: a comparison at the model's hand-set values or at a calibration's
posterior, a robustness experiment (across an uncertainty space or a calibration's posterior),
a calibration. The page shows the answer of each (its executive summary), the ranking of the
policies in each with whether and where it changed from the first run, the effect per unit of
money, which targets each calibration reproduced, and every figure (embedded, so the page is
one file to send).
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from kibs_mc.analysis.report import markdown_table, read_summary

#: The figure of each kind shown first (open) on the page; the others are folded.
FIRST_FIGURE = ("effects.png", "robustness.png", "ppc.png", "mix_front.png")


class NotARun(Exception):
    """A path that is not a finished kibs-mc run directory (the command exits 2)."""


@dataclass
class RunView:
    """One finished run as the page shows it."""

    label: str  # what the run is: hand-set, calibrated, across the posterior, calibration...
    path: Path
    experiment: str
    kind: str
    answer: list[str]  # the executive summary's bullets (Markdown)
    measure: str = ""  # what the ranking ranks by, in words
    ranking: pl.DataFrame | None = None  # scenario, rank, rank_low, rank_high, value
    per_money: pl.DataFrame | None = None  # scenario, per_money (objective per unit of money)
    targets: pl.DataFrame | None = None  # a calibration's predictive check (ppc.parquet)
    mix: pl.DataFrame | None = None  # a best-mix search's splits (mix.parquet)
    confirmation: pl.DataFrame | None = None  # its pick's confirmation (confirmation.parquet)
    figures: list[Path] = field(default_factory=list)


def _config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.is_file() or not (run_dir / "report.md").is_file():
        raise NotARun(
            f"{run_dir} is not a finished kibs-mc run directory (no config.yaml or report.md); "
            "allowed: directories written by kibs-mc, e.g. outputs/compare_governance/<date_time>"
        )
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NotARun(f"{path} is not readable YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict) or not isinstance(config.get("experiment"), dict):
        raise NotARun(f"{path} is not a kibs-mc configuration (no experiment section)")
    return config


def describe(config: dict) -> str:
    """What a run is, in the words a decision is argued in."""
    kind = config["experiment"].get("kind", "compare")
    use = (config.get("calibration") or {}).get("use")
    uncertainty = config.get("uncertainty") or {}
    if kind == "calibrate":
        return "calibration"
    if kind == "robustness":
        if uncertainty.get("posterior"):
            return "across the posterior"
        return f"robustness ({uncertainty.get('name', 'uncertain worlds')})"
    if kind == "sweep":
        return "sweep"
    if use == "shipped":
        return "calibrated (shipped posterior)"
    if use and use != "hand_set":
        return f"calibrated ({Path(str(use)).name})"
    return "hand-set"


def _objective(config: dict, ranks: pl.DataFrame) -> str:
    """The outcome a comparison decides on: the selection's, else the first ranked."""
    chosen = ((config["experiment"].get("selection") or {}).get("outcome")) or None
    return chosen if chosen is not None else str(ranks["outcome"][0])


def _compare_ranking(view: RunView, config: dict) -> None:
    ranks = pl.read_parquet(view.path / "ranks.parquet")
    if ranks.height == 0:
        return
    objective = _objective(config, ranks)
    part = ranks.filter(pl.col("outcome") == objective).sort("rank")
    if part.height < 2:
        return
    view.measure = f"mean `{objective}` ({part['better'][0]} is better)"
    view.ranking = part.select("scenario", "rank", "rank_low", "rank_high", pl.col("mean").alias("value"))
    effects_file = view.path / "effects.parquet"
    if effects_file.is_file():
        effects = pl.read_parquet(effects_file).filter(pl.col("outcome") == objective)
        view.per_money = effects.select("scenario", pl.col("effect_per_cost").alias("per_money"))


def _robustness_ranking(view: RunView, config: dict) -> None:
    table = pl.read_parquet(view.path / "robustness.parquet")
    wide = table.pivot(on="metric", index="policy", values="value")
    objective = (config.get("robustness") or {}).get("objective") or {}
    # most often best first; among policies never (or equally often) best, the smaller mean regret
    ordered = wide.sort(["p_best", "regret_mean"], descending=[True, False])
    key = pl.struct(-pl.col("p_best"), pl.col("regret_mean"))
    view.measure = (
        f"probability of being best across the worlds, then mean regret (objective: "
        f"`{objective.get('outcome', '?')}`)"
    )
    view.ranking = ordered.select(
        pl.col("policy").alias("scenario"),
        key.rank(method="min").cast(pl.Int64).alias("rank"),
        pl.lit(None, pl.Int64).alias("rank_low"),
        pl.lit(None, pl.Int64).alias("rank_high"),
        pl.col("p_best").alias("value"),
    )
    per_world = view.path / "per_world.parquet"
    if per_world.is_file():
        frame = pl.read_parquet(per_world)
        if "effect_per_cost" in frame.columns:
            view.per_money = (
                frame.group_by("policy", maintain_order=True)
                .agg(pl.col("effect_per_cost").drop_nans().mean().alias("per_money"))
                .rename({"policy": "scenario"})
            )


def read_run(run_dir: Path, label: str | None = None) -> RunView:
    """A finished run directory as the page shows it (NotARun when it is none)."""
    run_dir = Path(run_dir)
    config = _config(run_dir)
    kind = str(config["experiment"].get("kind", "compare"))
    view = RunView(
        label=label or describe(config),
        path=run_dir,
        experiment=str(config["experiment"].get("name", kind)),
        kind=kind,
        answer=read_summary(run_dir / "report.md"),
    )
    if (run_dir / "robustness.parquet").is_file():
        _robustness_ranking(view, config)
    elif (run_dir / "ranks.parquet").is_file():
        _compare_ranking(view, config)
    if (run_dir / "ppc.parquet").is_file():
        view.targets = pl.read_parquet(run_dir / "ppc.parquet")
    if (run_dir / "mix.parquet").is_file() and (run_dir / "confirmation.parquet").is_file():
        view.mix = pl.read_parquet(run_dir / "mix.parquet")
        view.confirmation = pl.read_parquet(run_dir / "confirmation.parquet")
    pngs = sorted(run_dir.glob("*.png"))
    view.figures = sorted(pngs, key=lambda p: (p.name not in FIRST_FIGURE, pngs.index(p)))
    return view


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ranking_changes(reference: RunView, other: RunView) -> str:
    """Whether ``other`` ranks the policies as ``reference`` does, and where not (Markdown)."""
    assert reference.ranking is not None and other.ranking is not None
    before = {r["scenario"]: r for r in reference.ranking.iter_rows(named=True)}
    after = {r["scenario"]: r for r in other.ranking.iter_rows(named=True)}
    common = [s for s in before if s in after]
    if not common:
        return f"- **{other.label}**: no policy in common with **{reference.label}**."
    moved = [s for s in common if before[s]["rank"] != after[s]["rank"]]
    best_before = [s for s in common if before[s]["rank"] == min(before[c]["rank"] for c in common)]
    best_after = [s for s in common if after[s]["rank"] == min(after[c]["rank"] for c in common)]
    if not moved:
        return f"- **{other.label}**: the same ranking as **{reference.label}** (best: {_names(best_after)})."
    steps = ", ".join(
        f"`{s}` {_ordinal(before[s]['rank'])} → {_ordinal(after[s]['rank'])}"
        for s in sorted(moved, key=lambda s: after[s]["rank"])
    )
    best = (
        f"the best changed: {_names(best_before)} → {_names(best_after)}"
        if set(best_before) != set(best_after)
        else f"the best stays {_names(best_after)}"
    )
    sets = [before[s] for s in moved] + [after[s] for s in moved]
    if all(r["rank_low"] is not None for r in sets):
        overlap = all(
            before[s]["rank_low"] <= after[s]["rank_high"] and after[s]["rank_low"] <= before[s]["rank_high"]
            for s in moved
        )
        best += (
            "; every move lies within both runs' 95% rank confidence sets (not a clear change)"
            if overlap
            else "; some moves leave the 95% rank confidence sets (a clear change)"
        )
    return f"- **{other.label}**: the ranking changed against **{reference.label}**; {best}. Moved: {steps}."


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    rank = _ordinal(r["rank"])
    if r["rank_low"] is not None and r["rank_high"] is not None:
        rank += f" [{r['rank_low']}, {r['rank_high']}]"
    return f"{rank}: {r['value']:.4g}" if r["rank_low"] is not None else f"{rank}: {r['value']:.0%}"


def _side_by_side(views: Sequence[RunView], column: str) -> pl.DataFrame:
    """Policies as rows, runs as columns: each run's ranking cell or per-money value."""
    frames = [v.ranking if column == "rank" else v.per_money for v in views]
    scenarios: list[str] = []
    for frame in frames:
        for s in frame["scenario"].to_list() if frame is not None else []:
            if s not in scenarios:
                scenarios.append(s)
    data: dict[str, list] = {"policy": scenarios}
    for view, frame in zip(views, frames, strict=True):
        rows = {r["scenario"]: r for r in frame.iter_rows(named=True)} if frame is not None else {}
        if column == "rank":
            data[view.label] = [_cell(rows.get(s)) for s in scenarios]
        else:
            data[view.label] = [
                f"{rows[s]['per_money']:.4g}" if s in rows and rows[s]["per_money"] is not None else "–"
                for s in scenarios
            ]
    return pl.DataFrame(data)


def _targets_table(views: Sequence[RunView]) -> pl.DataFrame:
    calibrations = [v for v in views if v.targets is not None]
    names: list[str] = []
    for v in calibrations:
        assert v.targets is not None
        names += [t for t in v.targets["target"].to_list() if t not in names]
    data: dict[str, list] = {"target": names}
    for v in calibrations:
        assert v.targets is not None
        rows = {r["target"]: r for r in v.targets.iter_rows(named=True)}
        data[v.label] = [
            (
                f"{rows[t]['verdict']}: observed {rows[t]['observed']:.4g}, simulated "
                f"{rows[t]['median']:.4g} [{rows[t]['low']:.4g}, {rows[t]['high']:.4g}]"
            )
            if t in rows
            else "–"
            for t in names
        ]
    return pl.DataFrame(data)


def _figure(path: Path, open_: bool) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<details{' open' if open_ else ''}><summary>{html.escape(path.name)}</summary>"
        f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'></details>"
    )


def _unique_labels(views: list[RunView]) -> None:
    seen: dict[str, int] = {}
    for v in views:
        seen[v.label] = seen.get(v.label, 0) + 1
    counts: dict[str, int] = {}
    for v in views:
        if seen[v.label] > 1:
            counts[v.label] = counts.get(v.label, 0) + 1
            v.label = f"{v.label} #{counts[v.label]}"


def _mix_part(views: Sequence[RunView]) -> list[str]:
    """A best-mix search's answer (``experiment.kind=mix``): its pick against the contenders on
    fresh seeds, and the front of money against robust effect with each split's shares."""
    parts: list[str] = []
    for v in views:
        if v.mix is None or v.confirmation is None:
            continue
        parts += [f"## Best mix: {v.label}", ""]
        c = v.confirmation
        selected = c.filter(pl.col("selected"))["policy"].to_list()
        verdict = (
            f"certified best on fresh seeds: `{selected[0]}`"
            if selected
            else "not certified: the contenders are within noise of each other on fresh seeds"
        )
        parts += [
            f"The search's pick: `{c['policy'][0]}`; {verdict} (KN; `confirmation.parquet`).",
            "",
            markdown_table(
                c.select(
                    "policy",
                    "role",
                    "replicates",
                    "mean",
                    "pick_lead",
                    "pick_lead_ci_low",
                    "pick_lead_ci_high",
                ).with_columns(pl.selectors.float().round_sig_figs(3))
            ),
            "",
        ]
        keys = [k for k in v.mix.columns if k in ("strategic", "management", "business", "information")]
        shown = ["policy", *keys, "budget", "money", "effect", "effect_ci_low", "effect_ci_high", "objective"]
        front = (
            v.mix.filter(pl.col("on_front")).sort("money").select([k for k in shown if k in v.mix.columns])
        )
        parts += [
            "The front of money against robust effect (no policy spends as much or less and does "
            "better; shares of the budget, effect against the baseline with its 95% interval over "
            "the worlds):",
            "",
            markdown_table(front.with_columns(pl.selectors.float().round_sig_figs(3))),
            "",
        ]
    return parts


def page_markdown(views: Sequence[RunView]) -> str:
    """The decision page's text (Markdown with embedded HTML for the answers and figures)."""
    import markdown

    parts = [f"# Decision page: {len(views)} run{'s' if len(views) != 1 else ''} side by side", ""]
    parts += ["| run | experiment | directory |", "|---|---|---|"]
    parts += [f"| {v.label} | `{v.experiment}` ({v.kind}) | `{v.path}` |" for v in views]
    parts += ["", "## The answer of each run", "", "<div class='answers'>"]
    for v in views:
        body = markdown.markdown("\n".join(v.answer) or "*(no executive summary)*")
        parts.append(f"<section class='answer'><h3>{html.escape(v.label)}</h3>{body}</section>")
    parts += ["</div>", ""]
    ranked = [v for v in views if v.ranking is not None]
    if ranked:
        parts += ["## The ranking in each run", ""]
        parts += [f"- **{v.label}**: by {v.measure}" for v in ranked]
        parts += [
            "",
            "Rank [95% rank confidence set, where the run has one]: the mean (a comparison) or the "
            "probability of being best (a robustness run).",
            "",
        ]
        parts += [markdown_table(_side_by_side(ranked, "rank")), ""]
        parts += ["## Did the ranking change?", ""]
        if len(ranked) < 2:
            parts += ["One run with a ranking: nothing to compare it with.", ""]
        else:
            parts += [ranking_changes(ranked[0], v) for v in ranked[1:]] + [""]
    money = [v for v in views if v.per_money is not None]
    if money:
        parts += [
            "## Effect per unit of money",
            "",
            "The paired effect on the deciding outcome against the baseline, per unit of extra "
            "governance money (a robustness run: its mean over the worlds).",
            "",
            markdown_table(_side_by_side(money, "per_money")),
            "",
        ]
    parts += _mix_part(views)
    if any(v.targets is not None for v in views):
        parts += ["## Targets the calibration reproduced", ""]
        for v in views:
            if v.targets is not None:
                said = "reproduced" if "reproduced" in v.targets.columns else "inside"
                done = int(v.targets[said].sum())
                parts.append(f"- **{v.label}**: {done} of {v.targets.height} targets reproduced.")
        parts += ["", markdown_table(_targets_table(views)), ""]
    parts += ["## Figures", ""]
    for v in views:
        parts.append(f"<h3>{html.escape(v.label)}</h3>")
        parts += [_figure(p, i == 0) for i, p in enumerate(v.figures)] or ["<p>(no figures)</p>"]
    return "\n".join(parts) + "\n"


#: The page's own style beside the report's: the answers in columns.
STYLE = (
    ".answers{display:flex;gap:1em;flex-wrap:wrap}.answer{flex:1 1 300px;border:1px solid #ccc;"
    "padding:0 1em;font-size:14px}.answer h3{margin:.5em 0}td:first-child,th:first-child{text-align:left}"
    "details{margin:.4em 0}summary{cursor:pointer}"
)


def write_page(views: Sequence[RunView], out: Path) -> Path:
    """Write the decision page of ``views`` to ``out``; returns ``out``."""
    from kibs_mc.analysis.report import html_page

    views = list(views)
    _unique_labels(views)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_page("kibs-mc decision page", page_markdown(views), STYLE))
    return out


def parse_run(arg: str) -> tuple[str | None, Path]:
    """``LABEL=DIR`` or ``DIR``."""
    label, eq, path = arg.partition("=")
    if eq and label and not Path(arg).exists():
        return label, Path(path)
    return None, Path(arg)


def main(argv: Sequence[str]) -> int:
    """``kibs-mc report [-o FILE] [LABEL=]RUN_DIR ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="kibs-mc report",
        description="One HTML page that puts finished runs side by side: the answer of each, "
        "the ranking and whether it changed, effect per unit of money, targets reproduced, figures.",
    )
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN_DIR", help="finished run directories")
    parser.add_argument("-o", "--out", default="decision.html", help="the page to write (decision.html)")
    args = parser.parse_args(list(argv))
    try:
        views = [read_run(path, label) for label, path in map(parse_run, args.runs)]
    except NotARun as exc:
        print(f"kibs-mc report: {exc}", file=sys.stderr)
        return 2
    out = write_page(views, Path(args.out))
    ranked = [v for v in views if v.ranking is not None]
    for v in ranked[1:]:
        print(ranking_changes(ranked[0], v).replace("**", "").replace("`", ""))
    print(f"decision page: {out.resolve()}")
    return 0
