"""The evaluation plots write real, readable PNGs (PR curves per class, mAP bars per group)."""
from __future__ import annotations

import matplotlib.image
import pytest

from fusion_core.boxes import empty_boxes
from fusion_core.evaluation.plots import plot_group_bars, plot_pr_curves
from fusion_core.metrics.average_precision import DetectionEvaluator
from tests.fusion_core.metrics.test_average_precision import CAR, PED, boxes, gt


def _check_png(path, min_kb: float, min_width_px: int, min_height_px: int):
    assert path.is_file() and path.stat().st_size > min_kb * 1024
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] >= min_height_px and image.shape[1] >= min_width_px
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_plots_write_readable_pngs(tmp_path):
    ev = DetectionEvaluator()
    ev.add_frame(boxes((10, 0, CAR, 0.9), (10.7, 0, CAR, 0.6), (21, 0, CAR, 0.8)),
                 gt((10, 0, CAR), (20, 0, CAR)), groups=["condition:fog"])
    ev.add_frame(boxes((5, 1, PED, 0.7)), gt((5, 2, PED), (8, 2, PED)), groups=["condition:clear"])
    res = ev.result()

    pr_path = plot_pr_curves(res["all"], tmp_path / "pr" / "all.png")
    assert pr_path == tmp_path / "pr" / "all.png"
    _check_png(pr_path, min_kb=20, min_width_px=3 * 400, min_height_px=400)

    late = DetectionEvaluator()
    late.add_frame(empty_boxes(), gt((10, 0, CAR)), groups=["condition:fog"])
    series = {"exit 1": res, "exit 2": late.result()}  # exit 2 lacks condition:clear -> "n/a"
    bar_path = plot_group_bars(series, tmp_path / "bars.png",
                               groups=["all", "condition:fog", "condition:clear"])
    _check_png(bar_path, min_kb=15, min_width_px=600, min_height_px=400)
    default_order = plot_group_bars(series, tmp_path / "bars_default.png")
    _check_png(default_order, min_kb=15, min_width_px=600, min_height_px=400)
    with pytest.raises(ValueError, match="series"):
        plot_group_bars({}, tmp_path / "none.png")
