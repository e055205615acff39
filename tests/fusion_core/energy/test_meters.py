"""Energy meters on fake sysfs trees: RAPL counters (with wrap-around and missing permissions),
Jetson INA3221 rails integrated over a controlled clock, and detection."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusion_core.energy.meters import (
    JetsonRailMeter,
    MeterUnavailableError,
    RaplMeter,
    detect_meter,
)

MAX_RANGE_UJ = 1_000_000


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


def _rapl_domain(root: Path, domain: str, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    folder = root / "class" / "powercap" / domain
    _write(folder / "name", name)
    _write(folder / "energy_uj", energy_uj)
    _write(folder / "max_energy_range_uj", max_range_uj)
    return folder


@pytest.fixture
def rapl_root(tmp_path):
    """Two packages, plus a core subdomain, a psys domain and an MMIO duplicate that must not count."""
    _rapl_domain(tmp_path, "intel-rapl:0", "package-0", 100_000)
    _rapl_domain(tmp_path, "intel-rapl:1", "package-1", 500_000)
    _rapl_domain(tmp_path, "intel-rapl:0:0", "core", 50_000)
    _rapl_domain(tmp_path, "intel-rapl:2", "psys", 900_000)
    _rapl_domain(tmp_path, "intel-rapl-mmio:0", "package-0", 100_000)
    return tmp_path


def _set_energy(root: Path, domain: str, energy_uj: int) -> None:
    _write(root / "class" / "powercap" / domain / "energy_uj", energy_uj)


def test_rapl_sums_package_domains_only(rapl_root):
    meter = RaplMeter(rapl_root)
    assert meter.available and meter.unavailable_reason is None
    assert [d.name for d in meter.domains] == ["intel-rapl:0", "intel-rapl:1"]
    meter.start()
    assert meter.read_j() == 0.0
    _set_energy(rapl_root, "intel-rapl:0", 350_000)
    _set_energy(rapl_root, "intel-rapl:1", 750_000)
    for noise in ("intel-rapl:0:0", "intel-rapl:2", "intel-rapl-mmio:0"):
        _set_energy(rapl_root, noise, 999_999)
    assert meter.read_j() == 0.5  # 0.25 J + 0.25 J
    _set_energy(rapl_root, "intel-rapl:1", 1_000_000)
    assert meter.read_j() == 0.75


def test_rapl_counter_wraps_around(rapl_root):
    meter = RaplMeter(rapl_root)
    _set_energy(rapl_root, "intel-rapl:0", 900_000)
    meter.start()
    _set_energy(rapl_root, "intel-rapl:0", 100_000)  # passed max_energy_range_uj and restarted at 0
    assert meter.read_j() == 0.2
    _set_energy(rapl_root, "intel-rapl:0", 400_000)
    assert meter.read_j() == 0.5


def test_rapl_read_before_start_is_an_error(rapl_root):
    with pytest.raises(RuntimeError, match=r"call start\(\)"):
        RaplMeter(rapl_root).read_j()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode, so chmod 000 cannot deny it")
def test_rapl_unreadable_counter_by_mode_makes_it_unavailable(rapl_root):
    counter = rapl_root / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    counter.chmod(0)
    try:
        meter = RaplMeter(rapl_root)
        assert meter.present and not meter.available
        assert "permission denied" in meter.unavailable_reason and "energy_uj" in meter.unavailable_reason
    finally:
        counter.chmod(0o644)


def test_rapl_permission_denied_makes_it_unavailable(rapl_root, monkeypatch):
    """The same as the chmod test, for any user: the counter read raises PermissionError."""
    counter = rapl_root / "class" / "powercap" / "intel-rapl:1" / "energy_uj"
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == counter:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    meter = RaplMeter(rapl_root)
    assert meter.present and not meter.available
    assert meter.unavailable_reason.startswith(f"{counter}: permission denied")
    assert "root only" in meter.unavailable_reason
    with pytest.raises(MeterUnavailableError, match="permission denied"):
        meter.start()
    assert detect_meter(rapl_root) is not None and not detect_meter(rapl_root).available


def test_rapl_failing_mid_run_turns_unavailable(rapl_root):
    meter = RaplMeter(rapl_root)
    meter.start()
    counter = rapl_root / "class" / "powercap" / "intel-rapl:0" / "energy_uj"
    counter.unlink()
    counter.mkdir()  # reading a directory fails for root too
    with pytest.raises(MeterUnavailableError, match="energy_uj"):
        meter.read_j()
    assert not meter.available and "energy_uj" in meter.unavailable_reason


class FakeClock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _hwmon_rail(root: Path, device: str, channel: int, label: str, mv: int, ma: int) -> Path:
    hwmon = root / "bus" / "i2c" / "drivers" / "ina3221" / device / "hwmon" / "hwmon3"
    _write(hwmon / f"in{channel}_label", label)
    _write(hwmon / f"in{channel}_input", mv)
    _write(hwmon / f"curr{channel}_input", ma)
    return hwmon


def test_jetson_integrates_power_with_the_trapezoid_rule(tmp_path):
    hwmon = _hwmon_rail(tmp_path, "1-0040", 1, "VDD_IN", 5000, 2000)          # 10 W: the module input
    _hwmon_rail(tmp_path, "1-0040", 2, "VDD_CPU_GPU_CV", 5000, 1000)          # part of VDD_IN
    _hwmon_rail(tmp_path, "1-0040", 3, "VDD_SOC", 5000, 400)
    clock = FakeClock()
    meter = JetsonRailMeter(tmp_path, clock=clock)
    assert meter.available and meter.rail_labels == ["VDD_IN"]
    meter.start()
    clock.now_s = 2.0
    assert meter.read_j() == 20.0                       # constant 10 W for 2 s
    _write(hwmon / "curr1_input", 4000)                 # 20 W now
    clock.now_s = 3.0
    assert meter.read_j() == 35.0                       # + (10 + 20) / 2 W * 1 s
    assert meter.last_power_w == 20.0


def test_jetson_without_an_input_rail_sums_the_connected_rails(tmp_path):
    _hwmon_rail(tmp_path, "1-0040", 1, "VDD_GPU_SOC", 5000, 1000)
    _hwmon_rail(tmp_path, "1-0040", 2, "VDD_CPU_CV", 5000, 600)
    _hwmon_rail(tmp_path, "1-0040", 3, "VIN_SYS_5V0", 5000, 400)
    _hwmon_rail(tmp_path, "1-0041", 1, "NC", 0, 0)
    clock = FakeClock()
    meter = JetsonRailMeter(tmp_path, clock=clock)
    assert meter.rail_labels == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    meter.start()
    clock.now_s = 0.5
    assert meter.read_j() == 5.0                        # 10 W for 0.5 s


def test_jetson_legacy_iio_rails(tmp_path):
    device = tmp_path / "bus" / "i2c" / "drivers" / "ina3221x" / "0-0040" / "iio:device0"
    _write(device / "rail_name_0", "POM_5V_IN")
    _write(device / "in_power0_input", 6000)            # mW
    _write(device / "rail_name_1", "POM_5V_GPU")
    _write(device / "in_power1_input", 2000)
    clock = FakeClock()
    meter = JetsonRailMeter(tmp_path, clock=clock)
    assert meter.rail_labels == ["POM_5V_IN"]
    meter.start()
    clock.now_s = 4.0
    assert meter.read_j() == 24.0
    assert JetsonRailMeter(tmp_path, rails=("POM_5V_GPU",), clock=clock).rail_labels == ["POM_5V_GPU"]


def test_jetson_unknown_rail_is_named(tmp_path):
    _hwmon_rail(tmp_path, "1-0040", 1, "VDD_IN", 5000, 2000)
    meter = JetsonRailMeter(tmp_path, rails=("VDD_GPU",))
    assert meter.present and not meter.available
    assert meter.unavailable_reason == "no rail 'VDD_GPU' (rails on this board: VDD_IN)"


def test_detect_meter_picks_what_exists(tmp_path, rapl_root):
    assert detect_meter(tmp_path / "empty") is None
    assert isinstance(detect_meter(rapl_root), RaplMeter)
    jetson_root = tmp_path / "jetson"
    _hwmon_rail(jetson_root, "1-0040", 1, "VDD_IN", 5000, 2000)
    assert isinstance(detect_meter(jetson_root), JetsonRailMeter)
    absent = RaplMeter(tmp_path / "empty")
    assert not absent.present and not absent.available
    assert "no RAPL package domains under" in absent.unavailable_reason
