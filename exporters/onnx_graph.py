"""Rewrites of the exported fp32 ONNX graph, each kept only when it still checks and computes the same outputs.

- ``slim``: onnxslim (constant folding, dead nodes), kept when it removes nodes.
- ``fuse_for_onnxruntime``: onnxscript's onnxruntime fusions (``optimize_for_ort``, made for graphs of torch's
  dynamo exporter): scaled_dot_product_attention becomes onnxruntime's ``com.microsoft.MultiHeadAttention``, the
  erf GELU ``Gelu``, residual add + LayerNorm ``SkipLayerNormalization``. onnxruntime's own session-time fusions
  and its transformers optimizer find none of these on this graph (timm's single qkv projection, the dynamo
  exporter's GELU), so attention otherwise runs as separate transposes, MatMuls and a Softmax. The contrib ops run in
  onnxruntime (1.16+) and OpenVINO's ONNX reader; IR version and opset stay as they were.
"""

from __future__ import annotations

import numpy as np

SAME_OUTPUTS = 1e-4  # max abs output difference allowed between a graph and its rewrite


def slim(model, example: np.ndarray, details: dict):
    """onnxslim's graph if it has fewer nodes, still checks and computes the same outputs; else ``model``."""
    import onnx

    before = len(model.graph.node)
    decision = {"nodes_before": before}
    details["onnxslim"] = decision
    try:
        import onnxslim

        slimmed = onnxslim.slim(model)
        onnx.checker.check_model(slimmed, full_check=True)
    except ImportError:
        decision.update(kept=False, reason="onnxslim is not installed")
        return model
    except Exception as err:  # noqa: BLE001 - onnxslim or the checker failed: keep the exporter's graph
        decision.update(kept=False, reason=f"onnxslim failed: {type(err).__name__}: {str(err)[:200]}")
        return model
    decision["nodes_after"] = len(slimmed.graph.node)
    if decision["nodes_after"] >= before:
        decision.update(kept=False, reason="no fewer nodes")
        return model
    difference = max_output_difference(model, slimmed, example)
    decision["max_output_difference"] = difference
    if difference > SAME_OUTPUTS:
        decision.update(kept=False, reason=f"outputs changed by {difference:.3g} > {SAME_OUTPUTS}")
        return model
    decision.update(kept=True, reason=f"{before - decision['nodes_after']} fewer nodes, same outputs")
    return slimmed


def max_output_difference(model_a, model_b, example: np.ndarray) -> float:
    outputs = [run(model.SerializeToString(), example) for model in (model_a, model_b)]
    return max(float(np.abs(a - b).max()) for a, b in zip(*outputs))


def run(model: bytes | str, batch: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})


def fuse_for_onnxruntime(model, example: np.ndarray, details: dict):
    """onnxscript's onnxruntime fusions of ``model`` if they fuse anything, check and keep the outputs; else ``model``."""
    import onnx

    decision: dict = {"nodes_before": len(model.graph.node)}
    details["onnxruntime_fusions"] = decision
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort

        fused_ir, counts = optimize_for_ort(ir.from_proto(model))
        fused = ir.to_proto(fused_ir)
        onnx.checker.check_model(fused, full_check=True)
    except ImportError:
        decision.update(kept=False, reason="onnxscript is not installed")
        return model
    except Exception as err:  # noqa: BLE001 - a fusion or the checker failed: keep the graph as it was
        decision.update(kept=False, reason=f"onnxscript's fusions failed: {type(err).__name__}: {str(err)[:200]}")
        return model
    decision.update(fused={name: count for name, count in counts.items() if count}, nodes_after=len(fused.graph.node))
    if not decision["fused"]:
        decision.update(kept=False, reason="nothing fused")
        return model
    difference = max_output_difference(model, fused, example)
    decision["max_output_difference"] = difference
    if difference > SAME_OUTPUTS:
        decision.update(kept=False, reason=f"outputs changed by {difference:.3g} > {SAME_OUTPUTS}")
        return model
    ops = sorted({f"{n.domain}.{n.op_type}" for n in fused.graph.node if n.domain == "com.microsoft"})
    decision.update(kept=True, reason=f"same outputs; onnxruntime contrib ops: {', '.join(ops)}")
    return fused
