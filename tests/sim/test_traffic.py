"""Traffic is collision-free by construction: ground-truth boxes never overlap each other or the
ego, and crossing pedestrians still cross."""
from __future__ import annotations

import numpy as np
import pytest

from fusion_core.boxes import box_corners_bev, make_boxes
from sim.config import load_scenario, resolve_scenario
from sim.traffic import PEDESTRIAN
from sim.world import World


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals (4, 2)."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def test_separating_axis_helper_detects_overlap():
    unit = make_boxes(np.zeros((2, 3)), np.ones((2, 3)), np.array([0.0, 0.7]), np.zeros((2, 2)), np.zeros(2))
    far = unit.copy()
    far[1, 0] = 1.5
    assert _overlap(*box_corners_bev(unit)) and not _overlap(*box_corners_bev(far))


@pytest.mark.parametrize("scenario", ["default", "city_turns"])
def test_ground_truth_boxes_never_overlap_each_other_or_the_ego(scenario):
    world = World(load_scenario(resolve_scenario(scenario)))
    pairs = 0
    for t in np.arange(0.0, 40.0, 1.0):
        ego = world.ego.state(t)
        _, boxes = world.ground_truth_world(world.actor_states(t), np.array([ego.x_m, ego.y_m]), 70.0)
        corners = box_corners_bev(boxes)
        centre = np.array([[ego.x_m + 1.4 * np.cos(ego.yaw_rad), ego.y_m + 1.4 * np.sin(ego.yaw_rad), 0.8]])
        ego_box = box_corners_bev(make_boxes(centre, np.array([[4.8, 1.9, 1.6]]), np.array([ego.yaw_rad]),
                                             np.zeros((1, 2)), np.zeros(1)))[0]
        for i in range(len(corners)):
            assert not _overlap(corners[i], ego_box), (scenario, t, i)
            for j in range(i + 1, len(corners)):
                pairs += 1
                assert not _overlap(corners[i], corners[j]), (scenario, t, boxes[i], boxes[j])
    assert pairs > 5000


def test_crossing_pedestrians_cross_the_road():
    world = World(load_scenario(resolve_scenario("default")))
    crossers = [c.actor for c in world.traffic.crossings]
    assert crossers and all(world.traffic.class_id[a] == PEDESTRIAN for a in crossers)
    kerb = world.road.kerb_d_m
    sides = []
    for t in np.arange(0.0, 60.0, 0.5):
        _, d, _, vd, _ = world.traffic.frenet_state(t)
        sides.append(np.sign(d[crossers]))
        on_road = np.abs(d[crossers]) < kerb
        assert np.all(np.abs(vd[crossers][on_road]) > 0.5)  # nobody lingers in the road
    sides = np.array(sides)
    changed = np.any(sides != sides[0], axis=0)
    assert changed.mean() > 0.8  # most crossers reached the other side within a minute
