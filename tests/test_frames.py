"""Image-input sessions (runtimes/frames.py): run_frames on decoded frames, tensors through their own frames, hostile frames."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FRAME_EXPORTS, cosine_rows, torch_outputs
from vitship.exporters.base import manifest_artifacts
from vitship.models import load_image, preprocess, sample_images
from vitship.runtimes import FrameError, RuntimeUnavailable, SessionOptions, open_session

FRAME_ARTIFACTS = {"onnx-image-fp32": "onnxruntime:cpu", "openvino-image-fp32": "openvino:CPU"}
F32 = SessionOptions(openvino_precision="f32", static_batch=1)  # the bench's OpenVINO rows: batch 1, static


@pytest.fixture(scope="module")
def model_dir(tiny_exports, tiny_loaded):
    return tiny_exports(FRAME_EXPORTS) / tiny_loaded.spec.name


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
    if artifact_id.startswith("openvino"):
        assert session.info.extra["input_shape"] == "static [1, ?, ?, 3]"
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


def png_claiming(size: tuple[int, int], path):
    """A valid 1x1 PNG whose header says ``size``: what a decompression bomb looks like before it is decoded."""
    import struct
    import zlib

    from PIL import Image

    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", *size)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def hostile_files(folder):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    files = {"gray.png": Image.fromarray(rgb[..., 0]), "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]])),
             "sixteen.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
             "strip.png": Image.fromarray(rgb[:1, :50]), "long-strip.png": Image.fromarray(np.zeros((1, 20000, 3), np.uint8))}
    for name, image in files.items():
        image.save(folder / name)
    return [folder / name for name in files] + [png_claiming((20000, 20000), folder / "huge.png")]


def test_predict_runs_decoded_frames_through_image_artifacts_and_matches_the_tensor_artifact(model_dir, tiny_loaded):
    from vitship.bench.predict import IN_ARTIFACT, PredictOptions, predict
    from vitship.exporters.base import HOLD_BACK_EVERY
    from vitship.models.judgement import FRAME_TOLERANCES

    held_back = sample_images()[HOLD_BACK_EVERY - 1::HOLD_BACK_EVERY][:3]
    options = PredictOptions(artifacts=("onnx-image-fp32", "openvino-image-fp32", "onnx-fp32"))
    result = predict(model_dir, held_back, options, loaded=tiny_loaded)
    rows = {(r.image, r.artifact): r for r in result.rows}
    for photo in held_back:
        tensor = rows[(str(photo), "onnx-fp32")]
        for artifact in ("onnx-image-fp32", "openvino-image-fp32"):
            frame = rows[(str(photo), artifact)]
            assert frame.preprocessing == IN_ARTIFACT and tensor.preprocessing != IN_ARTIFACT
            assert abs(frame.fake_probability - tensor.fake_probability) <= FRAME_TOLERANCES["fp32"].max_prob, (photo, artifact)


def test_predict_on_hostile_files_gives_a_correct_result_or_a_one_line_reason(model_dir, tmp_path, vitship_main):
    import json

    files = hostile_files(tmp_path)
    code, out, err = vitship_main("predict", *map(str, files), "--artifact", "onnx-image-fp32", "--artifacts",
                                  str(model_dir.parent), "--arch", "tiny", "--json", str(tmp_path / "out.json"))
    assert "Traceback" not in out + err and code == 1  # the strip's aspect ratio is refused by the artifact: an error row
    result = json.loads((tmp_path / "out.json").read_text())
    unreadable = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in result["unreadable"]}
    assert set(unreadable) == {"long-strip.png", "huge.png"}
    assert "aspect ratio is too extreme" in unreadable["long-strip.png"] and "decompression bomb" in unreadable["huge.png"]
    rows = {(row["image"].rsplit("/", 1)[-1], row["artifact"]): row for row in result["rows"]}
    for name in ("gray.png", "rgba.png", "sixteen.png"):  # decoded to 8-bit RGB as load_image does, then correct
        assert rows[(name, "onnx-image-fp32")]["status"] == "ok" and rows[(name, "onnx-image-fp32")]["agrees"]
    strip = rows[("strip.png", "onnx-image-fp32")]
    assert strip["status"] == "error" and "aspect ratio over 16" in strip["reason"] and "\n" not in strip["reason"]
    assert rows[("strip.png", "torch-fp32")]["status"] == "ok"


def test_eval_scores_image_artifacts_on_the_decoded_photos(model_dir, tiny_loaded, tmp_path):
    import shutil

    from vitship.bench.accuracy import evaluate

    for index, photo in enumerate(sample_images()[:6]):
        folder = tmp_path / ("fake" if index % 2 else "real")
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    report = evaluate(model_dir, tmp_path, tiny_loaded)
    rows = {r.artifact: r for r in report.rows}
    for artifact in FRAME_ARTIFACTS:
        row = rows[artifact]
        assert str(row.status) == "ok" and row.session["preprocessing"] == "in the artifact" and row.n_images == 6
        assert row.agreement == 1.0
        np.testing.assert_allclose(row.probabilities, rows["onnx-fp32"].probabilities, atol=2e-3)
    assert "preprocessing" not in rows["onnx-fp32"].session


def test_bench_times_image_artifacts_per_1920x1080_frame(model_dir, tiny_loaded):
    """The sweep plans batch 1 only; the row (run here, in-process, as its worker runs it) times run_frames on a frame."""
    from vitship.bench.latency.sweep import BenchConfig, plan_sweep
    from vitship.bench.latency.timing import TimingOptions
    from vitship.bench.latency.worker import run_job

    config = BenchConfig(batches=(1, 8), artifacts=("onnx-image-fp32",), targets=("onnxruntime:cpu",),
                         timing=TimingOptions(min_time_s=0.2, warmup_s=0.1, min_iterations=3))
    plan = plan_sweep(manifest_artifacts(model_dir), model_dir, tiny_loaded.spec.to_dict(), config)
    (job,) = plan.jobs
    (batched,) = plan.unavailable
    assert job.batch == 1 and batched.batch == 8 and "one frame per call" in batched.reason
    result = run_job(job)
    assert result["session"]["bench_input"] == "frame 1920x1080 uint8"
    assert result["stats"]["p50_ms"] > 0 and result["stats"]["iterations"] >= 3


def test_compat_check_feeds_image_artifacts_their_frames(model_dir, tiny_photos, tmp_path):
    import sys
    from pathlib import Path

    from vitship.bench import compat
    from vitship.runtimes.frames import tensor_frames

    items = [item for item in compat.compat_items(model_dir) if item["artifact"] in ("onnx-image-fp32", "openvino-image-fp32")]
    assert {item["runtime"] for item in items} == {"onnxruntime", "openvino"} and all(item["frames"] for item in items)
    frames = tensor_frames(tiny_photos[:2], {"mean": [0.5] * 3, "std": [0.5] * 3, "rescale_factor": 1 / 255})
    results = compat.run_items(Path(sys.executable), items, tiny_photos[:2], tmp_path / "run", frames)
    assert not results.failures, results.failures
    for item in items:  # each image artifact ran on the 2 frames
        assert np.load(tmp_path / "run" / f"{item['key']}.logits.npy").shape[0] == 2
