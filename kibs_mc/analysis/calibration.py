"""The analysis of a calibration (``experiment.kind=calibrate``): posterior summaries and which
parameters the targets identify, the posterior predictive check and its verdicts, figures and
the report section (docs/calibration.md).

Two judgements here can fail a calibration:

- **identification**: a parameter whose posterior interval is less than :data:`IDENTIFIED`
  times narrower than its prior's is *not identified* (the targets say little about it); a
  decision should keep it uncertain over its prior rather than fix it at a posterior point;
- **the predictive check**: a target is *reproduced* when the predictive median lies within the
  observed value's own central interval (its standardised distance ``z`` = (median - observed)
  / scale at most the normal quantile of ``interval``: 1.645 for 90%) **and** the central
  predictive interval is at most ``max_width`` target scales wide. A wider interval (an
  unconverged or unidentified fit, or a statistic too noisy for its scale) could reproduce
  anything and is reported as *too wide*; each target is also scored by its continuous ranked
  probability score (CRPS, a proper score; Gneiting & Raftery 2007, J. Am. Stat. Assoc.
  102:359-378, eq. 21) in units of its scale. The check also fails a posterior whose last
  generation's effective sample size is below ``min_ess`` (:data:`MIN_ESS`) of its particles:
  a posterior of a few heavy particles (a collapsed importance sampler) says little whatever
  its predictive intervals look like.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.analysis.report import markdown_table

#: A parameter whose posterior interval is less than this many times narrower than its prior's
#: central interval of the same probability is "not identified".
IDENTIFIED = 2.0
#: The widest predictive interval, in target scales, that still reproduces a target (the
#: default of ``calibration.max_width``). A target's scale is the standard deviation of its
#: observed value (or an accepted error), so a prediction exactly as uncertain as the
#: observation has a central 90% interval 3.3 scales wide; 4 scales leaves room for the
#: posterior's own uncertainty. A wider interval says the target could be almost anything.
MAX_WIDTH = 4.0
#: The smallest effective sample size of the last generation, as a share of its particles,
#: that passes the check (the default of ``calibration.min_ess``): below it a few heavy
#: particles carry the posterior; with 100 particles, 20 effective ones put about one in each
#: 5% tail of a 90% interval.
MIN_ESS = 0.2
#: The verdicts of the predictive check.
REPRODUCED, NOT_REPRODUCED, TOO_WIDE = "reproduced", "not reproduced", "too wide"


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Quantiles of a weighted sample (midpoint interpolation of the weighted ECDF)."""
    order = np.argsort(x)
    xs, ws = np.asarray(x, dtype=float)[order], np.asarray(w, dtype=float)[order]
    cw = (np.cumsum(ws) - 0.5 * ws) / ws.sum()
    return np.interp(q, cw, xs)


def weighted_cdf(x: np.ndarray, w: np.ndarray, at: float) -> float:
    """The weighted sample's CDF at ``at`` (ties count half): Talts et al.'s (2018) rank
    statistic of a truth among posterior draws, normalised to [0, 1]."""
    x, w = np.asarray(x, dtype=float), np.asarray(w, dtype=float)
    return float((w[x < at].sum() + 0.5 * w[x == at].sum()) / w.sum())


#: The coverage of the 90% posterior interval that simulation-based calibration accepts, for
#: an identified parameter: ABC's tolerance widens a posterior (coverage above the nominal),
#: but one that covers less than 0.8 or more than 0.97 is miscalibrated.
COVERAGE_RANGE = (0.80, 0.97)


def coverage_table(rows: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Per parameter, from one row per (truth, parameter) with ``covered``, ``identified`` and
    ``posterior_cdf``: the number of truths, the ``coverage`` of the posterior interval with its
    Clopper-Pearson ``confidence`` interval, the share of truths where the parameter was
    identified, a Kolmogorov-Smirnov p-value of the posterior CDF at the truths against the
    uniform (a calibrated posterior makes it uniform; Talts et al. 2018), and ``verdict``:
    ``calibrated`` (coverage inside COVERAGE_RANGE), ``miscalibrated``, or ``not identified``
    (identified at fewer than half the truths: its interval is the prior's, whatever it covers)."""
    from scipy.stats import binomtest, kstest

    out = []
    for key in rows["parameter"].unique(maintain_order=True).to_list():
        part = rows.filter(pl.col("parameter") == key)
        n, k = part.height, int(part["covered"].sum())
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
        identified = float(part["identified"].mean())  # type: ignore[arg-type]
        coverage = k / n
        inside = COVERAGE_RANGE[0] <= coverage <= COVERAGE_RANGE[1]
        out.append(
            {
                "parameter": key,
                "truths": n,
                "coverage": coverage,
                "coverage_low": float(ci.low),
                "coverage_high": float(ci.high),
                "identified_share": identified,
                "uniformity_p": float(kstest(part["posterior_cdf"].to_numpy(), "uniform").pvalue),
                "verdict": "not identified"
                if identified < 0.5
                else ("calibrated" if inside else "miscalibrated"),
            }
        )
    return pl.DataFrame(out)


def coverage_rule(table: pl.DataFrame) -> tuple[bool, list[str], list[str]]:
    """Simulation-based calibration's rule on a :func:`coverage_table`: every identified
    parameter's coverage lies within COVERAGE_RANGE. Returns whether it holds, why not (one
    line per miscalibrated parameter: its coverage, confidence interval and truths) and the
    parameters it was tested on (those identified at half the truths or more; with none, the
    rule holds vacuously and says nothing)."""
    low, high = COVERAGE_RANGE
    tested = table.filter(pl.col("verdict") != "not identified")
    failures = [
        f"`{r['parameter']}` covers the truth in {r['coverage']:.2f} of {r['truths']} truths "
        f"[95% CI {r['coverage_low']:.2f}, {r['coverage_high']:.2f}], outside [{low}, {high}]"
        for r in tested.iter_rows(named=True)
        if r["verdict"] == "miscalibrated"
    ]
    return not failures, failures, tested["parameter"].to_list()


def abc_rejection(
    particles: np.ndarray,
    stats: np.ndarray,
    observed: np.ndarray,
    scales: np.ndarray,
    *,
    epsilon: float | None,
    accept: int,
    bounds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Rejection ABC from a reference table (Pritchard et al. 1999; Beaumont, Zhang & Balding
    2002, Genetics 162:2025-2035): the table's ``particles`` (n x parameters, drawn from the
    prior) whose ``stats`` (n x targets) lie within ``epsilon`` of ``observed`` by the
    calibration's distance, the Euclidean norm of (simulated - observed) / ``scales``; the
    ``accept`` nearest when fewer lie within it (or without ``epsilon``). A row with an
    undefined statistic is never accepted, as in the ABC. Returns the accepted particles, their
    weights and the tolerance used.

    Without ``bounds`` the weights are equal (plain rejection). With ``bounds`` (parameters x
    2, the prior's box on the particle scale) Beaumont et al.'s local-linear regression
    adjustment: each accepted particle, on the logit scale of its box, is moved by the weighted
    least-squares regression of the parameters on the statistics' distances to ``observed``,
    ``theta - beta^T (s - observed)``, with Epanechnikov weights ``1 - (d / epsilon)^2``, and
    mapped back inside the box; with no more accepted rows than regressors it is not adjusted."""
    z = (stats - observed) / scales
    d = np.sqrt(np.sum(z**2, axis=1))
    d = np.where(np.isfinite(d), d, np.inf)
    order = np.argsort(d, kind="stable")
    k = max(int(np.sum(d <= epsilon)) if epsilon is not None else 0, min(accept, int(np.isfinite(d).sum())))
    chosen = order[:k]
    tolerance = float(d[chosen[-1]]) if k else float("nan")
    theta = particles[chosen]
    if bounds is None or k <= z.shape[1] + 1:
        return theta, np.ones(k), tolerance
    # the farthest accepted row sets the kernel's width; nudge it so that row keeps some weight
    width = tolerance * (1 + 1e-6) if tolerance > 0 else 1.0
    w = 1.0 - (d[chosen] / width) ** 2
    low, high = bounds[:, 0], bounds[:, 1]
    u = np.clip((theta - low) / (high - low), 1e-9, 1 - 1e-9)
    logit = np.log(u / (1 - u))
    x = np.column_stack([np.ones(k), z[chosen]])
    root = np.sqrt(w)[:, None]
    beta = np.linalg.lstsq(x * root, logit * root, rcond=None)[0]
    adjusted = logit - z[chosen] @ beta[1:]
    return low + (high - low) / (1 + np.exp(-adjusted)), w, tolerance


def _map(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The particle where a weighted Gaussian KDE of the population is highest (the MAP)."""
    from scipy.stats import gaussian_kde

    spread = values.std(axis=0)
    keep = spread > 0
    # a KDE needs more particles than dimensions (else its covariance is singular)
    if values.shape[0] <= max(2, int(keep.sum())) or not keep.any():
        return values[int(np.argmax(w))]
    z = (values[:, keep] - values[:, keep].mean(axis=0)) / spread[keep]
    try:
        density = gaussian_kde(z.T, weights=w)(z.T)
    except (np.linalg.LinAlgError, ValueError):
        return values[int(np.argmax(w))]
    return values[int(np.argmax(density))]


def parameter_table(
    posterior: pl.DataFrame, parameters: Sequence[Any], interval: float, truth: dict[str, float]
) -> pl.DataFrame:
    """One row per parameter of the last generation: weighted mean, MAP, the central
    ``interval`` credible interval (``interval_low``, ``interval_high``), the prior's central
    interval of the same probability (``prior_interval_low``, ``prior_interval_high``), how
    much narrower the posterior's is (``narrowing``) and whether that is at least
    :data:`IDENTIFIED` (``identified``); with a known truth (synthetic targets), ``truth`` and
    whether the interval covers it."""
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
        row["identified"] = bool(row["narrowing"] >= IDENTIFIED)
        if truth:
            row["truth"] = truth.get(p.key, float("nan"))
            row["covers_truth"] = bool(low <= truth[p.key] <= high) if p.key in truth else None
        rows.append(row)
    return pl.DataFrame(rows, schema_overrides={"covers_truth": pl.Boolean} if truth else None)


def crps(draws: np.ndarray, observed: float) -> float:
    """The continuous ranked probability score of the ensemble ``draws`` at ``observed``:
    E|X - y| - E|X - X'| / 2 (Gneiting & Raftery 2007, eq. 21), from the sorted draws in
    O(n log n). Lower is better; 0 only for a point mass on the observed value."""
    x = np.sort(np.asarray(draws, dtype=float))
    n = x.size
    if n == 0:
        return float("nan")
    spread = 2.0 * np.sum((2.0 * np.arange(1, n + 1) - n - 1) * x) / n**2  # E|X - X'|
    return float(np.mean(np.abs(x - observed)) - 0.5 * spread)


def _z_max(interval: float) -> float:
    """The largest |z| that reproduces a target: the normal quantile of the central ``interval``."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + interval / 2))


def verdict(z: float, width: float, interval: float, max_width: float) -> str:
    """A target's verdict: not reproduced when the predictive median is more than the normal
    ``interval`` quantile of target scales from the observed value (``|z|``: 1.645 for 90%, the
    observed value's own central interval); too wide when the predictive interval is more than
    ``max_width`` scales wide (the check cannot tell); reproduced otherwise."""
    if not np.isfinite(z) or abs(z) > _z_max(interval):
        return NOT_REPRODUCED
    return REPRODUCED if np.isfinite(width) and width <= max_width else TOO_WIDE


def ppc_table(
    draws: pl.DataFrame, targets: Sequence[Any], interval: float, max_width: float = MAX_WIDTH
) -> pl.DataFrame:
    """One row per target: the observed value beside the posterior predictive median and
    central ``interval`` (``low``, ``high``), ``inside`` (the observed value lies in it), the
    median's standardised distance ``z`` and the interval's ``width`` in target scales, the
    ``crps`` in target scales, and the ``verdict`` (:func:`verdict`): reproduced, not
    reproduced, or too wide; ``reproduced`` is its boolean."""
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    rows = []
    for t in targets:
        x = draws.filter(pl.col("target") == t.name)["value"].to_numpy().astype(float)
        x = x[np.isfinite(x)]
        low, med, high = np.quantile(x, [lo_q, 0.5, hi_q]) if x.size else (np.nan,) * 3
        inside = bool(low <= t.observed <= high) if x.size else False
        width = float((high - low) / t.scale) if x.size else float("inf")
        z = float((med - t.observed) / t.scale)
        said = verdict(z, width, interval, max_width)
        rows.append(
            {
                "target": t.name,
                "statistic": t.statistic,
                "observed": t.observed,
                "scale": t.scale,
                "median": float(med),
                "low": float(low),
                "high": float(high),
                "z": z,
                "width": width,
                "crps": crps(x, t.observed) / t.scale,
                "inside": inside,
                "reproduced": said == REPRODUCED,
                "verdict": said,
                "fitted": t.fit,
                "draws": int(x.size),  # draws where the statistic is defined (not NaN)
                "assumed": t.assumed,
                "source": t.source,
            }
        )
    return pl.DataFrame(rows)


def ess_shortfall(generations: pl.DataFrame | None, min_ess: float) -> str | None:
    """Why the last generation rests on too few particles, or None: its effective sample size
    (ESS) below ``min_ess`` times its particles. A few heavy particles make a posterior whose
    intervals and predictive check say little (a 90% interval needs effective particles in
    both 5% tails)."""
    if generations is None or not generations.height or min_ess <= 0:
        return None
    ess, particles = float(generations["ess"][-1]), int(generations["particles"][-1])
    if ess >= min_ess * particles:
        return None
    return (
        f"the last generation's effective sample size {ess:.1f} of {particles} particles is below "
        f"{min_ess:.0%} of them ({min_ess * particles:.4g}): the posterior rests on too few particles"
    )


def check_verdict(
    params: pl.DataFrame, ppc: pl.DataFrame, generations: pl.DataFrame | None = None, min_ess: float = 0.0
) -> tuple[bool, list[str]]:
    """Whether the calibration passes its checks, and why not: every target (fitted and held
    out) reproduced, with an interval at most ``max_width`` scales wide, and (``generations``
    given) the last generation's ESS at least ``min_ess`` of its particles. Parameters that are
    not identified do not fail it; they are named so that a decision keeps them uncertain."""
    reasons = [
        f"`{r['target']}` {r['verdict']}" + (" (held out)" if not r["fitted"] else "")
        for r in ppc.iter_rows(named=True)
        if not r["reproduced"]
    ]
    short = ess_shortfall(generations, min_ess)
    return not reasons and short is None, reasons + ([short] if short else [])


def not_identified(params: pl.DataFrame) -> list[str]:
    """The parameters the targets do not identify (``identified`` false)."""
    return params.filter(~pl.col("identified"))["parameter"].to_list()


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
    around the observed value (0), with the predictive interval; green: reproduced, red: not
    reproduced, orange: too wide to tell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * ppc.height + 1.5), layout="constrained")
    for k, row in enumerate(ppc.iter_rows(named=True)):
        x = draws.filter(pl.col("target") == row["target"])["value"].to_numpy().astype(float)
        z = (x - row["observed"]) / row["scale"]
        colour = {REPRODUCED: "C2", NOT_REPRODUCED: "C3"}.get(row["verdict"], "C1")
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


def _parameter_line(r: dict[str, Any]) -> str:
    truth = (
        ""
        if r.get("covers_truth") is None
        else f"; truth {r['truth']:.4g} {'inside' if r['covers_truth'] else 'OUTSIDE'}"
    )
    said = "" if r["identified"] else ": NOT IDENTIFIED (a decision keeps it uncertain over its prior)"
    return (
        f"  {r['parameter']}: mean {r['mean']:.4g}, MAP {r['map']:.4g}, [{r['interval_low']:.4g}, "
        f"{r['interval_high']:.4g}], {r['narrowing']:.1f}x narrower than the prior{said}{truth}"
    )


def _target_line(r: dict[str, Any]) -> str:
    return (
        f"  {r['target']}: observed {r['observed']:.4g}, simulated {r['median']:.4g} "
        f"[{r['low']:.4g}, {r['high']:.4g}] ({r['width']:.2g} scales wide, CRPS {r['crps']:.2g}): "
        f"{r['verdict']}" + ("" if r["fitted"] else " (held out: checked, not fitted)")
    )


def check_sentence(
    params: pl.DataFrame,
    ppc: pl.DataFrame,
    max_width: float,
    generations: pl.DataFrame | None = None,
    min_ess: float = 0.0,
) -> str:
    """One sentence: does the calibration pass its checks (``check_verdict``), and which
    parameters it leaves unidentified."""
    passed, reasons = check_verdict(params, ppc, generations, min_ess)
    loose = not_identified(params)
    said = (
        f"The predictive check passes: every target reproduced by an interval at most {max_width:g} "
        "scales wide"
        + (f", the last generation's ESS at least {min_ess:.0%} of its particles." if min_ess > 0 else ".")
        if passed
        else f"The predictive check FAILS ({'; '.join(reasons)}; an interval wider than {max_width:g} "
        "scales reproduces almost anything)."
    )
    if loose:
        said += (
            f" Not identified (less than {IDENTIFIED:g}x narrower than the prior): "
            + ", ".join(f"`{k}`" for k in loose)
            + "; a decision should keep them uncertain over their priors."
        )
    return said


def report_section(
    params: pl.DataFrame,
    ppc: pl.DataFrame,
    generations: pl.DataFrame,
    interval: float,
    max_width: float = MAX_WIDTH,
    min_ess: float = 0.0,
) -> tuple[str, list[str]]:
    """The report's calibration section and the terminal's lines."""
    pct = f"{100 * interval:.0f}%"
    lines = [
        f"posterior ({pct} interval), {generations.height} generations, final epsilon "
        f"{generations['epsilon'][-1]:.4g}:"
    ]
    lines += [_parameter_line(r) for r in params.iter_rows(named=True)]
    lines.append(
        f"targets (predictive median within the observed value's {pct} band, {pct} predictive interval "
        f"at most {max_width:g} scales wide): "
        f"{int(ppc['reproduced'].sum())} of {ppc.height} reproduced"
    )
    lines += [_target_line(r) for r in ppc.iter_rows(named=True)]
    lines.append(check_sentence(params, ppc, max_width, generations, min_ess))
    text = [
        "## Calibration (ABC-SMC)",
        "",
        f"Posterior of the last generation: weighted mean, MAP (highest weighted KDE), central {pct} "
        f"credible interval, how much narrower it is than the prior's, and `identified` (at least "
        f"{IDENTIFIED:g}x narrower).",
        "",
        markdown_table(params),
        "",
        f"Posterior predictive check: each target simulated at posterior draws; reproduced when the "
        f"predictive median lies within the observed value's central {pct} band (`z`, the median's "
        f"distance in target scales, at most {_z_max(interval):.3g}) and the central {pct} "
        f"predictive interval is at most {max_width:g} target scales wide (`width`; wider: too wide to "
        "tell). `inside`: the observed value lies in the predictive interval; `crps`: the continuous "
        "ranked probability score in target scales (`fitted`: false for a held-out target, not part "
        "of the ABC distance; `draws`: the draws where it is defined)"
        + (
            f"; the check also fails a posterior whose last generation's ESS is below {min_ess:.0%} "
            "of its particles."
            if min_ess > 0
            else "."
        ),
        "",
        check_sentence(params, ppc, max_width, generations, min_ess),
        "",
        markdown_table(ppc.drop("source")),
        "",
        "Generations (epsilon: acceptance threshold; ESS: effective sample size).",
        "",
        markdown_table(generations),
        "",
    ]
    return "\n".join(text), lines


def calibration_summary(
    params: pl.DataFrame,
    ppc: pl.DataFrame,
    interval: float,
    run_dir: Path,
    max_width: float = MAX_WIDTH,
    *,
    generations: pl.DataFrame | None = None,
    min_ess: float = 0.0,
) -> list[str]:
    """The calibration's executive summary (Markdown bullets): which targets it reproduced,
    whether it passes its checks, how well the data pin the parameters down, and the commands
    that use the posterior."""
    pct = f"{100 * interval:.0f}%"
    missed = ppc.filter(~pl.col("reproduced"))
    lines = [
        f"**{int(ppc['reproduced'].sum())} of {ppc.height} targets reproduced** (the predictive median "
        f"within the observed value's {pct} band, the {pct} predictive interval at most {max_width:g} "
        "scales wide)"
        + (
            "; not: " + ", ".join(f"`{r['target']}` ({r['verdict']})" for r in missed.iter_rows(named=True))
            if missed.height
            else ""
        )
        + ".",
        check_sentence(params, ppc, max_width, generations, min_ess),
    ]
    narrow = ", ".join(
        f"`{r['parameter']}` {r['mean']:.4g} [{r['interval_low']:.4g}, {r['interval_high']:.4g}], "
        f"{r['narrowing']:.1f}x narrower" + ("" if r["identified"] else " (not identified)")
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
