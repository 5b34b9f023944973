"""``kibs-mc-compare``: list and compare past experiments in the MLflow store.

    kibs-mc-compare list                       # parent runs, newest first, and what differs
    kibs-mc-compare show RUN_ID                # a run's scenarios: means and paired effects
    kibs-mc-compare diff RUN_A RUN_B           # the same scenarios in two runs, with CIs

``--uri`` (default ``sqlite:///mlflow.db``) and ``--experiment`` (default ``kibs-mc``) pick
the store; ``--outcome`` (repeatable) picks outcomes. Tables fit the terminal (80 columns in a
pipe or a log) and mark verdicts with words, not colour. Exit status 2 when the store,
experiment, run or outcome does not exist, or when two runs cannot be compared (no scenario
or no outcome in common).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table

from kibs_mc.terminal import half_width_text, number, results_table, signed, size_text


class CompareError(Exception):
    pass


def structure_keys() -> tuple[str, ...]:
    """Prefixes of the settings that make two runs simulate different things (a warning in
    ``diff``): what the replicates compute, but the groups that tag runs (a model's levers,
    ``Model.tags``)."""
    from kibs_mc.config import SIMULATION, keys_of  # imported when needed: Hydra, the models
    from kibs_mc.models import MODELS

    return tuple(f"{key}." for key in keys_of(SIMULATION) if not any(key in m.tags for m in MODELS.values()))


def run_settings() -> tuple[str, ...]:
    """The settings that do not change results (how a run is executed and recorded): never
    listed as what differs between runs."""
    from kibs_mc.config import RUN, keys_of

    return keys_of(RUN)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    from kibs_mc.tracking.mlflow import connect_uri

    return MlflowClient(tracking_uri=connect_uri(uri))


def _runs(uri: str, experiment: str) -> list:
    """Every run of ``experiment``; CompareError (one line) when the store cannot be read."""
    from kibs_mc.tracking.mlflow import bounded_http_retries, quiet_mlflow, store_lock

    bounded_http_retries()  # as kibs-mc: seconds, not minutes, on a dead server
    quiet_mlflow()
    try:
        with store_lock(uri):  # a new SQLite store is created (migrated) by one process at a time
            client = _client(uri)
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise CompareError(f"no experiment {experiment!r} in the store")
            return client.search_runs(
                [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000
            )
    except CompareError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreachable server, not a store, damaged schema
        text = str(exc).strip()
        first = text.splitlines()[0][:300] if text else ""
        raise CompareError(
            f"cannot read the MLflow store at {uri} ({type(exc).__name__}: {first}); "
            "pass --uri with a reachable tracking server or an MLflow database"
        ) from None


def _children(runs: list, parent_id: str) -> list:
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return sorted(children, key=lambda r: r.info.start_time)  # scenario order


def _find(runs: list, run_id: str):
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            continue
        if r.info.run_id == run_id or (len(run_id) >= 6 and r.info.run_id.startswith(run_id)):
            return r
    raise CompareError(
        f"no experiment run {run_id!r} in the store (see kibs-mc-compare list; "
        "an id prefix of at least 6 characters will do)"
    )


def _scenario(child) -> str:
    return child.data.tags.get("kibs_mc.scenario", child.info.run_name)


def _outcomes(children: list) -> list[str]:
    """Outcome names of the runs, in the order the first run logged them."""
    names: dict[str, None] = {}
    for c in children:
        for key in c.data.metrics:
            if key.endswith("_mean") and not key.endswith("_effect_mean"):
                names[key[: -len("_mean")]] = None
    return list(names)


def _pick_outcomes(available: list[str], wanted: Sequence[str] | None) -> list[str]:
    """The outcomes asked for (all when none); an unknown name is an error (exit 2)."""
    if not wanted:
        return available
    unknown = [o for o in wanted if o not in available]
    if unknown:
        raise CompareError(
            f"--outcome {unknown[0]!r} is not an outcome of the run(s); allowed: " + ", ".join(available)
        )
    return [o for o in available if o in wanted]


def differing(params: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Per run, the settings whose values are not the same in every run (a config group's
    option, e.g. ``cluster=small``, stands for all the group's fields when it differs)."""
    keys = sorted({k for p in params for k in p if k.partition(".")[0] not in run_settings()})
    varying = [k for k in keys if len({p.get(k) for p in params}) > 1]
    groups = {k.partition(".")[0] for k in varying if k.endswith(".name") and k.count(".") == 1}
    out = []
    for p in params:
        shown: dict[str, str] = {}
        for k in varying:
            group, _, field = k.partition(".")
            if group in groups:
                if field == "name":
                    shown[group] = p.get(k, "-")
                continue
            shown[k] = p.get(k, "-")
        out.append(shown)
    return out


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def cmd_list(runs: list, console: Console) -> None:
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    diffs: dict[str, dict[str, str]] = {}
    by_kind: dict[str, list] = {}
    for r in parents:
        by_kind.setdefault(r.data.tags.get("kibs_mc.experiment", "?"), []).append(r)
    for group in by_kind.values():
        params = [{k: v for k, v in g.data.params.items() if k != "replicates"} for g in group]
        for r, shown in zip(group, differing(params), strict=True):
            diffs[r.info.run_id] = shown
    table = Table(
        title="kibs-mc experiments, newest first",
        title_justify="left",
        caption="differs: the settings not the same in every listed run of that experiment",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_lines=False,
    )
    table.add_column("run id", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("experiment, what differs, run dir", overflow="fold")
    for i, r in enumerate(parents):
        started = datetime.fromtimestamp(r.info.start_time / 1000).strftime("%m-%d %H:%M")
        lines = [f"{r.data.tags.get('kibs_mc.experiment', '?')}: {run_size(runs, r)}"]
        if diffs[r.info.run_id]:
            lines.append("differs: " + " ".join(f"{k}={v}" for k, v in diffs[r.info.run_id].items()))
        lines.append(_relative(r.data.tags.get("kibs_mc.run_dir", "")))
        table.add_row(r.info.run_id[:12], started, "\n".join(lines), end_section=i < len(parents) - 1)
    console.print(table)


def run_size(runs: list, parent) -> str:
    """How much a run simulated: scenarios x replicates, or a calibration's simulations."""
    if parent.data.params.get("experiment.kind") == "calibrate":
        metrics = parent.data.metrics
        return (
            f"calibration, {int(metrics.get('simulations_total', 0))} simulations in "
            f"{int(metrics.get('generations', 0))} generations"
        )
    return size_text(len(_children(runs, parent.info.run_id)), parent.data.params.get("replicates", "?"))


#: Metric suffixes of a scenario's child run, and the column of the shared table they fill.
_COLUMNS = {
    "mean": "mean",
    "ci_low": "ci_low",
    "ci_high": "ci_high",
    "effect": "effect",
    "effect_ci_low": "effect_ci_low",
    "effect_ci_high": "effect_ci_high",
    "effect_clear": "clear",
    "sd": "sd",
}


def _frame(children: list, outcomes: Sequence[str]) -> pl.DataFrame:
    rows = []
    for c in children:
        m = c.data.metrics
        for o in outcomes:
            row: dict = {"scenario": _scenario(c), "outcome": o, "n": m.get("n")}
            for suffix, column in _COLUMNS.items():
                value = m.get(f"{o}_{suffix}")
                row[column] = bool(value) if column == "clear" and value is not None else value
            rows.append(row)
    schema = {
        "scenario": pl.String,
        "outcome": pl.String,
        "n": pl.Float64,
        **{c: (pl.Boolean if c == "clear" else pl.Float64) for c in _COLUMNS.values()},
    }
    return pl.DataFrame(rows, schema=schema)


def cmd_show(runs: list, run_id: str, wanted: list[str] | None, console: Console) -> None:
    parent = _find(runs, run_id)
    children = _children(runs, parent.info.run_id)
    outcomes = _pick_outcomes(_outcomes(children), wanted)
    frame = _frame(children, outcomes)
    scenarios = [_scenario(c) for c in children]
    # the baseline: the one scenario without paired effects (none in a one-scenario run)
    bare = [s for s in scenarios if frame.filter(pl.col("scenario") == s)["effect"].is_null().all()]
    baseline = bare[0] if len(bare) == 1 and len(scenarios) > 1 else None
    replicates = parent.data.params.get("replicates", "?")
    title = f"run {parent.info.run_id[:8]} ({parent.data.tags.get('kibs_mc.experiment', '?')}): " + size_text(
        len(scenarios), replicates
    )
    console.print(results_table(frame, outcomes, scenarios, baseline, title))
    if "clear" in frame.columns and frame["clear"].is_null().all() and frame["effect"].is_not_null().any():
        console.print(
            "(logged before the analysis's verdicts were tracked: no 'clear' marks; "
            "see report.md in the run directory)"
        )
    console.print(f"run dir: {parent.data.tags.get('kibs_mc.run_dir', '?')}")


def welch(ma: float, sa: float, na: float, mb: float, sb: float, nb: float) -> tuple[float, float] | None:
    """95% Welch CI of mb - ma from two independent samples' means, sds and sizes."""
    from scipy import stats

    if min(na, nb) < 2 or any(v is None or not math.isfinite(v) for v in (sa, sb)):
        return None
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return (mb - ma, mb - ma)
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    t = float(stats.t.ppf(0.975, df))
    return (mb - ma - t * se, mb - ma + t * se)


def _common_scenarios(ra, rb, ca: dict, cb: dict) -> list[str]:
    """The scenarios both runs have (CompareError, naming each run's, when none)."""
    ida, idb = ra.info.run_id[:8], rb.info.run_id[:8]
    common = [s for s in ca if s in cb]
    if not common:
        raise CompareError(
            f"runs {ida} and {idb} have no scenario in common ({ida}: "
            f"{', '.join(ca) or 'none'}; {idb}: {', '.join(cb) or 'none'}); "
            "allowed: two runs that share at least one scenario name"
        )
    return common


def _common_outcomes(ra, rb, ca: dict, cb: dict, wanted: list[str] | None) -> list[str]:
    """The outcomes both runs logged, narrowed to ``wanted`` (CompareError when none)."""
    oa, ob = _outcomes(list(ca.values())), _outcomes(list(cb.values()))
    shared = [o for o in oa if o in ob]
    if not shared:
        raise CompareError(
            f"runs {ra.info.run_id[:8]} and {rb.info.run_id[:8]} have no outcome in common (different "
            f"models: {ra.data.params.get('model.name')} and {rb.data.params.get('model.name')}); "
            "allowed: two runs of the same model"
        )
    return _pick_outcomes(shared, wanted)


def _say_what_differs(ra, rb, ca: dict, cb: dict, common: list[str], console: Console) -> None:
    """The settings that differ between the runs, and a warning when the same scenario
    simulates another model or cluster in each."""
    ida, idb = ra.info.run_id[:8], rb.info.run_id[:8]
    what = differing([ra.data.params, rb.data.params])
    if what[0]:
        console.print(
            "what differs: "
            + "; ".join(f"{k}: {what[0][k]} ({ida}) vs {what[1][k]} ({idb})" for k in what[0])
        )
    else:
        console.print("what differs: no setting (same configuration; different seeds or code?)")
    structure: dict[str, tuple[str, str]] = {}
    for s in common:
        pa, pb = ca[s].data.params, cb[s].data.params
        inputs = differing(
            [
                {k: v for k, v in pa.items() if k.startswith(structure_keys())},
                {k: v for k, v in pb.items() if k.startswith(structure_keys())},
            ]
        )
        structure.update({k: (inputs[0][k], inputs[1][k]) for k in inputs[0]})
    if structure:
        print(
            f"kibs-mc-compare: warning: runs {ida} and {idb} simulate different models or clusters ("
            + "; ".join(f"{k}: {x} vs {y}" for k, (x, y) in structure.items())
            + "): their differences mix that change with any other",
            file=sys.stderr,
        )


def _diff_table(
    ida: str, idb: str, fa: pl.DataFrame, fb: pl.DataFrame, outcomes: list[str], common: list[str]
) -> Table:
    """Per outcome and scenario: both runs' means and their difference with its Welch CI."""
    table = Table(
        title=f"{idb} minus {ida}: scenario means, difference with its 95% CI (Welch, "
        "unpaired; 'differs': the CI excludes 0)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("outcome / scenario", overflow="fold", min_width=12)
    for name in (ida, idb, "difference"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("± 95% CI", no_wrap=True)
    table.add_column("", no_wrap=True)
    ia = {(r["outcome"], r["scenario"]): r for r in fa.iter_rows(named=True)}
    ib = {(r["outcome"], r["scenario"]): r for r in fb.iter_rows(named=True)}
    for i, o in enumerate(outcomes):
        table.add_row(f"[bold]{o}[/]")
        for j, s in enumerate(common):
            x, y = ia[(o, s)], ib[(o, s)]
            if x["mean"] is None or y["mean"] is None:
                continue
            ci = None
            if x["sd"] is not None and y["sd"] is not None:
                ci = welch(x["mean"], x["sd"], x["n"] or 0, y["mean"], y["sd"], y["n"] or 0)
            table.add_row(
                f"  {s}",
                number(x["mean"]),
                number(y["mean"]),
                signed(y["mean"] - x["mean"]),
                half_width_text(*ci) if ci else "",
                "differs" if ci is not None and (ci[0] > 0 or ci[1] < 0) else "",
                end_section=j == len(common) - 1 and i < len(outcomes) - 1,
            )
    return table


def cmd_diff(runs: list, a: str, b: str, wanted: list[str] | None, console: Console) -> None:
    """The same scenarios in two runs: what differs between them, then each outcome's means
    side by side with the difference and its Welch CI."""
    ra, rb = _find(runs, a), _find(runs, b)
    ca = {_scenario(c): c for c in _children(runs, ra.info.run_id)}
    cb = {_scenario(c): c for c in _children(runs, rb.info.run_id)}
    common = _common_scenarios(ra, rb, ca, cb)
    outcomes = _common_outcomes(ra, rb, ca, cb, wanted)
    _say_what_differs(ra, rb, ca, cb, common, console)
    fa, fb = _frame([ca[s] for s in common], outcomes), _frame([cb[s] for s in common], outcomes)
    console.print(_diff_table(ra.info.run_id[:8], rb.info.run_id[:8], fa, fb, outcomes, common))
    only = [s for s in ca if s not in cb] + [s for s in cb if s not in ca]
    if only:
        console.print(f"not in both runs: {', '.join(only)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kibs-mc-compare", description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default="sqlite:///mlflow.db", help="MLflow tracking URI")
    parser.add_argument("--experiment", default="kibs-mc", help="MLflow experiment name")
    pick = argparse.ArgumentParser(add_help=False)
    pick.add_argument("--outcome", action="append", help="only these outcomes (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="parent runs, newest first, and what differs between them")
    show = sub.add_parser("show", parents=[pick], help="a run's scenarios: means and effects")
    show.add_argument("run_id")
    diff = sub.add_parser("diff", parents=[pick], help="the same scenarios in two runs, with CIs")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    args = parser.parse_args(argv)
    from kibs_mc.tracking.mlflow import hide_credentials

    args.uri = hide_credentials(args.uri)  # no password in messages
    console = Console()
    try:
        if args.uri.startswith("sqlite:///"):
            if not Path(args.uri[len("sqlite:///") :]).exists():
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
