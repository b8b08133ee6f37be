"""Accuracy on a labelled folder: every artifact and the PyTorch reference score the same images.

The folder is either ``real/`` + ``fake/`` subfolders or a CSV of ``path,label`` (label real/fake or
0/1, fake = 1). Unreadable images are listed and skipped, never fatal. Metrics come from
scikit-learn; deltas against the reference are in percentage points.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.models import ImageError, LoadedModel, ModelSpec, VitshipError, preprocess
from vitship.models.atomic import atomic_write_json

EVAL_NAME = "eval.json"
EVAL_SCHEMA_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
REFERENCE = "torch-fp32"
REFERENCE_TARGET = "torch:cpu"
METRICS = ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")
_LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}
UNTRAINED_NOTE = ("untrained weights: accuracy is meaningless here; only the agreement with the reference "
                  "says anything about the artifacts")


class DatasetError(VitshipError):
    """The labelled folder or CSV cannot be used."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # 1 = fake, 0 = real


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: decision threshold, batch size, and the target chosen per artifact or format."""

    threshold: float = 0.5
    batch_size: int = 8
    targets: dict[str, str] = field(default_factory=dict)  # artifact id or format -> target


@dataclass
class AccuracyResult:
    """One artifact's accuracy on one target, its deltas against the reference and raw scores."""

    artifact: str
    target: str
    status: str = "ok"  # ok | unavailable: <reason> | error: <reason>
    metrics: dict[str, float | None] = field(default_factory=dict)
    deltas: dict[str, float | None] = field(default_factory=dict)  # percentage points vs the reference
    agreement: float | None = None  # share of decisions equal to the reference's
    n_images: int = 0
    session: dict = field(default_factory=dict)
    probabilities: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_dataset(data: Path) -> list[LabelledImage]:
    """The labelled images of a real/ + fake/ folder or a path,label CSV (paths relative to the CSV)."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return _read_csv(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder or CSV; pass a folder with real/ and fake/ or a path,label CSV")
    items = [LabelledImage(path, label) for name, label in (("real", 0), ("fake", 1)) if (data / name).is_dir()
             for path in sorted((data / name).rglob("*")) if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise DatasetError(f"{data}: no images found; expected {data}/real/*.jpg and {data}/fake/*.jpg")
    return items


def _read_csv(path: Path) -> list[LabelledImage]:
    items = []
    with open(path, newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path}:{line_no}: expected path,label, got {row!r}")
            image, label = row[0].strip(), row[1].strip().lower()
            if line_no == 1 and (image.lower(), label) == ("path", "label"):
                continue  # the header line
            if label not in _LABELS:
                raise DatasetError(f"{path}:{line_no}: label {row[1]!r} is not real/fake/0/1")
            image_path = Path(image) if Path(image).is_absolute() else path.parent / image
            items.append(LabelledImage(image_path, _LABELS[label]))
    if not items:
        raise DatasetError(f"{path}: no labelled rows; expected lines of path,label")
    return items


def fake_probability(logits: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The 'fake' probability per image: sigmoid of a single logit, or softmax of the fake class."""
    logits = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    if spec.head_kind == "sigmoid" or logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits[:, 0]))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted[:, spec.fake_index] / shifted.sum(axis=1)


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, AUROC, average precision and F1 (scikit-learn); None when undefined."""
    from sklearn import metrics

    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predictions = (probabilities >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float(metrics.accuracy_score(labels, predictions)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predictions)) if both_classes else None,
        "auroc": float(metrics.roc_auc_score(labels, probabilities)) if both_classes else None,
        "average_precision": float(metrics.average_precision_score(labels, probabilities)) if both_classes else None,
        "f1": float(metrics.f1_score(labels, predictions, zero_division=0)) if labels.any() else None,  # no fakes: undefined
    }


def metric_deltas(metrics: dict, reference: dict) -> dict[str, float | None]:
    """metrics - reference, in percentage points (None where either side is undefined)."""
    return {name: None if metrics.get(name) is None or reference.get(name) is None
            else round((metrics[name] - reference[name]) * 100.0, 6) for name in METRICS}


def load_batches(images: list[LabelledImage], spec: ModelSpec, batch_size: int):
    """Yield (batch, labels, paths) of readable images; unreadable ones go to the returned skipped list."""
    skipped: list[dict] = []

    def generate():
        for start in range(0, len(images), batch_size):
            arrays, labels, paths = [], [], []
            for item in images[start:start + batch_size]:
                try:
                    arrays.append(preprocess(item.path, spec)[0])
                except (ImageError, OSError, ValueError) as err:
                    skipped.append({"path": str(item.path), "reason": str(err)})
                    continue
                labels.append(item.label)
                paths.append(str(item.path))
            if arrays:
                yield np.stack(arrays), labels, paths

    return generate(), skipped


def _torch_logits(loaded: LoadedModel, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits, _ = loaded.model(torch.from_numpy(batch))
    return logits.float().numpy()


def default_target(fmt: str, statuses) -> str | None:
    """The first available CPU target that runs ``fmt``, else its first CPU target (whose session says why not)."""
    from vitship.runtimes import RUNTIMES

    cpu = [s for s in statuses if s.runtime in RUNTIMES and fmt in RUNTIMES[s.runtime].formats
           and s.device.lower().startswith("cpu")]
    return next((s.target for s in cpu if s.available), cpu[0].target if cpu else None)


class _Sessions:
    """One open session per artifact; artifacts that cannot open or that fail mid-run keep a status row."""

    def __init__(self, model_dir: Path, loaded: LoadedModel, targets: dict[str, str]):
        from vitship.exporters.base import manifest_artifacts
        from vitship.runtimes import SessionOptions, available_targets, open_session

        self.open, self.results = {}, []
        statuses = available_targets()
        for artifact in manifest_artifacts(model_dir):
            target = targets.get(artifact.id) or targets.get(artifact.format) or default_target(artifact.format, statuses)
            result = AccuracyResult(artifact.id, target or "-")
            self.results.append(result)
            if artifact.weights.get("sha256") not in (None, loaded.info.sha256):
                result.status = "error: exported from other weights (sha256 differs from the reference's)"
            elif target is None:
                result.status = f"unavailable: no CPU target runs {artifact.format}"
            else:
                try:
                    self.open[artifact.id] = open_session(artifact, model_dir, target, SessionOptions(loaded=loaded))
                    result.session = self.open[artifact.id].info.to_dict()
                except VitshipError as err:
                    kind = "unavailable" if type(err).__name__ == "RuntimeUnavailable" else "error"
                    result.status = f"{kind}: {err}"
                except Exception as err:  # a runtime that cannot load an artifact marks its row only
                    result.status = f"error: {type(err).__name__}: {err}"

    def fail(self, artifact_id: str, err: Exception) -> None:
        session = self.open.pop(artifact_id)
        session.close()
        next(r for r in self.results if r.artifact == artifact_id).status = f"error: {type(err).__name__}: {err}"

    def close(self) -> None:
        for session in self.open.values():
            session.close()


def evaluate(model_dir: Path, data: Path, loaded: LoadedModel, options: EvalOptions = EvalOptions()) -> dict:
    """Score every image with the reference and every artifact in the manifest; return the eval document.

    Args:
        model_dir: the model's artifact folder (holds manifest.json).
        data: a real/ + fake/ folder or a path,label CSV.
        loaded: the PyTorch reference; its weights must be the ones the manifest records.
    """
    images = read_dataset(data)
    sessions = _Sessions(Path(model_dir), loaded, options.targets)
    batches, skipped = load_batches(images, loaded.spec, options.batch_size)
    labels: list[int] = []
    paths: list[str] = []
    reference_logits: list[np.ndarray] = []
    logits: dict[str, list[np.ndarray]] = {name: [] for name in sessions.open}
    try:
        for batch, batch_labels, batch_paths in batches:
            labels += batch_labels
            paths += batch_paths
            reference_logits.append(_torch_logits(loaded, batch))
            for name in list(sessions.open):
                try:
                    logits[name].append(np.asarray(sessions.open[name].run(batch)))
                except Exception as err:  # a runtime failing mid-run marks its row, the others go on
                    sessions.fail(name, err)
    finally:
        sessions.close()
    if not labels:
        raise DatasetError(f"{data}: none of the {len(images)} images could be read; first problem: "
                           f"{skipped[0]['reason'] if skipped else 'none'}")
    return _document(data, loaded, options, labels, paths, skipped, reference_logits, logits, sessions)


def _document(data, loaded, options, labels, paths, skipped, reference_logits, logits, sessions) -> dict:
    from vitship.bench.environment import environment

    y = np.asarray(labels)
    ref_prob = fake_probability(np.concatenate(reference_logits), loaded.spec)
    ref_metrics = compute_metrics(y, ref_prob, options.threshold)
    ref_pred = ref_prob >= options.threshold
    rows = [AccuracyResult(REFERENCE, REFERENCE_TARGET, metrics=ref_metrics, deltas=metric_deltas(ref_metrics, ref_metrics),
                           agreement=1.0, n_images=len(y), session={"provider": "torch", "precision": "fp32"},
                           probabilities=ref_prob.tolist())]
    for result in sessions.results:
        if result.status == "ok":
            prob = fake_probability(np.concatenate(logits[result.artifact]), loaded.spec)
            result.metrics = compute_metrics(y, prob, options.threshold)
            result.deltas = metric_deltas(result.metrics, ref_metrics)
            result.agreement = float(np.mean((prob >= options.threshold) == ref_pred))
            result.n_images, result.probabilities = len(y), prob.tolist()
        rows.append(result)
    trained = bool(loaded.info.trained)
    return {
        "schema_version": EVAL_SCHEMA_VERSION,
        "kind": "vitship-eval",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "weights": loaded.info.to_dict(),
        "accuracy_judged": trained,
        "note": "" if trained else UNTRAINED_NOTE,
        "threshold": options.threshold,
        "data": {"source": str(data), "n_images": len(y), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
                 "n_skipped": len(skipped), "skipped": skipped},
        "images": paths,
        "labels": [int(v) for v in y],
        "rows": [row.to_dict() for row in rows],
    }


def write_eval(model_dir: Path, document: dict) -> Path:
    path = Path(model_dir) / EVAL_NAME
    atomic_write_json(path, document)
    return path


def read_eval(path: Path) -> dict:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: unreadable eval results ({err}); rerun vitship eval") from err
    if document.get("schema_version") != EVAL_SCHEMA_VERSION:
        raise DatasetError(f"{path}: eval schema {document.get('schema_version')} != {EVAL_SCHEMA_VERSION}; rerun vitship eval")
    return document
