"""vitship.exporters.int8: everything an int8 export shares, in one place.

Who calls what::

    exporters/__init__.py    register(fmt, ..., int8=Int8Capabilities(...))   each format's int8 table (capabilities.py)
    exporters/<format>.py    options.Int8Options (smooth_alpha, keep_float), options.model_to_quantize
                             -> smoothing.smoothed (the SmoothQuant fold), calibration.calibration_images,
                             onnx_recipe.quantize (ONNX), litert_recipe (LiteRT)
    exporters/pipeline.py    export_all(..., gate=Int8Gate | False)
                             -> ladder.export_gated: export, run, judge, escalate (smoothing, then layers in float)
                                -> verdict: the gate's views (photos.py) and judgement (models.judgement.judge)
                                -> ranking.sensitive_layers: which Linears to keep in float
                             -> record.Int8Record in Artifact.details.int8_gate (every int8 has one)
    bench/int8_gate.py       int8_gate(loaded) -> Int8Gate: the runner (a runtime session on the format's
                             gate target) and the locator (vitship diagnose's per-layer ranking), injected
                             because exporters never import runtimes
    bench/commands/export.py, vitship.export(...)   the doors: they pass int8_gate(loaded) unless told gate=False

Names are imported lazily (``import vitship.exporters`` stays free of torch).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Int8Options": "options", "DEFAULT_SMOOTH_ALPHA": "options", "check_int8_options": "options",
    "model_to_quantize": "options", "linear_modules": "options",
    "Int8Capabilities": "capabilities", "capabilities": "capabilities",
    "Int8Record": "record", "Int8Step": "record", "PhotoSet": "record",
    "Int8Gate": "verdict", "ArtifactRun": "verdict", "GateCheck": "verdict", "GATE_MARGIN": "verdict",
    "Int8GateFailed": "ladder", "export_gated": "ladder", "not_checked": "ladder",
    "calibration_images": "calibration", "calibration_files": "calibration", "calibration_split": "calibration",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
