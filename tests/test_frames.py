"""Image-input sessions (runtimes/frames.py): run_frames on decoded frames, tensors through their own frames, hostile frames."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import cosine_rows, torch_outputs
from vitship.exporters.base import manifest_artifacts
from vitship.models import load_image, preprocess, sample_images
from vitship.runtimes import FrameError, RuntimeUnavailable, SessionOptions, open_session

FRAME_ARTIFACTS = {"onnx-image-fp32": "onnxruntime:cpu", "openvino-image-fp32": "openvino:CPU"}
F32 = SessionOptions(openvino_precision="f32")


@pytest.fixture(scope="module")
def model_dir(tiny_exports, tiny_loaded):
    return tiny_exports([("onnx-image", "fp32"), ("openvino-image", "fp32"), ("onnx", "fp32")]) / tiny_loaded.spec.name


def session_for(model_dir, artifact_id, options=F32):
    artifact = next(a for a in manifest_artifacts(model_dir) if a.id == artifact_id)
    return open_session(artifact, model_dir, FRAME_ARTIFACTS.get(artifact_id, "onnxruntime:cpu"), options)


@pytest.mark.parametrize("artifact_id", sorted(FRAME_ARTIFACTS))
def test_run_frames_takes_each_photo_at_its_own_size(model_dir, tiny_loaded, artifact_id):
    photos = sample_images()[:6]
    session = session_for(model_dir, artifact_id)
    try:
        outputs = session.run_frames([np.asarray(load_image(p)) for p in photos])
    finally:
        session.close()
    logits, features = torch_outputs(tiny_loaded, preprocess(photos, tiny_loaded.spec))
    assert outputs["logits"].shape == logits.shape and outputs["features"].shape == features.shape
    assert cosine_rows(outputs["features"], features).min() > 0.9999


def test_a_tensor_batch_runs_through_the_frames_it_came_from(model_dir, tiny_photos):
    """run_outputs(tensor) on an image session equals the tensor artifact on the same photos (8-bit, so exact)."""
    frame_session, tensor_session = session_for(model_dir, "onnx-image-fp32"), session_for(model_dir, "onnx-fp32")
    try:
        via_frames = frame_session.run_outputs(tiny_photos[:5])
        direct = tensor_session.run_outputs(tiny_photos[:5])
    finally:
        frame_session.close()
        tensor_session.close()
    np.testing.assert_allclose(via_frames["logits"], direct["logits"], atol=1e-5)
    np.testing.assert_allclose(via_frames["features"], direct["features"], atol=1e-5)
    bench = session_for(model_dir, "onnx-image-fp32", SessionOptions(split_batches=False))
    with pytest.raises(RuntimeUnavailable, match="one frame per call"):
        bench.run_outputs(tiny_photos[:2])
    bench.close()


HOSTILE = {
    "0x0": (np.zeros((0, 0, 3), np.uint8), "no pixels"),
    "20000x20000": (np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (20000, 20000, 3), (0, 0, 0)), "8192 px per side"),
    "1x50 strip": (np.zeros((1, 50, 3), np.uint8), "aspect ratio over 16"),
    "grayscale": (np.zeros((32, 32), np.uint8), "grayscale"),
    "RGBA": (np.zeros((32, 32, 4), np.uint8), "RGBA"),
    "16-bit": (np.zeros((32, 32, 3), np.uint16), "8-bit"),
    "float": (np.zeros((32, 32, 3), np.float32), "8-bit"),
    "not an array": ([[0, 0, 0]], "not a frame"),
}


@pytest.mark.parametrize("artifact_id", sorted(FRAME_ARTIFACTS))
def test_hostile_frames_are_refused_with_one_line_or_give_a_correct_result(model_dir, tiny_loaded, artifact_id):
    session = session_for(model_dir, artifact_id)
    try:
        for name, (frame, message) in HOSTILE.items():
            with pytest.raises(FrameError, match=message) as caught:
                session.run_frames([frame])
            assert "\n" not in str(caught.value), name
        strip = np.random.default_rng(0).integers(0, 256, (1, 10, 3), dtype=np.uint8)  # 1x10: inside the limits
        got = session.run_frames([strip])["features"]
        session.run_frames([np.zeros((64, 64, 3), np.uint8)])  # the session still works after the refusals
    finally:
        session.close()
    assert cosine_rows(got, torch_outputs(tiny_loaded, preprocess(strip, tiny_loaded.spec))[1]).min() > 0.9999
    with pytest.raises(FrameError, match="list of frames"):
        session.run_frames(np.zeros((8, 8, 3), np.uint8))
