"""The calibration targets at given parameter values, without fitting anything: does the model
at its hand-set defaults (or at any overrides) reproduce the stylized facts of a target file?

Simulates ``--replicates`` replicates of the configuration that ``experiment=calibrate`` plus
the overrides compose, measures every target of ``calibration.targets`` on each, and prints per
target the median and the central ``calibration.interval`` of the replicates beside the
observed value, and the predictive check's verdict (docs/calibration.md, "Checks that can
fail"). Bad overrides exit 2 with the one-line message of ``kibs-mc``.

    python scripts/targets_at.py                                   # the hand-set defaults
    python scripts/targets_at.py model.transfer_efficiency=0.045  # any overrides
    python scripts/targets_at.py --replicates 5 calibration.targets=recovery
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import polars as pl

from kibs_mc.analysis.calibration import NOT_REPRODUCED, REPRODUCED, TOO_WIDE, ppc_table
from kibs_mc.config import load_config
from kibs_mc.errors import UserError
from kibs_mc.experiments.calibrate import Simulator, resolve_targets
from kibs_mc.run.plan import replicate_seeds

#: How each verdict is printed (the failures in capitals).
SAID = {REPRODUCED: "reproduced", NOT_REPRODUCED: "NOT reproduced", TOO_WIDE: "TOO WIDE to tell"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="kibs-mc overrides (on top of experiment=calibrate)")
    args = parser.parse_args(argv)
    if args.replicates < 2:
        print(f"--replicates={args.replicates}: allowed: 2 or more", file=sys.stderr)
        return 2
    try:
        overrides = ["experiment=calibrate", *args.overrides]
        config = load_config(overrides)
        targets, arms = resolve_targets(config, overrides)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    # one replicate per draw (a policy-response target: one pair of arms on one seed)
    simulator = Simulator(config, (), tuple(replace(t, replicates=1) for t in targets), 1, tuple(arms))
    draws = [  # one row per (replicate, target), as the predictive check's draws
        {"target": name, "value": value}
        for seed in replicate_seeds(config.seed, args.replicates)
        for name, value in simulator.statistics({}, [int(seed)]).items()
    ]
    cal = config.calibration
    table = ppc_table(pl.DataFrame(draws), targets, cal.interval, cal.max_width)
    for r in table.iter_rows(named=True):
        if r["draws"] == 0:
            print(f"{r['target']}: observed {r['observed']:g}, simulated: undefined in every replicate")
            continue
        print(
            f"{r['target']}: observed {r['observed']:g}, simulated {r['median']:.3g} [{r['low']:.3g}, "
            f"{r['high']:.3g}] ({r['width']:.2g} scales wide; {r['draws']} of {args.replicates} defined): "
            f"{SAID[r['verdict']]}"
        )
    print(
        f"{int(table['reproduced'].sum())} of {table.height} targets reproduced: the median of "
        f"{args.replicates} replicates within the observed value's central {cal.interval:g} band, their "
        f"central {cal.interval:g} at most {cal.max_width:g} scales wide"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
