"""``kibs-mc-compare``: list and compare past experiments in the MLflow store.

    kibs-mc-compare list                       # parent runs, newest first
    kibs-mc-compare show RUN_ID                # a run's scenarios: mean and effect per outcome
    kibs-mc-compare diff RUN_A RUN_B           # the same scenario's means in two runs

``--uri`` (default ``sqlite:///mlflow.db``) and ``--experiment`` (default ``kibs-mc``) pick
the store. Exit status 2 when the store, experiment or run does not exist.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from rich.console import Console
from rich.table import Table


class CompareError(Exception):
    pass


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, experiment: str) -> list:
    """Every run of ``experiment``; CompareError (one line) when the store cannot be read."""
    from kibs_mc.tracking.mlflow import bounded_http_retries, store_lock

    bounded_http_retries()  # as kibs-mc: seconds, not minutes, on a dead server
    try:
        with store_lock(uri):  # a new SQLite store is created (migrated) by one process at a time
            client = _client(uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise CompareError(f"no experiment {experiment!r} in the store")
            return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                                      max_results=5000)
    except CompareError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable server, not a store, damaged schema
        text = str(exc).strip()
        first = text.splitlines()[0][:300] if text else ""
        raise CompareError(f"cannot read the MLflow store at {uri} ({type(exc).__name__}: {first}); "
                           "pass --uri with a reachable tracking server or an MLflow database") from None


def _check_outcomes(children: list, wanted: list[str] | None) -> None:
    """A --outcome that no scenario has is a bad input: name the outcomes there are."""
    known = _outcomes(children, None)
    unknown = [o for o in wanted or [] if o not in known]
    if unknown:
        raise CompareError(f"no outcome {unknown[0]!r} in this run; allowed: "
                           + (", ".join(known) or "none (the run has no scenario metrics)"))


def _children(runs: list, parent_id: str) -> list:
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return sorted(children, key=lambda r: r.info.start_time)  # scenario order


def _find(runs: list, run_id: str):
    for r in runs:
        if r.info.run_id == run_id or (len(run_id) >= 6 and r.info.run_id.startswith(run_id)):
            return r
    raise CompareError(f"no run {run_id!r} in the experiment")


def _outcomes(children: list, wanted: list[str] | None) -> list[str]:
    names = sorted({k[: -len("_mean")] for c in children for k in c.data.metrics
                    if k.endswith("_mean") and not k.endswith("_effect_mean")})
    return [o for o in names if not wanted or o in wanted]


def cmd_list(runs: list, console: Console) -> None:
    table = Table(title="kibs-mc experiments (parent runs, newest first)")
    for col in ("run id", "started", "experiment", "scenarios", "replicates", "run dir"):
        table.add_column(col)
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            continue
        started = datetime.fromtimestamp(r.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")
        table.add_row(r.info.run_id[:12], started, r.data.tags.get("kibs_mc.experiment", "?"),
                      str(len(_children(runs, r.info.run_id))), r.data.params.get("replicates", "?"),
                      r.data.tags.get("kibs_mc.run_dir", ""))
    console.print(table)


def cmd_show(runs: list, run_id: str, wanted: list[str] | None, console: Console) -> None:
    parent = _find(runs, run_id)
    children = _children(runs, parent.info.run_id)
    _check_outcomes(children, wanted)
    outcomes = _outcomes(children, wanted)
    table = Table(title=f"run {parent.info.run_id[:12]} ({parent.data.tags.get('kibs_mc.experiment')}): "
                        "mean (paired effect vs baseline)")
    table.add_column("scenario", no_wrap=True)
    for o in outcomes:
        table.add_column(o, justify="right")
    for c in children:
        m = c.data.metrics
        cells = []
        for o in outcomes:
            text = f"{m[f'{o}_mean']:.4g}" if f"{o}_mean" in m else "-"
            if f"{o}_effect" in m:
                text += f" ({m[f'{o}_effect']:+.3g})"
            cells.append(text)
        table.add_row(c.data.tags.get("kibs_mc.scenario", c.info.run_name), *cells)
    console.print(table)


def cmd_diff(runs: list, a: str, b: str, wanted: list[str] | None, console: Console) -> None:
    ra, rb = _find(runs, a), _find(runs, b)
    ca = {c.data.tags.get("kibs_mc.scenario"): c for c in _children(runs, ra.info.run_id)}
    cb = {c.data.tags.get("kibs_mc.scenario"): c for c in _children(runs, rb.info.run_id)}
    _check_outcomes([*ca.values(), *cb.values()], wanted)
    outcomes = _outcomes([*ca.values(), *cb.values()], wanted)
    table = Table(title=f"{ra.info.run_id[:8]} vs {rb.info.run_id[:8]}: scenario means")
    table.add_column("scenario", no_wrap=True)
    table.add_column("outcome")
    table.add_column(ra.info.run_id[:8], justify="right")
    table.add_column(rb.info.run_id[:8], justify="right")
    table.add_column("difference", justify="right")
    for scenario in [s for s in ca if s in cb]:
        for o in outcomes:
            x = ca[scenario].data.metrics.get(f"{o}_mean")
            y = cb[scenario].data.metrics.get(f"{o}_mean")
            if x is None or y is None:
                continue
            table.add_row(scenario, o, f"{x:.4g}", f"{y:.4g}", f"{y - x:+.3g}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kibs-mc-compare", description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default="sqlite:///mlflow.db", help="MLflow tracking URI")
    parser.add_argument("--experiment", default="kibs-mc", help="MLflow experiment name")
    pick = argparse.ArgumentParser(add_help=False)
    pick.add_argument("--outcome", action="append", help="only these outcomes (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="parent runs, newest first")
    show = sub.add_parser("show", parents=[pick], help="a run's scenarios: means and effects")
    show.add_argument("run_id")
    diff = sub.add_parser("diff", parents=[pick], help="the same scenarios' means in two runs")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 120))
    try:
        if args.uri.startswith("sqlite:///"):
            from pathlib import Path

            if not Path(args.uri[len("sqlite:///"):]).exists():
                raise CompareError(f"no MLflow store at {args.uri} (run kibs-mc first, or pass --uri)")
        runs = _runs(args.uri, args.experiment)
        if args.command == "list":
            cmd_list(runs, console)
        elif args.command == "show":
            cmd_show(runs, args.run_id, args.outcome, console)
        else:
            cmd_diff(runs, args.run_a, args.run_b, args.outcome, console)
    except CompareError as exc:
        print(f"kibs-mc-compare: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
