"""Parity: every (artifact, target) against the PyTorch fp32 reference with the weights the manifest records.

Flow: `prepare(model_dir)` loads and verifies the reference and computes its outputs once;
`plan.select_rows()` pairs artifacts with the targets that run their format; `sweep.run_rows()` checks
each row in its own worker process (bench/parity/worker.py), where `check_row()` runs one pair at
every batch size and returns a ParityResult (it never raises for a row's own failure, and a worker
that dies becomes an error row); `ParityReport` + `write_parity_report()` persist the rows as
parity.json next to the manifest. Library code computes and judges; the CLI prints.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitship.bench.parity.frames import FrameInputs, parity_photos
from vitship.bench.parity.plan import RowPlan
from vitship.bench.parity.results import BatchConsistency, ParityResult
from vitship.exporters import base as exporter_base
from vitship.exporters.base import Artifact, ArtifactIntegrityError, resolve_artifact_path
from vitship.models import ModelSpec, VitshipError, preprocess
from vitship.models.judgement import FRAMES, Metrics, Tolerance, ToleranceTable, compare, effective_precision, judge
from vitship.models.status import Status
from vitship.runtimes import TARGET_LABELS, RuntimeUnavailable, SessionOptions, open_session, takes_frames, torch_artifact

WORKER_MODULE = "vitship.bench.parity.worker"

if TYPE_CHECKING:  # torch: a worker checking an ONNX or OpenVINO row never imports it
    from vitship.models import LoadedModel


class ArtifactRefused(VitshipError):
    """An artifact that cannot be trusted for parity: other weights, or its bytes differ from the manifest."""


@dataclass(frozen=True)
class ParityConfig:
    batch_sizes: tuple[int, ...] = (1, 8)
    random_inputs: int = 5  # 18 photos + 5 = 23: batch 8 also exercises a remainder batch of 7
    random_frames: int = 6  # seeded random frames of odd sizes for image-input artifacts (bench/parity/frames.py)
    data_dir: str | None = None  # more photos (a folder of images), checked beside the bundled ones
    seed: int = 0
    threshold: float = 0.5
    photo_limit: int | None = None
    row_timeout_s: float = 1800.0  # a worker still running after this is killed and its row is an error

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ParityConfig":
        return cls(**{**data, "batch_sizes": tuple(data["batch_sizes"])})


@dataclass
class ParityInputs:
    pixels: np.ndarray  # (N, C, H, W) float32: photos first, then seeded random tensors
    names: list[str]
    is_photo: np.ndarray

    @classmethod
    def build(cls, spec: ModelSpec, config: ParityConfig, photos: list[Path] | None = None) -> "ParityInputs":
        photos = photos if photos is not None else parity_photos(config.photo_limit, config.data_dir)
        rng = np.random.default_rng(config.seed)
        noise = rng.uniform(-1.0, 1.0, size=(config.random_inputs, *spec.input_shape)).astype(np.float32)
        pixels = np.concatenate([preprocess(photos, spec), noise]) if photos else noise
        names = [Path(p).name for p in photos] + [f"random-{i}" for i in range(config.random_inputs)]
        is_photo = np.arange(len(names)) < len(photos)
        return cls(np.ascontiguousarray(pixels), names, is_photo)


@dataclass
class ParityContext:
    """What every row is compared with: the model dir, the reference's spec and weights, inputs and outputs.

    ``loaded`` is the reference model in the parent; a worker has none (its torch rows reload the
    weights the artifact records and verify their sha256).
    """

    model_dir: Path
    spec: ModelSpec
    weights_sha256: str
    inputs: ParityInputs
    reference: dict[str, np.ndarray]
    config: ParityConfig = field(default_factory=ParityConfig)
    tolerances: ToleranceTable = field(default_factory=ToleranceTable)
    options: SessionOptions = field(default_factory=SessionOptions)
    loaded: LoadedModel | None = None
    frames: FrameInputs | None = None  # decoded photos at their own sizes, for image-input artifacts

    def save(self, folder: Path) -> dict:
        """Write the inputs and reference outputs to ``folder``; returns the JSON a worker rebuilds this from."""
        data = Path(folder) / "parity-data.npz"
        np.savez(data, pixels=self.inputs.pixels, is_photo=self.inputs.is_photo, names=np.array(self.inputs.names),
                 **{f"reference.{k}": v for k, v in self.reference.items()}, **(self.frames.arrays() if self.frames else {}))
        return {"model_dir": str(self.model_dir), "spec": self.spec.to_dict(), "weights_sha256": self.weights_sha256,
                "data": str(data), "config": self.config.to_dict(), "tolerances": self.tolerances.overrides}

    @classmethod
    def load(cls, saved: dict) -> "ParityContext":
        with np.load(saved["data"]) as data:
            inputs = ParityInputs(data["pixels"], [str(n) for n in data["names"]], data["is_photo"])
            reference = {k.split(".", 1)[1]: data[k] for k in data.files if k.startswith("reference.")}
            frames = FrameInputs.from_arrays(data)
        return cls(Path(saved["model_dir"]), ModelSpec.from_dict(saved["spec"]), saved["weights_sha256"], inputs,
                   reference, ParityConfig.from_dict(saved["config"]), ToleranceTable(saved["tolerances"]), frames=frames)


def run_batched(session, pixels: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """All outputs for `pixels`, fed `batch` at a time (the last batch holds the remainder); the session splits a
    batch its artifact does not accept into accepted sizes (runtimes.batching), as an app splits its work."""
    chunks = [session.run_outputs(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def reference_weights(model_dir: Path) -> dict:
    """The weights info the manifest records (top level, else the first artifact's)."""
    from vitship.exporters.manifest import Manifest

    weights = Manifest.read(model_dir).reference_weights()
    if not weights:
        raise ArtifactRefused(f"{model_dir}: the manifest records no weights; export first (vitship export --all)")
    return weights


def manifest_spec(model_dir: Path) -> ModelSpec:
    from vitship.exporters.manifest import Manifest

    data = Manifest.read(model_dir).spec_dict()
    data = data.get("spec", data)
    if "architecture" not in data:
        raise ArtifactRefused(f"{model_dir}: the manifest does not record the model spec; re-export with --force")
    return ModelSpec.from_dict(data)


def load_reference(model_dir: Path, weights_source: str | None = None) -> LoadedModel:
    """Reload the weights the manifest records (or `weights_source`) and check their sha256 against it."""
    from vitship.models import load_weights

    recorded = reference_weights(model_dir)
    loaded = load_weights(weights_source or recorded["source"], manifest_spec(model_dir))
    if loaded.info.sha256 != recorded["sha256"]:
        raise ArtifactRefused(
            f"weights {loaded.info.source} hash to {loaded.info.sha256[:16]}, but {model_dir}/manifest.json was exported "
            f"from {recorded['sha256'][:16]} ({recorded['source']}); pass the same --weights or re-export")
    return loaded


def prepare(model_dir: Path, loaded: LoadedModel | None = None, config: ParityConfig = ParityConfig(),
            tolerances: ToleranceTable | None = None, options: SessionOptions | None = None,
            frames: bool = False) -> ParityContext:
    """Load (or take) the reference and compute its fp32 outputs on every parity input once; ``frames``: also
    decode the photos as frames for image-input artifacts, with the reference on each."""
    loaded = loaded or load_reference(Path(model_dir))
    options = options or SessionOptions()
    inputs = ParityInputs.build(loaded.spec, config)
    session = open_session(torch_artifact(loaded, "fp32"), Path(model_dir), "torch:cpu", options.replace(loaded=loaded))
    try:
        reference = run_batched(session, inputs.pixels, max(config.batch_sizes))
        photos = parity_photos(config.photo_limit, config.data_dir)  # the tensor inputs' photos first: their reference
        frame_inputs = FrameInputs.build(photos, loaded.spec, config.random_frames, config.seed, lambda pixels: run_batched(
            session, pixels, max(config.batch_sizes)), reference) if frames else None
    finally:
        session.close()
    return ParityContext(Path(model_dir), loaded.spec, loaded.info.sha256, inputs, reference, config,
                         tolerances or ToleranceTable(), options, loaded, frame_inputs)


def verify_artifact(artifact: Artifact, model_dir: Path, weights_sha256: str) -> None:
    """Refuse an artifact made from other weights, or whose bytes no longer match the manifest."""
    recorded = (artifact.weights or {}).get("sha256", "")
    if recorded != weights_sha256:
        raise ArtifactRefused(f"refused: {artifact.id} was exported from weights {recorded[:16] or '(unrecorded)'}, "
                              f"not the reference's {weights_sha256[:16]}; re-export it (vitship export --force)")
    if artifact.format == "torch":
        return
    path = resolve_artifact_path(model_dir, artifact)
    if not path.exists():
        raise ArtifactRefused(f"refused: {artifact.id}: {path} is missing; re-export it (vitship export)")
    try:
        exporter_base.verify_artifact(model_dir, artifact)  # cached per file identity: the session's own check then costs nothing
    except ArtifactIntegrityError as err:
        raise ArtifactRefused(f"refused: {artifact.id}: {err}") from err


def _label(artifact_precision: str, runtime: str, effective: str, source: str) -> str:
    if runtime == artifact_precision or runtime not in ("fp32", "fp16", "bf16"):
        return effective
    detail = f"{source}" if effective == runtime else f"{source} {runtime}"
    return f"{effective} ({detail})"


def _measure(plan: RowPlan, ctx: ParityContext, result: ParityResult) -> None:
    options = plan.options.replace(loaded=ctx.loaded) if plan.artifact.format == "torch" else plan.options
    frames = takes_frames(plan.artifact.input_spec)
    assert not frames or ctx.frames is not None, "prepare(frames=True) decodes the frames image-input rows need"
    sizes, left_out = plan.batch_sizes(ctx.config.batch_sizes)
    session = open_session(plan.artifact, ctx.model_dir, plan.status.target, options)
    result.notes += [left_out] if left_out and not frames else []  # once the row runs
    try:
        result.session = session.info.to_dict()
        runs = {1: session.run_frames(ctx.frames.frames)} if frames else {
            b: run_batched(session, ctx.inputs.pixels, b) for b in sizes}
    finally:
        session.close()
    info = result.session
    runtime = info.get("precision") or plan.artifact.precision
    result.runtime_precision = runtime
    result.effective_precision = effective_precision(plan.artifact.precision, runtime)
    source = info.get("extra", {}).get("precision_source", "runtime")
    result.precision_label = _label(plan.artifact.precision, runtime, result.effective_precision, source)
    result.note = info.get("extra", {}).get("note", "") or result.note
    # frames: judged end to end, by the frame gates and the artifact's own name (onnx-image-fp32)
    name = plan.artifact.id.removesuffix(f"-{plan.artifact.precision}") if frames else plan.artifact.format
    tolerance, keys = ctx.tolerances.lookup(name, plan.artifact.precision, result.effective_precision, FRAMES if frames else "")
    result.inputs = FRAMES if frames else result.inputs
    result.tolerance, result.tolerance_keys = tolerance, keys
    _judge(runs, ctx.frames if frames else ctx.inputs, ctx.frames.reference if frames else ctx.reference, ctx, tolerance, result)


def _judge(runs: dict[int, dict], inputs: ParityInputs | FrameInputs, reference: dict[str, np.ndarray], ctx: ParityContext,
           tolerance: Tolerance, result: ParityResult) -> None:
    """Metrics and verdict of ``runs`` (by batch size) against ``reference``: judge, the export gate's rule."""
    sizes = sorted(runs)
    spec, band = ctx.spec, tolerance.max_prob or 0.0
    names = [f"{n}@b{b}" for b in sizes for n in inputs.names]
    stacked = {k: np.concatenate([runs[b][k] for b in sizes]) for k in runs[sizes[0]]}
    reference = {k: np.concatenate([v] * len(sizes)) for k, v in reference.items()}
    judgement = judge(stacked, reference, spec, names, np.tile(inputs.is_photo, len(sizes)), result.effective_precision,
                      tolerance, ctx.config.threshold, repeats=len(sizes))
    metrics = result.metrics = judgement.metrics
    result.noise_metrics = judgement.noise
    failures = list(judgement.failures)
    if tolerance.min_agreement is not None and metrics.decisive_agreement is None and metrics.n_photos:
        result.notes.append(f"agreement not gated: all {metrics.n_photos} photo decisions are ambiguous "
                            f"(reference probability within {band:g} of {ctx.config.threshold}); "
                            f"{metrics.ambiguous_flips} flipped")
    if len(sizes) > 1:  # the same image at batch 1 and at the largest batch, judged by the same gate
        consistency: Metrics = compare(runs[sizes[-1]], runs[sizes[0]], spec, inputs.names, inputs.is_photo, band,
                                       ctx.config.threshold)
        inconsistent = tolerance.judge(consistency, f"batch {sizes[-1]} vs batch {sizes[0]}")
        result.batch_consistency = BatchConsistency([sizes[0], sizes[-1]], consistency,
                                                    Status.FAIL if inconsistent else Status.PASS)
        failures += inconsistent
    result.failures = failures
    result.status = Status.FAIL if failures else Status.PASS
    result.reason = "; ".join(failures)


def new_result(plan: RowPlan) -> ParityResult:
    """The row before it runs: an error until measured, unavailable (with the reason) where the target is."""
    artifact = plan.artifact
    result = ParityResult(artifact=artifact.id, target=plan.status.target, format=artifact.format,
                          artifact_precision=artifact.precision, variant=plan.variant,
                          note=TARGET_LABELS.get(plan.status.target, ""))
    result.note_export_gate(artifact)
    if not plan.status.available:
        result.status, result.reason = Status.UNAVAILABLE, plan.status.reason
    return result


def check_row(plan: RowPlan, ctx: ParityContext) -> ParityResult:
    """One row's ParityResult, in this process. A row's own failure (unavailable, refused, crashed) is its status."""
    result = new_result(plan)
    if result.status is Status.UNAVAILABLE:
        return result
    started = time.perf_counter()
    try:
        verify_artifact(plan.artifact, ctx.model_dir, ctx.weights_sha256)
        _measure(plan, ctx, result)
    except RuntimeUnavailable as err:
        result.status, result.reason = Status.UNAVAILABLE, str(err)
    except VitshipError as err:
        result.status, result.reason = Status.ERROR, str(err)
    except Exception as err:  # a runtime that raises marks its row and the run goes on
        result.status, result.reason = Status.ERROR, f"{type(err).__name__}: {err}"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def check_row_isolated(plan: RowPlan, saved_context: dict, timeout_s: float, env: dict | None = None) -> ParityResult:
    """One row checked in its own worker process (``env``: added to its environment); a worker that dies or hangs
    gives an error row."""
    from vitship.bench.isolated import run_worker

    result = new_result(plan)
    if result.status is Status.UNAVAILABLE:
        return result
    run = run_worker(WORKER_MODULE, {"plan": plan.to_dict(), "context": saved_context}, timeout_s, env)
    if run.result and "artifact" in run.result:
        result = ParityResult.from_dict(run.result)
    else:
        result.reason = run.failure(timeout_s)
        result.seconds = round(run.seconds, 3)
    result.worker = run.record()
    return result
