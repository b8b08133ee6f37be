"""docs/MEASUREMENTS.md's "Speed" tables, remade on any machine: each export-form choice against its alternative.

    python -m vitship.bench.speed --weights seeded --format executorch --out /tmp/vitship-speed
    python -m vitship.bench.speed --weights seeded-outliers --format onnx,openvino,litert,executorch

For each format, every variant of ``VARIANTS`` is exported (fp32 and int8, through the shipped pipeline with the
export's int8 gate, into ``OUT/<weights>/<format>/<variant>``; an up-to-date export is reused), then all of them
are opened in this one process on the format's CPU target and timed round-robin at batch 1, so a busy machine
slows every variant alike. Each row gives the p50, its ratio to the format's first variant of the same precision,
the GFLOP the artifact computes (its export form: ``bench.latency.roofline.artifact_gflop``) and its share of the
matrix-multiply peak measured here before the rounds, the max abs logit error and min feature cosine against
PyTorch fp32 on the bundled photos, and the int8 gate's verdict recorded at export.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.models import spec_for
from vitship.models.status import Status

ROUNDS, CALLS = 5, 3


@dataclass(frozen=True)
class Variant:
    """One way to build or run a format's artifacts: export options and session options, both by field name.

    ``reuses``: the label of the variant whose artifacts this one opens with other session options (no export).
    """

    label: str
    options: dict = field(default_factory=dict)
    session: dict = field(default_factory=dict)
    reuses: str | None = None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in (self.reuses or self.label).lower()).strip("-")


TIMM_FORM = {"attention": "fused", "layer_norm": "native", "class_token_tail": False}
VARIANTS: dict[str, tuple[Variant, ...]] = {
    "executorch": (
        Variant("timm form, batch 1..8 (before)", {**TIMM_FORM, "max_batch": 8}),
        Variant("delegated form, batch 1..8", {"max_batch": 8}),
        Variant("delegated form, batch 1, whole last block", {"class_token_tail": False}),
        Variant("delegated form, batch 1 (default)"),
    ),
    "litert": (  # one form for every precision (docs/DESIGN.md "The export form"): int8 reuses fp32's conversion
        Variant("timm form, no class-token tail (default)"),
        Variant("class-token tail, explicit attention", {"attention": "explicit", "class_token_tail": True}),
        Variant("class-token tail", {"class_token_tail": True}),
    ),
    "onnx": (
        Variant("timm form, standard ops (before)", {"class_token_tail": False, "contrib_ops": "none"}),
        Variant("class-token tail, standard ops", {"contrib_ops": "none"}),
        Variant("contrib ops, whole last block", {"class_token_tail": False}),
        Variant("contrib ops, class-token tail (default)"),
    ),
    "openvino": (
        Variant("timm form (before)", {"class_token_tail": False}),
        Variant("class-token tail (default)"),
        Variant("class-token tail, f32 inference", session={"openvino_precision": "f32"}, reuses="class-token tail (default)"),
    ),
}
TARGETS = {"executorch": "executorch:cpu", "litert": "litert:cpu", "onnx": "onnxruntime:cpu", "openvino": "openvino:CPU"}


def export_variants(loaded, fmt: str, precisions: tuple[str, ...], out: Path, only: tuple[str, ...] = ()) -> dict:
    """{(variant label, precision): (artifact, model folder)}, each exported once (reused while up to date).

    Args:
        only: keep the variants whose label contains one of these words (all when empty).
    """
    from vitship.bench.int8_gate import int8_gate
    from vitship.exporters import options_class
    from vitship.exporters.manifest import Manifest
    from vitship.exporters.pipeline import export_all, model_dir_for
    from vitship.models.quiet import quiet_output

    gate = int8_gate(loaded)
    built = {}
    for variant in [v for v in VARIANTS[fmt] if not only or any(word in v.label for word in only)]:
        root = out / loaded.info.kind / fmt / variant.slug
        say(f"export {fmt} {variant.label} ({', '.join(precisions)}) -> {root}")
        options = options_class(fmt)(**(next(v for v in VARIANTS[fmt] if v.label == variant.reuses).options
                                         if variant.reuses else variant.options))
        with quiet_output():  # the backends' own progress lines
            results = export_all(loaded, root, [(fmt, p) for p in precisions], options={fmt: options}, gate=gate)
        model_dir = model_dir_for(root, loaded)
        artifacts = Manifest.read(model_dir).artifacts
        for result, precision in zip(results, precisions):
            if result.status in (Status.OK, Status.SKIPPED):
                built[(variant.label, precision)] = (artifacts[result.id], model_dir)
            else:
                say(f"  {result.id}: {result.status} {result.reason}")
    return built


@dataclass
class SpeedRow:
    """One artifact of one variant: its check against PyTorch fp32 on the photos and its timings in the shared loop."""

    format: str
    variant: str
    precision: str
    artifact: object  # exporters.schema.Artifact
    errors: object  # models.metrics.OutputErrors against PyTorch fp32
    gate: str  # the export's int8 gate verdict; "-" for a float artifact
    ran_at: str  # the precision the runtime ran (OpenVINO's CPU runs fp32 IR in bf16 by default)
    samples: list[float] = field(default_factory=list)
    gflop: float = 0.0  # what the artifact computes (its export form)
    peak: float | None = None  # GFLOP/s of the matching precision, measured before the rounds
    session: object = None

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples)

    @property
    def min_ms(self) -> float:
        return min(self.samples)

    @property
    def percent_of_peak(self) -> float | None:
        return 100 * self.gflop / (self.p50_ms / 1e3) / self.peak if self.peak else None


def measure(loaded, built: dict, rounds: int = ROUNDS, calls: int = CALLS) -> list[SpeedRow]:
    """Open every built artifact on its format's target, check it on the photos, and time all round-robin.

    Args:
        built: {(format, variant label, precision): (artifact, model folder)}, timed together in one loop, so ratios
            between formats (executorch against litert) come from the same run.
    """
    import torch

    from vitship.bench.latency.roofline import artifact_gflop, measure_peaks
    from vitship.models import FEATURES_NAME, LOGITS_NAME, preprocess, sample_images
    from vitship.models.metrics import output_errors
    from vitship.runtimes import SessionOptions, open_session, physical_cores

    threads = physical_cores()
    photos = preprocess(sample_images(), loaded.spec)
    with torch.inference_mode():
        logits, features = loaded.model(torch.from_numpy(photos))
    reference = {LOGITS_NAME: logits.numpy(), FEATURES_NAME: features.numpy()}
    peaks = measure_peaks(loaded.spec, threads)
    rows = []
    for (fmt, label, precision), (artifact, model_dir) in built.items():
        variant = next(v for v in VARIANTS[fmt] if v.label == label)
        session = open_session(artifact, model_dir, TARGETS[fmt], SessionOptions(threads=threads, **variant.session))
        outputs = [session.run_outputs(photos[i:i + 1]) for i in range(len(photos))]
        stacked = {name: np.concatenate([o[name] for o in outputs]) for name in (LOGITS_NAME, FEATURES_NAME)}
        ran_at = session.info.precision
        peak = peaks.get("int8" if precision == "int8" else _float_peak(ran_at))
        rows.append(SpeedRow(fmt, label, precision, artifact, output_errors(stacked, reference, loaded.spec),
                             gate="-" if precision != "int8" else _gate_verdict(artifact), ran_at=ran_at,
                             gflop=artifact_gflop(artifact, loaded.spec), peak=peak["gflops"] if peak else None, session=session))
    say(f"timing {len(rows)} sessions round-robin: {rounds} rounds x {calls} calls at batch 1, {threads} threads")
    for _ in range(rounds):
        for row in rows:
            for _ in range(calls):
                start = time.perf_counter_ns()
                row.session.run_outputs(photos[:1])
                row.samples.append((time.perf_counter_ns() - start) / 1e6)
    for row in rows:
        row.session.close()
        row.session = None
    return rows


def _gate_verdict(artifact) -> str:
    """The export's int8 gate verdict and, for a pass, the step that shipped (the artifact's Int8Record)."""
    from vitship.exporters.int8.record import Int8Record

    return Int8Record.of(artifact).summary()


def _float_peak(ran_at: str) -> str:
    return "bf16" if ran_at == "bf16" else "fp32"


def table(fmt: str, rows: list[SpeedRow]) -> str:
    """The markdown table of one format: ratios against the format's first variant of the same precision.

    On a busy machine the p50 carries the other processes' load and the min is closer to the uncontended time;
    on a quiet one they agree. % of peak is the p50's against the peak measured before the rounds.
    """
    rows = [row for row in rows if row.format == fmt]
    lines = [(f"| {fmt} variant | precision | p50 ms | min ms | p50 vs first | min vs first | GFLOP | % of peak "
              "| max abs logit error | min feature cosine | int8 gate |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    first: dict[str, SpeedRow] = {}
    for row in rows:
        base = first.setdefault(row.precision, row)
        percent = f"{row.percent_of_peak:.0f}% of {row.peak:.0f}" if row.percent_of_peak else "-"
        ran = f" (ran {row.ran_at})" if row.ran_at not in ("", row.precision) else ""
        lines.append(f"| {row.variant} | {row.precision}{ran} | {row.p50_ms:.1f} | {row.min_ms:.1f} "
                     f"| {row.p50_ms / base.p50_ms:.2f}x | {row.min_ms / base.min_ms:.2f}x | {row.gflop:.2f} "
                     f"| {percent} | {row.errors.max_abs_logit:.2e} | {row.errors.min_cosine:.6f} | {row.gate} |")
    return "\n".join(lines)


def say(text: str) -> None:
    """Progress goes to stderr; the tables to stdout."""
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import os

    from vitship.models import load_weights
    parser = argparse.ArgumentParser(prog="python -m vitship.bench.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="seeded")
    parser.add_argument("--arch", default="vit_small_patch16_384", help="tiny: the test ViT, for the mechanics")
    parser.add_argument("--format", default="executorch,litert,onnx,openvino", help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--out", type=Path, default=Path("artifacts-speed"))
    parser.add_argument("--only", default="", help="comma list: keep the variants whose label contains one (e.g. default)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--calls", type=int, default=CALLS)
    args = parser.parse_args(argv)
    formats = [f for f in args.format.split(",") if f]
    unknown = [f for f in formats if f not in VARIANTS]
    if unknown:
        parser.error(f"unknown format {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    loaded = load_weights(args.weights, spec_for(args.arch))
    built = {}
    for fmt in formats:
        for (label, precision), found in export_variants(loaded, fmt, tuple(args.precision.split(",")), args.out,
                                                          tuple(w for w in args.only.split(",") if w)).items():
            built[(fmt, label, precision)] = found
    start = tuple(round(v, 2) for v in os.getloadavg())
    rows = measure(loaded, built, args.rounds, args.calls)
    print(f"weights {args.weights}; {', '.join(formats)} timed together; load average {start} before, "
          f"{tuple(round(v, 2) for v in os.getloadavg())} after")
    for fmt in formats:
        print(f"\n{table(fmt, rows)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
