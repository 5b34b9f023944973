"""Make the shipped posteriors again: one calibration per cluster preset, written with its
provenance to ``conf/posterior/<preset>.json`` (kibs_mc/run/shipped.py; docs/calibration.md,
"The shipped posteriors"). Run it after the model or the targets change; ``make posteriors``
runs it for every preset the experiments use by default.

    python scripts/ship_posterior.py small default                    # what `make posteriors` runs
    python scripts/ship_posterior.py small -- calibration.population=60 calibration.generations=4
    python scripts/ship_posterior.py --from outputs/calibrate/<run>   # a finished calibration

Each preset runs ``kibs-mc experiment=calibrate cluster=<preset> tracking=none`` with the
settings after ``--`` (only ``calibration.*``, ``seed`` and ``executor*`` settings: anything
else would change what was calibrated), in ``outputs/posteriors/<preset>-<time>``, then writes the
file from that run. ``--from`` writes it from a calibration already run (of the preset's model,
cluster and governance as configured, on today's model code). Bad settings exit 2 with one line.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
from pathlib import Path

from kibs_mc.errors import UserError
from kibs_mc.run import shipped


def calibrate(preset: str, extra: list[str]) -> tuple[int, Path]:
    """Run the calibration of ``preset``; its exit status and run directory."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = Path("outputs/posteriors") / f"{preset}-{stamp}"
    overrides = ["experiment=calibrate", f"cluster={preset}", "tracking=none", *extra]
    shipped.calibration_config(overrides)  # checks every setting before a calibration starts
    command = [sys.executable, "-m", "kibs_mc", *overrides, f"hydra.run.dir={run_dir}"]
    print(f"ship_posterior: {shlex.join(['kibs-mc', *command[3:]])}", flush=True)
    return subprocess.run(command, check=False).returncode, run_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "presets", nargs="*", help="cluster presets (conf/cluster/*.yaml), e.g. small default"
    )
    parser.add_argument("--from", dest="run_dir", type=Path, help="a finished calibration's run directory")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if bool(args.presets) == bool(args.run_dir):
        parser.error("name the presets to calibrate, or --from RUN_DIR (not both)")
    date = datetime.date.today().isoformat()
    try:
        shipped.check_extra(extra)
        if args.run_dir:
            path = shipped.write(args.run_dir, date)
            print(f"ship_posterior: wrote {path} from {args.run_dir}")
            return 0
        for preset in args.presets:
            status, run_dir = calibrate(preset, extra)
            if status:
                return status
            path = shipped.write(run_dir, date)
            print(f"ship_posterior: wrote {path} from {run_dir}")
    except UserError as error:
        print(f"ship_posterior: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
