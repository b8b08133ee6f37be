"""How far each bench row is from this machine's matrix-multiply limit.

Two numbers make the roofline column:

- the model's work per image, computed once from the ModelSpec, attention included. For ViT-S/16-384
  that is 30.98 GFLOP: 24.84 in the patch embedding and the linear layers (the figure timm and
  torch.utils.flop_counter quote: on CPU the counter does not see the fused scaled_dot_product_attention
  kernel) plus 6.14 in the two attention matmuls (QK^T and AV). tests/test_roofline.py cross-checks both
  against torch.utils.flop_counter with the math attention kernel;
- the attainable matrix-multiply throughput at fp32, bf16 and int8, measured in a few seconds on
  GEMMs of the model's own shapes and one large square, with whichever runtime gets closest to the
  hardware (torch/oneDNN or onnxruntime/MLAS for fp32, torch/oneDNN for bf16; onnxruntime MatMulInteger
  u8 x s8 or torch._int_mm for int8). The fastest is kept and named (``peak_source``). A row can still
  pass 100%: a busy machine during the few seconds of peak measurement lowers the peak, not the row.

Each row is judged against the peak of the precision it really ran at: an int8 artifact against int8,
an OpenVINO fp32/fp16 IR run in bf16 against bf16 (``row.session["precision"]``), an fp16 ONNX file on a
CPU (onnxruntime casts it to fp32 there) against fp32.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")
CPU_DEVICES = ("cpu", "CPU", "AUTO")  # the targets whose rows the CPU peaks apply to
SECONDS_PER_SHAPE = 0.25


@dataclass(frozen=True)
class Peak:
    """The best measured matrix-multiply throughput at one precision."""

    precision: str
    gflops: float
    source: str  # runtime and kernel, e.g. "torch 2.14 (oneDNN) mm"
    shape: tuple[int, int, int]  # (M, K, N) of the GEMM that reached it
    threads: int

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "shape": list(self.shape)}


def model_gflop(spec, class_token_tail: bool = False) -> dict[str, float]:
    """GFLOP per image (1 multiply-add = 2 FLOP) by part, and their total, from the ModelSpec alone.

    Args:
        class_token_tail: the artifact computes the last block's attention output, projection and MLP for the
            class token alone (``models.export_form``): its qkv still runs on every token (keys and values), the
            rest on one query.
    """
    patches = (spec.input_shape[1] // spec.patch_size) * (spec.input_shape[2] // spec.patch_size)
    tokens, width = patches + 1, spec.embed_dim  # + the class token

    def linear(queries: int) -> int:  # one block: qkv on every token (keys, values), proj, fc1, fc2 on its queries
        return 2 * tokens * width * 3 * width + 2 * queries * width * (width + 2 * spec.mlp_dim)

    def attention(queries: int) -> int:  # one block: QK^T and AV over all heads
        return 2 * 2 * queries * tokens * width

    last = 1 if class_token_tail else tokens
    parts = {
        "patch_embed": 2 * patches * spec.channels * spec.patch_size ** 2 * width,
        "linear": (spec.depth - 1) * linear(tokens) + linear(last),
        "attention": (spec.depth - 1) * attention(tokens) + attention(last),
        "head": 2 * width * spec.num_classes,
    }
    gflop = {name: flops / 1e9 for name, flops in parts.items()}
    return {**gflop, "total": sum(gflop.values())}


def artifact_gflop(artifact, spec) -> float:
    """GFLOP per image that ``artifact`` computes: its recorded export form (``ArtifactDetails.form``) decides."""
    return model_gflop(spec, class_token_tail=artifact.details.form().class_token_tail)["total"]


def gemm_shapes(spec) -> list[tuple[int, int, int]]:
    """(M, K, N) of the model's own linear layers at batch 1, and one large square GEMM."""
    tokens = (spec.input_shape[1] // spec.patch_size) * (spec.input_shape[2] // spec.patch_size) + 1
    width = spec.embed_dim
    return [(tokens, width, spec.mlp_dim), (tokens, spec.mlp_dim, width), (tokens, width, 3 * width), (2048, 2048, 2048)]


def _gflops(call, flops: float) -> float:
    """Median throughput of ``call`` over ``SECONDS_PER_SHAPE`` after two warm-up calls."""
    call()
    call()
    samples, deadline = [], time.perf_counter() + SECONDS_PER_SHAPE
    while time.perf_counter() < deadline or len(samples) < 3:
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return flops / statistics.median(samples)  # FLOP per ns == GFLOP/s


def _torch_float(dtype_name: str, shapes, threads: int) -> Peak | None:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    best = None
    for m, k, n in shapes:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        with torch.no_grad():
            gflops = _gflops(lambda: torch.mm(a, b), 2 * m * k * n)
        if best is None or gflops > best.gflops:
            best = Peak(dtype_name, gflops, f"torch {torch.__version__.split('+')[0]} (oneDNN/MKL) mm", (m, k, n), threads)
    return best


def _ort_gemm(precision: str, shapes, threads: int) -> Peak | None:
    """onnxruntime (MLAS) MatMul in fp32, or MatMulInteger u8 x s8 (the VNNI kernel dynamic int8 graphs use)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    int8 = precision == "int8"
    op, a_type, y_type = ("MatMulInteger", TensorProto.UINT8, TensorProto.INT32) if int8 else (
        "MatMul", TensorProto.FLOAT, TensorProto.FLOAT)
    rng, best = np.random.default_rng(0), None
    for m, k, n in shapes:
        b = rng.integers(-127, 128, (k, n), dtype=np.int8) if int8 else rng.standard_normal((k, n), dtype=np.float32)
        graph = helper.make_graph([helper.make_node(op, ["A", "B"], ["Y"])], "gemm",
                                  [helper.make_tensor_value_info("A", a_type, [m, k])],
                                  [helper.make_tensor_value_info("Y", y_type, [m, n])], [numpy_helper.from_array(b, "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"A": rng.integers(0, 256, (m, k), dtype=np.uint8) if int8 else rng.standard_normal((m, k), dtype=np.float32)}
        gflops = _gflops(lambda: session.run(None, feed), 2 * m * k * n)
        if best is None or gflops > best.gflops:
            kernel = "MatMulInteger u8 x s8" if int8 else "MatMul (MLAS)"
            best = Peak(precision, gflops, f"onnxruntime {ort.__version__} {kernel}", (m, k, n), threads)
    return best


def _torch_int8(shapes, threads: int) -> Peak | None:
    """torch._int_mm (s8 x s8 -> s32); not every build has a CPU kernel for it."""
    import torch

    best = None
    for m, k, n in shapes:
        a, b = torch.randint(-127, 128, (m, k), dtype=torch.int8), torch.randint(-127, 128, (k, n), dtype=torch.int8)
        try:
            gflops = _gflops(lambda: torch._int_mm(a, b), 2 * m * k * n)
        except (RuntimeError, AttributeError, NotImplementedError):
            return None
        if best is None or gflops > best.gflops:
            best = Peak("int8", gflops, f"torch {torch.__version__.split('+')[0]} _int_mm s8 x s8", (m, k, n), threads)
    return best


def measure_peaks(spec, threads: int) -> dict:
    """The attainable GEMM throughput per precision on this machine's CPU with ``threads`` threads.

    Returns:
        {"fp32": Peak.to_dict(), "bf16": ..., "int8": ..., "seconds": wall time, "device": "cpu"}; a precision
        no runtime here can run is left out.
    """
    import torch

    start, previous = time.perf_counter(), torch.get_num_threads()
    shapes = gemm_shapes(spec)
    torch.set_num_threads(threads)
    try:
        candidates = {"fp32": [_torch_float("fp32", shapes, threads), _ort_gemm("fp32", shapes, threads)],
                      "bf16": [_torch_float("bf16", shapes, threads)],
                      "int8": [_ort_gemm("int8", shapes, threads), _torch_int8(shapes, threads)]}
    finally:
        torch.set_num_threads(previous)
    peaks: dict = {"device": "cpu"}
    for precision, found in candidates.items():
        measured = [p for p in found if p is not None]
        if measured:
            peaks[precision] = max(measured, key=lambda p: p.gflops).to_dict()
    peaks["seconds"] = round(time.perf_counter() - start, 2)
    return peaks


def peak_precision(row) -> str:
    """The precision whose peak bounds ``row``: int8 artifacts run int8 GEMMs; else what the session ran at."""
    if row.artifact.endswith("int8") or row.session.get("precision") == "int8":
        return "int8"
    ran = row.session.get("precision") or row.artifact.rsplit("-", 1)[-1]
    return ran if ran in ("fp32", "bf16") else "fp32"  # fp16 on a CPU: computed in fp32 (onnxruntime, numpy)


def row_roofline(row, gflop_per_image: float, peaks: dict) -> dict | None:
    """The roofline dict of one measured row (None for a row without latency)."""
    if not (row.stats and row.batch):
        return None
    gflops = gflop_per_image * row.batch / (row.stats.p50_ms / 1e3)
    precision = peak_precision(row)
    on_cpu = row.target.split(":", 1)[-1] in CPU_DEVICES
    peak = peaks.get(precision) if on_cpu else None
    return {"gflop_per_image": round(gflop_per_image, 3), "gflops": round(gflops, 1),
            "peak_gflops": round(peak["gflops"], 1) if peak else None, "peak_precision": precision,
            "percent_of_peak": round(100 * gflops / peak["gflops"], 1) if peak else None,
            "peak_source": peak["source"] if peak else "no peak measured for this device"}


def apply_roofline(rows: list, spec, peaks: dict, artifacts: list | None = None) -> None:
    """Set ``row.roofline`` on every row (in place), with the GFLOP each row's artifact computes (its export form)."""
    gflop = {a.id: artifact_gflop(a, spec) for a in artifacts or []}
    for row in rows:
        row.roofline = row_roofline(row, gflop.get(row.artifact, model_gflop(spec)["total"]), peaks)
