"""FLOP counts per module, including the CPU attention kernels FlopCounterMode counts as 0 in torch 2.13."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion_core.energy.flops import count_flops

B, L, E, H = 2, 6, 16, 4   # batch, sequence length, embedding width, heads
DH = E // H                # head width


def _raw_flops(fn, *args) -> int:
    """What FlopCounterMode reports without our formulas."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops()


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_conv2d_count_is_2_cout_h_w_cin_k_k():
    x = torch.randn(1, 3, 16, 20)
    with torch.no_grad():
        flops = count_flops(ConvNet().eval(), x)
    expected = 2 * 8 * 16 * 20 * 3 * 3 * 3
    assert flops.total == expected
    assert flops.by_module == {"ConvNet": expected, "ConvNet.conv": expected}
    assert flops.by_operator == {"aten.convolution": expected}


class TinyAttention(nn.Module):
    """Head-split self-attention with F.scaled_dot_product_attention, then one nn.MultiheadAttention."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(E, H, batch_first=True)

    def forward(self, x):                                    # x: (B, L, E)
        heads = x.view(B, L, H, DH).transpose(1, 2)         # (B, H, L, DH)
        y = F.scaled_dot_product_attention(heads, heads, heads).transpose(1, 2).reshape(B, L, E)
        return self.mha(y, y, y, need_weights=False)[0]


SDPA_FLOPS = 2 * B * H * L * L * DH + 2 * B * H * L * L * DH           # Q Kᵀ + A V
MHA_PROJECTION_FLOPS = 4 * 2 * B * L * E * E                            # q, k, v and out projections
MHA_ATTENTION_FLOPS = 2 * B * H * L * L * DH + 2 * B * H * L * L * DH


def test_attention_inference_count_matches_the_formula():
    """Eval under no_grad (inference): sdpa runs the CPU flash kernel and the MHA layer its fused
    fast path (aten._native_multi_head_attention); torch 2.13's FlopCounterMode counts both as 0."""
    model = TinyAttention().eval()
    x = torch.randn(B, L, E)
    with torch.no_grad():
        flops = count_flops(model, x)
        raw = _raw_flops(model, x)
    assert flops.total == SDPA_FLOPS + MHA_PROJECTION_FLOPS + MHA_ATTENTION_FLOPS
    assert flops.by_module["TinyAttention.mha"] == MHA_PROJECTION_FLOPS + MHA_ATTENTION_FLOPS
    assert set(flops.by_operator) == {"aten._scaled_dot_product_flash_attention_for_cpu",
                                      "aten._native_multi_head_attention"}
    assert raw == 0 < flops.total   # the torch 2.13 gap this module fills


def test_attention_training_count_matches_the_formula():
    """With gradients the MHA layer decomposes: torch counts its projections (mm/addmm) but still
    0 for the CPU flash kernel both the sdpa call and the layer run."""
    model = TinyAttention().train()
    x = torch.randn(B, L, E)
    flops = count_flops(model, x)
    raw = _raw_flops(model, x)
    assert flops.total == SDPA_FLOPS + MHA_PROJECTION_FLOPS + MHA_ATTENTION_FLOPS
    assert raw == MHA_PROJECTION_FLOPS      # exactly the attention products are missing
    assert flops.total > raw


def test_sdpa_backward_is_counted():
    q = torch.randn(B, H, L, DH, requires_grad=True)
    k, v = torch.randn(B, H, 2 * L, DH), torch.randn(B, H, 2 * L, DH)
    flops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    forward = 2 * B * H * L * (2 * L) * (DH + DH)
    backward = 2 * B * H * L * (2 * L) * (3 * DH + 2 * DH)   # scores again, dP, dV, dQ, dK
    assert flops.total == forward + backward
    assert _raw_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) == 0


def test_encoder_layer_fast_path_counts_like_its_decomposition():
    """nn.TransformerEncoderLayer's inference fast path is one fused op (raw count 0); with
    gradients on it decomposes into counted ops: both counts must agree."""
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=32, batch_first=True).eval()
    x = torch.randn(B, L, E)
    with torch.no_grad():
        fused = count_flops(layer, x)
        assert _raw_flops(layer, x) == 0
    decomposed = count_flops(layer, x)
    assert set(fused.by_operator) == {"aten._transformer_encoder_layer_fwd"}
    assert fused.total == decomposed.total == (MHA_PROJECTION_FLOPS + MHA_ATTENTION_FLOPS
                                               + 2 * (2 * B * L * E * 32))
