"""Depth-aware camera lift (the Lift-Splat-Shoot idea, supervised like BEVDepth).

For every pixel of the image feature map the stem predicts a categorical distribution over depth
bins and a context vector; their outer product places the context along the pixel's ray with the
predicted depth's weight ("lift"), and every frustum point is sum-pooled into the head grid cell
it falls in ("splat"). The fixed-height lift of ``RgbStem`` copies a pixel's feature to every cell
its ray crosses, so a car is smeared over the whole ray; here it lands where the depth net puts it.

During training the depth distribution is supervised by the LiDAR (and depth-camera) points of the
frame projected into the image: each feature pixel's target is the depth bin of the nearest point
that lands in it (``depth_targets``, ``depth_loss``). The same geometry, computed once per camera,
serves the splat and the targets, so both agree on what "bin d of pixel (i, j)" means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion_core.data.sample import CameraGeometry
from fusion_core.model.config import BevGridConfig
from fusion_core.model.inputs import ModelInputs
from fusion_core.model.layers import conv_bn_relu

IMAGE_STRIDE = 4  # feature map = image / 4: a car 30 m ahead is ~2 feature pixels wide, not 1


@dataclass(frozen=True)
class Frustum:
    """The geometry of one camera on the head grid (tensors built once per camera)."""

    cell: torch.Tensor        # (Nv,) int64 flat head-grid cell of each (bin, pixel, cell) entry kept
    point: torch.Tensor       # (Nv,) int64 flat index into (D, Hf, Wf) of its bin and pixel
    pixel: torch.Tensor       # (Nv,) int64 flat index into (Hf, Wf) of those points
    share: torch.Tensor       # (Nv,) float32 share of the bin's depth interval that lies in the cell
    ray_ground_m: torch.Tensor  # (1, 1, Hf, Wf) depth where each feature pixel's ray meets z = 0 (0: above the horizon), / 60 m
    row: torch.Tensor         # (1, 1, Hf, Wf) feature row scaled to [-1, 1]
    visible: torch.Tensor     # (1, 1, H_bev, W_bev) float: some frustum point lands in the cell
    feature_shape: tuple[int, int]  # (Hf, Wf)


class DepthLiftStem(nn.Module):
    """(B, 3, H, W) images -> (B, C, H_bev, W_bev) BEV features, and (B, D, H/4, W/4) depth logits."""

    def __init__(self, grid: BevGridConfig, image_channels: int, out_channels: int, depth_bins: int,
                 depth_min_m: float, depth_max_m: float, context_channels: int, refine: bool = True):
        super().__init__()
        if depth_max_m <= depth_min_m:
            raise ValueError(f"rgb depth range: max {depth_max_m} m must exceed min {depth_min_m} m")
        self.grid = grid
        self.depth_bins = depth_bins
        self.depth_min_m, self.depth_max_m = float(depth_min_m), float(depth_max_m)
        self.context_channels = context_channels
        c = image_channels
        # The two extra input channels of the depth net are where each pixel's ray meets the ground
        # and the pixel's row: convolutions are translation invariant, and on a flat road the row
        # is most of what tells a pixel's depth.
        self.cnn = nn.Sequential(conv_bn_relu(3, 16, 2), conv_bn_relu(16, 32, 2), conv_bn_relu(32, c))
        self.depth_net = nn.Sequential(conv_bn_relu(c + 2, c), conv_bn_relu(c, c, dilation=2),
                                       nn.Conv2d(c, depth_bins + context_channels, 1))
        self.lift = conv_bn_relu(context_channels + 2, out_channels, kernel=1)
        self.refine = conv_bn_relu(out_channels, out_channels) if refine else nn.Identity()
        self._cache: dict[CameraGeometry, Frustum] = {}

    # ------------------------------------------------------------------ geometry
    def bin_centres_m(self) -> torch.Tensor:
        """(D,) depth (camera z) at the centre of each bin."""
        width = (self.depth_max_m - self.depth_min_m) / self.depth_bins
        return self.depth_min_m + (torch.arange(self.depth_bins, dtype=torch.float64) + 0.5) * width

    def depth_bin(self, z_m: torch.Tensor) -> torch.Tensor:
        """Bin index of camera depths (any shape); -1 outside [depth_min_m, depth_max_m)."""
        width = (self.depth_max_m - self.depth_min_m) / self.depth_bins
        b = torch.floor((z_m - self.depth_min_m) / width).long()
        return torch.where((b >= 0) & (b < self.depth_bins), b, torch.full_like(b, -1))

    def frustum(self, camera: CameraGeometry) -> Frustum:
        if camera in self._cache:
            return self._cache[camera]
        g = self.grid
        hf, wf = feature_shape(camera)
        d = self.depth_bins
        # Centre of feature pixel (i, j) in image pixels: stride-s convolutions with padding put
        # output j over input pixels j*s .. j*s + s - 1.
        # A feature pixel is a cone and a depth bin an interval, not one ray at one depth: each
        # (bin, pixel) is spread over S depths spaced at most half a cell apart and U sub-rays
        # across the pixel's width spaced at most a cell apart at the farthest depth. One sample
        # at the bin centre (bins 1.2 m, cells 0.8 m) left a third of the grid's rows without any
        # image feature (a forward camera's depth is base_link x), and one ray per pixel left
        # columns empty beyond ~25 m.
        width = (self.depth_max_m - self.depth_min_m) / d
        s = max(1, math.ceil(width / (0.5 * g.head_cell_m)))
        n_u = max(1, math.ceil(IMAGE_STRIDE * self.depth_max_m / (camera.fx * g.head_cell_m)))
        u = (torch.arange(wf * n_u, dtype=torch.float64) + 0.5) * (IMAGE_STRIDE / n_u) - 0.5  # sub-ray columns
        v = torch.arange(hf, dtype=torch.float64) * IMAGE_STRIDE + (IMAGE_STRIDE - 1) / 2
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        rays = torch.stack([(uu - camera.cx) / camera.fx, (vv - camera.cy) / camera.fy, torch.ones_like(uu)], -1)
        m = torch.as_tensor(camera.matrix)
        rot, origin = m[:3, :3], m[:3, 3]
        dirs = rays @ rot.T  # (Hf, Wf * U, 3) base_link direction per unit camera depth
        z = self.depth_min_m + (torch.arange(d * s, dtype=torch.float64) + 0.5) * (width / s)  # (D * S,)
        pts = origin + z[:, None, None, None] * dirs[None]  # (D * S, Hf, Wf * U, 3)
        h, w = g.head_shape
        row = torch.floor((pts[..., 0] - g.x_min_m) / g.head_cell_m)
        col = torch.floor((pts[..., 1] - g.y_min_m) / g.head_cell_m)
        keep = ((row >= 0) & (row < h) & (col >= 0) & (col < w)
                & (pts[..., 2] >= g.z_min_m) & (pts[..., 2] < g.z_max_m)).flatten()
        sample_cell = (row * w + col).flatten().long()[keep]
        k = torch.arange(d * s)[:, None, None] // s * (hf * wf)                    # its bin
        i = torch.arange(hf)[None, :, None] * wf                                   # its feature row
        j = torch.arange(wf * n_u)[None, None, :] // n_u                           # its feature column
        sample_point = (k + i + j).flatten()[keep]  # index into (D, Hf, Wf)
        # Samples of one bin and pixel in one cell merge into one entry weighing their share.
        pair, count = torch.unique(sample_cell * (d * hf * wf) + sample_point, return_counts=True)
        cell, point, share = pair // (d * hf * wf), pair % (d * hf * wf), (count.double() / (s * n_u)).float()
        visible = torch.zeros(h * w)
        visible[cell] = 1.0
        # Ground depth: camera z where base_link z reaches 0 along the pixel's central ray (none
        # above the horizon).
        cv, cu = torch.meshgrid(v, torch.arange(wf, dtype=torch.float64) * IMAGE_STRIDE + (IMAGE_STRIDE - 1) / 2,
                                indexing="ij")
        dz = torch.stack([(cu - camera.cx) / camera.fx, (cv - camera.cy) / camera.fy, torch.ones_like(cu)], -1) @ rot[2]
        ground = torch.where(dz < -1e-6, -origin[2] / dz.clamp(max=-1e-6), torch.zeros_like(dz))
        geo = Frustum(cell=cell, point=point, pixel=point % (hf * wf), share=share,
                      ray_ground_m=(ground.clamp(max=120.0) / 60.0).float()[None, None],
                      row=(2 * torch.arange(hf, dtype=torch.float32) / max(1, hf - 1) - 1)[None, None, :, None].expand(1, 1, hf, wf),
                      visible=visible.view(1, 1, h, w), feature_shape=(hf, wf))
        self._cache[camera] = geo
        return geo

    # ------------------------------------------------------------------ forward
    def encode(self, rgb: torch.Tensor, camera: CameraGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H_bev, W_bev) BEV features and (B, D, Hf, Wf) depth logits (the camera stems'
        interface: ``RgbStem.encode`` has no depth to give)."""
        b = rgb.shape[0]
        geo = self.frustum(camera)
        feats = self.cnn(rgb)
        if tuple(feats.shape[-2:]) != geo.feature_shape:
            raise ValueError(f"rgb image {tuple(rgb.shape[-2:])} does not match its camera geometry "
                             f"({camera.height_px}x{camera.width_px})")
        prior = torch.cat([geo.ray_ground_m, geo.row], 1).expand(b, -1, -1, -1).to(feats.dtype)
        out = self.depth_net(torch.cat([feats, prior], 1))
        depth_logits = out[:, : self.depth_bins]
        bev = self.splat(depth_logits.softmax(1), out[:, self.depth_bins:], camera)
        visible = geo.visible.expand(b, -1, -1, -1)
        bev = self.refine(self.lift(torch.cat([bev, visible], 1))) * visible
        return bev, depth_logits

    def splat(self, prob: torch.Tensor, context: torch.Tensor, camera: CameraGeometry) -> torch.Tensor:
        """(B, D, Hf, Wf) depth probabilities and (B, Cc, Hf, Wf) context -> (B, Cc + 1, H_bev, W_bev):
        each pixel's context weighted by each bin's probability, summed into the head-grid cell the
        bin's point falls in; the last channel is the summed probability (how much image lands there)."""
        geo = self.frustum(camera)
        b, d, hf, wf = prob.shape
        context = torch.cat([context, torch.ones_like(context[:, :1])], 1)
        c = context.shape[1]
        # Only the frustum entries inside the region are formed (about a quarter of D x Hf x Wf):
        # each is its bin's probability (times the bin's share in the cell) times its pixel's
        # context, summed into its cell.
        weight = prob.reshape(b, d * hf * wf)[:, geo.point] * geo.share         # (B, Nv)
        feats = context.reshape(b, c, hf * wf).permute(0, 2, 1)[:, geo.pixel]   # (B, Nv, Cc+1)
        h, w = self.grid.head_shape
        bev = torch.zeros(b, h * w, c, dtype=feats.dtype).index_add_(1, geo.cell, weight[..., None] * feats)
        return bev.permute(0, 2, 1).reshape(b, c, h, w)

    def forward(self, rgb: torch.Tensor, camera: CameraGeometry) -> torch.Tensor:
        return self.encode(rgb, camera)[0]

    # ------------------------------------------------------------------ supervision
    def depth_targets(self, xyz: torch.Tensor, frame: torch.Tensor, batch_size: int,
                      camera: CameraGeometry) -> torch.Tensor:
        """(B, Hf, Wf) int64 depth bin of the nearest of the points ``xyz`` (P, 3) in base_link
        (``frame`` (P,) their frame in the batch) seen by each feature pixel; -1 where none."""
        hf, wf = self.frustum(camera).feature_shape
        m = torch.as_tensor(camera.matrix, dtype=torch.float64)
        p = (xyz.double() - m[:3, 3]) @ m[:3, :3]  # camera frame (R^T (x - t), row-vector form)
        z = p[:, 2]
        ok = z > self.depth_min_m
        u = camera.fx * p[:, 0] / z.clamp(min=1e-3) + camera.cx
        v = camera.fy * p[:, 1] / z.clamp(min=1e-3) + camera.cy
        j = torch.floor(u / IMAGE_STRIDE).long()
        i = torch.floor(v / IMAGE_STRIDE).long()
        ok &= (j >= 0) & (j < wf) & (i >= 0) & (i < hf) & (z < self.depth_max_m)
        nearest = torch.full((batch_size * hf * wf,), float("inf"), dtype=torch.float64)
        flat = (frame[ok] * hf + i[ok]) * wf + j[ok]
        nearest = nearest.scatter_reduce(0, flat, z[ok], reduce="amin", include_self=True)
        target = self.depth_bin(nearest.clamp(max=1e6))
        return target.view(batch_size, hf, wf)


def feature_shape(camera: CameraGeometry) -> tuple[int, int]:
    """(Hf, Wf) of the image feature map: two stride-2 convolutions of kernel 3, padding 1."""
    def down(n: int) -> int:
        return (n - 1) // 2 + 1
    return down(down(camera.height_px)), down(down(camera.width_px))


def camera_depth_loss(stem: DepthLiftStem, depth_logits: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
    """The depth lift's supervision on one batch: targets from the frames' LiDAR and depth-camera
    points (whichever each frame has), over the frames whose image was lifted."""
    xyz = torch.cat([inputs.lidar.features[:, :3], inputs.depth.features[:, :3]])
    frame = torch.cat([inputs.lidar.frame, inputs.depth.frame])
    target = stem.depth_targets(xyz, frame, inputs.batch_size, inputs.rgb_camera)
    return depth_loss(depth_logits, target, inputs.sensor_present("rgb"))


def depth_loss(depth_logits: torch.Tensor, target: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, D, Hf, Wf) depth logits against (B, Hf, Wf) target bins (-1: no
    target), over the ``frames`` (B,) bool whose image was lifted; 0 when nothing is supervised."""
    target = torch.where(frames[:, None, None], target, torch.full_like(target, -1))
    if not bool((target >= 0).any()):
        return depth_logits.sum() * 0.0
    return F.cross_entropy(depth_logits, target, ignore_index=-1)
