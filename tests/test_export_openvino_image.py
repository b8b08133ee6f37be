"""vitship.exporters.openvino_image: PrePostProcessor in front of the IR, a uint8 frame of any size in."""

from __future__ import annotations

import json

import numpy as np
import openvino as ov
import pytest

from tests.conftest import FRAME_EXPORTS, cosine_rows, torch_outputs
from tests.test_export_onnx_image import ODD_SIZES
from vitship.exporters import openvino_image
from vitship.exporters.base import manifest_artifacts
from vitship.exporters.details import OpenvinoDetails
from vitship.models import DEFAULT_SPEC, load_image, preprocess, sample_images


def test_in_graph_resize_and_crop_follow_pillow_within_one_level():
    """The PPP preprocessing alone (an identity model behind it) against vitship's Pillow preprocessing."""
    import openvino.opset13 as ops

    pixels = ops.parameter([-1, 3, 384, 384], ov.Type.f32, name="pixel_values")
    identity = openvino_image.with_preprocessing(ov.Model([ops.relu(pixels)], [pixels]), DEFAULT_SPEC.replace(mean=(0.0,) * 3,
                                                                                                          std=(1.0,) * 3))
    compiled = ov.Core().compile_model(identity, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ODD_SIZES]
    frames += [np.asarray(load_image(p)) for p in sample_images()[:4]]
    spec = DEFAULT_SPEC.replace(mean=(0.0,) * 3, std=(1.0,) * 3)
    for frame in frames:
        ours = compiled({0: frame[None]})[0]
        levels = np.abs(ours - preprocess(frame, spec)) * 255
        assert levels.max() <= 2.0 + 1e-3, (frame.shape, levels.max())
        assert (levels > 0.5).mean() < 0.02, (frame.shape, (levels > 0.5).mean())  # 15-bit weights: ~1% at worst


@pytest.fixture(scope="module")
def exported(tiny_exports, tiny_loaded):
    return tiny_exports(FRAME_EXPORTS) / tiny_loaded.spec.name


def test_ir_takes_decoded_photos_at_their_own_sizes_and_matches_pytorch(exported, tiny_loaded):
    # at the CPU's default precision (bf16 on AVX512-BF16 / AMX): the resize runs in integers whatever it is
    compiled = ov.Core().compile_model(str(exported / "openvino-image-fp32/model.xml"), "CPU")
    photos = sample_images()
    got = np.concatenate([compiled({0: np.asarray(load_image(p))[None]})["features"] for p in photos])
    _, reference = torch_outputs(tiny_loaded, preprocess(photos, tiny_loaded.spec))
    assert cosine_rows(got, reference).min() > 0.999


def test_the_manifest_records_openvino_with_typed_details_and_the_preprocessing(exported):
    (artifact,) = [a for a in manifest_artifacts(exported) if a.id == "openvino-image-fp32"]
    assert artifact.format == "openvino" and isinstance(artifact.details, OpenvinoDetails)
    assert "PrePostProcessor" in artifact.details.preprocessing and artifact.details.input.startswith("uint8 RGB frame")
    assert artifact.details.files and artifact.details.frontend  # the tensor IR's record, carried over


def test_ir_input_is_a_uint8_nhwc_frame_with_its_facts_in_rt_info(exported, tiny_loaded):
    model = ov.Core().read_model(str(exported / "openvino-image-fp32/model.xml"))
    (frame,) = model.inputs
    assert frame.get_any_name() == "image" and frame.get_element_type() == ov.Type.u8
    assert str(frame.get_partial_shape()) == "[1,?,?,3]"
    assert [o.get_any_name() for o in model.outputs] == ["logits", "features"]

    def info(key):
        return model.get_rt_info(["model_info", key]).astype(str)

    assert info("input_type") == "frame" and info("input_layout") == "NHWC" and info("max_frame_side") == "8192"
    assert json.loads(info("labels")) == list(tiny_loaded.spec.labels) and info("decision_threshold") == "0.5"
    assert json.loads(info("preprocessing_inside"))["center_crop"] == "64x64"
    assert {op.get_type_name() for op in model.get_ops()} >= {"Gather", "MatMul", "Range", "Convert"}
