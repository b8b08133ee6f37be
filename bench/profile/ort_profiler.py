"""onnxruntime's own profiler: ``SessionOptions.enable_profiling`` writes a Chrome-trace JSON of every node run.

Each ``Node`` event ``<node>_kernel_time`` is one kernel of the optimised graph (after onnxruntime's fusions:
FusedMatMul, SkipLayerNormalization, DynamicQuantizeMatMul, ...), with its op type and input shapes. The
ONNX export keeps no torch module names on its nodes, so parts come from the op type and position
(attribute.py). A MatMul-type kernel with a 2-D input (the weight) is a linear layer; with only
activation inputs it is attention's q·k or ·v. Each ``model_run`` event bounds one call.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from vitship.bench.profile.ops import Kind, OpTime, RawProfile

_MATMULS = ("MatMul", "Gemm", "FusedMatMul", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat",
            "QLinearMatMul", "MatMulNBits", "FusedGemm", "QGemm")
_KINDS = {
    "Conv": Kind.CONV, "NhwcConv": Kind.CONV, "QLinearConv": Kind.CONV, "ConvInteger": Kind.CONV,
    "Softmax": Kind.SOFTMAX, "Attention": Kind.ATTENTION_QKV, "QAttention": Kind.ATTENTION_QKV, "MultiHeadAttention": Kind.ATTENTION,
    "GroupQueryAttention": Kind.ATTENTION, "LayerNormalization": Kind.NORM, "SkipLayerNormalization": Kind.NORM,
    "SimplifiedLayerNormalization": Kind.NORM, "SkipSimplifiedLayerNormalization": Kind.NORM,
    "DynamicQuantizeLinear": Kind.QUANTIZE, "QuantizeLinear": Kind.QUANTIZE, "DequantizeLinear": Kind.QUANTIZE,
    "ReduceMean": Kind.REDUCE,
}
_LAYOUT = ("Reshape", "Transpose", "Split", "Squeeze", "Unsqueeze", "Slice", "Concat", "Gather", "Shape", "Expand",
           "ReorderInput", "ReorderOutput", "Identity", "Flatten", "Cast")


def _ranks(args: dict) -> list[int]:
    """The rank of each input of a node event (``input_type_shape``: [{"float": [1, 577, 384]}, ...])."""
    return [len(next(iter(entry.values()))) for entry in args.get("input_type_shape", []) if entry]


def event_kind(op_type: str, args: dict) -> str:
    """The kind of one kernel event. A MatMul with two batched (rank 3+) inputs multiplies activations (attention);
    with one it multiplies by a weight (the event lists a 2-D weight, or leaves a prepacked one out)."""
    if op_type in _MATMULS:
        batched = sum(1 for rank in _ranks(args) if rank >= 3)
        return Kind.MATMUL if batched >= 2 else Kind.LINEAR
    if op_type in _KINDS:
        return _KINDS[op_type]
    return Kind.LAYOUT if op_type in _LAYOUT else Kind.ELEMENTWISE


def parse(events: list[dict], calls: int) -> tuple[list[OpTime], list[float]]:
    """The kernels of the last ``calls`` runs in a profile (mean ms each, in the order of the first), and each run's ms."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"])
    runs = runs[-calls:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    order: dict[str, OpTime] = {}
    for run in runs:
        inside = sorted((e for e in nodes if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]), key=lambda e: e["ts"])
        for event in inside:
            name = event["name"].removesuffix("_kernel_time")
            op_type = event["args"].get("op_name", "")
            op = order.setdefault(name, OpTime(name, op_type, event_kind(op_type, event["args"]), 0.0))
            op.ms += event["dur"] / 1e3 / len(runs)
    return list(order.values()), [run["dur"] / 1e3 for run in runs]


def profile(path: Path, batch, threads: int, calls: int, warmup: int, level: str = "all") -> RawProfile:
    """Profile the ONNX file at ``path`` on onnxruntime's CPU provider for ``calls`` calls after ``warmup``."""
    import onnxruntime as ort

    from vitship.runtimes.onnxruntime_rt import _session_options

    options = _session_options(ort, threads, level)
    with tempfile.TemporaryDirectory(prefix="vitship-ort-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: batch}
        walls = []
        for index in range(warmup + calls):
            start = time.perf_counter_ns()
            session.run(None, feed)
            if index >= warmup:
                walls.append((time.perf_counter_ns() - start) / 1e6)
        events = json.loads(Path(session.end_profiling()).read_text())
    ops, _ = parse(events, calls)
    return RawProfile(ops, sum(walls) / len(walls), calls,
                      f"onnxruntime {ort.__version__} profiling JSON (SessionOptions.enable_profiling)",
                      f"one kernel of the optimised graph (graph optimization level {level})")
