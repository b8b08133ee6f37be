"""vitship.exporters.torch_image: LiteRT and ExecuTorch programs that take one camera frame size, preprocessing inside."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import cosine_rows, torch_outputs
from vitship.exporters import options_class
from vitship.exporters.base import ExportError, manifest_artifacts
from vitship.exporters.details import ExecutorchDetails, LitertDetails
from vitship.exporters.embedded import read_embedded
from vitship.exporters.pipeline import export_all, model_dir_for
from vitship.exporters.torch_image import ExecutorchImageOptions, FrameProgram, LitertImageOptions
from vitship.models import load_image, preprocess, sample_images
from vitship.runtimes import FrameError, open_session

FRAME = (120, 160)  # (height, width): small, and 4:3 like a phone camera; cheap to convert
TARGETS = {"litert-image-fp32": "litert:cpu", "executorch-image-fp32": "executorch:cpu"}
DETAILS = {"litert-image-fp32": LitertDetails, "executorch-image-fp32": ExecutorchDetails}


def frames_of(size=FRAME) -> list[np.ndarray]:
    return [np.asarray(load_image(p).resize((size[1], size[0]))) for p in sample_images()[:4]]


def test_the_frame_program_in_pytorch_follows_pillow(tiny_loaded):
    program = FrameProgram(tiny_loaded.model, tiny_loaded.spec, FRAME).eval()
    frames = frames_of()
    with torch.no_grad():
        got = torch.cat([program(torch.from_numpy(f[None]))[1] for f in frames]).numpy()
    assert cosine_rows(got, torch_outputs(tiny_loaded, preprocess(frames, tiny_loaded.spec))[1]).min() > 0.9999


@pytest.fixture(scope="module")
def model_dir(tiny_loaded, tmp_path_factory):
    root = tmp_path_factory.mktemp("torch-image")
    options = {"litert-image": LitertImageOptions(frame_size=FRAME), "executorch-image": ExecutorchImageOptions(frame_size=FRAME)}
    results = export_all(tiny_loaded, root, [("litert-image", "fp32"), ("executorch-image", "fp32")], options,
                         gate=False)
    assert [r.status for r in results] == ["ok", "ok"], [r.reason for r in results]
    return model_dir_for(root, tiny_loaded)


# LiteRT's conversion and ExecuTorch's lowering of the frame program take about a minute on 2 cores: CI's slow run
@pytest.mark.slow
@pytest.mark.parametrize("artifact_id", sorted(TARGETS))
def test_programs_take_their_frame_size_and_refuse_any_other(model_dir, tiny_loaded, artifact_id):
    artifact = next(a for a in manifest_artifacts(model_dir) if a.id == artifact_id)
    assert artifact.input_spec["frame_size"] == list(FRAME) and artifact.input_spec["input_type"] == "frame"
    assert isinstance(artifact.details, DETAILS[artifact_id]) and artifact.details.input.startswith("uint8 RGB frame, NHWC")
    # the tensor artifact's export form (models.export_form), traced behind the frame steps and recorded
    assert artifact.details.form() == options_class(artifact_id.rsplit("-", 1)[0])(precision="fp32").export_form()
    assert artifact.details.form().class_token_tail == (artifact.format == "executorch")  # LiteRT keeps no tail
    session = open_session(artifact, model_dir, TARGETS[artifact_id])
    try:
        frames = frames_of()
        got = session.run_frames(frames)["features"]
        with pytest.raises(FrameError, match="takes 160x120 frames only"):
            session.run_frames([frames_of((121, 160))[0]])
    finally:
        session.close()
    assert cosine_rows(got, torch_outputs(tiny_loaded, preprocess(frames, tiny_loaded.spec))[1]).min() > 0.9999
    facts = read_embedded(model_dir / artifact.path)
    assert facts.value("frame_size") == list(FRAME) and facts.value("labels") == list(tiny_loaded.spec.labels)
    assert facts.inputs[0]["shape"] == [1, *FRAME, 3]


def test_int8_and_odd_frame_sizes_are_refused_before_any_work(tiny_loaded, tmp_path):
    from vitship.exporters import torch_image

    with pytest.raises(ExportError, match="int8 is not offered"):
        torch_image.export(tiny_loaded, tmp_path, ExecutorchImageOptions(precision="int8"))
    with pytest.raises(ExportError, match="aspect ratio over 16"):
        torch_image.export(tiny_loaded, tmp_path, LitertImageOptions(frame_size=(10, 400)))


def test_the_cli_frame_size_reaches_both_fixed_size_programs_and_a_bad_one_is_refused(vitship_main, monkeypatch, tmp_path):
    from vitship.bench.commands import export as export_command

    seen = {}

    def capture(loaded, out, requests, options, force, gate, jobs):  # stands in for the exports themselves
        seen.update(options)
        return []

    monkeypatch.setattr(export_command, "_run_exports", capture)
    code, text, err = vitship_main("export", "--arch", "tiny", "-f", "litert-image,executorch-image", "-p", "fp32",
                                   "--frame-size", "720x1280", "--out", str(tmp_path))
    assert code == 0, text + err
    assert seen["litert-image"].frame_size == seen["executorch-image"].frame_size == (720, 1280)
    code, text, err = vitship_main("export", "--arch", "tiny", "-f", "litert-image", "--frame-size", "720", "--out", str(tmp_path))
    assert code == 2 and "1080x1920" in text + err
