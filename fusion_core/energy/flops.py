"""FLOPs per module from ``torch.utils.flop_counter.FlopCounterMode``, CPU attention included.

torch 2.13's FlopCounterMode has formulas for the CUDA attention kernels (flash, efficient,
cuDNN) but none for the kernels the CPU dispatches to, so those count 0 FLOPs:

- ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its ``_backward``): what
  ``F.scaled_dot_product_attention`` runs on CPU whenever the fused kernel applies (4-D inputs,
  equal q/k and v head dims, no dropout; otherwise it falls back to counted ``bmm`` ops), and what
  ``nn.MultiheadAttention`` runs inside when ``need_weights=False``;
- ``aten._native_multi_head_attention``: ``nn.MultiheadAttention``'s fast path (eval, no grad,
  ``batch_first``, self-attention), a single op, so the whole layer, projections included,
  counted 0;
- ``aten._transformer_encoder_layer_fwd``: ``nn.TransformerEncoderLayer``'s fast path, likewise
  the whole layer.

:func:`count_flops` registers formulas for these through FlopCounterMode's ``custom_mapping``.
Conventions match FlopCounterMode's: a multiply-accumulate is 2 FLOPs, only matrix products
count (bias adds, softmax, scaling, norms and activations are not counted), and causal or padding
masks are ignored (the dense product is counted, as torch does for the CUDA kernels).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

Shape = Sequence[int]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call: the total and per module.

    ``by_module`` uses FlopCounterMode's module paths (``"FusionDetector.stems.lidar"``); a
    module's count includes its children's, so the entries do not sum to ``total``.
    """

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]   # aten op name (``"aten.convolution"``) -> FLOPs over the whole call


def attention_flops(batch_heads: int, query_len: int, key_len: int, qk_dim: int, v_dim: int) -> int:
    """FLOPs of softmax(Q Kᵀ) V over ``batch_heads`` = B·H independent heads.

    Q Kᵀ: (L, E) @ (E, S) per head = 2·L·S·E; then (L, S) @ (S, Ev) = 2·L·S·Ev.
    """
    return 2 * batch_heads * query_len * key_len * (qk_dim + v_dim)


def _linear_flops(rows: int, in_features: int, out_features: int) -> int:
    return 2 * rows * in_features * out_features


def _sdpa_cpu_flops(query_shape: Shape, key_shape: Shape, value_shape: Shape, *args: Any,
                    out_shape: Any = None, **kwargs: Any) -> int:
    """``_scaled_dot_product_flash_attention_for_cpu``: q (B, Hq, L, E), k (B, Hkv, S, E), v (B, Hkv, S, Ev).

    With grouped-query attention (Hkv < Hq) every query head still does its full products, so
    B·Hq heads are counted.
    """
    return attention_flops(math.prod(query_shape[:-2]), query_shape[-2], key_shape[-2],
                           query_shape[-1], value_shape[-1])


def _sdpa_cpu_backward_flops(grad_out_shape: Shape, query_shape: Shape, key_shape: Shape,
                             value_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """Backward of the CPU flash kernel: five products per head.

    Recompute scores Q Kᵀ (2·L·S·E), dP = dO Vᵀ (2·L·S·Ev), dV = Pᵀ dO (2·L·S·Ev),
    dQ = dS K (2·L·S·E), dK = dSᵀ Q (2·L·S·E).
    """
    heads = math.prod(query_shape[:-2])
    length, keys, e, ev = query_shape[-2], key_shape[-2], query_shape[-1], value_shape[-1]
    return 2 * heads * length * keys * (3 * e + 2 * ev)


def _multi_head_attention_flops(query_shape: Shape, key_shape: Shape, embed_dim: int, num_heads: int) -> int:
    """A full multi-head attention layer with equal q/k/v widths E: in-projections of q (L rows)
    and k, v (S rows each), attention over H heads of E/H dims, out-projection."""
    batch = math.prod(query_shape[:-2])
    length, keys = query_shape[-2], key_shape[-2]
    head_dim = embed_dim // num_heads
    projections = (_linear_flops(batch * length, embed_dim, embed_dim) * 2       # q and out
                   + _linear_flops(batch * keys, embed_dim, embed_dim) * 2)      # k and v
    return projections + attention_flops(batch * num_heads, length, keys, head_dim, head_dim)


def _native_mha_flops(query_shape: Shape, key_shape: Shape, value_shape: Shape, embed_dim: int,
                      num_heads: int, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``_native_multi_head_attention``: q (B, L, E), k and v (B, S, E), packed qkv weight (3E, E)."""
    return _multi_head_attention_flops(query_shape, key_shape, embed_dim, num_heads)


def _encoder_layer_flops(src_shape: Shape, embed_dim: int, num_heads: int, qkv_weight_shape: Shape,
                         qkv_bias_shape: Shape, proj_weight_shape: Shape, proj_bias_shape: Shape,
                         use_gelu: bool, norm_first: bool, eps: float, norm_weight_1_shape: Shape,
                         norm_bias_1_shape: Shape, norm_weight_2_shape: Shape, norm_bias_2_shape: Shape,
                         ffn_weight_1_shape: Shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """``_transformer_encoder_layer_fwd``: self-attention on src (B, L, E), then the feed-forward
    E -> F -> E with F = rows of the first FFN weight (F, E)."""
    rows = math.prod(src_shape[:-1])
    ffn_dim = ffn_weight_1_shape[0]
    feed_forward = _linear_flops(rows, embed_dim, ffn_dim) + _linear_flops(rows, ffn_dim, embed_dim)
    return _multi_head_attention_flops(src_shape, src_shape, embed_dim, num_heads) + feed_forward


def _cpu_attention_formulas() -> dict[Any, Callable[..., int]]:
    """custom_mapping for FlopCounterMode: op packet -> formula over argument shapes."""
    formulas = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flops,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward_flops,
        "_native_multi_head_attention": _native_mha_flops,
        "_transformer_encoder_layer_fwd": _encoder_layer_flops,
    }
    # Only ops this torch build has; a build without one cannot dispatch to it either.
    return {getattr(torch.ops.aten, name): f for name, f in formulas.items() if hasattr(torch.ops.aten, name)}


CPU_ATTENTION_FLOP_FORMULAS = _cpu_attention_formulas()


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FlopCount:
    """Run ``fn(*args, **kwargs)`` once under FlopCounterMode (with the CPU attention formulas)
    and return its FLOPs. Gradient mode and train/eval are the caller's: they decide which
    kernels run (the fast paths above run only in eval under ``torch.no_grad()``)."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOP_FORMULAS)
    with counter:
        fn(*args, **kwargs)
    counts = counter.get_flop_counts()
    by_module = {name: int(sum(ops.values())) for name, ops in counts.items() if name != "Global"}
    by_operator = {str(op): int(n) for op, n in counts.get("Global", {}).items()}
    return FlopCount(total=int(counter.get_total_flops()), by_module=by_module, by_operator=by_operator)
