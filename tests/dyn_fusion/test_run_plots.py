"""The run folder's pictures from frame records (as ros_nodes.run_record writes them): drawn when
there is something to draw, skipped (None) when there is not."""
from __future__ import annotations

import json

import numpy as np

from dyn_fusion.run_plots import plot_bev, plot_timeline, write_run_plots
from fusion_core.boxes import boxes_to_records, make_boxes
from fusion_core.model.config import BevGridConfig

NS = 1_000_000_000


def records(n: int = 12):
    gt = make_boxes(np.array([[15.0, 2.0, 0.8], [30.0, -4.0, 0.9]]), np.array([[4.5, 1.9, 1.6], [0.8, 0.6, 1.7]]),
                    np.zeros(2), np.zeros((2, 2)), np.array([0, 1]))
    det = gt.copy()
    det[:, -1] = [0.9, 0.6]
    frames = [{"stamp_ns": k * NS // 10, "pivot": "lidar", "active_experts": ["lidar", "radar"] if k % 2 else ["all"],
               "exit_index": 2, "stamp_to_publish_ms": 40.0 + k, "sensor_j": 2.0, "compute_j": 0.03,
               "compute_j_by_component": {"stem:lidar": 0.001, "expert:lidar": 0.01, "exit:2": 0.002},
               "detections": boxes_to_records(det), "published": boxes_to_records(det[:1])} for k in range(n)]
    truth = [{"stamp_ns": k * NS // 10, "condition": "clear", "boxes": boxes_to_records(gt)} for k in range(n)]
    return frames, truth


def test_both_pictures_are_drawn_from_the_records(tmp_path):
    frames, truth = records()
    for name, rows in (("frames.jsonl", frames), ("ground_truth.jsonl", truth)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn = write_run_plots(tmp_path, BevGridConfig())
    assert [p.name for p in drawn] == ["timeline.png", "bev.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in drawn)


def test_nothing_to_draw_is_no_picture(tmp_path):
    frames, truth = records()
    assert plot_timeline([], tmp_path / "t.png") is None
    assert plot_bev(frames, [], BevGridConfig(), tmp_path / "b.png") is None   # no ground truth
    far = [{**g, "stamp_ns": g["stamp_ns"] + 10 * NS} for g in truth]      # none near a frame's stamp
    assert plot_bev(frames, far, BevGridConfig(), tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())
