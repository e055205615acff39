"""What fusion_node's published detections look like for each (publish.min_score, publish.nms_iou):
boxes per frame, precision and recall against the visible ground truth (same class, centres
within 2 m, greedy by score, as the evaluator matches), on test frames, static fusion, last exit.
The shipped defaults are the setting with the best F1.

    .venv/bin/python benchmarks/publish_filter.py [--data data/test] [--frames 240]

Needs the test collection (`dyn-fusion make-dataset --recipe configs/datasets/test.yaml --out
data/test`). Results: benchmarks/results/publish_filter.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_result
from fusion_core.boxes import CLASS_ID, SCORE, X, Y
from fusion_core.data.open_source import FrameSubset, open_source
from fusion_core.detection_filter import DetectionFilterSettings, filter_detections
from fusion_core.metrics.average_precision import match_frame_class
from fusion_core.metrics.model_eval import in_region
from fusion_core.model.batch import BatchCollator
from fusion_core.model.decode import decode_exit
from fusion_core.training.checkpoint import load_detector

MIN_SCORES = (0.05, 0.2, 0.3, 0.4, 0.5)
NMS_IOUS = (1.0, 0.3, 0.2, 0.1)
MATCH_M = np.array([2.0])


def frames_of(model, source, n_frames: int):
    """(reported boxes, ground truth in the region, hidden mask) of ``n_frames`` frames spread
    over ``source``."""
    index = np.linspace(0, len(source) - 1, min(n_frames, len(source))).astype(int).tolist()
    loader = DataLoader(FrameSubset(source, index), batch_size=8, collate_fn=BatchCollator(model.config))
    out = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="frames", unit="batch"):
            result = model(batch.inputs)
            boxes = decode_exit(result.exits[-1], model.config.grid, model.config.max_detections,
                                model.config.score_threshold, result.has_input)
            for det, gt, hidden in zip(boxes, batch.gt_boxes, batch.gt_hidden):
                if gt is not None:
                    keep = in_region(gt, model.config.grid)
                    out.append((det, gt[keep], hidden[keep]))
    return out


def score(frames, settings: DetectionFilterSettings) -> dict:
    tp = fp = fn = published = 0
    for det, gt, hidden in frames:
        kept, _ = filter_detections(det, settings)
        published += len(kept)
        for c in np.unique(np.r_[kept[:, CLASS_ID], gt[:, CLASS_ID]]):
            d, g = kept[kept[:, CLASS_ID] == c], gt[(gt[:, CLASS_ID] == c) & ~hidden]
            hit = match_frame_class(d[:, [X, Y]], d[:, SCORE], g[:, [X, Y]], MATCH_M)[:, 0]
            # a box on a hidden object is neither right nor wrong (the evaluator's "don't care")
            hidden_c = gt[(gt[:, CLASS_ID] == c) & hidden]
            wrong = d[~hit]
            if len(hidden_c) and len(wrong):
                wrong = wrong[np.linalg.norm(wrong[:, None, [X, Y]] - hidden_c[None, :, [X, Y]], axis=-1).min(1) > 2.0]
            tp, fp, fn = tp + int(hit.sum()), fp + len(wrong), fn + len(g) - int(hit.sum())
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"min_score": settings.min_score, "nms_iou": settings.nms_iou,
            "boxes_per_frame": round(published / len(frames), 2), "precision": round(precision, 3),
            "recall": round(recall, 3), "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="models/default.pt")
    ap.add_argument("--data", default=str(ROOT / "data" / "test"))
    ap.add_argument("--frames", type=int, default=240, help="frames, spread evenly over the data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "publish_filter.json")
    args = ap.parse_args()
    model = load_detector(args.checkpoint)
    frames = frames_of(model, open_source(args.data), args.frames)
    rows = [score(frames, DetectionFilterSettings(min_score=s, nms_iou=n)) for s in MIN_SCORES for n in NMS_IOUS]
    best = max(rows, key=lambda r: r["f1"])
    write_result(args.out, {"command": "benchmarks/publish_filter.py " + " ".join(sys.argv[1:]),
                            "frames": len(frames),
                            "visible_objects_per_frame": round(float(np.mean([(~h).sum() for *_, h in frames])), 2),
                            "defaults": {"min_score": DetectionFilterSettings().min_score,
                                         "nms_iou": DetectionFilterSettings().nms_iou},
                            "best_f1": best, "rows": rows})


if __name__ == "__main__":
    main()
