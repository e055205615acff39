"""Geometric ground-truth visibility: probe rays from the LiDAR mount, before weather."""
from __future__ import annotations

import numpy as np

from fusion_core.boxes import points_in_boxes
from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY
from sim.simulator import Simulator
from sim.visibility import N_PROBES, probe_points
from tests.conftest import straight_scenario, with_weather


def test_probe_points_lie_inside_their_rotated_box():
    box = np.zeros((1, 11), np.float32)
    box[0, :7] = (10.0, 5.0, 1.0, 4.0, 2.0, 1.6, np.pi / 3)
    points = probe_points(box)
    assert points.shape == (1, N_PROBES, 3)
    assert points_in_boxes(points[0], box).all()
    # They spread over most of the box, not just its centre.
    local = points[0, :, :2] - box[0, :2]
    along = local @ np.array([np.cos(np.pi / 3), np.sin(np.pi / 3)])
    assert np.ptp(along) > 0.75 * 4.0 and np.ptp(points[0, :, 2]) > 0.65 * 1.6


def test_visibility_is_geometric_and_matches_what_the_lidar_sees():
    config = straight_scenario()
    clear = list(Simulator(config).run(20))
    fog = list(Simulator(with_weather(config, "fog", 0.75)).run(20))
    vis = np.concatenate([f.gt_visibility for f in clear])
    hits = np.concatenate([f.gt_lidar_hits for f in clear])
    dist = np.concatenate([np.hypot(f.gt_boxes[:, 0], f.gt_boxes[:, 1]) for f in clear])
    assert vis.dtype == np.float32 and ((vis >= 0) & (vis <= 1)).all()
    hidden = vis < DEFAULT_MIN_VISIBILITY
    # The street has occlusions, and most boxes are visible.
    assert 5 <= hidden.sum() <= 0.3 * len(vis)
    # In clear air the LiDAR (same mount) puts almost nothing on hidden boxes, and always hits
    # nearby fully visible ones.
    assert hits[hidden].max() <= 4
    near_visible = (vis >= 0.9) & (dist < 30)
    assert near_visible.sum() > 20 and (hits[near_visible] > 0).all()
    # Weather changes what the LiDAR returns, not what is geometrically visible.
    np.testing.assert_array_equal(vis, np.concatenate([f.gt_visibility for f in fog]))
    assert np.concatenate([f.gt_lidar_hits for f in fog]).sum() < 0.9 * hits.sum()
