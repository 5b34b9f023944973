"""The executor contract (``kibs_mc.run.executor.base.Executor``), checked over every executor:
serial, a local Ray cluster the executor starts, and an attached Ray cluster (``ray start``).

As Optuna runs one storage test case over every storage backend, each test here runs once per
executor. Each check runs in a fresh interpreter: Ray can be started once per process, and a
local cluster only where none runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.ray_nodes import RayNodes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRELUDE = """
import json, os, sys, time
from kibs_mc.config import ExecutorConfig
from kibs_mc.errors import ExecutionError
from kibs_mc.run.executor import make_executor

KIND = sys.argv[1]

def executor():
    if KIND == "serial":
        return make_executor(ExecutorConfig(kind="serial"))
    return make_executor(ExecutorConfig(kind="ray", num_cpus=2, max_retries=0))

def square(i):
    time.sleep(0.01)
    return i * i

def fails_at_7(i):
    if i == 7:
        raise ValueError("item 7 is bad")
    time.sleep(0.01)
    return i

def ray_running():
    import ray
    return ray.is_initialized()

def out(**values):
    print(json.dumps(values))
"""


@pytest.fixture(scope="module")
def attached():
    """A Ray cluster started with ``ray start`` (2 CPUs), for the ``attached`` executor."""
    cluster = RayNodes(dashboard=False)
    try:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_cpus(2)
        yield cluster
    finally:
        cluster.stop()


KINDS = ["serial", "local", "attached"]


def runner(request, param: str):
    """``run(body)`` runs the prelude plus ``body`` with the executor kind ``param`` in a fresh
    interpreter and returns the JSON its last line prints."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = request.getfixturevalue("attached") if param == "attached" else None
    if cluster is not None:
        env.update({k: v for k, v in cluster.client_env().items() if k.startswith("RAY_")})
        env["RAY_ADDRESS"] = cluster.address
    kind = {"serial": "serial", "local": "ray", "attached": "ray"}[param]

    def _run(body: str) -> dict:
        code = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
        proc = subprocess.run(
            [sys.executable, "-c", code, kind], cwd=REPO, capture_output=True, text=True, timeout=240, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    _run.kind = param  # type: ignore[attr-defined]
    _run.cluster = cluster  # type: ignore[attr-defined]
    return _run


@pytest.fixture(params=KINDS)
def run(request):
    """A fresh interpreter per check, for the checks about starting and releasing a cluster."""
    return runner(request, request.param)


@pytest.fixture(scope="module", params=KINDS)
def streams(request):
    """The stream checks, run one after another on ONE executor in one interpreter (as a
    pipeline uses it: many streams, some abandoned, one failing), once per executor kind; each
    test below asserts its own part. The failing stream comes last."""
    got = runner(request, request.param)("""
        taken = []
        def items():
            for i in range(10_000):
                taken.append(i)
                yield i
        got = {}
        with executor() as ex:
            pairs = list(ex.map_unordered(square, range(60)))
            got.update(items=[i for i, _ in pairs], results=[r for _, r in pairs], workers=ex.workers)

            stream = ex.map_unordered(square, items())
            got["first"] = next(stream)
            got["drawn"] = len(taken)
            stream.close()

            rounds = []
            for _ in range(3):
                stream = ex.map_unordered(square, range(200))
                next(stream)
                stream.close()
                rounds.append(sorted(i for i, _ in ex.map_unordered(square, range(30))))
            got["rounds"] = rounds

            seen, error = [], None
            try:
                for i, r in ex.map_unordered(fails_at_7, range(20)):
                    seen.append(i)
            except ExecutionError as exc:
                error = ["ExecutionError", str(exc)]
            except ValueError as exc:
                error = ["ValueError", str(exc)]
            got.update(seen=seen, error=error)
        out(**got)
    """)
    got["param"] = request.param
    return got


def test_every_item_is_yielded_exactly_once_with_its_own_result(streams):
    assert sorted(streams["items"]) == list(range(60))
    assert all(r == i * i for i, r in zip(streams["items"], streams["results"], strict=True))
    assert streams["workers"] >= 1


def test_items_are_taken_lazily(streams):
    assert streams["first"][1] == streams["first"][0] ** 2
    assert streams["drawn"] < 10_000 // 2, "the executor drew the whole iterable before the first result"


def test_an_abandoned_stream_cancels_its_work_and_the_executor_can_be_used_again(streams):
    # Three rounds: a forced cancel could kill a worker Ray had just handed the next stream's
    # task (on an attached cluster that failed every time within five rounds).
    assert streams["rounds"] == [list(range(30))] * 3


def test_a_failing_item_raises_after_the_other_results_it_holds(streams):
    assert streams["error"] is not None, "the failure of item 7 was swallowed"
    assert 7 not in streams["seen"]
    if streams["param"] == "serial":  # the serial oracle lets the function's own error through
        assert streams["error"] == ["ValueError", "item 7 is bad"]
    else:  # remote (or driver-side) failures are the executor's error, naming the cause
        assert streams["error"][0] == "ExecutionError" and "item 7 is bad" in streams["error"][1]


def test_an_empty_iterable_yields_nothing_and_starts_nothing(run):
    got = run("""
        with executor() as ex:
            pairs = list(ex.map_unordered(square, []))
            started = KIND != "serial" and ray_running()
        out(pairs=pairs, started=started, attaching="RAY_ADDRESS" in os.environ)
    """)
    assert got["pairs"] == []
    # A local cluster is not started for nothing (attaching connects at construction).
    assert not got["started"] or got["attaching"]


def test_close_releases_only_what_the_executor_started(run):
    got = run("""
        ex = executor()
        list(ex.map_unordered(square, range(10)))
        ex.close()
        ex.close()  # idempotent
        if KIND != "serial":
            from kibs_mc.run.executor.ray import wait_for_shutdown
            wait_for_shutdown()
        out(running=KIND != "serial" and ray_running())
    """)
    assert not got["running"]
    if run.cluster is not None:  # the cluster it attached to still runs, with all its CPUs
        run.cluster.wait_for_cpus(2, timeout=30)
