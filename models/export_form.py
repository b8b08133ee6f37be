"""The export form: the same function as the timm ViT, written in the ops each runtime runs best.

An exporter traces ``loaded.model.with_form(form)``: a module tree over the timm ViT's own submodules and
parameters (shared, not copied), so module and parameter names stay timm's (``blocks.3.attn.qkv``: keep_float,
the int8 filters and ``vitship diagnose`` find them) and a SmoothQuant fold applied before is carried along.
What a form changes:

- ``attention="explicit"``: ``softmax(q k^T * scale) v`` as batched matmuls and a softmax, not
  ``F.scaled_dot_product_attention``, whose decomposition for export adds mask logic (``any``, ``eq``,
  ``logical_not``, ``where``, ``full_like``, ``expand``) that ExecuTorch's XNNPACK delegate does not take.
  q, k and v are cut from the qkv projection by a split (slices), the class token is prepended by a pad, and the
  class token is read by a slice: no select, expand or squeeze, which XNNPACK has no operator for.
- ``attention="qkv-op"``: each block's attention from timm's fused qkv projection up to the output projection as
  one op, ``vitship::qkv_attention`` (``models.vit_form``), which the ONNX exporter writes as onnxruntime's
  ``com.microsoft.Attention`` (its weights input is exactly timm's qkv weight, transposed).
- ``layer_norm="decomposed"``: mean, subtract, square, mean, rsqrt, scale, shift, over a trailing unit dim so that
  each mean is the 4-D mean over the innermost two dims XNNPACK lowers (its delegate has no layer-norm operator).
- ``class_token_tail=True``: only the class token reaches the head, so the last block's attention output,
  projection and MLP and the final norm run for it alone. Exact: the other tokens' results are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ExportForm:
    """How the graph is written for one exporter; every form computes the fp32 function (to rounding).

    Attributes:
        attention: fused (``F.scaled_dot_product_attention``, timm's default), explicit (matmul, softmax, matmul) or
            qkv-op (qkv projection and attention as one op, for runtimes with a fused attention operator).
        layer_norm: native (one layer-norm op) or decomposed (mean, sub, mul, rsqrt, ...: for delegates without one).
        class_token_tail: the last block's attention output, projection and MLP computed for the class token only.
    """

    attention: Literal["fused", "explicit", "qkv-op"] = "fused"
    layer_norm: Literal["native", "decomposed"] = "native"
    class_token_tail: bool = False


TIMM_FORM = ExportForm()
