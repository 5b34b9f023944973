#!/usr/bin/env python
"""Benchmarks of kibs-mc. Each figure is printed as one JSON object per line with the keys
``name``, ``value`` and ``unit`` (plus context), the contract in docs/architecture.md
("Contracts other tools rely on").

Subcommands (``all``, the default, runs each with its quick defaults):

- ``cj``: the raw Cowan-Jonard meeting loop on one thread, the same work as
  ``shared/bench/cj_anchor.c``: ring lattice (p=0), knowledge Uniform[0,10), alpha 0.1,
  tolerance 0.01, a fixed number of meetings, no steady-state checks. Compilation excluded.
- ``kibs``: agent-steps/s of the cluster kernel on the default cluster on one thread, and the
  cost of a step as the cluster grows (its growth exponent); ``--against REV`` also times
  commit REV's kernel side by side in interleaved rounds (e.g. the model's previous version)
  and prints the ratio.
- ``startup``: seconds from process start to a first finished replicate, with an empty
  (cold) and then a filled (warm) Numba on-disk cache, and how many kernels the warm run
  compiled (should be none).
- ``pipeline``: replicates/s of the kernel alone on one thread (measured right before and
  after each whole run), of two kernel processes at once, and of whole ``kibs-mc`` runs
  (process start, imports, Ray start-up and Numba cache loading included) on the serial
  executor, on local Ray clusters of n CPUs (``ray_<n>cpu``; n above the machine's cores
  simulates more workers) and with ``executor=auto`` (``--runs`` picks some; with serial,
  ray_2cpu and auto, auto's time over the better of the two). Per run two efficiencies against
  the kernel: wall clock, and CPU (the kernel's CPU seconds over the CPU seconds of every
  process of the run, which other load on a shared machine barely changes; ``--by-class``
  splits the latter by process). ``--replicates`` takes several counts. Also Ray's per-task
  overhead and the driver's cost per chunk, for scaling estimates. Default model: the default
  experiment's (``model=kibs``).
- ``calibrate``: a whole ``kibs-mc experiment=calibrate`` run (its default, on the default
  cluster, unless overrides are given): simulations (particles tried) and accepted particles per second,
  start-up, ABC-SMC generations and the predictive check included, and its efficiency (the
  simulations' compute seconds over wall seconds x cores, and over the run's CPU seconds).
- ``robustness``: a whole ``kibs-mc experiment=robustness`` run (the laptop default unless
  overrides are given): world x policy x replicate units per second, start-up and analysis
  included, and the robustness analysis' own seconds (bootstrap, PRIM/CART, figures).
- ``latency``: ns per dependent load of a random pointer chase over working sets from
  0.5 to 128 MiB (one load per cache line, huge pages where the system gives them): what this
  machine's caches hold, which says from what cluster size meetings wait for memory
  (docs/performance.md).
- ``memory``: the driver's peak resident memory for a small and a large number of
  replicates (serial executor: the driver is the only process), and their difference.

Speed is shown here, never asserted in tests. The machine may be shared: compare figures
from the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def emit(name: str, value: float, unit: str, **context: object) -> None:
    """Print one figure as a JSON line (flushed, so partial output survives a kill)."""
    print(json.dumps({"name": name, "value": value, "unit": unit, **context}), flush=True)


def machine() -> dict[str, object]:
    """What the figures were measured on (the load average says whether it was shared)."""
    import platform

    one, five, fifteen = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(one, 2),
        "uptime": f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # always a local cluster
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


# --------------------------------------------------------------------------- cj


def bench_cj(agents: int, degree: int, categories: int, meetings: int, replicates: int) -> None:
    """Meetings per second of ``kernels/cowan_jonard.run_replicate`` with ``check_every=0``."""
    from kibs_mc.kernels import cowan_jonard as cj
    from kibs_mc.kernels.network import watts_strogatz
    from kibs_mc.kernels.rng import new_state

    alpha, tolerance, high = 0.1, 0.01, 10.0
    indptr, indices = watts_strogatz(agents, degree, 0.0, new_state(0))
    warm = cj.initial_knowledge(agents, categories, new_state(1), high)
    cj.run_replicate(indptr, indices, warm, new_state(1), alpha, tolerance, 1000, 0)  # compile
    seconds = 0.0
    trades = 0
    for r in range(replicates):
        state = new_state(1234 + r)
        knowledge = cj.initial_knowledge(agents, categories, state, high)
        started = time.perf_counter()
        _, traded, _ = cj.run_replicate(indptr, indices, knowledge, state, alpha, tolerance, meetings, 0)
        seconds += time.perf_counter() - started
        trades += traded
    emit(
        "cj_meetings_per_s",
        meetings * replicates / seconds,
        "meetings/s",
        agents=agents,
        degree=degree,
        categories=categories,
        meetings=meetings * replicates,
        seconds=round(seconds, 4),
        trades=trades,
        threads=1,
        **machine(),
    )


# --------------------------------------------------------------------------- startup

#: Run in a fresh interpreter: imports, one replicate of the model named in argv[1], and how
#: many of the kernels called from Python were compiled rather than loaded from the cache.
STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from numba.core.registry import CPUDispatcher
from kibs_mc.config import load_config
from kibs_mc.models import MODELS
from kibs_mc.kernels import cowan_jonard, kibs, network, rng
t1 = time.perf_counter()
MODELS[sys.argv[1]].simulate(load_config([f"model={sys.argv[1]}", "executor=serial", "tracking=none"]), 12345)
t2 = time.perf_counter()
misses = hits = 0
for module in (cowan_jonard, kibs, network, rng):
    for f in vars(module).values():
        if isinstance(f, CPUDispatcher):
            misses += sum(f.stats.cache_misses.values())
            hits += sum(f.stats.cache_hits.values())
print(json.dumps({"import_s": t1 - t0, "first_replicate_s": t2 - t1,
                  "compiled": misses, "loaded_from_cache": hits}))
"""


def _timed(
    cmd: Sequence[str], env: dict[str, str], cwd: Path, stderr: list[str] | None = None
) -> tuple[float, str]:
    """Wall seconds and stdout of ``cmd`` (its stderr appended to ``stderr`` when given)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if stderr is not None:
        stderr.append(done.stderr)
    return seconds, done.stdout


def bench_startup() -> None:
    """Cold (empty NUMBA_CACHE_DIR), then warm (same directory) start of one replicate of each
    model in a fresh interpreter, and of a whole one-replicate ``kibs-mc`` run."""
    with tempfile.TemporaryDirectory(prefix="kibs-bench-") as tmp:
        work = Path(tmp)
        for label, cmd in (
            ("cowan_jonard", [sys.executable, "-c", STARTUP_CHILD, "cowan_jonard"]),
            ("kibs", [sys.executable, "-c", STARTUP_CHILD, "kibs"]),
            (
                "cli",
                [
                    sys.executable,
                    "-m",
                    "kibs_mc",
                    "replicates=1",
                    "executor=serial",
                    "tracking=none",
                    f"hydra.run.dir={work}/run",
                ],
            ),
        ):
            cache = work / f"numba-cache-{label}"
            for phase in ("cold", "warm"):
                shutil.rmtree(work / "run", ignore_errors=True)
                seconds, out = _timed(cmd, child_env(NUMBA_CACHE_DIR=str(cache)), REPO)
                detail = json.loads(out.strip().splitlines()[-1]) if label != "cli" else {}
                emit(
                    f"startup_{label}_{phase}_s",
                    round(seconds, 3),
                    "s",
                    what=f"fresh process: imports + one {label} replicate"
                    if label != "cli"
                    else "kibs-mc replicates=1 executor=serial tracking=none (default model), whole process",
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in detail.items()},
                    **machine(),
                )


# --------------------------------------------------------------------------- kibs

#: The default cluster's composition (conf/cluster/default.yaml), scaled for the growth series.
DEFAULT_CLUSTER = {"hte": 300, "t_kibs": 40, "p_kibs": 30, "uni": 6, "intermediaries": 8, "fin": 5}


def kibs_config(agents: int | None, steps: int | None, extra: Sequence[str] = ()):
    """The kibs model's config, its default cluster scaled to about ``agents`` agents."""
    from kibs_mc.config import load_config

    overrides = ["model=kibs", "cluster=default", "executor=serial", "tracking=none", *extra]
    if agents is not None:
        scale = agents / sum(DEFAULT_CLUSTER.values())
        overrides += [f"cluster.{k}={max(1, round(v * scale))}" for k, v in DEFAULT_CLUSTER.items()]
    if steps is not None:
        overrides += [f"model.steps={steps}", "model.record_every=1"]
    return load_config(overrides)


def time_kibs(config, replicates: int, warm_up: bool = True) -> dict[str, float]:
    """Mean seconds of cluster building and of the step loop, and mean ties, over replicates
    (after one untimed replicate that compiles or loads the kernels, when ``warm_up``).

    Seconds are this thread's CPU time (``time.thread_time``): on a shared machine the time
    spent waiting for a core is left out (contention for caches and memory is not)."""
    import numpy as np
    from kibs_mc.kernels import kibs as kernel
    from kibs_mc.kernels.rng import new_state

    from kibs_mc.models.kibs.build import build_cluster
    from kibs_mc.models.kibs.governance import kernel_parameters

    prm = kernel_parameters(config.model, config.cluster, config.governance)
    build = steps = ties = 0.0
    agents = 0
    first = 0 if warm_up else 1
    for r in range(first, replicates + 1):
        rng_state = new_state(1000 + r)
        t0 = time.thread_time()
        state = build_cluster(config.cluster, prm, rng_state)
        t1 = time.thread_time()
        series = kernel.run_replicate(
            state.agents, state.ties, state.work, rng_state, prm, config.model.steps
        )
        t2 = time.thread_time()
        if r:
            build += t1 - t0
            steps += t2 - t1
            ties += float(np.mean(series[2]))
            agents = state.n
    return {
        "agents": agents,
        "build_s": build / replicates,
        "run_s": steps / replicates,
        "ties": ties / replicates,
        "steps": config.model.steps,
    }


def bench_kibs(
    sizes: Sequence[int], scaling_steps: int, replicates: int, governance: str = "baseline"
) -> None:
    """Agent-steps/s of the cluster kernel for the default cluster on one thread, and the cost
    of one step as the cluster grows (ties here are undirected ties, averaged over steps), under
    one governance scenario (``baseline``: no instrument; ``all_four``: every instrument)."""
    import math

    extra = [f"governance={governance}"]
    default = time_kibs(kibs_config(None, None, extra), replicates)
    agent_steps = default["agents"] * default["steps"]
    emit(
        "kibs_agent_steps_per_s",
        agent_steps / default["run_s"],
        "agent-steps/s",
        cluster="default",
        governance=governance,
        agents=default["agents"],
        steps=default["steps"],
        replicates=replicates,
        run_s=round(default["run_s"], 5),
        build_s=round(default["build_s"], 5),
        threads=1,
        clock="thread_cpu",
        **machine(),
    )
    points = []
    for agents in sizes:
        # every point runs about the same agent-steps (replicates x 10 000 agents' worth), so a
        # small cluster's figure is not a few milliseconds of a noisy machine
        reps = max(1, round(replicates * 10_000 / agents))
        t = time_kibs(kibs_config(agents, scaling_steps, extra), reps, warm_up=False)  # compiled above
        per_step = t["run_s"] / t["steps"]
        points.append((t["agents"], t["ties"], per_step, t["build_s"]))
        emit(
            "kibs_step_s",
            per_step,
            "s",
            governance=governance,
            agents=t["agents"],
            ties=round(t["ties"], 1),
            steps=t["steps"],
            replicates=reps,
            ns_per_agent_step=round(per_step / t["agents"] * 1e9, 1),
            ns_per_tie_step=round(per_step / t["ties"] * 1e9, 1),
            build_s=round(t["build_s"], 4),
            clock="thread_cpu",
            **machine(),
        )
    if len(points) > 1:
        (a0, e0, s0, b0), (a1, e1, s1, b1) = points[0], points[-1]
        emit(
            "kibs_step_growth_exponent_agents",
            math.log(s1 / s0) / math.log(a1 / a0),
            "exponent",
            governance=governance,
            definition=f"log(step cost ratio)/log(agents ratio), {a0} -> {a1} agents; 1 = linear",
        )
        emit(
            "kibs_step_growth_exponent_ties",
            math.log(s1 / s0) / math.log(e1 / e0),
            "exponent",
            governance=governance,
            definition=f"log(step cost ratio)/log(ties ratio), {a0} -> {a1} agents; 1 = linear",
        )
        emit(
            "kibs_build_growth_exponent_agents",
            math.log(b1 / b0) / math.log(a1 / a0),
            "exponent",
            governance=governance,
            definition=f"cluster building (agents, network, enrolment), {a0} -> {a1} agents; 1 = linear",
        )


#: Run in a fresh interpreter of one code tree: the default cluster's step loop under one
#: governance scenario, thread CPU seconds per replicate after an untimed first replicate. Only
#: APIs every model version has (the comparison with another commit runs this in that tree).
AGAINST_CHILD = r"""
import json, sys, time
from kibs_mc.config import load_config
from kibs_mc.kernels import kibs as kernel
from kibs_mc.kernels.rng import new_state
from kibs_mc.models.kibs.build import build_cluster
from kibs_mc.models.kibs.governance import kernel_parameters
governance, replicates = sys.argv[1], int(sys.argv[2])
overrides = ["model=kibs", "cluster=default", "executor=serial", "tracking=none", f"governance={governance}"]
cfg = load_config(overrides)
prm = kernel_parameters(cfg.model, cfg.cluster, cfg.governance)
run = 0.0
for r in range(replicates + 1):
    rng = new_state(1000 + r)
    state = build_cluster(cfg.cluster, prm, rng)
    t0 = time.thread_time()
    kernel.run_replicate(state.agents, state.ties, state.work, rng, prm, cfg.model.steps)
    if r:
        run += time.thread_time() - t0
agent_steps = state.n * cfg.model.steps
print(json.dumps({"agent_steps_per_s": agent_steps * replicates / run, "kernel": kernel.__file__}))
"""


def code_tree(rev: str, into: Path) -> Path:
    """The model code of commit ``rev`` (kibs_mc, kernels, conf), unpacked into ``into`` and
    importable with ``PYTHONPATH=into`` (``kibs_mc.kernels`` is ``kernels/``, as the install maps it)."""
    command = ["git", "-C", str(REPO), "archive", rev, "kibs_mc", "kernels", "conf"]
    archive = subprocess.run(command, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    (into / "kibs_mc" / "kernels").symlink_to(into / "kernels", target_is_directory=True)
    return into


def bench_kibs_against(rev: str, governance: str, replicates: int, rounds: int) -> None:
    """Agent-steps/s of this tree's cluster kernel and of commit ``rev``'s, side by side on the
    default cluster: ``rounds`` interleaved rounds (the order alternates), each side a fresh
    process timing ``replicates`` replicates on one thread (thread CPU time), its Numba cache
    warm from an untimed first round. Emits both medians and the ratio this / rev (> 1: this
    tree is faster per agent-step), with every round's ratio and the load."""
    import statistics

    with tempfile.TemporaryDirectory(prefix="kibs-bench-rev-") as tmp:
        other = code_tree(rev, Path(tmp))
        sides = {
            "this": (child_env(NUMBA_NUM_THREADS="1"), str(REPO)),
            rev: (child_env(NUMBA_NUM_THREADS="1", PYTHONPATH=str(other)), str(other)),
        }

        def one(label: str, reps: int) -> float:
            env, cwd = sides[label]
            out = subprocess.run(
                [sys.executable, "-c", AGAINST_CHILD, governance, str(reps)],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            if label == rev and not result["kernel"].startswith(str(other)):
                raise RuntimeError(f"the {rev} side ran {result['kernel']}, not its own tree")
            return float(result["agent_steps_per_s"])

        for label in sides:  # compile or load each side's kernels once, untimed
            one(label, 1)
        speed: dict[str, list[float]] = {label: [] for label in sides}
        for r in range(rounds):
            for label in list(sides)[:: 1 if r % 2 == 0 else -1]:
                speed[label].append(one(label, replicates))
    ratios = [a / b for a, b in zip(speed["this"], speed[rev], strict=True)]
    for label, values in speed.items():
        emit(
            "kibs_agent_steps_per_s",
            statistics.median(values),
            "agent-steps/s",
            code=label,
            cluster="default",
            governance=governance,
            rounds=rounds,
            replicates=replicates,
            per_round=[round(v) for v in values],
            clock="thread_cpu",
            **machine(),
        )
    emit(
        "kibs_agent_steps_ratio",
        statistics.median(ratios),
        "ratio",
        definition=f"agent-steps/s of this tree / of {rev}, default cluster, median of interleaved rounds",
        governance=governance,
        per_round=[round(x, 3) for x in ratios],
        **machine(),
    )


def bench_latency(sizes_mib: Sequence[float], loads: int) -> None:
    """ns per load of a chase through one random cycle over the cache lines of each working
    set: every load waits for the one before, so this is the latency of the level that holds
    that much (L1, L2, the share of L3 this machine gets, memory)."""
    import numpy as np
    from numba import njit

    @njit(cache=False)
    def chase(nxt: np.ndarray, steps: int) -> int:
        p = 0
        for _ in range(steps):
            p = nxt[p]
        return p

    rng = np.random.default_rng(1)
    for mib in sizes_mib:
        lines = int(mib * 2**20 / 64)
        order = rng.permutation(lines)
        nxt = np.zeros(lines * 8, dtype=np.int64)  # one int64 used per 64-byte line
        nxt[order * 8] = np.roll(order, -1) * 8
        chase(nxt, 1000)
        t0 = time.perf_counter()
        chase(nxt, loads)
        emit(
            "memory_latency_ns",
            (time.perf_counter() - t0) / loads * 1e9,
            "ns",
            working_set_mib=mib,
            **machine(),
        )


# --------------------------------------------------------------------------- pipeline


def kernel_rate(
    overrides: Sequence[str], replicates: int, min_seconds: float = 8.0
) -> tuple[float, int, float]:
    """Replicates/s of the model's ``simulate`` in this process, one thread, compile excluded:
    (per wall second, replicates run, per second of this thread's CPU time).

    The replicates are spread evenly over the experiment's ``replicates`` seeds (every k-th),
    so their mean cost is the experiment's, and run for at least ``min_seconds``. The CPU rate
    leaves out the time spent waiting for a core, so it is the one to compare with a run's CPU
    seconds on a shared machine.
    """
    import numpy as np

    from kibs_mc.config import load_config
    from kibs_mc.models import MODELS
    from kibs_mc.run.plan import replicate_seeds

    config = load_config([*overrides, "executor=serial", "tracking=none"])
    simulate = MODELS[config.model.name].simulate
    seeds = replicate_seeds(config.seed, replicates)
    simulate(config, int(seeds[0]))  # compile / load from cache
    order = np.concatenate([seeds[offset::7] for offset in range(7)])  # spread, then fill in
    started, cpu_started = time.perf_counter(), time.thread_time()
    done = 0
    for seed in order:
        simulate(config, int(seed))
        done += 1
        if time.perf_counter() - started > min_seconds and done >= 50:
            break
    return done / (time.perf_counter() - started), done, done / (time.thread_time() - cpu_started)


KERNEL_RATE_CHILD = """
import json, sys
sys.path.insert(0, {scripts!r})
from bench import kernel_rate
print(json.dumps(kernel_rate({overrides!r}, {replicates}, {seconds})))
"""


def concurrent_kernel_rate(
    overrides: Sequence[str], replicates: int, processes: int, min_seconds: float = 8.0
) -> float:
    """Summed replicates/s of ``processes`` kernel-only loops running at the same time in
    separate processes: what the hardware gives when every core computes (shared caches,
    memory bandwidth, clock), without any pipeline."""
    code = KERNEL_RATE_CHILD.format(
        scripts=str(REPO / "scripts"), overrides=list(overrides), replicates=replicates, seconds=min_seconds
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=child_env(), cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    rates = [json.loads(proc.communicate()[0].strip().splitlines()[-1])[0] for proc in procs]
    return float(sum(rates))


#: Runs a command and reports the CPU seconds of every process of its tree. It makes itself the
#: subreaper of its descendants (Linux ``PR_SET_CHILD_SUBREAPER``), so the Ray daemons and
#: workers a run starts stay in its tree after the run's own process has exited, and it reads
#: each descendant's CPU seconds from /proc four times a second (walking the tree through
#: ``/proc/<pid>/task/<tid>/children``); a process counts with its last reading (up to 0.25 s
#: before it exits is missed), the command's own process with its final one (read while it is
#: a zombie). ``RUSAGE_CHILDREN`` would not do: Ray's processes are reaped by others (the
#: raylet, the driver's shutdown) whose own accounting does not reach it in full.
TREE_CHILD = r"""
import ctypes, json, os, subprocess, sys, threading, time
out, cmd = sys.argv[1], sys.argv[2:]
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
CLASSES = (("default_worker.py", "ray_worker"), ("raylet", "raylet"), ("gcs_server", "gcs"),
           ("dashboard/agent.py", "ray_dashboard_agent"), ("dashboard.py", "ray_dashboard"),
           ("log_monitor", "ray_log_monitor"), ("monitor.py", "ray_autoscaler_monitor"),
           ("runtime_env", "ray_runtime_env_agent"), ("reaper", "ray_reaper"))
tick = os.sysconf("SC_CLK_TCK")
me, seen, names, done = os.getpid(), {}, {}, threading.Event()

def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def children(pid):
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found

def name_of(pid, root):
    if pid == root:
        return "driver"
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        line = f.read().replace(b"\0", b" ").decode(errors="replace")
    return next((c for k, c in CLASSES if k in line), "other")

def poll(root):
    while True:
        todo = children(me)
        while todo:
            pid = todo.pop()
            try:
                if names.get(pid, "other") == "other":  # caught between fork and exec: look again
                    names[pid] = name_of(pid, root)
                seen[pid] = max(seen.get(pid, 0.0), cpu_of(pid))
            except OSError:
                continue
            todo += children(pid)
        if done.wait(0.25):
            return

started = time.perf_counter()
proc = subprocess.Popen(cmd)
poller = threading.Thread(target=poll, args=(proc.pid,), daemon=True)
poller.start()
os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: its final times
wall = time.perf_counter() - started
names[proc.pid] = "driver"
seen[proc.pid] = cpu_of(proc.pid)
code = proc.wait()
deadline, left = time.monotonic() + 30, 0
while True:  # the run's daemons exit after it (Ray's shutdown): wait for every one
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        if time.monotonic() > deadline:
            left = 1
            break
        time.sleep(0.05)
done.set()
poller.join()
classes = {}
for pid, cpu in seen.items():
    classes[names[pid]] = classes.get(names[pid], 0.0) + cpu
with open(out, "w") as f:
    json.dump({"code": code, "wall_s": wall, "cpu_s": sum(seen.values()), "by_class": classes,
               "processes_left": left}, f)
"""


@dataclass
class TreeRun:
    """What one command cost: wall seconds to its exit, CPU seconds of its whole process tree
    (Ray's daemons and workers included), and those by process class."""

    wall_s: float
    cpu_s: float
    by_class: dict[str, float]


def run_tree(cmd: Sequence[str], env: dict[str, str], cwd: Path, stderr: list[str] | None = None) -> TreeRun:
    """Run ``cmd`` under :data:`TREE_CHILD` (its stderr appended to ``stderr`` when given)."""
    with tempfile.NamedTemporaryFile(prefix="kibs-bench-tree-", suffix=".json") as out:
        done = subprocess.run(
            [sys.executable, "-c", TREE_CHILD, out.name, *cmd],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        report = json.loads(Path(out.name).read_text() or "{}")
    if done.returncode != 0 or report.get("code") != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({report.get('code')}):\n{done.stderr[-2000:]}")
    if stderr is not None:
        stderr.append(done.stderr)
    classes = {k: round(v, 2) for k, v in sorted(report["by_class"].items(), key=lambda kv: -kv[1])}
    return TreeRun(report["wall_s"], report["cpu_s"], classes)


def cli_run(overrides: Sequence[str], run_dir: Path, stderr: list[str] | None = None) -> TreeRun:
    """A whole ``kibs-mc`` process and everything it starts (its stderr appended to ``stderr``)."""
    cmd = [sys.executable, "-m", "kibs_mc", *overrides, "tracking=none", f"hydra.run.dir={run_dir}"]
    return run_tree(cmd, child_env(), REPO, stderr)


def ray_overheads(tasks: int = 2000) -> dict[str, float]:
    """Ray start-up, and driver-side seconds per no-op task (submit, wait, get) on 2 CPUs."""
    import ray

    from kibs_mc.run.executor.ray import WORKER_ENV

    started = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": WORKER_ENV},
        logging_level="WARNING",
    )
    init_s = time.perf_counter() - started
    try:

        @ray.remote(num_cpus=1)
        def noop(x: int) -> int:
            return x

        ray.get([noop.remote(i) for i in range(20)])  # start the workers
        started = time.perf_counter()
        ray.get([noop.remote(i) for i in range(tasks)])
        batch = (time.perf_counter() - started) / tasks
        started = time.perf_counter()
        for i in range(200):  # one at a time: the latency of a task round trip
            ray.get(noop.remote(i))
        latency = (time.perf_counter() - started) / 200
    finally:
        ray.shutdown()
    return {"ray_init_s": init_s, "ray_task_overhead_s": batch, "ray_task_latency_s": latency}


def driver_chunk_cost(chunk_size: int, chunks: int = 2000) -> float:
    """Driver seconds per chunk to ingest and persist its rows (ResultStore.write, then the
    batched flush, amortized): the driver's serial work per task besides Ray's own."""
    import numpy as np

    from kibs_mc.run.chunk import ChunkResult
    from kibs_mc.run.store import ResultStore

    rows = {
        "scenario": np.full(chunk_size, "default", dtype=object),
        "replicate": np.arange(chunk_size, dtype=np.int64),
        "seed": np.arange(chunk_size, dtype=np.uint64),
        **{f"outcome_{i}": np.random.default_rng(i).random(chunk_size) for i in range(8)},
    }
    with tempfile.TemporaryDirectory(prefix="kibs-bench-") as tmp:
        store = ResultStore(Path(tmp))
        store.parts.mkdir(parents=True)
        started = time.perf_counter()
        for c in range(chunks):
            store.write(ChunkResult(f"s00000000-r{c:09d}-n{chunk_size}", rows, None, 0.0))
        store.flush()
        return (time.perf_counter() - started) / chunks


def pipeline_runs(labels: Sequence[str]) -> dict[str, tuple[list[str], int]]:
    """Executor overrides and cores used of each whole run: ``serial``, ``auto`` (2 CPUs) and
    ``ray_<n>cpu`` (a local Ray cluster of n CPUs; n above the machine's cores simulates more
    workers on the cores there are)."""
    runs: dict[str, tuple[list[str], int]] = {}
    for label in labels:
        if label == "serial":
            runs[label] = (["executor=serial"], 1)
        elif label == "auto":
            runs[label] = (["executor=auto", "executor.num_cpus=2"], 2)
        else:
            cpus = int(label.removeprefix("ray_").removesuffix("cpu"))
            runs[label] = (["executor=ray", f"executor.num_cpus={cpus}"], cpus)
    return runs


def run_label(text: str) -> str:
    """argparse type of ``--runs``: serial, auto or ray_<n>cpu."""
    import re

    if text in ("serial", "auto") or re.fullmatch(r"ray_[1-9][0-9]*cpu", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: allowed: serial, auto, ray_<n>cpu (e.g. ray_2cpu)")


#: The whole runs of ``bench.py pipeline`` when ``--runs`` is not given.
DEFAULT_RUNS = ("serial", "ray_1cpu", "ray_2cpu", "auto")


def bench_pipeline(
    replicates: int, overrides: Sequence[str], only: Sequence[str] = (), by_class: bool = False
) -> None:
    """Whole runs against the kernel alone. The machine's speed drifts by a few percent over
    minutes, so the kernel-only rate is measured right before and right after each whole run
    and the run is compared with their mean.

    Two efficiencies per run: ``efficiency`` (replicates/s over cores x the kernel's
    replicates/s, wall clock: what a user waits for, depressed by anything else running) and
    ``cpu_efficiency`` (the kernel's CPU seconds for the run's replicates over the CPU seconds
    of every process of the run: the share of what the run burnt that was simulation, which
    other load on the machine barely changes)."""
    from kibs_mc.run.limits import effective_cpus
    from kibs_mc.run.plan import auto_chunk_size

    def context() -> dict[str, object]:
        return {"replicates": replicates, "overrides": list(overrides), **machine()}

    rate, measured, cpu_rate = kernel_rate(overrides, replicates)
    emit(
        "pipeline_kernel_replicates_per_s",
        rate,
        "replicates/s",
        measured_replicates=measured,
        cpu_replicates_per_s=round(cpu_rate, 2),
        threads=1,
        **context(),
    )
    runs = pipeline_runs(only or DEFAULT_RUNS)
    if effective_cpus() >= 2 and any(cpus >= 2 for _, cpus in runs.values()):
        emit(
            "pipeline_kernel_2proc_replicates_per_s",
            concurrent_kernel_rate(overrides, replicates, 2),
            "replicates/s",
            definition="sum of 2 kernel-only processes running at once",
            single_thread_x2=2 * rate,
            **context(),
        )
    took: dict[str, float] = {}
    said: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kibs-bench-") as tmp:
        for label, (executor, cpus) in runs.items():
            if label in ("serial", "ray_1cpu", "auto") and cpus > effective_cpus():
                continue
            run = cli_run([*overrides, f"replicates={replicates}", *executor], Path(tmp) / label, said)
            took[label] = run.wall_s
            before, cpu_before = rate, cpu_rate
            rate, measured, cpu_rate = kernel_rate(overrides, replicates)
            emit(
                "pipeline_kernel_replicates_per_s",
                rate,
                "replicates/s",
                measured_replicates=measured,
                cpu_replicates_per_s=round(cpu_rate, 2),
                threads=1,
                after=label,
                **context(),
            )
            reference, cpu_reference = (before + rate) / 2, (cpu_before + cpu_rate) / 2
            cores = min(cpus, effective_cpus())  # more workers than cores share the cores
            run_rate = replicates / run.wall_s
            emit(
                f"pipeline_{label}_replicates_per_s",
                run_rate,
                "replicates/s",
                seconds=round(run.wall_s, 3),
                chunk_size=auto_chunk_size(replicates, 1, cpus),
                **context(),
            )
            emit(
                f"pipeline_{label}_efficiency",
                run_rate / (cores * reference),
                "ratio",
                kernel_replicates_per_s=round(reference, 2),
                workers=cpus,
                definition=f"run replicates/s / ({cores} x kernel-only replicates/s, mean of the "
                "measurements right before and after the run)",
                **context(),
            )
            emit(
                f"pipeline_{label}_cpu_efficiency",
                replicates / cpu_reference / run.cpu_s,
                "ratio",
                cpu_s=round(run.cpu_s, 2),
                kernel_cpu_s=round(replicates / cpu_reference, 2),
                by_class=run.by_class if by_class else None,
                definition="kernel CPU seconds of the run's replicates (1 thread, mean before and "
                "after) / CPU seconds of every process of the run (driver, Ray daemons, workers)",
                **context(),
            )
    if {"serial", "ray_2cpu", "auto"} <= set(took):
        best = min(took["serial"], took["ray_2cpu"])
        choice = [line.strip() for line in said[-1].splitlines() if line.startswith("executor=auto:")]
        emit(
            "pipeline_auto_vs_best",
            took["auto"] / best,
            "ratio",
            definition="executor=auto seconds / the better of serial and Ray (2 CPUs), same bench run",
            seconds={k: round(v, 3) for k, v in took.items()},
            auto_choice=" | ".join(choice),
            **context(),
        )
    if not any(label.startswith("ray_") for label in runs):
        return  # Ray's own overheads only with a Ray run
    chunk = auto_chunk_size(replicates, 1, 2)
    over = ray_overheads()
    emit("ray_init_s", over["ray_init_s"], "s", definition="ray.init(num_cpus=2) wall", **machine())
    emit(
        "ray_task_overhead_s",
        over["ray_task_overhead_s"],
        "s",
        definition="driver wall per no-op task, 2000 submitted at once, 2 CPUs",
        **machine(),
    )
    emit(
        "ray_task_latency_s",
        over["ray_task_latency_s"],
        "s",
        definition="round trip of one no-op task at a time",
        **machine(),
    )
    emit(
        "driver_chunk_write_s",
        driver_chunk_cost(chunk),
        "s",
        chunk_size=chunk,
        definition="ResultStore.write + flush per chunk, amortized (11 columns)",
        **machine(),
    )
    emit(
        "chunk_task_s",
        chunk / rate,
        "s",
        chunk_size=chunk,
        definition="kernel seconds of one auto-sized chunk",
        **context(),
    )


# --------------------------------------------------------------------------- memory


def peak_rss_mb(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak resident MB of the child process itself, wall seconds): its VmHWM, polled.

    VmHWM is the kernel's high-water mark of the process's own RSS, so Ray's raylet and
    workers (separate processes) are not counted; it only grows, so the last reading before
    exit holds the peak up to the last 50 ms.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = Path(f"/proc/{proc.pid}/status")
    peak_kb = 0
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{b''.join(stderr_chunks)[-2000:]}")
    return peak_kb / 1024, time.perf_counter() - started


def bench_memory(small: int, large: int, executor: str, overrides: Sequence[str]) -> None:
    """Driver peak RSS of whole ``kibs-mc`` runs with ``small`` and ``large`` replicates."""
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="kibs-bench-") as tmp:
        for replicates in (small, large):
            cmd = [
                sys.executable,
                "-m",
                "kibs_mc",
                *overrides,
                f"replicates={replicates}",
                f"executor={executor}",
                "tracking=none",
                f"hydra.run.dir={tmp}/r{replicates}",
            ]
            peak, seconds = peak_rss_mb(cmd, child_env())
            peaks[replicates] = peak
            emit(
                "memory_driver_peak_rss_mb",
                round(peak, 1),
                "MB",
                replicates=replicates,
                executor=executor,
                seconds=round(seconds, 2),
                overrides=list(overrides),
                **machine(),
            )
    emit(
        "memory_driver_growth_mb",
        round(peaks[large] - peaks[small], 1),
        "MB",
        executor=executor,
        definition=f"driver peak RSS at {large} minus at {small} replicates",
        **machine(),
    )


# --------------------------------------------------------------------------- CLI

#: The small cluster with 24 monthly steps recorded every step: the same 25 time-series rows
#: per replicate as the default 120 steps recorded every 5, at a fifth of the compute, so the
#: benchmark measures what the driver holds rather than how long the kernel runs.
MEMORY_MODEL = ["model=kibs", "cluster=small", "model.steps=24", "model.record_every=1"]
#: The model of the pipeline benchmark: the default experiment's (the default cluster, ~24 ms per
#: replicate). ``model=cowan_jonard`` (~3 ms) and ``cluster=small`` (~7 ms) are the hard cases
#: for fixed and per-task costs.
PIPELINE_MODEL = ["model=kibs"]


def bench_calibrate(overrides: Sequence[str], by_class: bool = False) -> None:
    """Simulations and accepted particles per second of a whole calibration run, and its
    efficiency: the simulations' own compute seconds over wall seconds x cores (and over the
    CPU seconds of every process of the run). A simulation's compute is taken at the kernel's
    rate at the configured values (measured right before and after the run), so it assumes the
    particles cost what the configured values cost."""
    import polars as pl

    from kibs_mc.config import load_config
    from kibs_mc.run.limits import effective_cpus

    overrides = ["experiment=calibrate", "tracking=none", *overrides]
    config = load_config(overrides)
    cal = config.calibration
    before, _, cpu_before = kernel_rate(overrides, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run = cli_run(overrides, run_dir)
        seconds = run.wall_s
        generations = pl.read_parquet(run_dir / "generations.parquet")
    after, _, cpu_after = kernel_rate(overrides, 1000)
    samples, particles = int(generations["samples"].sum()), int(generations["particles"].sum())
    # every replicate the run simulated: the particles tried, the predictive check, the probe
    replicates = (samples + cal.ppc_draws) * cal.replicates + 1
    if cal.targets == "synthetic":
        replicates += cal.synthetic_replicates
    cores = int(config.executor.num_cpus or effective_cpus()) if config.executor.kind != "serial" else 1
    compute = replicates / ((before + after) / 2)
    emit(
        "calibrate_simulations_per_s",
        samples / seconds,
        "simulations/s",
        particles_per_s=particles / seconds,
        simulations=samples,
        particles=particles,
        generations=generations.height,
        population=cal.population,
        replicates_per_particle=cal.replicates,
        wall_s=round(seconds, 2),
        executor=config.executor.kind,
        overrides=list(overrides),
        **machine(),
    )
    emit(
        "calibrate_efficiency",
        compute / (seconds * cores),
        "ratio",
        replicates=replicates,
        compute_s=round(compute, 2),
        cores=cores,
        kernel_replicates_per_s=round((before + after) / 2, 2),
        definition="the simulations' compute seconds (replicates / kernel-only replicates/s at the "
        "configured values, mean before and after) / (wall seconds x cores)",
        overrides=list(overrides),
        **machine(),
    )
    emit(
        "calibrate_cpu_efficiency",
        replicates / ((cpu_before + cpu_after) / 2) / run.cpu_s,
        "ratio",
        cpu_s=round(run.cpu_s, 2),
        by_class=run.by_class if by_class else None,
        definition="the simulations' CPU seconds / CPU seconds of every process of the run",
        overrides=list(overrides),
        **machine(),
    )


def bench_robustness(overrides: Sequence[str]) -> None:
    """Units (world x policy x replicate) per second of a whole robustness run, and the seconds
    its analysis takes when run again on the finished run directory."""
    import polars as pl

    from kibs_mc.config import load_config
    from kibs_mc.experiments import Finished, get_kind
    from kibs_mc.models import get_model, headline

    overrides = ["experiment=robustness", *overrides]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        seconds = cli_run(overrides, run_dir).wall_s
        config = load_config(overrides)
        rows = pl.read_parquet(run_dir / "replicates.parquet")
        model = get_model(config.model.name)
        started = time.perf_counter()
        get_kind(config).analyse(Finished(config, run_dir, rows, list(model.outcomes), headline(model)))
        analysis = time.perf_counter() - started
    emit(
        "robustness_units_per_s",
        rows.height / seconds,
        "world x policy x replicate/s",
        worlds=config.robustness.worlds,
        policies=len(config.experiment.scenarios),
        replicates=config.replicates,
        wall_s=round(seconds, 2),
        analysis_s=round(analysis, 2),
        executor=config.executor.kind,
        overrides=list(overrides),
        **machine(),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    cj = sub.add_parser("cj", help="raw Cowan-Jonard meeting loop, one thread")
    cj.add_argument("--agents", type=int, default=500)
    cj.add_argument("--degree", type=int, default=10)
    cj.add_argument("--categories", type=int, default=10)
    cj.add_argument("--meetings", type=int, default=2_000_000)
    cj.add_argument("--replicates", type=int, default=5)
    kibs = sub.add_parser("kibs", help="cluster kernel: agent-steps/s, step cost as the cluster grows")
    kibs.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[500, 5_000, 50_000],
        help="agents of the growth series (exponents from the first to the last)",
    )
    kibs.add_argument("--steps", type=int, default=20, help="steps per replicate of the growth series")
    kibs.add_argument("--replicates", type=int, default=5)
    kibs.add_argument(
        "--governance",
        nargs="+",
        default=["baseline", "all_four"],
        help="governance scenarios, each a series (default: baseline and all_four)",
    )
    kibs.add_argument(
        "--against",
        metavar="REV",
        help="also this tree's default-cluster agent-steps/s side by side with commit REV's, "
        "in interleaved rounds (e.g. the model's previous version)",
    )
    kibs.add_argument("--rounds", type=int, default=6, help="interleaved rounds of --against")
    sub.add_parser("startup", help="cold and warm start with Numba's on-disk cache")
    lat = sub.add_parser("latency", help="ns per load of a random pointer chase by working-set size")
    lat.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=[0.5, 1, 2, 4, 8, 16, 32, 64, 128],
        help="working sets in MiB",
    )
    lat.add_argument("--loads", type=int, default=2_000_000)
    pipe = sub.add_parser("pipeline", help="replicates/s: kernel, serial, Ray 1 and 2 CPUs")
    pipe.add_argument(
        "--replicates",
        type=int,
        nargs="+",
        default=[10_000],
        help="replicates per run; several values run the whole set for each in turn",
    )
    pipe.add_argument(
        "--runs",
        nargs="+",
        type=run_label,
        default=(),
        help="only these whole runs: serial, auto, ray_<n>cpu (default: " + " ".join(DEFAULT_RUNS) + ")",
    )
    pipe.add_argument(
        "--by-class",
        action="store_true",
        help="also print each run's CPU seconds by process (driver, Ray workers, Ray daemons)",
    )
    pipe.add_argument("overrides", nargs="*", help=f"Hydra overrides (default: {' '.join(PIPELINE_MODEL)})")
    mem = sub.add_parser("memory", help="driver peak RSS, few vs many replicates")
    mem.add_argument("--small", type=int, default=1_000)
    mem.add_argument("--large", type=int, default=100_000)
    mem.add_argument("--executor", choices=("serial", "ray"), default="serial")
    mem.add_argument("overrides", nargs="*", help=f"Hydra overrides (default: {' '.join(MEMORY_MODEL)})")
    cal = sub.add_parser("calibrate", help="a whole calibration run: simulations/s, particles/s")
    cal.add_argument("--by-class", action="store_true", help="also print the CPU seconds by process")
    cal.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides after experiment=calibrate (default: none, the experiment's default)",
    )
    rob = sub.add_parser("robustness", help="a whole robustness run: world x policy x replicate/s")
    rob.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides after experiment=robustness (default: none, the laptop default)",
    )
    sub.add_parser("all", help="every benchmark with quick defaults (the default command)")
    args = parser.parse_args(argv)
    command = args.command or "all"
    if command == "cj":
        bench_cj(args.agents, args.degree, args.categories, args.meetings, args.replicates)
    elif command == "kibs":
        for governance in args.governance:
            if args.against:
                bench_kibs_against(args.against, governance, args.replicates, args.rounds)
            bench_kibs(args.sizes, args.steps, args.replicates, governance)
    elif command == "latency":
        bench_latency(args.sizes, args.loads)
    elif command == "startup":
        bench_startup()
    elif command == "pipeline":
        for replicates in args.replicates:
            bench_pipeline(replicates, args.overrides or PIPELINE_MODEL, args.runs, args.by_class)
    elif command == "calibrate":
        bench_calibrate(args.overrides, args.by_class)
    elif command == "memory":
        bench_memory(args.small, args.large, args.executor, args.overrides or MEMORY_MODEL)
    elif command == "robustness":
        bench_robustness(args.overrides)
    else:
        bench_cj(500, 10, 10, 2_000_000, 5)
        bench_kibs([500, 5_000], 20, 5)
        bench_latency([0.5, 4, 64], 500_000)
        bench_startup()
        bench_pipeline(2_000, PIPELINE_MODEL)
        bench_memory(1_000, 10_000, "serial", MEMORY_MODEL)


if __name__ == "__main__":
    main()
