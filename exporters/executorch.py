"""ExecuTorch export: a ``.pte`` program lowered to XNNPACK (fp32, int8) or to the Core ML delegate (fp16).

XNNPACK is what ExecuTorch runs on the CPU of iOS and Android phones, and ExecuTorch's own Python runtime
runs the same kernels here (``runtimes.executorch_rt``), so parity and latency measure the real thing.
The Core ML delegate embeds an ML Program in the ``.pte``; only Apple's Core ML runtime executes it, so
here its embedded program is read back (``executorch_coreml.embedded_coreml_package``) and checked on coreml:reference.

Every op outside the delegate runs on ExecuTorch's portable kernels between delegate calls, so the XNNPACK
programs are traced in an export form (``models.export_form``) whose ops the delegate all takes: explicit
attention (no scaled_dot_product_attention mask logic), LayerNorm as means and elementwise ops (the delegate has
no layer-norm operator), and the last block for the class token only. The manifest lists what stays outside
(``ExecutorchDetails.ops_outside_delegate``).

Batch: XNNPACK programs take a fixed batch of 1 by default (``max_batch=1``): every shape is static, so every
reshape and slice is delegated; a phone classifies one photo at a time. ``max_batch`` 2 or more gives a dynamic
batch 1..max_batch (exported with an example batch of 2: torch.export specialises a size-1 dim); XNNPACK's
partitioner takes no reshape or slice of a symbolic size, so those run outside the delegate, and ExecuTorch plans
its memory for the upper bound. The Core ML delegate is exported at a fixed batch of 1, the shape the Neural
Engine runs and the shape an app predicts with.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from vitship.exporters.base import (
    INT8_ONLY,
    Artifact,
    ExportError,
    TraceCache,
    artifact_id,
    package_versions,
    path_sha256,
    path_size,
)
from vitship.exporters.details import Calibration, ExecutorchDetails, ExecutorchQuantization
from vitship.exporters.executorch_coreml import embedded_apple_details, embedded_coreml_package  # noqa: F401 (runtimes import it here)
from vitship.exporters.int8.calibration import calibration_images
from vitship.exporters.int8.options import Int8Options, check_int8_options, linear_modules, model_to_quantize
from vitship.models import MissingDependencyError, UnknownNameError
from vitship.models.export_form import ExportForm

if TYPE_CHECKING:
    from vitship.models import LoadedModel

PROGRAM_NAME = "model.pte"
METADATA_METHOD = "vitship_metadata"  # a constant method returning the model's facts as JSON (labels, preprocessing, ...)
INT8_MODES = ("dynamic", "static")
# Measured on the real ViT-S/16-384 (seeded weights, the 18 bundled photos, 2-core x86, one run, timings noisy
# under load, so only their ratio counts): dynamic int8 feature cosine 0.9996, max probability error 0.006,
# 481 ms/image; PT2E static (XNNPACKQuantizer calibrated on the photos) cosine 0.981, max probability error
# 0.014, 659 ms/image. Static quantizes every activation, and the ViT's attention and GELU activations have
# outliers a per-tensor int8 scale clips; dynamic quantizes activations per batch at run time.
INT8_CHOICE = ("dynamic: on the ViT-S it kept feature cosine 0.9996 (static PT2E 0.981, at the int8 gate's edge) "
               "and ran 1.4x faster than static in the same run")


@dataclass(frozen=True)
class ExecutorchOptions(Int8Options):
    """executorch-* options (each artifact's rebuild key): XNNPACK fp32 and int8.

    Attributes:
        max_batch: 1 (XNNPACK): a fixed batch-1 program, every op in the delegate; 2 or more: a dynamic batch
            1..max_batch, reshapes and slices of the batch outside the delegate, memory planned for the bound.
        int8_mode: dynamic (int8 weights, activations quantized per batch at run time) or static (PT2E,
            XNNPACKQuantizer calibrated on ``calibration_images``).
        min_target: the Core ML delegate's minimum deployment target.
        attention, layer_norm, class_token_tail: the export form (``models.export_form.ExportForm``).
    """

    name: ClassVar[str] = "executorch"
    format: ClassVar[str] = "executorch"
    backend: ClassVar[str] = "XnnpackBackend"
    max_batch: int = 1
    int8_mode: Literal["dynamic", "static"] = field(default="dynamic", metadata=INT8_ONLY)
    min_target: str = "iOS17"
    attention: Literal["explicit", "fused"] = "explicit"
    layer_norm: Literal["decomposed", "native"] = "decomposed"
    class_token_tail: bool = True

    def export_form(self) -> ExportForm:
        return ExportForm(attention=self.attention, layer_norm=self.layer_norm, class_token_tail=self.class_token_tail)


@dataclass(frozen=True)
class ExecutorchCoremlOptions(ExecutorchOptions):
    """executorch-coreml-fp16: the whole graph lowered to the Core ML delegate, fp16, at a fixed batch of 1.

    Core ML has attention and layer-norm operators, so the form is timm's own; the class-token tail is not
    measured on an Apple device yet, so it is off.
    """

    name: ClassVar[str] = "executorch-coreml"
    format: ClassVar[str] = "executorch-coreml"
    backend: ClassVar[str] = "CoreMLBackend"
    attention: Literal["explicit", "fused"] = "fused"
    layer_norm: Literal["decomposed", "native"] = "native"
    class_token_tail: bool = False


Options = ExecutorchOptions


def export(loaded: LoadedModel, out_dir: Path, options: ExecutorchOptions, cache: TraceCache | None = None) -> Artifact:
    """Lower ``loaded.model`` to ``out_dir/model.pte`` with the options' delegate."""
    check_options(options)
    _import_executorch()
    start = time.perf_counter()
    cache = cache or TraceCache()
    if options.backend == ExecutorchCoremlOptions.backend:
        pte, details, calibration = _lower_coreml(loaded, options)
    else:
        pte, details, calibration = _lower_xnnpack(loaded, options, cache)
    path = Path(out_dir) / PROGRAM_NAME
    path.write_bytes(pte)
    aid = artifact_id(options.name, options.precision)
    if options.backend == ExecutorchCoremlOptions.backend:
        details.apple = embedded_apple_details(path, options.min_target, details)
    return Artifact(
        id=aid, format=options.format, precision=options.precision, path=f"{aid}/{PROGRAM_NAME}", sha256=path_sha256(path),
        size_bytes=path_size(path), export_seconds=round(time.perf_counter() - start, 3),
        versions=package_versions("executorch", "torch", *(["coremltools"] if options.backend == "CoreMLBackend" else [])),
        input_spec=_input_spec(loaded, options), weights=loaded.info.to_dict(), calibration=calibration,
        options=options.cache_key(), details=details,
    )


def check_options(options: ExecutorchOptions) -> None:
    """Refuse options that cannot make this artifact, before any work (the CLI calls it too)."""
    allowed = ("fp16",) if options.backend == ExecutorchCoremlOptions.backend else ("fp32", "int8")
    if options.precision not in allowed:
        raise ExportError(f"{options.name}: unsupported precision {options.precision!r}; use {' or '.join(allowed)}")
    if options.int8_mode not in INT8_MODES:
        raise UnknownNameError("ExecuTorch int8 mode", options.int8_mode, list(INT8_MODES))
    check_int8_options(options.name, options)
    if options.max_batch < 1:
        raise ExportError(f"executorch: --executorch-max-batch must be 1 (a fixed batch-1 program) or more (got {options.max_batch})")


def _import_executorch():
    try:
        import executorch.exir  # noqa: F401 (imported to check that it is installed)
    except ImportError as err:
        raise MissingDependencyError("executorch", "ExecuTorch export") from err


def _fp32_program(loaded: LoadedModel, options: ExecutorchOptions, cache: TraceCache):
    """torch.export of the export form at batch 1 or 1..max_batch, shared by executorch-fp32 and -int8 of one run."""
    import torch

    spec, form = loaded.spec, options.export_form()

    def make():
        batch = 1 if options.max_batch == 1 else max(options.example_batch, 2)
        example = torch.randn(batch, *spec.input_shape, generator=torch.Generator().manual_seed(0))
        return _torch_export(loaded.model.with_form(form), example, options.max_batch, spec.batch_axis)

    key = ("executorch", loaded.info.sha256, spec, options.max_batch, options.example_batch, form)
    return cache.get(key, make)


def _torch_export(model, example, max_batch: int | None, batch_axis: str):
    import torch

    dynamic = ({0: torch.export.Dim(batch_axis, min=1, max=max_batch)},) if max_batch and max_batch > 1 else None
    try:
        return torch.export.export(model, (example,), dynamic_shapes=dynamic)
    except Exception as err:  # torch.export raises many types for untraceable code; all mean "cannot export"
        raise ExportError(f"executorch: torch.export failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})") from err


def _lower_xnnpack(loaded: LoadedModel, options: ExecutorchOptions,
                   cache: TraceCache) -> tuple[bytes, ExecutorchDetails, Calibration | None]:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    source, cache, smoothing = model_to_quantize(loaded, options, cache)
    program, reused = _fp32_program(source, options, cache)
    details = ExecutorchDetails(delegate=options.backend, batch_range=[1, options.max_batch], export_form=options.export_form(),
                                source="torch.export ExportedProgram" + (" (reused from this run)" if reused else ""))
    calibration = None
    if options.precision == "int8":
        program, calibration = _quantize(source, program, options)
        details.quantization = ExecutorchQuantization(mode=options.int8_mode, why_default=INT8_CHOICE,
                                                      scheme="XNNPACKQuantizer symmetric, per-channel weights")
        details.smoothing = smoothing
    return _to_pte(program, [XnnpackPartitioner()], details, metadata_methods(loaded, options)), details, calibration


def _quantize(loaded: LoadedModel, program, options: ExecutorchOptions):
    """PT2E int8 for XNNPACK: dynamic (activations quantized at run time) or static (calibrated on the photos)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = options.int8_mode == "dynamic"
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    kept = [f"vit.{name}" for name in linear_modules(loaded, options.keep_float)]
    if kept:  # set_module_name(name, None) is "not supported yet": a node filter leaves these modules in float
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import _get_not_module_type_or_name_filter

        quantizer.set_filter_function(_get_not_module_type_or_name_filter([], kept))
    module = prepare_pt2e(program.module(), quantizer)  # .module() is a fresh copy: the cached program stays fp32
    example = program.example_inputs[0][0]
    calibration = None
    with torch.no_grad():
        if dynamic:
            module(example)  # the weight observers see the weights once
        else:
            photos, calibration = calibration_images(loaded.spec, options)
            for i in range(0, len(photos), options.max_batch):
                module(torch.from_numpy(photos[i:i + options.max_batch]))
    quantized = convert_pt2e(module)
    return _torch_export(quantized, example, options.max_batch, loaded.spec.batch_axis), calibration


def _lower_coreml(loaded: LoadedModel, options: ExecutorchOptions) -> tuple[bytes, ExecutorchDetails, None]:
    import coremltools as ct
    import torch
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    from vitship.exporters.coreml import deployment_targets

    if options.min_target not in deployment_targets(ct):
        raise UnknownNameError("CoreML deployment target", options.min_target, deployment_targets(ct))
    example = torch.randn(1, *loaded.spec.input_shape, generator=torch.Generator().manual_seed(0))
    form = options.export_form()
    program = _torch_export(loaded.model.with_form(form), example, None, loaded.spec.batch_axis)  # fixed batch 1
    specs = CoreMLBackend.generate_compile_specs(compute_unit=ct.ComputeUnit.ALL, compute_precision=ct.precision.FLOAT16,
                                                 minimum_deployment_target=getattr(ct.target, options.min_target))
    details = ExecutorchDetails(delegate=options.backend, batch_range=[1, 1], compute_units="ALL", export_form=form,
                                runs_on="Apple's Core ML runtime only (iOS / macOS); its embedded ML Program is checked "
                                        "on coreml:reference")
    pte = _to_pte(program, [CoreMLPartitioner(compile_specs=specs)], details, metadata_methods(loaded, options))
    return pte, details, None


def metadata_methods(loaded: LoadedModel, options: ExecutorchOptions, **facts: str) -> dict[str, str]:
    """The constant method ``METADATA_METHOD``: the model's facts as JSON, read back by ``exporters.embedded``."""
    import json

    from vitship.exporters.base import model_metadata

    return {METADATA_METHOD: json.dumps({**model_metadata(loaded), "precision": options.precision, **facts}, sort_keys=True)}


def _to_pte(program, partitioners: list, details: ExecutorchDetails, constant_methods: dict | None = None) -> bytes:
    """Lower to the delegate and serialise; records the ops left outside it (run by ExecuTorch's portable kernels)."""
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=partitioners, constant_methods=constant_methods)
    graph = edge.exported_program().graph_module.graph
    calls = [n for n in graph.nodes if n.op == "call_function"]
    kept = {_op_name(n.target) for n in calls if "executorch_call_delegate" not in str(n.target)} - {"getitem"}
    details.delegated_calls = sum("executorch_call_delegate" in str(n.target) for n in calls)
    details.ops_outside_delegate = sorted(kept)
    details.delegate_output_index = _delegate_output_index(graph)
    return edge.to_executorch().buffer


def _op_name(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return str(getattr(target, "_name", name)).removeprefix("aten::")


def _delegate_output_index(graph) -> list[int] | None:
    """For each program output, the delegate output it is (the Core ML payload may order them otherwise)."""
    (output,) = [n for n in graph.nodes if n.op == "output"]
    index = []
    for node in output.args[0]:
        if getattr(node, "target", None) is not operator.getitem:
            return None
        index.append(int(node.args[1]))
    return index


def _input_spec(loaded: LoadedModel, options: ExecutorchOptions) -> dict:
    spec = loaded.spec
    fixed = options.backend == ExecutorchCoremlOptions.backend or options.max_batch == 1
    batch = {"batch_shapes": [1]} if fixed else {"batch_range": [1, options.max_batch]}
    return {**spec.to_dict(), "input_type": "tensor", "input_shape": [1 if fixed else spec.batch_axis, *spec.input_shape],
            "dtype": "float32", "layout": "NCHW", **batch}
