"""ExecuTorch's own profiler: an ETDump of each call, read with the devtools Inspector.

The ETDump holds one event per instruction of the program: a portable-kernel op (``native_call_<op>``: it
runs outside the XNNPACK delegate) or a ``DELEGATE_CALL``. This ExecuTorch build's XNNPACK delegate also
logs its own operators inside each call (``Fully Connected (NC, QDU8, F32, QC8W) GEMM #1``, ...), listed
before the call that ran them; those are the ops profiled here, and a call's time beyond its operators
counts as outside the kernels. A build whose delegate logs no operators leaves each delegate call as one
``unattributed`` op (the profile says so). XNNPACK names no torch module, so parts come from op kind and
position (attribute.py).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from vitship.bench.profile import parts
from vitship.bench.profile.ops import Kind, OpTime, RawProfile, first_word_kind, xnnpack_kind

_PORTABLE = {
    "native_layer_norm": Kind.NORM, "layer_norm": Kind.NORM, "_softmax": Kind.SOFTMAX, "softmax": Kind.SOFTMAX,
    "convolution": Kind.CONV, "mm": Kind.LINEAR, "addmm": Kind.LINEAR, "linear": Kind.LINEAR, "bmm": Kind.MATMUL,
    "mean": Kind.REDUCE, "sum": Kind.REDUCE, "quantize_per": Kind.QUANTIZE, "dequantize_per": Kind.QUANTIZE,
    "choose_qparams": Kind.QUANTIZE, "_scaled_dot_product": Kind.ATTENTION, "expand_copy": Kind.LAYOUT,
    "slice_copy": Kind.LAYOUT, "squeeze_copy": Kind.LAYOUT, "unsqueeze_copy": Kind.LAYOUT, "view_copy": Kind.LAYOUT,
    "permute_copy": Kind.LAYOUT, "select_copy": Kind.LAYOUT, "transpose_copy": Kind.LAYOUT, "split_copy": Kind.LAYOUT,
    "split_with_sizes_copy": Kind.LAYOUT, "cat": Kind.LAYOUT, "clone": Kind.LAYOUT, "_to_copy": Kind.LAYOUT,
    "_clone_dim_order": Kind.LAYOUT, "_to_dim_order_copy": Kind.LAYOUT,
}
_SKIPPED = {"OPERATOR_CALL"}  # wraps the native_call_* event it times again
_INDEX = re.compile(r"\s#\d+$")


def portable_op(name: str) -> str:
    """``native_call_native_layer_norm.out`` -> ``native_layer_norm``."""
    return name.removeprefix("native_call_").split(".")[0]


def _mean(event, calls: int) -> float:
    raw = list(event.perf_data.raw) if event.perf_data is not None else []
    return sum(raw[-calls:]) / len(raw[-calls:]) if raw else 0.0


def parse(events, calls: int) -> tuple[list[OpTime], bool]:
    """The ops of the program's Execute events (mean of the last ``calls`` runs), and whether the delegate logged its ops."""
    ops: list[OpTime] = []
    inside: list[OpTime] = []
    delegate_ops = False
    for event in events:
        if event.name in _SKIPPED:
            continue
        if event.is_delegated_op:
            name = _INDEX.sub("", event.name)
            inside.append(OpTime(event.name, name, xnnpack_kind(name), _mean(event, calls)))
            continue
        if event.name == "DELEGATE_CALL":
            if inside:
                ops += inside
                delegate_ops = True
            else:  # this build logs no operators inside the delegate: one op per call, not placed
                ops.append(OpTime("DELEGATE_CALL", "XNNPACK delegate call", Kind.OTHER, _mean(event, calls),
                                  part=parts.UNATTRIBUTED))
            inside = []
            continue
        if event.name.startswith("native_call_"):
            op = portable_op(event.name)
            ops.append(OpTime(event.name, op, first_word_kind(op, _PORTABLE), _mean(event, calls), outside=True))
    return ops + inside, delegate_ops


def profile(path: Path, batch, threads: int, calls: int, warmup: int) -> RawProfile:
    """Profile the .pte at ``path`` on ExecuTorch's runtime with ETDump for ``calls`` calls after ``warmup``.

    The threadpool is the process's: the caller opens the regular session first, which sets it to ``threads``.
    """
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    from vitship.models.quiet import quiet_stderr

    with quiet_stderr():
        program = portable_lib._load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    inputs = [torch.from_numpy(batch)]
    walls = []
    for index in range(warmup + calls):
        start = time.perf_counter_ns()
        program.forward(inputs)
        if index >= warmup:
            walls.append((time.perf_counter_ns() - start) / 1e6)
    with tempfile.TemporaryDirectory(prefix="vitship-etdump-") as work:
        etdump = Path(work) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), str(Path(work) / "run.bin"))
        with quiet_stderr():
            inspector = Inspector(etdump_path=str(etdump))
    events = [e for block in inspector.event_blocks if block.name != "Default" for e in block.events]
    ops, delegate_ops = parse(events, calls)
    granularity = ("one XNNPACK operator inside a delegate call, or one portable-kernel op outside the delegate"
                   if delegate_ops else "one delegate call (this build logs no XNNPACK operators), or one portable op")
    notes = [] if delegate_ops else [("this ExecuTorch build's XNNPACK delegate logs no per-operator events: each "
                                      "delegate call is one unattributed op")]
    return RawProfile(ops, sum(walls) / len(walls), calls, "ExecuTorch ETDump read with executorch.devtools.Inspector",
                      granularity, notes=notes)
