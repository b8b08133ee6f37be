"""vitship.bench.latency.roofline: model FLOPs from the spec (checked by torch's counter), peaks, per-row column."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vitship.bench.latency import roofline
from vitship.bench.latency.results import BenchReport, markdown_table, to_csv, to_markdown
from vitship.bench.latency.timing import BenchRow, LatencyStats
from vitship.models import DEFAULT_SPEC, load_weights

PEAKS = {"device": "cpu", "seconds": 1.0,
         "fp32": {"precision": "fp32", "gflops": 200.0, "source": "torch mm", "shape": [2048, 2048, 2048], "threads": 2},
         "bf16": {"precision": "bf16", "gflops": 400.0, "source": "torch mm", "shape": [2048, 2048, 2048], "threads": 2},
         "int8": {"precision": "int8", "gflops": 800.0, "source": "onnxruntime MatMulInteger", "shape": [577, 384, 1536],
                  "threads": 2}}


def counted_gflop(loaded, math_attention: bool) -> float:
    """torch.utils.flop_counter's GFLOP for one image (the math kernel makes attention visible as bmm)."""
    x = torch.zeros(1, *loaded.spec.input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if math_attention:
            with sdpa_kernel(SDPBackend.MATH):
                loaded.model(x)
        else:
            loaded.model(x)
    return counter.get_total_flops() / 1e9


@pytest.fixture(scope="module")
def real_loaded():
    return load_weights("seeded", DEFAULT_SPEC)


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_spec_flops_match_torchs_counter(which, tiny_loaded, real_loaded):
    loaded = tiny_loaded if which == "tiny" else real_loaded
    parts = roofline.model_gflop(loaded.spec)
    # torch's counter misses the fused CPU attention kernel: that is the figure timm quotes (24.8 for ViT-S/16-384)
    assert counted_gflop(loaded, math_attention=False) == pytest.approx(parts["total"] - parts["attention"], rel=1e-6)
    assert counted_gflop(loaded, math_attention=True) == pytest.approx(parts["total"], rel=1e-6)


def test_vit_small_384_is_31_gflop_with_attention():
    parts = roofline.model_gflop(DEFAULT_SPEC)
    assert parts["total"] == pytest.approx(30.98, abs=0.01) and parts["attention"] == pytest.approx(6.14, abs=0.01)


def row(artifact: str, target: str, precision: str, p50_ms: float, batch: int = 1) -> BenchRow:
    stats = LatencyStats.from_samples([int(p50_ms * 1e6)] * 5, batch=batch)
    return BenchRow(artifact, target, batch, "", stats=stats, session={"precision": precision})


@pytest.mark.parametrize(("artifact", "target", "ran", "judged"), [
    ("onnx-int8", "onnxruntime:cpu", "int8", "int8"),
    ("openvino-int8", "openvino:CPU", "bf16", "int8"),  # its GEMMs are int8; the rest runs at the hint
    ("openvino-fp16", "openvino:CPU", "bf16", "bf16"),  # an fp16 IR runs bf16 on this CPU
    ("openvino-fp32", "openvino:CPU", "fp32", "fp32"),
    ("onnx-fp16", "onnxruntime:cpu", "fp16", "fp32"),  # onnxruntime CPU casts fp16 graphs to fp32
    ("torch-fp32", "torch:cpu", "fp32", "fp32"),
])
def test_each_row_is_judged_by_the_precision_it_ran_at(artifact, target, ran, judged):
    measured = row(artifact, target, ran, p50_ms=100.0, batch=2)
    result = roofline.row_roofline(measured, 30.0, PEAKS)
    assert result["peak_precision"] == judged and result["gflops"] == pytest.approx(600.0)
    assert result["percent_of_peak"] == pytest.approx(100 * 600.0 / PEAKS[judged]["gflops"], abs=0.1)
    assert result["peak_source"] == PEAKS[judged]["source"]
    assert set(result) == {"gflop_per_image", "gflops", "peak_gflops", "peak_precision", "percent_of_peak", "peak_source"}


def test_gpu_rows_and_rows_without_latency():
    gpu = roofline.row_roofline(row("onnx-fp32", "onnxruntime:cuda", "fp32", 5.0), 30.0, PEAKS)
    assert gpu["gflops"] == pytest.approx(6000.0) and gpu["percent_of_peak"] is None and gpu["peak_gflops"] is None
    assert roofline.row_roofline(BenchRow("onnx-fp32", "onnxruntime:cpu", None, ""), 30.0, PEAKS) is None


def test_measured_peaks_name_their_runtime(tiny_loaded, monkeypatch):
    monkeypatch.setattr(roofline, "SECONDS_PER_SHAPE", 0.02)
    peaks = roofline.measure_peaks(tiny_loaded.spec, threads=1)
    for precision in ("fp32", "bf16", "int8"):
        assert peaks[precision]["gflops"] > 0 and peaks[precision]["threads"] == 1
        assert peaks[precision]["source"].split()[0] in ("torch", "onnxruntime")
    assert torch.get_num_threads() >= 1 and peaks["seconds"] > 0


def test_report_shows_the_column_and_how_peaks_were_measured():
    rows = [row("onnx-int8", "onnxruntime:cpu", "int8", 50.0), row("onnx-fp32", "onnxruntime:cpu", "fp32", 170.0)]
    roofline.apply_roofline(rows, DEFAULT_SPEC, PEAKS)
    report = BenchReport(model="m", environment={}, weights={}, config={}, rows=rows, peaks=PEAKS)
    assert "GFLOP/s (% of peak)" in markdown_table(rows)
    assert "| 620 (77% int8) |" in markdown_table(rows) and "| 182 (91% fp32) |" in markdown_table(rows)
    assert "onnxruntime MatMulInteger" in to_markdown(report)
    assert "percent_of_peak" in to_csv(report).splitlines()[0]
    again = BenchReport.from_dict(report.to_dict())
    assert again.peaks == PEAKS and again.rows[0].roofline == rows[0].roofline


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_a_class_token_tail_counts_the_flops_the_artifact_computes(which, tiny_loaded, real_loaded):
    """The form's explicit attention is visible to torch's counter: spec FLOPs == counted FLOPs, tail included."""
    from vitship.models.export_form import ExportForm

    loaded = tiny_loaded if which == "tiny" else real_loaded
    form = loaded._replace(model=loaded.model.with_form(ExportForm(attention="explicit", class_token_tail=True)))
    parts = roofline.model_gflop(loaded.spec, class_token_tail=True)
    assert counted_gflop(form, math_attention=False) == pytest.approx(parts["total"], rel=1e-6)
    full = roofline.model_gflop(loaded.spec)
    assert parts["linear"] < full["linear"] and parts["attention"] < full["attention"]


def test_rows_are_judged_by_the_flops_of_their_artifacts_form():
    from vitship.exporters.base import Artifact
    from vitship.exporters.details import OnnxDetails
    from vitship.models.export_form import ExportForm

    tail = Artifact("onnx-fp32", "onnx", "fp32", "onnx-fp32/model.onnx", details=OnnxDetails(export_form=ExportForm(class_token_tail=True)))
    rows = [row("onnx-fp32", "onnxruntime:cpu", "fp32", 100.0), row("onnx-int8", "onnxruntime:cpu", "int8", 100.0)]
    roofline.apply_roofline(rows, DEFAULT_SPEC, PEAKS, [tail, Artifact("onnx-int8", "onnx", "int8", "onnx-int8/model.onnx")])
    assert rows[0].roofline["gflop_per_image"] == pytest.approx(28.94, abs=0.01)  # ViT-S/16-384: 6.6% fewer
    assert rows[1].roofline["gflop_per_image"] == pytest.approx(30.98, abs=0.01)  # no form recorded: timm's
    assert roofline.model_gflop(DEFAULT_SPEC, class_token_tail=True)["total"] == pytest.approx(28.94, abs=0.01)
