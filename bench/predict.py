"""vitship predict: images through artifacts and the PyTorch reference, one row per (image, artifact, target).

Each image runs with the preprocessing the artifact will have on the device: a tensor-input artifact gets
vitship's Pillow preprocessing (vitship.models.preprocess), up to PREDICT_BATCH images per call (the session
splits each batch into the sizes its artifact accepts: runtimes.batching); an image-input artifact gets the
decoded 8-bit RGB photo at its own size and preprocesses it itself (runtimes.frames), one per call, so
``vitship predict photo.jpg --artifact openvino-image-int8`` is what the device computes. Unreadable images are
listed, never fatal; an artifact that cannot open or run marks its own rows. The default runs are the artifact each
available target would ship (decide.target_picks) plus the PyTorch reference; CoreML runs on coreml:reference on Linux.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.models import LOGITS_NAME, ImageError, VitshipError, fake_probability, load_image, preprocess
from vitship.models.status import Status
from vitship.runtimes.base import TARGET_LABELS

PREDICT_SCHEMA_VERSION = 1
PREDICT_BATCH = 8  # images per call; the session splits it into its artifact's accepted sizes
REFERENCE_ID, REFERENCE_TARGET = "torch-fp32", "torch:cpu"
PILLOW, IN_ARTIFACT = "vitship (Pillow)", "in the artifact"


class PredictError(VitshipError):
    """Nothing to predict with, or nothing readable to predict on."""


@dataclass(frozen=True)
class PredictOptions:
    artifacts: tuple[str, ...] = ()  # artifact ids; empty: each available target's pick
    target: str | None = None  # run every chosen artifact on this target
    threshold: float = 0.5  # fake probability at or above which the label is "fake"


@dataclass
class Prediction:
    """One image on one artifact and target, and whether it decides like the PyTorch reference."""

    image: str
    artifact: str
    target: str
    status: Status = Status.OK
    reason: str = ""
    label: str = ""
    fake_probability: float | None = None
    agrees: bool | None = None  # same label as the reference
    probability_delta: float | None = None  # this probability - the reference's
    note: str = ""  # what the target is, where it needs saying (the reference executor)
    preprocessing: str = PILLOW  # PILLOW (vitship's, before a tensor input) or IN_ARTIFACT (an image-input artifact's own)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "status": str(self.status)}


@dataclass
class PredictResult:
    rows: list[Prediction] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)  # {"path", "reason"}
    notes: list[str] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def failed(self) -> list[Prediction]:
        return [r for r in self.rows if r.status.failed]

    def to_dict(self) -> dict:
        return {"schema_version": PREDICT_SCHEMA_VERSION, "threshold": self.threshold, "notes": self.notes,
                "unreadable": self.unreadable, "rows": [r.to_dict() for r in self.rows]}


@dataclass
class PredictImage:
    """One readable image: its name, vitship's preprocessing of it and the decoded frame (for image-input artifacts)."""

    name: str
    pixels: np.ndarray  # (1, C, H, W) float32
    frame: np.ndarray  # (height, width, 3) uint8 RGB, as decoded


def read_images(paths: list[Path], spec) -> tuple[list[PredictImage], list[dict]]:
    """Each readable image, and {"path", "reason"} for the others (a refused size, a corrupt file, ...)."""
    readable, unreadable = [], []
    for path in paths:
        try:
            frame = load_image(path)
            readable.append(PredictImage(str(path), preprocess(frame, spec), np.asarray(frame)))
        except (ImageError, OSError, ValueError) as err:
            unreadable.append({"path": str(path), "reason": str(err)})
    return readable, unreadable


def _first_available_target(fmt: str, statuses) -> str | None:
    """A CPU target first, then any available target that runs ``fmt`` (coreml:reference on Linux)."""
    from vitship.bench.accuracy import default_target
    from vitship.runtimes import can_run

    runnable = [s for s in statuses if s.available and can_run(s.target, fmt)]
    if "coreml" in fmt.split("-"):  # a Core ML program: Core ML or its reference, as eval scores it
        return default_target(fmt, statuses) if runnable else None
    ordered = [s for s in runnable if s.device.lower() == "cpu"] + [s for s in runnable if s.device.lower() != "cpu"]
    return ordered[0].target if ordered else None


def plan_runs(model_dir: Path, options: PredictOptions, statuses, picks: dict[str, str]) -> tuple[list[tuple], list[str]]:
    """[(Artifact, target)] to run besides the reference, and notes on what was chosen and why."""
    from vitship.exporters.base import manifest_artifacts
    from vitship.models import UnknownNameError

    artifacts = {a.id: a for a in manifest_artifacts(model_dir)}
    available = {s.target for s in statuses if s.available}
    if options.target and options.target not in available:
        known = [s.target for s in statuses]
        if options.target not in known:
            raise UnknownNameError("target", options.target, known)
        raise PredictError(f"{options.target} is not available here: "
                           f"{next(s.reason for s in statuses if s.target == options.target)}")
    for name in options.artifacts:
        if name not in artifacts and name != REFERENCE_ID:
            raise UnknownNameError("artifact", name, list(artifacts))
    notes = []
    if options.artifacts:
        chosen = [artifacts[name] for name in options.artifacts if name != REFERENCE_ID]
        return [(a, options.target or _first_available_target(a.format, statuses)) for a in chosen], notes
    runs = [(artifacts[aid], target) for target, aid in sorted(picks.items())
            if target in available and aid in artifacts and not target.startswith("torch:")
            and (options.target in (None, target))]
    if not runs:
        notes.append("no recommendation to follow (run vitship parity and vitship bench first): every artifact ran")
        runs = [(a, options.target or _first_available_target(a.format, statuses)) for a in artifacts.values()]
    return runs, notes


def _run(session, images: list[PredictImage], spec, frames: bool) -> np.ndarray:
    """The fake probability of each image, (N,): frames one per call, tensors as one batch."""
    outputs = session.run_frames([i.frame for i in images]) if frames else session.run_outputs(
        np.concatenate([i.pixels for i in images]))
    return fake_probability(np.asarray(outputs[LOGITS_NAME]), spec)


def _predict_on(artifact, target: str, model_dir: Path, images: list[PredictImage], loaded, reference: dict[str, float],
                threshold: float):
    from vitship.runtimes import SessionOptions, open_session, takes_frames

    note, frames = TARGET_LABELS.get(target, ""), takes_frames(artifact.input_spec)
    rows = [Prediction(i.name, artifact.id, target or "-", note=note, preprocessing=IN_ARTIFACT if frames else PILLOW)
            for i in images]
    try:
        if target is None:
            raise PredictError(f"no available target runs {artifact.format} here")
        session = open_session(artifact, model_dir, target, SessionOptions(loaded=loaded))
    except Exception as err:  # a runtime that cannot open marks its own rows; the other artifacts still run
        unavailable = type(err).__name__ in ("RuntimeUnavailable", "PredictError")
        for row in rows:
            row.status, row.reason = (Status.UNAVAILABLE if unavailable else Status.ERROR), str(err)
        return rows
    step = 1 if frames else PREDICT_BATCH  # a frame the artifact refuses marks its own row only
    try:
        for start in range(0, len(images), step):
            part = slice(start, start + step)
            try:
                probabilities = _run(session, images[part], loaded.spec, frames)
            except Exception as err:  # a runtime failing on this batch marks its rows; the next batch still runs
                for row in rows[part]:
                    reason = str(err) if isinstance(err, VitshipError) else f"{type(err).__name__}: {err}"
                    row.status, row.reason = Status.ERROR, reason
                continue
            for row, image, probability in zip(rows[part], images[part], probabilities):
                _fill(row, float(probability), reference.get(image.name), threshold)
    finally:
        session.close()
    return rows


def _fill(row: Prediction, probability: float, reference: float | None, threshold: float) -> None:
    row.fake_probability, row.label = probability, "fake" if probability >= threshold else "real"
    if reference is not None:
        row.agrees = (probability >= threshold) == (reference >= threshold)
        row.probability_delta = probability - reference


def predict(model_dir: Path, images: list[Path], options: PredictOptions = PredictOptions(), loaded=None) -> PredictResult:
    """Every readable image on the reference and on each planned (artifact, target)."""
    from vitship.bench.parity.run import load_reference
    from vitship.bench.report.decide import target_picks
    from vitship.bench.report.sources import build_rows, load_sources, weights_and_environment
    from vitship.runtimes import available_targets, torch_artifact

    loaded = loaded or load_reference(Path(model_dir))
    readable, unreadable = read_images([Path(p) for p in images], loaded.spec)
    result = PredictResult(unreadable=unreadable, threshold=options.threshold)
    if not readable:
        raise PredictError(f"none of the {len(images)} images could be read: "
                           + "; ".join(f"{u['path']}: {u['reason']}" for u in unreadable))
    statuses = available_targets()
    sources = load_sources(Path(model_dir))
    environment = weights_and_environment(sources)[1]
    picks = target_picks(build_rows(sources, environment), environment)
    runs, result.notes = plan_runs(Path(model_dir), options, statuses, picks)
    reference_rows = _predict_on(torch_artifact(loaded, "fp32"), REFERENCE_TARGET, Path(model_dir), readable, loaded, {},
                                 options.threshold)
    reference = {r.image: r.fake_probability for r in reference_rows if r.fake_probability is not None}
    result.rows = reference_rows
    for artifact, target in runs:
        result.rows += _predict_on(artifact, target, Path(model_dir), readable, loaded, reference, options.threshold)
    result.rows.sort(key=lambda r: (r.image, r.artifact != REFERENCE_ID, r.artifact, r.target))
    return result
