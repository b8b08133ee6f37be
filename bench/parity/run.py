"""Parity: every (artifact, target) against the PyTorch fp32 reference with the weights the manifest records.

Flow: `prepare(model_dir)` loads and verifies the reference and computes its outputs once;
`plan_rows()` pairs artifacts with the targets that run their format; `check_row()` runs one pair
at every batch size and returns a ParityResult (it never raises for a row's own failure);
`parity_report()` + `write_parity_report()` persist the rows as parity.json next to the manifest.
Library code computes and judges; the CLI prints.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.bench.parity.metrics import Metrics, Tolerance, ToleranceTable, compare, effective_precision
from vitship.exporters.base import Artifact, path_sha256, read_manifest
from vitship.models import LoadedModel, ModelSpec, VitshipError, load_weights, preprocess, sample_images
from vitship.models.atomic import atomic_write_json
from vitship.runtimes import RuntimeUnavailable, SessionOptions, TargetStatus, can_run, open_session, torch_artifact

SCHEMA_VERSION = 1
PARITY_NAME = "parity.json"
VERDICTS = ("pass", "fail", "unavailable", "error")
REFERENCE_NOTE = "reference executor, not the Apple runtime"


class ArtifactRefused(VitshipError):
    """An artifact that cannot be trusted for parity: other weights, or its bytes differ from the manifest."""


@dataclass(frozen=True)
class ParityConfig:
    batch_sizes: tuple[int, ...] = (1, 8)
    random_inputs: int = 5  # 18 photos + 5 = 23: batch 8 also exercises a remainder batch of 7
    seed: int = 0
    threshold: float = 0.5
    photo_limit: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ParityInputs:
    pixels: np.ndarray  # (N, C, H, W) float32: photos first, then seeded random tensors
    names: list[str]
    is_photo: np.ndarray

    @classmethod
    def build(cls, spec: ModelSpec, config: ParityConfig, photos: list[Path] | None = None) -> "ParityInputs":
        photos = photos if photos is not None else sample_images(config.photo_limit)
        rng = np.random.default_rng(config.seed)
        noise = rng.uniform(-1.0, 1.0, size=(config.random_inputs, *spec.input_shape)).astype(np.float32)
        pixels = np.concatenate([preprocess(photos, spec), noise]) if photos else noise
        names = [Path(p).name for p in photos] + [f"random-{i}" for i in range(config.random_inputs)]
        is_photo = np.arange(len(names)) < len(photos)
        return cls(np.ascontiguousarray(pixels), names, is_photo)


@dataclass
class ParityContext:
    """What every row is compared with: the model dir, the reference model, inputs and reference outputs."""

    model_dir: Path
    loaded: LoadedModel
    inputs: ParityInputs
    reference: dict[str, np.ndarray]
    config: ParityConfig = field(default_factory=ParityConfig)
    tolerances: ToleranceTable = field(default_factory=ToleranceTable)
    options: SessionOptions = field(default_factory=SessionOptions)


@dataclass
class RowPlan:
    artifact: Artifact
    status: TargetStatus
    options: SessionOptions
    variant: str = ""  # "" for the runtime's defaults; e.g. "f32 inference" for OpenVINO's explicit-f32 row


@dataclass
class ParityResult:
    """One (artifact, target[, runtime precision]) row: every metric, the gate applied and the verdict."""

    artifact: str
    target: str
    format: str
    artifact_precision: str
    verdict: str  # pass | fail | unavailable | error
    reason: str = ""
    variant: str = ""
    runtime_precision: str = ""
    effective_precision: str = ""
    precision_label: str = ""
    metrics: dict | None = None
    batch_consistency: dict | None = None
    tolerance: dict | None = None
    tolerance_keys: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was measured but could not be gated, and why
    session: dict | None = None
    note: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ParityResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def run_batched(session, pixels: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """All outputs for `pixels`, fed `batch` at a time (the last batch holds the remainder)."""
    chunks = [session.run_outputs(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def reference_weights(model_dir: Path) -> dict:
    """The weights info the manifest records (top level, else the first artifact's)."""
    manifest = read_manifest(model_dir)
    weights = manifest.get("weights") or next((a.get("weights") for a in manifest["artifacts"].values()), None)
    if not weights:
        raise ArtifactRefused(f"{model_dir}: the manifest records no weights; export first (vitship export --all)")
    return weights


def manifest_spec(model_dir: Path) -> ModelSpec:
    manifest = read_manifest(model_dir)
    data = manifest.get("spec") or next((a.get("input_spec") for a in manifest["artifacts"].values()), None) or {}
    data = data.get("spec", data)
    if "architecture" not in data:
        raise ArtifactRefused(f"{model_dir}: the manifest does not record the model spec; re-export with --force")
    return ModelSpec.from_dict(data)


def load_reference(model_dir: Path, weights_source: str | None = None) -> LoadedModel:
    """Reload the weights the manifest records (or `weights_source`) and check their sha256 against it."""
    recorded = reference_weights(model_dir)
    loaded = load_weights(weights_source or recorded["source"], manifest_spec(model_dir))
    if loaded.info.sha256 != recorded["sha256"]:
        raise ArtifactRefused(
            f"weights {loaded.info.source} hash to {loaded.info.sha256[:16]}, but {model_dir}/manifest.json was exported "
            f"from {recorded['sha256'][:16]} ({recorded['source']}); pass the same --weights or re-export")
    return loaded


def prepare(model_dir: Path, loaded: LoadedModel | None = None, config: ParityConfig = ParityConfig(),
            tolerances: ToleranceTable | None = None, options: SessionOptions | None = None) -> ParityContext:
    """Load (or take) the reference and compute its fp32 outputs on every parity input once."""
    loaded = loaded or load_reference(Path(model_dir))
    options = options or SessionOptions()
    inputs = ParityInputs.build(loaded.spec, config)
    session = open_session(torch_artifact(loaded, "fp32"), Path(model_dir), "torch:cpu", options.replace(loaded=loaded))
    reference = run_batched(session, inputs.pixels, max(config.batch_sizes))
    session.close()
    return ParityContext(Path(model_dir), loaded, inputs, reference, config, tolerances or ToleranceTable(), options)


def verify_artifact(artifact: Artifact, model_dir: Path, weights_sha256: str) -> None:
    """Refuse an artifact made from other weights, or whose bytes no longer match the manifest."""
    recorded = (artifact.weights or {}).get("sha256", "")
    if recorded != weights_sha256:
        raise ArtifactRefused(f"refused: {artifact.id} was exported from weights {recorded[:16] or '(unrecorded)'}, "
                              f"not the reference's {weights_sha256[:16]}; re-export it (vitship export --force)")
    if artifact.format == "torch":
        return
    path = Path(model_dir) / artifact.path
    if not path.exists():
        raise ArtifactRefused(f"refused: {artifact.id}: {path} is missing; re-export it (vitship export)")
    actual = path_sha256(path)
    if actual != artifact.sha256:
        raise ArtifactRefused(f"refused: {artifact.id}: {artifact.path} hashes to {actual[:16]}, but the manifest "
                              f"records {artifact.sha256[:16]}: modified or stale; re-export it (vitship export --force)")


def plan_rows(artifacts: list[Artifact], statuses: list[TargetStatus], options: SessionOptions,
              explicit: set[str] = frozenset()) -> list[RowPlan]:
    """Every (artifact, target) whose runtime runs the artifact's format, unavailable targets included.

    torch-fp16/bf16 pair with torch:cpu only when named in `explicit` (CPU half precision is slow and
    not a deployment target). An fp32 OpenVINO IR gets a second row with inference precision f32
    when the device's default is lower (bf16 on this CPU): both are what a user may run.
    """
    from vitship.runtimes.openvino_rt import default_precision

    plans = []
    for artifact in artifacts:
        for status in statuses:
            if not can_run(status.target, artifact.format):
                continue
            if artifact.format == "torch" and artifact.precision != "fp32" and status.device == "cpu" \
                    and artifact.id not in explicit:
                continue
            plans.append(RowPlan(artifact, status, options))
            if status.runtime == "openvino" and status.available and artifact.precision == "fp32" \
                    and default_precision(status.device) not in (None, "fp32"):
                plans.append(RowPlan(artifact, status, options.replace(openvino_precision="f32"), "f32 inference"))
    return plans


def _label(artifact_precision: str, runtime: str, effective: str, source: str) -> str:
    if runtime == artifact_precision or runtime not in ("fp32", "fp16", "bf16"):
        return effective
    detail = f"{source}" if effective == runtime else f"{source} {runtime}"
    return f"{effective} ({detail})"


def _measure(plan: RowPlan, ctx: ParityContext, result: ParityResult) -> None:
    options = plan.options.replace(loaded=ctx.loaded) if plan.artifact.format == "torch" else plan.options
    session = open_session(plan.artifact, ctx.model_dir, plan.status.target, options)
    try:
        result.session = session.info.to_dict()
        runs = {b: run_batched(session, ctx.inputs.pixels, b) for b in ctx.config.batch_sizes}
    finally:
        session.close()
    info = result.session
    runtime = info.get("precision") or plan.artifact.precision
    result.runtime_precision = runtime
    result.effective_precision = effective_precision(plan.artifact.precision, runtime)
    source = info.get("extra", {}).get("precision_source", "runtime")
    result.precision_label = _label(plan.artifact.precision, runtime, result.effective_precision, source)
    result.note = info.get("extra", {}).get("note", "")
    tolerance, keys = ctx.tolerances.lookup(plan.artifact.format, plan.artifact.precision, result.effective_precision)
    result.tolerance, result.tolerance_keys = tolerance.to_dict(), keys
    _judge(runs, ctx, tolerance, result)


def _judge(runs: dict[int, dict], ctx: ParityContext, tolerance: Tolerance, result: ParityResult) -> None:
    sizes = sorted(runs)
    spec, inputs, band = ctx.loaded.spec, ctx.inputs, tolerance.max_prob or 0.0
    names = [f"{n}@b{b}" for b in sizes for n in inputs.names]
    stacked = {k: np.concatenate([runs[b][k] for b in sizes]) for k in runs[sizes[0]]}
    reference = {k: np.concatenate([v] * len(sizes)) for k, v in ctx.reference.items()}
    metrics = compare(stacked, reference, spec, names, np.tile(inputs.is_photo, len(sizes)), band, ctx.config.threshold,
                      repeats=len(sizes))
    result.metrics = metrics.to_dict()
    failures = tolerance.judge(metrics)
    if tolerance.min_agreement is not None and metrics.decisive_agreement is None and metrics.n_photos:
        result.notes.append(f"agreement not gated: all {metrics.n_photos} photo decisions are ambiguous "
                            f"(reference probability within {band:g} of {ctx.config.threshold}); "
                            f"{metrics.ambiguous_flips} flipped")
    if len(sizes) > 1:  # the same image at batch 1 and at the largest batch, judged by the same gate
        consistency: Metrics = compare(runs[sizes[-1]], runs[sizes[0]], spec, inputs.names, inputs.is_photo, band,
                                       ctx.config.threshold)
        result.batch_consistency = {"batch_sizes": [sizes[0], sizes[-1]], **consistency.to_dict()}
        failures += tolerance.judge(consistency, f"batch {sizes[-1]} vs batch {sizes[0]}")
    result.failures = failures
    result.verdict = "fail" if failures else "pass"
    result.reason = "; ".join(failures)


def check_row(plan: RowPlan, ctx: ParityContext) -> ParityResult:
    """One row's ParityResult. A row's own failure (unavailable, refused, crashed) is its verdict, never raised."""
    artifact = plan.artifact
    result = ParityResult(artifact=artifact.id, target=plan.status.target, format=artifact.format,
                          artifact_precision=artifact.precision, verdict="error", variant=plan.variant)
    if plan.status.device == "reference" and plan.status.runtime == "coreml":
        result.note = REFERENCE_NOTE
    if not plan.status.available:
        result.verdict, result.reason = "unavailable", plan.status.reason
        return result
    started = time.perf_counter()
    try:
        verify_artifact(artifact, ctx.model_dir, ctx.loaded.info.sha256)
        _measure(plan, ctx, result)
    except RuntimeUnavailable as err:
        result.verdict, result.reason = "unavailable", str(err)
    except VitshipError as err:
        result.verdict, result.reason = "error", str(err)
    except Exception as err:  # a crashing runtime marks its row and the sweep goes on
        result.verdict, result.reason = "error", f"{type(err).__name__}: {err}"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def parity_report(results: list[ParityResult], ctx: ParityContext, environment: dict) -> dict:
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment,
        "weights": ctx.loaded.info.to_dict(),
        "untrained_weights": not ctx.loaded.info.trained,
        "spec": ctx.loaded.spec.to_dict(),
        "config": ctx.config.to_dict(),
        "inputs": {"names": ctx.inputs.names, "photos": int(ctx.inputs.is_photo.sum())},
        "tolerances": ctx.tolerances.to_dict(),
        "summary": counts,
        "rows": [r.to_dict() for r in results],
    }


def write_parity_report(model_dir: Path, report: dict) -> Path:
    path = Path(model_dir) / PARITY_NAME
    atomic_write_json(path, report)
    return path


def read_parity_rows(path: Path) -> list[ParityResult]:
    import json

    data = json.loads(Path(path).read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise VitshipError(f"{path}: parity schema {data.get('schema_version')} != {SCHEMA_VERSION}; rerun vitship parity")
    return [ParityResult.from_dict(row) for row in data["rows"]]


def select_rows(model_dir: Path, loaded, artifact_ids: list[str], target_names: list[str], with_torch: bool, options):
    """The rows to check: manifest artifacts (+ PyTorch itself) x targets, narrowed by --artifact/--target."""
    from vitship.exporters.base import manifest_artifacts
    from vitship.models import UnknownNameError
    from vitship.runtimes import available_targets

    artifacts = manifest_artifacts(model_dir)
    torch_rows = [torch_artifact(loaded, p) for p in ("fp32", "fp16", "bf16")]
    if artifact_ids:
        known = {a.id: a for a in artifacts + torch_rows}
        for name in artifact_ids:
            if name not in known:
                raise UnknownNameError("artifact", name, list(known))
        artifacts = [known[name] for name in artifact_ids]
    elif with_torch:
        artifacts = artifacts + torch_rows
    statuses = available_targets()
    if target_names:
        known_targets = {s.target.lower(): s for s in statuses}
        for name in target_names:
            if name.lower() not in known_targets:
                raise UnknownNameError("target", name, [s.target for s in statuses])
        statuses = [known_targets[name.lower()] for name in target_names]
    return plan_rows(artifacts, statuses, options, explicit=set(artifact_ids))
