"""LiteRT int8: ai-edge-quantizer recipes on the fp32 ``.tflite``, with named torch Linears kept in float.

Measured on the real ViT-S/16-384 (the 18 bundled photos, ai-edge-litert 2.3.0 XNNPACK, 2 threads, batch 1; one run
per model on a shared 2-core x86, so only ratios within a run count). seeded / seeded-outliers:
  dynamic (dynamic_wi8_afp32)         23.1 MB  cosine 0.99959 / 0.99959  max prob err 0.006 / 0.006  0.48x / 0.55x fp32
  weight-only (weight_only_wi8_afp32) 23.1 MB  cosine 0.99975 / 0.99975  max prob err 0.006 / 0.006  1.17x / 1.17x fp32
  static (static_wi8_ai8, calibrated) 22.5 MB  cosine 0.098 (seeded), agreement 83%, 3.8x fp32, 193 s to calibrate
Static int8 quantizes every activation per tensor (softmax, LayerNorm and GELU included) and takes int8 I/O; on
the ViT it fails the gate by far and runs slower, so it is not offered.

Why LiteRT's int8 weights lose more than the other formats' on trained weights (issue 22): litert-torch folds
each LayerNorm's scale and shift into the Linear after it (the fused tensor is named ``LayerNorm_norm1;;...
Linear_qkv``). The int8 weight of qkv and fc1 is then ``W * gamma``, and a trained LayerNorm's few large gamma
channels become a few large input columns of that weight: one int8 scale per output row spends its range on
them. ONNX, OpenVINO, CoreML and ExecuTorch keep the LayerNorm apart, so their weights do not carry gamma.
The same fold undoes the SmoothQuant fold before it reaches the weights (``Int8Capabilities.smoothing`` is
False for LiteRT). What is left is keeping the worst Linears in float: ai-edge-quantizer takes a per-op
recipe, and each op is matched here by its weight tensor, whose name carries the torch module path.
"""

from __future__ import annotations

import re

from vitship.exporters.base import ExportError
from vitship.exporters.details import LitertQuantization
from vitship.models.quiet import quiet_output

INT8_MODES = ("dynamic", "weight-only")
INT8_CHOICE = ("dynamic: on the ViT-S it kept feature cosine 0.9996 on seeded and on seeded-outliers and ran at ~0.5x "
               "litert-fp32; weight-only int8 was as accurate but slower than fp32, calibrated static int8 failed (cosine 0.10)")
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL", "DEPTHWISE_CONV_2D")


def quantize(fp32: bytes, recipe) -> bytes:
    """ai-edge-quantizer on the fp32 flatbuffer with a recipe that needs no calibration."""
    from ai_edge_quantizer import quantizer

    engine = quantizer.Quantizer(bytearray(fp32))
    engine.load_quantization_recipe(recipe)
    with quiet_output():  # its tqdm bars and size summary print straight to the terminal
        return bytes(engine.quantize().quantized_model)


def module_pattern(module: str) -> re.Pattern:
    """The tensor-name pattern of a torch module path: ``blocks.3.mlp.fc1`` -> ``..._blocks/..._3/..._mlp/..._fc1;``.

    litert-torch writes each module as ``<qualified class>_<attribute>`` and joins them with ``/``.
    """
    parts = module.split(".")
    return re.compile("".join(f"[^/;]*_{re.escape(part)}/" for part in parts[:-1]) + f"[^/;]*_{re.escape(parts[-1])};")


def op_scopes(fp32: bytes, modules: tuple[str, ...]) -> dict[str, list[str]]:
    """Per torch module, the ops whose constant weight it is, as ai-edge-quantizer scopes (output names + ``;``)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(fp32))
    graph = tree.subgraphs[0]
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    found: dict[str, list[str]] = {}
    for module in modules:
        pattern, scopes = module_pattern(module), []
        for op in graph.operators:
            code = tree.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) not in _WEIGHT_OPS or len(op.inputs) < 2:
                continue
            weight = graph.tensors[op.inputs[1]]
            if pattern.search(_text(weight.name)):
                scopes.append("".join(_text(graph.tensors[i].name) + ";" for i in op.outputs if i >= 0))
        if not scopes:
            raise ExportError(f"litert: keep_float {module!r}: no fully-connected or convolution op has its weight")
        found[module] = scopes
    return found


def int8_recipe(mode: str, kept: dict[str, list[str]]):
    """The mode's recipe for every op, then no quantization for the kept ops (a later rule wins in ai-edge-quantizer)."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.recipe_manager import RecipeManager

    manager, every = RecipeManager(), qtyping.TFLOperationName.ALL_SUPPORTED
    if mode == "dynamic":
        manager.add_dynamic_config(".*", every, 8)
    else:
        manager.add_weight_only_config(".*", every, 8)
    for scope in sorted({scope for scopes in kept.values() for scope in scopes}):
        manager.add_quantization_config(f"^{re.escape(scope)}$", every, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def quantize_int8(fp32: bytes, mode: str, keep_float: tuple[str, ...]) -> tuple[bytes, LitertQuantization]:
    """(the int8 flatbuffer, Artifact.details.quantization): ``mode``'s recipe, ``keep_float``'s Linears left in float."""
    kept = op_scopes(fp32, keep_float) if keep_float else {}
    recipe = "dynamic_wi8_afp32" if mode == "dynamic" else "weight_only_wi8_afp32"
    return quantize(fp32, int8_recipe(mode, kept)), LitertQuantization(
        mode=mode, quantizer_recipe=f"ai-edge-quantizer {recipe}" + (" with per-op no_quantize" if kept else ""),
        weights="int8 symmetric per-channel", keep_float_ops={m: len(s) for m, s in kept.items()}, why_default=INT8_CHOICE)


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)
