"""StampSynchroniser on hand-made and seeded random streams: partners, absences, drops, IMU
windows and the accounting identity received == joined + dropped + pending."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusion_core.config_io import ConfigError, from_mapping
from ros_nodes.stamp_sync import (
    ABSENCE_REASONS,
    DROP_CAUSES,
    StampSyncConfig,
    StampSynchroniser,
    SyncedFrame,
)

MS = 1_000_000  # ns per millisecond
ROLES = ("lidar", "radar", "rgb", "depth", "imu")


def stream(rate_hz: float, start_ms: int, end_ms: int, phase_ms: float = 0.0, jitter_ms: float = 0.0,
           rng: np.random.Generator | None = None) -> list[int]:
    """Stamps [ns] of a periodic stream over [start_ms, end_ms), each moved by up to +-jitter_ms."""
    period = round(1e9 / rate_hz)
    first = start_ms * MS + round(phase_ms * MS)
    stamps = list(range(first, end_ms * MS, period))
    if jitter_ms:
        j = round(jitter_ms * MS)
        stamps = [t + int(d) for t, d in zip(stamps, rng.integers(-j, j + 1, len(stamps)))]
    return stamps


def feed(sync: StampSynchroniser, arrivals: list[tuple[str, int]]) -> list[tuple[int, SyncedFrame]]:
    """Feed (role, stamp) pairs in the given order, message = (role, stamp); returns
    (stamp of the message whose add() emitted the frame, frame) in emission order."""
    out = []
    for role, t in arrivals:
        out += [(t, f) for f in sync.add(role, t, (role, t))]
    return out


def bag_order(streams: dict[str, list[int]]) -> list[tuple[str, int]]:
    """Arrival in stamp order, as a bag recorded with negligible latency replays."""
    return sorted(((role, t) for role, ts in streams.items() for t in ts), key=lambda rt: rt[1])


def nearest(stamps: list[int], pivot_ns: int, pivots: list[int], tol_ns: int) -> int | None:
    """Brute-force partner: among the stamps whose nearest pivot (ties: older) is pivot_ns and
    that lie within tolerance, the nearest (ties: older)."""
    def owner(t):
        return min(pivots, key=lambda p: (abs(t - p), p))
    ok = [t for t in stamps if abs(t - pivot_ns) <= tol_ns and owner(t) == pivot_ns]
    return min(ok, key=lambda t: (abs(t - pivot_ns), t)) if ok else None


def config(**overrides) -> StampSyncConfig:
    return dataclasses.replace(StampSyncConfig(), **overrides)


# ------------------------------------------------------------------ matching
def five_streams(rng) -> dict[str, list[int]]:
    return {
        "lidar": stream(10, 0, 3000, jitter_ms=3, rng=rng),
        # 20 Hz: two radar messages within tolerance of every pivot (d ~ 12 and ~ 38 ms)
        "radar": stream(20, -200, 3200, phase_ms=12, jitter_ms=2, rng=rng),
        "rgb": stream(10, -200, 3200, phase_ms=-20, jitter_ms=3, rng=rng),
        "depth": stream(10, -200, 3200, phase_ms=15, jitter_ms=3, rng=rng),
        "imu": stream(200, -200, 3200, phase_ms=1),
    }


def test_in_order_jittered_streams_give_one_frame_per_pivot_with_the_nearest_partners():
    streams = five_streams(np.random.default_rng(1))
    cfg = config()
    sync = StampSynchroniser(cfg)
    emitted = feed(sync, bag_order(streams))
    frames = [f for _, f in emitted] + sync.flush()

    assert [f.stamp_ns for f in frames] == streams["lidar"]
    for trigger_ns, f in emitted:
        assert trigger_ns < f.stamp_ns + cfg.max_wait_ns  # complete, not timed out
    for f in frames:
        assert f.absent == {}
        assert f.messages["lidar"] == ("lidar", f.stamp_ns)
        for role in ("radar", "rgb", "depth"):
            want = nearest(streams[role], f.stamp_ns, streams["lidar"], cfg.tolerance_ns)
            assert f.stamps_ns[role] == want and f.messages[role] == (role, want), role
        assert f.imu and all(f.stamp_ns - cfg.imu_window_ns < t <= f.stamp_ns for t, _ in f.imu)
    # the radar 38 ms away from each pivot was left behind by the nearer one
    assert sync.drops[("radar", "unmatched")] >= len(streams["lidar"]) - 1


def test_frames_do_not_depend_on_how_the_streams_interleave():
    streams = five_streams(np.random.default_rng(2))
    latency_ms = {"lidar": 40, "radar": 5, "rgb": 25, "depth": 30, "imu": 0}  # per-topic delivery delay
    live = sorted(bag_order(streams), key=lambda rt: rt[1] + latency_ms[rt[0]] * MS)
    assert live != bag_order(streams)

    def run(arrivals):
        sync = StampSynchroniser(config())
        frames = [f for _, f in feed(sync, arrivals)] + sync.flush()
        return [(f.stamp_ns, f.stamps_ns, [t for t, _ in f.imu], f.absent) for f in frames]

    assert run(live) == run(bag_order(streams))


def test_wait_for_nearest_waits_for_a_nearer_partner_and_greedy_does_not():
    arrivals = [("rgb", 970 * MS), ("lidar", 1000 * MS), ("rgb", 1010 * MS)]
    exact = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role=""))
    greedy = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role="", wait_for_nearest=False))

    emitted = feed(exact, arrivals)
    # rgb at 970 ms cannot be confirmed until the rgb stream passes 1030 ms or 1010 ms arrives
    assert [(t, f.stamps_ns["rgb"]) for t, f in emitted] == [(1010 * MS, 1010 * MS)]
    assert exact.drops == {("rgb", "unmatched"): 1}

    emitted = feed(greedy, arrivals)
    assert [(t, f.stamps_ns["rgb"]) for t, f in emitted] == [(1000 * MS, 970 * MS)]
    assert greedy.pending_count("rgb") == 1  # 1010 ms waits for the next frame (or its eviction)


def test_ties_go_to_the_older_message_and_the_older_frame():
    sync = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role=""))
    emitted = feed(sync, [("rgb", 990 * MS), ("rgb", 1010 * MS), ("lidar", 1000 * MS)])
    assert [f.stamps_ns["rgb"] for _, f in emitted] == [990 * MS]

    # rgb 1050 ms lies exactly between two pending pivots: it belongs to the older one
    sync = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role="", tolerance_s=0.06))
    emitted = feed(sync, [("lidar", 1000 * MS), ("lidar", 1100 * MS), ("rgb", 1050 * MS), ("rgb", 1170 * MS)])
    assert [(f.stamp_ns, f.stamps_ns.get("rgb"), f.absent) for _, f in emitted] == [
        (1000 * MS, 1050 * MS, {}), (1100 * MS, None, {"rgb": "missing"})]


def test_a_message_nearer_the_next_pending_pivot_is_left_for_it():
    sync = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role="", tolerance_s=0.06))
    emitted = feed(sync, [("lidar", 1000 * MS), ("lidar", 1100 * MS), ("rgb", 1055 * MS), ("rgb", 1170 * MS)])
    assert [(f.stamp_ns, f.stamps_ns.get("rgb"), f.absent) for _, f in emitted] == [
        (1000 * MS, None, {"rgb": "missing"}), (1100 * MS, 1055 * MS, {})]


def test_a_message_nearer_an_emitted_frame_does_not_join_the_next_one():
    sync = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role="", tolerance_s=0.06))
    assert len(feed(sync, [("lidar", 1000 * MS), ("rgb", 1000 * MS)])) == 1
    # 1045 ms is within tolerance of 1100 ms but nearer 1000 ms, whose frame took 1000 ms
    emitted = feed(sync, [("rgb", 1045 * MS), ("lidar", 1100 * MS), ("rgb", 1170 * MS)])
    assert [(f.stamp_ns, f.absent) for _, f in emitted] == [(1100 * MS, {"rgb": "missing"})]
    assert sync.drops == {("rgb", "unmatched"): 1}


# ------------------------------------------------------------------ absent roles
def three_roles(**overrides) -> StampSyncConfig:
    return config(roles=("lidar", "radar", "rgb"), imu_role="", **overrides)


def test_timeout_fires_exactly_at_max_wait():
    cfg = three_roles()
    sync = StampSynchroniser(cfg)
    assert feed(sync, [("lidar", 1000 * MS), ("rgb", 1000 * MS), ("rgb", 1149 * MS)]) == []
    ((_, f),) = feed(sync, [("rgb", 1150 * MS)])  # 1000 ms + max_wait (150 ms)
    assert f.absent == {"radar": "timeout"} and f.stamps_ns["rgb"] == 1000 * MS


def test_dead_radar_gives_frames_without_radar_after_max_wait():
    cfg = three_roles()
    streams = {
        "lidar": stream(10, 0, 3000),
        "rgb": stream(10, 0, 3000, phase_ms=5),
        "radar": stream(10, 0, 1000, phase_ms=10),  # the radar dies at 1 s
    }
    arrivals = bag_order(streams)
    emitted = feed(StampSynchroniser(cfg), arrivals)
    assert len(emitted) == len(streams["lidar"]) - 2  # the last two are still waiting

    fed = [t for _, t in arrivals]
    for trigger_ns, f in emitted:
        if f.stamp_ns < 1000 * MS:
            assert f.absent == {} and f.stamps_ns["radar"] == f.stamp_ns + 10 * MS
            continue
        assert f.absent == {"radar": "timeout"} and "radar" not in f.messages
        assert f.stamps_ns["rgb"] == f.stamp_ns + 5 * MS
        # emitted by the first message at or past pivot + max_wait, not before
        assert trigger_ns >= f.stamp_ns + cfg.max_wait_ns
        assert fed[fed.index(trigger_ns) - 1] < f.stamp_ns + cfg.max_wait_ns


def test_one_dropped_radar_message_is_missing_without_waiting_for_the_timeout():
    cfg = three_roles()
    radar = stream(10, 0, 3000, phase_ms=10)
    radar.remove(1010 * MS)
    streams = {"lidar": stream(10, 0, 3000), "rgb": stream(10, 0, 3000, phase_ms=5), "radar": radar}
    emitted = feed(StampSynchroniser(cfg), bag_order(streams))

    by_stamp = {f.stamp_ns: (trigger, f) for trigger, f in emitted}
    trigger_ns, f = by_stamp[1000 * MS]
    assert f.absent == {"radar": "missing"}
    assert trigger_ns == 1110 * MS < f.stamp_ns + cfg.max_wait_ns  # the next radar settled it
    assert all(g.absent == {} for s, (_, g) in by_stamp.items() if s != 1000 * MS)


def test_standby_role_does_not_delay_frames():
    cfg = three_roles()
    streams = {"lidar": stream(10, 0, 2000), "radar": stream(10, 0, 2000, phase_ms=10)}  # rgb is off

    waiting = feed(StampSynchroniser(cfg), bag_order(streams))
    assert all(t >= f.stamp_ns + cfg.max_wait_ns and f.absent == {"rgb": "timeout"} for t, f in waiting)

    sync = StampSynchroniser(cfg)
    assert sync.set_standby("rgb", True) == []
    prompt = feed(sync, bag_order(streams))
    assert len(prompt) == len(streams["lidar"])
    for t, f in prompt:
        assert t == f.stamp_ns + 10 * MS  # emitted by its own radar message
        assert f.absent == {"rgb": "standby"} and f.stamps_ns["radar"] == t
    # a standby role's message that is there is still used
    feed(sync, [("rgb", 2003 * MS), ("lidar", 2000 * MS)])
    (f,) = [f for _, f in feed(sync, [("radar", 2010 * MS)])]
    assert f.stamps_ns["rgb"] == 2003 * MS and f.absent == {}


def test_set_standby_releases_the_frames_that_waited_for_that_role():
    sync = StampSynchroniser(three_roles())
    assert feed(sync, [("lidar", 1000 * MS), ("radar", 1010 * MS)]) == []
    (f,) = sync.set_standby("rgb", True)
    assert f.stamp_ns == 1000 * MS and f.absent == {"rgb": "standby"}
    assert sync.standby == {"rgb"}
    assert sync.set_standby("rgb", False) == [] and sync.standby == set()
    with pytest.raises(ValueError, match="no fallback pivot"):
        sync.set_standby("lidar", True)  # no fallback_pivots configured
    with pytest.raises(ValueError, match="unknown role"):
        sync.set_standby("sonar", True)


# ------------------------------------------------------------------ pivot fallback
def accounted(sync: StampSynchroniser, frames: list[SyncedFrame], roles) -> None:
    """received == joined + dropped + pending, per role."""
    for role in roles:
        joined = sum(role in f.messages for f in frames) + sum(len(f.imu) for f in frames if role == "imu")
        dropped = sum(n for (r, _), n in sync.drops.items() if r == role)
        assert sync.received[role] == joined + dropped + sync.pending_count(role), role


def test_a_dead_pivot_hands_the_frames_to_the_first_live_fallback_and_takes_them_back():
    cfg = three_roles(fallback_pivots=("rgb", "radar"), pivot_timeout_s=0.3)
    lidar = [t for t in stream(10, 0, 4000) if not 1000 * MS <= t < 2000 * MS]  # dead for 1 s
    streams = {"lidar": lidar, "rgb": stream(10, 0, 4000, phase_ms=5), "radar": stream(20, 0, 4000, phase_ms=2)}
    sync = StampSynchroniser(cfg)
    frames = [f for _, f in feed(sync, bag_order(streams))] + sync.flush()

    stamps = [f.stamp_ns for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    by_pivot = {f.stamp_ns: f.pivot for f in frames}
    # the LiDAR defines every frame it can; the camera fills the gap from the moment the LiDAR
    # has been silent for pivot_timeout_s, one frame per camera image; the LiDAR takes over again
    # with its first message after the gap
    assert [t for t, p in by_pivot.items() if p == "lidar"] == lidar
    gap = [t for t, p in by_pivot.items() if p == "rgb"]
    assert gap and all(1000 * MS < t < 2000 * MS for t in gap)
    assert gap[0] <= 900 * MS + cfg.pivot_timeout_ns + 100 * MS
    assert gap == [t for t in streams["rgb"] if gap[0] <= t < 2000 * MS]
    assert [(a, b) for _, a, b in sync.pivot_changes] == [("lidar", "rgb"), ("rgb", "lidar")]
    for f in frames:
        if f.pivot == "rgb":
            assert f.absent.get("lidar") in ("missing", "timeout")
            assert f.stamps_ns["radar"] == f.stamp_ns - 3 * MS  # the radar scan nearest the image
    accounted(sync, frames, ("lidar", "radar", "rgb"))
    assert sync.pending_count() == 0


def test_a_pivot_that_never_speaks_is_replaced_after_the_timeout():
    cfg = three_roles(fallback_pivots=("radar",), pivot_timeout_s=0.2)
    streams = {"rgb": stream(10, 0, 1000, phase_ms=5), "radar": stream(10, 0, 1000)}
    sync = StampSynchroniser(cfg)
    frames = [f for _, f in feed(sync, bag_order(streams))] + sync.flush()
    assert sync.pivot == "radar" and {f.pivot for f in frames} == {"radar"}
    assert len(frames) >= len(streams["radar"]) - 3  # only what arrived before the timeout is lost
    assert all(f.absent["lidar"] in ("missing", "timeout") for f in frames)
    accounted(sync, frames, ("lidar", "radar", "rgb"))


def test_without_fallbacks_a_dead_pivot_still_gives_no_frames():
    sync = StampSynchroniser(three_roles())
    frames = feed(sync, bag_order({"rgb": stream(10, 0, 1000), "radar": stream(10, 0, 1000)}))
    assert frames == [] and sync.pivot == "lidar"


def test_standby_of_the_pivot_hands_it_to_an_awake_fallback():
    sync = StampSynchroniser(three_roles(fallback_pivots=("radar",)))
    feed(sync, [("lidar", 1000 * MS), ("radar", 1010 * MS), ("rgb", 1005 * MS)])
    sync.set_standby("lidar", True)
    assert sync.pivot == "radar"
    (f,) = [f for _, f in feed(sync, [("radar", 1110 * MS), ("rgb", 1113 * MS), ("rgb", 1213 * MS)])]
    assert f.pivot == "radar" and f.stamp_ns == 1110 * MS and f.absent == {"lidar": "standby"}
    sync.set_standby("lidar", False)
    feed(sync, [("lidar", 1300 * MS)])
    assert sync.pivot == "lidar"
    with pytest.raises(ValueError, match="no fallback pivot is awake"):
        sync.set_standby("radar", True) or sync.set_standby("lidar", True)


# ------------------------------------------------------------------ drops
def test_duplicate_out_of_order_and_late_messages_are_counted_drops():
    sync = StampSynchroniser(config(roles=("lidar", "radar"), imu_role=""))
    assert sync.add("radar", 990 * MS, "r990") == []
    assert sync.add("radar", 1020 * MS, "r1020") == []
    assert sync.add("radar", 990 * MS, "r990 again") == []          # duplicate_stamp
    (f,) = sync.add("lidar", 1000 * MS, "l1000")                    # radar is past 1010 ms: 990 is nearest
    assert f.messages == {"lidar": "l1000", "radar": "r990"}

    assert sync.add("lidar", 1000 * MS, "l1000 again") == []        # duplicate_stamp
    # older than its own stream's newest (radar 1020, lidar 1000): out_of_order, as the offline
    # bag reader counts them, even within tolerance of the emitted pivot
    assert sync.add("radar", 940 * MS, "r940") == []
    assert sync.add("radar", 1000 * MS, "r1000") == []
    assert sync.add("lidar", 980 * MS, "l980") == []
    assert sync.drops == {("radar", "duplicate_stamp"): 1, ("lidar", "duplicate_stamp"): 1,
                          ("radar", "out_of_order"): 2, ("lidar", "out_of_order"): 1}

    # radar 1020 ms was nearest the emitted frame, so the next frame leaves it: unmatched
    sync.add("radar", 1100 * MS, "r1100")
    (f,) = sync.add("lidar", 1100 * MS, "l1100")
    assert f.messages == {"lidar": "l1100", "radar": "r1100"}
    assert sync.drops[("radar", "unmatched")] == 1
    assert sync.received == {"lidar": 4, "radar": 6}
    assert sync.pending_count() == 0


def test_a_message_newer_than_its_stream_but_not_than_the_last_frame_is_late_or_out_of_order():
    """The frame it belonged to has gone (emitted when max_wait ran out): ``late`` within
    tolerance of that frame's pivot, ``out_of_order`` before it."""
    sync = StampSynchroniser(config(roles=("lidar", "radar"), imu_role=""))
    assert sync.add("lidar", 1000 * MS, "l1000") == []
    (f,) = sync.add("lidar", 3000 * MS, "l3000")                    # max_wait past 1000: emitted without radar
    assert f.absent == {"radar": "timeout"}
    assert sync.add("radar", 960 * MS, "r960") == []                # within tolerance of 1000: late
    assert sync.add("radar", 1000 * MS, "r1000") == []              # at the emitted pivot: late too
    assert sync.add("lidar", 900 * MS, "l900") == []                # older than lidar's own newest
    sync2 = StampSynchroniser(config(roles=("lidar", "radar"), imu_role=""))
    sync2.add("lidar", 1000 * MS, "l1000")
    sync2.add("lidar", 3000 * MS, "l3000")
    sync2.add("radar", 900 * MS, "r900")                            # < 1000 - tolerance: fits no frame left
    assert sync.drops == {("radar", "late"): 2, ("lidar", "out_of_order"): 1}
    assert sync2.drops == {("radar", "out_of_order"): 1}


def test_queue_overflow_drops_the_oldest():
    sync = StampSynchroniser(config(roles=("lidar", "radar"), imu_role="", queue_size=3))
    for k in range(5):
        assert sync.add("radar", k * 10 * MS, k) == []
    assert sync.drops == {("radar", "queue_overflow"): 2}
    assert sync.pending_count("radar") == 3
    (f,) = sync.add("lidar", 10 * MS, "l")  # radar 0 and 10 ms were evicted: 20 ms is the only one left
    assert f.stamps_ns["radar"] == 20 * MS


def test_pivot_queue_overflow_drops_the_oldest_frame_and_releases_the_next():
    sync = StampSynchroniser(config(roles=("lidar", "rgb"), imu_role="", queue_size=2))
    # pivots 10 ms apart: rgb 1012 ms belongs to 1010 ms; 1000 ms waits for the rgb stream to pass 1050 ms
    assert feed(sync, [("lidar", 1000 * MS), ("lidar", 1010 * MS), ("rgb", 1012 * MS)]) == []
    (f,) = sync.add("lidar", 1020 * MS, "l1020")  # a third pending frame: 1000 ms is dropped, 1010 ms is ready
    assert (f.stamp_ns, f.stamps_ns["rgb"]) == (1010 * MS, 1012 * MS)
    assert sync.drops == {("lidar", "queue_overflow"): 1}


def test_accounting_holds_over_a_long_randomised_run():
    rng = np.random.default_rng(20240611)
    cfg = config(queue_size=4, imu_queue_size=40)
    rates = {"lidar": 10, "radar": 20, "rgb": 15, "depth": 10, "imu": 200}
    latency_ms = {"lidar": 30, "radar": 5, "rgb": 20, "depth": 25, "imu": 1}
    events = []  # (arrival_ns, order, kind, role, stamp_ns)
    serial = 0
    for role, rate in rates.items():
        in_order_ns = 0  # DDS delivers one writer's samples in order: jitter delays, never reorders
        # stamp jitter below half a period: a driver's stamps increase
        for t in stream(rate, 0, 20_000, phase_ms=rng.uniform(-30, 30), jitter_ms=min(4, 400 / rate), rng=rng):
            if role == "depth" and 3000 * MS <= t < 6000 * MS:
                continue  # depth camera dead for 3 s
            if rng.random() < 0.06:
                continue  # lost in transport
            copies = 2 if rng.random() < 0.04 else 1  # duplicated by a relay
            for _ in range(copies):
                arrival = t + round((latency_ms[role] + rng.exponential(6.0)) * MS)
                if role == "rgb" and 8000 * MS <= t < 8840 * MS:
                    arrival = 8850 * MS  # the camera driver stalls, then sends its backlog in order
                if rng.random() < 0.02:
                    arrival += 300 * MS  # held up in a relay: overtaken by newer messages of its role
                else:
                    arrival = in_order_ns = max(arrival, in_order_ns)
                events.append((arrival, serial, "msg", role, t))
                serial += 1
    events += [(10_000 * MS, -1, "standby_on", "rgb", 0), (12_000 * MS, -1, "standby_off", "rgb", 0)]
    events.sort()

    sync = StampSynchroniser(cfg)
    frames: list[SyncedFrame] = []
    joined = {role: 0 for role in ROLES}

    def take(new):
        for f in new:
            frames.append(f)
            for role in f.messages:
                joined[role] += 1
            joined["imu"] += len(f.imu)

    def check_accounting():
        for role in ROLES:
            dropped = sum(sync.drops[(role, cause)] for cause in DROP_CAUSES)
            assert sync.received[role] == joined[role] + dropped + sync.pending_count(role), role

    for k, (_, sn, kind, role, t) in enumerate(events):
        if kind == "msg":
            take(sync.add(role, t, (role, t, sn)))
        else:
            take(sync.set_standby(role, kind == "standby_on"))
        if k % 50 == 0:
            check_accounting()
    check_accounting()
    take(sync.flush())
    check_accounting()
    assert sync.pending_count() == 0
    assert sum(sync.received.values()) == serial
    assert {cause for _, cause in sync.drops} == set(DROP_CAUSES), sync.drops  # the run exercised every cause
    assert {r for f in frames for r in f.absent.values()} == set(ABSENCE_REASONS)

    stamps = [f.stamp_ns for f in frames]
    assert stamps == sorted(set(stamps))  # increasing, never twice
    used = set()
    prev_ns = None
    for f in frames:
        assert set(f.messages) | set(f.absent) | ({"imu"} if f.imu else set()) == set(ROLES)
        assert not set(f.messages) & set(f.absent)
        for role, msg in f.messages.items():
            assert msg[:2] == (role, f.stamps_ns[role])
            assert abs(f.stamps_ns[role] - f.stamp_ns) <= cfg.tolerance_ns
            assert msg not in used
            used.add(msg)
        start_ns = f.stamp_ns - cfg.imu_window_ns
        if prev_ns is not None:
            start_ns = max(start_ns, prev_ns)
        for t, msg in f.imu:
            assert start_ns < t <= f.stamp_ns and msg[1] == t and msg not in used
            used.add(msg)
        prev_ns = f.stamp_ns
    assert len(frames) > 150  # most of the 200 pivots made it


# ------------------------------------------------------------------ IMU windows
def test_imu_windows_partition_the_samples():
    rng = np.random.default_rng(3)
    cfg = config(roles=("lidar", "imu"), imu_window_s=0.1)
    lidar = stream(10, 0, 2000, jitter_ms=3, rng=rng)
    del lidar[7]  # one lost scan: a 200 ms gap, longer than the window
    imu = stream(200, -300, 2300, phase_ms=1)
    sync = StampSynchroniser(cfg)
    frames = [f for _, f in feed(sync, bag_order({"lidar": lidar, "imu": imu}))] + sync.flush()

    assert [f.stamp_ns for f in frames] == lidar
    got = [t for f in frames for t, _ in f.imu]
    assert got == sorted(set(got))  # no sample in two windows, windows in order
    want, prev = [], None
    for p in lidar:
        start = p - cfg.imu_window_ns if prev is None else max(prev, p - cfg.imu_window_ns)
        want += [t for t in imu if start < t <= p]
        prev = p
    assert got == want
    # consecutive windows (100 ms apart) tile time; the gap's first 100 ms is not covered
    assert sync.drops == {("imu", "unmatched"): len(imu) - len(want)}
    gap = [t for t in imu if lidar[6] < t <= lidar[7] - cfg.imu_window_ns]
    assert len(gap) >= 15


def test_frames_wait_for_the_imu_to_pass_the_pivot():
    sync = StampSynchroniser(config(roles=("lidar", "imu")))
    assert feed(sync, [("imu", 990 * MS), ("imu", 995 * MS), ("lidar", 1000 * MS)]) == []
    ((_, f),) = feed(sync, [("imu", 1000 * MS)])  # the window (900, 1000] ms is now complete
    assert [t for t, _ in f.imu] == [990 * MS, 995 * MS, 1000 * MS] and f.absent == {}

    # an IMU stream that moved past the pivot with nothing in the window: missing, no waiting
    ((_, f),) = feed(sync, [("imu", 1020 * MS), ("lidar", 1200 * MS), ("imu", 1201 * MS)])
    assert f.stamp_ns == 1200 * MS and f.imu == [] and f.absent == {"imu": "missing"}
    assert sync.drops == {("imu", "unmatched"): 1}  # 1020 ms is before the window (1100, 1200] ms


# ------------------------------------------------------------------ flush and reset
def test_flush_emits_pending_frames_and_empties_the_queues():
    sync = StampSynchroniser(three_roles())
    arrivals = [("rgb", 990 * MS), ("lidar", 1000 * MS), ("rgb", 1020 * MS), ("lidar", 1100 * MS),
                ("rgb", 1090 * MS), ("rgb", 1140 * MS)]  # radar dead; newest stamp < 1000 + 150 ms
    assert feed(sync, arrivals) == []
    assert sync.pending_count() == 6 and sync.pending_count("lidar") == 2

    frames = sync.flush()
    assert [(f.stamp_ns, f.stamps_ns["rgb"], f.absent) for f in frames] == [
        (1000 * MS, 990 * MS, {"radar": "timeout"}), (1100 * MS, 1090 * MS, {"radar": "timeout"})]
    assert sync.pending_count() == 0
    assert sync.drops == {("rgb", "unmatched"): 2}  # 1020 ms (nearer 1000) and 1140 ms (no frame left)
    assert sync.flush() == []

    # after the run, older stamps are out of order; reset() forgets the clock (a looping bag)
    assert sync.add("lidar", 0, "l0") == [] and sync.drops[("lidar", "out_of_order")] == 1
    sync.reset()
    assert sync.add("rgb", 0, "rgb0") == [] and sync.pending_count("rgb") == 1


# ------------------------------------------------------------------ config and arguments
@pytest.mark.parametrize("overrides, field", [
    ({"pivot": "sonar"}, "pivot"),
    ({"roles": ("lidar", "radar", "lidar")}, "roles"),
    ({"roles": "lidar"}, "roles"),
    ({"roles": ("lidar", "")}, "roles"),
    ({"roles": ("lidar", "radar")}, "imu_role"),
    ({"imu_role": "lidar"}, "imu_role"),
    ({"tolerance_s": -0.01}, "tolerance_s"),
    ({"tolerance_s": float("nan")}, "tolerance_s"),
    ({"max_wait_s": 0.01}, "max_wait_s"),
    ({"imu_window_s": 0.0}, "imu_window_s"),
    ({"queue_size": 0}, "queue_size"),
    ({"queue_size": 2.5}, "queue_size"),
    ({"imu_queue_size": True}, "imu_queue_size"),
    ({"wait_for_nearest": 1}, "wait_for_nearest"),
])
def test_bad_config_raises_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        config(**overrides)


def test_config_loads_from_a_mapping_and_converts_to_integer_nanoseconds():
    cfg = from_mapping(StampSyncConfig, {"pivot": "radar", "roles": ["radar", "rgb"], "imu_role": "",
                                         "tolerance_s": 0.033, "max_wait_s": 0.1})
    assert cfg.roles == ("radar", "rgb")
    assert (cfg.tolerance_ns, cfg.max_wait_ns, cfg.imu_window_ns) == (33_000_000, 100_000_000, 100_000_000)
    assert config(roles=["lidar", "imu"]).roles == ("lidar", "imu")  # a list is kept as a tuple
    with pytest.raises(ConfigError, match="tolerance_s"):
        from_mapping(StampSyncConfig, {"tolerance_s": -1.0})


def test_add_rejects_unknown_roles_and_float_stamps():
    sync = StampSynchroniser(config())
    with pytest.raises(ValueError, match="unknown role"):
        sync.add("sonar", 0, None)
    with pytest.raises(TypeError):
        sync.add("lidar", 1.5e9, None)
    sync.add("lidar", np.int64(1_500_000_000), "ok")  # numpy integers are exact too
    assert sync.received == {"lidar": 1}
