"""What a runtime's profiler reports, in one shape: the ops of one call in execution order, each with its mean time.

Each runtime module (ov_profiler, ort_profiler, et_profiler, litert_profiler, torch_profiler) turns its
profiler's output into a ``RawProfile``; attribute.py then gives each op its part. An op's ``kind`` says what
it computes, read from the runtime's own op type (never from a node's name); ``module`` is the torch module
path where the runtime keeps it in its node names (OpenVINO, torch), else empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Kind:
    """What an op computes, as attribute.py needs it."""

    LINEAR = "linear"  # a matrix multiply by a weight (fully connected, MatMul/Gemm with a constant)
    CONV = "conv"
    MATMUL = "matmul"  # activation x activation (attention's q·k and ·v)
    SOFTMAX = "softmax"
    ATTENTION = "attention"  # one kernel for q·k, softmax and ·v
    ATTENTION_QKV = "attention+qkv"  # one kernel that also projects q, k and v (onnxruntime's Attention)
    NORM = "norm"  # a LayerNorm kernel
    REDUCE = "reduce"  # mean / sum: where a LayerNorm decomposed into elementwise ops starts
    QUANTIZE = "quantize"  # quantize / convert ahead of an int8 matmul
    LAYOUT = "layout"  # reshape, transpose, copy, slice, concat, gather, reorder
    ELEMENTWISE = "elementwise"
    OTHER = "other"


@dataclass
class OpTime:
    """One op of a call: its name and type in the runtime, what it computes, and its mean time per call."""

    name: str
    op_type: str
    kind: str
    ms: float
    module: str = ""  # the torch module path, where the runtime's node name carries it
    outside: bool = False  # ran outside the delegate (ExecuTorch's portable kernels)
    part: str = ""  # set by attribute.py

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "kind": self.kind, "ms": round(self.ms, 5),
                "module": self.module, "outside": self.outside, "part": self.part}


@dataclass
class RawProfile:
    """A runtime's profile of ``calls`` calls: ops in execution order with mean ms, and the mean wall time per call."""

    ops: list[OpTime]
    wall_ms: float  # mean wall time of a profiled call, measured around it
    calls: int
    profiler: str  # which profiler, in words
    granularity: str  # what one op is (a fused kernel, an XNNPACK operator, a delegate call, ...)
    precision: str = ""  # what the runtime computed in, where it says (OpenVINO: bf16 on AVX512-BF16)
    notes: list[str] = field(default_factory=list)


def first_word_kind(op_type: str, table: dict[str, str], default: str = Kind.ELEMENTWISE) -> str:
    """The kind of ``op_type`` by the longest key of ``table`` it starts with (XNNPACK names: "Fully Connected (NC, ...)")."""
    matches = [key for key in table if op_type.startswith(key)]
    return table[max(matches, key=len)] if matches else default


# XNNPACK operator names (ExecuTorch's delegate events and LiteRT's CPU accelerator report the same ones).
XNNPACK_KINDS = {
    "Fully Connected": Kind.LINEAR, "Dynamic Fully Connected": Kind.MATMUL, "Batch Matrix Multiply": Kind.MATMUL,
    "Convolution": Kind.CONV, "Softmax": Kind.SOFTMAX, "Convert": Kind.QUANTIZE, "Quantize": Kind.QUANTIZE,
    "Transpose": Kind.LAYOUT, "Copy": Kind.LAYOUT, "Static Reshape": Kind.LAYOUT, "Static Transpose": Kind.LAYOUT,
    "Slice": Kind.LAYOUT, "Concatenate": Kind.LAYOUT, "Even Split": Kind.LAYOUT, "Constant Pad": Kind.LAYOUT,
    "Static Constant Pad": Kind.LAYOUT, "Mean": Kind.REDUCE, "Sum": Kind.REDUCE, "Layer Norm": Kind.NORM,
    "Normalize": Kind.NORM, "RMS Norm": Kind.NORM,
}


def xnnpack_kind(name: str) -> str:
    return first_word_kind(name, XNNPACK_KINDS)
