"""Simulation-based calibration of experiment=calibrate: coverage of the 90% posterior interval
over truths drawn from the prior, per parameter, with its Clopper-Pearson 95% interval
(kibs_mc/experiments/sbc.py; docs/calibration.md, "Does the calibration cover the truth?").

    python scripts/sbc.py --truths 30 --out outputs/sbc            # the default calibration
    python scripts/sbc.py --truths 30 --out outputs/sbc cluster=default calibration.population=100
    python scripts/sbc.py --amortised 2000 --truths 100 --epsilon 3.9 --out outputs/sbc_table executor=serial
    python scripts/sbc.py --amortised 2000 --leave-one-out --epsilon 3.9 --out outputs/sbc_table

``--amortised N``: one reference table of N prior draws of the calibration's fitted targets
(the particle's own simulation, seeds and arms), cached in ``--out``/table and grown or resumed
there, then a posterior per truth (a row of the table, left out of it) by rejection with the
calibration's distance: the rows within ``--epsilon`` (default: none), at least the ``--accept``
nearest (default 50), with ``--adjust`` Beaumont et al.'s (2002) regression adjustment
(docs/calibration.md, "Does the calibration cover the truth?"). Each truth costs no simulation.

``--leave-one-out`` (with ``--amortised``): no truths; at the targets' observed values, the
posterior from the table on every fitted target against the posterior without each one (as many
rows accepted): which parameters each target narrows, and whether the others predict it
(``leave_one_out.parquet`` in ``--out``; docs/calibration.md, "What each target tells").

Prints one line per parameter and, last, one JSON line per parameter
({"name": "sbc_coverage/<parameter>", "value", "unit", "low", "high", ...}) as scripts/bench.py does.
Rerun with the same --out to finish an interrupted run (finished truths are kept). Bad overrides
exit 2 with the one-line message of kibs-mc.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import polars as pl

from kibs_mc.analysis.calibration import COVERAGE_RANGE, coverage_rule, coverage_table
from kibs_mc.errors import UserError
from kibs_mc.experiments.sbc import (
    Rejection,
    amortised_leave_one_out,
    amortised_sbc,
    simulation_based_calibration,
)


def _refused(args: argparse.Namespace) -> str | None:
    """The first option out of its range, as the one line kibs-mc prints; None if all are in."""
    if args.truths < 2:
        return f"--truths={args.truths}: allowed: 2 or more"
    if args.leave_one_out and args.amortised is None:
        return "--leave-one-out: allowed: with --amortised N (it reads a reference table)"
    if args.leave_one_out and args.adjust:
        return "--adjust: allowed: without --leave-one-out (it compares plain rejection posteriors)"
    if args.amortised is not None and args.amortised <= args.truths:
        return f"--amortised={args.amortised}: allowed: more rows than --truths ({args.truths})"
    if args.accept < 1:
        return f"--accept={args.accept}: allowed: 1 or more"
    if args.epsilon is not None and not args.epsilon > 0:
        return f"--epsilon={args.epsilon}: allowed: a distance above 0"
    return None


def _leave_one_out(args: argparse.Namespace, started: float) -> int:
    """Print what each fitted target adds (kibs_mc.experiments.sbc.leave_one_target_out)."""
    how = Rejection(epsilon=args.epsilon, accept=args.accept, adjust=False)
    try:
        rows = amortised_leave_one_out(args.overrides, args.amortised, args.out, how)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    params = rows["parameter"].unique(maintain_order=True).to_list()
    first = rows.filter(pl.col("left_out") == rows["left_out"][0])
    print(
        f"reference table of {args.amortised} prior draws; {rows['accepted'][0]} rows accepted at the "
        "observed targets; narrowing of each parameter (prior / posterior 90% width) with every fitted "
        "target: " + ", ".join(f"{p} {v:.2f}x" for p, v in zip(params, first["narrowing_all"], strict=True))
    )
    for target in rows["left_out"].unique(maintain_order=True).to_list():
        part = rows.filter(pl.col("left_out") == target)
        r = part.row(0, named=True)
        lost = part.with_columns((pl.col("narrowing_all") / pl.col("narrowing_without")).alias("lost")).sort(
            "lost", descending=True
        )
        top = lost.row(0, named=True)
        print(
            f"without {target}: {top['parameter']} {top['narrowing_without']:.2f}x (with it "
            f"{top['narrowing_all']:.2f}x), the largest loss; predicted by the others: "
            f"{r['median']:.3g} [{r['low']:.3g}, {r['high']:.3g}] against {r['observed']:.3g}, "
            f"z {r['z']:+.2f}, {r['width']:.1f} scales wide: {r['verdict']}"
        )
    print(f"{time.monotonic() - started:.0f} s wall, load {os.getloadavg()[0]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truths", type=int, default=30, help="truths drawn from the prior (default 30)")
    parser.add_argument("--out", type=Path, default=Path("outputs/sbc"), help="run directory of the truths")
    parser.add_argument("--amortised", type=int, metavar="N", help="a reference table of N prior draws")
    parser.add_argument("--epsilon", type=float, help="--amortised: accept the rows within this distance")
    parser.add_argument("--accept", type=int, default=50, help="--amortised: at least this many nearest rows")
    parser.add_argument(
        "--adjust", action="store_true", help="--amortised: regression-adjust the accepted rows"
    )
    parser.add_argument(
        "--leave-one-out",
        action="store_true",
        help="--amortised: what each fitted target adds, at the observed values (no truths)",
    )
    parser.add_argument("overrides", nargs="*", help="kibs-mc overrides (on top of experiment=calibrate)")
    args = parser.parse_args(argv)
    refused = _refused(args)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.leave_one_out:
        return _leave_one_out(args, started)
    try:
        if args.amortised is None:
            rows = simulation_based_calibration(args.overrides, args.truths, args.out)
        else:
            how = Rejection(epsilon=args.epsilon, accept=args.accept, adjust=args.adjust)
            rows = amortised_sbc(args.overrides, args.amortised, args.truths, args.out, how)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    wall = time.monotonic() - started
    table = coverage_table(rows)
    if args.amortised is not None:
        per_truth = rows.unique("truth_index")
        accepted, tolerance = per_truth["accepted"], per_truth["tolerance"]
        print(
            f"reference table of {args.amortised} prior draws; per truth {accepted.median():.0f} rows "
            f"accepted (min {accepted.min()}), tolerance median {tolerance.median():.3g} "
            f"[{tolerance.min():.3g}, {tolerance.max():.3g}]"
            + ("; regression-adjusted" if args.adjust else "")
        )
    low, high = COVERAGE_RANGE
    for r in table.iter_rows(named=True):
        print(
            f"{r['parameter']}: 90% interval covers the truth in {r['coverage']:.2f} of {r['truths']} truths "
            f"[95% CI {r['coverage_low']:.2f}, {r['coverage_high']:.2f}]; identified at "
            f"{r['identified_share']:.0%} of truths; rank uniformity p = {r['uniformity_p']:.2f}: "
            f"{r['verdict']}"
        )
    passes, failures, tested = coverage_rule(table)
    print(
        (
            f"OUTSIDE [{low}, {high}]: " + "; ".join(failures)
            if not passes
            else f"every identified parameter ({', '.join(tested)}) covers within [{low}, {high}]"
            if tested
            else f"no parameter identified at half the truths: the [{low}, {high}] rule is not tested"
        )
        + f"; {wall:.0f} s wall, load {os.getloadavg()[0]:.1f}"
    )
    for r in table.iter_rows(named=True):
        print(
            json.dumps(
                {
                    "name": f"sbc_coverage/{r['parameter']}",
                    "value": r["coverage"],
                    "unit": "share of truths",
                    "low": r["coverage_low"],
                    "high": r["coverage_high"],
                    "truths": r["truths"],
                    "verdict": r["verdict"],
                    "wall_s": round(wall, 1),
                    "uptime": os.getloadavg()[0],
                }
            )
        )
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
