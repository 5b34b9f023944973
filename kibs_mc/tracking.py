"""MLflow tracking: one parent run per invocation, one child run per scenario.

Only the driver logs, once, after aggregation (an SQLite store does not like many writers).
Results live in the run directory first; MLflow gets summaries, the resolved config and the
files. If the store cannot be reached, nothing is lost: the caller reports how to log later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from kibs_mc.config import Config, TrackingConfig
from kibs_mc.plan import Scenario, simulation_inputs

ARTIFACTS = ("replicates.parquet", "summary.parquet", "timeseries.parquet", "config.yaml")


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
        names = (x.get("name", "?") if isinstance(x, dict) else getattr(x, "name", "?") for x in obj)
        out[prefix.rstrip(".")] = ",".join(str(n) for n in names)
        return out
    out[prefix.rstrip(".")] = obj
    return out


def scenario_metrics(summary: pl.DataFrame, scenario: str) -> dict[str, float]:
    """``<outcome>_<stat>`` for the summary statistics, and the paired effect when present."""
    metrics: dict[str, float] = {}
    stats = ("mean", "sd", "ci_low", "ci_high", "effect", "effect_ci_low", "effect_ci_high", "effect_size")
    for row in summary.filter(pl.col("scenario") == scenario).iter_rows(named=True):
        for stat in (s for s in stats if s in row):
            value = row[stat]
            if value is not None and value == value:
                metrics[f"{row['outcome']}_{stat}"] = float(value)
        metrics["n"] = float(row["n"])
    return metrics


def scenario_tags(scenario: Scenario) -> dict[str, str]:
    """Tags that make child runs comparable in the UI: the scenario, its overrides and, for
    models with governance, the four lever values."""
    tags = {"kibs_mc.scenario": scenario.name}
    for text in scenario.overrides:
        key, _, value = text.partition("=")
        tags[f"override.{key}"] = value
    governance = getattr(scenario.config, "governance", None)
    if governance is not None:
        for key, value in flatten(governance).items():
            tags[f"governance.{key}"] = str(value)
    return tags


def log_experiment(
    tracking: TrackingConfig,
    config: Config,
    scenarios: Sequence[Scenario],
    summary: pl.DataFrame,
    run_dir: Path,
    extra_artifacts: Sequence[Path] = (),
    run_metrics: dict[str, float] | None = None,
) -> str:
    """Log the experiment; returns the parent run id.

    ``run_metrics`` (e.g. wall time, replicates per second) go on the parent run.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking.uri)
    mlflow.set_experiment(tracking.experiment_name)
    run_dir = Path(run_dir)
    tags = {"kibs_mc.experiment": config.experiment.name, "kibs_mc.run_dir": str(run_dir.resolve())}
    with mlflow.start_run(run_name=f"{config.experiment.name}", tags=tags) as parent:
        mlflow.log_params(flatten(config))
        if run_metrics:
            mlflow.log_metrics(run_metrics)
        for sc in scenarios:
            with mlflow.start_run(run_name=sc.name, nested=True, tags={**tags, **scenario_tags(sc)}):
                params = flatten(simulation_inputs(sc.config))
                params["scenario"] = sc.name
                params["overrides"] = " ".join(sc.overrides) or "(none)"
                mlflow.log_params(params)
                mlflow.log_metrics(scenario_metrics(summary, sc.name))
        for name in ARTIFACTS:
            if (run_dir / name).exists():
                mlflow.log_artifact(str(run_dir / name))
        for path in extra_artifacts:
            mlflow.log_artifact(str(path))
        return str(parent.info.run_id)
