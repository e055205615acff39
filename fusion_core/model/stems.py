"""Per-modality stems: each turns one sensor's data into BEV features on the head grid.

Point stems (LiDAR, radar, back-projected depth) follow PointPillars' idea: a per-point MLP,
max-pooled into the stem grid's cells, then a strided convolution onto the head grid. The RGB
stem runs a small CNN on the image and lifts it to BEV by sampling the image features where
each BEV cell's centre projects at a few heights (orthographic feature transform): no depth is
assumed, so the BEV convolutions downstream must resolve where along a ray the object is. The
depth-aware alternative (``rgb_lift: depth``) is in camera_lift.py.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fusion_core.data.sample import CameraGeometry
from fusion_core.model.camera_lift import DepthLiftStem
from fusion_core.model.config import BevGridConfig, ModelConfig
from fusion_core.model.inputs import IMU_FEATURES, PointSet
from fusion_core.model.layers import conv_bn_relu


class PointStem(nn.Module):
    """(P, 3 + E) points -> (B, C, H/2, W/2) BEV features."""

    def __init__(self, extra_features: int, grid: BevGridConfig, point_channels: int, out_channels: int,
                 refine: bool = True):
        super().__init__()
        self.grid = grid
        self.mlp = nn.Sequential(nn.Linear(3 + extra_features, point_channels), nn.ReLU(inplace=True),
                                 nn.Linear(point_channels, point_channels), nn.ReLU(inplace=True))
        self.down = conv_bn_relu(point_channels + 1, out_channels, stride=2)
        self.refine = conv_bn_relu(out_channels, out_channels) if refine else nn.Identity()

    def forward(self, points: PointSet, batch_size: int) -> torch.Tensor:
        g = self.grid
        h, w = g.stem_shape
        xyz = points.features[:, :3]
        row = ((xyz[:, 0] - g.x_min_m) / g.stem_cell_m).floor().clamp(0, h - 1)
        col = ((xyz[:, 1] - g.y_min_m) / g.stem_cell_m).floor().clamp(0, w - 1)
        # Position inside the cell and height, each scaled to about [-1, 1].
        local = torch.stack([
            2.0 * ((xyz[:, 0] - g.x_min_m) / g.stem_cell_m - row) - 1.0,
            2.0 * ((xyz[:, 1] - g.y_min_m) / g.stem_cell_m - col) - 1.0,
            (xyz[:, 2] - 0.5 * (g.z_min_m + g.z_max_m)) / (0.5 * (g.z_max_m - g.z_min_m)),
        ], 1)
        feats = self.mlp(torch.cat([local, points.features[:, 3:]], 1))
        cell = (points.frame * h + row.long()) * w + col.long()
        c = feats.shape[1]
        # ReLU outputs are >= 0, so zeros are a neutral start for the max.
        pooled = torch.zeros(batch_size * h * w, c, dtype=feats.dtype)
        pooled = pooled.scatter_reduce(0, cell[:, None].expand(-1, c), feats, reduce="amax", include_self=True)
        count = torch.zeros(batch_size * h * w, dtype=feats.dtype).index_add_(0, cell, torch.ones_like(cell, dtype=feats.dtype))
        bev = torch.cat([pooled, torch.log1p(count)[:, None]], 1).view(batch_size, h, w, c + 1).permute(0, 3, 1, 2)
        # (B, H, W, C) permuted is channels-last already: no copy, and oneDNN's preferred layout
        return self.refine(self.down(bev.contiguous(memory_format=torch.channels_last)))


class RgbStem(nn.Module):
    """(B, 3, H, W) images -> (B, C, H_bev, W_bev) BEV features on the head grid."""

    def __init__(self, grid: BevGridConfig, image_channels: int, out_channels: int, lift_heights_m: tuple[float, ...],
                 refine: bool = True):
        super().__init__()
        self.grid = grid
        self.heights = tuple(lift_heights_m)
        self.cnn = nn.Sequential(conv_bn_relu(3, 16, 2), conv_bn_relu(16, 32, 2), conv_bn_relu(32, image_channels, 2),
                                 conv_bn_relu(image_channels, image_channels))
        self.lift = conv_bn_relu(image_channels * len(self.heights) + 1, out_channels, kernel=1)
        self.refine = conv_bn_relu(out_channels, out_channels) if refine else nn.Identity()
        self._lift_cache: dict[CameraGeometry, tuple[torch.Tensor, torch.Tensor]] = {}

    def sampling_grid(self, camera: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """For the head grid's cell centres at each lift height: normalised image coordinates
        (1, n_heights * H_bev, W_bev, 2) for grid_sample, and a (1, 1, H_bev, W_bev) float mask
        of cells in front of the camera and inside the image at some height."""
        if camera in self._lift_cache:
            return self._lift_cache[camera]
        g = self.grid
        h, w = g.head_shape
        cell = g.head_cell_m
        x = g.x_min_m + (torch.arange(h, dtype=torch.float64) + 0.5) * cell
        y = g.y_min_m + (torch.arange(w, dtype=torch.float64) + 0.5) * cell
        xx, yy = torch.meshgrid(x, y, indexing="ij")
        m = torch.as_tensor(camera.matrix)
        cam_from_base = torch.linalg.inv(m)
        coords, visible = [], torch.zeros(h, w, dtype=torch.bool)
        for z in self.heights:
            p = torch.stack([xx, yy, torch.full_like(xx, z)], -1) @ cam_from_base[:3, :3].T + cam_from_base[:3, 3]
            depth = p[..., 2]
            u = camera.fx * p[..., 0] / depth.clamp(min=1e-3) + camera.cx
            v = camera.fy * p[..., 1] / depth.clamp(min=1e-3) + camera.cy
            inside = (depth > 0.5) & (u >= 0) & (u <= camera.width_px - 1) & (v >= 0) & (v <= camera.height_px - 1)
            visible |= inside
            # align_corners=True maps -1 and +1 to the centres of the first and last pixels.
            nu = torch.where(inside, 2 * u / (camera.width_px - 1) - 1, torch.full_like(u, -2.0))
            nv = torch.where(inside, 2 * v / (camera.height_px - 1) - 1, torch.full_like(v, -2.0))
            coords.append(torch.stack([nu, nv], -1))
        sample = torch.cat(coords, 0)[None].float()
        mask = visible[None, None].float()
        self._lift_cache[camera] = (sample, mask)
        return sample, mask

    def encode(self, rgb: torch.Tensor, camera: CameraGeometry) -> tuple[torch.Tensor, None]:
        """The camera stems' interface (see ``DepthLiftStem.encode``): no depth is predicted here."""
        return self(rgb, camera), None

    def forward(self, rgb: torch.Tensor, camera: CameraGeometry) -> torch.Tensor:
        b = rgb.shape[0]
        h, w = self.grid.head_shape
        feats = self.cnn(rgb)
        sample, mask = self.sampling_grid(camera)
        # Outside the image, grid_sample's zero padding leaves zeros.
        lifted = F.grid_sample(feats, sample.expand(b, -1, -1, -1), align_corners=True, padding_mode="zeros")
        lifted = lifted.view(b, feats.shape[1], len(self.heights), h, w).flatten(1, 2)
        return self.refine(self.lift(torch.cat([lifted, mask.expand(b, -1, -1, -1)], 1))) * mask


class ImuStem(nn.Module):
    """(B, IMU_FEATURES) window statistics -> (B, D) context vector."""

    def __init__(self, context_channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(IMU_FEATURES, 32), nn.ReLU(inplace=True), nn.Linear(32, context_channels))

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        return self.mlp(imu)


# SensorSpec.stem -> the stem built from a model config (OpenPCDet-style name -> builder dict).
# The point stems' extra features follow collate's PointSets: lidar intensity; radar Doppler and
# RCS; depth range.
STEMS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "lidar_points": lambda c: PointStem(1, c.grid, c.point_feature_channels, c.stem_channels, c.stem_refine),
    "radar_points": lambda c: PointStem(2, c.grid, c.point_feature_channels, c.stem_channels, c.stem_refine),
    "depth_points": lambda c: PointStem(1, c.grid, c.point_feature_channels, c.stem_channels, c.stem_refine),
    "rgb_lift": lambda c: (
        DepthLiftStem(c.grid, c.rgb_channels, c.stem_channels, c.rgb_depth_bins, c.rgb_depth_min_m, c.rgb_depth_max_m,
                      c.rgb_context_channels, c.stem_refine)
        if c.rgb_lift == "depth" else RgbStem(c.grid, c.rgb_channels, c.stem_channels, c.rgb_lift_heights_m, c.stem_refine)),
    "imu_window": lambda c: ImuStem(c.imu_context_channels),
}
