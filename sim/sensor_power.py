"""The simulated sensors' side of power gating: power states driven by "on"/"standby" requests.

This is the driver contract of ``docs/sensor_power_gating.md`` for the simulator, without ROS
(``ros_nodes.sim_node`` wires it to the request and state topics, whose names and message type
are in ``fusion_core.data.topics``). States:

    on        data is published
    standby   no data at all (and the simulator skips the sensor's ray casting)
    warming   woken: data is withheld until ``warmup_s`` of scenario time has passed, then the
              sensor reports "on" together with its first valid message

Timing. A request is recorded when it arrives and takes effect at the next frame boundary
(:meth:`begin_frame`), so what a frame contains depends on the frame, not on where in it the
request landed. One thing happens at once: a sensor in standby that is asked "on" reports
"warming" immediately (the contract asks for it within 0.1 s; a frame boundary can be further
away when the scenario runs slower than real time). The warm-up counts from the boundary where
the request takes effect. Of several requests before one boundary the last wins.

Whether a data message goes out is decided when it is due (:meth:`admit`), from its capture
time: a message of a sensor in standby is dropped even if it was captured before the standby
(a late delivery), so no data ever follows a "standby" state on the wire.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from fusion_core.vocabulary import POWER_REQUESTS

# Slack on capture-time comparisons: capture times are float sums (phase + k / rate); a capture
# "at" the end of the warm-up must not be withheld by a rounding error. Far below any period.
_TIME_EPS_S = 1e-6


@dataclass(frozen=True)
class PowerStateChange:
    """A state a sensor reports now (publish it on ``/sensors/<sensor>/power/state``)."""

    sensor: str
    state: str  # one of fusion_core.vocabulary.POWER_STATES


class SensorPowerSwitch:
    """Power states of ``sensors`` (all start "on"); ``warmup_s`` is the scenario time a woken
    sensor withholds data. Every method returns the state changes to report, in order."""

    def __init__(self, sensors: Iterable[str], warmup_s: float):
        if not warmup_s >= 0:
            raise ValueError(f"warmup_s must be >= 0, got {warmup_s!r}")
        self.warmup_s = float(warmup_s)
        self._state: dict[str, str] = {s: "on" for s in sensors}
        self._reported: dict[str, str] = dict(self._state)
        self._pending: dict[str, str] = {}          # sensor -> last request since the last boundary
        self._valid_from_s: dict[str, float] = {}   # warming sensor -> first capture time with valid data
        self.unknown_requests: Counter[str] = Counter()  # request text -> times received
        self.standby_frames: Counter[str] = Counter()    # sensor -> frames begun in standby

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(self._state)

    def state(self, sensor: str) -> str:
        """The state the sensor last reported."""
        return self._reported[sensor]

    def initial_states(self) -> list[PowerStateChange]:
        """Every sensor's state, to report once at start-up."""
        return [PowerStateChange(s, state) for s, state in self._reported.items()]

    def request(self, sensor: str, text: str) -> list[PowerStateChange]:
        """Record a request for ``sensor``. Text other than "on"/"standby" is counted in
        :attr:`unknown_requests` and otherwise ignored; an unknown sensor is a KeyError."""
        if sensor not in self._state:
            raise KeyError(f"unknown sensor {sensor!r} (known: {', '.join(self._state)})")
        if text not in POWER_REQUESTS:
            self.unknown_requests[text] += 1
            return []
        self._pending[sensor] = text
        if text == "on" and self._reported[sensor] == "standby":
            return self._report(sensor, "warming")
        return []

    def begin_frame(self, frame_time_s: float) -> list[PowerStateChange]:
        """Apply the requests received since the last boundary, at scenario time ``frame_time_s``."""
        changes = []
        for sensor, text in self._pending.items():
            if text == "standby":
                self._state[sensor] = "standby"
                self._valid_from_s.pop(sensor, None)
                changes += self._report(sensor, "standby")
            elif self._state[sensor] == "standby":  # "on": wake up (a repeated "on" is a no-op)
                self._state[sensor] = "warming"
                self._valid_from_s[sensor] = frame_time_s + self.warmup_s
                changes += self._report(sensor, "warming")
        self._pending.clear()
        self.standby_frames.update(s for s, state in self._state.items() if state == "standby")
        return changes

    def admit(self, sensor: str, capture_time_s: float) -> tuple[bool, list[PowerStateChange]]:
        """Whether a data message of ``sensor`` captured at ``capture_time_s`` goes out now; the
        first one after a warm-up turns the sensor "on" (report that change before the data)."""
        state = self._state[sensor]
        if state == "on":
            return True, []
        if state == "warming" and capture_time_s >= self._valid_from_s[sensor] - _TIME_EPS_S:
            self._state[sensor] = "on"
            del self._valid_from_s[sensor]
            return True, self._report(sensor, "on")
        return False, []

    def capture_sensors(self) -> frozenset[str]:
        """Sensors whose data may be published in the coming frames (those to simulate): every
        sensor that is not in standby, nor about to be, or that has been asked "on"."""
        return frozenset(s for s, state in self._state.items()
                         if self._pending.get(s, "on" if state != "standby" else "standby") == "on")

    def _report(self, sensor: str, state: str) -> list[PowerStateChange]:
        if self._reported[sensor] == state:
            return []
        self._reported[sensor] = state
        return [PowerStateChange(sensor, state)]
