"""Figures of an experiment, as PNG files in the run directory (matplotlib, no display)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on batch nodes without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy.special import stdtrit  # noqa: E402

COLORS = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap


def _save(fig: plt.Figure, title: str, path: Path) -> Path:
    """Title the figure and write it; the constrained layout keeps the title, panel titles,
    tick labels and axis labels clear of each other."""
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(name: str, width: int = 24) -> str:
    """A scenario name as a tick or legend label: a name made of overrides (a single run's or a
    multirun job's) is long; wrapped on its spaces it leaves the panels room."""
    return "\n".join(textwrap.wrap(name, width, break_on_hyphens=False)) or name


def _grid(count: int, width: float = 4.2, height: float = 3.0, lead: bool = False) -> tuple[plt.Figure, list]:
    """A figure of ``count`` panels, three a row. ``lead``: the first panel (the outcome the
    decision is made on) alone on the first row, across it and taller."""
    cols = min(3, count)
    rest = count - 1 if lead else count
    rows = math.ceil(rest / cols) if rest else 0
    top = 1.4 if lead else 0.0
    fig = plt.figure(figsize=(width * cols, height * (rows + top) + 0.6), layout="constrained")
    grid = fig.add_gridspec(rows + (1 if lead else 0), cols, height_ratios=[top] * lead + [1] * rows)
    axes = [fig.add_subplot(grid[0, :])] if lead else []
    axes += [fig.add_subplot(grid[lead + i // cols, i % cols]) for i in range(rest)]
    return fig, axes


def _lead_first(outcomes: Sequence[str], lead: str | None) -> list[str]:
    """``outcomes`` with ``lead`` (the deciding outcome) first."""
    if lead is None or lead not in outcomes:
        return list(outcomes)
    return [lead, *[o for o in outcomes if o != lead]]


def timeseries_plot(ts: pl.DataFrame | pl.LazyFrame, scenarios: Sequence[str], path: Path) -> Path | None:
    """Mean trajectory per scenario with its 95% confidence band, one panel per series.

    ``ts`` may be lazy (``pl.scan_parquet``): the per-step means are then computed streaming,
    without holding every replicate's series in memory.
    """
    ts = ts.lazy()
    series = [c for c in ts.collect_schema().names() if c not in ("scenario", "replicate", "step")]
    if not series:
        return None
    agg = (
        ts.group_by("scenario", "step")
        .agg(
            *[pl.col(c).mean().alias(f"{c}__mean") for c in series],
            *[pl.col(c).std().alias(f"{c}__sd") for c in series],
            pl.len().alias("n"),
        )
        .sort("step")
        .collect(engine="streaming")
    )
    if agg.height == 0:
        return None
    fig, axes = _grid(len(series))
    for ax, name in zip(axes, series, strict=False):
        for i, scenario in enumerate(scenarios):
            part = agg.filter(pl.col("scenario") == scenario)
            if part.height == 0:
                continue
            step = part["step"].to_numpy()
            mean = part[f"{name}__mean"].to_numpy()
            n = part["n"].to_numpy()
            half = (
                stdtrit(np.maximum(n - 1, 1), 0.975)
                * np.nan_to_num(part[f"{name}__sd"].to_numpy())
                / np.sqrt(n)
            )
            color = COLORS[i % len(COLORS)]
            ax.plot(step, mean, color=color, label=_label(scenario), lw=1.6)
            ax.fill_between(step, mean - half, mean + half, color=color, alpha=0.2, lw=0)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("step (month)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    return _save(fig, "Time series: mean and 95% CI band across replicates", path)


def forest_plot(
    effects: pl.DataFrame, outcomes: Sequence[str], path: Path, lead: str | None = None
) -> Path | None:
    """Paired effect of each scenario against the baseline, with its 95% CI, per outcome;
    ``lead`` (the deciding outcome) first and larger."""
    if effects.height == 0:
        return None
    shown = _lead_first([o for o in outcomes if o in set(effects["outcome"].to_list())], lead)
    fig, axes = _grid(
        len(shown), width=4.2, height=0.45 * effects["scenario"].n_unique() + 1.4, lead=shown[0] == lead
    )
    baseline = effects["baseline"][0]
    for ax, outcome in zip(axes, shown, strict=False):
        part = effects.filter(pl.col("outcome") == outcome)
        y = np.arange(part.height)[::-1]
        effect = part["effect"].to_numpy()
        low, high = part["ci_low"].to_numpy(), part["ci_high"].to_numpy()
        colors = ["tab:blue" if s else "tab:gray" for s in part["significant"].to_list()]
        ax.hlines(y, low, high, colors=colors, lw=1.6)
        ax.scatter(effect, y, c=colors, zorder=3, s=18)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [_label(s) for s in part["scenario"].to_list()], fontsize=8)
        decided = outcome == lead
        ax.set_title(
            outcome.replace("_", " ") + (" (the decision is made on this outcome)" if decided else ""),
            fontsize=12 if decided else 10,
            fontweight="bold" if decided else "normal",
        )
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8 if decided else 4))  # at most 5 labels a panel
    return _save(fig, f"Paired effect vs {baseline!r} (95% t interval; grey: it includes 0)", path)


def distribution_plot(
    rows: pl.DataFrame, scenarios: Sequence[str], outcomes: Sequence[str], path: Path, lead: str | None = None
) -> Path | None:
    """Box plots of each outcome across replicates, per scenario; ``lead`` first and larger."""
    shown = _lead_first([o for o in outcomes if rows.schema[o] != pl.Boolean], lead)
    if rows.height == 0 or not shown:
        return None
    fig, axes = _grid(len(shown), height=0.35 * len(scenarios) + 1.6, lead=shown[0] == lead)
    for ax, outcome in zip(axes, shown, strict=False):
        data = [rows.filter(pl.col("scenario") == s)[outcome].cast(pl.Float64).to_numpy() for s in scenarios]
        labels = [_label(s) for s in scenarios]
        ax.boxplot(data, orientation="horizontal", tick_labels=labels, showfliers=False, widths=0.6)
        ax.set_yticks(range(1, len(scenarios) + 1), labels, fontsize=8)
        ax.invert_yaxis()
        decided = outcome == lead
        ax.set_title(
            outcome.replace("_", " ") + (" (the decision is made on this outcome)" if decided else ""),
            fontsize=12 if decided else 10,
            fontweight="bold" if decided else "normal",
        )
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8 if decided else 4))
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, "Outcome distributions across replicates (box: quartiles, whiskers: 1.5 IQR)", path)


def make_plots(
    run_dir: Path,
    rows: pl.DataFrame,
    effects: pl.DataFrame,
    scenarios: Sequence[str],
    listed: Sequence[str],
    outcomes: Sequence[str],
) -> list[Path]:
    """The figures of every experiment that apply to this run; returns the files written.

    Args:
        scenarios: every scenario; ``listed``: those shown one by one (a sweep's sampled
            points are not).
    """
    run_dir = Path(run_dir)
    written = []
    ranks = run_dir / "ranks.parquet"  # the first outcome ranked is the one the report decides on
    lead = pl.read_parquet(ranks, columns=["outcome"])["outcome"].head(1).to_list() if ranks.exists() else []
    decided = lead[0] if lead else None
    ts_file = run_dir / "timeseries.parquet"
    if ts_file.exists() and 0 < len(listed) <= MAX_LISTED_SCENARIOS:
        written.append(timeseries_plot(pl.scan_parquet(ts_file), listed, run_dir / "timeseries.png"))
    if len(scenarios) <= MAX_LISTED_SCENARIOS:
        written.append(forest_plot(effects, outcomes, run_dir / "effects.png", decided))
        written.append(distribution_plot(rows, scenarios, outcomes, run_dir / "distributions.png", decided))
    return [p for p in written if p is not None]


#: Above this many scenarios, per-scenario panels are unreadable: sweeps get scatter plots.
MAX_LISTED_SCENARIOS = 12


def sweep_plot(
    rows: pl.DataFrame,
    points: pl.DataFrame,
    outcomes: Sequence[str],
    path: Path,
    log_factors: Sequence[str] = (),
) -> Path | None:
    """Scenario means of each outcome against each swept factor (one row of panels per outcome;
    factors in ``log_factors`` on a log axis)."""
    factors = [c for c in points.columns if c not in ("scenario", "replicates")]
    if points.height == 0 or not factors or not outcomes:
        return None
    means = rows.group_by("scenario").agg([pl.col(o).cast(pl.Float64).mean() for o in outcomes])
    data = points.join(means, on="scenario", how="inner")
    fig, axes = plt.subplots(
        len(outcomes),
        len(factors),
        figsize=(3.2 * len(factors), 2.6 * len(outcomes)),
        squeeze=False,
        layout="constrained",
    )
    for i, outcome in enumerate(outcomes):
        for j, factor in enumerate(factors):
            ax = axes[i, j]
            ax.scatter(data[factor].to_numpy(), data[outcome].to_numpy(), s=12, alpha=0.7)
            if factor in log_factors:
                ax.set_xscale("log")
            if i == len(outcomes) - 1:
                ax.set_xlabel(factor.split(".")[-1])
            if j == 0:
                ax.set_ylabel(outcome.replace("_", " "), fontsize=9)
            ax.grid(alpha=0.3)
    return _save(fig, "Sweep: scenario means against each factor", path)


def sensitivity_plot(indices: pl.DataFrame, path: Path) -> Path | None:
    """First-order and total sensitivity indices with their bootstrap CIs, per outcome."""
    if indices.height == 0:
        return None
    outcomes = indices["outcome"].unique(maintain_order=True).to_list()
    fig, axes = _grid(len(outcomes))
    for ax, outcome in zip(axes, outcomes, strict=False):
        part = indices.filter(pl.col("outcome") == outcome)
        x = np.arange(part.height)
        ax.bar(
            x - 0.2,
            part["S1"].to_numpy(),
            0.4,
            yerr=part["S1_conf"].to_numpy(),
            label="first order S1",
            capsize=2,
        )
        if part["ST"].null_count() < part.height:
            ax.bar(
                x + 0.2,
                part["ST"].to_numpy(),
                0.4,
                yerr=part["ST_conf"].to_numpy(),
                label="total ST",
                capsize=2,
            )
        ax.set_xticks(x, [f.split(".")[-1] for f in part["factor"].to_list()], fontsize=8)
        ax.set_title(outcome.replace("_", " "), fontsize=10)
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    return _save(fig, "Sensitivity indices (bars: 95% bootstrap CI)", path)


def convergence_plot(convergence: pl.DataFrame, path: Path) -> Path | None:
    """Sobol indices against the base sample N (log scale) with their 95% CIs, one panel per
    outcome and a line per factor: converged indices stop moving and their bands narrow."""
    if convergence.height == 0:
        return None
    outcomes = convergence["outcome"].unique(maintain_order=True).to_list()
    fig, axes = _grid(len(outcomes))
    for ax, outcome in zip(axes, outcomes, strict=False):
        part = convergence.filter(pl.col("outcome") == outcome)
        for i, factor in enumerate(part["factor"].unique(maintain_order=True).to_list()):
            f = part.filter(pl.col("factor") == factor).sort("samples")
            n = f["samples"].to_numpy()
            st, conf = f["ST"].to_numpy(), f["ST_conf"].to_numpy()
            color = COLORS[i % len(COLORS)]
            ax.plot(n, st, "o-", color=color, label=f"ST {factor.split('.')[-1]}", ms=3)
            ax.fill_between(n, st - conf, st + conf, color=color, alpha=0.15)
            ax.plot(n, f["S1"].to_numpy(), "x--", color=color, lw=0.8, ms=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("base samples N")
        ax.set_title(outcome.replace("_", " "), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    return _save(fig, "Sobol indices against N (solid: ST with 95% CI; dashed: S1)", path)
