"""The fault-injection harness (tests/fault_injection.py), a short seeded run: a good 20-frame
bag damaged one way at a time goes through `dyn-fusion evaluate` and `dyn-fusion replay`. Each
must end with rc 0 and the damage counted, or a one-line error; never a traceback; replay always
with a report; and where both read the bag, the same frames and the same content drops. The
long run (every mutation, several seeds) is benchmarks/fault_injection.py."""
from __future__ import annotations

import subprocess
import sys

import pytest
from rosbags.highlevel import AnyReader

from fusion_core.data import topics as T
from ros_nodes.bag_messages import BagMessages, BagReadError
from tests.fault_injection import MUTATIONS, agreement, mutate, run_evaluate, run_replay
from tests.ros_nodes.dds import REPO

# One of each family, within CI's budget (each replay starts three nodes: ~30 s).
CI_CASES = ("lidar_intensity_inf", "lidar_stamps_duplicated", "bag_cut_at_50_percent")


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("fault_injection") / "good"
    subprocess.run([sys.executable, "-m", "dyn_fusion.cli", "simulate", "--scenario", "default", "--frames", "20",
                    "--out", str(out), "--no-progress"], cwd=REPO, check=True, capture_output=True)
    return out


def test_every_mutation_is_known_and_seeded(good_bag, tmp_path):
    """Every mutation runs on the good bag, and the same seed gives the same damaged bag."""
    for name in MUTATIONS:
        a = mutate(good_bag, tmp_path / f"{name}_a", name, seed=3)
        b = mutate(good_bag, tmp_path / f"{name}_b", name, seed=3)
        assert _messages(a) == _messages(b), name


def _messages(bag):
    """(topic, log time, raw bytes) of every message, or the reader's refusal of a damaged bag."""
    try:
        with AnyReader([bag]) as reader:
            return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".replace(str(bag), "BAG").replace(bag.name, "NAME")  # (db3 file name)


@pytest.mark.parametrize("name", CI_CASES)
def test_a_damaged_bag_ends_in_counted_drops_or_one_line_error_alike_in_evaluate_and_replay(good_bag, tmp_path, name):
    bag = mutate(good_bag, tmp_path / "bag", name, seed=7)
    evaluate, replay = run_evaluate(bag, tmp_path), run_replay(bag, tmp_path)
    problems = evaluate.problems + replay.problems + agreement(evaluate, replay)
    assert not problems, (problems, evaluate.output[-1500:], replay.output[-1500:])
    if name == "lidar_intensity_inf":
        assert evaluate.rc == 0 and evaluate.drops.get("lidar:nan_points", 0) > 0
    if name == "bag_cut_at_50_percent":  # both salvaged the first half, alike (agreement), and said so
        assert evaluate.rc == 0 and 0 < evaluate.frames < 20 and "reading stopped at byte" in evaluate.source_error


def played(bag):
    """(LiDAR scans the bag player would publish, its note of where reading stopped or None)."""
    scans, note = 0, None
    try:
        with BagMessages(bag) as messages:
            for m in messages.messages():
                scans += m.topic == T.LIDAR_TOPIC and m.cdr is not None
    except BagReadError as exc:
        note = str(exc)
    return scans, note


@pytest.mark.parametrize("name", ("bag_cut_at_50_percent", "bag_cut_at_90_percent", "db3_tail_overwritten"))
def test_evaluate_salvages_a_damaged_bag_as_the_bag_player_does(good_bag, tmp_path, name):
    """The player's stream is what replay fuses (one frame per LiDAR scan); evaluate makes the
    same frames from it and reports the same note, rc 0 (the DDS run itself is the CI case above
    and benchmarks/fault_injection.py)."""
    bag = mutate(good_bag, tmp_path / "bag", name, seed=7)
    scans, note = played(bag)
    evaluate = run_evaluate(bag, tmp_path)
    assert not evaluate.problems and evaluate.rc == 0, evaluate.output[-1500:]
    assert 0 < evaluate.frames == scans < 20
    assert note is not None and evaluate.source_error == note
    assert f"**The source stopped early**: {note}." in evaluate.output


def test_a_bag_with_nothing_to_salvage_is_the_same_one_line_error_in_evaluate_and_replay(good_bag, tmp_path):
    bag = mutate(good_bag, tmp_path / "bag", "bag_storage_emptied", seed=7)
    assert played(bag)[0] == 0
    notes = []
    for outcome in (run_evaluate(bag, tmp_path), run_replay(bag, tmp_path)):  # replay stops before any node
        assert not outcome.problems and outcome.rc == 2, outcome.output[-1500:]
        errors = [line for line in outcome.output.splitlines() if line.startswith(f"dyn-fusion {outcome.command}:")]
        assert len(errors) == 1 and "no MCAP magic" in errors[0], outcome.output
        notes.append(errors[0].split(": nothing to ", 1)[1].split(": ", 1)[1])
    assert notes[0] == notes[1]


def test_lying_metadata_is_played_with_the_stored_type_and_warned_about_as_evaluate_reads_it(good_bag, tmp_path):
    """metadata.yaml declares the LiDAR clouds as Images: the player (no DDS here) creates its
    publisher with the type the storage records and plays every cloud, and says so in the words
    evaluate's reader uses."""
    from fusion_core.data.rosbag_source import RosbagSource
    from fusion_core.data.topic_mapping import TopicMapping, data_config_dir

    bag = mutate(good_bag, tmp_path / "bag", "metadata_lies_about_lidar", seed=7)
    with BagMessages(bag) as messages:
        assert messages.topics[T.LIDAR_TOPIC].msgtype == "sensor_msgs/msg/PointCloud2"  # what its publisher is
        warnings = messages.warnings
    assert played(bag) == (20, None)
    source = RosbagSource(bag, TopicMapping.load(data_config_dir() / "sim_bag.yaml"))
    assert len(warnings) == 1 and warnings == source.source_warnings
    assert "declares /sensors/lidar/points as sensor_msgs/msg/Image" in warnings[0]
    assert "storage records sensor_msgs/msg/PointCloud2" in warnings[0]


def test_lying_metadata_gives_the_same_frames_and_warning_in_evaluate_and_replay(good_bag, tmp_path):
    """Over DDS: replay's fusion node receives every LiDAR cloud (it used to get none: the
    player published them under the declared Image type), as evaluate reads them."""
    bag = mutate(good_bag, tmp_path / "bag", "metadata_lies_about_lidar", seed=7)
    evaluate, replay = run_evaluate(bag, tmp_path), run_replay(bag, tmp_path)
    problems = evaluate.problems + replay.problems + agreement(evaluate, replay)
    assert not problems, (problems, evaluate.output[-1500:], replay.output[-1500:])
    assert evaluate.rc == replay.rc == 0 and evaluate.frames == replay.frames == 20
    assert replay.presence["lidar"] == 1.0
    assert len(evaluate.warnings) == 1 and "sensor_msgs/msg/Image" in evaluate.warnings[0]
    assert evaluate.source_error is None and replay.source_error is None
