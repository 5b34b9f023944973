"""``executor=auto``: serial when a local Ray cluster's start-up would cost more than its cores
save on the measured work, Ray otherwise; the choice and its reason in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kibs_mc.config import AutoConfig
from kibs_mc.run.executor import make_executor
from kibs_mc.run.executor.auto import LOCAL_RAY_COST_S, AutoExecutor, choose
from tests.conftest import REPO, run_cli


def test_little_work_is_serial_and_much_work_is_ray():
    # 2 cores: Ray saves about half the work, so it pays off above ~2 x its start-up cost.
    small = choose(0.1, 40, cores=2)  # 4 s of work: saves ~1.9 s
    assert small.kind == "serial" and small.final
    assert "~4 s of work in 40 chunks left" in small.reason
    large = choose(1.0, 40, cores=2)  # 40 s: saves ~19 s
    assert large.kind == "ray" and large.final
    assert choose(1.0, 40, cores=8).reason.count("~") == 3
    # The break-even point moves with the cores: 8 s of work pays off on 8 cores, not on 2.
    assert choose(0.2, 40, cores=8).kind == "ray" and choose(0.2, 40, cores=2).kind == "serial"
    assert choose(2 * LOCAL_RAY_COST_S, 1, cores=2).kind == "serial"  # saves ~4.7 s < 5 s


def test_time_lost_on_earlier_serial_calls_counts_towards_starting_ray():
    # 4 s of work saves ~1.9 s on 2 cores: serial alone, Ray once earlier calls lost 3.2 s more.
    assert choose(0.1, 40, cores=2).kind == "serial"
    later = choose(0.1, 40, cores=2, lost=3.2)
    assert later.kind == "ray" and later.final
    assert "Ray would have saved ~3.2 s on the earlier calls, run here" in later.reason


def test_a_cold_first_measurement_decides_serial_but_not_ray():
    # The first chunk includes loading (or compiling) the kernels: an over-estimate.
    assert choose(0.01, 10, cores=2, cold=True).final
    assert not choose(60.0, 10, cores=2, cold=True).final


def test_a_small_run_stays_in_this_process_and_says_why():
    lines: list[str] = []
    with make_executor(AutoConfig(num_cpus=2), lines.append) as ex:
        pairs = list(ex.map_unordered(lambda i: i * i, list(range(30))))
    assert sorted(i for i, _ in pairs) == list(range(30))
    assert all(r == i * i for i, r in pairs)
    assert len(lines) == 1 and lines[0].startswith("executor=auto: serial: ~"), lines
    assert "but costs ~5 s to start" in lines[0]
    assert isinstance(ex, AutoExecutor) and ex.choice is not None and ex.choice.kind == "serial"


def test_one_core_is_serial_without_a_measurement():
    lines: list[str] = []
    ex = make_executor(AutoConfig(num_cpus=1), lines.append)
    assert lines == ["executor=auto: serial: one core: a local Ray cluster would not run more at once"]
    assert list(ex.map_unordered(str, [1, 2])) == [(1, "1"), (2, "2")]


@pytest.mark.slow
def test_enough_work_goes_to_a_local_ray_cluster_after_two_chunks_measured_here():
    # A fresh interpreter: Ray starts once per process. The start-up cost is set low so that
    # 24 items of 0.15 s (3.3 s left after the probe) are worth a cluster.
    code = textwrap.dedent("""
        import json, os, time
        from kibs_mc.config import AutoConfig
        from kibs_mc.run.executor.auto import AutoExecutor

        def work(i):
            time.sleep(0.15)
            return os.getpid()

        lines = []
        with AutoExecutor(AutoConfig(num_cpus=2), lines.append, ray_cost=0.5) as ex:
            pairs = list(ex.map_unordered(work, list(range(24))))
            import ray
            started = ray.is_initialized()
        print(json.dumps({"items": [i for i, _ in pairs], "pids": [p for _, p in pairs],
                          "driver": os.getpid(), "lines": lines, "started": started}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(got["items"]) == list(range(24))
    assert got["items"][:2] == [0, 1] and got["pids"][:2] == [got["driver"]] * 2  # the probe, here
    # A local cluster started (on a loaded machine the driver's helper thread may compute the
    # remaining items while it does: kibs_mc.run.executor.ray).
    assert got["started"]
    assert len(got["lines"]) == 1 and got["lines"][0].startswith("executor=auto: ray, 2 CPUs: ~")


@pytest.mark.slow
def test_many_short_calls_move_to_ray_once_the_time_lost_serially_pays_for_it():
    # Calls of 6 items of 0.05 s: each alone is serial (Ray would save ~0.12 s of a 0.5 s
    # start-up), but every call run here adds ~0.14 s lost, so the fourth or so starts Ray.
    code = textwrap.dedent("""
        import json, os, time
        from kibs_mc.config import AutoConfig
        from kibs_mc.run.executor.auto import AutoExecutor

        def work(i):
            time.sleep(0.05)
            return os.getpid()

        lines, calls = [], []
        with AutoExecutor(AutoConfig(num_cpus=2), lines.append, ray_cost=0.5) as ex:
            for call in range(8):
                pairs = list(ex.map_unordered(work, list(range(6 * call, 6 * call + 6))))
                calls.append({"items": [i for i, _ in pairs], "pids": [p for _, p in pairs]})
        print(json.dumps({"calls": calls, "driver": os.getpid(), "lines": lines}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [sorted(c["items"]) for c in got["calls"]] == [list(range(6 * k, 6 * k + 6)) for k in range(8)]
    first = got["calls"][0]
    assert set(first["pids"]) == {got["driver"]}  # the first call stays here
    assert [line.split(":")[1].strip() for line in got["lines"]] == ["serial", "ray, 2 CPUs"], got["lines"]
    assert "on the earlier calls, run here" in got["lines"][1]


@pytest.mark.slow
def test_the_default_executor_is_auto_and_gives_the_serial_results(tmp_path):
    args = ["cluster=small", "model.steps=24", "replicates=3", "tracking=none", "figures=false"]
    auto = run_cli(*args, f"hydra.run.dir={tmp_path / 'auto'}", cwd=tmp_path)
    assert auto.returncode == 0, auto.stderr[-2000:]
    chosen = [line for line in auto.stderr.splitlines() if line.startswith("executor=auto:")]
    assert len(chosen) == 1 and chosen[0].startswith("executor=auto: serial: ~"), auto.stderr[-2000:]
    serial = run_cli(*args, "executor=serial", f"hydra.run.dir={tmp_path / 'serial'}", cwd=tmp_path)
    assert serial.returncode == 0, serial.stderr[-2000:]
    assert "executor=auto" not in serial.stderr
    assert_frame_equal(
        pl.read_parquet(tmp_path / "auto" / "replicates.parquet"),
        pl.read_parquet(tmp_path / "serial" / "replicates.parquet"),
    )
