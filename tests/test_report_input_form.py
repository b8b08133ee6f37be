"""The report's input-form line (bench/report/input_form.py): image-input rows never rank, their sibling says which form."""

from __future__ import annotations

import dataclasses

from tests.test_decide import ANE, X86, artifact, bench_row, decide, family, parity_row, rows_for
from vitship.bench.report.markdown import decision_lines


def frame_artifact(aid: str, size_mb: float):
    return dataclasses.replace(artifact(aid, size_mb), format=aid.split("-")[0], input_spec={"input_type": "frame"})


def intel_rows(frame_status: str = "pass", frame_ms: float = 95.0):
    artifacts = [artifact("openvino-int8", 23), frame_artifact("openvino-image-int8", 23), artifact("onnx-int8", 24),
                 artifact("coreml-fp16", 44, ANE)]
    artifacts[3].input_spec = {"input_type": "image"}
    parity = [parity_row("openvino-int8", "openvino:CPU"), parity_row("onnx-int8", "onnxruntime:cpu"),
              parity_row("openvino-image-int8", "openvino:CPU", frame_status,
                         "feature cosine 0.9" if frame_status == "fail" else ""),
              parity_row("coreml-fp16", "coreml:reference")]
    bench = [bench_row("openvino-int8", "openvino:CPU", 60.0), bench_row("openvino-image-int8", "openvino:CPU", frame_ms),
             bench_row("onnx-int8", "onnxruntime:cpu", 80.0)]
    return rows_for(artifacts, parity, bench)


def test_the_image_sibling_never_ranks_and_the_block_says_to_ship_it_with_its_cost():
    intel = family(decide(intel_rows(frame_ms=40.0), {"": X86}), "intel-cpu")
    assert intel.pick.artifact == "openvino-int8"  # the frame row is faster here, but it times other work: it never ranks
    assert intel.input_form.startswith("Input form: ship openvino-image-int8")
    assert "40 ms per 1920x1080 frame on openvino:CPU, 20 ms less than openvino-int8" in intel.input_form
    assert "max probability error 0.0001 on decoded photos" in intel.input_form
    assert "Input form: ship openvino-image-int8" in "\n".join(decision_lines(intel))


def test_a_sibling_that_failed_end_to_end_keeps_the_tensor_and_ios_names_visions_center_crop():
    decisions = decide(intel_rows("fail"), {"": X86})
    intel = family(decisions, "intel-cpu")
    assert intel.input_form.startswith("Input form: the tensor (openvino-int8)") and "feature cosine 0.9" in intel.input_form
    assert "centerCrop" in family(decisions, "ios").input_form


def test_without_an_image_variant_the_block_says_how_to_export_one():
    rows = rows_for([artifact("onnx-int8", 24)], [parity_row("onnx-int8", "onnxruntime:cpu")],
                    [bench_row("onnx-int8", "onnxruntime:cpu", 80.0)])
    intel = family(decide(rows, {"": X86}), "intel-cpu")
    assert "vitship export --format onnx-image" in intel.input_form


def test_a_fixed_size_format_is_told_to_export_at_the_cameras_frame_size():
    rows = rows_for([artifact("litert-int8", 23)], [parity_row("litert-int8", "litert:cpu")],
                    [bench_row("litert-int8", "litert:cpu", 90.0)])
    android = family(decide(rows, {"": X86}), "android")
    assert "vitship export --format litert-image --precision fp32 --frame-size HEIGHTxWIDTH" in android.input_form
