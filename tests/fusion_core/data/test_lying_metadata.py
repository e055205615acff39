"""A rosbag2 bag whose metadata.yaml declares a topic with another type than its storage records
(the LiDAR clouds declared as Images): the storage is what the bytes are, so evaluate's bag
reader reads every cloud with the stored type and says, in one line naming the topic and both
types, that metadata.yaml disagrees; never the LiDAR silently absent, never "damaged". The
decision lives in fusion_core.data.bag_metadata, which replay's player asks too
(tests/ros_nodes/test_fault_injection.py checks the two agree)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.config_io import ConfigError
from fusion_core.data import topics as T
from fusion_core.data.bag_metadata import TypeMismatch, bag_information, metadata_mismatches, reader_paths
from fusion_core.data.open_source import open_source, source_error_note, source_warnings
from fusion_core.data.ros_types import shared_typestore
from fusion_core.data.rosbag_source import RosbagSource
from fusion_core.data.topic_mapping import TopicMapping, data_config_dir
from tests.bag_copies import copy_bag, simulated_bag

FRAMES = 8
CLOUD, IMAGE = "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/Image"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return simulated_bag(tmp_path_factory.mktemp("lying"), FRAMES)


@pytest.fixture(scope="module")
def mapping():
    return TopicMapping.load(data_config_dir() / "sim_bag.yaml")


def lie_about_lidar(bag):
    """metadata.yaml declares the LiDAR topic an Image (its hash left as recorded, as a hand edit would)."""
    meta = bag / "metadata.yaml"
    info = yaml.safe_load(meta.read_text())
    for t in info["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == T.LIDAR_TOPIC:
            t["topic_metadata"]["type"] = IMAGE
    meta.write_text(yaml.safe_dump(info))
    return bag


def expected_warning(bag) -> str:
    return (f"{bag}: metadata.yaml declares {T.LIDAR_TOPIC} as {IMAGE}, but its storage records {CLOUD}; "
            f"read as {CLOUD} (the type its bytes were written with)")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_the_storage_type_wins_over_lying_metadata_and_the_disagreement_is_reported(good, mapping, tmp_path, storage):
    honest = good if storage == "mcap" else copy_bag(good, tmp_path / "honest")
    bag = tmp_path / "lying"
    shutil.copytree(honest, bag)
    lie_about_lidar(bag)
    with pytest.raises(Exception):  # the premise: rosbags, trusting metadata.yaml, refuses the bag
        AnyReader([bag]).open()

    assert metadata_mismatches(bag) == [TypeMismatch(T.LIDAR_TOPIC, IMAGE, CLOUD)]
    assert reader_paths(bag) == [next(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))]
    source, truth = RosbagSource(bag, mapping), RosbagSource(honest, mapping)
    assert len(source) == len(truth) == FRAMES
    for i in range(FRAMES):  # every real cloud, decoded as the honest bag's
        assert source[i].present("lidar"), source[i].absence
        np.testing.assert_array_equal(source[i].lidar_xyzi, truth[i].lidar_xyzi)
    assert dict(source.drops) == dict(truth.drops)  # nothing dropped for a "wrong type"
    assert source.source_error is None  # not damaged: read to its end
    assert source.source_warnings == [expected_warning(bag)]
    assert source_warnings(open_source(bag)) == [expected_warning(bag)]  # what evaluate's JSON carries
    assert source_error_note(source) == f"**The source disagrees with itself**: {expected_warning(bag)}.\n\n"


def test_lying_metadata_on_a_cut_bag_is_warned_about_and_salvaged(good, mapping, tmp_path):
    """No summary to read the channels from: they are taken from the records before the cut."""
    bag = tmp_path / "cut"
    bag.mkdir()
    (bag / "metadata.yaml").write_bytes((good / "metadata.yaml").read_bytes())
    data = next(good.glob("*.mcap")).read_bytes()
    (bag / "cut.mcap").write_bytes(data[: int(len(data) * 0.6)])
    lie_about_lidar(bag)
    source = RosbagSource(bag, mapping)
    assert 0 < len(source) < FRAMES and all(source[i].present("lidar") for i in range(len(source)))
    assert source.source_warnings == [expected_warning(bag)]
    assert "reading stopped at byte" in source.source_error


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_topic_metadata_omits_is_read_from_the_storage_and_the_omission_reported(good, mapping, tmp_path, storage):
    """rosbags, trusting metadata.yaml, would yield no LiDAR message at all: the frames would be
    made without the LiDAR (or refused for want of the reference topic) although every cloud is
    in the file."""
    honest = good if storage == "mcap" else copy_bag(good, tmp_path / "honest")
    bag = tmp_path / "omitting"
    shutil.copytree(honest, bag)
    meta = bag / "metadata.yaml"
    info = yaml.safe_load(meta.read_text())
    listed = info["rosbag2_bagfile_information"]["topics_with_message_count"]
    listed[:] = [t for t in listed if t["topic_metadata"]["name"] != T.LIDAR_TOPIC]
    meta.write_text(yaml.safe_dump(info))

    assert metadata_mismatches(bag) == [TypeMismatch(T.LIDAR_TOPIC, None, CLOUD)]
    source, truth = RosbagSource(bag, mapping), RosbagSource(honest, mapping)
    assert len(source) == len(truth) == FRAMES
    for i in range(FRAMES):
        np.testing.assert_array_equal(source[i].lidar_xyzi, truth[i].lidar_xyzi)
    assert source.source_warnings == [f"{bag}: metadata.yaml does not list {T.LIDAR_TOPIC}, but its storage "
                                      f"records it as {CLOUD}; read from the storage"]


def test_an_honest_bag_has_no_warning_and_is_opened_as_a_directory(good, mapping):
    assert metadata_mismatches(good) == []
    assert reader_paths(good) == [good]
    assert RosbagSource(good, mapping).source_warnings == []


def test_a_metadata_file_that_is_an_alias_bomb_is_a_one_line_error_before_it_expands(tmp_path):
    """metadata.yaml is input like any config: read through the guarded YAML reader, so nine
    levels of ten-fold aliases (10^9 values) are refused, not expanded (issue 17's anchor bomb)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines += ["rosbag2_bagfile_information: {version: 8, custom_data: {bomb: *a9}}"]
    (tmp_path / "metadata.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="metadata.yaml") as info:
        bag_information(tmp_path)
    assert "\n" not in str(info.value)
    assert bag_information(tmp_path / "missing") is None
