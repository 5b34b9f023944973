"""Real Ray nodes on this machine, for the distributed tests: `ray start` processes, not ray.init.

Each node is one ``ray start --block`` process started in its own session (``setsid``), so
every process of the node (GCS, raylet, dashboard, agents, workers) carries that session id.
Stopping or killing a node signals exactly those processes: never ``ray stop``, which would
kill every Ray process on the machine, other people's test clusters included.

The cluster uses token authentication with its own random token (``RAY_AUTH_TOKEN``), so it
neither reads nor writes ``~/.ray/auth_token``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is ``sid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid and not _zombie(int(entry)):
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


#: Ports ``ray start`` would otherwise take at fixed defaults, one set per node.
AGENT_PORTS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)


class RayNodes:
    """``ray start --head`` on 127.0.0.1 plus worker nodes, each in its own session."""

    def __init__(self, dashboard: bool = True) -> None:
        # Short: Ray's AF_UNIX socket paths under the temp dir must stay below 108 bytes.
        self.log_dir = Path(tempfile.mkdtemp(prefix="krc-", dir="/tmp"))
        self.port = free_port()
        self.dashboard_port = free_port()
        self.dashboard = dashboard
        self.env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            # Declare a killed node dead after ~1.5 s instead of ~15 s.
            "RAY_health_check_period_ms": "500",
            "RAY_health_check_timeout_ms": "500",
            "RAY_health_check_failure_threshold": "3",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def client_env(self) -> dict[str, str]:
        """Environment for drivers and `ray job submit` talking to this cluster."""
        return {k: v for k, v in self.env.items() if not k.startswith("RAY_health")}

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the node
        # Ray's fixed default ports (dashboard agent 52365, client server 10001, ...) would be
        # shared with any other Ray cluster on this machine (tests run in parallel): a node whose
        # agent could not bind its port has no job agent ("No available agent to submit job").
        args = [*args, *(f"--{flag}={free_port()}" for flag in AGENT_PORTS)]
        proc = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append(proc)
        return proc

    def start_head(self, num_cpus: int = 1) -> None:
        args = [
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={self.log_dir / 'ray'}",
            f"--ray-client-server-port={free_port()}",
        ]
        if self.dashboard:
            args += [
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
        else:
            args += ["--include-dashboard=false"]
        self._start(args, "head")

    def add_node(self, num_cpus: int = 1) -> subprocess.Popen:
        return self._start(
            [f"--address={self.address}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}"],
            f"node{len(self.nodes)}",
        )

    def join_node(self, num_cpus: int = 1, attempts: int = 3, timeout: float = 90) -> subprocess.Popen:
        """Start a worker node and wait until the cluster counts its CPUs. A node that exits or
        has not registered after ``timeout`` s is killed and started again, up to ``attempts``
        times: on a loaded machine where other tests start Ray clusters at the same moment, a
        port handed out by :func:`free_port` can be taken before the node binds it, or a start
        can stall. The error names every attempt with the end of its log."""
        want = self.cpus() + num_cpus
        failures = []
        for attempt in range(1, attempts + 1):
            node = self.add_node(num_cpus)
            log = self.log_dir / f"node{len(self.nodes) - 1}.log"
            try:
                self.wait_for_cpus(want, timeout=timeout, node=node)
                return node
            except (TimeoutError, RuntimeError) as error:
                self.kill_node(node)
                self.nodes.remove(node)  # the next attempt takes its place (and its log's name)
                failures.append(f"attempt {attempt}: {error}; node log: {log.read_text()[-1500:]}")
        raise TimeoutError(f"a worker node did not join in {attempts} attempts: " + " | ".join(failures))

    def status(self) -> subprocess.CompletedProcess:
        """``ray status`` of this cluster."""
        return subprocess.run(
            [RAY, "status", f"--address={self.address}"],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cpus(self) -> int:
        """CPUs the cluster reports now (0 before it answers)."""
        proc = self.status()
        found = re.search(r"/(\d+)\.0 CPU", proc.stdout) if proc.returncode == 0 else None
        return int(found.group(1)) if found else 0

    def wait_for_cpus(self, cpus: int, timeout: float = 120, node: subprocess.Popen | None = None) -> None:
        """Wait until the cluster reports ``cpus`` CPUs in total; fail at once if the head (or
        ``node``, the worker node being waited for) has exited."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.nodes[0].poll() is not None:
                raise RuntimeError(f"ray head exited: {(self.log_dir / 'head.log').read_text()[-2000:]}")
            if node is not None and node.poll() is not None:
                raise RuntimeError(f"the worker node exited with status {node.returncode}")
            proc = self.status()
            last = proc.stdout + proc.stderr
            if proc.returncode == 0 and f"/{cpus}.0 CPU" in proc.stdout:
                return
            time.sleep(1)
        raise TimeoutError(f"cluster did not reach {cpus} CPUs in {timeout:.0f} s: {last[-2000:]}")

    def wait_for_dashboard(self, timeout: float = 120) -> None:
        """Wait until the job submission API answers (the dashboard starts after the nodes)."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=5):
                    return
            except urllib.error.HTTPError:  # it answers (401 without the token): it is up
                return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the dashboard at {self.dashboard_url} did not answer")

    def node_pids(self, node: subprocess.Popen) -> list[int]:
        return session_pids(node.pid)

    def task_pids(self, title: str = "ray::run_chunk", node: subprocess.Popen | None = None) -> list[int]:
        """Worker processes of this cluster (or of ``node``) running a task named ``title``."""
        return [
            pid
            for n in (self.nodes if node is None else [node])
            for pid in self.node_pids(n)
            if process_title(pid).startswith(title)
        ]

    def kill_node(self, node: subprocess.Popen) -> None:
        """SIGKILL every process of the node at once, as a machine failure would."""
        for pid in self.node_pids(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM each node's `ray start --block` (it stops its children), then SIGKILL leftovers."""
        for node in reversed(self.nodes):
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.5)
        for node in self.nodes:
            for pid in session_pids(node.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if node.poll() is None:
                node.wait(timeout=10)
        shutil.rmtree(self.log_dir, ignore_errors=True)
