"""Simulation-based calibration of experiment=calibrate: coverage of the 90% posterior interval
over truths drawn from the prior, per parameter, with its Clopper-Pearson 95% interval
(kibs_mc/experiments/sbc.py; docs/calibration.md, "Does the calibration cover the truth?").

    python scripts/sbc.py --truths 30 --out outputs/sbc            # the default calibration
    python scripts/sbc.py --truths 30 --out outputs/sbc cluster=default calibration.population=100

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

from kibs_mc.analysis.calibration import COVERAGE_RANGE, coverage_rule, coverage_table
from kibs_mc.errors import UserError
from kibs_mc.experiments.sbc import simulation_based_calibration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truths", type=int, default=30, help="truths drawn from the prior (default 30)")
    parser.add_argument("--out", type=Path, default=Path("outputs/sbc"), help="run directory of the truths")
    parser.add_argument("overrides", nargs="*", help="kibs-mc overrides (on top of experiment=calibrate)")
    args = parser.parse_args(argv)
    if args.truths < 2:
        print(f"--truths={args.truths}: allowed: 2 or more", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        rows = simulation_based_calibration(args.overrides, args.truths, args.out)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    wall = time.monotonic() - started
    table = coverage_table(rows)
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
