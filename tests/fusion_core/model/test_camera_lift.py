"""The depth-aware camera lift: geometry of the splat, its LiDAR depth targets, and training."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fusion_core.data.sample import CameraGeometry
from fusion_core.model.camera_lift import DepthLiftStem, camera_depth_loss, depth_loss
from fusion_core.model.config import BevGridConfig, load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import collate

GRID = BevGridConfig()


def _forward_camera(height_m: float = 1.5, y_m: float = 0.0) -> CameraGeometry:
    """A 96x64 camera looking along base_link x: optical z = base x, optical x = -base y, optical y = -base z."""
    m = np.eye(4)
    m[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    m[:3, 3] = [0.0, y_m, height_m]
    return CameraGeometry.from_arrays(96, 64, 60.0, 60.0, 47.5, 31.5, m)


def _stem(bins: int = 56) -> DepthLiftStem:
    return DepthLiftStem(GRID, 16, 8, bins, 1.0, 57.0, 4, refine=False)


def _cell_of(x_m: float, y_m: float) -> tuple[int, int]:
    return int((x_m - GRID.x_min_m) // GRID.head_cell_m), int((y_m - GRID.y_min_m) // GRID.head_cell_m)


@pytest.mark.parametrize("depth_m, pixel", [(10.4, (9, 12)), (30.5, (8, 3)), (45.2, (8, 16))])
def test_splat_puts_a_pixel_feature_where_its_depth_bin_lies(depth_m, pixel):
    stem, cam = _stem(), _forward_camera()
    hf, wf = stem.frustum(cam).feature_shape
    i, j = pixel
    prob = torch.zeros(1, stem.depth_bins, hf, wf)
    d = int(stem.depth_bin(torch.tensor(depth_m)))
    prob[0, d, i, j] = 1.0
    context = torch.zeros(1, 4, hf, wf)
    context[0, :, i, j] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    bev = stem.splat(prob, context, cam)
    # The bin's depth interval along pixel (i, j)'s ray, in base_link: x = depth, y from the column.
    width = (stem.depth_max_m - stem.depth_min_m) / stem.depth_bins
    near, far = stem.depth_min_m + d * width, stem.depth_min_m + (d + 1) * width
    u = j * 4 + 1.5  # the feature pixel's centre column in image pixels (it covers u +- 2)
    depths = np.linspace(near, far - 1e-6, 50)
    on_centre_ray = {_cell_of(z, -(u - cam.cx) / cam.fx * z) for z in depths}
    in_footprint = {_cell_of(z, -(uu - cam.cx) / cam.fx * z) for z in depths for uu in np.linspace(u - 2, u + 2, 50)}
    hit = {tuple(c) for c in torch.nonzero(bev[0, 0]).tolist()}
    assert on_centre_ray <= hit <= in_footprint  # along the whole interval, inside the pixel's cone
    for r, c in hit:  # each cell holds the context times the share of the bin it received
        mass = float(bev[0, 4, r, c])
        assert bev[0, :4, r, c].tolist() == pytest.approx([mass, 2 * mass, 3 * mass, 4 * mass])
    assert float(bev[0, 4].sum()) == pytest.approx(1.0)  # the whole bin is inside the region


def test_the_splat_leaves_no_cell_of_the_view_without_image_features():
    """Bins (here 1 m) coarser than cells (0.8 m) must not skip rows (a forward camera's depth is
    base_link x), nor pixels 4 image pixels wide (1.9 m at 28 m here) skip columns at range."""
    stem, cam = _stem(), _forward_camera()
    visible = stem.frustum(cam).visible[0, 0].bool()
    rows = torch.nonzero(visible[:, _cell_of(0.0, 0.0)[1]]).flatten()
    assert len(rows) > 50 and rows.tolist() == list(range(int(rows[0]), int(rows[-1]) + 1))
    for r in rows.tolist():  # across each row, the view is one unbroken span
        cols = torch.nonzero(visible[r]).flatten().tolist()
        assert cols == list(range(cols[0], cols[-1] + 1)), r


def test_a_nearer_depth_lands_nearer_along_the_same_ray():
    stem, cam = _stem(), _forward_camera()
    hf, wf = stem.frustum(cam).feature_shape
    rows = []
    for depth_m in (8.0, 20.0, 40.0):
        prob = torch.zeros(1, stem.depth_bins, hf, wf)
        prob[0, int(stem.depth_bin(torch.tensor(depth_m))), 8, wf // 2] = 1.0
        bev = stem.splat(prob, torch.ones(1, 4, hf, wf), cam)
        rows.append(int(torch.nonzero(bev[0, 0])[0, 0]))
    assert rows == sorted(rows) and len(set(rows)) == 3
    assert rows[1] == _cell_of(stem.bin_centres_m()[stem.depth_bin(torch.tensor(20.0))].item(), 0)[0]


def test_points_above_the_region_are_not_splatted():
    """A pixel looking up at the sky leaves the region's height range within a few metres."""
    stem, cam = _stem(), _forward_camera()
    prob = torch.zeros(1, stem.depth_bins, *stem.frustum(cam).feature_shape)
    prob[0, -1, 0, 12] = 1.0  # top row, farthest bin: ~ 57 m * 0.5 rad above z = 4 m
    assert float(stem.splat(prob, torch.ones(1, 4, *prob.shape[2:]), cam).abs().sum()) == 0.0


def test_depth_targets_take_the_nearest_point_of_each_pixel_and_round_trip_through_the_splat():
    stem, cam = _stem(), _forward_camera()
    hf, wf = stem.frustum(cam).feature_shape
    # Two points on the optical axis's pixel at 12 m and 25 m (the nearer one wins), one at 35 m
    # in the second frame, one behind the camera and one beyond the last bin (no targets).
    xyz = torch.tensor([[25.0, 0.0, 1.5], [12.0, 0.0, 1.5], [35.0, 0.0, 1.5], [-5.0, 0.0, 1.5], [80.0, 0.0, 1.5]])
    frame = torch.tensor([0, 0, 1, 0, 1])
    target = stem.depth_targets(xyz, frame, 2, cam)
    u, v = 47.5, 31.5
    i, j = int(v // 4), int(u // 4)
    assert int(target[0, i, j]) == int(stem.depth_bin(torch.tensor(12.0)))
    assert int(target[1, i, j]) == int(stem.depth_bin(torch.tensor(35.0)))
    assert int((target >= 0).sum()) == 2
    # Splatting the target's one-hot puts the pixel back next to the point it came from (within
    # one cell: a bin is 1 m deep and a feature pixel 4 image pixels, 2 m wide at 35 m).
    prob = torch.nn.functional.one_hot(target.clamp(min=0), stem.depth_bins).permute(0, 3, 1, 2).float()
    prob = prob * (target >= 0)[:, None]
    bev = stem.splat(prob, torch.ones(2, 4, hf, wf), cam)
    r, c = torch.nonzero(bev[1, 0])[0].tolist()
    assert abs(r - _cell_of(35.0, 0.0)[0]) <= 1 and abs(c - _cell_of(35.0, 0.0)[1]) <= 1


def test_depth_loss_ignores_frames_without_an_image_and_pixels_without_a_point():
    logits = torch.zeros(2, 5, 3, 4, requires_grad=True)
    target = torch.full((2, 3, 4), -1)
    assert depth_loss(logits, target, torch.tensor([True, True])).item() == 0.0
    target[1, 0, 0] = 2
    assert depth_loss(logits, target, torch.tensor([True, False])).item() == 0.0
    loss = depth_loss(logits, target, torch.tensor([True, True]))
    assert loss.item() == pytest.approx(np.log(5))
    loss.backward()
    assert float(logits.grad[0].abs().sum()) == 0.0 and float(logits.grad[1, 2, 0, 0]) < 0


def test_a_depth_lift_model_learns_the_depth_of_lidar_points(tiny_shards):
    """On real frames: the detector with ``rgb_lift: depth`` returns depth logits, and a few steps
    on the LiDAR-supervised depth loss alone lower it (the image carries depth information)."""
    from fusion_core.data.shard_source import ShardSource
    config = dataclasses.replace(load_model_config("configs/model/tiny.yaml"), rgb_lift="depth", rgb_depth_bins=24)
    torch.manual_seed(0)
    model = FusionDetector(config).train()
    src = ShardSource(tiny_shards)
    inputs = collate([src[i] for i in (5, 25, 45, 65)], config.grid)
    stem = model.stems["rgb"]
    optimiser = torch.optim.Adam(stem.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(inputs)
        assert out.camera_depth_logits is not None and out.camera_depth_logits.shape[1] == 24
        loss = camera_depth_loss(stem, out.camera_depth_logits, inputs)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 2.0  # about log(24) at the start
    assert losses[-1] < 0.6 * losses[0]
