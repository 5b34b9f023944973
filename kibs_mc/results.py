"""Results on disk: one Parquet part per completed chunk, merged at the end.

Each chunk's rows are written the moment the chunk completes (to a temporary name, then
renamed), so a run that fails or is killed keeps every completed chunk, and ``resume=true``
reuses them. ``finalize`` merges the parts into ``replicates.parquet`` and
``timeseries.parquet`` in plan order (scenario, then replicate), which makes the files
independent of the executor, the number of workers and the order chunks finished in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from kibs_mc.errors import UserError
from kibs_mc.simulate import ChunkResult

PARTS = "chunks"


def _frame(columns: dict[str, np.ndarray]) -> pl.DataFrame:
    data = {}
    for name, values in columns.items():
        data[name] = pl.Series(name, values.tolist() if values.dtype == object else values)
    return pl.DataFrame(data)


def _write_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


class ResultStore:
    """The run directory's results: chunk parts, merged files, plan fingerprint."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.parts = self.run_dir / PARTS

    # -- progress on disk
    def open(self, fingerprint: str, chunk_size: int, resume: bool) -> set[str]:
        """Prepare the run directory; return the keys of chunks already completed.

        Raises UserError when the directory holds another plan's chunks, or when it holds
        chunks and ``resume`` is off (nothing computed is ever deleted).
        """
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the run directory {self.run_dir}: {exc.strerror}") from None
        plan_file = self.run_dir / "plan.json"
        done = self.completed()
        if plan_file.exists():
            recorded = json.loads(plan_file.read_text())
            if done and not resume:
                raise UserError(
                    f"run directory {self.run_dir} already holds {len(done)} completed chunks; "
                    "rerun with resume=true to continue it, or pick another hydra.run.dir."
                )
            if resume and recorded.get("fingerprint") != fingerprint:
                raise UserError(
                    f"resume=true, but {self.run_dir} holds a different experiment (its "
                    "configuration, seed or replicate count differ); run it with the same "
                    "overrides, or pick another hydra.run.dir."
                )
        plan_file.write_text(json.dumps({"fingerprint": fingerprint, "chunk_size": chunk_size}))
        return done

    def recorded_chunk_size(self) -> int | None:
        plan_file = self.run_dir / "plan.json"
        if plan_file.exists():
            return int(json.loads(plan_file.read_text())["chunk_size"])
        return None

    def completed(self) -> set[str]:
        return {p.name[: -len(".parquet")] for p in self.parts.glob("*.parquet")
                if not p.name.endswith(".timeseries.parquet")}

    def write(self, result: ChunkResult) -> None:
        """Persist one completed chunk (time series first: the rows file marks it done)."""
        if result.timeseries is not None:
            _write_atomic(_frame(result.timeseries), self.parts / f"{result.key}.timeseries.parquet")
        _write_atomic(_frame(result.rows), self.parts / f"{result.key}.parquet")

    # -- merged outputs
    def finalize(self, scenario_order: Sequence[str]) -> pl.DataFrame:
        """Merge parts into replicates.parquet (and timeseries.parquet); return the rows."""
        order = {name: i for i, name in enumerate(scenario_order)}
        rank = pl.col("scenario").replace_strict(order, return_dtype=pl.Int64)
        row_parts = sorted(p for p in self.parts.glob("*.parquet")
                           if not p.name.endswith(".timeseries.parquet"))
        rows = pl.concat([pl.read_parquet(p) for p in row_parts]) if row_parts else pl.DataFrame()
        if rows.height:
            rows = rows.sort(rank, "replicate")
        _write_atomic(rows, self.run_dir / "replicates.parquet")
        ts_parts = sorted(self.parts.glob("*.timeseries.parquet"))
        if ts_parts:
            ts = pl.concat([pl.read_parquet(p) for p in ts_parts])
            ts = ts.select("scenario", *[c for c in ts.columns if c != "scenario"])
            ts = ts.sort(rank, "replicate", "step")
            _write_atomic(ts, self.run_dir / "timeseries.parquet")
        else:
            _write_atomic(pl.DataFrame({"scenario": [], "replicate": [], "step": []},
                                       schema={"scenario": pl.String, "replicate": pl.Int64,
                                               "step": pl.Int64}),
                          self.run_dir / "timeseries.parquet")
        return rows


def summarize(rows: pl.DataFrame, outcomes: Sequence[str], confidence: float = 0.95) -> pl.DataFrame:
    """Per scenario and outcome: n, mean, sd, standard error and the t-based CI of the mean."""
    long = rows.select(
        "scenario", *[pl.col(c).cast(pl.Float64) for c in outcomes]
    ).unpivot(index="scenario", variable_name="outcome", value_name="value")
    table = long.group_by("scenario", "outcome", maintain_order=True).agg(
        n=pl.col("value").count(),
        mean=pl.col("value").mean(),
        sd=pl.col("value").std(),
    )
    n = table["n"].to_numpy()
    t = np.where(n > 1, stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)), np.nan)
    se = table["sd"].to_numpy() / np.sqrt(np.maximum(n, 1))
    half = t * se
    mean = table["mean"].to_numpy()
    return table.with_columns(
        se=pl.Series(se), ci_low=pl.Series(mean - half), ci_high=pl.Series(mean + half)
    )


def write_summary(summary: pl.DataFrame, run_dir: Path) -> Path:
    path = Path(run_dir) / "summary.parquet"
    _write_atomic(summary, path)
    return path
