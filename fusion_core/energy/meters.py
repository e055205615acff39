"""Real energy meters, when the machine has them: Intel RAPL and Jetson INA3221 power rails.

Every meter reads sysfs below an injectable root (``/sys`` by default), so tests build fake
trees. Constructing or detecting a meter never raises: a meter whose files exist but cannot be
read (RAPL's ``energy_uj`` is root-only since Linux 5.10) reports ``available = False`` with
the reason in ``unavailable_reason``. Using an unavailable meter (``start``, ``read_j``) raises
:class:`MeterUnavailableError` carrying that reason; a meter that fails mid-run turns
unavailable the same way.
"""
from __future__ import annotations

import errno
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

DEFAULT_SYSFS_ROOT = Path("/sys")

# Rails that carry the whole module's input on Jetson boards; when one is present it is used
# alone, because the other rails are parts of it and summing them would count twice.
JETSON_TOTAL_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_UNCONNECTED_RAIL = "NC"


class MeterUnavailableError(RuntimeError):
    """The meter cannot measure on this machine; the message says why."""


class EnergyMeter(ABC):
    """Joules since :meth:`start`, from a hardware counter or integrated power samples."""

    name: str = "meter"

    def __init__(self):
        self._reason: str | None = None

    @property
    @abstractmethod
    def present(self) -> bool:
        """The hardware's sysfs files exist (whether or not they can be read)."""

    @property
    def available(self) -> bool:
        """The meter can measure: present and readable."""
        return self.present and self._reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """Why the meter cannot measure (None when it can)."""
        if not self.present:
            return self._absent_reason()
        return self._reason

    @abstractmethod
    def start(self) -> None:
        """Take the reference reading; :meth:`read_j` counts from here."""

    @abstractmethod
    def read_j(self) -> float:
        """Joules spent since :meth:`start`."""

    @abstractmethod
    def _absent_reason(self) -> str: ...

    def _require_available(self) -> None:
        if not self.available:
            raise MeterUnavailableError(f"{self.name}: {self.unavailable_reason}")

    def _fail(self, reason: str) -> MeterUnavailableError:
        self._reason = reason
        return MeterUnavailableError(f"{self.name}: {reason}")


def _read_text(path: Path) -> str:
    return path.read_text().strip()


def _describe_os_error(path: Path, exc: OSError) -> str:
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied"
    return f"{path}: {exc.strerror or exc}"


class RaplMeter(EnergyMeter):
    """Intel RAPL package energy counters under ``<root>/class/powercap/intel-rapl:N``.

    Only top-level package domains (``intel-rapl:N`` named ``package-*``) are summed: the
    ``intel-rapl:N:M`` subdomains (core, uncore, dram) and a top-level ``psys`` domain are parts or
    supersets of the packages, so adding them would count joules twice. ``energy_uj`` wraps to 0
    after ``max_energy_range_uj``; each read adds the delta modulo that range, so reads must come
    at least once per wrap period (minutes to hours at package power), which per-frame reads do.
    """

    name = "rapl"

    def __init__(self, sysfs_root: Path = DEFAULT_SYSFS_ROOT):
        super().__init__()
        self.powercap_dir = Path(sysfs_root) / "class" / "powercap"
        self.domains: list[Path] = self._package_domains()
        self._range_uj: dict[Path, int] = {}
        self._last_uj: dict[Path, int] | None = None
        self._total_uj = 0
        if self.domains:
            self._probe()

    def _package_domains(self) -> list[Path]:
        if not self.powercap_dir.is_dir():
            return []
        found = []
        for path in sorted(self.powercap_dir.glob("intel-rapl:*")):
            if not re.fullmatch(r"intel-rapl:\d+", path.name):
                continue  # a subdomain (intel-rapl:N:M): part of its package
            try:
                domain_name = _read_text(path / "name")
            except OSError:
                continue
            if domain_name.startswith("package"):
                found.append(path)
        return found

    @property
    def present(self) -> bool:
        return bool(self.domains)

    def _absent_reason(self) -> str:
        return f"no RAPL package domains under {self.powercap_dir}"

    def _probe(self) -> None:
        try:
            for domain in self.domains:
                self._range_uj[domain] = int(_read_text(domain / "max_energy_range_uj"))
                int(_read_text(domain / "energy_uj"))
        except OSError as exc:
            self._reason = _describe_os_error(Path(exc.filename or domain), exc)
            if "permission denied" in self._reason:
                self._reason += " (RAPL energy counters are readable by root only since Linux 5.10)"
        except ValueError as exc:
            self._reason = f"{domain}: unreadable counter ({exc})"

    def _read_counters_uj(self) -> dict[Path, int]:
        try:
            return {d: int(_read_text(d / "energy_uj")) for d in self.domains}
        except OSError as exc:
            raise self._fail(_describe_os_error(Path(exc.filename or self.powercap_dir), exc)) from exc
        except ValueError as exc:
            raise self._fail(f"unreadable counter ({exc})") from exc

    def start(self) -> None:
        self._require_available()
        self._last_uj = self._read_counters_uj()
        self._total_uj = 0

    def read_j(self) -> float:
        self._require_available()
        if self._last_uj is None:
            raise RuntimeError(f"{self.name}: call start() before read_j()")
        now_uj = self._read_counters_uj()
        for domain, now in now_uj.items():
            last = self._last_uj[domain]
            # A smaller reading means the counter wrapped past max_energy_range_uj back to 0.
            self._total_uj += now - last if now >= last else now + self._range_uj[domain] - last
        self._last_uj = now_uj
        return self._total_uj / 1e6


class _Rail:
    """One INA3221 channel: its label and how to read its power in watts."""

    def __init__(self, label: str, read_power_w: Callable[[], float], source: Path):
        self.label = label
        self.read_power_w = read_power_w
        self.source = source


def _hwmon_rails(sysfs_root: Path) -> list[_Rail]:
    """Newer L4T: ``ina3221/*/hwmon/hwmon*/in{N}_label``, ``in{N}_input`` (mV), ``curr{N}_input`` (mA)."""
    rails = []
    for hwmon in sorted((sysfs_root / "bus" / "i2c" / "drivers" / "ina3221").glob("*/hwmon/hwmon*")):
        for label_file in sorted(hwmon.glob("in*_label")):
            channel = re.fullmatch(r"in(\d+)_label", label_file.name)
            if channel is None:
                continue
            volts_file, amps_file = hwmon / f"in{channel[1]}_input", hwmon / f"curr{channel[1]}_input"
            if not (volts_file.exists() and amps_file.exists()):
                continue

            def read_power_w(v=volts_file, a=amps_file) -> float:
                return int(_read_text(v)) * int(_read_text(a)) / 1e6  # mV * mA = uW

            rails.append(_Rail(_read_text(label_file), read_power_w, label_file))
    return rails


def _iio_rails(sysfs_root: Path) -> list[_Rail]:
    """Older L4T: ``ina3221x/*/iio:device*/rail_name_{N}`` and ``in_power{N}_input`` (mW)."""
    rails = []
    for device in sorted((sysfs_root / "bus" / "i2c" / "drivers" / "ina3221x").glob("*/iio:device*")):
        for name_file in sorted(device.glob("rail_name_*")):
            channel = re.fullmatch(r"rail_name_(\d+)", name_file.name)
            if channel is None:
                continue
            power_file = device / f"in_power{channel[1]}_input"
            if not power_file.exists():
                continue

            def read_power_w(p=power_file) -> float:
                return int(_read_text(p)) / 1e3

            rails.append(_Rail(_read_text(name_file), read_power_w, name_file))
    return rails


class JetsonRailMeter(EnergyMeter):
    """Jetson INA3221 power rails (hwmon on newer L4T, iio ``ina3221x`` on older), integrated.

    The rails give power, not energy, so joules are integrated with the trapezoid rule between
    consecutive samples: each :meth:`read_j` samples every rail and adds
    ``(P_prev + P_now) / 2 * (t_now - t_prev)``. Accuracy therefore depends on how often
    ``read_j`` is called relative to how fast the load changes: call it every frame. ``clock``
    (seconds, monotonic) is injectable so tests control time.

    ``rails`` picks the labels to sum; by default the module input rail (``VDD_IN`` or
    ``POM_5V_IN``) alone if the board has one, else every connected rail (labels other than
    ``NC``), whose sum approximates the module.
    """

    name = "jetson_rails"

    def __init__(self, sysfs_root: Path = DEFAULT_SYSFS_ROOT, rails: tuple[str, ...] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.sysfs_root = Path(sysfs_root)
        self.clock = clock
        self.rails: list[_Rail] = []
        self._last_t_s: float | None = None
        self._last_power_w = 0.0
        self._energy_j = 0.0
        try:
            found = _hwmon_rails(self.sysfs_root) or _iio_rails(self.sysfs_root)
        except OSError as exc:
            self._found_any = True
            self._reason = _describe_os_error(Path(exc.filename or self.sysfs_root), exc)
            return
        self._found_any = bool(found)
        if found:
            self.rails = self._select(found, rails)
            if self._reason is None:
                self._probe()

    def _select(self, found: list[_Rail], wanted: tuple[str, ...] | None) -> list[_Rail]:
        connected = [r for r in found if r.label != _UNCONNECTED_RAIL]
        labels = [r.label for r in connected]
        if wanted is not None:
            missing = [w for w in wanted if w not in labels]
            if missing:
                self._reason = f"no rail {missing[0]!r} (rails on this board: {', '.join(labels)})"
                return []
            return [r for r in connected if r.label in wanted]
        for total in JETSON_TOTAL_INPUT_RAILS:
            if total in labels:
                return [r for r in connected if r.label == total]
        return connected

    def _probe(self) -> None:
        try:
            self._sample_power_w()
        except MeterUnavailableError:
            pass  # _fail recorded the reason

    @property
    def present(self) -> bool:
        return self._found_any

    def _absent_reason(self) -> str:
        drivers = self.sysfs_root / "bus" / "i2c" / "drivers"
        return f"no INA3221 rails under {drivers / 'ina3221'} or {drivers / 'ina3221x'}"

    @property
    def rail_labels(self) -> list[str]:
        return [r.label for r in self.rails]

    @property
    def last_power_w(self) -> float:
        """Summed power of the chosen rails at the latest sample."""
        return self._last_power_w

    def _sample_power_w(self) -> float:
        total_w = 0.0
        for rail in self.rails:
            try:
                total_w += rail.read_power_w()
            except OSError as exc:
                raise self._fail(_describe_os_error(Path(exc.filename or rail.source), exc)) from exc
            except ValueError as exc:
                raise self._fail(f"rail {rail.label}: unreadable value ({exc})") from exc
        return total_w

    def start(self) -> None:
        self._require_available()
        self._last_power_w = self._sample_power_w()
        self._last_t_s = self.clock()
        self._energy_j = 0.0

    def read_j(self) -> float:
        self._require_available()
        if self._last_t_s is None:
            raise RuntimeError(f"{self.name}: call start() before read_j()")
        power_w = self._sample_power_w()
        t_s = self.clock()
        if t_s < self._last_t_s:
            raise RuntimeError(f"{self.name}: the clock went backwards ({self._last_t_s} -> {t_s})")
        self._energy_j += 0.5 * (self._last_power_w + power_w) * (t_s - self._last_t_s)
        self._last_power_w, self._last_t_s = power_w, t_s
        return self._energy_j


def detect_meter(sysfs_root: Path = DEFAULT_SYSFS_ROOT,
                 clock: Callable[[], float] = time.monotonic) -> EnergyMeter | None:
    """The machine's energy meter: the first available of Jetson rails and RAPL.

    When meters are present but none can be read, the first present one is returned so that its
    ``unavailable_reason`` can be reported (check ``available``); None when the machine has none.
    """
    candidates: list[EnergyMeter] = [JetsonRailMeter(sysfs_root, clock=clock), RaplMeter(sysfs_root)]
    present = [m for m in candidates if m.present]
    for meter in present:
        if meter.available:
            return meter
    return present[0] if present else None
