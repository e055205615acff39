"""The real sample recordings (../shared/data/real) through RosbagSource with the shipped
mappings (configs/data/): they load, yield samples with the mapped sensors, decode point layouts
other than the simulator's, and report what they dropped and what they assumed.

Expected values come from rosbags and numpy directly (a cloud's bytes viewed with its declared
offsets), not from the decoder under test. Tests that need the recordings skip when
``../shared/data/real`` is absent (a user's checkout); the mapping rules are checked either way.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.data import ros_decode as rd
from fusion_core.data.ros_types import shared_typestore
from fusion_core.data.rosbag_source import RosbagSource, fallback_typestore
from fusion_core.data.static_tf import StaticTfError
from fusion_core.data.topic_mapping import TopicMapping

ROOT = Path(__file__).resolve().parents[3]
REAL = ROOT.parent / "shared" / "data" / "real"
MAPPINGS = ROOT / "configs" / "data"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent: the shared sample recordings "
                                                           f"are not part of a checkout")
SICK_BAGS = ("sick_radar_lidar_ros1.bag", "sick_radar_lidar_mcap")
NOT_RECORDED = "not_recorded"


def messages(bag: Path, topic: str) -> list:
    """Deserialised messages of one topic, in log order."""
    with AnyReader([bag], default_typestore=fallback_typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def view_fields(msg, names: tuple[str, ...]) -> np.ndarray:
    """(N, len(names)) float64 of a little-endian cloud, read with numpy at the declared offsets."""
    fields = {f.name: f for f in msg.fields}
    codes = {2: "u1", 4: "u2", 6: "u4", 7: "f4", 8: "f8"}
    dtype = np.dtype({"names": list(names), "formats": ["<" + codes[fields[n].datatype] for n in names],
                      "offsets": [fields[n].offset for n in names], "itemsize": msg.point_step})
    rec = np.frombuffer(np.asarray(msg.data, np.uint8).tobytes(), dtype, count=msg.width * msg.height)
    return np.stack([rec[n].astype(np.float64) for n in names], axis=1)


# ------------------------------------------------------------------------------ mapping rules
def test_shipped_real_mappings_load():
    sick = TopicMapping.load(MAPPINGS / "sick_radar_lidar.yaml")
    assert (sick.lidar_topic, sick.radar_topic, sick.reference_sensor) == ("/cloud", "/cloud_radar_rawtarget", "lidar")
    assert (sick.radar_doppler_field, sick.radar_rcs_field, sick.untransformed_frames) == ("vrad", "amplitude", "error")
    husky = TopicMapping.load(MAPPINGS / "husky_imu_odom_gps.yaml")
    assert (husky.imu_topic, husky.reference_sensor, husky.untransformed_frames) == ("/imu/data", "imu", "identity")
    luminar = TopicMapping.load(MAPPINGS / "luminar_lidar.yaml")
    assert (luminar.lidar_topic, luminar.untransformed_frames) == ("/luminar_pointcloud", "identity")
    assert TopicMapping(lidar_topic="/l").untransformed_frames == "error"  # the default keeps failing loudly


@pytest.mark.parametrize("values, message", [
    ({"lidar_topic": "/l", "imu_topic": "/imu", "reference_sensor": "imu"},
     r"reference_sensor: 'imu' is not one of the mapped detection sensors \(lidar\)"),
    ({"reference_sensor": "imu"}, r"reference_sensor: 'imu' has no topic"),
    ({"lidar_topic": "/l", "untransformed_frames": "guess"}, r"untransformed_frames: 'guess' is not one of error, identity"),
])
def test_mapping_rules_for_imu_reference_and_untransformed_frames(values, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(TopicMapping, values)


def write_clouds(path: Path, clouds: list[tuple[str, int, str, np.ndarray, tuple[str, ...]]]) -> Path:
    """A rosbag2 MCAP bag of float32 PointCloud2 messages (topic, stamp [ns], frame, points, field
    names), logged in the order given at their stamps (+ their index, keeping log times unique)."""
    ts = shared_typestore()
    t = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for k, (topic, stamp_ns, frame, points, names) in enumerate(clouds):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, "sensor_msgs/msg/PointCloud2", typestore=ts)
            sec, nanosec = divmod(stamp_ns, 1_000_000_000)
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                              frame_id=frame)
            fields = [t["sensor_msgs/msg/PointField"](name=n, offset=4 * j, datatype=7, count=1)
                      for j, n in enumerate(names)]
            data = np.ascontiguousarray(points, np.float32)
            cloud = t["sensor_msgs/msg/PointCloud2"](header=header, height=1, width=len(data), fields=fields,
                                                     is_bigendian=False, point_step=4 * len(names),
                                                     row_step=4 * len(names) * len(data),
                                                     data=data.view(np.uint8).reshape(-1), is_dense=True)
            writer.write(conns[topic], stamp_ns + k, ts.serialize_cdr(cloud, "sensor_msgs/msg/PointCloud2"))
    return path


def test_identity_frames_are_assumed_listed_and_warned_once(tmp_path, caplog):
    """A bag without /tf_static: 'error' refuses it, 'identity' keeps the points as recorded."""
    points = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], np.float32)
    write_clouds(tmp_path / "bag", [("/lidar", (10 + k) * 10**9, "roof_lidar", points, ("x", "y", "z", "intensity"))
                                    for k in range(3)])
    strict = TopicMapping(lidar_topic="/lidar")
    with pytest.raises(StaticTfError, match=r"lidar \(/lidar\) frame 'roof_lidar'"):
        RosbagSource(tmp_path / "bag", strict)
    with caplog.at_level(logging.WARNING, logger="fusion_core.data.rosbag_source"):
        src = RosbagSource(tmp_path / "bag", dataclasses.replace(strict, untransformed_frames="identity"))
    assert src.assumed_identity_frames == ["roof_lidar"]
    assert sum("'roof_lidar'" in r.getMessage() and "identity" in r.getMessage() for r in caplog.records) == 1
    assert len(src) == 3
    np.testing.assert_array_equal(src[1].lidar_xyzi, points)
    np.testing.assert_array_equal(src.calibration["lidar"], np.eye(4))


def test_a_capture_republished_under_one_stamp_is_taken_in_its_last_version(tmp_path):
    """As sick_scan's radar does: the same stamp logged three times while the cloud fills in.
    Whether the scan comes before or after that stamp, the sample gets the complete version."""
    radar_names = ("x", "y", "z", "doppler", "rcs")
    full = np.array([[1.0, 0, 0, 0.5, 10.0], [2.0, 0, 0, -0.5, 12.0], [3.0, 0, 0, 0.0, 8.0]])
    partial = [np.where(np.arange(3)[:, None] < n, full, 0.0) for n in (1, 2, 3)]
    lidar = np.zeros((1, 4))
    clouds = [("/lidar", 990_000_000, "f", lidar, ("x", "y", "z", "intensity"))]       # scan 10 ms before
    clouds += [("/radar", 1_000_000_000, "f", p, radar_names) for p in partial]         # one stamp, three versions
    clouds += [("/lidar", 1_020_000_000, "f", lidar, ("x", "y", "z", "intensity"))]    # scan 20 ms after
    mapping = TopicMapping(lidar_topic="/lidar", radar_topic="/radar", tf_static_topic="", base_frame_id="f")
    src = RosbagSource(write_clouds(tmp_path / "bag", clouds), mapping)
    assert [s.radar_xyzdr.tolist() for s in src] == [full.tolist(), full.tolist()]


# ------------------------------------------------------------------------------ SICK radar + lidar
@needs_real
@pytest.mark.parametrize("bag", SICK_BAGS)
def test_sick_samples_have_lidar_and_range_doppler_radar(bag):
    path = REAL / bag
    src = RosbagSource(path, MAPPINGS / "sick_radar_lidar.yaml")
    np.testing.assert_array_equal(src.calibration["radar"], np.eye(4))  # the recorded /tf: cloud -> radar identity
    lidar_msgs = messages(path, "/cloud")
    # every radar cycle as its last (complete) republication: stamp -> (N, 5)
    complete = {}
    radar_msgs = messages(path, "/cloud_radar_rawtarget")
    for msg in radar_msgs:
        complete[rd.stamp_ns(msg.header)] = view_fields(msg, ("x", "y", "z", "vrad", "amplitude"))
    # each republication is counted, as replay's synchroniser counts it
    assert len(src) == 89 and src.assumed_identity_frames == []
    assert src.drops == Counter({("radar", "duplicate_stamp"): len(radar_msgs) - len(complete)})
    for i, s in enumerate(src):
        assert s.absence == {"rgb": NOT_RECORDED, "depth": NOT_RECORDED, "imu": NOT_RECORDED}
        np.testing.assert_array_equal(s.lidar_xyzi, view_fields(lidar_msgs[i], ("x", "y", "z", "intensity")))
        assert any(np.array_equal(s.radar_xyzdr, c) for c in complete.values()), f"sample {i}: a partial radar cycle"
        assert np.all(s.radar_xyzdr[:, 1:3] == 0.0)  # range-Doppler: every target on the x axis
    radar = np.concatenate([s.radar_xyzdr for s in src])
    assert radar[:, 0].max() > 9.0 and np.abs(radar[:, 3]).max() <= 0.1 and radar[:, 4].max() == 32.0


@needs_real
def test_sick_ros1_bag_and_its_mcap_conversion_give_the_same_samples():
    a, b = (RosbagSource(REAL / bag, MAPPINGS / "sick_radar_lidar.yaml") for bag in SICK_BAGS)
    np.testing.assert_array_equal(a.stamps_ns, b.stamps_ns)
    for sa, sb in zip(a, b, strict=True):
        assert sa.time_s == sb.time_s and sa.absence == sb.absence
        np.testing.assert_array_equal(sa.lidar_xyzi, sb.lidar_xyzi)
        np.testing.assert_array_equal(sa.radar_xyzdr, sb.radar_xyzdr)


# ------------------------------------------------------------------------------ Husky IMU only
@needs_real
def test_husky_imu_only_recording_is_paced_by_the_imu(caplog):
    path = REAL / "husky_imu_odom_gps_mcap"
    with caplog.at_level(logging.WARNING, logger="fusion_core.data.rosbag_source"):
        src = RosbagSource(path, MAPPINGS / "husky_imu_odom_gps.yaml")
    assert len(src) == 11865 and src.drops == Counter()
    assert src.assumed_identity_frames == ["imu_link"]
    assert sum("'imu_link'" in r.getMessage() for r in caplog.records) == 1
    imu_msgs = messages(path, "/imu/data")
    np.testing.assert_array_equal(src.stamps_ns, sorted(rd.stamp_ns(m.header) for m in imu_msgs))
    for i in range(0, len(src), 500):
        s = src[i]
        assert s.absence == {"rgb": NOT_RECORDED, "depth": NOT_RECORDED, "lidar": NOT_RECORDED, "radar": NOT_RECORDED}
        assert s.lidar_xyzi is None and s.radar_xyzdr is None and s.rgb is None and s.depth_m is None
        assert s.imu.shape[1] == 6 and 1 <= len(s.imu) <= 16  # 0.5 s at 30 Hz
        a = imu_msgs[i].linear_acceleration
        np.testing.assert_allclose(s.imu[-1, :3], [a.x, a.y, a.z], rtol=1e-6)  # the window ends with message i
    gravity = np.concatenate([src[i].imu[:, :3] for i in range(0, len(src), 500)]).mean(axis=0)
    assert gravity[1] == pytest.approx(9.79, abs=0.1)  # this IMU reports gravity on +y, passed through as recorded


# ------------------------------------------------------------------------------ Luminar lidar
@needs_real
def test_luminar_cloud_with_extra_fields_decodes():
    path = REAL / "luminar_lidar_mcap"
    src = RosbagSource(path, MAPPINGS / "luminar_lidar.yaml")
    assert len(src) == 5 and src.drops == Counter() and src.assumed_identity_frames == ["luminar_lidar"]
    msgs = messages(path, "/luminar_pointcloud")
    extra = ("time_sec", "time_nsec", "laser_id")
    for s, msg in zip(src, msgs, strict=True):
        assert msg.point_step == 32 and {f.name: f.offset for f in msg.fields}["intensity"] == 16
        assert s.absence == {"rgb": NOT_RECORDED, "depth": NOT_RECORDED, "radar": NOT_RECORDED, "imu": NOT_RECORDED}
        np.testing.assert_array_equal(s.lidar_xyzi, view_fields(msg, ("x", "y", "z", "intensity")))
        assert 30_000 < len(s.lidar_xyzi) < 40_000 and s.lidar_xyzi[:, 3].max() <= 2.0
        decoded, n_nan = rd.decode_cloud(msg, ("x", "y", "z", *extra))
        by_hand = view_fields(msg, extra)
        assert n_nan == 0
        np.testing.assert_array_equal(decoded[:, 3:], by_hand.astype(np.float32))
        assert set(np.unique(by_hand[:, 2])) <= {0.0, 1.0}                        # laser_id (uint16)
        assert np.all(np.abs(by_hand[:, 0] - msg.header.stamp.sec) <= 1)         # per-point seconds near the stamp
    ranges = np.linalg.norm(src[0].lidar_xyzi[:, :3], axis=1)
    assert ranges.max() > 200.0
    with pytest.raises(StaticTfError, match="luminar_lidar"):
        RosbagSource(path, dataclasses.replace(src.mapping, untransformed_frames="error"))
