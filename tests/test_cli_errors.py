"""Bad inputs, tried as a new user would, through the real entry point: one line, the right exit code, no traceback.

Exit 2 is a usage or input error (a bad option, a path that cannot be used, nothing readable, no runtime);
1 is a run that failed.
"""

from __future__ import annotations

import pytest

from vitship.models import sample_images


def assert_one_line_error(code: int, err: str, expected_code: int, *words: str) -> str:
    """The error is one line on stderr with ``words`` in it; no traceback and no "internal error"."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def onnx_artifacts(tiny_exports):
    """artifacts/ with the tiny ViT's onnx-fp32 (the shared session export)."""
    return tiny_exports([("onnx", "fp32")])


def test_export_out_under_a_regular_file_names_the_path(vitship_main, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    out_dir = tmp_path / "a-file" / "out"
    code, out, err = vitship_main("export", "--arch", "tiny", "-f", "onnx", "-p", "fp32", "--out", str(out_dir))
    assert_one_line_error(code, err, 2, str(tmp_path / "a-file"))
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_predict_with_only_unreadable_images_is_one_line(vitship_main, onnx_artifacts, tmp_path):
    broken, missing = tmp_path / "broken.png", tmp_path / "missing.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code, out, err = vitship_main("predict", str(broken), str(missing), "--artifacts", str(onnx_artifacts))
    assert_one_line_error(code, err, 2, "could be read", "broken.png")


def test_eval_with_only_unreadable_images_is_one_line(vitship_main, onnx_artifacts, tmp_path):
    for label in ("real", "fake"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "x.png").write_bytes(b"not an image")
    code, out, err = vitship_main("eval", "--data", str(tmp_path / "data"), "--artifacts", str(onnx_artifacts))
    assert_one_line_error(code, err, 2, "could be read")


def test_eval_of_a_missing_folder_is_one_line(vitship_main, onnx_artifacts, tmp_path):
    code, out, err = vitship_main("eval", "--data", str(tmp_path / "nowhere"), "--artifacts", str(onnx_artifacts))
    assert_one_line_error(code, err, 2, "nowhere")


@pytest.mark.parametrize("target, words", [
    ("openvino:NPU", ("openvino:NPU", "not available")),  # a runtime that this machine lacks
    ("tensorrt:cuda", ("unknown target", "valid:")),  # a runtime that vitship does not know
])
def test_predict_on_a_missing_runtime_is_one_line(vitship_main, onnx_artifacts, target, words):
    photo = sample_images(limit=1)[0]
    code, out, err = vitship_main("predict", str(photo), "--artifacts", str(onnx_artifacts), "--target", target)
    assert_one_line_error(code, err, 2, *words)


def test_a_missing_weights_file_is_one_line(vitship_main, tmp_path):
    code, out, err = vitship_main("doctor", "--weights", str(tmp_path / "missing.pt"))
    assert_one_line_error(code, err, 2, "missing.pt")


def test_usage_errors_are_clicks_one_line_message_with_exit_2(vitship_main):
    code, out, err = vitship_main("bench", "--threads", "0")
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and "--threads" in errors[0], err
    assert "Traceback" not in err and "internal error" not in err
