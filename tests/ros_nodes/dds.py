"""Helpers for multi-process tests over real DDS: node processes on an isolated domain, and a
listener in the test process that records raw messages.

Each test picks its own domain id (:func:`fresh_domain_id`) and discovery stays on this host,
so tests running side by side (and other users of the machine) never hear each other.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from ros_nodes.node_plan import dds_environment
from ros_nodes.ros_io import SENSOR_QOS, isolated_domain_env, message_class

REPO = Path(__file__).resolve().parents[2]
# The listener in this process gets the same Fast DDS transports as the node processes (read when
# the first participant is created), so large messages reach it the same way.
os.environ.update(dds_environment(os.environ))
_domains = itertools.count((os.getpid() % 50) * 4 + 20)


def fresh_domain_id() -> int:
    """A domain id no other test of this process used (ids 20..229, spread by pid)."""
    return next(_domains) % 210 + 20


@contextmanager
def node_process(module: str, domain_id: int, log_path: Path, ros_args: tuple[str, ...] = (),
                 args: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    """``python -m module [args] --ros-args [ros_args]`` on ``domain_id``, stdout+stderr to
    ``log_path``; SIGINT then kill on exit. The log is printed when the test fails to help."""
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", module, *args]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    env = isolated_domain_env(domain_id)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(subprocess.signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


class Listener:
    """Records raw CDR messages of chosen topics on one domain, spinning in a background thread.

    ``messages[topic]`` is a list of (receive_time_s, cdr bytes)."""

    def __init__(self, domain_id: int, topics: dict[str, str], qos=SENSOR_QOS, qos_by_topic=None):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node("test_listener", context=self.context)
        self.messages: dict[str, list[tuple[float, bytes]]] = defaultdict(list)
        self._lock = threading.Lock()
        qos_by_topic = qos_by_topic or {}
        for topic, msgtype in topics.items():
            self.node.create_subscription(message_class(msgtype), topic, self._callback(topic),
                                          qos_by_topic.get(topic, qos), raw=True)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _callback(self, topic: str):
        def record(raw: bytes) -> None:
            with self._lock:
                self.messages[topic].append((time.monotonic(), raw))
        return record

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self._executor.spin_once(timeout_sec=0.05)

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.messages[topic])

    def wait_for(self, predicate, timeout_s: float) -> bool:
        """Poll ``predicate()`` until true or ``timeout_s`` passes; returns its last value."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.05)
        return bool(predicate())

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
