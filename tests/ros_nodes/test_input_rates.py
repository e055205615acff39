"""Per-input rate and stamp checks of fusion_node's /diagnostics, on synthetic arrivals with a
known answer."""
from __future__ import annotations

from ros_nodes.input_rates import OK, WARN, InputCheckConfig, InputRates

MS = 1_000_000


def feed(rates: InputRates, role: str, n: int, start_ms: int, period_ms: float, age_ms: float = 5.0) -> None:
    for k in range(n):
        stamp = round((start_ms + k * period_ms) * MS)
        rates.add(role, stamp, stamp + round(age_ms * MS))


def test_rates_and_stamp_ages_of_a_period():
    rates = InputRates(("lidar", "imu"), InputCheckConfig())
    feed(rates, "lidar", 10, 0, 100, age_ms=30)
    feed(rates, "imu", 200, 0, 5, age_ms=2)
    lidar, imu = rates.period(1.0)
    assert (lidar.role, lidar.messages, lidar.rate_hz, lidar.usual_rate_hz) == ("lidar", 10, 10.0, None)
    assert lidar.stamp_age_ms_max == lidar.stamp_age_ms_min == 30.0 and lidar.level == OK
    assert imu.rate_hz == 200.0
    # the next period starts empty and knows what is usual
    feed(rates, "lidar", 10, 1000, 100)
    feed(rates, "imu", 200, 1000, 5)
    lidar, imu = rates.period(1.0)
    assert lidar.usual_rate_hz == 10.0 and lidar.messages == 10 and lidar.level == OK


def test_a_silent_or_slowed_input_and_stale_or_future_stamps_warn():
    cfg = InputCheckConfig()
    rates = InputRates(("lidar", "radar", "rgb", "depth"), cfg)
    for second in range(3):  # three ordinary seconds
        for role, hz in (("lidar", 10), ("radar", 20), ("rgb", 10), ("depth", 10)):
            feed(rates, role, hz, 1000 * second, 1000 / hz)
        assert all(p.level == OK for p in rates.period(1.0))
    feed(rates, "radar", 4, 3000, 250)                  # 4 Hz, usually 20
    feed(rates, "rgb", 10, 3000, 100, age_ms=900)       # stamps 0.9 s old on arrival
    feed(rates, "depth", 10, 3000, 100, age_ms=-300)    # stamps 0.3 s ahead of the node's clock
    lidar, radar, rgb, depth = rates.period(1.0)        # and no LiDAR at all
    assert (lidar.level, lidar.problems) == (WARN, ["silent"])
    assert radar.level == WARN and radar.problems == ["4.0 Hz, usually 20.0 Hz"]
    assert rgb.level == WARN and rgb.problems == ["stamps up to 900 ms old"]
    assert depth.level == WARN and depth.problems == ["stamps 300 ms ahead of the clock"]
    # a silent second does not make silence usual
    lidar, *_ = rates.period(1.0)
    assert lidar.usual_rate_hz == 10.0 and lidar.problems == ["silent"]


def test_a_clock_jump_is_not_judged():
    rates = InputRates(("lidar",), InputCheckConfig())
    feed(rates, "lidar", 10, 0, 100)
    assert rates.period(1.7e9) == []   # the first /clock of a replay: from 0 to the bag's time
    feed(rates, "lidar", 10, 0, 100)
    (lidar,) = rates.period(1.0)
    assert lidar.messages == 10 and lidar.usual_rate_hz is None  # the jumped period left nothing behind
