"""OpenVINO IR export: fp32, fp16-compressed, and NNCF post-training int8, with the model's facts in rt_info."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from vitship.exporters.base import (
    INT8_ONLY,
    Artifact,
    ExportError,
    ExportOptions,
    TraceCache,
    artifact_id,
    model_metadata,
    package_versions,
    path_sha256,
    path_size,
)
from vitship.exporters.details import OpenvinoDetails, OpenvinoQuantization
from vitship.exporters.int8.calibration import calibration_images
from vitship.exporters.int8.options import Int8Options, check_int8_options, linear_modules, model_to_quantize
from vitship.models import FEATURES_NAME, LOGITS_NAME, LoadedModel, MissingDependencyError, UnknownNameError

FORMAT = "openvino"
MODEL_FILE = "model.xml"
RT_INFO_SECTION = "model_info"  # the rt_info section optimum-intel and the Model Zoo use for model facts
TRACE_SEED = 0
# Patterns of nodes NNCF must leave in floating point. The classifier head is one tiny MatMul (embed_dim x
# num_labels) whose output IS the decision: quantizing it saves nothing and costs logit accuracy.
HEAD_PATTERNS = (r".*head.*",)
FLOOR_MAX_OPSET = 14  # OpenVINO 2024.0 (the supported floor) has operation sets up to opset14


@dataclass(frozen=True)
class OpenvinoOptions(Int8Options):
    """OpenVINO IR export options (the rebuild key of every openvino-* artifact)."""

    int8_preset: Literal["mixed", "performance"] = field(default="mixed", metadata=INT8_ONLY)
    # NNCF's own SmoothQuant alpha for MatMuls; None: off. vitship's PyTorch fold (smooth_alpha, inherited, 0.5) does
    # better here. Measured on ViT-S/16-384 (min feature cosine over 18 photos, seeded / seeded-outliers): fold 0.5
    # 0.9958 / 0.9953; NNCF 0.5 0.9900 / 0.9891; NNCF 0.95 (the TRANSFORMER default) 0.964 on seeded, under the
    # 0.98 gate; neither 0.7204 on the stress model.
    smooth_quant_alpha: float | None = field(default=None, metadata=INT8_ONLY)
    class_token_tail: bool = True  # the last block for the class token only (models.export_form)


Options = OpenvinoOptions


def export(loaded: LoadedModel, out_dir: Path, options: OpenvinoOptions, cache: TraceCache | None = None) -> Artifact:
    """Convert ``loaded.model`` to an OpenVINO IR (model.xml + model.bin) in ``out_dir``.

    fp32 keeps fp32 weights; fp16 stores fp16-compressed weights (computed at the device's inference
    precision); int8 is NNCF post-training quantization calibrated on real photos.
    """
    ov = _import("openvino", "OpenVINO export")
    if options.precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"openvino: unsupported precision {options.precision!r}; use fp32, fp16 or int8")
    alpha = options.smooth_quant_alpha
    if options.precision == "int8" and alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ExportError(f"openvino: SmoothQuant alpha {alpha} is outside [0, 1]; use None to turn it off")
    check_int8_options(FORMAT, options)
    start = time.perf_counter()
    model, calibration, details = _built(ov, loaded, options, cache or TraceCache())
    _set_rt_info(model, loaded, options.precision)
    xml = Path(out_dir) / MODEL_FILE
    ov.save_model(model, str(xml), compress_to_fp16=options.precision == "fp16")
    _describe(xml, options.precision, details)
    return Artifact(
        id=artifact_id(FORMAT, options.precision), format=FORMAT, precision=options.precision,
        path=f"{artifact_id(FORMAT, options.precision)}/{MODEL_FILE}", sha256=path_sha256(xml),
        size_bytes=path_size(xml), export_seconds=round(time.perf_counter() - start, 3),
        versions=package_versions("openvino", "torch", *(["nncf"] if options.precision == "int8" else [])),
        input_spec=_input_spec(loaded), weights=loaded.info.to_dict(), calibration=calibration,
        options=options.cache_key(), details=details, min_runtime_versions=min_runtime_versions(model),
    )


def _built(ov, loaded: LoadedModel, options: OpenvinoOptions, cache: TraceCache):
    """(ov.Model, calibration, details) of ``options``: kept in ``cache`` for the run, so that openvino-image-* (the
    same IR behind a PrePostProcessor) reuses the fold and the NNCF quantization of openvino-* instead of redoing them."""
    import copy

    def build():
        source, trace_cache, smoothing = model_to_quantize(loaded, options, cache)
        model, reused = _converted(ov, source, options, trace_cache)
        calibration = None
        details = OpenvinoDetails(frontend="openvino.convert_model(torch.nn.Module, TorchScript trace)", reused_trace=reused,
                                  export_form=options.export_form())
        if options.precision == "int8":
            model, calibration, details.quantization = _quantize(model, source, options)
            details.smoothing = smoothing
        return model, calibration, details

    key = ("openvino-built", loaded.info.sha256, json.dumps(loaded.spec.to_dict(), sort_keys=True),
           json.dumps(options.cache_key(), sort_keys=True, default=str))
    (model, calibration, details), reused = cache.get(key, build)
    details = copy.deepcopy(details)
    details.reused_build = "this run's openvino IR of the same options" if reused else None
    return model.clone(), copy.deepcopy(calibration), details


def _import(package: str, purpose: str):
    try:
        return __import__(package)
    except ImportError as err:
        raise MissingDependencyError(package, purpose) from err


def _converted(ov, loaded: LoadedModel, options: ExportOptions, cache: TraceCache):
    """A fresh copy of the traced model; fp16 and int8 start from the same trace as fp32.

    The trace is kept in ``cache`` for the next precision of the same weights in this run, so an
    export --all traces the real ViT-S once, not three times (about 25 s each on 2 cores).
    """
    key = (FORMAT, loaded.info.sha256, json.dumps(loaded.spec.to_dict(), sort_keys=True), max(options.example_batch, 2),
           options.export_form())
    model, reused = cache.get(key, lambda: _convert(ov, loaded, options))
    return model.clone(), reused


def _convert(ov, loaded: LoadedModel, options: ExportOptions):
    """Trace the PyTorch model into an ov.Model with input ``pixel_values`` [-1, C, H, W] and named outputs."""
    spec = loaded.spec
    channels, height, width = spec.input_shape
    generator = torch.Generator().manual_seed(TRACE_SEED)
    example = torch.randn(max(options.example_batch, 2), channels, height, width, generator=generator)
    with warnings.catch_warnings():  # torch.jit.trace deprecation and timm's shape-assert TracerWarnings
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(loaded.model.with_form(options.export_form()), example_input=example,
                                 input=[(spec.input_name, [-1, channels, height, width], ov.Type.f32)])
    if len(model.outputs) != len(spec.output_names):
        raise ExportError(f"openvino: the converted model has {len(model.outputs)} outputs, expected {spec.output_names}")
    for output, name in zip(model.outputs, spec.output_names):
        output.get_tensor().set_names({name})
    return model


def _quantize(model, loaded: LoadedModel, options: ExportOptions):
    """NNCF post-training quantization (int8 weights and activations) calibrated on real photos."""
    nncf = _import("nncf", "OpenVINO int8 quantization")
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if options.int8_preset not in presets:
        raise UnknownNameError("OpenVINO int8 preset", options.int8_preset, list(presets))
    batch, calibration = calibration_images(loaded.spec, options)
    dataset = nncf.Dataset([batch[i:i + 1] for i in range(len(batch))])
    kept = [rf".*\bvit\.{re.escape(name)}/.*" for name in linear_modules(loaded, options.keep_float)]
    ignored = nncf.IgnoredScope(patterns=[*HEAD_PATTERNS, *kept], validate=False)
    alpha = options.smooth_quant_alpha
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(
        matmul=-1 if alpha is None else alpha))  # NNCF: a negative alpha turns SmoothQuant off
    quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                              preset=presets[options.int8_preset], subset_size=len(batch),
                              fast_bias_correction=True, ignored_scope=ignored, advanced_parameters=advanced)
    smooth = "SmoothQuant off" if alpha is None else f"SmoothQuant alpha {alpha}"
    calibration = dataclasses.replace(
        calibration, scheme=f"NNCF PTQ, model_type=TRANSFORMER, preset={options.int8_preset}: int8 symmetric "
                            f"per-channel weights, int8 activations (FakeQuantize), {smooth}, fast bias correction",
        subset_size=len(batch), smooth_quant_alpha=alpha,
    )
    return quantized, calibration, OpenvinoQuantization(ignored_scope=[*HEAD_PATTERNS, *kept])


def min_runtime_versions(model) -> dict[str, str]:
    """The oldest OpenVINO that reads the IR: the supported floor while every op is from an opset it has."""
    from vitship.exporters.onnx_compat import SUPPORTED_FLOOR

    newest = max((int(op.get_type_info().version_id.removeprefix("opset") or 0)
                 for op in model.get_ordered_ops() if op.get_type_info().version_id.startswith("opset")), default=0)
    if newest <= FLOOR_MAX_OPSET:
        return {"openvino": SUPPORTED_FLOOR["openvino"]}
    return {"openvino": package_versions("openvino")["openvino"].split("-")[0]}  # only the installed one is known


def _set_rt_info(model, loaded: LoadedModel, precision: str) -> None:
    for key, value in {**model_metadata(loaded), "precision": precision}.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])


def _describe(xml: Path, precision: str, details: OpenvinoDetails) -> None:
    details.files = {path.name: path.stat().st_size for path in (xml, xml.with_suffix(".bin"))}
    details.weights_storage = {"fp32": "fp32 weights", "int8": "int8 weights with FakeQuantize on activations",
                               "fp16": "fp16-compressed weights (decompressed to the inference precision)"}[precision]
    details.inference_precision = ("chosen by the device at compile time (CPU: bf16 on AVX512-BF16/AMX, "
                                   "else f32; set INFERENCE_PRECISION_HINT=f32 for exact fp32)")


def _input_spec(loaded: LoadedModel) -> dict:
    spec = loaded.spec
    return {**loaded.spec.to_dict(), "input_type": "tensor", "input_shape": [spec.batch_axis, *spec.input_shape],
            "dtype": "float32", "layout": "NCHW", "outputs": [LOGITS_NAME, FEATURES_NAME]}
