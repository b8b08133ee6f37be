"""vitship.bench.speed on the tiny ViT: variants exported through the pipeline, checked, timed together, tabled."""

from __future__ import annotations

from vitship.bench import speed
from vitship.bench.latency import roofline


def table_rows(out: str, start: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line.startswith(start)]


def test_the_side_by_side_exports_checks_and_times_each_variant(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(roofline, "SECONDS_PER_SHAPE", 0.02)
    argv = ["--arch", "tiny", "--rounds", "1", "--calls", "1", "--out", str(tmp_path), "--precision", "fp32",
            "--format", "onnx,openvino", "--only", "default,f32 inference"]
    assert speed.main(argv) == 0
    out = capsys.readouterr().out
    assert "onnx, openvino timed together" in out
    (onnx,) = table_rows(out, "| contrib ops")
    assert onnx[1] == "fp32" and float(onnx[3]) <= float(onnx[2]) and onnx[4] == onnx[5] == "1.00x" and float(onnx[8]) < 1e-4
    assert float(onnx[6]) < roofline.model_gflop(speed.spec_for("tiny"))["total"]  # the class-token tail's FLOPs
    openvino = table_rows(out, "| class-token tail")
    assert [row[1] for row in openvino] == ["fp32 (ran bf16)", "fp32"]  # OpenVINO's CPU default is said in the row
    assert float(openvino[1][8]) < 1e-4 <= float(openvino[0][8])
    # the f32-inference variant opened the default's artifacts: nothing was exported twice
    assert sorted(p.name for p in (tmp_path / "seeded" / "openvino").iterdir()) == ["class-token-tail--default"]
