"""The energy ledger sums: per frame, per run, by component, exactly."""
from __future__ import annotations

import csv
import json
import math

import pytest

from fusion_core.energy.ledger import EnergyLedger, FrameEnergy, frame_energy
from fusion_core.energy.profile import DeviceProfile, SensorPower

# Dyadic numbers (exact in binary floating point) so expected sums are exact by hand.
PROFILE = DeviceProfile(name="test", compute_j_per_gflop=0.25, compute_idle_power_w=12.0,
                        sensor_power=SensorPower(rgb_w=2.0, depth_w=3.0, lidar_w=8.0, radar_w=6.5, imu_w=0.5))
PERIOD_S = 0.125


def _frame(flops: dict[str, int], sensors=("lidar", "radar", "imu"), latency_ms=10.0, measured_j=None):
    return frame_energy(PROFILE, flops, sensors, PERIOD_S, latency_ms, measured_j)


def test_frame_energy_applies_the_profile():
    f = _frame({"stem:lidar": 2_000_000_000, "gate": 4_000_000, "exit:0": 0})
    assert f.compute_j == {"stem:lidar": 0.5, "gate": 0.001, "exit:0": 0.0}
    assert f.sensor_j == {"lidar": 1.0, "radar": 0.8125, "imu": 0.0625}
    assert f.compute_total_j == 0.501
    assert f.sensor_total_j == 1.875
    assert f.total_j == 0.501 + 1.875
    assert f.latency_ms == 10.0 and f.measured_j is None


def test_frame_energy_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"unknown sensor 'sonar'"):
        _frame({}, sensors=("lidar", "sonar"))
    with pytest.raises(ValueError, match=r"flops_by_component\['gate'\]: FLOPs must be >= 0"):
        _frame({"gate": -1})
    with pytest.raises(ValueError, match=r"frame_period_s must be finite and >= 0"):
        frame_energy(PROFILE, {}, (), -0.1, 1.0)
    with pytest.raises(ValueError, match=r"'sensor:lidar': the prefix 'sensor:' is reserved"):
        FrameEnergy({"sensor:lidar": 1.0}, {}, 1.0)
    with pytest.raises(ValueError, match=r"latency_ms"):
        FrameEnergy({}, {}, -1.0)


def _three_frame_ledger() -> EnergyLedger:
    ledger = EnergyLedger(profile=PROFILE)
    ledger.add(_frame({"stem:lidar": 2_000_000_000, "expert:lidar_radar": 4_000_000_000, "exit:0": 1_000_000_000},
                      latency_ms=10.0, measured_j=3.0))
    ledger.add(_frame({"stem:lidar": 2_000_000_000, "exit:0": 1_000_000_000}, sensors=("lidar",), latency_ms=20.0))
    ledger.add(_frame({"stem:rgb": 8_000_000_000, "exit:0": 1_000_000_000, "exit:1": 2_000_000_000},
                      sensors=("rgb", "imu"), latency_ms=40.0, measured_j=5.5))
    return ledger


def test_ledger_totals_by_component_are_exact():
    ledger = _three_frame_ledger()
    assert ledger.n_frames == 3
    assert ledger.totals_j() == {
        "exit:0": 0.75, "exit:1": 0.5, "expert:lidar_radar": 1.0, "stem:lidar": 1.0, "stem:rgb": 2.0,
        "sensor:imu": 0.125, "sensor:lidar": 2.0, "sensor:radar": 0.8125, "sensor:rgb": 0.25,
    }
    assert ledger.total_j() == 5.25 + 3.1875
    assert ledger.measured_total_j() == 8.5
    assert ledger.mean_j_per_frame()["stem:lidar"] == 1.0 / 3
    assert ledger.mean_power_w(duration_s=0.5)["sensor:lidar"] == 4.0


def test_totals_do_not_drift_over_many_frames():
    """Ten frames of 0.1 J: a naive running sum gives 0.9999999999999999, the ledger 1.0."""
    ledger = EnergyLedger()
    for _ in range(10):
        ledger.add(FrameEnergy({"gate": 0.1}, {}, 1.0))
    assert sum([0.1] * 10) != 1.0
    assert ledger.totals_j() == {"gate": 1.0}
    assert ledger.total_j() == 1.0


def test_latency_percentiles():
    ledger = _three_frame_ledger()
    ledger.add(_frame({}, latency_ms=30.0))
    assert ledger.latency_ms_percentiles((50, 95)) == {50: 25.0, 95: 38.5}


def test_to_json_reports_idle_power_without_attributing_it():
    summary = _three_frame_ledger().to_json()
    json.dumps(summary)
    assert summary["n_frames"] == 3
    assert summary["compute_total_j"] == 5.25 and summary["sensor_total_j"] == 3.1875
    assert summary["total_j"] == 5.25 + 3.1875
    assert summary["latency_ms"] == {"p50": 20.0, "p95": 38.0}
    assert summary["device_profile"] == "test" and summary["compute_idle_power_w"] == 12.0
    assert not any("idle" in component for component in summary["totals_j"])


def test_empty_ledger():
    ledger = EnergyLedger()
    assert ledger.totals_j() == {} and ledger.total_j() == 0.0 and ledger.measured_total_j() is None
    assert ledger.to_json()["n_frames"] == 0
    with pytest.raises(ValueError, match="no frames"):
        ledger.mean_j_per_frame()


def test_csv_has_one_row_per_frame_and_a_column_per_component(tmp_path):
    ledger = _three_frame_ledger()
    path = tmp_path / "ledger.csv"
    ledger.write_csv(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["frame", "exit:0", "exit:1", "expert:lidar_radar", "stem:lidar", "stem:rgb",
                             "sensor:imu", "sensor:lidar", "sensor:radar", "sensor:rgb", "latency_ms", "measured_j"]
    assert len(rows) == 3
    assert rows[1]["expert:lidar_radar"] == "0.0" and rows[1]["sensor:radar"] == "0.0"
    assert rows[1]["measured_j"] == "" and float(rows[2]["measured_j"]) == 5.5
    for column, total in ledger.totals_j().items():
        assert math.fsum(float(r[column]) for r in rows) == total
