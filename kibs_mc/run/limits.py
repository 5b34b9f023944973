"""Refuse, before any work starts, an experiment this machine cannot hold.

The estimates are deliberately simple upper-ish bounds: memory of one replicate in a worker
(the network in CSR form, the knowledge matrix and the edge list the network is built from),
times the workers on this machine, plus the driver's merged result frame; disk for what a run
writes: the chunk parts and the merged Parquet files of the replicate rows and of the time
series (25 rows per replicate of the cluster model by default, most of the bytes), plus the
figures and the report. They catch typos such as ``replicates=100000000`` or
``model.agents=10000000 model.categories=10000``, not runs that are merely tight.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kibs_mc.config import Config
from kibs_mc.errors import UserError
from kibs_mc.models import get_model

#: A Ray worker process with NumPy, Numba and the compiled kernels loaded.
WORKER_BASE_BYTES = 400 * 2**20
#: Bytes of one replicate row in memory: scenario, replicate, seed and the outcomes.
ROW_OVERHEAD_BYTES = 3 * 8 + 16
#: Bytes of one time-series row: scenario, replicate, step and three recorded series (the
#: cluster model's rows take 47 bytes in memory: 7 500 rows of cluster=small replicates=300).
TIMESERIES_ROW_BYTES = ROW_OVERHEAD_BYTES + 3 * 8
#: Figures (PNG, 60-250 KB each, up to six), report.md/html, config, plan and summaries.
FIXED_OUTPUT_BYTES = 4 * 2**20
GiB = 2**30


def effective_cpus() -> int:
    """Cores this process may use (respects affinity masks of batch schedulers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def replicate_bytes(config: Config) -> int:
    """Peak memory of one replicate of ``config`` in a worker (the model's own estimate)."""
    return get_model(config.model.name).replicate_bytes(config)


@dataclass(frozen=True)
class Estimate:
    worker_bytes: int  # one worker: process base + one replicate
    workers: int  # workers on this machine (0 when they run on a remote cluster)
    driver_bytes: int  # merged results in the driver (with a copy for sorting)
    disk_bytes: int  # chunk parts + merged files (rows and time series), figures, report

    @property
    def memory_bytes(self) -> int:
        return self.workers * self.worker_bytes + self.driver_bytes


def estimate(configs: Sequence[Config], outcomes: int, replicates: int, workers: int) -> Estimate:
    """``configs``: each scenario's configuration."""
    rows = replicates * len(configs)
    row_bytes = ROW_OVERHEAD_BYTES + 8 * outcomes
    worst = max((replicate_bytes(c) for c in configs), default=0)
    series = replicates * sum(get_model(c.model.name).timeseries_rows(c) for c in configs)
    # Rows and series are on disk twice: as chunk parts, then merged.
    disk = 2 * (rows * row_bytes + series * TIMESERIES_ROW_BYTES) + FIXED_OUTPUT_BYTES
    return Estimate(WORKER_BASE_BYTES + worst, workers, 3 * rows * row_bytes, disk)


def available_memory() -> int:
    """Memory this process may still use: MemAvailable, capped by a cgroup limit (Slurm)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    if available is None:  # pragma: no cover
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max":
                used = int(Path(usage_file).read_text().strip())
                available = min(available, int(limit) - used)
        except (OSError, ValueError):
            pass
    return available


def _size(n: float) -> str:
    return f"{n / GiB:.3g} GiB" if n >= GiB / 10 else f"{n / 2**20:.3g} MiB"


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_resources(
    configs: Sequence[Config], outcomes: int, replicates: int, workers: int, run_dir: Path
) -> None:
    """Raise UserError (exit 2) with the estimate when the experiment cannot fit."""
    est = estimate(configs, outcomes, replicates, workers)
    memory = available_memory()
    if est.memory_bytes > memory:
        where = (
            f"{est.workers} local workers x {est.worker_bytes / GiB:.3g} GiB per replicate in flight + "
            if est.workers
            else ""
        )
        raise UserError(
            f"this experiment needs about {est.memory_bytes / GiB:.3g} GiB of memory ({where}"
            f"{est.driver_bytes / GiB:.3g} GiB for {replicates * len(configs)} result rows in the "
            f"driver), but only {memory / GiB:.3g} GiB is available. Lower replicates or the "
            "model size, use fewer local workers (executor.num_cpus), or run it on a Ray cluster "
            "(executor.address)."
        )
    disk = free_disk(run_dir)
    if est.disk_bytes > disk:
        raise UserError(
            f"this experiment needs about {_size(est.disk_bytes)} of disk for its results in "
            f"{run_dir}, but only {_size(disk)} is free there. Lower replicates or pick a "
            "hydra.run.dir on a larger file system."
        )
