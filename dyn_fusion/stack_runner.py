"""``dyn-fusion up``: run a node plan here, without launch_ros (one OS process per node).

The nodes, their modules and the parameter file come from :mod:`ros_nodes.node_plan`, which
``launch/vehicle.launch.py`` reads too. The run gets its own DDS domain (``ROS_DOMAIN_ID`` if
set, else a random one) with discovery kept on this host, so two runs on one machine never mix.

Order: nodes start in plan order; a node marked ``waits_for_ready`` must log its ready line
before the next starts (the fusion node loads the model and measures its cost table first, so
the source's first frames are not lost). The run ends when the node marked ``ends_the_run``
(the simulator or the bag player) exits; the others then get SIGINT, finish their last frames
and write their records. If any other node dies first, everything is stopped and the error
names that node and shows the end of its log. Each node's output goes to ``<out>/logs/``, and
``<out>/nodes.json`` gets each node's CPU time and share of one core over the run.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fusion_core.atomic_files import atomic_write_text
from ros_nodes.node_params import check_params_file
from ros_nodes.node_plan import STACKS, NodeSpec, node_command, params_file, stack_plan
from ros_nodes.ros_io import isolated_domain_env


class StackError(RuntimeError):
    """A node failed to start or died during the run. ``started``: the run was under way (every
    node had started), so what the nodes recorded until then can still be reported."""

    started = False


class StackInterrupted(StackError):
    """SIGINT or SIGTERM stopped the run (the nodes were stopped cleanly first)."""


@dataclass
class StackRun:
    stack: str                                   # "vehicle" or "replay"
    out: Path                                    # run folder (logs/ and the nodes' records)
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # node name -> {param: value}
    ready_timeout_s: float = 180.0               # how long a node may take to become ready
    run_timeout_s: float = 3600.0                # hard limit on the whole run
    stop_grace_s: float = 20.0                   # after SIGINT, how long a node may take to finish
    echo_prefixes: tuple[str, ...] = ("energy_monitor",)  # whose progress lines are echoed live
    on_started: Callable[[], None] | None = None  # called once every node has started (the run is on)


@dataclass
class _Proc:
    spec: NodeSpec
    popen: subprocess.Popen
    log_path: Path
    log_offset: int = 0
    # CPU time (user + system) of the process over the run phase, i.e. from the moment every node
    # was started (start-up and model loading excluded) to the last reading; None where unknown
    cpu_s: float | None = None
    wall_s: float = 0.0
    _run_start: tuple[float, float] | None = None  # (CPU s, monotonic s) when the run phase began

    def start_run_phase(self) -> None:
        cpu = process_cpu_s(self.popen.pid)
        self._run_start = None if cpu is None else (cpu, time.monotonic())

    def sample_cpu(self) -> None:
        """Read the process's CPU time now (Linux /proc; left unknown elsewhere)."""
        cpu = process_cpu_s(self.popen.pid)
        if cpu is not None and self._run_start is not None:
            self.cpu_s = cpu - self._run_start[0]
            self.wall_s = time.monotonic() - self._run_start[1]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` from /proc/<pid>/stat; None when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime in ticks


def write_node_usage(procs: list[_Proc], path: Path) -> None:
    """``nodes.json``: per node CPU seconds, wall seconds and CPU share (1.0 = one core busy all
    the time) over the run phase (every node started, until just before it was asked to stop),
    and its exit code."""
    atomic_write_text(path, json.dumps({p.spec.name: {
        "cpu_s": None if p.cpu_s is None else round(p.cpu_s, 3), "wall_s": round(p.wall_s, 3),
        "cpu_share": None if p.cpu_s is None or p.wall_s <= 0 else round(p.cpu_s / p.wall_s, 4),
        "exit_code": p.popen.returncode} for p in procs}, indent=2) + "\n")


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-n:])


def run_stack(run: StackRun, echo=print) -> dict[str, int]:
    """Run the plan to its end; returns each node's exit code. StackError when a node fails to
    start or dies while the source is still running."""
    plan = stack_plan(run.stack)
    params = params_file(run.stack)
    # Every node of every stack reads the one file: check it against all of them.
    check_params_file(params, {spec.name: spec.module for stack in STACKS for spec in stack_plan(stack)})
    logs = run.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    domain = int(os.environ.get("ROS_DOMAIN_ID") or random.randint(100, 229))
    env = isolated_domain_env(domain)
    env.setdefault("OMP_NUM_THREADS", "1")  # each node its own core at most; torch would take both
    echo(f"[up] stack {run.stack}: {', '.join(s.name for s in plan)} (DDS domain {domain}, params {params})")
    procs: list[_Proc] = []
    deadline = time.monotonic() + run.run_timeout_s
    # SIGTERM (a job killed from outside) must stop the nodes too, not leave them orphaned
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = False
    try:
        for spec in plan:
            log_path = logs / f"{spec.name}.log"
            cmd = node_command(spec, params, run.overrides.get(spec.name))
            with open(log_path, "w") as log:
                popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
            procs.append(_Proc(spec, popen, log_path))
            if spec.waits_for_ready:
                _wait_ready(procs[-1], run.ready_timeout_s, echo)
        source = next(p for p in procs if p.spec.ends_the_run)
        for p in procs:
            p.start_run_phase()
        started = True
        if run.on_started is not None:
            run.on_started()
        while source.popen.poll() is None:
            for p in procs:
                p.sample_cpu()
            _check_alive(procs)
            _echo_progress(procs, run.echo_prefixes, echo)
            if time.monotonic() > deadline:
                raise StackError(f"the run passed its {run.run_timeout_s:.0f} s limit")
            time.sleep(0.2)
        if source.popen.returncode != 0:  # e.g. a damaged bag: what was played is still reported
            echo(f"[up] {source.spec.name} exited with {source.popen.returncode}:\n{_tail(source.log_path, 5)}")
        _settle([p for p in procs if p is not source])
    except StackError as err:
        err.started = started
        raise
    except KeyboardInterrupt:
        # the finally clause below stops every node before this reaches the caller
        err = StackInterrupted("interrupted (SIGINT or SIGTERM)")
        err.started = started
        raise err from None
    finally:
        _stop(procs, run.stop_grace_s)
        _echo_progress(procs, run.echo_prefixes, echo)
        write_node_usage(procs, run.out / "nodes.json")
        signal.signal(signal.SIGTERM, previous_term)
    return {p.spec.name: p.popen.returncode for p in procs}


def _settle(procs: list[_Proc], min_s: float = 1.0, max_s: float = 10.0, idle_share: float = 0.1) -> None:
    """After the source has ended, wait until the other nodes have gone quiet: at least ``min_s``
    (the last messages are in flight), then until every one used less than ``idle_share`` of a
    core over the last 0.5 s, at most ``max_s``. A fixed pause was too short on a loaded machine:
    frames still queued in the transport were lost when the nodes were asked to stop."""
    start = time.monotonic()
    time.sleep(min_s)
    while time.monotonic() - start < max_s:
        before = [process_cpu_s(p.popen.pid) for p in procs]
        time.sleep(0.5)
        after = [process_cpu_s(p.popen.pid) for p in procs]
        if all(a is None or b is None or (b - a) / 0.5 < idle_share for a, b in zip(before, after)):
            return


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when this process dies, however it dies (kill -9 of
    ``dyn-fusion up`` left fusion_node and energy_monitor running). Linux only; elsewhere a no-op."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _wait_ready(proc: _Proc, timeout_s: float, echo) -> None:
    end = time.monotonic() + timeout_s
    started = time.monotonic()
    needle = f"{proc.spec.name} ready"
    while time.monotonic() < end:
        if proc.popen.poll() is not None:
            raise StackError(f"{proc.spec.name} exited with {proc.popen.returncode} while starting:\n"
                             f"{_tail(proc.log_path)}")
        if needle in proc.log_path.read_text(errors="replace"):
            echo(f"[up] {proc.spec.name} ready after {time.monotonic() - started:.1f} s")
            return
        time.sleep(0.2)
    raise StackError(f"{proc.spec.name} not ready after {timeout_s:.0f} s:\n{_tail(proc.log_path)}")


def _check_alive(procs: list[_Proc]) -> None:
    for p in procs:
        if not p.spec.ends_the_run and p.popen.poll() is not None:
            raise StackError(f"{p.spec.name} died (exit {p.popen.returncode}) during the run:\n{_tail(p.log_path)}")


def _echo_progress(procs: list[_Proc], prefixes: tuple[str, ...], echo) -> None:
    """Echo new log lines of the nodes in ``prefixes`` (their progress lines)."""
    for p in procs:
        if p.spec.name not in prefixes:
            continue
        try:
            with open(p.log_path, errors="replace") as f:
                f.seek(p.log_offset)
                text = f.read()
        except OSError:
            continue
        complete = text[: text.rfind("\n") + 1]
        p.log_offset += len(complete.encode())
        for line in complete.splitlines():
            if "]: " in line:
                line = line.split("]: ", 1)[1]  # drop the "[INFO] [time] [node]" prefix
            echo(f"[{p.spec.name}] {line}")


def _stop(procs: list[_Proc], grace_s: float) -> None:
    """SIGINT the nodes still running, last started first, each after the previous has finished
    (the fusion node publishes its last frames before the monitor stops listening); kill a node
    that does not finish within ``grace_s``."""
    for i in reversed(range(len(procs))):
        p = procs[i]
        if p.popen.poll() is not None:
            continue
        p.sample_cpu()  # the run's share, without the shutdown (a replay's backlog, record writing)
        p.popen.send_signal(signal.SIGINT)
        try:
            p.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
        # let DDS deliver what it published last and the nodes still running take it in (a fixed
        # 0.5 s lost the fusion node's last frames at the monitor on a loaded machine)
        _settle([q for q in procs[:i] if q.popen.poll() is None], min_s=0.5, max_s=5.0)
