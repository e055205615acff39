"""The two training datasets (simulator shards, rosbags) yield the same FusionSamples.

No mocks: a short simulated run is written with both real writers and read back; malformed
and hand-timed bags are written with rosbags' own Writer.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
from rosbags.convert import convert
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from fusion_core.boxes import VX, VY, YAW
from fusion_core.config_io import ConfigError, from_mapping
from fusion_core.data import topics as T
from fusion_core.data.geometry import transform_points
from fusion_core.data.ros_decode import MAX_CLOUD_POINTS
from fusion_core.data.ros_types import shared_typestore
from fusion_core.data.rosbag_source import RosbagSource
from fusion_core.data.sample import CameraGeometry
from fusion_core.data.shard_source import ShardSource
from fusion_core.data.static_tf import (
    StaticTfError,
    StaticTfTree,
    matrix_from_quaternion,
)
from fusion_core.data.topic_mapping import SyncTolerance, TopicMapping
from fusion_core.vocabulary import DUPLICATE_STAMP, NO_MESSAGE, OUT_OF_ORDER, SENSORS
from sim.config import FaultConfig, LidarConfig, MountConfig, SensorSuiteConfig
from sim.simulator import Simulator
from sim.writers.rosbag import RosbagWriter
from sim.writers.shards import ShardWriter
from tests.conftest import straight_scenario
from tests.bag_copies import copy_bag

ROOT = Path(__file__).resolve().parents[3]
SIM_MAPPING = ROOT / "configs" / "data" / "sim_bag.yaml"
N_FRAMES = 14
IMU_WINDOW_S = 0.5  # as sim_bag.yaml
FAULTS = (
    FaultConfig(sensor="depth", kind="dropout", start_s=0.3, end_s=0.6),   # frames 3, 4, 5
    FaultConfig(sensor="radar", kind="dropout", start_s=1.0, end_s=1.2),   # frames 10, 11
    FaultConfig(sensor="rgb", kind="latency", start_s=0.7, end_s=1.0),     # logged late, stamped on time
)
# A tilted LiDAR: ground returns only land at base_link z = 0 if rotation and offset are right.
TILTED_LIDAR = MountConfig(xyz_m=(1.2, 0.0, 1.9), rpy_deg=(3.0, 6.0, 10.0))
NS = 1_000_000_000


# ------------------------------------------------------------------------------- simulated run
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """14 frames of a small straight-road scenario written as MCAP bag, shards and sqlite3 copy."""
    root = tmp_path_factory.mktemp("datasets")
    config = straight_scenario(name="datasets_test", faults=FAULTS,
                               sensors=SensorSuiteConfig(lidar=LidarConfig(mount=TILTED_LIDAR)))
    sim = Simulator(config)
    frames = list(sim.run(N_FRAMES))
    with RosbagWriter(root / "bag", sim) as bag:
        for f in frames:
            bag.write_frame(f)
    with ShardWriter(root / "shards", sim, frames_per_shard=5, imu_window_s=IMU_WINDOW_S) as shards:
        for f in frames:
            shards.write_frame(f)
    copy_bag(root / "bag", root / "bag_sqlite")
    return {"sim": sim, "frames": frames, "bag": root / "bag", "shards": root / "shards",
            "sqlite": root / "bag_sqlite"}


@pytest.fixture(scope="module")
def sources(run):
    return ShardSource(run["shards"]), RosbagSource(run["bag"], SIM_MAPPING)


def assert_geometry_close(a: CameraGeometry, b: CameraGeometry) -> None:
    assert (a.width_px, a.height_px) == (b.width_px, b.height_px)
    np.testing.assert_allclose([a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy], rtol=1e-12)
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-9)


def assert_samples_agree(a, b, *, gt_velocity: bool = False) -> None:
    """Two FusionSamples of the same frame hold the same data (floats within float32 rounding)."""
    assert b.time_s == pytest.approx(a.time_s, abs=1e-9)
    assert a.absence == b.absence
    assert (a.condition, a.faults) == (b.condition, b.faults)
    for name in ("lidar_xyzi", "radar_xyzdr", "imu"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, name
            np.testing.assert_allclose(x, y, atol=1e-5, err_msg=name)
    for img, cam in (("rgb", "rgb_camera"), ("depth_m", "depth_camera")):
        x, y = getattr(a, img), getattr(b, img)
        assert (x is None) == (y is None), img
        if x is not None:
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), img  # bit-identical, NaNs included
            assert_geometry_close(getattr(a, cam), getattr(b, cam))
        else:
            assert getattr(a, cam) is None and getattr(b, cam) is None
    assert a.gt_boxes.shape == b.gt_boxes.shape
    cols = [c for c in range(a.gt_boxes.shape[1]) if c != YAW and (gt_velocity or c not in (VX, VY))]
    np.testing.assert_allclose(a.gt_boxes[:, cols], b.gt_boxes[:, cols], atol=1e-5)
    dyaw = (a.gt_boxes[:, YAW] - b.gt_boxes[:, YAW] + np.pi) % (2 * np.pi) - np.pi  # -pi and pi are one heading
    assert np.abs(dyaw).max(initial=0.0) < 1e-5


def test_shards_and_bag_yield_the_same_samples(run, sources):
    shards, bag = sources
    assert len(shards) == len(bag) == N_FRAMES
    assert shards.scenario_name == bag.scenario_name == "datasets_test"
    late_images = 0
    for i, (a, b) in enumerate(zip(shards, bag)):
        assert a.time_s == run["frames"][i].time_s
        if b.absence.get("rgb") == NO_MESSAGE and a.present("rgb"):
            # The latency fault logs an image after the next one: read in log order, as a live
            # consumer (and replay) gets it, it is older than an image already taken and dropped.
            assert 0.7 <= a.time_s < 1.0 + 0.1
            a = a.without("rgb", NO_MESSAGE)
            late_images += 1
        assert_samples_agree(a, b)
        assert not b.gt_boxes[:, [VX, VY]].any()  # Detection3D carries no velocity: documented as 0
    assert late_images >= 1 and bag.drops == {("rgb", OUT_OF_ORDER): late_images}
    for sensor in SENSORS:
        np.testing.assert_allclose(bag.calibration[sensor], shards.calibration[sensor], atol=1e-9)
        np.testing.assert_array_equal(shards.calibration[sensor], run["sim"].calibration[sensor].base_from_sensor)


def test_sample_contents_match_the_simulator(run, sources):
    """Dtypes, shapes, the IMU window (oldest first) and the untouched radar scalars."""
    shards, _ = sources
    frames = run["frames"]
    imu_readings = [r for f in frames for r in f.readings if r.sensor == "imu"]
    for i in (0, 7, N_FRAMES - 1):
        s, f = shards[i], frames[i]
        assert s.rgb.dtype == np.uint8 and s.rgb.shape == f.latest("rgb").data.shape
        assert s.depth_m.dtype == np.float32 and np.isnan(s.depth_m).any()
        np.testing.assert_array_equal(s.radar_xyzdr[:, 3:], f.latest("radar").data[:, 3:])  # doppler, rcs
        want = [r.data for r in imu_readings if f.time_s - IMU_WINDOW_S + 1e-9 < r.capture_time_s <= f.time_s + 1e-9]
        np.testing.assert_allclose(s.imu, np.array(want, np.float32), atol=1e-6)  # IMU mount is not rotated
        assert s.gt_boxes.dtype == np.float32 and s.gt_boxes.shape == f.gt_boxes.shape
    assert len(shards[0].imu) == 1 and len(shards[N_FRAMES - 1].imu) == 100  # 200 Hz, (t - 0.5, t]


def test_lidar_ground_returns_land_at_base_link_z0(sources):
    shards = sources[0]
    for source in sources:
        s = source[2]
        raw = shards.dataset[2].lidar  # sensor frame, with ring (no NaN points: same row order)
        low = raw[:, 4] <= 5           # the lowest beams hit the road a few metres ahead
        assert low.sum() > 3000
        z_base = s.lidar_xyzi[low, 2]
        assert np.percentile(np.abs(z_base), 95) < 0.05              # flat road at z = 0 within noise
        assert np.ptp(np.percentile(raw[low, 2], [5, 95])) > 0.5     # ...while the tilted sensor saw a slope
        np.testing.assert_array_equal(s.lidar_xyzi[:, 3], raw[:, 3])  # intensity kept, ring dropped
        assert s.lidar_xyzi.shape[1] == 4


def test_dropout_makes_the_sensor_absent_with_its_reason(sources):
    for source in sources:
        expected = {3: {"depth"}, 4: {"depth"}, 5: {"depth"}, 10: {"radar"}, 11: {"radar"}}
        for i in range(N_FRAMES):
            s = source[i]
            want = expected.get(i, set())
            if s.absence.get("rgb") == NO_MESSAGE and isinstance(source, RosbagSource):
                want = want | {"rgb"}  # logged after a newer image (latency fault): see above
            assert set(s.absence) == want, (type(source).__name__, i)
            for sensor in want - {"rgb"}:
                assert s.absence[sensor] == "dropped_by_fault" and s.faults[sensor] == "dropout"
            assert (s.depth_m is None) == ("depth" in want) and (s.depth_camera is None) == ("depth" in want)
            assert (s.radar_xyzdr is None) == ("radar" in want)
        assert source[8].faults == {"rgb": "latency"} and source[8].rgb is not None


def test_sqlite3_copy_reads_the_same(run, sources):
    _, mcap = sources
    sqlite = RosbagSource(run["sqlite"], SIM_MAPPING)
    assert (run["sqlite"] / "bag_sqlite.db3").is_file()
    assert len(sqlite) == len(mcap)
    np.testing.assert_array_equal(sqlite.stamps_ns, mcap.stamps_ns)
    for i in range(len(mcap)):
        assert_samples_agree(mcap[i], sqlite[i], gt_velocity=True)


def test_ros1_conversion_reads_the_same(run, sources, tmp_path):
    """rosbags' converter writes a ROS 1 bag (no custom data: time_s becomes Unix seconds)."""
    _, mcap = sources
    ros1 = tmp_path / "run.bag"
    convert(srcs=[run["bag"]], dst=ros1, dst_storage="", dst_version=2, compress=None, compress_mode="none",
            default_typestore=None, typestore=None, exclude_topics=[], include_topics=[], exclude_msgtypes=[],
            include_msgtypes=[])
    src = RosbagSource(ros1, SIM_MAPPING)
    assert src.time_origin_ns == 0 and src.scenario_name is None
    np.testing.assert_array_equal(src.stamps_ns, mcap.stamps_ns)
    for i in (0, 4, 10):
        a, b = mcap[i], src[i]
        assert b.time_s == pytest.approx(a.time_s + mcap.time_origin_ns / NS, abs=1e-6)  # float64 Unix seconds
        b.time_s = a.time_s
        assert_samples_agree(a, b, gt_velocity=True)


# ------------------------------------------------------------------------------- hand-made bags
class BagBuilder:
    """Messages with chosen stamps and contents, written with rosbags' Writer."""

    def __init__(self):
        self.ts = shared_typestore()
        self.t = self.ts.types
        self.messages: list[tuple[str, str, int, object]] = []

    def header(self, stamp_s: float, frame: str):
        sec, nsec = divmod(round(stamp_s * NS), NS)
        return self.t["std_msgs/msg/Header"](stamp=self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                             frame_id=frame)

    def add(self, topic: str, stamp_s: float, msg) -> None:
        self.messages.append((topic, msg.__msgtype__, round(stamp_s * NS), msg))

    def tf_static(self, edges: dict[str, tuple[tuple, tuple]], parent: str = "base_link") -> None:
        t = self.t
        transforms = [t["geometry_msgs/msg/TransformStamped"](
            header=self.header(0.0, parent), child_frame_id=child,
            transform=t["geometry_msgs/msg/Transform"](translation=t["geometry_msgs/msg/Vector3"](*xyz),
                                                       rotation=t["geometry_msgs/msg/Quaternion"](*q)))
            for child, (xyz, q) in edges.items()]
        self.add("/tf_static", 0.0, t["tf2_msgs/msg/TFMessage"](transforms=transforms))

    def cloud(self, topic, stamp_s, frame, points: np.ndarray, names, *, point_step=None, row_step=None,
              data=None, bigendian=False):
        pf = self.t["sensor_msgs/msg/PointField"]
        fmt = ">f4" if bigendian else "<f4"
        packed = np.ascontiguousarray(points, fmt).view(np.uint8).reshape(-1) if data is None else data
        step = 4 * len(names) if point_step is None else point_step
        n = len(points)
        self.add(topic, stamp_s, self.t["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_s, frame), height=1, width=n,
            fields=[pf(name=nm, offset=4 * k, datatype=7, count=1) for k, nm in enumerate(names)],
            is_bigendian=bigendian, point_step=step, row_step=step * n if row_step is None else row_step,
            data=packed, is_dense=False))

    def image(self, topic, stamp_s, frame, pixels: np.ndarray, encoding: str, data=None):
        h, w = pixels.shape[:2]
        raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1) if data is None else data
        self.add(topic, stamp_s, self.t["sensor_msgs/msg/Image"](
            header=self.header(stamp_s, frame), height=h, width=w, encoding=encoding, is_bigendian=0,
            step=pixels.strides[0], data=raw))

    def camera_info(self, topic, stamp_s, frame, w, h, fx, cx, cy):
        t = self.t
        self.add(topic, stamp_s, t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_s, frame), height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
            k=np.array([fx, 0, cx, 0, fx, cy, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
            p=np.array([fx, 0, cx, 0, 0, fx, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
            roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)))

    def imu(self, topic, stamp_s, frame, sample):
        t = self.t
        vec, q = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"]
        self.add(topic, stamp_s, t["sensor_msgs/msg/Imu"](
            header=self.header(stamp_s, frame), orientation=q(x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.array([-1.0] + [0.0] * 8), angular_velocity=vec(*sample[3:]),
            angular_velocity_covariance=np.zeros(9), linear_acceleration=vec(*sample[:3]),
            linear_acceleration_covariance=np.zeros(9)))

    def write(self, path: Path, storage=StoragePlugin.MCAP) -> Path:
        with Writer(path, version=9, storage_plugin=storage) as writer:
            conns = {}
            for topic, msgtype, _, _ in self.messages:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=self.ts)
            for topic, msgtype, log_ns, msg in sorted(self.messages, key=lambda m: m[2]):
                writer.write(conns[topic], log_ns, self.ts.serialize_cdr(msg, msgtype))
        return path


MAPPING = TopicMapping(rgb_image_topic="/rgb", rgb_camera_info_topic="/rgb_info", depth_image_topic="/depth",
                       depth_camera_info_topic="/depth_info", lidar_topic="/lidar", radar_topic="/radar",
                       imu_topic="/imu")
Q_YAW90 = (0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5))
Q_IDENTITY = (0.0, 0.0, 0.0, 1.0)
Q_OPTICAL = (-0.5, 0.5, -0.5, 0.5)  # body <- optical (x right, y down, z forward)


def rig(b: BagBuilder) -> None:
    b.tf_static({"lidar": ((1.0, 0.5, 2.0), Q_YAW90), "radar": ((3.0, 0.0, 0.5), Q_IDENTITY),
                 "imu_link": ((0.0, 0.0, 0.3), Q_IDENTITY), "cam": ((1.5, 0.0, 1.4), Q_OPTICAL)})


def test_malformed_messages_are_counted_and_the_frame_keeps_the_rest(tmp_path, caplog):
    b = BagBuilder()
    rig(b)
    lidar_pts = np.array([[1.0, 0.0, 0.0, 7.0], [0.0, 2.0, -1.0, 9.0], [5.0, 5.0, 0.0, 1.0]], np.float32)
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    depth_mm = np.array([[0, 1500], [2500, 65535]], np.uint16)
    t0 = 10.0  # stamps well after 0 so the IMU history before the first scan stays positive
    for k in range(3):
        t = t0 + 0.1 * k
        b.camera_info("/rgb_info", t, "cam", 6, 4, 5.0, 3.0, 2.0)
        b.camera_info("/depth_info", t, "cam", 2, 2, 1.0, 1.0, 1.0)
        b.cloud("/radar", t, "radar", np.array([[10.0, 1.0, 0.0, -3.5, 12.0]]), ["x", "y", "z", "doppler", "rcs"],
                bigendian=True)
        for j in range(5):
            b.imu("/imu", t - 0.02 * j, "imu_link", [0.1 * j, 0.0, 9.81, 0.0, 0.0, 0.01] if (k, j) != (2, 1)
                  else [np.nan] * 6)
    names = ["x", "y", "z", "intensity"]
    b.cloud("/lidar", t0, "lidar", lidar_pts, names)
    b.cloud("/lidar", t0 + 0.1, "lidar", lidar_pts, names, point_step=16, row_step=18 * 3,
            data=np.zeros(18 * 3, np.uint8))                                   # point_step does not match data
    with_nan = np.vstack([lidar_pts, [[np.nan, 0, 0, 1], [0, np.inf, 0, 1]]]).astype(np.float32)
    b.cloud("/lidar", t0 + 0.2, "lidar", with_nan, names)                      # two points without a return
    b.image("/rgb", t0, "cam", rgb[..., ::-1], "bgr8")                         # converted to RGB
    b.image("/rgb", t0 + 0.1, "cam", rgb, "yuv422")                            # unsupported encoding
    b.image("/rgb", t0 + 0.2, "cam", rgb, "mono16")                            # again: counted, logged once
    b.image("/depth", t0, "cam", depth_mm, "16UC1")
    b.image("/depth", t0 + 0.1, "cam", np.where(depth_mm == 0, np.nan, depth_mm / 1000).astype(np.float32), "32FC1")
    b.image("/depth", t0 + 0.2, "cam", depth_mm, "16UC1", data=np.zeros(5, np.uint8))  # truncated
    path = b.write(tmp_path / "bad")

    with caplog.at_level(logging.WARNING, logger="fusion_core.data.rosbag_source"):
        src = RosbagSource(path, MAPPING)
    assert len(src) == 3
    assert src.drops == {("lidar", "decode_error:point_step_mismatch"): 1, ("lidar", "nan_points"): 2,
                         ("rgb", "decode_error:encoding"): 2, ("depth", "decode_error:truncated"): 1,
                         ("imu", "decode_error:nan_sample"): 1}
    assert len(caplog.records) == len(src.drops)  # one warning per kind, not per message
    assert sum("encoding" in r.getMessage() for r in caplog.records) == 1

    s0, s1, s2 = src[0], src[1], src[2]
    assert s0.absence == {}
    np.testing.assert_array_equal(s0.rgb, rgb)
    # lidar frame: yawed 90 degrees and offset (1, 0.5, 2): (1, 0, 0) -> (1, 1.5, 2), (0, 2, -1) -> (-1, 0.5, 1)
    np.testing.assert_allclose(s0.lidar_xyzi[:2], [[1.0, 1.5, 2.0, 7.0], [-1.0, 0.5, 1.0, 9.0]], atol=1e-6)
    np.testing.assert_allclose(s0.radar_xyzdr, [[13.0, 1.0, 0.5, -3.5, 12.0]])  # big-endian cloud decoded
    np.testing.assert_allclose(s0.depth_m, [[np.nan, 1.5], [2.5, 65.535]], rtol=1e-6)  # mm -> m, 0 -> NaN
    assert s0.rgb_camera.fx == 5.0 and (s0.rgb_camera.width_px, s0.rgb_camera.height_px) == (6, 4)
    np.testing.assert_allclose(s0.rgb_camera.matrix[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # looks forward
    assert s0.imu.shape == (5, 6)  # (t - 0.5, t]: the five samples up to the first scan
    np.testing.assert_allclose(s0.imu[:, 0], [0.4, 0.3, 0.2, 0.1, 0.0], atol=1e-6)  # oldest first

    assert s1.absence == {"lidar": "decode_error:point_step_mismatch", "rgb": "decode_error:encoding"}
    assert s1.lidar_xyzi is None and s1.rgb is None and s1.rgb_camera is None
    assert s1.radar_xyzdr is not None and s1.imu is not None
    np.testing.assert_allclose(s1.depth_m, s0.depth_m, rtol=1e-6)  # 32FC1 as is, NaN = none
    assert s2.absence == {"rgb": "decode_error:encoding", "depth": "decode_error:truncated"}
    assert len(s2.lidar_xyzi) == 3  # the NaN/inf points are gone
    assert len(s2.imu) == len(s1.imu) + 5 - 1  # the NaN sample is left out of the window


def test_a_cloud_above_the_point_limit_is_refused_and_its_frame_kept_without_the_lidar(tmp_path):
    """The rule the fusion node applies live (``max_cloud_points``, same default), so evaluate and
    replay of a bag make the same frames; the frame runs on the other sensors."""
    b = BagBuilder()
    rig(b)
    names = ["x", "y", "z", "intensity"]
    small = np.array([[1.0, 0.0, 0.0, 7.0]], np.float32)
    b.cloud("/lidar", 10.0, "lidar", small, names)
    b.cloud("/lidar", 10.1, "lidar", np.resize(small, (MAX_CLOUD_POINTS + 1, 4)), names)
    for t in (10.0, 10.1):
        b.cloud("/radar", t, "radar", np.array([[10.0, 1.0, 0.0, -3.5, 12.0]]), ["x", "y", "z", "doppler", "rcs"])
    src = RosbagSource(b.write(tmp_path / "big"), MAPPING)
    assert len(src) == 2 and src.drops[("lidar", "decode_error:too_many_points")] == 1
    assert src[0].present("lidar") and src[1].absence["lidar"] == "decode_error:too_many_points"
    assert src[1].present("radar")


def test_bad_values_outside_the_coordinates_and_empty_ranging_sensors(tmp_path):
    """Found by a user: one Inf intensity zeroed a frame's detections, a mapping without an RCS
    field zeroed every frame, and an empty LiDAR cloud counted as a present LiDAR."""
    import dataclasses

    from fusion_core.model.config import BevGridConfig
    from fusion_core.model.inputs import collate
    from fusion_core.vocabulary import NO_RETURNS

    b = BagBuilder()
    rig(b)
    names = ["x", "y", "z", "intensity"]
    pts = np.array([[10.0, 0.0, 0.0, 7.0], [12.0, 1.0, 0.0, np.inf], [14.0, 2.0, 0.0, np.nan]], np.float32)
    t0 = 10.0
    for k in range(2):
        t = t0 + 0.1 * k
        b.camera_info("/depth_info", t, "cam", 2, 2, 1.0, 1.0, 1.0)
        b.cloud("/radar", t, "radar", np.array([[10.0, 1.0, 0.0, -3.5, 12.0]]), ["x", "y", "z", "doppler", "rcs"])
        b.imu("/imu", t, "imu_link", [0.0, 0.0, 9.81, 0.0, 0.0, 0.0])
    b.cloud("/lidar", t0, "lidar", pts, names)                          # Inf and NaN intensity
    b.cloud("/lidar", t0 + 0.1, "lidar", np.zeros((0, 4), np.float32), names)  # no returns at all
    b.image("/depth", t0, "cam", np.array([[1.0, 2.0], [np.nan, 3.0]], np.float32), "32FC1")
    b.image("/depth", t0 + 0.1, "cam", np.full((2, 2), np.nan, np.float32), "32FC1")  # no valid pixel
    path = b.write(tmp_path / "bad_values")
    mapping = dataclasses.replace(MAPPING, rgb_image_topic="", rgb_camera_info_topic="", radar_rcs_field="")
    src = RosbagSource(path, mapping)
    assert src.drops[("lidar", "nan_points")] == 2  # the two broken intensities, not the frame
    s0, s1 = src[0], src[1]
    assert len(s0.lidar_xyzi) == 1 and np.isfinite(s0.lidar_xyzi).all()
    assert np.isnan(s0.radar_xyzdr[:, 4]).all()  # no RCS field mapped: NaN in the sample ...
    assert s1.absence["lidar"] == NO_RETURNS and s1.lidar_xyzi is None
    assert s1.absence["depth"] == NO_RETURNS and "depth" not in s0.absence
    assert s1.present("radar")  # a radar without targets is an answer, not a failure
    inputs = collate([s0, s1], BevGridConfig())
    assert torch_all_finite(inputs.radar.features) and torch_all_finite(inputs.lidar.features)
    assert float(inputs.radar.features[0, 4]) == 0.0  # ... which the model reads as 0
    assert inputs.present.tolist() == [[False, True, True, True], [False, False, False, True]]  # rgb depth lidar radar


@pytest.mark.parametrize("stamps, frames, drops", [
    ([10.0, 10.0, 10.1, 10.1, 10.2, 10.2], 3, {("lidar", DUPLICATE_STAMP): 3}),  # each scan logged twice
    ([10.3, 10.2, 10.1, 10.0], 1, {("lidar", OUT_OF_ORDER): 3}),                 # stamps run backwards
])
def test_stamps_out_of_log_order_are_dropped_and_counted_as_replay_does(tmp_path, stamps, frames, drops):
    """Found by a user: duplicated LiDAR stamps made twice the frames of replay, reversed stamps
    were sorted silently (evaluate 0.123, no warning)."""
    b = BagBuilder()
    rig(b)
    for k, t in enumerate(stamps):
        # the payload marks the log position k; log times increase whatever the stamps do
        b.cloud("/lidar", t, "lidar", np.array([[5.0 + k, 0, 0, 1.0]], np.float32), ["x", "y", "z", "intensity"])
        topic, msgtype, _, msg = b.messages[-1]
        b.messages[-1] = (topic, msgtype, round((20.0 + k) * NS), msg)
    src = RosbagSource(b.write(tmp_path / "odd"), dataclasses.replace(MAPPING, rgb_image_topic="", depth_image_topic="",
                                                                       radar_topic="", imu_topic=""))
    assert len(src) == frames and dict(src.drops) == drops
    if frames == 3:  # the second version of each stamp (log positions 1, 3, 5)
        # the LiDAR mount (yaw 90 degrees, offset y 0.5) puts x = 5 + k at base_link y = 5.5 + k
        assert [float(s.lidar_xyzi[0, 1]) for s in src] == pytest.approx([5.5 + k for k in (1, 3, 5)], abs=1e-5)


def torch_all_finite(t) -> bool:
    import torch
    return bool(torch.isfinite(t).all())


def test_sync_rule_nearest_within_tolerance_ties_to_the_earlier(tmp_path):
    b = BagBuilder()
    rig(b)
    for t in (1.0, 2.0, 3.0, 4.0):
        b.cloud("/lidar", t, "lidar", np.zeros((1, 4)), ["x", "y", "z", "intensity"])
    # rgb images tagged by their pixel value = stamp in centiseconds
    rgb_stamps = (0.97, 1.03, 1.97, 2.02, 3.06, 4.05)
    for t in rgb_stamps:
        b.camera_info("/rgb_info", t, "cam", 2, 2, 1.0, 1.0, 1.0)
        b.image("/rgb", t, "cam", np.full((2, 2, 3), round(t * 100) % 256, np.uint8), "rgb8")
    for k in range(17):
        b.imu("/imu", 0.25 * k, "imu_link", [k, 0, 0, 0, 0, 0])
    mapping = from_mapping(TopicMapping, {"rgb_image_topic": "/rgb", "rgb_camera_info_topic": "/rgb_info",
                                          "lidar_topic": "/lidar", "imu_topic": "/imu",
                                          "sync_tolerance_s": {"default_s": 0.05}})
    src = RosbagSource(b.write(tmp_path / "timed"), mapping)
    picked = [None if s.rgb is None else int(s.rgb[0, 0, 0]) for s in src]
    assert picked == [97, 202, None, 405 % 256]  # tie -> earlier; nearer wins; 0.06 > tol; tol inclusive
    assert src[2].absence == {"rgb": "no_message", "depth": "not_recorded", "radar": "not_recorded"}
    # IMU: (t - 0.5, t] -> stamps 0.75 and 1.0 for t = 1, oldest first
    np.testing.assert_array_equal(src[0].imu[:, 0], [3, 4])
    assert [s.time_s for s in src] == [1.0, 2.0, 3.0, 4.0]  # no simulator epoch: Unix seconds


def test_unconnected_sensor_frame_is_a_clear_error(tmp_path):
    b = BagBuilder()
    b.tf_static({"lidar": ((0.0, 0.0, 1.0), Q_IDENTITY)})
    b.tf_static({"radar": ((0.0, 0.0, 1.0), Q_IDENTITY)}, parent="odom")  # a second, separate tree
    b.cloud("/lidar", 1.0, "lidar", np.zeros((1, 4)), ["x", "y", "z", "intensity"])
    b.cloud("/radar", 1.0, "radar", np.zeros((1, 5)), ["x", "y", "z", "doppler", "rcs"])
    path = b.write(tmp_path / "no_tf")
    mapping = TopicMapping(lidar_topic="/lidar", radar_topic="/radar")
    with pytest.raises(StaticTfError, match=r"radar \(/radar\) frame 'radar'.*not connected"):
        RosbagSource(path, mapping)
    assert len(RosbagSource(path, TopicMapping(lidar_topic="/lidar"))) == 1


def test_static_tf_composes_chains():
    tree = StaticTfTree()
    tree.add("base_link", "mast", matrix_from_quaternion((1.0, 0.0, 2.0), Q_YAW90))
    tree.add("mast", "/lidar", matrix_from_quaternion((0.5, 0.0, 0.0), Q_IDENTITY))  # ROS 1 style name
    tree.add("base_link", "cam", matrix_from_quaternion((0.0, 1.0, 0.0), Q_IDENTITY))
    base_from_lidar = tree.lookup("base_link", "lidar")
    np.testing.assert_allclose(transform_points(base_from_lidar, [[1.0, 0.0, 0.0]]), [[1.0, 1.5, 2.0]], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "lidar") @ tree.lookup("lidar", "cam"), np.eye(4), atol=1e-12)
    with pytest.raises(StaticTfError, match="'radar' is not in the static TF tree"):
        tree.lookup("base_link", "radar")


# ------------------------------------------------------------------------------- mapping config
def test_shipped_sim_mapping_names_the_simulator_topics():
    m = TopicMapping.load(SIM_MAPPING)
    assert {s: m.sensor_topic(s) for s in SENSORS} == T.SENSOR_TOPICS
    assert (m.camera_info_topic("rgb"), m.camera_info_topic("depth")) == (T.RGB_INFO_TOPIC, T.DEPTH_INFO_TOPIC)
    assert (m.ground_truth_topic, m.labels_topic, m.tf_static_topic) == (
        T.GT_DETECTIONS_TOPIC, T.LABELS_TOPIC, T.TF_STATIC_TOPIC)
    assert [f[0] for f in T.LIDAR_POINT_FIELDS][3] == m.lidar_intensity_field
    assert [f[0] for f in T.RADAR_POINT_FIELDS][3:] == [m.radar_doppler_field, m.radar_rcs_field]
    assert m.sync_tolerance_s.for_stream("radar") == 0.025 and m.sync_tolerance_s.for_stream("rgb") == 0.05


@pytest.mark.parametrize("text, message", [
    ("lidar_topic: /l\nlidar_topik: /x\n", r"lidar_topik: unknown key"),
    ("lidar_topic: /l\nsync_tolerance_s: {radar_s: fast}\n", r"sync_tolerance_s\.radar_s: expected a number"),
    ("lidar_topic: /l\nsync_tolerance_s: {lidar: 0.1}\n", r"sync_tolerance_s\.lidar: unknown key"),
    ("lidar_topic: /l\nimu_window_s: -1\n", r"imu_window_s: -1\.0 is below the minimum"),
    ("lidar_topic: /l\nreference_sensor: imu\n", r"reference_sensor: 'imu' is not one of"),
    ("radar_topic: /r\n", r"reference_sensor: 'lidar' has no topic"),
    ("lidar_topic: /l\nrgb_image_topic: /rgb\n", r"rgb_camera_info_topic: required"),
])
def test_bad_mapping_yaml_names_the_key(tmp_path, text, message):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        TopicMapping.load(path)
    assert str(info.value).startswith(str(path))


def test_sync_tolerance_per_stream_or_one_value():
    one = SyncTolerance(default_s=0.02)
    assert {one.for_stream(s) for s in ("rgb", "depth", "lidar", "radar", "ground_truth")} == {0.02}
    assert SyncTolerance(default_s=0.02, radar_s=0.01).for_stream("radar") == 0.01


def test_a_depth_image_labelled_with_the_wrong_encoding_is_refused():
    """32FC1 pixels labelled 16UC1: each row holds twice the bytes the label asks for."""
    from types import SimpleNamespace

    from fusion_core.data import ros_decode as rd
    depth = np.full((4, 6), 2.5, np.float32)
    msg = SimpleNamespace(height=4, width=6, step=depth.strides[0], encoding="16UC1", is_bigendian=0,
                          data=depth.view(np.uint8).reshape(-1))
    with pytest.raises(rd.DecodeError, match="wrong encoding") as err:
        rd.decode_depth(msg)
    assert err.value.what == "encoding"
    msg.encoding = "32FC1"
    np.testing.assert_array_equal(rd.decode_depth(msg), depth)
    padded = np.zeros((4, 8), np.float32)  # ordinary row padding (2 pixels' worth) is still read
    padded[:, :6] = depth
    msg.data, msg.step = padded.view(np.uint8).reshape(-1), padded.strides[0]
    np.testing.assert_array_equal(rd.decode_depth(msg), depth)


def test_replay_with_a_mapping_that_matches_no_topic_is_refused_before_starting(run, tmp_path, capsys):
    from dyn_fusion.cli import main
    mapping = tmp_path / "other.yaml"
    mapping.write_text("lidar_topic: /velodyne_points\nradar_topic: /radar/points\n")
    out = tmp_path / "replay"
    assert main(["replay", str(run["bag"]), "--topics", str(mapping), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "none of its sensor topics (/velodyne_points, /radar/points)" in err and "/sensors/lidar/points" in err
    assert not out.exists()
