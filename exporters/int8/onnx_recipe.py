"""ONNX int8: dynamic MatMulInteger (default, fastest on onnxruntime CPU) or static QDQ calibrated on real photos.

Both recipes pass the int8 gate in docs/DESIGN.md (feature cosine >= 0.98, agreement >= 99%, max probability
error <= 0.05) on the real ViT-S/16-384 with the bundled photos. Measured side by side in one process
on the 2-core AVX-512 VNNI machine (batch 1, onnxruntime CPU, ratios to onnx-fp32; the README has the
table and ``python -m vitship.bench.int8_schemes onnx`` remakes it):

- dynamic, per-channel int8 weights, MatMul only (``dynamic``): 0.56-0.64x, cosine 0.9995. onnxruntime
  fuses DynamicQuantizeLinear + MatMulInteger + scale into DynamicQuantizeMatMul (u8 x s8, VNNI);
- static QOperator u8s8 (QLinearMatMul): as fast (0.57-0.65x) but cosine 0.9966 and needs calibration;
- static QDQ s8s8 (``static``, the previous default): 1.02x, no faster than fp32: onnxruntime CPU runs
  s8 activations through a slower path. Kept by option because other execution providers (OpenVINO EP,
  TensorRT, NPUs) want QDQ graphs;
- dynamic per-tensor: as fast, cosine 0.997; u8 weights: 0.89x; onnxruntime's transformer optimizer
  first: no gain (0.72x), it cannot fuse timm's single qkv projection into Attention.

Quantizing every op ONNX Runtime can (Add, Mul, Softmax, LayerNorm inputs ...) collapses the features
(cosine 0.08), so only MatMuls with constant weights (plus Gemm and, static only, the patch Conv) are
quantized; the two activation x activation attention MatMuls stay float. The classifier head stays fp32:
quantizing its output would clip logits to the range seen in calibration, and it is 384 x num_labels.
``quant_pre_process`` was measured and left out: on this graph it only adds Transpose nodes.

Trained-like outliers (``--weights seeded-outliers``) break the dynamic recipe: per-tensor uint8 activations
entering qkv/fc1 spend their range on a few channels (ViT-S/16-384: feature cosine 0.588, probability error
0.22). The SmoothQuant fold before export (``smooth_alpha``, ``exporters.int8.smoothing``) restores it (alpha 0.5:
cosine 0.997, probability error 0.015; alpha 0.8: 0.9986, 0.007) and leaves the seeded model as it was (alpha
0.5: cosine 0.99956 against 0.99947 unsmoothed); the graph is unchanged, so is the speed.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vitship.exporters.base import ExportError, ExportOptions
from vitship.exporters.details import Calibration, OnnxQuantization
from vitship.exporters.int8.calibration import calibration_images
from vitship.models import LoadedModel, MissingDependencyError

STATIC_OP_TYPES = ["MatMul", "Gemm", "Conv"]
# ConvInteger has no int8-weight kernel in onnxruntime CPU; Attention (onnxruntime's, exporters.onnx_graph) becomes QAttention
DYNAMIC_OP_TYPES = ["MatMul", "Gemm", "Attention"]
INT8_MODES = ("dynamic", "static")  # dynamic: fastest on onnxruntime CPU; static: QDQ for other execution providers


def quantize(model, loaded: LoadedModel, options: ExportOptions, photos: tuple[np.ndarray, Calibration] | None = None):
    """Quantize an fp32 ModelProto to int8.

    Args:
        loaded: the model the graph was exported from (smoothed or not): ``options.keep_float`` names its modules.
        photos: (calibration batch, its source info) from ``calibration_images`` for static mode
            (read here when not given).

    Returns:
        (int8 ModelProto, Artifact.calibration, Artifact.details.quantization)
    """
    try:
        import onnx
        from onnxruntime import quantization
    except ImportError as err:
        raise MissingDependencyError("onnxruntime", "ONNX int8 quantization") from err
    if options.int8_mode not in INT8_MODES:
        raise ExportError(f"onnx: unknown int8 mode {options.int8_mode!r}; use {' or '.join(INT8_MODES)}")
    if options.int8_mode == "static" and photos is None:
        photos = calibration_images(loaded.spec, options)
    head = _head_nodes(model, loaded.spec.output_names[0])
    kept = nodes_for_modules(model, loaded, tuple(getattr(options, "keep_float", ())))
    head = head + sorted({node for nodes in kept.values() for node in nodes})
    with tempfile.TemporaryDirectory(prefix="vitship-onnx-int8-") as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        onnx.save_model(model, str(source), save_as_external_data=False)
        with _without_preprocessing_hint():
            if options.int8_mode == "static":
                calibration = _quantize_static(quantization, source, target, loaded, photos, head)
            else:
                calibration = _quantize_dynamic(quantization, source, target, head)
        quantized = onnx.load(str(target))
    details = OnnxQuantization(mode=options.int8_mode, fp32_nodes_excluded=head, keep_float_nodes=kept,
                               quantized_weights=count_int8_initializers(quantized))
    if details.quantized_weights == 0:
        raise ExportError("onnx: int8 quantization produced no int8 weights; the graph has no quantizable ops")
    return quantized, calibration, details


def count_int8_initializers(model) -> int:
    """How many initializers are stored as int8/uint8 (the quantized weights)."""
    import onnx

    return sum(1 for t in model.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
               and int(np.prod(t.dims)) > 1)


def nodes_for_modules(model, loaded: LoadedModel, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The MatMul/Gemm (or Attention, for a qkv projection) nodes computing each named torch Linear, found by its weight.

    The exporter and onnxslim rename everything (``node_MatMul_12``, ``val_13``), but a Linear's weight
    stays an initializer holding the same numbers (transposed for MatMul).
    """
    from onnx import numpy_helper

    from vitship.exporters.int8.options import linear_modules

    if not names:
        return {}
    modules = linear_modules(loaded, names)
    by_shape: dict[tuple, list] = {}
    for init in model.graph.initializer:
        by_shape.setdefault(tuple(init.dims), []).append(init)
    found = {}
    for name, module in modules.items():
        weight = module.weight.detach().numpy()
        candidates = [i.name for i in by_shape.get(weight.T.shape, []) if np.array_equal(numpy_helper.to_array(i), weight.T)]
        candidates += [i.name for i in by_shape.get(weight.shape, []) if np.array_equal(numpy_helper.to_array(i), weight)]
        found[name] = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Attention") and set(n.input) & set(candidates)]
        if not found[name]:
            raise ExportError(f"onnx: keep_float {name!r}: no MatMul/Gemm in the graph uses its weight")
    return found


def _head_nodes(model, logits_name: str) -> list[str]:
    """The node(s) writing the logits output: the classifier head, kept in fp32."""
    return [node.name for node in model.graph.node if logits_name in node.output]


def _quantize_static(quantization, source: Path, target: Path, loaded: LoadedModel,
                     photos: tuple[np.ndarray, Calibration], head: list[str]) -> Calibration:
    images = photos[0]
    reader = _photo_reader(quantization.CalibrationDataReader, loaded.spec.input_name, images)
    quantization.quantize_static(
        str(source), str(target), reader, quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
        op_types_to_quantize=STATIC_OP_TYPES, nodes_to_exclude=head,
        calibrate_method=quantization.CalibrationMethod.MinMax,
        extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True, "ActivationSymmetric": False},
    )
    return dataclasses.replace(
        photos[1], scheme="static QDQ: int8 symmetric per-channel weights, int8 asymmetric per-tensor activations "
                          "(MinMax calibration); MatMul with constant weights, Gemm and Conv only; head in fp32",
        method="MinMax", op_types=STATIC_OP_TYPES,
    )


def _quantize_dynamic(quantization, source: Path, target: Path, head: list[str]) -> Calibration:
    quantization.quantize_dynamic(
        str(source), str(target), op_types_to_quantize=DYNAMIC_OP_TYPES, per_channel=True,
        weight_type=quantization.QuantType.QInt8, nodes_to_exclude=head, extra_options={"MatMulConstBOnly": True},
    )
    return Calibration(scheme="dynamic: int8 symmetric per-channel weights of the MatMuls with constant weights, uint8 "
                              "activations quantized per call (DynamicQuantizeLinear + MatMulInteger); head in fp32",
                       op_types=DYNAMIC_OP_TYPES)


@contextmanager
def _without_preprocessing_hint():
    """Silence onnxruntime's root-logger advice to run quant_pre_process (measured: no help here, see above)."""
    def drop_hint(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop_hint)
    try:
        yield
    finally:
        root.removeFilter(drop_hint)


def _photo_reader(base: type, input_name: str, images: np.ndarray):
    """A CalibrationDataReader feeding the photos one at a time (bounded memory in the calibrator)."""
    batches = iter([{input_name: images[i:i + 1]} for i in range(len(images))])

    class PhotoReader(base):
        def get_next(self):
            return next(batches, None)

    return PhotoReader()
