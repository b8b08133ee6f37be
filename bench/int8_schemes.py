"""The int8 tables of docs/MEASUREMENTS.md, remade on any machine: ONNX schemes, OpenVINO per-layer time, verdicts.

    python -m vitship.bench.int8_schemes onnx ARTIFACTS/MODEL      # needs onnx-fp32 in the manifest
    python -m vitship.bench.int8_schemes openvino ARTIFACTS/MODEL  # needs openvino-int8
    python -m vitship.bench.int8_schemes verdicts ARTIFACTS/MODEL  # after vitship export and vitship parity

``verdicts`` puts each int8's export verdict (its int8 record: every ladder step, judged on the gate's photos)
beside what ``vitship parity`` measured on the same artifact (photos; random tensors against the noise floor).

``onnx`` quantizes the exported onnx-fp32 with each scheme, opens every variant in one process (onnxruntime
CPU, physical-core threads) and times them round-robin at batch 1, so a busy machine slows all alike;
accuracy is the feature cosine and probability error against onnx-fp32 on the bundled photos.
``openvino`` compiles openvino-int8 at batch 1 with PERF_COUNT and sums OpenVINO's per-layer counters by
part (linear layers, attention, the rest), each against the measured int8 GEMM peak (bench.latency.roofline).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from vitship.models.status import Status

ROUNDS, CALLS = 3, 10
SCHEMES = {  # name -> quantize_* keyword arguments (see exporters.int8.onnx_recipe for the shipped two)
    "dynamic per-channel (default)": dict(kind="dynamic", per_channel=True),
    "dynamic per-tensor": dict(kind="dynamic", per_channel=False),
    # the attention's q·k and ·v MatMuls in int8 too (both inputs quantized per call); needs an onnx-fp32 exported
    # with --onnx-contrib-ops none, whose attention is plain MatMuls (issue 24: float attention's share of int8 time)
    "dynamic per-channel, attention MatMuls too": dict(kind="dynamic", per_channel=True, const_b_only=False),
    "static QOperator u8s8": dict(kind="static", quant_format="QOperator", activation_type="QUInt8"),
    "static QDQ u8s8": dict(kind="static", quant_format="QDQ", activation_type="QUInt8"),
    "static QDQ s8s8 (--int8-mode static)": dict(kind="static", quant_format="QDQ", activation_type="QInt8"),
}


def _quantize(source: Path, target: Path, scheme: dict, photos: np.ndarray, head: list[str]) -> None:
    from onnxruntime import quantization as q

    if scheme["kind"] == "dynamic":
        q.quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul", "Gemm"], per_channel=scheme["per_channel"],
                           weight_type=q.QuantType.QInt8, nodes_to_exclude=head,
                           extra_options={"MatMulConstBOnly": scheme.get("const_b_only", True)})
        return
    batches = iter([{"pixel_values": photos[i:i + 1]} for i in range(len(photos))])
    reader = type("Reader", (q.CalibrationDataReader,), {"get_next": lambda self: next(batches, None)})()
    q.quantize_static(str(source), str(target), reader, quant_format=getattr(q.QuantFormat, scheme["quant_format"]),
                      per_channel=True, activation_type=getattr(q.QuantType, scheme["activation_type"]),
                      weight_type=q.QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm", "Conv"], nodes_to_exclude=head,
                      extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True})


def onnx_table(model_dir: Path) -> str:
    import onnx
    import onnxruntime as ort

    from vitship.exporters.base import verify_artifact
    from vitship.exporters.manifest import Manifest
    from vitship.models import FEATURES_NAME, LOGITS_NAME, ModelSpec, preprocess, sample_images
    from vitship.models.metrics import output_errors
    from vitship.runtimes import physical_cores

    manifest = Manifest.read(model_dir)
    source = verify_artifact(model_dir, manifest.artifacts["onnx-fp32"])
    spec = ModelSpec.from_dict(manifest.spec)
    photos = preprocess(sample_images(), spec)
    head = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if "logits" in n.output]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = physical_cores(), 1
    with tempfile.TemporaryDirectory() as work:
        files = {"fp32 (onnx-fp32)": source}
        for name, scheme in SCHEMES.items():
            files[name] = Path(work) / f"{len(files)}.onnx"
            _quantize(source, files[name], scheme, photos, head)
        sessions = {n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for n, p in files.items()}
        outputs = {n: [s.run(None, {"pixel_values": photos[i:i + 1]}) for i in range(len(photos))] for n, s in sessions.items()}
        times = defaultdict(list)
        for _ in range(ROUNDS):  # round-robin: machine noise lands on every scheme alike
            for name, session in sessions.items():
                for _ in range(CALLS):
                    start = time.perf_counter_ns()
                    session.run(None, {"pixel_values": photos[:1]})
                    times[name].append(time.perf_counter_ns() - start)
    base = np.median(times["fp32 (onnx-fp32)"])
    stacked = {name: {key: np.concatenate([o[i] for o in runs]) for i, key in enumerate((LOGITS_NAME, FEATURES_NAME))}
               for name, runs in outputs.items()}  # onnx outputs are (logits, features) by contract
    lines = ["| scheme | p50 ms | vs onnx-fp32 | min feature cosine | max prob error |", "|---|---|---|---|---|"]
    for name in files:
        errors = output_errors(stacked[name], stacked["fp32 (onnx-fp32)"], spec)  # head-kind probabilities
        p50 = np.median(times[name])
        lines.append(f"| {name} | {p50 / 1e6:.1f} | {p50 / base:.2f}x | {errors.min_cosine:.4f} | {errors.max_prob_err:.4f} |")
    return "\n".join(lines)


PARTS = {"FullyConnectedQuantizedLegacy": "linear", "FullyConnected": "linear", "Subgraph": "attention + fused ops",
         "Convolution": "patch embedding"}


def openvino_table(model_dir: Path) -> str:
    import openvino as ov

    from vitship.bench.latency.roofline import measure_peaks, model_gflop
    from vitship.exporters.base import verify_artifact
    from vitship.exporters.manifest import Manifest
    from vitship.models import ModelSpec
    from vitship.runtimes import physical_cores

    manifest = Manifest.read(model_dir)
    spec, threads = ModelSpec.from_dict(manifest.spec), physical_cores()
    model = ov.Core().read_model(str(verify_artifact(model_dir, manifest.artifacts["openvino-int8"])))
    model.reshape({model.inputs[0].get_any_name(): [1, *spec.input_shape]})
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                     "PERF_COUNT": True})
    request, pixels = compiled.create_infer_request(), np.zeros((1, *spec.input_shape), np.float32)
    for _ in range(3):
        request.infer({0: pixels})
    spent, kernels = defaultdict(float), defaultdict(set)
    for _ in range(CALLS):
        request.infer({0: pixels})
        for layer in request.profiling_info:
            if layer.status == layer.Status.EXECUTED:
                part = PARTS.get(layer.node_type, "other (norms, reorders, transposes)")
                spent[part] += layer.real_time.total_seconds() * 1e3 / CALLS
                kernels[part].add(layer.exec_type)
    gflop, peak = model_gflop(spec), measure_peaks(spec, threads)["int8"]["gflops"]
    work = {"linear": gflop["linear"] + gflop["head"], "attention + fused ops": gflop["attention"],
            "patch embedding": gflop["patch_embed"]}
    lines = [f"int8 GEMM peak {peak:.0f} GOP/s ({threads} threads); total {sum(spent.values()):.1f} ms per image",
             "", "| part | ms | GOP | GOP/s | % of int8 peak | floor at peak ms | kernels |", "|---|---|---|---|---|---|---|"]
    for part, ms in sorted(spent.items(), key=lambda kv: -kv[1]):
        ops = work.get(part)
        rate = f"{ops / ms * 1e3:.0f} | {100 * ops / ms * 1e3 / peak:.0f}% | {ops / peak * 1e3:.1f}" if ops else "- | - | -"
        lines.append(f"| {part} | {ms:.1f} | {ops or 0:.2f} | {rate} | {', '.join(sorted(kernels[part]))} |")
    return "\n".join(lines)


def verdicts_table(model_dir: Path) -> str:
    """Per int8 artifact and parity target: the export gate's steps and verdict, and parity's figures and status."""
    from vitship.bench.parity.results import PARITY_NAME, read_parity
    from vitship.exporters.int8.record import Int8Record
    from vitship.exporters.manifest import Manifest

    manifest = Manifest.read(model_dir)
    rows = read_parity(model_dir / PARITY_NAME).rows if (model_dir / PARITY_NAME).is_file() else []
    lines = ["| artifact | export gate: each step (photos: min cosine, max prob error) | verdict | parity target | "
             "photos: min cosine | photos: max prob error | random: min cosine | parity |", "|---|---|---|---|---|---|---|---|"]
    for artifact in manifest.artifacts.values():
        record = Int8Record.of(artifact)
        if record is None:
            continue
        steps = "; ".join(f"{s.step} {s.why} ({s.photos}): {s.min_cosine:.4f}, {s.max_prob_error:.4f}"
                          + ("" if s.passed else f" {Status.FAIL}") for s in record.steps) or "-"
        for row in [r for r in rows if r.artifact == artifact.id and r.status.ran] or [None]:
            figures = ["-"] * 3
            if row is not None and row.metrics is not None:
                noise = row.noise_metrics
                figures = [f"{row.metrics.min_cosine:.4f}", f"{row.metrics.max_prob_err:.4f}",
                           f"{noise.min_cosine:.4f}" if noise else "-"]
            parity = row.status if row else Status.NOT_RUN
            lines.append(f"| {artifact.id} | {steps} | {record.verdict} | {row.target if row else '-'} | "
                         f"{' | '.join(figures)} | {parity} |")
    for aid, record in manifest.int8_rejected.items():
        lines.append(f"| {aid} | {record.rejected_reason()} | {record.verdict} | - | - | - | - | {Status.NOT_RUN} (not shipped) |")
    return "\n".join(lines)


TABLES = {"onnx": onnx_table, "openvino": openvino_table, "verdicts": verdicts_table}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in TABLES:
        sys.exit(f"usage: python -m vitship.bench.int8_schemes {'|'.join(TABLES)} ARTIFACTS/MODEL-NAME")
    print(TABLES[sys.argv[1]](Path(sys.argv[2])))
