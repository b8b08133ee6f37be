"""The bench runner: statistics on known samples, the timing loop, worker isolation, JSON round trips."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from vitship.bench.latency.results import BenchReport, apply_speedups, sorted_rows, write_report
from vitship.bench.latency.timing import BenchRow, LatencyStats, TimingOptions, measure
from vitship.bench.latency.worker import RowJob, run_in_subprocess
from vitship.bench.rows import ResultsFileError, RowKey
from vitship.models import tiny_spec
from vitship.models.status import Status

TESTS_DIR = Path(__file__).parent
FAST = TimingOptions(min_time_s=0.3, warmup_s=0.1, min_iterations=5)


@pytest.fixture
def fake_worker_env(monkeypatch):
    """Let worker processes import tests/bench_fakes.py."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))


def fake_job(opener: str, batch: int = 2, sleep_s: float = 0.02, timing: TimingOptions = FAST) -> RowJob:
    return RowJob(artifact={"id": "fake-fp32", "size_bytes": 1234}, model_dir=".", target="fake:cpu", batch=batch,
                  variant="fake", knobs={"sleep_s": sleep_s, "threads": 1}, spec=tiny_spec().to_dict(),
                  timing=timing.to_dict(), opener=f"bench_fakes:{opener}")


def test_stats_on_known_samples_match_numpy_and_statistics():
    samples_ms = [12.0, 10.0, 11.0, 30.0, 10.5, 10.25, 9.75, 11.5, 10.0, 50.0, 10.1]
    stats = LatencyStats.from_samples([int(ms * 1e6) for ms in samples_ms], batch=4)
    assert stats.p50_ms == pytest.approx(np.percentile(samples_ms, 50))
    assert stats.p90_ms == pytest.approx(np.percentile(samples_ms, 90))
    assert stats.p99_ms == pytest.approx(np.percentile(samples_ms, 99))
    assert stats.p50_ms == pytest.approx(statistics.median(samples_ms))
    assert stats.mean_ms == pytest.approx(statistics.mean(samples_ms))
    assert stats.stdev_ms == pytest.approx(statistics.stdev(samples_ms))
    assert (stats.min_ms, stats.max_ms) == (9.75, 50.0)
    assert stats.cv == pytest.approx(statistics.stdev(samples_ms) / statistics.mean(samples_ms))
    assert stats.iterations == len(samples_ms)
    # throughput = batch * iterations / total measured time
    assert stats.throughput_ips == pytest.approx(4 * len(samples_ms) / (sum(samples_ms) / 1000))


def test_stats_single_sample_and_empty():
    stats = LatencyStats.from_samples([5_000_000])
    assert (stats.p50_ms, stats.p99_ms, stats.stdev_ms, stats.cv) == (5.0, 5.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_measure_is_time_based_with_a_minimum_count():
    calls = []
    now = [0]

    def clock():  # a fake clock: every call takes exactly 10 ms
        return now[0]

    def call():
        calls.append(1)
        now[0] += 10_000_000

    got = measure(call, TimingOptions(min_time_s=0.5, warmup_s=0.2, min_iterations=3), clock=clock)
    assert got.first_ns == 10_000_000 and got.warmup_iterations == 20
    assert len(got.samples_ns) == 50 and set(got.samples_ns) == {10_000_000}
    few = measure(call, TimingOptions(min_time_s=0.0, warmup_s=0.0, min_iterations=7), clock=clock)
    assert len(few.samples_ns) == 7


def test_measure_synchronises_before_every_clock_read():
    events = []
    measure(lambda: events.append("run"), TimingOptions(min_time_s=0, warmup_s=0, min_iterations=3),
            sync=lambda: events.append("sync"))
    assert events == ["run", "sync"] * 4  # first inference + 3 timed


def test_fake_session_p50_is_within_tolerance_of_the_truth(fake_worker_env):
    row = run_in_subprocess(fake_job("open_sleep", sleep_s=0.02), timeout_s=120)
    assert row.ok, row.reason
    assert row.key == RowKey("fake-fp32", "fake:cpu", "fake", 2) and row.worker["exit_code"] == 0
    assert row.stats.p50_ms == pytest.approx(20.0, rel=0.25)
    assert row.stats.iterations >= FAST.min_iterations and len(row.stats.samples_ns) == row.stats.iterations
    assert row.stats.batch == 2 and row.stats.artifact_size_bytes == 1234
    assert row.stats.peak_rss_mb > 0 and row.stats.first_inference_ms > 0
    assert row.session["provider"] == "fake" and row.knobs["threads"] == 1


@pytest.mark.parametrize("opener, expected", [
    ("open_segfault", "worker killed by SIGSEGV"),
    ("open_hard_exit", "worker exited with code 7"),
    ("open_raise", "RuntimeError: fake runtime refused the model"),
])
def test_crashing_worker_gives_an_error_row(fake_worker_env, opener, expected):
    row = run_in_subprocess(fake_job(opener), timeout_s=120)
    assert row.status is Status.ERROR and row.reason.startswith(expected), row.reason
    assert row.stats is None and not row.ok and row.worker["log_tail"] is not None


def test_stats_and_report_json_round_trip(tmp_path):
    stats = LatencyStats.from_samples([10_000_000, 12_000_000, 11_000_000], batch=8, load_s=0.5, peak_rss_mb=100.0)
    assert LatencyStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    rows = [BenchRow("torch-fp32", "torch:cpu", 8, "eager", {"torch_variant": "eager", "torch_dtype": "fp32"}, stats=stats),
            BenchRow("onnx-fp32", "onnxruntime:cpu", 8, "opt=all", {"ort_optimization": "all"},
                     stats=LatencyStats.from_samples([5_000_000, 5_500_000], batch=8)),
            BenchRow("onnx-fp32", "onnxruntime:cuda", None, "", status=Status.UNAVAILABLE, reason="no CUDA device"),
            BenchRow("onnx-int8", "onnxruntime:cpu", 8, "opt=all", status=Status.ERROR, reason="worker killed by SIGSEGV")]
    report = BenchReport(model="tiny-vit", environment={"cpu": {"model": "x"}}, weights={"sha256": "ab"},
                         config={"batches": [8]}, rows=rows)
    written = write_report(report, tmp_path)
    loaded = BenchReport.load(written["json"])
    assert loaded.to_dict() == json.loads(json.dumps(report.to_dict()))
    assert [r.status for r in loaded.rows] == [Status.OK, Status.OK, Status.UNAVAILABLE, Status.ERROR]
    assert loaded.rows[3].reason == "worker killed by SIGSEGV" and loaded.errors == [loaded.rows[3]]
    assert loaded.rows[0].stats.samples_ns == [10_000_000, 12_000_000, 11_000_000]
    assert rows[1].speedup == pytest.approx(11.0 / 5.25) and rows[1].baseline == "torch:cpu eager fp32"
    assert [r.artifact for r in sorted_rows(rows)][:2] == ["onnx-fp32", "torch-fp32"]
    assert "unavailable: no CUDA device" in written["md"].read_text()
    assert written["csv"].read_text().count("\n") == 5
    assert "throughput.png" in written and "latency_batch1.png" not in written  # no batch-1 rows here
    assert written["throughput.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedup_needs_a_baseline_from_the_same_run():
    row = BenchRow("onnx-fp32", "onnxruntime:cpu", 1, "", stats=LatencyStats.from_samples([1_000_000]))
    apply_speedups([row])
    assert row.speedup is None and math.isnan(LatencyStats(batch=1, samples_ns=[]).p50_ms)


def test_sweep_runs_every_row_even_after_a_crash(fake_worker_env):
    from vitship.bench.latency.sweep import BenchConfig, SweepPlan, run_sweep

    plan = SweepPlan(jobs=[fake_job("open_segfault"), fake_job("open_sleep", sleep_s=0.005)],
                     unavailable=[BenchRow("fake-fp32", "fake:gpu", None, "", status=Status.UNAVAILABLE, reason="no such device")])
    seen = []
    rows = run_sweep(plan, BenchConfig(row_timeout_s=120), lambda done, total, job, row: seen.append((done, total, row)))
    assert [r.status for r in rows] == [Status.ERROR, Status.OK, Status.UNAVAILABLE]
    assert [(d, t) for d, t, _ in seen] == [(0, 2), (1, 2), (1, 2), (2, 2)]


def test_torch_variants_per_device():
    from vitship.bench.latency.sweep import BenchConfig, _variants
    from vitship.exporters.base import Artifact

    torch_fp32 = Artifact(id="torch-fp32", format="torch", precision="fp32", path="seeded")
    cpu = _variants(torch_fp32, "torch:cpu", BenchConfig(threads=2))
    assert [(a.id, label) for label, _, a in cpu] == [("torch-fp32", "eager"), ("torch-fp32", "compile")]
    cuda = _variants(torch_fp32, "torch:cuda", BenchConfig(threads=2))
    assert {(a.id, k["torch_variant"]) for _, k, a in cuda} >= {("torch-fp16", "eager"), ("torch-bf16", "eager"),
                                                                  ("torch-fp16", "cudagraphs")}
    ort = _variants(Artifact(id="onnx-fp32", format="onnx", precision="fp32", path="x"), "onnxruntime:cpu",
                    BenchConfig(threads=2, ort_optimizations=("basic", "all")))
    assert [(label, k["ort_optimization"], k["threads"]) for label, k, _ in ort] == [("opt=basic", "basic", 2),
                                                                                     ("opt=all", "all", 2)]


def test_cuda_rows_are_unavailable_without_cuda(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the cuda rows run instead")
    from vitship.bench.latency.sweep import BenchConfig, bench_artifacts, plan_sweep

    artifacts, weights = bench_artifacts(tmp_path, tiny_spec(), "seeded")
    plan = plan_sweep(artifacts, tmp_path, tiny_spec().to_dict(), BenchConfig(batches=(1,)))
    cuda = [r for r in plan.unavailable if r.target == "torch:cuda"]
    assert len(cuda) == 1 and cuda[0].status is Status.UNAVAILABLE and cuda[0].reason.startswith("no CUDA device"), cuda
    assert cuda[0].artifact == "torch-fp32"  # one row per artifact the target would have run
    assert all(job.target != "torch:cuda" for job in plan.jobs)
    assert {(j.artifact_id, j.target, j.variant) for j in plan.jobs} == {("torch-fp32", "torch:cpu", "eager"),
                                                                         ("torch-fp32", "torch:cpu", "compile")}
    assert weights["sha256"] == artifacts[0].sha256


def test_quick_times_device_targets_only_and_says_why_apple_ones_are_missing(tmp_path):
    """--quick (make export-all) skips what the full sweep skips by default: AUTO repeats CPU, numpy is no device."""
    import sys

    from vitship.bench.latency.sweep import SKIPPED_BY_DEFAULT, BenchConfig, plan_sweep
    from vitship.exporters.base import Artifact

    artifacts = [Artifact(id=f"{fmt}-{precision}", format=fmt, precision=precision, path=f"{fmt}-{precision}/model",
                          input_spec={"batch_axis": "batch"}) for fmt, precision in (("openvino", "int8"), ("coreml", "fp16"))]
    plan = plan_sweep(artifacts, tmp_path, tiny_spec().to_dict(), BenchConfig.quick())
    assert {j.target for j in plan.jobs if j.artifact_id == "openvino-int8"} == {"openvino:CPU"}
    assert not {j.target for j in plan.jobs} & set(SKIPPED_BY_DEFAULT)
    assert not {r.target for r in plan.unavailable} & set(SKIPPED_BY_DEFAULT)
    apple = [r for r in plan.unavailable + plan.jobs if getattr(r, "target", "") == "coreml:all"]
    if sys.platform != "darwin":  # Core ML's default compute units: an unavailable row that says why
        assert [(r.artifact, r.status) for r in apple] == [("coreml-fp16", Status.UNAVAILABLE)] and "macOS" in apple[0].reason


def test_bench_cli_on_the_tiny_model_measures_torch_and_writes_everything(tmp_path):
    from typer.testing import CliRunner

    from vitship.bench.cli import app

    result = CliRunner().invoke(app, ["bench", "--arch", "tiny", "--artifacts", str(tmp_path), "--quick",
                                      "--min-time", "0.2", "--warmup", "0.1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = BenchReport.load(tmp_path / "out" / "bench.json")
    torch_row = next(r for r in report.rows if r.artifact == "torch-fp32" and r.ok)
    assert torch_row.speedup == pytest.approx(1.0) and torch_row.session["threads"] == torch_row.knobs["threads"]
    assert torch_row.stats.samples_ns and report.environment["cpu"]["logical_cores"] and report.weights["sha256"]
    assert any(r.status is Status.UNAVAILABLE and r.reason == "not in the manifest; export it first" for r in report.rows)
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"bench.json", "bench.csv", "bench.md", "latency_batch1.png"}


BENCHMARK_APP_TAIL = """[Step 8/11] Querying optimal runtime parameters
[ INFO ] Model:
[ INFO ]   NUM_STREAMS: 1
[ INFO ]   INFERENCE_NUM_THREADS: 2
[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'bfloat16'>
[ INFO ]   PERFORMANCE_HINT: LATENCY
[Step 11/11] Dumping statistics report
[ INFO ] Count:            233 iterations
[ INFO ] Latency:
[ INFO ]    Median:        42.87 ms
[ INFO ]    Average:       43.10 ms
[ INFO ]    Min:           41.02 ms
[ INFO ]    Max:           61.50 ms
[ INFO ] Throughput:   23.20 FPS
"""


def test_benchmark_app_output_is_parsed_and_settings_compared():
    from vitship.bench.latency.honesty import _mismatches, parse_benchmark_app

    parsed = parse_benchmark_app(BENCHMARK_APP_TAIL)
    assert parsed["median_ms"] == 42.87 and parsed["count"] == 233 and parsed["min_ms"] == 41.02
    assert (parsed["num_streams"], parsed["inference_num_threads"], parsed["inference_precision_hint"]) == ("1", "2", "bfloat16")
    assert parse_benchmark_app("[ INFO ]    Median:        73.13 us")["median_ms"] == pytest.approx(0.07313)
    same = {"vitship": {"precision": "bf16", "threads": 2},
            "benchmark_app": {"precision": "bfloat16", "threads": "2", "streams": "1"}}
    assert _mismatches(same) == []
    other = {"vitship": {"precision": "fp32", "threads": 1}, "benchmark_app": {"precision": "bfloat16", "threads": "2", "streams": "2"}}
    assert len(_mismatches(other)) == 3


def test_a_hanging_worker_times_out_into_an_error_row(fake_worker_env):
    row = run_in_subprocess(fake_job("open_sleep", sleep_s=30.0), timeout_s=3)
    assert (row.status, row.reason, row.stats) == (Status.ERROR, "timed out after 3 s", None)


@pytest.fixture(scope="module")
def tiny_openvino_fp16(tiny_exports):
    return tiny_exports([("openvino", "fp16")]) / tiny_spec().name


def test_bench_check_runs_benchmark_app_like_for_like(tiny_openvino_fp16):
    """Mechanics on the tiny IR (its per-call Python overhead dominates, so no ratio is asserted here)."""
    from vitship.bench.latency.honesty import CheckOptions, bench_check

    result = bench_check(tiny_openvino_fp16, tiny_spec(), CheckOptions(seconds=1, threads=1, rounds=1))
    assert result.notes == [], result.settings  # same precision, threads and one stream on both sides
    assert result.settings["vitship"]["threads"] == 1 and result.settings["benchmark_app"]["threads"] == "1"
    assert result.vitship_p50_ms > 0 and result.benchmark_app_median_ms > 0
    assert result.ratio == pytest.approx(result.vitship_p50_ms / result.benchmark_app_median_ms)
    assert "-shape [1,3,64,64]" in result.rounds[0]["benchmark_app"]["command"]  # static, as vitship compiles it
    assert result.rounds[0]["vitship_session"]["extra"]["input_shape"] == "static [1, 3, 64, 64]"


@pytest.mark.parametrize("content, message", [
    ('{"schema_version": 1, "rows": []}', "schema_version 1, this vitship reads 2; rerun vitship bench"),
    ('{"rows": []}', "schema_version None"),
    ("not json", "unreadable bench results"),
])
def test_bench_json_of_another_schema_is_refused_with_the_command_to_rerun(tmp_path, content, message):
    (tmp_path / "bench.json").write_text(content)
    with pytest.raises(ResultsFileError, match=message):
        BenchReport.load(tmp_path / "bench.json")


@pytest.mark.parametrize("args, message", [
    (["--hint", "fast"], "Invalid value for --hint: 'fast' is not one of latency, throughput"),
    (["--torch-variants", "eager,compiled"], "Invalid value for --torch-variants: 'compiled' is not one of eager, compile, "
                                             "cudagraphs (did you mean 'compile'?)"),
    (["--ort-opt", "al"], "Invalid value for --ort-opt: 'al' is not one of disable, basic, extended, all"),
    (["--openvino-precision", "fp8"], "Invalid value for --openvino-precision: 'fp8' is not one of f32, bf16, f16"),
    (["--batch", "1,x"], "Invalid value for --batch: '1,x': batch sizes are whole numbers >= 1"),
    (["--batch", "0"], "Invalid value for --batch: '0': batch sizes are whole numbers >= 1"),
])
def test_bad_bench_options_are_a_usage_error_before_any_work_starts(tmp_path, args, message):
    from typer.testing import CliRunner

    from vitship.bench.cli import app

    result = CliRunner().invoke(app, ["bench", "--arch", "tiny", "--artifacts", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split()), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "none").exists()


def test_bench_config_refuses_bad_values_for_library_callers():
    from vitship.bench.latency.sweep import BenchConfig, BenchError

    with pytest.raises(BenchError, match="torch_variants 'eagre' is not one of eager, compile, cudagraphs; did you mean 'eager'"):
        BenchConfig(torch_variants=("eagre",))
    with pytest.raises(BenchError, match="openvino_hints 'fast'"):
        BenchConfig.quick(openvino_hints=("fast",))
    with pytest.raises(BenchError, match="batches"):
        BenchConfig(batches=(1, 0))
