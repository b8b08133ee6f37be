"""Parity of image-input artifacts: decoded photos at their own sizes, end to end, by the frame gates."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import FRAME_EXPORTS
from vitship.bench.parity.frames import RANDOM_FRAME_SIZES, parity_photos
from vitship.bench.parity.plan import select_rows
from vitship.bench.parity.run import ParityConfig, ParityContext, check_row, prepare
from vitship.models import VitshipError, sample_images
from vitship.models.judgement import FRAME_TOLERANCES, ToleranceTable
from vitship.models.status import Status
from vitship.runtimes import SessionOptions


@pytest.fixture(scope="module")
def model_dir(tiny_exports, tiny_loaded):
    return tiny_exports(FRAME_EXPORTS) / tiny_loaded.spec.name


def test_frame_rows_run_end_to_end_on_decoded_photos_and_a_data_folder(model_dir, tiny_loaded, tmp_path):
    extra = tmp_path / "more"
    extra.mkdir()
    shutil.copy(sample_images()[0], extra / "held-back.png")
    config = ParityConfig(batch_sizes=(1, 2), random_inputs=1, random_frames=3, data_dir=str(extra))
    (plan,) = select_rows(model_dir, tiny_loaded, ["onnx-image-fp32"], ["onnxruntime:cpu"], False, SessionOptions())
    ctx = prepare(model_dir, tiny_loaded, config, frames=True)
    frame = check_row(plan, ParityContext.load(ctx.save(tmp_path)))  # as a worker checks it: from the saved frames
    assert frame.status is Status.PASS, frame.reason
    assert frame.inputs == "frames"
    n_photos = len(sample_images()) + 1  # the bundled photos and the --data folder's
    assert frame.metrics.n_inputs == n_photos + 3 and frame.metrics.n_photos == n_photos
    assert frame.tolerance == FRAME_TOLERANCES["fp32"] and frame.tolerance_keys == ["default:frames@fp32"]
    assert frame.batch_consistency is None and frame.metrics.agreement == 1.0
    assert 0 < frame.metrics.max_abs_logit and frame.metrics.min_cosine > 0.9999  # not the tensor path: measured
    sizes = ctx.frames.sizes()
    assert len(set(sizes)) > 3 and "1920x1080" in sizes and ctx.frames.names[-3:] == [
        f"random-frame-{h}x{w}" for h, w in RANDOM_FRAME_SIZES[:3]]


def test_frame_gates_take_their_own_overrides():
    table = ToleranceTable()
    table.apply_cli(["frames@fp32.max_prob=0.5", "onnx-image-fp32.min_cosine=0.9", "fp32.max_abs_logit=1"])
    gate, keys = table.lookup("onnx-image", "fp32", "fp32", "frames")
    assert keys == ["default:frames@fp32", "frames@fp32", "onnx-image-fp32"]
    assert gate.max_prob == 0.5 and gate.min_cosine == 0.9 and gate.max_abs_logit is None  # the tensor override stays out
    tensor_gate, tensor_keys = table.lookup("onnx", "fp32", "fp32")
    assert tensor_gate.max_abs_logit == 1 and tensor_keys == ["default:fp32", "fp32"]


def test_an_empty_data_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(VitshipError, match="no images"):
        parity_photos(None, tmp_path)
    assert parity_photos(2, None) == sample_images(2)
    assert np.asarray(RANDOM_FRAME_SIZES).min() >= 1


def test_the_photos_reference_is_reused_and_equals_a_fresh_one(tiny_loaded):
    from tests.conftest import torch_outputs
    from vitship.bench.parity.frames import FrameInputs
    from vitship.models import preprocess

    photos = sample_images()[:3]

    def reference(pixels):
        logits, features = torch_outputs(tiny_loaded, pixels)
        return {"logits": logits, "features": features}

    fresh = FrameInputs.build(photos, tiny_loaded.spec, 2, 0, reference)
    reused = FrameInputs.build(photos, tiny_loaded.spec, 2, 0, reference, reference(preprocess(photos, tiny_loaded.spec)))
    for name in ("logits", "features"):
        assert reused.reference[name].shape == fresh.reference[name].shape == (5, fresh.reference[name].shape[1])
        np.testing.assert_allclose(reused.reference[name], fresh.reference[name], atol=1e-5)
