"""The inference form (BatchNorm folded, channels-last) computes what the trained detector
computes, on real simulated frames; the max filter equals max_pool2d's window maximum."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusion_core.data.shard_source import ShardSource
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inference_form import inference_form
from fusion_core.model.inputs import collate
from fusion_core.model.max_filter import max_filter2d
from fusion_core.training.checkpoint import load_detector

SHIPPED = Path("models/default.pt")


def _with_real_statistics(detector: FusionDetector) -> FusionDetector:
    """Random BatchNorm statistics and affines far from identity: folding must carry them."""
    g = torch.Generator().manual_seed(3)
    for m in detector.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return detector.eval()


@pytest.fixture(scope="module")
def frames(tiny_shards):
    src = ShardSource(tiny_shards)
    return [src[i] for i in (5, 37, 80)]


def _compare_every_exit(detector: FusionDetector, inputs, tol: float) -> None:
    fast = inference_form(detector)
    with torch.inference_mode():
        want = detector(inputs).exits
        got = fast(inputs).exits
    assert len(got) == len(want) == detector.config.n_exits
    for w, g in zip(want, got):
        scale = max(1.0, float(w.heatmap_logits.abs().max()), float(w.regression.abs().max()))
        assert torch.allclose(g.heatmap_logits, w.heatmap_logits, atol=tol * scale, rtol=0)
        assert torch.allclose(g.regression, w.regression, atol=tol * scale, rtol=0)


def test_folded_tiny_detector_matches_on_every_exit(frames):
    torch.manual_seed(0)
    detector = _with_real_statistics(FusionDetector(load_model_config("configs/model/tiny.yaml")))
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in detector.modules())
    fast = inference_form(detector)
    assert n_norms > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    # the caller's detector is untouched: still normalised, still trainable
    assert sum(isinstance(m, nn.BatchNorm2d) for m in detector.modules()) == n_norms
    detector.train()
    detector.eval()
    _compare_every_exit(detector, collate(frames, detector.config.grid), tol=1e-4)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/default.pt is not in this checkout")
def test_folded_shipped_detector_matches_on_every_exit(frames):
    detector = load_detector(SHIPPED)
    for frame in frames:  # batch 1, as on the robot
        _compare_every_exit(detector, collate([frame], detector.config.grid), tol=1e-4)


def test_inference_form_refuses_training_and_is_idempotent():
    detector = FusionDetector(load_model_config("configs/model/tiny.yaml")).eval()
    fast = inference_form(detector)
    assert inference_form(fast) is fast
    fast.eval()  # eval stays allowed
    with pytest.raises(RuntimeError, match="inference form"):
        fast.train()


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 1, 5, 7), (1, 1, 1, 1), (3, 2, 9, 4)])
def test_max_filter_equals_max_pool(radius, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(radius))
    x[..., 0, 0] = 5.0  # a peak on the border: the padding must not win or spread wrongly
    want = F.max_pool2d(x, 2 * radius + 1, 1, radius)
    assert torch.equal(max_filter2d(x, radius), want)


def test_max_filter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        max_filter2d(torch.zeros(1, 1, 4, 4), -1)
    with pytest.raises(ValueError, match="dimensions"):
        max_filter2d(torch.zeros(4), 1)
