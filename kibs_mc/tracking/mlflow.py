"""MLflow tracking: one parent run per invocation, one child run per scenario.

Only the driver logs, once, after aggregation (an SQLite store does not like many writers).
Results live in the run directory first; MLflow gets summaries, the resolved config and the
files. If the store cannot be reached, nothing is lost: the caller reports how to log later.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from kibs_mc.config import Config, TrackingConfig, load_config
from kibs_mc.errors import UserError, first_line
from kibs_mc.models import get_model
from kibs_mc.run.plan import Scenario, build_scenarios, listed_scenarios, simulation_inputs
from kibs_mc.run.store import read_plan
from kibs_mc.terminal import verdict_column, with_verdict

#: Files of a run directory logged on the parent run (patterns), whether logged at the end of the
#: run or later with ``python -m kibs_mc.tracking RUN_DIR``.
ARTIFACTS = (
    "posterior.parquet",
    "ppc.parquet",
    "parameters.parquet",
    "generations.parquet",
    "calibration.json",
    "replicates.parquet",
    "summary.parquet",
    "timeseries.parquet",
    "effects.parquet",
    "sensitivity.parquet",
    "errors.parquet",
    "worlds.parquet",
    "per_world.parquet",
    "robustness.parquet",
    "discovery.parquet",
    "discovery_trajectory.parquet",
    "voi.parquet",
    "mix.parquet",
    "confirmation.parquet",
    "config.yaml",
    "report.md",
    "report.html",
    "*.png",
)
#: Metrics logged with a step on the parent run (name -> values by step; e.g. per generation).
STEPS_FILE = "mlflow_steps.json"


#: Database store URIs whose password was replaced by ``***``: redacted form -> full form. Kept
#: in this process's memory only, so the password is never written or logged.
_SECRET_URIS: dict[str, str] = {}


def hide_credentials(uri: str) -> str:
    """``uri`` with no password in it, to be used, written and logged in its place.

    For an HTTP(S) server the user and password move to ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD`` in this process's environment (MLflow sends them as basic
    auth); for a database store (``postgresql://user:pw@host/db``) the password becomes
    ``***`` and :func:`connect_uri` gives the full URI back for the connection.
    """
    parts = urllib.parse.urlsplit(uri)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return uri
    user, colon, password = userinfo.partition(":")
    if parts.scheme in ("http", "https"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = urllib.parse.unquote(user)
        if colon:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = urllib.parse.unquote(password)
        return urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    if not colon:
        return uri  # a user name alone is no secret
    clean = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))
    _SECRET_URIS[clean] = uri
    return clean


def hide_uri_override(override: str) -> str:
    """A ``tracking.uri=...`` command-line override with :func:`hide_credentials` applied."""
    key, eq, value = override.partition("=")
    if eq and key.lstrip("+~") == "tracking.uri":
        return f"{key}={hide_credentials(value)}"
    return override


def connect_uri(uri: str) -> str:
    """The URI to connect with: the full form of a URI :func:`hide_credentials` redacted."""
    return _SECRET_URIS.get(uri, uri)


#: Child runs an experiment kind chose instead of one per scenario (``KindOutput.children``),
#: kept in the run directory so that logging it later gives the same runs.
CHILDREN_FILE = "mlflow_children.json"


def quiet_mlflow() -> None:
    """No MLflow INFO lines (creating a store's tables, a new experiment) in the terminal,
    between the progress bar and the answer: warnings and errors only."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def bounded_http_retries() -> None:
    """MLflow's default HTTP retries back off for minutes on a dead server; a few seconds
    are enough here (results are on disk and can be logged later)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")


#: How long a run waits for another process's use of the same SQLite store.
STORE_LOCK_SECONDS = 300.0


@contextmanager
def store_lock(uri: str, timeout: float = STORE_LOCK_SECONDS) -> Iterator[None]:
    """Serialise the use of an SQLite store across processes (``<db>.lock`` beside it).

    MLflow creates and migrates a new SQLite store's schema on first use; runs doing that at
    once leave it half-migrated for good. SQLite has one writer at a time anyway. Other
    stores (servers, databases) serialise themselves: no lock.
    """
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        yield
        return
    path = Path(uri[len("sqlite:///") :].split("?")[0])  # sqlite:////abs/path -> /abs/path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the MLflow store {path} stayed locked by another process for {timeout:.0f} s"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a dataclass or dict tree (lists of scenarios are summarised by name)."""
    out: dict[str, Any] = {}
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(obj, list) and obj and (dataclasses.is_dataclass(obj[0]) or isinstance(obj[0], dict)):
        names = (
            x.get("name", x.get("key", "?"))
            if isinstance(x, dict)
            else getattr(x, "name", getattr(x, "key", "?"))
            for x in obj
        )
        out[prefix.rstrip(".")] = ",".join(str(n) for n in names)
        return out
    out[prefix.rstrip(".")] = obj
    return out


def scenario_metrics(summary: pl.DataFrame, scenario: str, first: str | None = None) -> dict[str, float]:
    """``<outcome>_<stat>`` for the summary statistics, and the paired effect when present;
    the outcome ``first`` (the one the decision is made on) before the others."""
    metrics: dict[str, float] = {}
    stats = ("effect", "effect_ci_low", "effect_ci_high", "mean", "ci_low", "ci_high", "sd", "effect_size")
    verdict = verdict_column(summary)  # the analysis's verdict on the effect: 1 clear, 0 not
    rows = summary.filter(pl.col("scenario") == scenario)
    if first is not None:
        rows = rows.sort(pl.col("outcome") != first, maintain_order=True)
    for row in rows.iter_rows(named=True):
        for stat in (s for s in stats if s in row):
            value = row[stat]
            if value is not None and value == value:
                metrics[f"{row['outcome']}_{stat}"] = float(value)
        if verdict is not None and row[verdict] is not None:
            metrics[f"{row['outcome']}_effect_clear"] = float(row[verdict])
        metrics["n"] = float(row["n"])
    return metrics


def scenario_tags(scenario: Scenario) -> dict[str, str]:
    """Tags that make child runs comparable in the UI: the scenario, its overrides and the
    values of the groups the model tags runs with (``Model.tags``: the cluster model's four
    levers)."""
    tags = {"kibs_mc.scenario": scenario.name}
    for text in scenario.overrides:
        key, _, value = text.partition("=")
        tags[f"override.{key}"] = value
    for group in get_model(scenario.config.model.name).tags:
        for key, value in flatten(getattr(scenario.config, group)).items():
            tags[f"{group}.{key}"] = str(value)
    return tags


#: Keys (their first part) of overrides that do not change what a run simulates, or that the
#: name says already: left out of its MLflow run name.
NOT_NAMED = {"hydra", "tracking", "executor", "experiment", "resume", "keep_parts", "figures", "seed"}

#: The experiment view MLflow opens on: its runs table ("Model training"), not the GenAI views.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def run_name(config: Config, run_dir: Path) -> str:
    """The parent run's name: the experiment and the invocation's overrides of what it
    simulates (``compare_governance cluster=small replicates=50``); a calibration's posterior
    by its directory's name."""
    recorded = read_plan(run_dir) or {}
    words = [config.experiment.name]
    for text in recorded.get("overrides", []):
        key, _, value = text.partition("=")
        if key.lstrip("+~").split(".")[0] in NOT_NAMED:
            continue
        if key in ("calibration.use", "uncertainty.posterior"):
            text = f"{key}={Path(value).name}"
        words.append(text)
    return " ".join(words)


def description(run_dir: Path) -> str:
    """The parent run's description (MLflow's note): the executive summary of its report and
    where its files are."""
    from kibs_mc.analysis.report import read_summary

    lines = read_summary(run_dir / "report.md")
    return "\n".join([*lines, "", f"Results: `{run_dir.resolve()}` (report.html: every table and figure)."])


def metric_key(text: str) -> str:
    """``text`` as an MLflow metric name (alphanumerics, ``_ - . : /`` and spaces): a
    scenario named after its overrides keeps them readable (``p=0.3`` -> ``p:0.3``)."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text.replace("=", ":"))


def decision_metrics(run_dir: Path) -> dict[str, float]:
    """The decision in numbers, logged first on the parent run: for the outcome the report
    decides on (the first in ``ranks.parquet``), each scenario's rank and paired effect
    (``<outcome>/rank/<scenario>``, ``<outcome>/effect/<scenario>``)."""
    ranks_file, effects_file = run_dir / "ranks.parquet", run_dir / "effects.parquet"
    if not ranks_file.is_file():
        return voi_metrics(run_dir)
    ranks = pl.read_parquet(ranks_file)
    if ranks.height == 0:
        return voi_metrics(run_dir)
    objective = str(ranks["outcome"][0])
    metrics = {
        metric_key(f"{objective}/rank/{r['scenario']}"): float(r["rank"])
        for r in ranks.filter(pl.col("outcome") == objective).sort("rank").iter_rows(named=True)
    }
    if effects_file.is_file():
        effects = pl.read_parquet(effects_file).filter(pl.col("outcome") == objective)
        for r in effects.iter_rows(named=True):
            if r["effect"] is not None and r["effect"] == r["effect"]:
                metrics[metric_key(f"{objective}/effect/{r['scenario']}")] = float(r["effect"])
    return metrics


def voi_metrics(run_dir: Path) -> dict[str, float]:
    """What to measure next, from ``voi.parquet`` (a decision across uncertain worlds): each
    parameter's EVPPI with its interval (``evppi/<parameter>``, ``..._ci_low``, ``..._ci_high``)
    and the expected regret of the chosen policy (``evpi``)."""
    path = run_dir / "voi.parquet"
    if not path.is_file():
        return {}
    voi = pl.read_parquet(path)
    metrics = {"evpi": float(voi["evpi"][0])} if voi.height else {}
    for r in voi.iter_rows(named=True):
        for suffix, column in (("", "evppi"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
            metrics[metric_key(f"evppi/{r['parameter']}{suffix}")] = float(r[column])
    return metrics


def log_experiment(
    tracking: TrackingConfig,
    config: Config,
    scenarios: Sequence[Scenario],
    summary: pl.DataFrame,
    run_dir: Path,
    run_metrics: dict[str, float] | None = None,
    period: tuple[float, float] | None = None,
) -> str:
    """Log the experiment; returns the parent run id.

    ``run_metrics`` (e.g. wall time, replicates per second) go on the parent run. ``period``
    (start and end, seconds since the epoch) is when the experiment ran: the parent and child
    runs get it as their start and end time, so MLflow shows the experiment's duration, not
    the second it took to log it afterwards (default: the logging itself). Children: one
    per scenario, or those listed in the run directory's ``mlflow_children.json`` (each
    ``{"name", "params", "metrics"}``; e.g. one per policy of a robustness experiment).
    """
    bounded_http_retries()
    check_reachable(tracking.uri)
    if period is None and run_metrics and run_metrics.get("wall_seconds"):
        end = time.time()  # logged as the run ends: it ran for its wall time until now
        period = (end - run_metrics["wall_seconds"], end)
    with store_lock(tracking.uri):
        return _log_experiment(tracking, config, scenarios, summary, run_dir, run_metrics, period)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """An HTTP(S) tracking server that refuses connections fails now, in one line, instead of
    after MLflow's retries (seconds of back-off, each announced by a urllib3 warning); the
    retries that remain for other failures are not announced either."""
    import logging
    import socket
    import urllib.parse

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"cannot connect to {parts.hostname}:{port} ({exc.strerror or type(exc).__name__})"
        ) from None


@dataclass(frozen=True)
class _Parent:
    """Where child runs go: the client, the experiment, the parent run, their shared tags and
    the experiment's start (milliseconds since the epoch; None: now)."""

    client: Any
    experiment_id: str
    run_id: str
    tags: dict[str, str]
    start_ms: int | None

    def child(self, name: str, tags: dict[str, str], params: dict, metrics: dict[str, float]) -> str:
        import mlflow

        run = self.client.create_run(
            self.experiment_id,
            start_time=self.start_ms,
            run_name=name,
            tags={**self.tags, **tags, "mlflow.parentRunId": self.run_id},
        )
        with mlflow.start_run(run_id=run.info.run_id, nested=True):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
        return str(run.info.run_id)


def _log_children(
    parent: _Parent, scenarios: Sequence[Scenario], summary: pl.DataFrame, run_dir: Path
) -> list[str]:
    """One child per scenario, or those the kind listed (``mlflow_children.json``)."""
    children_file = run_dir / CHILDREN_FILE
    if children_file.exists():
        return [
            parent.child(
                kept["name"],
                {"kibs_mc.child": kept["name"]},
                kept.get("params", {}),
                {k: float(v) for k, v in kept.get("metrics", {}).items() if v is not None and v == v},
            )
            for kept in json.loads(children_file.read_text())
        ]
    decided = decision_metrics(run_dir)
    objective = next(iter(decided)).split("/")[0] if decided else None
    ids = []
    for sc in scenarios:
        params = flatten(simulation_inputs(sc.config))
        params["scenario"] = sc.name
        params["overrides"] = " ".join(sc.overrides) or "(none)"
        ids.append(
            parent.child(sc.name, scenario_tags(sc), params, scenario_metrics(summary, sc.name, objective))
        )
    return ids


def _log_parent(config: Config, run_dir: Path, run_metrics: dict[str, float] | None) -> None:
    """The parent run's params, metrics (the decision first) and per-step metrics."""
    import mlflow

    mlflow.log_params(flatten(config))
    mlflow.log_metrics(decision_metrics(run_dir))  # the decision first, then the bookkeeping
    if run_metrics:
        mlflow.log_metrics(run_metrics)
    steps_file = run_dir / STEPS_FILE
    for name, values in (json.loads(steps_file.read_text()) if steps_file.exists() else {}).items():
        for step, value in enumerate(values):  # e.g. a calibration's epsilon per generation
            mlflow.log_metric(name, float(value), step=step)


def _log_experiment(
    tracking: TrackingConfig,
    config: Config,
    scenarios: Sequence[Scenario],
    summary: pl.DataFrame,
    run_dir: Path,
    run_metrics: dict[str, float] | None,
    period: tuple[float, float] | None,
) -> str:
    import mlflow

    quiet_mlflow()
    mlflow.set_tracking_uri(connect_uri(tracking.uri))
    experiment_id = mlflow.set_experiment(tracking.experiment_name).experiment_id
    run_dir = Path(run_dir)
    tags = {"kibs_mc.experiment": config.experiment.name, "kibs_mc.run_dir": str(run_dir.resolve())}
    client = mlflow.MlflowClient()
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
    start_ms = None if period is None else int(period[0] * 1000)
    # Runs are created with the experiment's start time (mlflow.start_run has no such
    # argument; it can resume a run created here), and ended with its end time below.
    parent_id = client.create_run(
        experiment_id,
        start_time=start_ms,
        tags={**tags, "mlflow.note.content": description(run_dir)},
        run_name=run_name(config, run_dir),
    ).info.run_id
    with mlflow.start_run(run_id=parent_id):
        _log_parent(config, run_dir, run_metrics)
        children = _log_children(
            _Parent(client, experiment_id, parent_id, tags, start_ms), scenarios, summary, run_dir
        )
        for pattern in ARTIFACTS:
            for path in sorted(run_dir.glob(pattern)):
                mlflow.log_artifact(str(path))
    if period is not None:
        for run_id in [parent_id, *children]:
            client.set_terminated(run_id, "FINISHED", end_time=int(period[1] * 1000))
    return str(parent_id)


def log_run_dir(run_dir: Path, overrides: Sequence[str] = ()) -> str:
    """Log a finished run directory afterwards (e.g. when the store was unreachable during the run).

    The configuration is composed again from the invocation's overrides recorded in
    ``plan.json``, then ``overrides`` (e.g. ``tracking.uri=...``) on top; the summary and files
    come from the run directory. Returns the parent run id.
    """
    run_dir = Path(run_dir)
    recorded = read_plan(run_dir)
    if recorded is None or not (run_dir / "summary.parquet").exists():
        raise UserError(
            f"{run_dir} is not a finished kibs-mc run directory (no plan.json or "
            "summary.parquet); finish it first with the same overrides plus resume=true."
        )
    keys = {o.partition("=")[0] for o in overrides}
    args = [
        o
        for o in recorded.get("overrides", [])
        if not o.startswith("hydra.") and o.partition("=")[0] not in keys
    ]
    args += list(overrides)
    config = load_config(args)
    specs = recorded.get("scenarios") or listed_scenarios(config)  # older runs did not record them
    scenarios = build_scenarios(config, args, [(name, list(own)) for name, own in specs])
    summary = pl.read_parquet(run_dir / "summary.parquet")
    if (run_dir / "effects.parquet").exists():
        summary = with_verdict(summary, pl.read_parquet(run_dir / "effects.parquet"))
    return log_experiment(config.tracking, config, scenarios, summary, run_dir, period=run_period(run_dir))


def run_period(run_dir: Path) -> tuple[float, float] | None:
    """When the run in ``run_dir`` ran: its config.yaml is written as the work starts, its
    report.md (else summary.parquet) last."""
    start, end = run_dir / "config.yaml", run_dir / "report.md"
    end = end if end.exists() else run_dir / "summary.parquet"
    if not start.exists() or not end.exists():
        return None
    return start.stat().st_mtime, max(end.stat().st_mtime, start.stat().st_mtime)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m kibs_mc.tracking RUN_DIR [tracking.uri=URI ...]``: log a finished run later."""
    import sys

    args = [hide_uri_override(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not args or args[0].startswith("-"):
        print(
            "usage: python -m kibs_mc.tracking RUN_DIR [tracking.uri=URI] [tracking.experiment_name=NAME]",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        run_id = log_run_dir(Path(args[0]), args[1:])
    except UserError as error:
        print(f"kibs-mc: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the store failed again: say so in one line
        print(
            f"kibs-mc: MLflow logging failed ({type(exc).__name__}: {first_line(exc)}); "
            f"the results stay in {args[0]}.",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"logged {args[0]} as MLflow run {run_id}")
