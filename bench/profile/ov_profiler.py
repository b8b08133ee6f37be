"""OpenVINO's own profiler: PERF_COUNT on the CPU plugin, read per executed node with ``get_profiling_info()``.

The plugin fuses nodes (a FullyConnected with its bias and GELU, the attention Subgraph with its scale and
softmax); each executed node reports its real time, and the executed graph's rt_info ``originalLayersNames``
lists the source nodes it stands for. OpenVINO's PyTorch frontend names nodes after the torch module that
made them (``__module.vit.blocks.0.attn.qkv/aten::linear/MatMul``), so a node's module path is read from
its own name, or else from the first source node that has one. Nodes the plugin did not run (fused into
another, or constant-folded) report no time and are left out.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from vitship.bench.profile.ops import Kind, OpTime, RawProfile, first_word_kind

_MODULE = re.compile(r"__module\.(?:vit\.)?([A-Za-z0-9_.]+?)/")
_KINDS = {
    "FullyConnected": Kind.LINEAR, "MatMul": Kind.MATMUL, "Convolution": Kind.CONV, "MVN": Kind.NORM,
    "LayerNorm": Kind.NORM, "RMS": Kind.NORM, "Softmax": Kind.SOFTMAX, "ScaledDotProductAttention": Kind.ATTENTION,
    "FakeQuantize": Kind.QUANTIZE, "Convert": Kind.QUANTIZE, "Reorder": Kind.LAYOUT, "Reshape": Kind.LAYOUT,
    "Transpose": Kind.LAYOUT, "Split": Kind.LAYOUT, "Concat": Kind.LAYOUT, "Gather": Kind.LAYOUT,
    "ShapeOf": Kind.LAYOUT, "Broadcast": Kind.LAYOUT, "StridedSlice": Kind.LAYOUT, "Reduce": Kind.REDUCE,
    "Parameter": Kind.LAYOUT, "Result": Kind.LAYOUT,
}


def module_of(names: list[str]) -> str:
    """The torch module path in the first of ``names`` that carries one ("" if none does)."""
    for name in names:
        found = _MODULE.search(name)
        if found:
            return found.group(1)
    return ""


def node_kind(node_type: str, sources: list[str]) -> str:
    """The kind of an executed node; a Subgraph that holds a softmax is the fused attention kernel."""
    if node_type == "Subgraph" and any("scaled_dot_product_attention" in s or s.startswith("Softmax") for s in sources):
        return Kind.ATTENTION
    return first_word_kind(node_type, _KINDS)


def _sources(compiled) -> dict[str, list[str]]:
    """Executed node name -> the source node names it stands for (rt_info originalLayersNames)."""
    sources = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        sources[op.get_friendly_name()] = [n for n in names.split(",") if n]
    return sources


def profile(path: Path, batch, threads: int, calls: int, warmup: int) -> RawProfile:
    """Profile the IR at ``path`` on openvino:CPU (LATENCY hint, static batch, the device's default precision, which
    the regular session reports) for ``calls`` calls after ``warmup``."""
    import openvino as ov

    from vitship.runtimes.openvino_rt import core

    model = core().read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
    config = {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(warmup):
        request.infer({0: batch})
    totals: dict[str, float] = {}
    first: list = []
    walls = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        request.infer({0: batch})
        walls.append((time.perf_counter_ns() - start) / 1e6)
        info = request.get_profiling_info()
        first = first or [p for p in info if p.status == ov.ProfilingInfo.Status.EXECUTED]
        for p in info:
            totals[p.node_name] = totals.get(p.node_name, 0.0) + p.real_time.total_seconds() * 1e3
    sources = _sources(compiled)
    ops = []
    for p in first:
        names = [p.node_name, *sources.get(p.node_name, [])]
        ops.append(OpTime(p.node_name, f"{p.node_type} ({p.exec_type})", node_kind(p.node_type, names),
                          totals[p.node_name] / calls, module=module_of(names)))
    return RawProfile(ops, sum(walls) / calls, calls, f"OpenVINO {ov.__version__} PERF_COUNT (get_profiling_info)",
                      "one executed node of the CPU plugin's graph (fused nodes count under their first name)")
