"""Measurement honesty: vitship's p50 against OpenVINO's own benchmark_app median, same IR, same settings.

Like is compared with like: the same IR reshaped to a static batch of 1 on both sides, device,
input filled once, and latency hint (one synchronous request); benchmark_app gets the
thread count and the inference precision that vitship's session reports it actually used (through
-load_config, since benchmark_app refuses -nthreads together with -hint). Both print the compiled
model's streams, threads and precision, and a mismatch fails the check as surely as a slow clock.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.latency.sweep import BenchError
from vitship.bench.latency.timing import BenchRow, TimingOptions
from vitship.bench.latency.worker import RowJob, run_in_subprocess
from vitship.exporters.base import Artifact, manifest_artifacts, verify_artifact

UNITS_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0}
_OV_PRECISION = {"bf16": "bf16", "fp16": "f16", "fp32": "f32"}
_PROPERTY = re.compile(r"^\[ INFO \]\s+(NUM_STREAMS|INFERENCE_NUM_THREADS|INFERENCE_PRECISION_HINT|PERFORMANCE_HINT):\s*(.+)$")
_LATENCY = re.compile(r"^\[ INFO \]\s+(Median|Average|Min|Max):\s+([\d.]+)\s*(ns|us|ms|s)\s*$")
_COUNT = re.compile(r"^\[ INFO \]\s+Count:\s+(\d+)")


@dataclass
class CheckOptions:
    artifact: str = "openvino-fp16"
    device: str = "CPU"
    hint: str = "latency"
    seconds: float = 10.0
    threads: int | None = None  # None: physical cores
    tolerance: float = 0.10
    rounds: int = 3  # alternate vitship / benchmark_app (a neighbour's burst then hits both sides); medians compared


@dataclass
class CheckResult:
    vitship_p50_ms: float | None
    benchmark_app_median_ms: float | None
    ratio: float | None
    passed: bool
    settings: dict = field(default_factory=dict)  # what each side actually ran with
    notes: list[str] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)


def parse_benchmark_app(output: str) -> dict:
    """Median/Average/Min/Max latency (ms), iteration count and the compiled model's settings."""
    parsed: dict = {}
    for line in output.splitlines():
        line = line.rstrip()
        if match := _LATENCY.match(line):
            parsed[f"{match[1].lower()}_ms"] = float(match[2]) * UNITS_TO_MS[match[3]]
        elif match := _COUNT.match(line):
            parsed["count"] = int(match[1])
        elif match := _PROPERTY.match(line):
            value = match[2].strip()
            parsed[match[1].lower()] = re.sub(r"^<Type: '(\w+)'>$", r"\1", value)
    return parsed


def benchmark_app_path() -> Path:
    """benchmark_app beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("benchmark_app")
    found = beside if beside.exists() else (shutil.which("benchmark_app") and Path(shutil.which("benchmark_app")))
    if not found:
        raise BenchError("OpenVINO's benchmark_app is not installed; run: pip install openvino")
    return Path(found)


def run_benchmark_app(xml: Path, shape: list[int], options: CheckOptions, threads: int, precision: str | None) -> dict:
    """Run benchmark_app synchronously with the latency hint; returns parse_benchmark_app's dict + command."""
    config = {"INFERENCE_NUM_THREADS": str(threads)}
    if precision in _OV_PRECISION:
        config["INFERENCE_PRECISION_HINT"] = _OV_PRECISION[precision]
    with tempfile.TemporaryDirectory(prefix="vitship-bench-check-") as tmp:
        config_path = Path(tmp, "config.json")
        config_path.write_text(json.dumps({options.device: config}))
        command = [str(benchmark_app_path()), "-m", str(xml), "-d", options.device, "-hint", options.hint,
                   # -shape reshapes the IR to a static batch, as vitship's bench rows compile it
                   # (SessionOptions.static_batch); inference_only: the input is filled once, as vitship reuses one batch.
                   "-shape", "[" + ",".join(str(d) for d in shape) + "]", "-inference_only", "true",
                   "-t", str(int(round(options.seconds))),
                   "-load_config", str(config_path)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=options.seconds * 10 + 120)
    parsed = parse_benchmark_app(done.stdout + done.stderr)
    if done.returncode != 0 or "median_ms" not in parsed:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise BenchError(f"benchmark_app failed (exit {done.returncode}): {' | '.join(tail)}")
    return {**parsed, "command": " ".join(command), "config": config}


def ir_file(model_dir: Path, artifact: Artifact) -> Path:
    path = verify_artifact(model_dir, artifact)  # benchmark_app reads the file itself: check its sha256 here
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise BenchError(f"{path}: no OpenVINO .xml inside; re-export {artifact.id}")
        path = found[0]
    if not path.is_file():
        raise BenchError(f"{path} is missing; re-export it: vitship export --format openvino --precision {artifact.precision}")
    return path


def find_artifact(model_dir: Path, artifact_id: str) -> Artifact | None:
    return next((a for a in manifest_artifacts(model_dir) if a.id == artifact_id), None)


def _vitship_row(artifact: Artifact, model_dir: Path, spec: dict, options: CheckOptions, threads: int) -> BenchRow:
    job = RowJob(artifact=artifact.to_dict(), model_dir=str(model_dir), target=f"openvino:{options.device}", batch=1,
                 variant=f"hint={options.hint},static", knobs={"threads": threads, "openvino_hint": options.hint,
                                                       "openvino_shape": "static"}, spec=spec,
                 timing=TimingOptions(min_time_s=options.seconds, warmup_s=1.0, min_iterations=10).to_dict())
    row = run_in_subprocess(job, timeout_s=options.seconds * 10 + 300)
    if not row.ok:
        raise BenchError(f"vitship's own measurement of {artifact.id} failed: {row.reason}")
    return row


def bench_check(model_dir: Path, spec, options: CheckOptions = CheckOptions()) -> CheckResult:
    """Measure ``options.artifact`` with vitship and with benchmark_app, alternating, and compare the medians."""
    from vitship.runtimes import physical_cores

    artifact = find_artifact(model_dir, options.artifact)
    if artifact is None:
        raise BenchError(f"{options.artifact} is not in {model_dir}/manifest.json; "
                         "export it: vitship export --format openvino --precision fp16")
    xml, threads = ir_file(model_dir, artifact), options.threads or physical_cores()
    shape = [1, *spec.input_shape]
    rounds = []
    for _ in range(max(1, options.rounds)):
        row = _vitship_row(artifact, model_dir, spec.to_dict(), options, threads)
        app = run_benchmark_app(xml, shape, options, threads, row.session.get("precision"))
        rounds.append({"vitship_p50_ms": row.stats.p50_ms, "vitship_iterations": row.stats.iterations,
                       "vitship_session": row.session, "benchmark_app": app})
    ours = statistics.median(r["vitship_p50_ms"] for r in rounds)
    theirs = statistics.median(r["benchmark_app"]["median_ms"] for r in rounds)
    ratio = ours / theirs
    session, app = rounds[-1]["vitship_session"], rounds[-1]["benchmark_app"]
    settings = {"shape": shape, "hint": options.hint, "device": options.device,
                "vitship": {"precision": session.get("precision"), "threads": session.get("threads"),
                            "hint": session.get("extra", {}).get("performance_hint")},
                "benchmark_app": {"precision": app.get("inference_precision_hint"), "threads": app.get("inference_num_threads"),
                                  "streams": app.get("num_streams"), "hint": app.get("performance_hint")}}
    notes = _mismatches(settings)
    passed = abs(ratio - 1.0) <= options.tolerance and not notes
    return CheckResult(ours, theirs, ratio, passed, settings, notes, rounds)


def _mismatches(settings: dict) -> list[str]:
    """Differences between what the two sides ran with (precision names differ: bf16 vs bfloat16)."""
    ours, theirs = settings["vitship"], settings["benchmark_app"]
    aliases = {"bfloat16": "bf16", "float16": "fp16", "f16": "fp16", "float32": "fp32", "f32": "fp32"}
    notes = []
    if ours.get("precision") and aliases.get(theirs.get("precision"), theirs.get("precision")) != ours["precision"]:
        notes.append(f"precision differs: vitship {ours['precision']}, benchmark_app {theirs.get('precision')}")
    if str(ours.get("threads")) != str(theirs.get("threads")):
        notes.append(f"threads differ: vitship {ours.get('threads')}, benchmark_app {theirs.get('threads')}")
    if theirs.get("streams") not in (None, "1"):
        notes.append(f"benchmark_app used {theirs['streams']} streams, vitship one synchronous request")
    return notes
