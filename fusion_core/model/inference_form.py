"""A detector rewritten for batch-1 CPU inference: same outputs, less work per frame.

Two rewrites, both exact up to float rounding (tests/fusion_core/model/test_inference_form.py checks
every exit's outputs against the trained form on real frames):

- every BatchNorm that directly follows a convolution is folded into that convolution's weights
  and bias (eval-mode BatchNorm is an affine map per channel): the default model's 43
  normalisation passes over feature maps disappear;
- weights are stored channels-last. oneDNN's convolutions run on channels-last tensors without
  reordering them first, and the point stems already build their grids in that order: a
  3x3 convolution from 17 to 32 channels on a 128x128 grid took 7.2 ms NCHW and 1.4 ms
  channels-last on one core of this machine.

The result is for inference only: training it would train a network without normalisation, so
``train(True)`` raises. Offline evaluation and fusion_node both run this form, so a replayed bag
and ``dyn-fusion evaluate`` still compute the same numbers.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fusion_core.model.detector import FusionDetector


def inference_form(detector: FusionDetector) -> FusionDetector:
    """A copy of ``detector`` with BatchNorm folded into the convolutions and channels-last
    weights, in eval mode, refusing ``train(True)``. ``detector`` itself is unchanged."""
    if getattr(detector, "inference_only", False):
        return detector
    folded = copy.deepcopy(detector).eval()
    _fold_batch_norms(folded)
    folded = folded.to(memory_format=torch.channels_last)
    folded.calls.clear()
    folded.inference_only = True
    return folded


def _fold_batch_norms(module: nn.Module) -> None:
    """Replace, in place and at every depth, each Sequential's (Conv2d, BatchNorm2d) pairs by one
    folded Conv2d."""
    for name, child in module.named_children():
        _fold_batch_norms(child)
        if isinstance(child, nn.Sequential):
            setattr(module, name, _folded_sequential(child))


def _folded_sequential(seq: nn.Sequential) -> nn.Sequential:
    layers, out = list(seq), []
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(layer, following))
            i += 2
        else:
            out.append(layer)
            i += 1
    return nn.Sequential(*out)
