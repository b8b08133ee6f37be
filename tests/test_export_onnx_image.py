"""vitship.exporters.onnx_image: a uint8 frame of any size in, Pillow's resize and crop inside, IR 9 / opset 18."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tests.conftest import FRAME_EXPORTS
from vitship.exporters import frame_graph, onnx_image
from vitship.exporters.base import ExportError, manifest_artifacts
from vitship.exporters.details import OnnxDetails
from vitship.models import DEFAULT_SPEC, load_image, preprocess, sample_images
from vitship.models.preprocess import crop_origin, resized_size

# Frames whose sizes exercise the arithmetic: square, portrait, landscape, odd excess (half-to-even crop
# offsets), upscaling (smaller than 384), a 1-pixel strip and a full-HD camera frame.
ODD_SIZES = [(384, 384), (385, 384), (383, 386), (97, 64), (1, 50), (300, 451), (1080, 1920), (1920, 1080), (767, 1535)]


def preprocessing_session(spec) -> ort.InferenceSession:
    """Just the prepended nodes, as their own graph: frame in, the model's float NCHW input out."""
    nodes, initializers = frame_graph.preprocessing_nodes(spec, "image", "pixel_values")
    frame = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, "height", "width", 3])
    out = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, *spec.input_shape[1:]])
    model = helper.make_model(helper.make_graph(nodes, "preprocess", [frame], [out], initializers),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_in_graph_sizes_crop_and_resize_follow_pillow_within_one_level():
    session, rng = preprocessing_session(DEFAULT_SPEC), np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ODD_SIZES]
    frames += [np.asarray(load_image(p)) for p in sample_images()[:4]]
    level = 2 * DEFAULT_SPEC.rescale_factor / DEFAULT_SPEC.std[0]  # one 8-bit level in normalised units
    for frame in frames:
        ours = session.run(None, {"image": frame[None]})[0]
        pillow = preprocess(frame, DEFAULT_SPEC)
        assert ours.shape == pillow.shape == (1, 3, 384, 384)
        levels = np.abs(ours - pillow) / level
        # the resize arithmetic and the crop offset are exact (a one-pixel shift would move whole rows by many levels)
        assert levels.max() <= 2.0 + 1e-4, (frame.shape, levels.max())
        assert (levels > 0.5).mean() < 0.02, (frame.shape, (levels > 0.5).mean())  # 15-bit weights: ~1% at worst
    assert resized_size(1080, 1920, DEFAULT_SPEC) == (384, 682) and crop_origin(384, 682, DEFAULT_SPEC) == (0, 149)


@pytest.fixture(scope="module")
def exported(tiny_exports, tiny_loaded):
    root = tiny_exports(FRAME_EXPORTS)
    return root / tiny_loaded.spec.name


def test_the_manifest_records_the_tensor_format_with_typed_details_and_the_frame_input(exported):
    (artifact,) = [a for a in manifest_artifacts(exported) if a.id == "onnx-image-fp32"]
    assert artifact.format == "onnx" and isinstance(artifact.details, OnnxDetails)
    assert artifact.details.input.startswith("uint8 RGB frame") and artifact.details.ort_smoke_run.startswith("ok")
    assert artifact.details.nodes > 0 and artifact.details.exporter  # the tensor export's record, carried over
    assert artifact.input_spec["input_type"] == "frame" and artifact.input_spec["frame_size"] == "any"


def test_file_is_ir9_opset18_with_a_uint8_frame_input_and_its_facts(exported, tiny_loaded):
    model = onnx.load(str(exported / "onnx-image-fp32/model.onnx"))
    assert model.ir_version == 9 and {o.domain: o.version for o in model.opset_import}[""] == 18
    (frame,) = model.graph.input
    dims = [d.dim_value or d.dim_param for d in frame.type.tensor_type.shape.dim]
    assert frame.name == "image" and frame.type.tensor_type.elem_type == TensorProto.UINT8 and dims == [1, "height", "width", 3]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["input_type"] == "frame" and props["input_layout"] == "NHWC" and props["input_name"] == "image"
    assert json.loads(props["labels"]) == list(tiny_loaded.spec.labels) and props["decision_threshold"] == "0.5"
    assert "antialiased" in json.loads(props["preprocessing_inside"])["resize"]
    added = [n for n in model.graph.node if n.name.startswith(frame_graph.PREFIX)]
    assert {"Gather", "MatMul", "Range"} <= {n.op_type for n in added} and model.graph.node[0] in added


def test_a_filter_no_runtime_reproduces_is_refused_before_export(tiny_loaded):
    loaded = type(tiny_loaded)(tiny_loaded.model, tiny_loaded.spec.replace(interpolation="lanczos"), tiny_loaded.info)
    with pytest.raises(ExportError, match="lanczos"):
        onnx_image.export(loaded, None, onnx_image.OnnxImageOptions())
