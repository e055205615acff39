"""A rosbag2 recording whose storage was cut short or overwritten (a recorder killed mid-write)
is read by evaluate's bag reader as replay's player reads it: rosbags refuses the bag, the
storage is walked front to back, every frame before the damage is made, and ``source_error``
says where and why reading stopped. A bag with nothing to salvage is a one-line error."""
from __future__ import annotations

import re

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.data import topics as T
from fusion_core.data.bag_salvage import BagReadError, salvage
from fusion_core.data.ros_types import shared_typestore
from fusion_core.data.rosbag_source import DamagedBagError, RosbagSource
from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
from tests.bag_copies import copy_bag, overwrite_db3_tail, simulated_bag

FRAMES = 12


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return simulated_bag(tmp_path_factory.mktemp("damaged"), FRAMES)


@pytest.fixture(scope="module")
def mapping():
    return TopicMapping.load(data_config_dir() / "sim_bag.yaml")


def cut(good, dst, fraction: float):
    """A copy of the bag with its MCAP file cut at ``fraction`` of its length."""
    dst.mkdir()
    (dst / "metadata.yaml").write_bytes((good / "metadata.yaml").read_bytes())
    data = next(good.glob("*.mcap")).read_bytes()
    (dst / "cut.mcap").write_bytes(data[: int(len(data) * fraction)])
    return dst


def walked(bag) -> tuple[int, int, str]:
    """(messages, LiDAR scans, note) the storage gives when walked front to back by hand."""
    messages = scans = 0
    with pytest.raises(BagReadError) as stopped:
        for m in salvage(bag, "refused"):
            messages += 1
            scans += m.topic == T.LIDAR_TOPIC
    return messages, scans, str(stopped.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_cut_mcap_gives_every_frame_before_the_cut_and_says_where_reading_stopped(good, mapping, tmp_path,
                                                                                    fraction):
    bag = cut(good, tmp_path / "cut", fraction)
    with pytest.raises(Exception):  # the premise: rosbags alone refuses the cut file
        AnyReader([bag]).open()
    messages, scans, _ = walked(bag)
    whole = RosbagSource(good, mapping)
    source = RosbagSource(bag, mapping)
    assert 0 < len(source) == scans < FRAMES  # one frame per LiDAR scan the salvage reached
    np.testing.assert_array_equal(source.stamps_ns, whole.stamps_ns[: len(source)])
    last = len(source) - 1
    np.testing.assert_array_equal(source[last].lidar_xyzi, whole[last].lidar_xyzi)
    np.testing.assert_array_equal(source[last].gt_boxes, whole[last].gt_boxes)
    assert re.fullmatch(
        rf"{re.escape(str(bag))}: the bag is damaged \(AnyReaderError: .+\); read {messages} messages front to "
        rf"back, then {re.escape(str(bag / 'cut.mcap'))}: reading stopped at byte \d+ of \d+: .*cut short.*",
        source.source_error), source.source_error
    assert "\n" not in source.source_error
    assert dict(source.drops) == dict(whole.drops)  # the salvage itself drops nothing it read


def test_a_db3_with_a_damaged_tail_gives_the_frames_of_the_rows_before_the_damage(good, mapping, tmp_path):
    bag = overwrite_db3_tail(copy_bag(good, tmp_path / "db3"))
    messages, scans, _ = walked(bag)
    source = RosbagSource(bag, mapping)
    assert 0 < len(source) == scans < FRAMES
    np.testing.assert_array_equal(source.stamps_ns, RosbagSource(good, mapping).stamps_ns[: len(source)])
    assert re.search(rf"read {messages} messages front to back, then .*\.db3: reading stopped after message row "
                     rf"\d+: sqlite: .*malformed", source.source_error), source.source_error


def test_a_storage_file_with_nothing_to_salvage_is_a_one_line_error(good, mapping, tmp_path):
    bag = cut(good, tmp_path / "empty", 0.0)
    with pytest.raises(DamagedBagError, match=r"nothing to read: .*read 0 messages front to back, then .*"
                                              r"reading stopped at byte 0: no MCAP magic") as err:
        RosbagSource(bag, mapping)
    assert "\n" not in str(err.value)


def test_a_sound_bag_has_no_note(good, mapping):
    assert RosbagSource(good, mapping).source_error is None
