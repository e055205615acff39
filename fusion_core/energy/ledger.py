"""The energy ledger: joules by component per frame, and their totals over a run.

Component names (the keys of :attr:`FrameEnergy.compute_j`) are built by the functions and
constants of ``fusion_core.vocabulary`` (``stem_component``, ``expert_component``,
``exit_component``, ``gate_component``, ``CONTEXT_COMPONENT``, ``HEAD_ENTRY_COMPONENT``), so that
ledgers from different gates and runs line up column by column.

Any other string is allowed, except ``SENSOR_COMPONENT_PREFIX``: run totals key each sensor's
energy as ``"sensor:<sensor>"`` so compute and sensing stay distinguishable in one mapping.
The component -> joules mapping is the one catch-all dict the project passes between stages, on
purpose: which components exist depends on the model and the gate.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion_core.atomic_files import atomic_writer
from fusion_core.energy.profile import DeviceProfile, SensorPower

SENSOR_PREFIX = "sensor:"


def _check_joules(kind: str, values: Mapping[str, float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{kind}[{name!r}]: energy must be finite and >= 0 J, got {value!r}")


@dataclass(frozen=True)
class FrameEnergy:
    """What one frame cost: compute joules by component, sensor joules by sensor, latency."""

    compute_j: dict[str, float]          # component name (module doc's convention) -> J
    sensor_j: dict[str, float]           # sensor name ("lidar", ...) -> J, each sensor that was on
    latency_ms: float                    # measured end-to-end latency of the frame
    measured_j: float | None = None      # energy a real meter saw for the frame, if one was read

    def __post_init__(self):
        bad = sorted(name for name in self.compute_j if name.startswith(SENSOR_PREFIX))
        if bad:
            raise ValueError(f"compute component {bad[0]!r}: the prefix {SENSOR_PREFIX!r} is reserved for sensors")
        unknown = sorted(set(self.sensor_j) - set(SensorPower.sensor_names()))
        if unknown:
            raise ValueError(f"unknown sensor {unknown[0]!r} (known sensors: {', '.join(SensorPower.sensor_names())})")
        _check_joules("compute_j", self.compute_j)
        _check_joules("sensor_j", self.sensor_j)
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"latency_ms must be finite and >= 0, got {self.latency_ms!r}")
        if self.measured_j is not None and (not math.isfinite(self.measured_j) or self.measured_j < 0):
            raise ValueError(f"measured_j must be finite and >= 0 J, got {self.measured_j!r}")

    @property
    def compute_total_j(self) -> float:
        return math.fsum(self.compute_j.values())

    @property
    def sensor_total_j(self) -> float:
        return math.fsum(self.sensor_j.values())

    @property
    def total_j(self) -> float:
        return math.fsum([*self.compute_j.values(), *self.sensor_j.values()])

    def by_component_j(self) -> dict[str, float]:
        """Compute components as they are, sensors as ``"sensor:<name>"``: the ledger's row."""
        row = dict(self.compute_j)
        row.update({SENSOR_PREFIX + s: j for s, j in self.sensor_j.items()})
        return row


def frame_energy(profile: DeviceProfile, flops_by_component: Mapping[str, int], sensors_on: Iterable[str],
                 frame_period_s: float, latency_ms: float, measured_j: float | None = None) -> FrameEnergy:
    """One frame's ledger entry under ``profile``'s cost model.

    Compute: ``flops / 1e9 * profile.compute_j_per_gflop`` per component. Sensors: each sensor in
    ``sensors_on`` draws its power for the whole ``frame_period_s`` (a sensor that is on spends
    energy whether or not its stem runs). ValueError for an unknown sensor (named), negative FLOPs
    or a negative period.
    """
    if not math.isfinite(frame_period_s) or frame_period_s < 0:
        raise ValueError(f"frame_period_s must be finite and >= 0, got {frame_period_s!r}")
    compute_j = {}
    for component, flops in flops_by_component.items():
        if flops < 0:
            raise ValueError(f"flops_by_component[{component!r}]: FLOPs must be >= 0, got {flops!r}")
        compute_j[component] = flops / 1e9 * profile.compute_j_per_gflop
    sensor_j = {s: profile.sensor_power.power_w(s) * frame_period_s for s in sensors_on}
    return FrameEnergy(compute_j, sensor_j, latency_ms, measured_j)


@dataclass
class EnergyLedger:
    """Frames of one run and their totals by component (sensors keyed ``"sensor:<name>"``).

    Totals are exact sums (``math.fsum``: correctly rounded, independent of frame order). The
    frames are kept (O(frames) memory, a few hundred bytes each) for the CSV and the latency
    percentiles. ``profile``, when given, is only reported: its ``compute_idle_power_w`` is
    not attributed to any component.
    """

    profile: DeviceProfile | None = None
    frames: list[FrameEnergy] = field(default_factory=list)

    def add(self, frame: FrameEnergy) -> None:
        self.frames.append(frame)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def components(self) -> list[str]:
        """Every component seen in any frame: compute components sorted, then ``sensor:*`` sorted."""
        compute = sorted({c for f in self.frames for c in f.compute_j})
        sensors = sorted({SENSOR_PREFIX + s for f in self.frames for s in f.sensor_j})
        return compute + sensors

    def totals_j(self) -> dict[str, float]:
        """Joules by component over all frames (a component missing from a frame counts 0 there)."""
        rows = [f.by_component_j() for f in self.frames]
        return {c: math.fsum(r.get(c, 0.0) for r in rows) for c in self.components()}

    def total_j(self) -> float:
        """All attributed joules of the run, compute and sensors."""
        return math.fsum(j for f in self.frames for j in f.by_component_j().values())

    def measured_total_j(self) -> float | None:
        """Sum of the meter readings of the frames that have one; None when no frame has one."""
        readings = [f.measured_j for f in self.frames if f.measured_j is not None]
        return math.fsum(readings) if readings else None

    def mean_j_per_frame(self) -> dict[str, float]:
        """Joules per frame by component, averaged over all frames."""
        self._require_frames()
        return {c: j / self.n_frames for c, j in self.totals_j().items()}

    def mean_power_w(self, duration_s: float) -> dict[str, float]:
        """Average power by component over a run that lasted ``duration_s`` seconds."""
        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s!r}")
        return {c: j / duration_s for c, j in self.totals_j().items()}

    def latency_ms_percentiles(self, percentiles: Iterable[float] = (50, 95)) -> dict[float, float]:
        """Latency percentiles (linear interpolation between frames), keyed by the percentile asked for."""
        self._require_frames()
        latencies_ms = np.array([f.latency_ms for f in self.frames], dtype=np.float64)
        return {p: float(np.percentile(latencies_ms, p)) for p in percentiles}

    def to_json(self) -> dict:
        """A JSON-ready summary: totals, per-frame means, latency p50/p95, meter total, device."""
        summary = {
            "n_frames": self.n_frames,
            "totals_j": self.totals_j(),
            "total_j": self.total_j(),
            "compute_total_j": math.fsum(f.compute_total_j for f in self.frames),
            "sensor_total_j": math.fsum(f.sensor_total_j for f in self.frames),
            "mean_j_per_frame": self.mean_j_per_frame() if self.frames else {},
            "latency_ms": ({f"p{p:g}": v for p, v in self.latency_ms_percentiles((50, 95)).items()}
                           if self.frames else {}),
            "measured_total_j": self.measured_total_j(),
        }
        if self.profile is not None:
            summary["device_profile"] = self.profile.name
            # Reported for context; not part of any total (see fusion_core.energy.profile).
            summary["compute_idle_power_w"] = self.profile.compute_idle_power_w
        return summary

    def write_csv(self, path: str | Path) -> None:
        """One row per frame: ``frame``, one column per component seen in any frame (0 where a
        frame lacks it), ``latency_ms`` and ``measured_j`` (empty when not measured). Floats are
        written with ``repr`` so reading them back gives the same numbers."""
        columns = self.components()
        with atomic_writer(path, newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["frame", *columns, "latency_ms", "measured_j"])
            for i, frame in enumerate(self.frames):
                row = frame.by_component_j()
                measured = "" if frame.measured_j is None else repr(frame.measured_j)
                writer.writerow([i, *(repr(float(row.get(c, 0.0))) for c in columns),
                                 repr(float(frame.latency_ms)), measured])

    def _require_frames(self) -> None:
        if not self.frames:
            raise ValueError("the ledger has no frames yet")
