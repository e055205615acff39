"""A stack run always ends with a true report, and its nodes never outlive it. Found by a user:
kill -9 of fusion_node during `up` left no report, kill -9 of sim_node gave a report of a complete
run, SIGINT/SIGTERM to `up` ended in a traceback without a report, and kill -9 of `up` left
fusion_node and energy_monitor running.

Each case runs `dyn-fusion up vehicle` for real (three processes over DDS) and disturbs it once
frames flow."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ros_nodes.dds import REPO, fresh_domain_id


def _start(out: Path, duration_s: float = 30.0) -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(fresh_domain_id())}
    return subprocess.Popen([sys.executable, "-m", "dyn_fusion.cli", "up", "vehicle", "--duration-s", str(duration_s),
                             "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _node_pid(name: str, parent: int) -> int | None:
    """The pid of the node process ``name`` that ``dyn-fusion up`` (pid ``parent``) started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"__node:={name}".encode() in cmd:
            return int(entry.name)
    return None


def _wait_for_frames(out: Path, proc: subprocess.Popen, timeout_s: float = 240.0) -> None:
    """Until sim_node has published for a while (the run is under way)."""
    end = time.monotonic() + timeout_s
    log = out / "logs" / "sim_node.log"
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        if log.is_file() and "epoch" in log.read_text(errors="replace"):
            time.sleep(4.0)
            return
        time.sleep(0.5)
    raise AssertionError("the stack did not start")


@pytest.mark.parametrize("victim, cause", [("fusion_node", "fusion_node died (exit -9)"),
                                           ("sim_node", "sim_node was killed by signal 9 (the source")])
def test_a_killed_node_leaves_a_report_marked_partial(tmp_path, victim, cause):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_frames(out, proc)
    pid = _node_pid(victim, proc.pid)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] is not None and cause in report["partial"], report["partial"]
    assert report["frames_fused"] > 0  # what was fused before the crash is reported
    assert "**This run is partial**" in (out / "report.md").read_text()


def test_sigterm_stops_the_nodes_and_writes_a_partial_report_without_a_traceback(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_frames(out, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-3000:]
    assert "Traceback" not in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["partial"] == "interrupted (SIGINT or SIGTERM)" and report["frames_fused"] > 0


def test_nodes_die_with_a_killed_up(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_frames(out, proc)
    pids = {name: _node_pid(name, proc.pid) for name in ("sim_node", "fusion_node", "energy_monitor")}
    assert all(pids.values()), pids
    proc.kill()
    proc.communicate(timeout=30)
    end = time.monotonic() + 30
    alive = dict(pids)
    while alive and time.monotonic() < end:
        for name, pid in list(alive.items()):
            state = Path(f"/proc/{pid}/stat")
            if not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                del alive[name]
        time.sleep(0.5)
    assert not alive, f"still running 30 s after `up` was killed: {alive}"
