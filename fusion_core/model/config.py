"""Model configuration (``configs/model/*.yaml``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_core.boxes import CLASS_NAMES
from fusion_core.config_io import ConfigError, load_yaml, param
from fusion_core.vocabulary import DETECTION_SENSORS


@dataclass(frozen=True)
class BevGridConfig:
    """The detection region in base_link and its rasterisation."""

    x_min_m: float = param(0.0, "near edge of the region ahead of base_link", lo=-100.0, hi=100.0)
    x_max_m: float = param(51.2, "far edge of the region", lo=-100.0, hi=200.0)
    y_min_m: float = param(-25.6, "right edge of the region", lo=-100.0, hi=100.0)
    y_max_m: float = param(25.6, "left edge of the region", lo=-100.0, hi=100.0)
    z_min_m: float = param(-1.0, "lowest point kept", lo=-5.0, hi=5.0)
    z_max_m: float = param(4.0, "highest point kept", lo=-5.0, hi=10.0)
    stem_cell_m: float = param(0.4, "cell size the point stems scatter into", lo=0.05, hi=2.0)

    def __post_init__(self):
        if self.x_max_m <= self.x_min_m or self.y_max_m <= self.y_min_m or self.z_max_m <= self.z_min_m:
            raise ConfigError("grid: each max must exceed its min")
        for name, extent in (("x", self.x_max_m - self.x_min_m), ("y", self.y_max_m - self.y_min_m)):
            cells = extent / self.stem_cell_m
            if abs(cells - round(cells)) > 1e-6 or round(cells) % 2:
                raise ConfigError(f"grid.stem_cell_m: the {name} extent must be an even number of cells, "
                                  f"got {cells:.3f}")

    @property
    def stem_shape(self) -> tuple[int, int]:
        """(H, W) of the stem grid: rows along x (forward), columns along y (left)."""
        return (round((self.x_max_m - self.x_min_m) / self.stem_cell_m),
                round((self.y_max_m - self.y_min_m) / self.stem_cell_m))

    @property
    def head_cell_m(self) -> float:
        """Cell size of the expert and head grid (stems downsample by 2)."""
        return 2.0 * self.stem_cell_m

    @property
    def head_shape(self) -> tuple[int, int]:
        h, w = self.stem_shape
        return (h // 2, w // 2)


@dataclass(frozen=True)
class ExpertConfig:
    """One fusion expert: an early fusion of some stems' BEV features."""

    name: str = param("all", "unique name (used in gate tables and energy ledgers)")
    sensors: tuple[str, ...] = param(DETECTION_SENSORS, "stems this expert fuses")

    def __post_init__(self):
        for s in self.sensors:
            if s not in DETECTION_SENSORS:
                raise ConfigError(f"experts.{self.name}.sensors: unknown sensor {s!r}; choose from {DETECTION_SENSORS}")
        if not self.sensors:
            raise ConfigError(f"experts.{self.name}.sensors: an expert needs at least one sensor")


_DEFAULT_EXPERTS = (
    ExpertConfig("lidar", ("lidar",)), ExpertConfig("radar", ("radar",)), ExpertConfig("depth", ("depth",)),
    ExpertConfig("rgb", ("rgb",)), ExpertConfig("camera_depth", ("rgb", "depth")),
    ExpertConfig("lidar_radar", ("lidar", "radar")), ExpertConfig("all", DETECTION_SENSORS),
)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of every part of the detector."""

    name: str = param("default", "model name (reports, checkpoints)")
    classes: tuple[str, ...] = param(CLASS_NAMES, "class names, in class_id order")
    grid: BevGridConfig = param(BevGridConfig(), "detection region and BEV rasterisation")
    point_feature_channels: int = param(16, "per-point MLP width of the LiDAR, radar and depth stems", lo=4, hi=256)
    stem_channels: int = param(32, "channels of every stem's BEV output", lo=4, hi=256)
    rgb_channels: int = param(48, "channels of the RGB image CNN's last layer", lo=4, hi=256)
    rgb_lift_heights_m: tuple[float, ...] = param((0.3, 0.9, 1.5), "heights above base_link the RGB features are sampled at (rgb_lift: heights)")
    rgb_lift: str = param("heights", "how the RGB stem reaches BEV: heights (sample the image where each cell projects "
                          "at fixed heights) or depth (predict a depth distribution per pixel and splat, LiDAR-supervised)",
                          choices=("heights", "depth"))
    rgb_depth_bins: int = param(48, "depth bins of the depth lift", lo=4, hi=256)
    rgb_depth_min_m: float = param(1.0, "nearest camera depth the depth lift places features at", lo=0.1, hi=50.0)
    rgb_depth_max_m: float = param(58.0, "farthest camera depth of the depth lift (the region's far corner)", lo=2.0, hi=300.0)
    rgb_context_channels: int = param(32, "channels the depth lift splats into BEV", lo=4, hi=256)
    imu_context_channels: int = param(16, "size of the IMU context vector", lo=2, hi=256)
    experts: tuple[ExpertConfig, ...] = param(_DEFAULT_EXPERTS, "fusion experts")
    stem_refine: bool = param(True, "a second 3x3 convolution at the end of every stem (off: cheaper stems, so skipping experts saves more)")
    expert_channels: int = param(32, "channels of every expert's output", lo=4, hi=256)
    expert_blocks: int = param(0, "residual blocks after each expert's fusion convolutions (depth that gates can skip)", lo=0, hi=8)
    head_channels: int = param(32, "channels of the detection trunk", lo=4, hi=256)
    exit_blocks: tuple[int, ...] = param((1, 2, 2), "residual blocks before each exit (exit k runs the sum of the first k)")
    max_detections: int = param(64, "detections kept per frame after peak extraction", lo=1, hi=1000)
    score_threshold: float = param(0.05, "lowest score reported", lo=0.0, hi=1.0)

    def __post_init__(self):
        names = [e.name for e in self.experts]
        if len(set(names)) != len(names):
            raise ConfigError(f"experts: names must be unique, got {names}")
        if not self.experts:
            raise ConfigError("experts: at least one expert is needed")
        if len(self.exit_blocks) < 1 or any(b < 1 for b in self.exit_blocks):
            raise ConfigError(f"exit_blocks: each exit needs at least one block, got {self.exit_blocks}")
        if not self.classes:
            raise ConfigError("classes: at least one class is needed")
        if self.rgb_depth_max_m <= self.rgb_depth_min_m:
            raise ConfigError(f"rgb_depth_max_m ({self.rgb_depth_max_m}) must exceed rgb_depth_min_m ({self.rgb_depth_min_m})")

    @property
    def n_exits(self) -> int:
        return len(self.exit_blocks)

    @property
    def expert_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts)


def load_model_config(path: Path | str) -> ModelConfig:
    return load_yaml(ModelConfig, path)

