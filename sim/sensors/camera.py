"""What an occlusion fault does to both cameras alike: a blob of mud on the lens (the pinhole
geometry itself is ``fusion_core.data.intrinsics``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fusion_core.data.intrinsics import PinholeIntrinsics


def occlusion_mask(intrinsics: PinholeIntrinsics, fraction: float) -> np.ndarray:
    """(H, W) bool: a blob of mud/dirt in the lower-left covering ``fraction`` of the image."""
    h, w = intrinsics.height_px, intrinsics.width_px
    radius = np.sqrt(fraction * h * w / np.pi) * 1.15
    v, u = np.mgrid[0:h, 0:w]
    mask = (u - 0.2 * w) ** 2 + (v - 0.85 * h) ** 2 <= radius**2
    return mask
