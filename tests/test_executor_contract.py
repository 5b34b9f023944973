"""The executor contract (``kibs_mc.run.executor.base.Executor``, :class:`tests.contracts.
ExecutorContract`) over every executor: serial, a local Ray cluster the executor starts, an
attached Ray cluster (``ray start``) and ``auto``. As Optuna runs one storage test case over
every storage backend, each executor is a subclass that gives its settings."""

from __future__ import annotations

import pytest

from tests.contracts import ExecutorContract
from tests.ray_nodes import RayNodes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class TestSerial(ExecutorContract):
    failure = "ValueError"  # the oracle lets the function's own error through

    @pytest.fixture(scope="class")
    def settings(self):
        return {"kind": "serial"}


class TestLocalRay(ExecutorContract):
    @pytest.fixture(scope="class")
    def settings(self):
        return {"kind": "ray", "num_cpus": 2, "max_retries": 0}


class TestAttachedRay(TestLocalRay):
    @pytest.fixture(scope="class")
    def cluster(self):
        """A Ray cluster started with ``ray start`` (2 CPUs) to attach to."""
        nodes = RayNodes(dashboard=False)
        try:
            nodes.start_head(num_cpus=2)
            nodes.wait_for_cpus(2)
            yield nodes
        finally:
            nodes.stop()


class TestAuto(ExecutorContract):
    @pytest.fixture(scope="class")
    def settings(self):
        return {"kind": "auto", "num_cpus": 2, "max_retries": 0}
