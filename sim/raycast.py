"""Thin wrapper over Open3D's RaycastingScene for one instant's triangle soup."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from sim.world import SceneMesh


@dataclass
class RayHits:
    """Results for N rays."""

    range_m: np.ndarray      # (N,) distance to the hit along the unit ray, inf on a miss
    object_id: np.ndarray    # (N,) int32 hit object, -1 on a miss
    normal: np.ndarray       # (N, 3) surface normal at the hit (world frame)


class CastScene:
    """An Embree BVH over one SceneMesh; cast with ``threads`` CPU threads (0 = all cores)."""

    def __init__(self, mesh: SceneMesh, threads: int = 1):
        self.mesh = mesh
        self.threads = threads
        n = len(mesh.triangles)
        vertices = o3d.core.Tensor(np.ascontiguousarray(mesh.triangles.reshape(-1, 3), dtype=np.float32))
        indices = o3d.core.Tensor(np.arange(3 * n, dtype=np.uint32).reshape(n, 3))
        self._scene = o3d.t.geometry.RaycastingScene(nthreads=threads)  # BVH build threads too
        self._scene.add_triangles(vertices, indices)
        # Object of each triangle, plus -1 at the end for rays that hit nothing: Open3D marks a
        # miss with the largest uint32, which np.minimum folds onto that last entry.
        self._object_of_primitive = np.append(mesh.object_id, -1).astype(np.int32)

    def cast(self, origin: np.ndarray, directions: np.ndarray) -> RayHits:
        """Cast rays from one (3,) origin along (N, 3) unit directions (world frame)."""
        rays = np.empty((len(directions), 6), np.float32)
        rays[:, :3] = origin
        rays[:, 3:] = directions
        out = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self.threads)
        prim = np.minimum(out["primitive_ids"].numpy(), len(self._object_of_primitive) - 1)
        return RayHits(out["t_hit"].numpy(), self._object_of_primitive[prim], out["primitive_normals"].numpy())
