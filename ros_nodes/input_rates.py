"""Rate and stamp checks of a node's inputs, for its ``/diagnostics`` (no rclpy here).

What diagnostic_updater's FrequencyStatus and TimeStampStatus report for a driver, per input
topic of the fusion node, over each diagnostics period (1 s): how many messages arrived, their
rate, and how old their header stamps were on arrival (receive time on the node's ROS clock
minus the stamp). A role is WARN when it went silent while it had been arriving, when its rate
fell below ``min_rate_fraction`` of its usual rate (the median of its earlier periods: no
per-sensor rate to configure, the stream calibrates itself), or when its stamps are older than
``max_stamp_age_s`` or ahead of the clock by more than ``max_stamp_ahead_s`` (a clock or
driver fault; a replay's /clock keeps them in step).

The fusion node's worker thread calls :meth:`InputRates.add` per message; the diagnostics timer
(another thread) calls :meth:`InputRates.period`, which also starts the next period.
"""
from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field

from fusion_core.config_io import param

OK, WARN = 0, 1  # diagnostic_msgs/DiagnosticStatus levels


@dataclass(frozen=True)
class InputCheckConfig:
    """The thresholds of the per-input diagnostics (``diagnostics.*`` parameters of fusion_node)."""

    period_s: float = param(1.0, "seconds between /diagnostics messages", lo=0.1, hi=60.0)
    min_rate_fraction: float = param(0.5, "WARN when an input's rate falls below this share of its usual rate",
                                     lo=0.0, hi=1.0)
    max_stamp_age_s: float = param(0.5, "WARN when a message's header stamp is older than this on arrival",
                                   lo=0.0, hi=60.0)
    max_stamp_ahead_s: float = param(0.1, "WARN when a header stamp is ahead of the node's clock by more than this",
                                     lo=0.0, hi=60.0)


@dataclass
class InputPeriod:
    """One input over one period, as /diagnostics reports it."""

    role: str
    messages: int
    rate_hz: float
    usual_rate_hz: float | None      # median of the earlier periods' rates (None: no history yet)
    stamp_age_ms_max: float | None   # oldest stamp on arrival (None: no message)
    stamp_age_ms_min: float | None   # newest (negative: ahead of the clock)
    level: int = OK
    problems: list[str] = field(default_factory=list)


class InputRates:
    """Counts and stamp ages per role for the current period (thread-safe)."""

    def __init__(self, roles: tuple[str, ...], config: InputCheckConfig, history: int = 30):
        self.roles, self.config, self._history_len = roles, config, history
        self._lock = threading.Lock()
        self._count = dict.fromkeys(roles, 0)
        self._age_ns: dict[str, list[int]] = {r: [] for r in roles}  # (min, max) kept, not every value
        self._rates: dict[str, list[float]] = {r: [] for r in roles}

    def add(self, role: str, stamp_ns: int, received_ns: int) -> None:
        """One message of ``role`` stamped ``stamp_ns``, received at ``received_ns`` (same clock)."""
        age = received_ns - stamp_ns
        with self._lock:
            self._count[role] += 1
            ages = self._age_ns[role]
            if not ages:
                ages[:] = [age, age]
            else:
                ages[0], ages[1] = min(ages[0], age), max(ages[1], age)

    def period(self, elapsed_s: float) -> list[InputPeriod]:
        """The period that just ended (``elapsed_s`` long), judged; the next one starts empty.
        A period far longer than ``period_s`` (the node's clock jumped: the first /clock of a
        replay) is not judged: [] ."""
        cfg = self.config
        with self._lock:
            counts, ages = dict(self._count), {r: list(a) for r, a in self._age_ns.items()}
            self._count = dict.fromkeys(self.roles, 0)
            self._age_ns = {r: [] for r in self.roles}
        if not 0 < elapsed_s <= 10 * cfg.period_s:
            return []
        out = []
        for role in self.roles:
            rate = counts[role] / elapsed_s if elapsed_s > 0 else 0.0
            history = self._rates[role]
            usual = statistics.median(history) if history else None
            low, high = (ages[role][0] / 1e6, ages[role][1] / 1e6) if ages[role] else (None, None)
            p = InputPeriod(role, counts[role], rate, usual, high, low)
            if usual is not None and usual > 0:
                if counts[role] == 0:
                    p.problems.append("silent")
                elif rate < cfg.min_rate_fraction * usual:
                    p.problems.append(f"{rate:.1f} Hz, usually {usual:.1f} Hz")
            if high is not None and high > 1e3 * cfg.max_stamp_age_s:
                p.problems.append(f"stamps up to {high:.0f} ms old")
            if low is not None and -low > 1e3 * cfg.max_stamp_ahead_s:
                p.problems.append(f"stamps {-low:.0f} ms ahead of the clock")
            p.level = WARN if p.problems else OK
            if counts[role]:  # a silent period does not lower what is usual
                history.append(rate)
                del history[:-self._history_len]
            out.append(p)
        return out
