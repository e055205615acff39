"""The ``main()`` the spinning dyn_fusion nodes share (init, spin until SIGINT/SIGTERM, finish,
exit code), and :func:`stop_on_signals` for the nodes that run their own loop (sim_node,
bag_player).

rclpy's own signal handling is switched off: it shuts the context down inside the handler, so a
node could no longer publish its last frames or log its summary. Instead SIGINT and SIGTERM
raise KeyboardInterrupt in the spinning thread, which stops spinning; then the node's
``finish()`` runs with the context still valid. Spinning uses short timeouts so the signal is
seen even when no message arrives.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
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


def run_node(make_node: Callable[[], Node], name: str, args=None) -> int:
    """Create the node, spin until interrupted or until ``node.done`` is true (when the node has
    that attribute), call ``node.finish()`` (when it has one); returns the exit code: 0, or
    ``EXIT_BAD_CONFIG`` when the node cannot start because of its parameters or files."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node, code = None, 0
    try:
        node = make_node()
        while rclpy.ok() and not getattr(node, "done", False):
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    except (ConfigError, FileNotFoundError, ValueError) as err:
        rclpy.logging.get_logger(name).error(f"cannot start: {err}")
        code = EXIT_BAD_CONFIG
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the summary short
        if node is not None:
            finish = getattr(node, "finish", None)
            if finish is not None:
                finish()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
