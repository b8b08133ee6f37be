"""The bench report: rows + environment + weights + config, speedups, and bench.json/.csv/.md output."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vitship.bench.latency.timing import BenchRow
from vitship.bench.rows import RowsDocument, read_results
from vitship.models.atomic import atomic_write_json, atomic_write_text
from vitship.models.status import Status

BENCH_SCHEMA_VERSION = 2  # 2: status and reason are separate fields (bench/rows.py)
GPU_DEVICES = ("cuda", "tensorrt", "GPU")


@dataclass
class BenchReport(RowsDocument):
    """One `vitship bench` run: what was measured, where, with which weights and settings."""

    row_class = BenchRow

    model: str
    environment: dict
    weights: dict
    config: dict
    rows: list[BenchRow] = field(default_factory=list)
    conditions: dict = field(default_factory=dict)  # load average at start and end: a busy machine inflates latency
    peaks: dict = field(default_factory=dict)  # attainable GEMM GFLOP/s per precision (bench.latency.roofline.measure_peaks)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = BENCH_SCHEMA_VERSION

    @property
    def errors(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status is Status.ERROR]

    def to_dict(self, samples: bool = True) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["rows"] = [r.to_dict(samples) for r in self.rows]
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def load(cls, path: Path) -> "BenchReport":
        """Read bench.json; another schema_version (or an unreadable file) is a ResultsFileError."""
        return cls.from_dict(read_results(path, "bench results", BENCH_SCHEMA_VERSION, "vitship bench"))


def is_torch_baseline(row: BenchRow) -> bool:
    """torch fp32 eager: the row every speedup is measured against."""
    return (row.artifact == "torch-fp32" and row.target.startswith("torch:") and row.knobs.get("torch_variant") == "eager"
            and row.knobs.get("torch_dtype", "fp32") in ("fp32", None) and row.ok and row.stats is not None)


def _on_gpu(target: str) -> bool:
    return target.split(":", 1)[-1] in GPU_DEVICES


def apply_speedups(rows: list[BenchRow]) -> None:
    """Set ``speedup = baseline p50 / row p50`` against torch fp32 eager at the same batch, same run.

    GPU rows compare with torch:cuda eager fp32 when it was measured; everything else with torch:cpu.
    """
    baselines = {(r.target, r.batch): r for r in rows if is_torch_baseline(r)}
    for row in rows:
        row.speedup, row.baseline = None, None
        if not (row.ok and row.stats):
            continue
        base = (baselines.get(("torch:cuda", row.batch)) if _on_gpu(row.target) else None) or baselines.get(
            ("torch:cpu", row.batch))
        if base is not None:
            row.speedup = base.stats.p50_ms / row.stats.p50_ms
            row.baseline = f"{base.target} eager fp32"


def sorted_rows(rows: list[BenchRow]) -> list[BenchRow]:
    """ok rows by (batch, p50), then errors, then unavailable targets."""
    def key(row: BenchRow):
        if row.ok and row.stats:
            return (0, row.batch, row.stats.p50_ms, row.artifact)
        return (1 if row.status is Status.ERROR else 2, row.batch or 0, 0.0, row.artifact + row.target)
    return sorted(rows, key=key)


CSV_COLUMNS = ("artifact", "target", "variant", "batch", "status", "reason", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "stdev_ms",
               "min_ms", "max_ms", "cv", "throughput_ips", "iterations", "load_s", "first_inference_ms", "peak_rss_mb",
               "artifact_size_bytes", "speedup", "baseline", "threads", "openvino_hint", "openvino_precision",
               "ort_optimization", "torch_variant", "torch_dtype", "precision", "provider", "gflops", "percent_of_peak",
               "peak_precision")


def to_csv(report: BenchReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in sorted_rows(report.rows):
        record = {**row.knobs, **(row.stats.to_dict(samples=False) if row.stats else {}),
                  "artifact": row.artifact, "target": row.target, "variant": row.variant, "batch": row.batch,
                  "status": str(row.status), "reason": row.reason, "speedup": row.speedup, "baseline": row.baseline,
                  "precision": row.session.get("precision", ""), "provider": row.session.get("provider", ""),
                  **{k: (row.roofline or {}).get(k) for k in ("gflops", "percent_of_peak", "peak_precision")}}
        writer.writerow(record)
    return buffer.getvalue()


def _fmt(value, spec: str = ".1f", dash: str = "-") -> str:
    return dash if value is None else format(value, spec)


def _rss(stats) -> str:
    """Peak RSS, and in brackets what the session added to the process (imports excluded)."""
    if stats.peak_rss_mb is None:
        return "-"
    added = f" (+{stats.peak_rss_mb - stats.rss_before_load_mb:.0f})" if stats.rss_before_load_mb is not None else ""
    return f"{stats.peak_rss_mb:.0f}{added}"


def markdown_table(rows: list[BenchRow]) -> str:
    lines = ["| artifact | target | variant | batch | p50 ms | p90 ms | p99 ms | CV | img/s | speedup | load s | first ms | "
             "peak RSS MB | size MB | precision | GFLOP/s (% of peak) | status |", "|" + "---|" * 17]
    for row in sorted_rows(rows):
        s = row.stats
        size = s.artifact_size_bytes / 2**20 if s and s.artifact_size_bytes else None
        cells = [row.artifact, row.target, row.variant or "-", _fmt(row.batch, "d")]
        cells += [_fmt(s.p50_ms, ".2f"), _fmt(s.p90_ms, ".2f"), _fmt(s.p99_ms, ".2f"), _fmt(s.cv, ".1%"),
                  _fmt(s.throughput_ips, ".1f")] if s else ["-"] * 5
        cells += [_fmt(row.speedup, ".2f") + ("x" if row.speedup else "")]
        cells += [_fmt(s.load_s, ".2f"), _fmt(s.first_inference_ms, ".1f"), _rss(s), _fmt(size, ".1f")] if s else ["-"] * 4
        status = f"{row.status}: {row.reason}" if row.reason else str(row.status)
        cells += [row.session.get("precision") or "-", roofline_cell(row.roofline), status.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def roofline_cell(roofline: dict | None) -> str:
    """'412 (47% int8)': achieved GFLOP/s and its share of the attainable peak of the precision the row ran at."""
    if not roofline:
        return "-"
    if roofline.get("percent_of_peak") is None:
        return f"{roofline['gflops']:.0f}"
    return f"{roofline['gflops']:.0f} ({roofline['percent_of_peak']:.0f}% {roofline['peak_precision']})"


def _environment_lines(env: dict) -> list[str]:
    cpu = env.get("cpu", {})
    flags = " ".join(f for f, on in cpu.get("flags", {}).items() if on) or "unknown"
    gpus = "; ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    return [f"- CPU: {cpu.get('model')} ({cpu.get('physical_cores')} physical / {cpu.get('logical_cores')} logical cores), "
            f"flags: {flags}", f"- RAM: {env.get('memory_gib')} GiB; OS: {env.get('os')}; Python {env.get('python')}",
            f"- GPU: {gpus}", f"- packages: {packages}"]


def _conditions_lines(conditions: dict) -> list[str]:
    if not conditions.get("load_average_start"):
        return []
    start, end = conditions["load_average_start"], conditions.get("load_average_end") or []
    return [f"- load average (1/5/15 min) at start {' / '.join(f'{v:.2f}' for v in start)}, at end "
            f"{' / '.join(f'{v:.2f}' for v in end)}, on {conditions.get('logical_cores')} logical cores"]


def to_markdown(report: BenchReport) -> str:
    weights = report.weights
    trained = "" if weights.get("trained", True) else " (untrained weights: latency is valid, accuracy is not)"
    config = report.config
    lines = [f"# vitship bench: {report.model}", "", f"{report.created}; weights `{weights.get('source')}` sha256 "
             f"`{str(weights.get('sha256', ''))[:16]}...`{trained}", "", "## Environment", *_environment_lines(report.environment),
             "", "## Settings", f"- threads {config.get('threads')}, batches {', '.join(map(str, config.get('batches') or []))}, "
             f"timing {config.get('timing')}", *_conditions_lines(report.conditions),
             "", "## Results (sorted by batch, then p50 latency)", "", markdown_table(report.rows), "",
             "Latencies are per call (one batch). Throughput = batch x iterations / total measured time. Speedup = p50 of "
             "torch fp32 eager at the same batch in this run / p50 of the row (GPU rows against torch:cuda when measured). "
             "Peak RSS is the worker process's maximum resident set (VmHWM); it includes Python and every import, "
             "and the bracket is what opening and running the session added.", *_peak_lines(report.peaks), ""]
    return "\n".join(lines)


def _peak_lines(peaks: dict) -> list[str]:
    """How the roofline column's peaks were measured (one line per precision)."""
    measured = [p for name, p in peaks.items() if isinstance(p, dict) and "gflops" in p]
    if not measured:
        return []
    lines = ["", "GFLOP/s = the model's GFLOP per image (attention included) x batch / p50; % of the attainable matrix-"
             f"multiply peak of the precision the row ran at, measured on this CPU in {peaks.get('seconds')} s:"]
    return lines + [f"- {p['precision']}: {p['gflops']:.0f} GFLOP/s, {p['source']}, GEMM {'x'.join(map(str, p['shape']))}, "
                    f"{p['threads']} threads" for p in measured]


def write_report(report: BenchReport, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write bench.json (with raw samples), bench.csv, bench.md and the PNG plots, each atomically."""
    out_dir = Path(out_dir)
    apply_speedups(report.rows)
    written = {"json": out_dir / "bench.json", "csv": out_dir / "bench.csv", "md": out_dir / "bench.md"}
    atomic_write_json(written["json"], report.to_dict())
    atomic_write_text(written["csv"], to_csv(report))
    atomic_write_text(written["md"], to_markdown(report))
    if plots:
        from vitship.bench.plots import write_bench_plots

        written.update(write_bench_plots(report.rows, out_dir))
    return written
