"""Rewrites of the exported fp32 ONNX graph, each kept only when it still checks and computes the same outputs.

- ``slim``: onnxslim (constant folding, dead nodes), kept when it removes nodes.
- ``contrib_translations``: the export form's ``vitship::qkv_attention`` op (timm's fused qkv projection and
  attention) written as onnxruntime's ``com.microsoft.Attention``. onnxruntime's own session-time fusions and its
  transformers optimizer cannot fuse timm's single qkv projection, so attention otherwise runs as transposes,
  MatMuls and a Softmax. Dynamic int8 quantizes it to ``QAttention`` (int8 projection).
- ``fuse_gelu``: onnxscript's erf-GELU fusion (``com.microsoft.Gelu``); onnxruntime's session-time GeluFusion misses
  the dynamo exporter's GELU.

Why these two and not onnxscript's whole ``optimize_for_ort`` (MultiHeadAttention, SkipLayerNormalization): measured
side by side on the ViT-S (docs/MEASUREMENTS.md, Speed) Attention + Gelu ran fp32 faster, and onnxruntime 1.16 and
OpenVINO 2024.0 (the compatibility floor) both read Attention and Gelu, while OpenVINO 2024.0 reads neither
MultiHeadAttention nor the four-output SkipLayerNormalization. OpenVINO reads no QAttention, so onnx-int8 is an
onnxruntime file (its ``min_runtime_versions`` says so). IR version and opset stay as they were.
"""

from __future__ import annotations

import numpy as np

from vitship.exporters.details import OnnxDetails, OnnxGeluFusion, OnnxSlim

SAME_OUTPUTS = 1e-4  # max abs output difference allowed between a graph and its rewrite


def slim(model, example: np.ndarray, details: OnnxDetails):
    """onnxslim's graph if it has fewer nodes, still checks and computes the same outputs; else ``model``."""
    import onnx

    before = len(model.graph.node)
    decision = details.onnxslim = OnnxSlim(nodes_before=before)
    try:
        import onnxslim

        slimmed = onnxslim.slim(model)
        onnx.checker.check_model(slimmed, full_check=True)
    except ImportError:
        decision.reason = "onnxslim is not installed"
        return model
    except Exception as err:  # noqa: BLE001 - onnxslim or the checker failed: keep the exporter's graph
        decision.reason = f"onnxslim failed: {type(err).__name__}: {str(err)[:200]}"
        return model
    after = decision.nodes_after = len(slimmed.graph.node)
    if after >= before:
        decision.reason = "no fewer nodes"
        return model
    return _same_or_original(model, slimmed, example, decision, f"{before - after} fewer nodes, same outputs")


def _same_or_original(model, rewritten, example: np.ndarray, decision, why_kept: str):
    """``rewritten`` if it computes ``model``'s outputs within SAME_OUTPUTS (recorded in ``decision``), else ``model``."""
    difference = decision.max_output_difference = max_output_difference(model, rewritten, example)
    if difference > SAME_OUTPUTS:
        decision.reason = f"outputs changed by {difference:.3g} > {SAME_OUTPUTS}"
        return model
    decision.kept, decision.reason = True, why_kept
    return rewritten


def max_output_difference(model_a, model_b, example: np.ndarray) -> float:
    outputs = [run(model.SerializeToString(), example) for model in (model_a, model_b)]
    return max(float(np.abs(a - b).max()) for a, b in zip(*outputs))


def run(model: bytes | str, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def contrib_translations() -> dict:
    """The ONNX exporter's translation of ``vitship::qkv_attention`` (``models.vit_form``): ``com.microsoft.Attention``.

    Its weights input is timm's fused qkv weight transposed to (width, 3 x width), q, k and v blocks in timm's order,
    heads contiguous in each; its default scale is timm's head_dim ** -0.5.
    """
    import torch
    from onnx.defs import OpSchema
    from onnxscript import opset18 as op
    from onnxscript.values import Op, Opset

    import vitship.models.vit_form  # noqa: F401 (registers torch.ops.vitship.qkv_attention)

    tensor = [("T", ["tensor(float)"], "float tensors")]
    schema = OpSchema("Attention", "com.microsoft", 1, type_constraints=tensor,
                      inputs=[OpSchema.FormalParameter(name, "T") for name in ("input", "weights", "bias")],
                      outputs=[OpSchema.FormalParameter("output", "T")],
                      attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of attention heads")])
    attention = Op(Opset("com.microsoft", 1), "Attention", schema)

    def qkv_attention(x, weight, bias, num_heads: int):
        return attention(x, op.Transpose(weight, perm=[1, 0]), bias, num_heads=num_heads)

    return {torch.ops.vitship.qkv_attention.default: qkv_attention}


def fuse_gelu(model, example: np.ndarray, details: OnnxDetails):
    """onnxscript's erf-GELU fusion (``com.microsoft.Gelu``; onnxruntime fuses none of the dynamo exporter's GELUs)."""
    import onnx

    decision = details.gelu_fusion = OnnxGeluFusion()
    try:
        import onnx_ir as ir
        from onnxscript.optimizer import optimize
        from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu

        graph = ir.from_proto(model)
        decision.fused = fuse_erfgelu(graph)
        optimize(graph)
        fused = ir.to_proto(graph)
        onnx.checker.check_model(fused, full_check=True)
    except ImportError:
        decision.reason = "onnxscript is not installed"
        return model
    except Exception as err:  # noqa: BLE001 - the fusion or the checker failed: keep the graph as it was
        decision.reason = f"onnxscript's Gelu fusion failed: {type(err).__name__}: {str(err)[:200]}"
        return model
    if not decision.fused:
        decision.reason = "no GELU found"
        return model
    return _same_or_original(model, fused, example, decision, "same outputs")
