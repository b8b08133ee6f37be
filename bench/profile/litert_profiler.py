"""LiteRT's own op profiling: the compiled model's profiler (C API, litert_capi.py) on the CPU accelerator.

With ``enable_profiling`` the XNNPACK accelerator reports each of its operators per call (``Fully Connected
(NC, QDU8, F32, QC8W) GEMM``, ``Mean (ND) Reduce2``, ...), the same operator names ExecuTorch's delegate logs;
ops LiteRT runs without XNNPACK come as TFLite operator events. Each call starts with an ``Invoke`` event.
The .tflite keeps no torch module names and LayerNorm arrives decomposed (mean, squared difference, rsqrt,
...), so parts come from op kind and position (attribute.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from vitship.bench.profile.ops import Kind, OpTime, RawProfile, first_word_kind, xnnpack_kind

DEFAULT, OPERATOR, DELEGATE_OPERATOR, DELEGATE_PROFILED_OPERATOR = 1, 1 << 1, 1 << 2, 1 << 3  # LiteRtProfilerEventType
_TFLITE = {"FULLY_CONNECTED": Kind.LINEAR, "BATCH_MATMUL": Kind.MATMUL, "CONV_2D": Kind.CONV, "SOFTMAX": Kind.SOFTMAX,
           "MEAN": Kind.REDUCE, "SUM": Kind.REDUCE, "QUANTIZE": Kind.QUANTIZE, "DEQUANTIZE": Kind.QUANTIZE,
           "RESHAPE": Kind.LAYOUT, "TRANSPOSE": Kind.LAYOUT, "CONCATENATION": Kind.LAYOUT, "GATHER": Kind.LAYOUT,
           "SLICE": Kind.LAYOUT, "STRIDED_SLICE": Kind.LAYOUT, "SPLIT": Kind.LAYOUT}


def parse(events: list[tuple[str, int, float, int]], calls: int) -> tuple[list[OpTime], list[str]]:
    """The ops of the last ``calls`` runs (mean ms each, by position in the run); notes on what was left out.

    A TFLite operator event for a delegate node stands for the XNNPACK operators reported inside it: when
    those are present it is left out (its time beyond them is outside the kernels).
    """
    runs: list[list[tuple[str, int, float]]] = []
    for tag, kind, ms, _ in events:
        if tag == "Invoke" and kind == DEFAULT:  # telemetry events may carry the same tag
            runs.append([])
        elif runs and kind in (OPERATOR, DELEGATE_OPERATOR, DELEGATE_PROFILED_OPERATOR):
            runs[-1].append((tag, kind, ms))
    runs = runs[-calls:]
    notes = []
    if not runs or not runs[0]:
        return [], ["LiteRT's profiler recorded no operator events for these calls"]
    delegated = any(kind != OPERATOR for _, kind, _ in runs[0])
    runs = [[event for event in run if not (delegated and event[1] == OPERATOR and "Delegate" in event[0])] for run in runs]
    if len({len(run) for run in runs}) > 1:
        notes.append(f"the runs reported different numbers of events ({sorted({len(r) for r in runs})}); the first is used")
        runs = runs[:1]
    ops = []
    for position, (tag, kind, _) in enumerate(runs[0]):
        ms = sum(run[position][2] for run in runs) / len(runs)
        op_kind = first_word_kind(tag, _TFLITE) if kind == OPERATOR else xnnpack_kind(tag)
        ops.append(OpTime(f"{tag} #{position}", tag, op_kind, ms))
    return ops, notes


def profile(path: Path, batch, threads: int, calls: int, warmup: int) -> RawProfile:
    """Profile the .tflite at ``path`` on LiteRT's CPU accelerator for ``calls`` calls after ``warmup``."""
    import importlib.metadata

    from vitship.bench.profile.litert_capi import ProfiledModel
    from vitship.models.quiet import quiet_stderr

    with quiet_stderr():  # LiteRT logs its environment and every accelerator it probes
        model = ProfiledModel(path, threads)
    model.write_input(batch)
    for _ in range(warmup):
        model.run()
    walls = []
    model.start()
    for _ in range(calls):
        start = time.perf_counter_ns()
        model.run()
        walls.append((time.perf_counter_ns() - start) / 1e6)
    model.stop()
    ops, notes = parse(model.events(), calls)
    version = importlib.metadata.version("ai-edge-litert")
    return RawProfile(ops, sum(walls) / len(walls), calls,
                      f"ai-edge-litert {version} CompiledModel profiler (C API, enable_profiling), microsecond ticks",
                      "one XNNPACK operator of the CPU accelerator", notes=notes)
