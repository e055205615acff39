"""Sensor power gating: put sensors the gate has stopped using in standby, and wake them to re-check.

The decision logic only (no ROS): the caller gives, once per frame, the frame time, the sensors
the gate's chosen experts needed, the estimated condition and the sensors reported degraded or
lost; the manager answers with the power commands to send now. The topic interface a driver
implements is in ``docs/sensor_power_gating.md``.

Why re-checks exist. A gate only chooses among experts whose sensors are available, so a sensor
in standby is never "needed" on its own: once off, it would stay off forever, even after the
scene changes and the gate would prefer it again. Two things wake a standby sensor so the gate
can look again:

- periodically, every ``recheck_period_s`` (measured between wake-ups);
- at once, when the estimated condition changes or a sensor that was on is newly reported
  degraded or lost (``wake_on_context_change``): exactly the moments when the gate's choice is
  most likely to change. A new condition counts once it has been estimated on every frame for
  ``context_change_min_s`` (0: at once): the context head's estimate flickers for a frame or
  two, more so with sensors in standby, and every flicker would wake every standby sensor.

A sensor woken for such a check stays awake ``recheck_duration_s`` (warm-up included), not
``standby_after_s``: the check asks one question ("does the gate want it now?"), and holding it
for the full ``standby_after_s`` would make every re-check cost as much as a real use. If the gate
needs it during the check, the normal ``standby_after_s`` hold applies from its last use.

A woken sensor is "warming" for ``warmup_s`` (its data is not valid yet) and not available to
the gate. ``recheck_duration_s`` must exceed ``warmup_s`` so the gate sees it at least once.

Time is the caller's (frame stamps), never the wall clock, so bag replay and tests are
deterministic. Typical use, once per frame::

    available = manager.available_sensors(t)          # restrict the gate to these
    result = fusion.run_frame(...)                     # experts over available sensors only
    commands = manager.update(t, needed, result.condition_estimate, set(result.degraded_sensors))
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fusion_core.config_io import ConfigError, param
from fusion_core.vocabulary import POWER_REQUESTS, SENSORS

# Slack on every time comparison: frame stamps are sums of float periods (5.2 + 0.9 != 6.1), and a
# hold that ends "at" a frame must not slip to the next one by a rounding error. Far below any
# frame period.
_TIME_EPS_S = 1e-6


@dataclass(frozen=True)
class PowerGatingConfig:
    enabled: bool = param(False, "send standby/on commands to sensors (off: every sensor stays on)")
    standby_after_s: float = param(2.0, "a sensor the gate has not needed for this long is asked to stand by, s",
                                   lo=0.0, hi=3600.0)
    recheck_period_s: float = param(10.0, "a sensor in standby is woken this often to re-check whether the "
                                    "gate wants it (time between wake-ups), s", lo=0.0, hi=3600.0)
    recheck_duration_s: float = param(1.0, "how long a sensor woken for a re-check stays awake, warm-up "
                                      "included, unless the gate uses it, s", lo=0.0, hi=3600.0)
    wake_on_context_change: bool = param(True, "wake every standby sensor when the estimated condition changes "
                                         "or a sensor is newly reported degraded/lost")
    context_change_min_s: float = param(0.0, "a new estimated condition counts as a change (and wakes sensors) "
                                        "once it has been estimated on every frame for this long, s "
                                        "(0: at once)", lo=0.0, hi=3600.0)
    always_on: tuple[str, ...] = param(("imu",), "sensors never put in standby")
    warmup_s: float = param(0.2, "time a woken sensor needs before its data is valid (not available meanwhile), s",
                            lo=0.0, hi=60.0)

    def __post_init__(self):
        for name in ("standby_after_s", "recheck_period_s", "recheck_duration_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        for name in ("warmup_s", "context_change_min_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.recheck_duration_s <= self.warmup_s:
            raise ConfigError(f"recheck_duration_s: must exceed warmup_s ({self.warmup_s} s), got "
                              f"{self.recheck_duration_s} s; otherwise the gate never sees a re-checked sensor")
        if self.recheck_period_s <= self.recheck_duration_s:
            raise ConfigError(f"recheck_period_s: must exceed recheck_duration_s ({self.recheck_duration_s} s), got "
                              f"{self.recheck_period_s} s; otherwise a sensor in standby is never in standby")
        unknown = [s for s in self.always_on if s not in SENSORS]
        if unknown:
            raise ConfigError(f"always_on: unknown sensor {unknown[0]!r} (known sensors: {', '.join(SENSORS)})")


@dataclass(frozen=True)
class PowerCommand:
    sensor: str   # sensor name ("lidar", ...)
    state: str    # "standby" or "on"
    reason: str   # why: "unused_for_2.0s", "periodic_recheck", "context_change:fog", "sensor_lost:rgb", "needed", ...

    def __post_init__(self):
        if self.state not in POWER_REQUESTS:
            raise ValueError(f"power command state must be one of {', '.join(POWER_REQUESTS)}, got {self.state!r}")


@dataclass
class _Sensor:
    """Book-keeping of one managed sensor (times in the caller's clock, s)."""

    standby: bool = False
    last_used_s: float = 0.0            # last frame the gate needed it (or the manager's first frame)
    woken_s: float | None = None        # when it was last woken (warm-up runs from here)
    check_started_s: float | None = None  # awake for a re-check since then; None once the gate uses it
    standby_since_s: float = 0.0
    next_recheck_s: float = 0.0
    closed_standby_s: float = 0.0       # standby time of finished standby stretches


class SensorPowerManager:
    """Per-frame power decisions for a set of sensors (see the module doc for the policy)."""

    def __init__(self, config: PowerGatingConfig, sensors: Iterable[str] = SENSORS):
        self.config = config
        self.sensors: tuple[str, ...] = tuple(sensors)
        unknown = [s for s in self.sensors if s not in SENSORS]
        if unknown:
            raise ValueError(f"unknown sensor {unknown[0]!r} (known sensors: {', '.join(SENSORS)})")
        if len(set(self.sensors)) != len(self.sensors):
            raise ValueError(f"sensors listed twice: {self.sensors}")
        self._state = {s: _Sensor() for s in self.sensors}
        self._time_s: float | None = None
        self._condition: str | None = None
        self._new_condition: tuple[str, float] | None = None  # a different estimate and since when, not yet a change
        self._lost: frozenset[str] = frozenset()
        self.history: list[tuple[float, PowerCommand]] = []  # every command sent, with its frame time

    # ------------------------------------------------------------------ queries
    def state(self, sensor: str) -> str:
        """The sensor's power state as of the last update: "on", "warming" or "standby"."""
        st = self._sensor(sensor)
        if st.standby:
            return "standby"
        if self._warming(st, self._time_s):
            return "warming"
        return "on"

    def available_sensors(self, time_s: float) -> set[str]:
        """Sensors whose data is valid at ``time_s`` (on and past warm-up): the gate's choice set."""
        self._check_time(time_s)
        return {s for s, st in self._state.items() if not st.standby and not self._warming(st, time_s)}

    @property
    def standby_seconds(self) -> dict[str, float]:
        """sensor -> seconds spent in standby up to the last update (its energy leaves the ledger)."""
        now = self._time_s
        return {s: st.closed_standby_s + (now - st.standby_since_s if st.standby and now is not None else 0.0)
                for s, st in self._state.items()}

    # ------------------------------------------------------------------ one frame
    def update(self, time_s: float, needed: Iterable[str], condition: str | None,
               lost: Iterable[str] = frozenset()) -> list[PowerCommand]:
        """Commands to send now, for the frame at ``time_s``.

        ``needed``: sensors the gate's chosen experts read this frame. ``condition``: the context
        head's condition estimate (None: no estimate, never a change). ``lost``: sensors reported
        degraded or lost this frame. ValueError for time going backwards or an unknown sensor.
        """
        needed, lost = set(needed), frozenset(lost)
        for name, group in (("needed", needed), ("lost", lost)):
            bad = sorted(group - set(self.sensors))
            if bad:
                raise ValueError(f"{name}: unknown sensor {bad[0]!r} (managed sensors: {', '.join(self.sensors)})")
        self._check_time(time_s)
        first = self._time_s is None
        self._time_s = time_s
        if first:
            for st in self._state.values():
                st.last_used_s = time_s  # a sensor is "unused" from the first frame the manager sees
        context_reason = self._context_change(time_s, condition, lost)
        if not self.config.enabled:
            return []

        commands: list[PowerCommand] = []
        for s in self.sensors:
            st = self._state[s]
            if s in needed:
                st.last_used_s, st.check_started_s = time_s, None  # a real use ends any re-check
                if st.standby:
                    # The gate should have routed around a standby sensor; wake it and say so.
                    commands.append(self._wake(s, time_s, "needed", check=False))
            elif st.standby and context_reason is not None and self.config.wake_on_context_change:
                commands.append(self._wake(s, time_s, context_reason, check=True))
            elif st.standby and time_s >= st.next_recheck_s - _TIME_EPS_S:
                commands.append(self._wake(s, time_s, "periodic_recheck", check=True))
            elif not st.standby and s not in self.config.always_on:
                reason = self._standby_reason(st, time_s)
                if reason is not None:
                    commands.append(self._sleep(s, time_s, reason))
        self.history.extend((time_s, c) for c in commands)
        return commands

    # ------------------------------------------------------------------ parts
    def _sensor(self, sensor: str) -> _Sensor:
        if sensor not in self._state:
            raise ValueError(f"unknown sensor {sensor!r} (managed sensors: {', '.join(self.sensors)})")
        return self._state[sensor]

    def _check_time(self, time_s: float) -> None:
        if self._time_s is not None and time_s < self._time_s:
            raise ValueError(f"time went backwards: {time_s} s after {self._time_s} s "
                             "(reset the manager when a bag loops or the clock jumps)")

    def _warming(self, st: _Sensor, time_s: float | None) -> bool:
        return (st.woken_s is not None and time_s is not None
                and time_s < st.woken_s + self.config.warmup_s - _TIME_EPS_S)

    def _context_change(self, time_s: float, condition: str | None, lost: frozenset[str]) -> str | None:
        """Reason to wake standby sensors this frame, or None. Updates the remembered context.

        A condition differing from the remembered one becomes it (a change) once estimated on
        every frame for ``context_change_min_s``; any other estimate in between restarts the wait.
        Only sensors that were fully on count as newly lost: a sensor in standby or warm-up is
        missing by our own choice, and counting it would wake everything in a loop."""
        reason = None
        if condition is not None:
            if self._condition is None or condition == self._condition:
                self._condition, self._new_condition = condition, None
            else:
                if self._new_condition is None or self._new_condition[0] != condition:
                    self._new_condition = (condition, time_s)
                if time_s - self._new_condition[1] >= self.config.context_change_min_s - _TIME_EPS_S:
                    reason = f"context_change:{condition}"
                    self._condition, self._new_condition = condition, None
        newly_lost = sorted(s for s in lost - self._lost
                            if not self._state[s].standby and not self._warming(self._state[s], self._time_s))
        if reason is None and newly_lost:
            reason = "sensor_lost:" + ",".join(newly_lost)
        self._lost = lost
        return reason

    def _standby_reason(self, st: _Sensor, time_s: float) -> str | None:
        if st.check_started_s is not None:
            if time_s - st.check_started_s >= self.config.recheck_duration_s - _TIME_EPS_S:
                return f"unused_during_recheck_{self.config.recheck_duration_s}s"
            return None
        if time_s - st.last_used_s >= self.config.standby_after_s - _TIME_EPS_S:
            return f"unused_for_{self.config.standby_after_s}s"
        return None

    def _wake(self, sensor: str, time_s: float, reason: str, *, check: bool) -> PowerCommand:
        st = self._state[sensor]
        st.closed_standby_s += time_s - st.standby_since_s
        st.standby, st.woken_s = False, time_s
        st.check_started_s = time_s if check else None
        return PowerCommand(sensor, "on", reason)

    def _sleep(self, sensor: str, time_s: float, reason: str) -> PowerCommand:
        st = self._state[sensor]
        # Re-checks are periodic between wake-ups; after a real use the period starts now.
        anchor = st.check_started_s if st.check_started_s is not None else time_s
        st.standby, st.standby_since_s = True, time_s
        st.next_recheck_s = anchor + self.config.recheck_period_s
        st.check_started_s = None
        return PowerCommand(sensor, "standby", reason)
