"""The analysis of a calibration (``experiment.kind=calibrate``): posterior summaries, the
posterior predictive check, figures and the report section (docs/calibration.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.analysis.report import markdown_table


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of a weighted sample (midpoint interpolation of the weighted ECDF)."""
    order = np.argsort(x)
    xs, ws = np.asarray(x, dtype=float)[order], np.asarray(w, dtype=float)[order]
    cw = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return np.interp(q, cw, xs)


def _map(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The particle where a weighted Gaussian KDE of the population is highest (the MAP)."""
    from scipy.stats import gaussian_kde

    spread = values.std(axis=0)
    keep = spread > 0
    if values.shape[0] < 3 or not keep.any():
        return values[int(np.argmax(w))]
    z = (values[:, keep] - values[:, keep].mean(axis=0)) / spread[keep]
    try:
        density = gaussian_kde(z.T, weights=w)(z.T)
    except np.linalg.LinAlgError:
        return values[int(np.argmax(w))]
    return values[int(np.argmax(density))]


def parameter_table(
    posterior: pl.DataFrame, parameters: Sequence[Any], interval: float, truth: dict[str, float]
) -> pl.DataFrame:
    """One row per parameter of the last generation: weighted mean, MAP, the central
    ``interval`` credible interval (``interval_low``, ``interval_high``), the prior's central
    interval of the same probability (``prior_interval_low``, ``prior_interval_high``) and how
    much narrower the posterior's is (``narrowing``); with a known truth (synthetic targets),
    ``truth`` and whether the interval covers it."""
    last = posterior.filter(pl.col("generation") == posterior["generation"].max())
    w = last["weight"].to_numpy()
    keys = [p.key for p in parameters]
    values = np.column_stack([last[k].to_numpy().astype(float) for k in keys])
    best = _map(values, w)
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    rows = []
    for j, p in enumerate(parameters):
        x = values[:, j]
        low, high = weighted_quantile(x, w, [lo_q, hi_q])
        if p.scale == "log":  # the prior's interval on the scale it is uniform on
            plo, phi = np.exp(np.log(p.low) + np.array([lo_q, hi_q]) * np.log(p.high / p.low))
        else:
            plo, phi = p.low + np.array([lo_q, hi_q]) * (p.high - p.low)
        width = float(high - low)
        row = {
            "parameter": p.key,
            "mean": float(np.sum(w * x) / w.sum()),
            "map": float(best[j]),
            "interval_low": float(low),
            "interval_high": float(high),
            "prior_interval_low": float(plo),
            "prior_interval_high": float(phi),
            "narrowing": float((phi - plo) / width) if width > 0 else float("inf"),
        }
        if truth:
            row["truth"] = truth.get(p.key, float("nan"))
            row["covers_truth"] = bool(low <= truth[p.key] <= high) if p.key in truth else None
        rows.append(row)
    return pl.DataFrame(rows, schema_overrides={"covers_truth": pl.Boolean} if truth else None)


def ppc_table(draws: pl.DataFrame, targets: Sequence[Any], interval: float) -> pl.DataFrame:
    """One row per target: the observed value beside the posterior predictive median and
    central ``interval``, and the verdict (``inside``: reproduced)."""
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    rows = []
    for t in targets:
        x = draws.filter(pl.col("target") == t.name)["value"].to_numpy().astype(float)
        x = x[np.isfinite(x)]
        low, med, high = np.quantile(x, [lo_q, 0.5, hi_q]) if x.size else (np.nan,) * 3
        inside = bool(low <= t.observed <= high) if x.size else False
        rows.append(
            {
                "target": t.name,
                "statistic": t.statistic,
                "observed": t.observed,
                "scale": t.scale,
                "median": float(med),
                "low": float(low),
                "high": float(high),
                "z": float((med - t.observed) / t.scale),
                "inside": inside,
                "verdict": "reproduced" if inside else "not reproduced",
                "fitted": t.fit,
                "draws": int(x.size),  # draws where the statistic is defined (not NaN)
                "assumed": t.assumed,
                "source": t.source,
            }
        )
    return pl.DataFrame(rows)


def _marginal(ax: Any, first: pl.DataFrame, last: pl.DataFrame, p: Any, truth: dict[str, float]) -> None:
    """A parameter's weighted histogram in the first and the last generation, and its truth."""
    bins = np.geomspace(p.low, p.high, 25) if p.scale == "log" else np.linspace(p.low, p.high, 25)
    for frame, style in ((first, {"color": "0.8"}), (last, {"alpha": 0.8, "color": "C0"})):
        generation = int(frame["generation"][0]) if frame.height else 0
        ax.hist(
            frame[p.key].to_numpy(),
            bins=bins,
            weights=frame["weight"].to_numpy(),
            label=f"generation {generation}",
            density=True,
            **style,
        )
    if p.key in truth:
        ax.axvline(truth[p.key], color="C3", label="truth")
    if p.scale == "log":
        ax.set_xscale("log")


def _pair(ax: Any, last: pl.DataFrame, px: Any, py: Any, truth: dict[str, float]) -> None:
    """The last generation's particles on two parameters (marker area: weight), and the truth."""
    w = last["weight"].to_numpy()
    ax.scatter(
        last[px.key].to_numpy(),
        last[py.key].to_numpy(),
        s=6 + 200 * w / w.max() / len(w) * 10,
        alpha=0.5,
        color="C0",
    )
    if px.key in truth and py.key in truth:
        ax.plot([truth[px.key]], [truth[py.key]], "x", color="C3", ms=10, mew=2)
    ax.set_xlim(px.low, px.high)
    ax.set_ylim(py.low, py.high)
    if px.scale == "log":
        ax.set_xscale("log")
    if py.scale == "log":
        ax.set_yscale("log")


def _pair_axes(ax: Any, px: Any, py: Any, bottom: bool, left: bool) -> None:
    """Few ticks, labelled on the outer panels only: long parameter values do not collide."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    ax.tick_params(labelsize=7)
    for axis, p in ((ax.xaxis, px), (ax.yaxis, py)):
        axis.set_major_locator(LogLocator(numticks=3) if p.scale == "log" else MaxNLocator(3))
        axis.set_minor_formatter(NullFormatter())  # a log axis labels its minor ticks too
    if bottom:
        ax.set_xlabel(px.key, fontsize=8)
    else:
        ax.tick_params(labelbottom=False, which="both")
    if left:
        ax.set_ylabel(py.key, fontsize=8)
    else:
        ax.tick_params(labelleft=False, which="both")


def posterior_plot(
    posterior: pl.DataFrame, parameters: Sequence[Any], truth: dict[str, float], path: Path
) -> Path:
    """Marginals (diagonal: the first and last generations, weighted) and pairwise scatter of
    the last generation (below the diagonal), prior ranges as axes; the truth when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(parameters)
    last_t = int(posterior["generation"].cast(pl.Int64).max() or 0)  # type: ignore[arg-type]
    last = posterior.filter(pl.col("generation") == last_t)
    first = posterior.filter(pl.col("generation") == 0)
    fig, axes = plt.subplots(n, n, figsize=(2.6 * n + 1, 2.6 * n + 0.5), squeeze=False, layout="constrained")
    for i, pi in enumerate(parameters):
        for j, pj in enumerate(parameters):
            ax = axes[i][j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                _marginal(ax, first, last, pi, truth)
                if i == 0:
                    ax.legend(fontsize=7)
            else:
                _pair(ax, last, pj, pi, truth)
            _pair_axes(ax, pj, pi, bottom=i == n - 1, left=j == 0 and i != j)
    fig.suptitle("ABC-SMC posterior: marginals (diagonal) and pairs (last generation)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def ppc_plot(draws: pl.DataFrame, ppc: pl.DataFrame, path: Path) -> Path:
    """Posterior predictive check: each target's simulated values in units of its scale
    around the observed value (0), with the predictive interval; red: not reproduced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * ppc.height + 1.5), layout="constrained")
    for k, row in enumerate(ppc.iter_rows(named=True)):
        x = draws.filter(pl.col("target") == row["target"])["value"].to_numpy().astype(float)
        z = (x - row["observed"]) / row["scale"]
        colour = "C2" if row["inside"] else "C3"
        ax.plot(
            z,
            np.full(z.size, k) + np.random.default_rng(k).uniform(-0.15, 0.15, z.size),
            ".",
            color=colour,
            alpha=0.3,
            ms=3,
        )
        ax.plot(
            [(row["low"] - row["observed"]) / row["scale"], (row["high"] - row["observed"]) / row["scale"]],
            [k, k],
            color=colour,
            lw=3,
        )
    ax.axvline(0, color="k", lw=1, label="observed")
    ax.set_yticks(range(ppc.height), ppc["target"].to_list())
    ax.set_xlabel("(simulated - observed) / scale")
    ax.set_title("Posterior predictive check (bars: predictive interval)")
    ax.set_xscale("symlog")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report_section(
    params: pl.DataFrame, ppc: pl.DataFrame, generations: pl.DataFrame, interval: float
) -> tuple[str, list[str]]:
    """The report's calibration section and the terminal's lines."""
    pct = f"{100 * interval:.0f}%"
    lines = [
        f"posterior ({pct} interval), {generations.height} generations, final epsilon "
        f"{generations['epsilon'][-1]:.4g}:"
    ]
    for r in params.iter_rows(named=True):
        truth = (
            ""
            if r.get("covers_truth") is None
            else f"; truth {r['truth']:.4g} {'inside' if r['covers_truth'] else 'OUTSIDE'}"
        )
        lines.append(
            f"  {r['parameter']}: mean {r['mean']:.4g}, MAP {r['map']:.4g}, [{r['interval_low']:.4g}, "
            f"{r['interval_high']:.4g}], {r['narrowing']:.1f}x narrower than the prior{truth}"
        )
    lines.append(
        f"targets ({pct} posterior predictive interval): {int(ppc['inside'].sum())} of {ppc.height} "
        "reproduced"
    )
    for r in ppc.iter_rows(named=True):
        lines.append(
            f"  {r['target']}: observed {r['observed']:.4g}, simulated {r['median']:.4g} "
            f"[{r['low']:.4g}, {r['high']:.4g}]: {r['verdict']}"
            + ("" if r["fitted"] else " (checked, not fitted)")
        )
    text = [
        "## Calibration (ABC-SMC)",
        "",
        f"Posterior of the last generation: weighted mean, MAP (highest weighted KDE), central {pct} "
        "credible interval and how much narrower it is than the prior's.",
        "",
        markdown_table(params),
        "",
        f"Posterior predictive check: each target simulated at posterior draws; reproduced when the "
        f"observed value lies inside the central {pct} predictive interval (`fitted`: false for a "
        "check that was not part of the ABC distance; `draws`: the draws where it is defined).",
        "",
        markdown_table(ppc.drop("source")),
        "",
        "Generations (epsilon: acceptance threshold; ESS: effective sample size).",
        "",
        markdown_table(generations),
        "",
    ]
    return "\n".join(text), lines


def calibration_summary(params: pl.DataFrame, ppc: pl.DataFrame, interval: float, run_dir: Path) -> list[str]:
    """The calibration's executive summary (Markdown bullets): which targets it reproduced,
    how well the data pin the parameters down, and the commands that use the posterior."""
    pct = f"{100 * interval:.0f}%"
    missed = ppc.filter(~pl.col("inside"))["target"].to_list()
    lines = [
        f"**{int(ppc['inside'].sum())} of {ppc.height} targets reproduced** (the observed value "
        f"inside the {pct} posterior predictive interval)"
        + (f"; not reproduced: {', '.join(f'`{t}`' for t in missed)}" if missed else "")
        + "."
    ]
    narrow = ", ".join(
        f"`{r['parameter']}` {r['mean']:.4g} [{r['interval_low']:.4g}, {r['interval_high']:.4g}], "
        f"{r['narrowing']:.1f}x narrower"
        for r in params.sort("narrowing", descending=True).iter_rows(named=True)
    )
    lines.append(
        f"Parameters (posterior mean [{pct} interval], narrowing against the prior's {pct}): {narrow}."
    )
    lines.append(
        f"Next: compare the policies at this posterior with `kibs-mc experiment=compare_governance "
        f"calibration.use={run_dir}`, or across it with `kibs-mc experiment=robustness "
        f"uncertainty=posterior uncertainty.posterior={run_dir}`; then `kibs-mc report` with the runs "
        "to see the answers side by side."
    )
    return lines
