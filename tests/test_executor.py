"""The Ray executor's own start-up and shutdown: a local cluster starts while the driver
computes, and what the driver computed is never lost.

Each test runs a small script in a fresh interpreter: a local cluster is only started where
none is running, and the test session may already hold one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

COMMON = """
import json, os, sys, threading, time
import ray
from kibs_mc.config import RayConfig
from kibs_mc.run.executor.ray import RayExecutor, wait_for_shutdown

finished = []  # items whose work ran to the end, in any process's copy of this list

def work(i):
    time.sleep(0.05)
    finished.append(i)
    return i, os.getpid(), threading.current_thread().name, os.environ.get("NUMBA_NUM_THREADS")

# range(n), whose items past the first few wait until the local cluster has started: work
# is left for Ray however long a loaded machine takes to start it.
def some_then_after_start(n, first=20):
    for i in range(n):
        if i == first:
            deadline = time.monotonic() + 150
            while not ray.is_initialized() and time.monotonic() < deadline:
                time.sleep(0.05)
        yield i
"""


def run_script(body: str, timeout: float = 180) -> dict:
    code = textwrap.dedent(COMMON) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_driver_computes_while_the_local_cluster_starts_and_every_item_runs_once():
    out = run_script("""
        ex = RayExecutor(RayConfig(num_cpus=2))
        started_before_work = ray.is_initialized()
        results = [r for _, r in ex.map_unordered(work, some_then_after_start(200))]
        raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
        ex.close()
        wait_for_shutdown()
        print(json.dumps({"items": [r[0] for r in results], "pids": [r[1] for r in results],
                          "threads": [r[2] for r in results], "driver": os.getpid(),
                          "started_before_work": started_before_work, "raylet": raylet,
                          "raylet_alive": os.path.exists(f"/proc/{raylet}"),
                          "initialized_after": ray.is_initialized(),
                          "threads_env": [r[3] for r in results],
                          "driver_env": os.environ.get("NUMBA_NUM_THREADS")}))
    """)
    assert sorted(out["items"]) == list(range(200))
    in_driver = [t for p, t in zip(out["pids"], out["threads"], strict=True) if p == out["driver"]]
    assert in_driver, "the driver computed nothing while the cluster started"
    assert set(in_driver) == {"kibs-mc-local-chunks"}  # in the helper thread, not the main one
    assert any(p != out["driver"] for p in out["pids"]), "no item ran on the Ray cluster"
    # Ray workers run Numba single-threaded; the driver's own environment is left as it was.
    assert {e for p, e in zip(out["pids"], out["threads_env"], strict=True) if p != out["driver"]} == {"1"}
    assert out["driver_env"] is None
    assert not out["started_before_work"]  # the cluster starts when work is asked for
    assert not out["initialized_after"] and not out["raylet_alive"]


def test_a_small_local_cluster_has_the_driver_compute_beside_one_ray_worker_fewer():
    """With 2 CPUs Ray starts one worker and the driver computes beside it for the whole run,
    in every call (e.g. the next round of an adaptive run), each item once."""
    out = run_script("""
        ex = RayExecutor(RayConfig(num_cpus=2))
        first = [(r[0], r[1]) for _, r in ex.map_unordered(work, some_then_after_start(200))]
        ray_cpus = ray.cluster_resources().get("CPU")
        second = [(r[0], r[1]) for _, r in ex.map_unordered(work, range(200, 300))]
        ex.close()
        wait_for_shutdown()
        print(json.dumps({"first": first, "second": second, "ray_cpus": ray_cpus,
                          "workers": ex.workers, "driver": os.getpid()}))
    """)
    driver = out["driver"]
    assert out["workers"] == 2 and out["ray_cpus"] == 1
    assert sorted(i for i, _ in out["first"] + out["second"]) == list(range(300))
    # items 20 on are handed out only once Ray runs: the driver still takes its share of them
    assert any(p == driver for i, p in out["first"] if i >= 20)
    assert any(p == driver for _, p in out["second"]) and any(p != driver for _, p in out["second"])


def test_a_failed_start_hands_over_what_the_driver_finished_before_raising():
    out = run_script("""
        ex = RayExecutor(RayConfig(num_cpus=2))

        def failing_start():
            time.sleep(1.0)
            raise KeyboardInterrupt  # e.g. Ctrl-C while Ray starts

        ex._init_local = failing_start
        handed = []
        try:
            for _, result in ex.map_unordered(work, range(1000)):
                handed.append(result[0])
        except KeyboardInterrupt:
            raised = True
        else:
            raised = False
        print(json.dumps({"handed": handed, "finished": finished, "raised": raised,
                          "initialized": ray.is_initialized()}))
    """)
    assert out["raised"]
    assert len(out["finished"]) >= 5  # about 1 s of 0.05 s items
    assert sorted(out["handed"]) == sorted(out["finished"])  # nothing computed is lost
    assert not out["initialized"]


def test_after_a_background_shutdown_the_next_executor_starts_a_fresh_cluster():
    out = run_script("""
        sessions = []
        for attempt in range(2):
            ex = RayExecutor(RayConfig(num_cpus=1))
            items = sorted(r[0] for _, r in ex.map_unordered(work, range(80)))
            sessions.append(ray._private.worker._global_node.session_name)
            ex.close()  # returns at once; the next RayExecutor waits for it
        wait_for_shutdown()
        print(json.dumps({"items": items, "sessions": sessions, "initialized": ray.is_initialized()}))
    """)
    assert out["items"] == list(range(80))
    assert len(set(out["sessions"])) == 2
    assert not out["initialized"]


def test_a_failed_task_error_can_be_dropped_while_the_cluster_shuts_down():
    """The error of a task that failed on Ray is raised with no object references left in it
    (freeing one during a shutdown in progress killed the process), and a failed run's
    cluster is shut down before the error leaves the executor."""
    out = run_script("""
        from kibs_mc.errors import ExecutionError
        DRIVER = os.getpid()

        def fails_on_ray(i):
            time.sleep(0.02)
            if os.getpid() != DRIVER and i >= 150:
                raise ValueError("boom")
            return i

        ex = RayExecutor(RayConfig(num_cpus=2, max_retries=0))
        err = None
        try:
            with ex:
                for _ in ex.map_unordered(fails_on_ray, some_then_after_start(400)):
                    pass
        except ExecutionError as exc:
            err = exc
        message = str(err)
        shut_down_at_once = not ray.is_initialized()
        # ... and the same error dropped during a background shutdown of another cluster:
        ex = RayExecutor(RayConfig(num_cpus=2, max_retries=0))
        try:
            for _ in ex.map_unordered(fails_on_ray, some_then_after_start(400)):
                pass
        except ExecutionError as exc:
            err = exc
        ex.close()  # in the background
        time.sleep(0.1)  # Ray is shutting down now
        del err
        wait_for_shutdown()
        print(json.dumps({"message": message, "shut_down_at_once": shut_down_at_once}))
    """)
    assert "failed for good" in out["message"] and "(RayTaskError(ValueError): boom)" in out["message"]
    assert "\x1b[" not in out["message"]  # no terminal colour codes in the message
    assert out["shut_down_at_once"]


def test_a_chunk_failing_in_the_driver_gives_the_executors_error():
    """A chunk that fails while the driver computes during start-up ends the run like one
    failing on a Ray worker (ExecutionError: exit 1 with the resume hint), after the chunks
    finished before it are handed over."""
    out = run_script("""
        from kibs_mc.errors import ExecutionError
        DRIVER = os.getpid()

        def fails_in_driver(i):
            time.sleep(0.05)
            if os.getpid() == DRIVER and i == 3:
                raise ValueError("bad chunk")
            return i

        ex = RayExecutor(RayConfig(num_cpus=2))
        handed, message = [], None
        try:
            with ex:
                for _, result in ex.map_unordered(fails_in_driver, range(200)):
                    handed.append(result)
        except ExecutionError as exc:
            message = str(exc)
        print(json.dumps({"handed": handed, "message": message}))
    """)
    assert out["message"] is not None and "failed in the driver" in out["message"]
    assert "ValueError: bad chunk" in out["message"]
    assert {0, 1, 2} <= set(out["handed"])


def test_a_local_cluster_listens_on_127_0_0_1_only():
    """Every socket the driver and the cluster it started listen on, read while tasks run."""
    result = run_script("""
        import psutil

        def listening():
            me = psutil.Process()
            pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
            return sorted({(c.laddr.ip, psutil.Process(c.pid).name()) for c in psutil.net_connections("inet")
                           if c.status == psutil.CONN_LISTEN and c.pid in pids})

        sockets, remote = [], 0
        executor = RayExecutor(RayConfig(num_cpus=1, chunk_size=1))
        with executor:
            for item, (i, pid, thread, _) in executor.map_unordered(work, range(100)):
                remote += pid != os.getpid()
                if remote == 1:  # a Ray worker ran it: the whole cluster is up
                    sockets = listening()
            sockets = sockets or listening()  # the cluster is up until the executor closes
        print(json.dumps({"sockets": sockets}))
    """)
    sockets = result["sockets"]
    names = {name for _, name in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip, _ in sockets), sockets
