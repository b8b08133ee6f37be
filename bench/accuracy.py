"""Accuracy on a labelled folder: every artifact and the PyTorch reference score the same images.

The folder is read by bench/dataset.py (real/ + fake/, or a path,label CSV). Metrics come from
scikit-learn; deltas against the reference are in percentage points. ``evaluate`` returns an
EvalReport, which eval.json holds and ``read_eval`` reads back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitship.bench.dataset import DatasetError, load_batches, read_dataset
from vitship.bench.rows import RowKey, RowsDocument, StatusRow, read_results
from vitship.models import LOGITS_NAME, LoadedModel, VitshipError, fake_probability, load_image
from vitship.models.atomic import atomic_write_json
from vitship.models.status import Status

EVAL_NAME = "eval.json"
EVAL_SCHEMA_VERSION = 2  # 2: "status" (ok/error/unavailable) and "reason" are separate fields
REFERENCE = "torch-fp32"
REFERENCE_TARGET = "torch:cpu"
METRICS = ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")
IN_ARTIFACT = "in the artifact"  # session["preprocessing"] of an image-input artifact's row
UNTRAINED_NOTE = ("untrained weights: accuracy is meaningless here; only the agreement with the reference "
                  "says anything about the artifacts")


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: decision threshold, batch size, and the target chosen per artifact or format."""

    threshold: float = 0.5
    batch_size: int = 8
    targets: dict[str, str] = field(default_factory=dict)  # artifact id or format -> target


@dataclass
class AccuracyResult(StatusRow):
    """One artifact's accuracy on one target, its deltas against the reference and raw scores."""

    artifact: str
    target: str
    status: Status = Status.OK  # ok | error | unavailable, with the why in reason
    reason: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)
    deltas: dict[str, float | None] = field(default_factory=dict)  # percentage points vs the reference
    agreement: float | None = None  # share of decisions equal to the reference's
    n_images: int = 0
    session: dict = field(default_factory=dict)
    probabilities: list[float] = field(default_factory=list)

    @property
    def key(self) -> RowKey:
        return RowKey(self.artifact, self.target)

    def fail(self, status: Status, reason: str) -> None:
        self.status, self.reason = status, reason


@dataclass
class EvalReport(RowsDocument):
    """What eval.json holds: one AccuracyResult per artifact (the reference first), the data and the weights."""

    row_class = AccuracyResult

    environment: dict
    weights: dict
    threshold: float
    data: dict  # source, n_images, n_real, n_fake, n_skipped, skipped: [{"path", "reason"}]
    images: list[str]
    labels: list[int]
    rows: list[AccuracyResult] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = EVAL_SCHEMA_VERSION

    @property
    def accuracy_judged(self) -> bool:
        """Only trained weights have an accuracy worth judging."""
        return bool(self.weights.get("trained"))

    @property
    def note(self) -> str:
        return "" if self.accuracy_judged else UNTRAINED_NOTE

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rows"}
        return {"schema_version": data.pop("schema_version"), "kind": "vitship-eval", **data,
                "accuracy_judged": self.accuracy_judged, "note": self.note, "rows": [r.to_dict() for r in self.rows]}


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


def _torch_logits(loaded: LoadedModel, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        logits, _ = loaded.model(torch.from_numpy(batch))
    return logits.float().numpy()


def default_target(fmt: str, statuses) -> str | None:
    """The target eval and predict score ``fmt`` on: the first available CPU target that runs it, else coreml:reference
    (Linux: CoreML programs are scored by the reference executor, whose rows say so), else its first CPU target
    (whose session says why not). A Core ML program (coreml, executorch-coreml) tries the Core ML runtime and the
    reference first: ExecuTorch runs executorch-coreml only where it has the Core ML delegate, never on Linux."""
    from vitship.runtimes import RUNTIMES

    runs = [s for s in statuses if s.runtime in RUNTIMES and fmt in RUNTIMES[s.runtime].formats]
    cpu = [s for s in runs if s.device.lower().startswith("cpu")]
    reference = [s for s in runs if s.target == "coreml:reference"]
    if "coreml" in fmt.split("-"):
        order = [s for s in cpu if s.runtime == "coreml"] + reference + [s for s in cpu if s.runtime != "coreml"]
    else:
        order = cpu + reference
    return next((s.target for s in order if s.available), cpu[0].target if cpu else None)


class _Sessions:
    """One open session per artifact; artifacts that cannot open or that fail mid-run keep a status row."""

    def __init__(self, model_dir: Path, loaded: LoadedModel, targets: dict[str, str]):
        from vitship.exporters.base import manifest_artifacts
        from vitship.runtimes import RuntimeUnavailable, SessionOptions, available_targets, open_session, takes_frames

        self.open, self.results, self.frames = {}, [], set()  # frames: ids of image-input artifacts (decoded frames in)
        statuses = available_targets()
        for artifact in manifest_artifacts(model_dir):
            target = targets.get(artifact.id) or targets.get(artifact.format) or default_target(artifact.format, statuses)
            result = AccuracyResult(artifact.id, target or "-")
            self.results.append(result)
            if artifact.weights.get("sha256") not in (None, loaded.info.sha256):
                result.fail(Status.ERROR, "exported from other weights (sha256 differs from the reference's)")
            elif target is None:
                result.fail(Status.UNAVAILABLE, f"no CPU target runs {artifact.format}")
            else:
                try:
                    self.open[artifact.id] = open_session(artifact, model_dir, target, SessionOptions(loaded=loaded))
                    result.session = self.open[artifact.id].info.to_dict()
                    if takes_frames(artifact.input_spec):
                        self.frames.add(artifact.id)
                        result.session["preprocessing"] = IN_ARTIFACT
                except RuntimeUnavailable as err:
                    result.fail(Status.UNAVAILABLE, str(err))
                except VitshipError as err:
                    result.fail(Status.ERROR, str(err))
                except Exception as err:  # a runtime that cannot load an artifact marks its row only
                    result.fail(Status.ERROR, f"{type(err).__name__}: {err}")

    def fail(self, artifact_id: str, err: Exception) -> None:
        session = self.open.pop(artifact_id)
        session.close()
        next(r for r in self.results if r.artifact == artifact_id).fail(Status.ERROR, f"{type(err).__name__}: {err}")

    def close(self) -> None:
        for session in self.open.values():
            session.close()


def evaluate(model_dir: Path, data: Path, loaded: LoadedModel, options: EvalOptions = EvalOptions()) -> "EvalReport":
    """Score every image with the reference and every artifact in the manifest; return the EvalReport.

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
            frames = [np.asarray(load_image(path)) for path in batch_paths] if sessions.frames else []
            for name in list(sessions.open):
                try:  # an image-input artifact takes the decoded photos and preprocesses them itself
                    outputs = sessions.open[name].run_frames(frames)[LOGITS_NAME] if name in sessions.frames else \
                        sessions.open[name].run(batch)
                    logits[name].append(np.asarray(outputs))
                except Exception as err:  # a runtime failing mid-run marks its row, the others go on
                    sessions.fail(name, err)
    finally:
        sessions.close()
    if not labels:
        raise DatasetError(f"{data}: none of the {len(images)} images could be read; first problem: "
                           f"{skipped[0]['reason'] if skipped else 'none'}")
    return _document(data, loaded, options, labels, paths, skipped, reference_logits, logits, sessions)


def _document(data, loaded, options, labels, paths, skipped, reference_logits, logits, sessions) -> EvalReport:
    from vitship.bench.environment import environment

    y = np.asarray(labels)
    ref_prob = fake_probability(np.concatenate(reference_logits), loaded.spec)
    ref_metrics = compute_metrics(y, ref_prob, options.threshold)
    ref_pred = ref_prob >= options.threshold
    rows = [AccuracyResult(REFERENCE, REFERENCE_TARGET, metrics=ref_metrics, deltas=metric_deltas(ref_metrics, ref_metrics),
                           agreement=1.0, n_images=len(y), session={"provider": "torch", "precision": "fp32"},
                           probabilities=ref_prob.tolist())]
    for result in sessions.results:
        if result.status is Status.OK:
            prob = fake_probability(np.concatenate(logits[result.artifact]), loaded.spec)
            result.metrics = compute_metrics(y, prob, options.threshold)
            result.deltas = metric_deltas(result.metrics, ref_metrics)
            result.agreement = float(np.mean((prob >= options.threshold) == ref_pred))
            result.n_images, result.probabilities = len(y), prob.tolist()
        rows.append(result)
    return EvalReport(environment=environment(), weights=loaded.info.to_dict(), threshold=options.threshold,
                      data={"source": str(data), "n_images": len(y), "n_real": int((y == 0).sum()),
                            "n_fake": int((y == 1).sum()), "n_skipped": len(skipped), "skipped": skipped},
                      images=paths, labels=[int(v) for v in y], rows=rows)


def write_eval(model_dir: Path, report: EvalReport) -> Path:
    path = Path(model_dir) / EVAL_NAME
    atomic_write_json(path, report.to_dict())
    return path


def read_eval(path: Path) -> EvalReport:
    """Read eval.json; another schema_version (or an unreadable file) is a ResultsFileError."""
    return EvalReport.from_dict(read_results(path, "eval results", EVAL_SCHEMA_VERSION, "vitship eval"))
