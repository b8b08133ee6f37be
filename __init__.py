"""vitship: ship the ViT deepfake detector to edge devices (export, parity, bench, report).

The top-level folders are this package's subpackages: ``vitship.models``, ``vitship.exporters``,
``vitship.runtimes`` and ``vitship.bench``. The functions below are the Python API for scripts and
notebooks; each returns the result objects the CLI prints, and none of them prints or exits.
``import vitship`` stays light: torch and the runtime backends are imported when a function runs.

    import vitship
    loaded = vitship.load_weights("seeded", arch="tiny")
    results = vitship.export(loaded, formats=["onnx"], precisions=["fp32"])      # [ExportResult]
    report = vitship.parity("artifacts", arch="tiny", targets=["onnxruntime:cpu"])  # ParityReport
    bench = vitship.benchmark("artifacts", arch="tiny", quick=True)               # BenchReport
    session = vitship.open_session("onnx-fp32", "onnxruntime:cpu", artifacts="artifacts", arch="tiny")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from vitship.bench.accuracy import EvalReport
    from vitship.bench.latency.results import BenchReport
    from vitship.bench.parity.results import ParityReport
    from vitship.exporters.base import Artifact, ExportOptions
    from vitship.exporters.int8.verdict import Int8Gate
    from vitship.exporters.pipeline import ExportResult
    from vitship.models import LoadedModel
    from vitship.runtimes import Session

DEFAULT_ARCH = "vit_small_patch16_384"
__all__ = ["benchmark", "evaluate", "export", "load_weights", "model_dir", "open_session", "parity"]


def load_weights(source: str = "seeded", arch: str = DEFAULT_ARCH) -> "LoadedModel":
    """The model for one ``--weights`` value (seeded[:N], a transformers dir, a state dict, hf:ORG/NAME@REV)."""
    from vitship.models import load_weights as load
    from vitship.models import spec_for

    return load(source, spec_for(arch))


def model_dir(artifacts: str | Path = "artifacts", model: str | None = None, arch: str = DEFAULT_ARCH) -> Path:
    """The model folder (with manifest.json) that ``artifacts`` names, as the CLI's --artifacts/--model/--arch do."""
    from vitship.exporters.pipeline import find_model_dir

    return find_model_dir(Path(artifacts), model, arch)


def export(weights: "str | LoadedModel" = "seeded", formats: Sequence[str] | None = None,
           precisions: Sequence[str] | None = None, *, arch: str = DEFAULT_ARCH, out: str | Path = "artifacts",
           options: Mapping[str, "ExportOptions"] | None = None, force: bool = False,
           wait_s: float = 0.0, gate: "bool | Int8Gate" = True, jobs: int = 1) -> list["ExportResult"]:
    """Export to every requested format and precision (all registered ones by default); skips what is up to date.

    Every int8 goes through the export's int8 gate and ladder, as with ``vitship export`` (docs/DESIGN.md "int8
    policy"); ``gate=False`` ships the requested recipe with a "not checked" verdict that parity, the report and
    compare show; an ``Int8Gate`` replaces the default one. Returns one ExportResult per artifact; a failed export
    (``status`` fail or error) is a result, not an exception; ``result.int8`` is an int8's record. Another export
    into the same model folder is waited for up to ``wait_s`` seconds, then refused
    (``vitship.exporters.lock.FolderLockedError``, naming its pid). ``jobs=2`` builds two formats at a time in
    worker processes, as ``vitship export`` does (spawned: a script needs ``if __name__ == "__main__":``).
    """
    from vitship.exporters.pipeline import export_all, resolve_requests

    loaded = load_weights(weights, arch) if isinstance(weights, str) else weights
    requests = resolve_requests(list(formats) if formats else None, list(precisions) if precisions else None)
    if gate is True:
        from vitship.bench.int8_gate import int8_gate

        gate = int8_gate(loaded)
    return export_all(loaded, Path(out), requests, options, gate=gate, force=force, wait_s=wait_s, jobs=jobs)


def parity(artifacts: str | Path = "artifacts", *, arch: str = DEFAULT_ARCH, model: str | None = None,
           artifact_ids: Sequence[str] = (), targets: Sequence[str] = (), weights: str | None = None,
           with_torch: bool = True, config: Any = None, tolerances: Any = None, write: bool = True) -> "ParityReport":
    """Check artifacts on targets against the PyTorch fp32 reference, each row in its own worker process.

    Args:
        config: a ``vitship.bench.parity.run.ParityConfig`` (batch sizes, random inputs, row timeout).
        tolerances: a ``vitship.models.judgement.ToleranceTable`` of overrides.
        write: also write parity.json next to the manifest, as ``vitship parity`` does.
    """
    from vitship.bench.parity.results import write_parity_report
    from vitship.bench.parity.run import ParityConfig
    from vitship.bench.parity.sweep import ParityRequest, run_parity

    folder = model_dir(artifacts, model, arch)
    request = ParityRequest(weights, tuple(artifact_ids), tuple(targets), with_torch)
    report = run_parity(folder, request, config or ParityConfig(), tolerances)
    if write:
        write_parity_report(folder, report)
    return report


def benchmark(artifacts: str | Path = "artifacts", *, arch: str = DEFAULT_ARCH, model: str | None = None,
              weights: str = "seeded", config: Any = None, quick: bool = False, out: str | Path | None = None,
              write: bool = True) -> "BenchReport":
    """Measure latency, throughput and memory of every artifact on every target, one worker process per row.

    Args:
        config: a ``vitship.bench.latency.sweep.BenchConfig``; default ``BenchConfig.quick()`` with
            ``quick``, else ``BenchConfig()`` (batches 1, 8, 32).
        write: also write bench.json/.csv/.md and the plots to ``out`` (default <model folder>/bench).
    """
    from vitship.bench.latency.results import write_report
    from vitship.bench.latency.sweep import BenchConfig, run_bench
    from vitship.models import spec_for

    folder = model_dir(artifacts, model, arch)
    report = run_bench(folder, spec_for(arch), weights, config or (BenchConfig.quick() if quick else BenchConfig()))
    if write:
        write_report(report, Path(out) if out else folder / "bench")
    return report


def evaluate(data: str | Path, artifacts: str | Path = "artifacts", *, arch: str = DEFAULT_ARCH,
             model: str | None = None, weights: str | None = None, options: Any = None,
             write: bool = True) -> "EvalReport":
    """Score a labelled folder (real/ + fake/, or a path,label CSV) with every artifact and the reference.

    ``options`` is a ``vitship.bench.accuracy.EvalOptions`` (threshold, batch size, targets).
    """
    from vitship.bench.accuracy import EvalOptions, write_eval
    from vitship.bench.accuracy import evaluate as run
    from vitship.bench.parity.run import load_reference

    folder = model_dir(artifacts, model, arch)
    report = run(folder, Path(data), load_reference(folder, weights), options or EvalOptions())
    if write:
        write_eval(folder, report)
    return report


def open_session(artifact: "str | Artifact", target: str, *, artifacts: str | Path = "artifacts",
                 arch: str = DEFAULT_ARCH, model: str | None = None, options: Any = None) -> "Session":
    """Open an artifact (an id from the manifest, or an Artifact) on a target such as ``onnxruntime:cpu``.

    The session's ``run(batch)`` returns the logits and ``run_outputs(batch)`` every output by name; an image-input
    artifact's session (``onnx-image-*``, ``openvino-image-*``, ...) also takes decoded frames,
    ``run_frames([uint8 RGB (height, width, 3) arrays])``. Close it when done. ``options`` is a
    ``vitship.runtimes.SessionOptions``.
    """
    from vitship.exporters.base import manifest_artifacts
    from vitship.models import UnknownNameError
    from vitship.runtimes import open_session as open_

    folder = model_dir(artifacts, model, arch)
    if isinstance(artifact, str):
        known = {a.id: a for a in manifest_artifacts(folder)}
        if artifact not in known:
            raise UnknownNameError("artifact", artifact, list(known))
        artifact = known[artifact]
    return open_(artifact, folder, target, options)
