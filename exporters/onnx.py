"""ONNX export: fp32 (dynamo exporter, one self-contained file), fp16 (fp32 I/O kept) and int8 (dynamic or QDQ).

Every precision starts from the same fp32 graph: exported by ``torch.onnx.export(dynamo=True)`` (the
TorchScript exporter only as a logged fallback), simplified with onnxslim when that removes nodes
without changing outputs, then converted to fp16 or quantized to int8 (``exporters.int8.onnx_recipe``). By default the file is written for
older runtimes too (IR version 9: onnxruntime 1.16+, OpenVINO 2024.0+; ``exporters.onnx_compat``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from vitship.exporters import onnx_compat, onnx_graph
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
    vitship_version,
)
from vitship.exporters.details import OnnxDetails
from vitship.exporters.int8.calibration import calibration_images
from vitship.exporters.int8.onnx_recipe import INT8_MODES
from vitship.exporters.int8.options import Int8Options, check_int8_options, model_to_quantize
from vitship.exporters.onnx_compat import RuntimeTarget
from vitship.models import LoadedModel, MissingDependencyError
from vitship.models.export_form import ExportForm

FORMAT = "onnx"
MODEL_FILE = "model.onnx"
MAX_BATCH = 1024  # torch.export needs an upper bound; the ONNX axis itself stays symbolic ("batch")
PROTOBUF_LIMIT = 2**31  # one self-contained .onnx file must fit in a 2 GB protobuf
FP32_OPS_IN_FP16 = ("LayerNormalization", "Softmax")  # see _to_fp16
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxOptions(Int8Options):
    """ONNX export options (the rebuild key of every onnx-* artifact)."""

    opset: int = 18
    slim: bool = True  # onnxslim, kept only when it removes nodes without changing outputs
    # dynamic: MatMulInteger, 0.56-0.64x onnx-fp32 on onnxruntime CPU; static: QDQ, for other execution providers
    int8_mode: Literal["dynamic", "static"] = field(default="dynamic", metadata=INT8_ONLY)
    # compatible: IR version 9 (onnxruntime 1.16+, OpenVINO 2024.0+); latest: the exporter's IR version as is
    runtimes: RuntimeTarget = "compatible"
    class_token_tail: bool = True  # the last block for the class token only (models.export_form)
    # onnxruntime: fp32 and dynamic int8 run attention as com.microsoft.Attention (int8: QAttention) and the GELU as
    # com.microsoft.Gelu (exporters.onnx_graph); none: standard ONNX ops only, as fp16 and static int8 (for other
    # execution providers) always are.
    contrib_ops: Literal["onnxruntime", "none"] = "onnxruntime"

    def export_form(self) -> ExportForm:
        # static QDQ int8 is for other execution providers, fp16 for GPU ones: standard ops for both
        contrib = self.contrib_ops == "onnxruntime" and (self.precision, self.int8_mode) in (("fp32", "dynamic"), ("int8", "dynamic"))
        return ExportForm(attention="qkv-op" if contrib else "fused", class_token_tail=self.class_token_tail)


Options = OnnxOptions


def export(loaded: LoadedModel, out_dir: Path, options: OnnxOptions, cache: TraceCache | None = None) -> Artifact:
    """Export ``loaded.model`` to ``out_dir/model.onnx`` at ``options.precision``.

    Returns:
        The Artifact; ``details`` records the exporter used (and any fallback reason), the onnxslim
        decision with node counts, and the fp16/int8 conversion settings.
    """
    onnx = _import("onnx", "ONNX export")
    if options.precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"onnx: unsupported precision {options.precision!r}; use fp32, fp16 or int8")
    if options.precision == "int8" and options.int8_mode not in INT8_MODES:
        raise ExportError(f"onnx: unknown int8 mode {options.int8_mode!r}; use {' or '.join(INT8_MODES)}")
    onnx_compat.check_opset(options.opset, options.runtimes)
    check_int8_options(FORMAT, options)
    start = time.perf_counter()
    # Read the calibration photos first: a bad one fails in a second, not after the export.
    static_int8 = options.precision == "int8" and options.int8_mode == "static"
    photos = calibration_images(loaded.spec, options) if static_int8 else None
    example = _example_batch(loaded, options)
    source, graph_cache, smoothing = model_to_quantize(loaded, options, cache or TraceCache())
    model, details = _fp32_graph(source, example, options, graph_cache)
    calibration = None
    if options.precision == "fp16":
        model = _to_fp16(model, details)
    elif options.precision == "int8":
        from vitship.exporters.int8 import onnx_recipe

        model, calibration, details.quantization = onnx_recipe.quantize(model, source, options, photos)
        details.smoothing = smoothing
    _set_metadata(model, loaded, options.precision)
    details.compatibility = onnx_compat.make_compatible(model, options.runtimes)
    path = Path(out_dir) / MODEL_FILE
    _save_self_contained(onnx, model, path)
    onnx.checker.check_model(str(path), full_check=True)
    details.nodes = len(model.graph.node)
    details.ort_smoke_run = _smoke_run(path, example[:1], loaded)
    aid = artifact_id(FORMAT, options.precision)
    return Artifact(
        id=aid, format=FORMAT, precision=options.precision, path=f"{aid}/{MODEL_FILE}", sha256=path_sha256(path),
        size_bytes=path_size(path), export_seconds=round(time.perf_counter() - start, 3), versions=library_versions(),
        input_spec=_input_spec(loaded), weights=loaded.info.to_dict(), calibration=calibration,
        options=options.cache_key(), details=details, min_runtime_versions=onnx_compat.min_runtime_versions(model),
    )


def library_versions() -> dict[str, str]:
    """Versions of everything that shapes the ONNX bytes (compared to skip up-to-date exports)."""
    return {"vitship": vitship_version(), **package_versions("torch", "onnx", "onnxscript", "onnxruntime", "onnxslim")}


def _import(package: str, purpose: str):
    try:
        return __import__(package)
    except ImportError as err:
        raise MissingDependencyError(package, purpose) from err


def _example_batch(loaded: LoadedModel, options: ExportOptions) -> np.ndarray:
    # torch.export specialises a size-1 dim to a constant, so the example batch is at least 2.
    rng = np.random.default_rng(0)
    return rng.standard_normal((max(options.example_batch, 2), *loaded.spec.input_shape), dtype=np.float32)


def _fp32_graph(loaded: LoadedModel, example: np.ndarray, options: OnnxOptions, cache: TraceCache):
    """The exported (and slimmed, and with contrib ops fused) fp32 graph of the options' export form, and its details.

    int8 starts from the same graph, so it is kept (serialized) in ``cache`` for the next precision of the same
    weights and options in this run: an export --all exports it once, not twice (fp16 has its own form).
    """
    import copy

    import onnx

    form = options.export_form()

    def make() -> tuple[bytes, OnnxDetails]:
        details = OnnxDetails()
        model = _export_fp32(loaded, example, options, details)
        if options.slim:
            model = onnx_graph.slim(model, example, details)
        if form.attention == "qkv-op":
            model = onnx_graph.fuse_gelu(model, example, details)
        return model.SerializeToString(), details

    key = (f"{FORMAT}-{form.attention}", loaded.info.sha256, loaded.spec, options.opset, options.example_batch, options.slim, form)
    (data, details), reused = cache.get(key, make)
    details = copy.deepcopy(details)
    details.fp32_graph = "reused from this run's fp32 export" if reused else None
    return onnx.load_from_string(data), details


def _export_fp32(loaded: LoadedModel, example: np.ndarray, options: OnnxOptions, details: OnnxDetails):
    """The fp32 ModelProto from the dynamo exporter, or from the TorchScript exporter if dynamo fails."""
    import torch

    spec = loaded.spec
    if options.opset < 18:
        raise ExportError(f"onnx: opset {options.opset} is too old; the dynamo exporter needs opset 18 or newer")
    inputs = (torch.from_numpy(example),)
    names = {"input_names": [spec.input_name], "output_names": list(spec.output_names), "opset_version": options.opset}
    form = options.export_form()
    model = loaded.model.with_form(form)
    translations = onnx_graph.contrib_translations() if form.attention == "qkv-op" else None
    details.export_form = form
    try:
        batch = torch.export.Dim(spec.batch_axis, min=1, max=MAX_BATCH)
        program = torch.onnx.export(model, inputs, dynamo=True, external_data=False, verbose=False,
                                    dynamic_shapes={spec.input_name: {0: batch}}, custom_translation_table=translations, **names)
        details.exporter = f"torch.onnx.export(dynamo=True), opset {options.opset}"
        return program.model_proto
    except Exception as err:  # the dynamo exporter raises many types; all mean "use the fallback"
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}"
        log.warning("onnx: the dynamo exporter failed (%s); falling back to the TorchScript exporter", reason)
        details.exporter = f"torch.onnx.export(dynamo=False) (TorchScript fallback), opset {options.opset}"
        details.dynamo_fallback_reason = reason
    details.export_form = dataclasses.replace(form, attention="fused")  # the TorchScript exporter has no translation of the qkv op
    return _export_torchscript(loaded, loaded.model.with_form(details.export_form), inputs, names)


def _export_torchscript(loaded: LoadedModel, model, inputs: tuple, names: dict):
    import io
    import warnings

    import onnx
    import torch

    spec = loaded.spec
    axes = {name: {0: spec.batch_axis} for name in (spec.input_name, *spec.output_names)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from timm's shape asserts
        torch.onnx.export(model, inputs, buffer, dynamo=False, dynamic_axes=axes, **names)
    return onnx.load_from_string(buffer.getvalue())


def _to_fp16(model, details: OnnxDetails):
    """fp16 weights and compute, fp32 inputs and outputs (for GPUs; still loads in onnxruntime CPU)."""
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as err:
        raise MissingDependencyError("onnxruntime", "ONNX fp16 conversion") from err
    # LayerNormalization and Softmax stay fp32: onnxruntime 1.16 CPU has no fp16 kernel for them and expands
    # their function bodies, whose ReduceMean/ReduceMax(axes=...) are invalid at opset 18 ("Unrecognized
    # attribute: axes"); fp32 statistics are also what mixed-precision practice keeps.
    blocked = [*DEFAULT_OP_BLOCK_LIST, *FP32_OPS_IN_FP16]
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    _topological_sort(converted.graph)
    details.fp16 = ("onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True), "
                       f"{' and '.join(FP32_OPS_IN_FP16)} kept in fp32")
    return converted


def _topological_sort(graph) -> None:
    """Reorder nodes so each comes after its inputs' producers.

    convert_float_to_float16 appends the input Cast nodes at the end of the graph, which onnxruntime
    accepts but onnx.checker rejects ("Nodes in a graph must be topologically sorted").
    """
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ExportError("onnx: the fp16 graph has a cycle or a dangling input; cannot order its nodes")
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def _set_metadata(model, loaded: LoadedModel, precision: str) -> None:
    import onnx

    props = {**model_metadata(loaded), "precision": precision}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name, model.doc_string = "vitship", f"{loaded.spec.name} ({loaded.spec.architecture}), {precision}"


def _save_self_contained(onnx, model, path: Path) -> None:
    """One file with every tensor inlined (no .onnx.data), which is what apps and runtimes copy around."""
    size = model.ByteSize()
    if size >= PROTOBUF_LIMIT:
        raise ExportError(f"onnx: the model is {size / 2**30:.1f} GiB, over protobuf's 2 GiB limit for one "
                          "self-contained file; this exporter does not write external data")
    onnx.save_model(model, str(path), save_as_external_data=False)


def _smoke_run(path: Path, batch: np.ndarray, loaded: LoadedModel) -> str:
    """Load the saved file in onnxruntime CPU and run one image: a broken file fails the export, not a later check."""
    outputs = onnx_graph.run(str(path), batch)
    expected = [(1, loaded.spec.num_classes), (1, loaded.spec.embed_dim)]
    if [tuple(o.shape) for o in outputs] != expected or not all(np.isfinite(o).all() for o in outputs):
        raise ExportError(f"onnx: {path.name} runs in onnxruntime but gives shapes {[o.shape for o in outputs]} "
                          f"(expected {expected}) or non-finite values")
    return "onnxruntime CPU, batch 1: the expected output shapes, finite values"


def _input_spec(loaded: LoadedModel) -> dict:
    spec = loaded.spec
    return {**spec.to_dict(), "input_type": "tensor", "input_shape": [spec.batch_axis, *spec.input_shape],
            "dtype": "float32", "layout": "NCHW", "outputs": list(spec.output_names)}
