"""The shipping decision per device family (bench/report/decide.py) on handmade manifest, parity, bench and eval rows."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import parity_metrics
from vitship.bench.accuracy import AccuracyResult, EvalReport
from vitship.bench.latency.results import BenchReport
from vitship.bench.latency.timing import BenchRow, LatencyStats
from vitship.bench.parity.results import ParityReport, ParityResult
from vitship.bench.report.cells import FamilyDecision, ReportRow
from vitship.bench.report.decide import DecisionOptions
from vitship.bench.report.decide import decide as decide_rows
from vitship.bench.report.families import FAMILIES
from vitship.bench.report.host import Host
from vitship.bench.report.sources import ManifestData, Source, Sources, build_rows
from vitship.exporters.base import Artifact
from vitship.exporters.coreml_apple import AppleDetails, NeuralEngine
from vitship.exporters.details import ArtifactDetails
from vitship.models.status import Status

WEIGHTS = {"source": "seeded:0", "kind": "seeded", "sha256": "ab" * 32, "trained": False}
X86 = {"hostname": "linux-box", "os": "Linux 6.8", "cpu": {"arch": "x86_64", "model": "Intel(R) Xeon(R) Gold 6430"}, "key": "x"}
MAC = {"hostname": "mac", "os": "Darwin 24.1", "cpu": {"arch": "arm64", "model": "Apple M3"}, "key": "m"}
ANE = AppleDetails(NeuralEngine.ELIGIBLE, "", "image", [1], "iOS17", "fp16", [])


def artifact(aid: str, size_mb: float, apple: AppleDetails | None = None) -> Artifact:
    fmt, precision = aid.split("-")[0], aid.rsplit("-", 1)[-1]
    return Artifact(aid, fmt, precision, f"{aid}/model", size_bytes=int(size_mb * 1e6), weights=WEIGHTS,
                    details=ArtifactDetails(apple=apple))


def parity_row(aid: str, target: str, status: str = "pass", reason: str = "", cosine: float = 0.9999) -> ParityResult:
    fmt, precision = aid.split("-")[0], aid.rsplit("-", 1)[-1]
    metrics = parity_metrics(cosine, 1e-6, 1e-4) if status in ("pass", "fail") else None
    return ParityResult(aid, target, fmt, precision, status=Status(status), reason=reason, metrics=metrics)


def bench_row(aid: str, target: str, p50_ms: float | None, variant: str = "", reason: str = "") -> BenchRow:
    if p50_ms is None:
        return BenchRow(aid, target, 1, variant, status=Status.UNAVAILABLE, reason=reason or "not here")
    stats = LatencyStats.from_samples([int(p50_ms * 1e6)] * 7, batch=1)
    knobs = {"torch_variant": "eager", "torch_dtype": "fp32"} if aid == "torch-fp32" else {}
    return BenchRow(aid, target, 1, variant or ("eager" if aid == "torch-fp32" else ""), knobs=knobs, stats=stats)


def eval_report(rows: list[dict], env: dict) -> EvalReport:
    return EvalReport(env, WEIGHTS, 0.5, {"source": "data/", "n_images": 100}, [], [],
                      rows=[AccuracyResult.from_dict(r) for r in rows])


def rows_for(artifacts, parity, bench, env=X86, eval_rows=None, machine: str = "") -> list[ReportRow]:
    """Report rows built by the report's own source joiner from the producers' own classes."""
    from vitship.bench.latency.results import apply_speedups

    timed = BenchReport("m", env, WEIGHTS, {}, rows=[bench_row("torch-fp32", "torch:cpu", 250.0), *bench])
    apply_speedups(timed.rows)
    sources = Sources(
        manifest=Source("manifest.json", Status.OK, ManifestData(WEIGHTS, artifacts)),
        parity=Source("parity.json", Status.OK, ParityReport(env, WEIGHTS, {}, {}, {}, {}, rows=parity)),
        bench=Source("bench.json", Status.OK, timed),
        eval=Source("eval.json", Status.OK, eval_report(eval_rows, env)) if eval_rows else Source(),
    )
    rows = build_rows(sources, env)
    for row in rows:
        row.machine = machine
    return rows


def decide(rows: list[ReportRow], environments: dict[str, dict], options: DecisionOptions = DecisionOptions()):
    """decide.decide with each machine's environment record read as the report reads it."""
    return decide_rows(rows, {label: Host.of(env) for label, env in environments.items()}, options)


def family(decisions: list[FamilyDecision], slug: str) -> FamilyDecision:
    return next(d for d in decisions if d.slug == slug)


def test_every_family_gets_a_block_in_design_order():
    decisions = decide([], {"": X86})
    assert [d.title for d in decisions] == ["iOS / Apple", "Intel CPU", "Intel GPU / NPU", "NVIDIA GPU", "Android / ARM CPU"]
    assert [d.slug for d in decisions] == [f.slug for f in FAMILIES]


@pytest.mark.parametrize("int8_ms, expected", [(120.0, "onnx-fp32"), (100.0, "onnx-fp32"), (60.0, "onnx-int8")])
def test_an_int8_that_is_not_faster_than_its_fp32_is_never_recommended(int8_ms, expected):
    rows = rows_for([artifact("onnx-fp32", 87), artifact("onnx-int8", 23)],
                    [parity_row("onnx-fp32", "onnxruntime:cpu"), parity_row("onnx-int8", "onnxruntime:cpu", cosine=0.997)],
                    [bench_row("onnx-fp32", "onnxruntime:cpu", 100.0), bench_row("onnx-int8", "onnxruntime:cpu", int8_ms)])
    intel = family(decide(rows, {"": X86}), "intel-cpu")
    assert intel.pick.artifact == expected
    avoided = {a.artifact: a.reason for a in intel.avoid}
    if expected == "onnx-fp32":
        assert "int8 not faster than its fp32" in avoided["onnx-int8"]
        assert intel.runner_up is None  # an avoided artifact is not the runner-up either
    else:
        assert "onnx-int8" not in avoided and intel.runner_up.artifact == "onnx-fp32"
        assert "2.50x" in intel.runner_up_sentence or "1.67x" in intel.runner_up_sentence


def test_the_pick_sentence_has_latency_speedup_size_and_parity():
    rows = rows_for([artifact("openvino-int8", 23.2), artifact("openvino-fp16", 43.7)],
                    [parity_row("openvino-int8", "openvino:CPU", cosine=0.9957), parity_row("openvino-fp16", "openvino:CPU")],
                    [bench_row("openvino-int8", "openvino:CPU", 57.5), bench_row("openvino-fp16", "openvino:CPU", 89.3)])
    intel = family(decide(rows, {"": X86}), "intel-cpu")
    sentence = intel.sentence
    assert sentence.startswith("Ship openvino-int8 on openvino:CPU")
    for text in ("57.5 ms at batch 1", "4.35x faster than PyTorch eager", "23.2 MB", "parity pass on openvino:CPU",
                 "min feature cosine 0.9957"):
        assert text in sentence, text
    assert intel.pick.speedup == pytest.approx(250 / 57.5)
    assert "openvino-fp16 on openvino:CPU" in intel.runner_up_sentence


def test_a_reference_executor_timing_never_ranks():
    """coreml:reference says coreml-int8 is 8x faster: the iOS pick ignores it (and says latency was not measured)."""
    artifacts = [artifact("coreml-fp16", 43.7, ANE), artifact("coreml-int8", 22.2, dataclasses.replace(ANE, compute_precision="fp16"))]
    parity = [parity_row("coreml-fp16", "coreml:reference"), parity_row("coreml-int8", "coreml:reference", cosine=0.9997)]
    bench = [bench_row("coreml-fp16", "coreml:reference", 480.0), bench_row("coreml-int8", "coreml:reference", 60.0)]
    ios = family(decide(rows_for(artifacts, parity, bench), {"": X86}), "ios")
    assert ios.pick.artifact == "coreml-fp16" and ios.pick.p50_ms is None
    assert ios.runner_up.artifact == "coreml-int8" and ios.runner_up.p50_ms is None
    assert "no rows from an Apple device" in ios.basis and "latency not measured on an Apple device" in ios.sentence
    assert "480" not in ios.sentence and "60" not in ios.sentence
    assert "vitship report --merge" in ios.merge_command and "coreml:cpu_and_ne" in ios.verify_command
    for decision in decide(rows_for(artifacts, parity, bench), {"": X86}):  # no family ranks by it
        assert not decision.pick or decision.pick.target != "coreml:reference" or decision.pick.p50_ms is None


def test_an_fp32_coreml_artifact_is_never_the_ios_pick_even_when_fastest_on_an_apple_device():
    artifacts = [artifact("coreml-fp32", 87.2), artifact("coreml-fp16", 43.7, ANE)]  # fp32 from an older manifest: no details
    parity = [parity_row("coreml-fp32", "coreml:reference", cosine=1.0), parity_row("coreml-fp16", "coreml:reference")]
    here = rows_for(artifacts, parity, [], machine="linux")
    mac = rows_for(artifacts, [], [bench_row("coreml-fp32", "coreml:all", 3.0), bench_row("coreml-fp16", "coreml:all", 4.0)],
                   env=MAC, machine="mac")
    ios = family(decide(here + mac, {"linux": X86, "mac": MAC}), "ios")
    assert ios.pick.artifact == "coreml-fp16"
    assert ios.pick.target == "coreml:all" and ios.pick.p50_ms == pytest.approx(4.0)
    assert ios.basis == "latency measured on the device"
    assert "parity pass on coreml:reference" in ios.sentence  # the evidence this machine gave
    assert "Neural Engine" in {a.artifact: a.reason for a in ios.avoid}["coreml-fp32"]
    assert not any("Apple device" in what for what in ios.not_verified)  # verified by the merged rows
    alone = family(decide(here, {"linux": X86}), "ios")  # without the Mac: fp32's perfect parity does not make it the pick
    assert alone.pick.artifact == "coreml-fp16"


def test_ios_ranks_neural_engine_eligibility_and_handles_older_manifests():
    artifacts = [artifact("coreml-fp16", 43.7),  # an older manifest: no details.apple
                 artifact("coreml-int8", 22.2, dataclasses.replace(ANE, input="tensor", batch_shapes=[1, 2, 4, 8]))]
    parity = [parity_row("coreml-fp16", "coreml:reference"), parity_row("coreml-int8", "coreml:reference", cosine=0.9997)]
    ios = family(decide(rows_for(artifacts, parity, []), {"": X86}), "ios")
    assert ios.pick.artifact == "coreml-int8"  # eligible beats "not recorded"
    assert "Neural Engine eligible (fp16, tensor input, batches 1, 2, 4, 8)" in ios.sentence and "iOS 17+" in ios.sentence
    assert "not recorded (older manifest: re-export)" in ios.runner_up_sentence


def test_parity_failures_and_accuracy_losses_are_avoided_with_their_reason():
    artifacts = [artifact("openvino-fp16", 43.7), artifact("openvino-int8", 23.2), artifact("onnx-fp16", 43.6)]
    parity = [parity_row("openvino-fp16", "openvino:CPU"), parity_row("openvino-int8", "openvino:CPU", cosine=0.99),
              parity_row("onnx-fp16", "onnxruntime:cpu", "fail", "feature cosine 0.91 < 0.999")]
    bench = [bench_row("openvino-fp16", "openvino:CPU", 90.0), bench_row("openvino-int8", "openvino:CPU", 57.0),
             bench_row("onnx-fp16", "onnxruntime:cpu", 40.0)]
    evals = [{"artifact": a, "target": t, "status": "ok", "metrics": {"accuracy": acc}, "deltas": {"accuracy": (acc - 0.9) * 100}}
             for a, t, acc in (("openvino-fp16", "openvino:CPU", 0.9), ("openvino-int8", "openvino:CPU", 0.88),
                               ("onnx-fp16", "onnxruntime:cpu", 0.9))]
    rows = rows_for(artifacts, parity, bench, eval_rows=evals)
    judged = family(decide(rows, {"": X86}, DecisionOptions(judge_accuracy=True)), "intel-cpu")
    avoided = {a.artifact: a.reason for a in judged.avoid}
    assert judged.pick.artifact == "openvino-fp16"
    assert avoided["onnx-fp16"] == "parity fail on onnxruntime:cpu: feature cosine 0.91 < 0.999"
    assert avoided["openvino-int8"].startswith("loses 2.00 accuracy points")
    assert "accuracy +0.00 points against PyTorch" in judged.sentence
    untrained = family(decide(rows, {"": X86}), "intel-cpu")  # accuracy not judged: the faster int8 wins
    assert untrained.pick.artifact == "openvino-int8"


def test_unavailable_families_say_what_to_try_first_and_how_to_verify_and_merge():
    artifacts = [artifact("openvino-fp16", 43.7), artifact("openvino-int8", 23.2), artifact("onnx-fp16", 43.6)]
    parity = [parity_row("openvino-fp16", "openvino:GPU", "unavailable", "no OpenVINO GPU device here"),
              parity_row("openvino-int8", "openvino:NPU", "unavailable", "no OpenVINO NPU device here")]
    bench = [bench_row("onnx-fp16", "onnxruntime:cuda", None, reason="no CUDAExecutionProvider")]
    decisions = decide(rows_for(artifacts, parity, bench), {"": X86})
    gpu = family(decisions, "intel-gpu-npu")
    assert gpu.pick is None and "openvino-fp16" in gpu.sentence and "openvino-int8" in gpu.sentence
    whats = " | ".join(gpu.not_verified)
    assert "openvino:GPU (no OpenVINO GPU device here): try openvino-fp16 first" in whats
    assert "openvino:NPU (no OpenVINO NPU device here): try openvino-int8 first" in whats
    assert "vitship bench --target openvino:GPU --artifact openvino-fp16,openvino-int8" in gpu.verify_command
    assert gpu.merge_command == "`vitship report --merge reports/latest/report.json DEVICE/report.json`"
    nvidia = family(decisions, "nvidia")
    assert nvidia.pick is None and "onnxruntime:tensorrt" in nvidia.verify_command


def test_arm_ranks_by_x86_xnnpack_only_as_a_labelled_proxy_and_a_device_row_wins():
    artifacts = [artifact("executorch-fp32", 87), artifact("executorch-int8", 23)]
    parity = [parity_row("executorch-fp32", "executorch:cpu"), parity_row("executorch-int8", "executorch:cpu", cosine=0.995)]
    bench = [bench_row("executorch-fp32", "executorch:cpu", 180.0), bench_row("executorch-int8", "executorch:cpu", 100.0)]
    android = family(decide(rows_for(artifacts, parity, bench), {"": X86}), "android")
    assert android.pick.artifact == "executorch-int8" and android.pick.role == "proxy"
    assert "proxy" in android.basis and "not on the device" in android.sentence
    assert any("ARM device" in what for what in android.not_verified)
    ios = family(decide(rows_for(artifacts, parity, bench), {"": X86}), "ios")  # x86 XNNPACK is parity evidence for iOS
    assert ios.pick.p50_ms is None
    arm = {**X86, "cpu": {"arch": "aarch64", "model": "Cortex-A76"}}
    device = rows_for(artifacts, parity, [bench_row("executorch-fp32", "executorch:cpu", 300.0),
                                          bench_row("executorch-int8", "executorch:cpu", 310.0)], env=arm)
    on_arm = family(decide(device, {"": arm}), "android")
    assert on_arm.pick.artifact == "executorch-fp32" and on_arm.basis == "latency measured on the device"
