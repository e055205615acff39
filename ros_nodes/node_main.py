"""The ``main()`` the spinning dyn_fusion nodes share (init, spin until SIGINT/SIGTERM, finish,
exit code), and :func:`stop_on_signals` for the nodes that run their own loop (sim_node,
bag_player).

rclpy's own signal handling is switched off: it shuts the context down inside the handler, so a
node could no longer publish its last frames or log its summary. Instead SIGINT and SIGTERM
raise KeyboardInterrupt in the spinning thread, which stops spinning; then the node's
``finish()`` runs with the context still valid. Spinning uses short timeouts so the signal is
seen even when no message arrives.

Spinning uses rclpy's EventsExecutor (C++) where it exists: the Python executors spend ~0.8 ms
of CPU per message with the GIL held, the events executor ~0.25 ms (a 200 Hz IMU alone took a
fifth of a core from the fusion node's worker thread).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from fusion_core.config_io import ConfigError

EXIT_BAD_CONFIG = 2


def stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set: a node running its own loop checks it, finishes the
    current step and exits cleanly (rclpy's own handlers must be off: ``rclpy.init(...,
    signal_handler_options=SignalHandlerOptions.NO)``)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def make_executor() -> Executor:
    """rclpy's EventsExecutor when this rclpy has it, else the SingleThreadedExecutor."""
    try:
        from rclpy.experimental.events_executor import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor()
    return EventsExecutor()


def run_node(make_node: Callable[[], Node], name: str, args=None) -> int:
    """Create the node, spin until interrupted or until ``node.done`` is true (when the node has
    that attribute), call ``node.finish()`` (when it has one); returns the exit code: 0, or
    ``EXIT_BAD_CONFIG`` when the node cannot start because of its parameters or files."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node, code, executor = None, 0, None
    try:
        node = make_node()
        executor = make_executor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, "done", False):
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    except (ConfigError, FileNotFoundError, ValueError) as err:
        rclpy.logging.get_logger(name).error(f"cannot start: {err}")
        code = EXIT_BAD_CONFIG
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the summary short
        if executor is not None:
            executor.remove_node(node)  # finish() may spin the node itself (rclpy.spin_once)
        if node is not None:
            finish = getattr(node, "finish", None)
            if finish is not None:
                finish()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
