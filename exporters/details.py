"""What each artifact's manifest entry records beyond its file: typed ``details`` per format, and its ``calibration``.

``ArtifactDetails`` is the core every format shares (the int8 record's slot, the Apple promise); each format
extends it with what its exporter decided (``OnnxDetails``, ...), and ``DETAILS_CLASSES`` says which class
a format's details are. They are ``OpenRecord``s: keys a newer vitship added are kept and written back.
``exporters/schema.py`` reads and writes them (schema version and migrations); nothing else reads the JSON.
This module imports no backend, so every reader of a manifest (runtimes, workers, the report) can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vitship.exporters.coreml_apple import AppleDetails
from vitship.exporters.int8.record import Int8Record
from vitship.models.export_form import TIMM_FORM, ExportForm
from vitship.models.spec import FEATURES_NAME, LOGITS_NAME
from vitship.models.typed import OpenRecord


@dataclass(kw_only=True)
class Calibration(OpenRecord):
    """The photos an int8 artifact was calibrated on (none for a dynamic scheme) and the scheme that used them."""

    source: str | None = None  # the --calibration folder, or the bundled photos; None: no photos (dynamic int8)
    count: int = 0  # photos in this part
    files: list[str] = field(default_factory=list)  # their names, relative to the source
    part: str | None = None  # calibration (what the quantizer saw) | held_back (the int8 gate's) | all
    held_back: int = 0  # photos of the source held back from calibration for the export's int8 gate
    classes: dict[str, int] | None = None  # photos per class subfolder (real/, fake/) when the source has them
    scheme: str = ""  # what the quantizer did with them, in words
    method: str | None = None  # the calibration method (onnxruntime static: MinMax)
    op_types: list[str] = field(default_factory=list)  # the op types quantized (onnxruntime)
    subset_size: int | None = None  # NNCF's subset size
    smooth_quant_alpha: float | None = None  # NNCF's own SmoothQuant (None: off)


@dataclass(kw_only=True)
class Smoothing:
    """The SmoothQuant fold an int8 artifact was quantized from (``exporters/int8/smoothing.py``)."""

    method: str = ""
    alpha: float | None = None
    pairs: int = 0  # LayerNorm -> Linear pairs folded
    calibration_images: int = 0  # photos whose activation ranges set the scales
    max_scale: float = 0.0
    min_scale: float = 0.0


@dataclass(kw_only=True)
class ArtifactDetails(OpenRecord):
    """What every format's exporter may record: the int8 record, the fold and, for Apple-facing programs, their promise."""

    # the export's int8 gate: verdict, recipe shipped, every ladder step, the photos used (every int8 has one)
    int8_gate: Int8Record | None = None
    smoothing: Smoothing | None = None  # int8 only: the SmoothQuant fold of the weights it was quantized from (None: off)
    apple: AppleDetails | None = None  # a Core ML program (coreml-*, executorch-coreml-*): read by the report's iOS block
    # An image-input artifact (onnx-image-*, ...: exporters/image_input.py): its frame input and the preprocessing inside
    input: str | None = None
    # the form the exporter traced (models/export_form.py); None: not recorded (vitship before the export form), timm's
    export_form: ExportForm | None = None

    def form(self) -> ExportForm:
        """The export form this artifact computes (timm's own where none is recorded)."""
        return self.export_form or TIMM_FORM


# --- ONNX ---------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class OnnxSlim:
    """onnxslim's graph kept or not, and why (it must check and compute the same outputs)."""

    nodes_before: int = 0
    nodes_after: int | None = None
    max_output_difference: float | None = None
    kept: bool = False
    reason: str = ""


@dataclass(kw_only=True)
class OnnxGeluFusion:
    """onnxscript's erf-GELU fusion to ``com.microsoft.Gelu`` kept or not, and why (exporters/onnx_graph.py)."""

    fused: int = 0  # GELUs rewritten
    max_output_difference: float | None = None
    kept: bool = False
    reason: str = ""


@dataclass(kw_only=True)
class OnnxCompatibility:
    """What ``--onnx-runtimes`` did to reach the oldest supported runtimes (exporters/onnx_compat.py)."""

    ir_version: int = 0
    exported_ir_version: int = 0
    target: str = ""  # compatible | latest
    shape_slices_rewritten: int | None = None  # Shape(start, end) nodes split into Shape + Slice (compatible only)


@dataclass(kw_only=True)
class OnnxQuantization:
    """onnxruntime's int8 quantization: mode, the nodes kept in fp32 and how many weights became int8."""

    mode: str = ""  # dynamic | static
    fp32_nodes_excluded: list[str] = field(default_factory=list)  # the head, plus keep_float's nodes
    keep_float_nodes: dict[str, list[str]] = field(default_factory=dict)  # torch module -> its MatMul/Gemm nodes
    quantized_weights: int = 0


@dataclass(kw_only=True)
class OnnxDetails(ArtifactDetails):
    exporter: str = ""  # torch.onnx.export(dynamo=True) or the TorchScript fallback, with the opset
    dynamo_fallback_reason: str | None = None  # why the dynamo exporter was not used
    onnxslim: OnnxSlim | None = None
    gelu_fusion: OnnxGeluFusion | None = None  # the qkv-op form only (onnxruntime contrib ops)
    fp32_graph: str | None = None  # "reused from this run's fp32 export"
    fp16: str | None = None  # the fp16 conversion, in words
    quantization: OnnxQuantization | None = None
    compatibility: OnnxCompatibility | None = None
    nodes: int = 0
    ort_smoke_run: str = ""  # where the saved file was run once after export


# --- OpenVINO -----------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class OpenvinoQuantization:
    ignored_scope: list[str] = field(default_factory=list)  # NNCF IgnoredScope patterns: the head, keep_float's Linears


@dataclass(kw_only=True)
class OpenvinoDetails(ArtifactDetails):
    frontend: str = ""
    reused_trace: bool = False  # the TorchScript trace came from this run's earlier precision
    quantization: OpenvinoQuantization | None = None
    files: dict[str, int] = field(default_factory=dict)  # model.xml, model.bin -> bytes
    weights_storage: str = ""
    inference_precision: str = ""  # chosen by the device at compile time: what parity records as runtime precision
    reused_build: str | None = None  # openvino-image-*: the IR (and its NNCF int8) came from this run's openvino-* export
    preprocessing: str | None = None  # openvino-image-*: what the PrePostProcessor puts in front of the model


# --- CoreML -------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class CoremlQuantization:
    """coremltools' linear weight quantization of the fp16 program."""

    mode: str = ""
    dtype: str = ""
    granularity: str = ""
    op_types: list[str] = field(default_factory=list)
    min_elements: int = 0
    base_program: str = ""


@dataclass(kw_only=True)
class CoremlDetails(ArtifactDetails):
    source: str = ""
    minimum_deployment_target: str = ""
    compute_precision: str = ""  # fp32 | fp16
    mil_ops: dict[str, int] = field(default_factory=dict)  # MIL op type -> count in the saved program
    labels_in: str = ""
    label: str | None = None  # fp32: "exact reference, not for the Neural Engine"
    image_normalisation: str | None = None  # an image input: where the normalisation runs
    quantization: CoremlQuantization | None = None
    torch_export: str | None = None  # "reused from this run"


# --- ExecuTorch ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class EmbeddedOutputs:
    """The names of logits and features inside a Core ML delegate's embedded program (it may order them otherwise)."""

    logits: str
    features: str

    def by_program_name(self) -> dict[str, str]:
        """The embedded program's output name -> vitship's (logits, features)."""
        return {self.logits: LOGITS_NAME, self.features: FEATURES_NAME}


@dataclass(kw_only=True)
class ExecutorchQuantization:
    mode: str = ""  # dynamic | static
    scheme: str = ""
    why_default: str = ""


@dataclass(kw_only=True)
class ExecutorchDetails(ArtifactDetails):
    delegate: str = "XnnpackBackend"  # the backend the graph is lowered to: XnnpackBackend | CoreMLBackend
    batch_range: list[int] = field(default_factory=list)
    source: str = ""
    compute_units: str | None = None  # Core ML delegate only
    runs_on: str | None = None  # Core ML delegate only: which runtime runs it
    quantization: ExecutorchQuantization | None = None
    delegated_calls: int = 0
    ops_outside_delegate: list[str] = field(default_factory=list)  # run by ExecuTorch's portable kernels
    delegate_output_index: list[int] | None = None
    embedded_outputs: EmbeddedOutputs | None = None  # Core ML delegate only


# --- LiteRT -------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class LitertQuantization:
    mode: str = ""  # dynamic | weight-only
    quantizer_recipe: str = ""
    weights: str = ""
    why_default: str = ""
    keep_float_ops: dict[str, int] = field(default_factory=dict)  # torch module kept in float -> its ops left unquantized


@dataclass(kw_only=True)
class LitertDetails(ArtifactDetails):
    converter: str = ""
    signature: str = ""
    batch_shapes: list[int] = field(default_factory=list)
    source: str = ""
    metadata: str = ""  # where vitship's metadata travels in the .tflite
    fp16: str | None = None
    quantization: LitertQuantization | None = None


# Which class each format's details are (the registry's format names: exporters/__init__.py). Another format,
# e.g. torch's reference, records the core only.
DETAILS_CLASSES: dict[str, type[ArtifactDetails]] = {
    "onnx": OnnxDetails, "openvino": OpenvinoDetails, "coreml": CoremlDetails, "executorch": ExecutorchDetails,
    "executorch-coreml": ExecutorchDetails, "litert": LitertDetails,
}


def details_class(fmt: str) -> type[ArtifactDetails]:
    return DETAILS_CLASSES.get(fmt, ArtifactDetails)
