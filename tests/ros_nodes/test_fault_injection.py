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
        return f"{type(exc).__name__}: {exc}".replace(str(bag), "BAG")


@pytest.mark.parametrize("name", CI_CASES)
def test_a_damaged_bag_ends_in_counted_drops_or_one_line_error_alike_in_evaluate_and_replay(good_bag, tmp_path, name):
    bag = mutate(good_bag, tmp_path / "bag", name, seed=7)
    evaluate, replay = run_evaluate(bag, tmp_path), run_replay(bag, tmp_path)
    problems = evaluate.problems + replay.problems + agreement(evaluate, replay)
    assert not problems, (problems, evaluate.output[-1500:], replay.output[-1500:])
    if name == "lidar_intensity_inf":
        assert evaluate.rc == 0 and evaluate.drops.get("lidar:nan_points", 0) > 0
    if name == "bag_cut_at_50_percent":
        assert evaluate.rc == 2 and "rosbags cannot read this bag" in evaluate.output
        assert replay.frames is not None  # replay salvaged the first half and reported it
