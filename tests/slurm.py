"""A real one-node Slurm on this machine, for tests: ``scripts/slurm/local-slurm.sh``.

The instance is private to the test session (its own munged, slurmctld and slurmd, its own
slurm.conf with free ports, in a temporary directory); client commands reach it through
``SLURM_CONF``. Where the Debian packages ``slurm-wlm`` and ``munge`` are not installed (``make
slurm-deps`` installs them, as root), the tests that need it are skipped and say so.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCAL_SLURM = REPO / "scripts" / "slurm" / "local-slurm.sh"
SBATCH_TEMPLATE = REPO / "scripts" / "slurm" / "kibs-mc.sbatch"

NOT_INSTALLED = (
    "Slurm is not installed here (the Debian packages slurm-wlm and munge); "
    "`make slurm-deps` installs them as root"
)


def installed() -> bool:
    return subprocess.run([str(LOCAL_SLURM), "check"], capture_output=True).returncode == 0


@dataclass
class LocalSlurm:
    """A running one-node Slurm: ``env`` points client commands at it."""

    directory: Path
    env: dict[str, str]

    def run(
        self,
        *args: str,
        timeout: float = 60,
        check: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sbatch, squeue, scontrol, scancel...) against this instance."""
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={**self.env, **(env or {})},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def submit(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> int:
        """``sbatch --parsable ARGS``; returns the job id."""
        out = self.run("sbatch", "--parsable", *args, cwd=cwd, env=env).stdout.strip()
        return int(out.split(";")[0])

    def state(self, job: int) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, CANCELLED, FAILED...), or '' once gone."""
        out = self.run("scontrol", "-o", "show", "job", str(job), check=False).stdout
        found = re.search(r"\bJobState=(\S+)", out)
        return found.group(1) if found else ""

    def restarts(self, job: int) -> int:
        out = self.run("scontrol", "-o", "show", "job", str(job), check=False).stdout
        found = re.search(r"\bRestarts=(\d+)", out)
        return int(found.group(1)) if found else 0

    def wait_state(self, job: int, states: tuple[str, ...], timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(job)
            if state in states:
                return state
            time.sleep(0.2)
        raise AssertionError(f"job {job} did not reach {states} within {timeout}s (now {self.state(job)!r})")

    def job_pids(self, job: int) -> list[int]:
        """Live processes started by ``job`` of this instance: their environment names the job
        id and this instance's slurm.conf (Slurm sets both in every process of a job, Ray's
        included, and children inherit them)."""
        marks = {f"SLURM_JOB_ID={job}".encode(), f"SLURM_CONF={self.env['SLURM_CONF']}".encode()}
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = set(Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"))
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marks <= environ and state != "Z":
                pids.append(int(entry))
        return pids


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


def start(directory: Path) -> LocalSlurm:
    """Bring up the one-node Slurm in ``directory``; ``stop`` ends it."""
    up = subprocess.run([str(LOCAL_SLURM), "up", str(directory)], capture_output=True, text=True, timeout=120)
    if up.returncode != 0:
        raise RuntimeError(f"local-slurm.sh up failed ({up.returncode}): {up.stderr[-3000:]}")
    conf = str(directory / "slurm.conf")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    return LocalSlurm(directory, {**env, "SLURM_CONF": conf})


def stop(directory: Path) -> None:
    subprocess.run([str(LOCAL_SLURM), "down", str(directory)], capture_output=True, timeout=120)
