"""locate(): run an artifact and its fp32 sibling in the same format with every layer's output exposed, and compare."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vitship.bench.diagnose.capture import SIBLING_PRECISION, open_capture
from vitship.bench.diagnose.labels import Label, label_tensors, module_sites
from vitship.bench.diagnose.result import DiagnoseResult, LayerDivergence
from vitship.bench.parity.metrics import ToleranceTable
from vitship.exporters.base import Artifact, artifact_id, manifest_artifacts, resolve_artifact_path
from vitship.models import ModelSpec, VitshipError, preprocess, sample_images
from vitship.models.metrics import min_cosine

if TYPE_CHECKING:
    from vitship.models import LoadedModel


SMALL_TENSOR = 8  # fewer values per image (the logits): no cosine, only the error (see _compare)


class DiagnoseError(VitshipError):
    """An artifact vitship diagnose cannot compare (no fp32 sibling, an unknown id, no common tensors)."""


def locate(model_dir: Path, artifact: str, images: np.ndarray | Sequence[Path] | None = None,
           loaded: LoadedModel | None = None, threads: int | None = None) -> DiagnoseResult:
    """Per-layer divergence of ``artifact`` against its fp32 sibling in the same format, from input to logits.

    Args:
        model_dir: the model folder (with manifest.json), e.g. ``artifacts/<model>``.
        artifact: the artifact id (``onnx-int8``); its sibling is ``<format>-fp32`` of the same manifest.
        images: preprocessed float32 NCHW images, or image paths (default: ``models.sample_images()``).
        loaded: the PyTorch model the artifacts were exported from, used to name tensors by module path
            (default: the weights the manifest records, sha256 checked as parity does).
        threads: runtime threads (default: the runtime's own).
    Returns:
        A DiagnoseResult with one LayerDivergence per layer found in both artifacts, in graph order.
    """
    model_dir = Path(model_dir)
    candidate, sibling = _pair(model_dir, artifact)
    loaded = loaded or _reference(model_dir)
    pixels = _pixels(images, loaded.spec)
    reference = open_capture(sibling, model_dir, threads, loaded)
    subject = open_capture(candidate, model_dir, threads, loaded)
    common = [name for name in reference.tensor_names if name in set(subject.tensor_names)]
    labels = _labels(loaded, pixels[0], reference, common)
    if not labels:
        raise DiagnoseError(f"{artifact}: no tensor of {sibling.id} could be matched to a PyTorch module; "
                            "re-export both from the same weights (vitship export --force)")
    names = sorted({label.tensor for label in labels} | {label.input_tensor for label in labels if label.input_tensor},
                   key=common.index)
    cosines, errors = _compare(reference, subject, pixels, names)
    layers = [_divergence(label, cosines, errors) for label in labels if cosines[label.tensor]]
    gate = _gate(candidate)
    notes = list(subject.notes)
    notes += [f"{label.module} ({label.tensor}) has under {SMALL_TENSOR} values per image, so no cosine: max abs error "
              f"{errors[label.tensor]:.3g}; vitship parity judges it by probability error"
              for label in labels if not cosines[label.tensor]]
    return DiagnoseResult(candidate.id, sibling.id, subject.target, gate, len(pixels), layers, notes)


def _pair(model_dir: Path, artifact: str) -> tuple[Artifact, Artifact]:
    """The artifact and its fp32 sibling from the manifest."""
    artifacts = {a.id: a for a in manifest_artifacts(model_dir)}
    if artifact not in artifacts:
        raise DiagnoseError(f"{artifact}: not in {model_dir}/manifest.json (it has {', '.join(artifacts) or 'none'}); "
                            "export it first (vitship export)")
    candidate = artifacts[artifact]
    sibling_id = artifact_id(candidate.format, SIBLING_PRECISION)
    if candidate.precision == SIBLING_PRECISION:
        raise DiagnoseError(f"{artifact} is the fp32 reference itself; diagnose an fp16 or int8 artifact")
    if sibling_id not in artifacts:
        raise DiagnoseError(f"{artifact}: its fp32 sibling {sibling_id} is not exported; run vitship export "
                            f"--format {candidate.format} --precision fp32")
    for entry in (candidate, artifacts[sibling_id]):
        resolve_artifact_path(model_dir, entry)
    return candidate, artifacts[sibling_id]


def _reference(model_dir: Path) -> LoadedModel:
    from vitship.bench.parity.run import load_reference

    return load_reference(model_dir)


def _pixels(images, spec: ModelSpec) -> np.ndarray:
    if images is None:
        images = sample_images()
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images, dtype=np.float32)
    return preprocess(list(images), spec)


def _labels(loaded: LoadedModel, image: np.ndarray, reference, common: list[str]) -> list[Label]:
    """The common tensors a PyTorch module computes, named by module path (matched by value on one image)."""
    values = reference.run(image, common)
    tensors = {name: values[name] for name in common if name in values}
    outputs = {name: reference.output_tensor(name) for name in loaded.spec.output_names}
    return label_tensors(module_sites(loaded.model, image), tensors, outputs)


def _compare(reference, subject, pixels: np.ndarray, names: list[str]) -> tuple[dict, dict]:
    """Per tensor: the cosine per image (shared definition) and the max abs error over images.

    A tensor with fewer than SMALL_TENSOR values per image (a one- or two-logit head) has no direction to
    speak of (one logit's cosine is its sign): it gets no cosine, only its error (see ``locate``).
    """
    cosines: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, float] = dict.fromkeys(names, 0.0)
    for image in pixels:
        expected, actual = reference.run(image, names), subject.run(image, names)
        for name in names:
            a, b = np.asarray(actual[name], np.float64).reshape(1, -1), np.asarray(expected[name], np.float64).reshape(1, -1)
            if a.shape != b.shape:
                raise DiagnoseError(f"tensor {name}: {a.size} values in the artifact but {b.size} in its fp32 sibling; "
                                    "re-export both (vitship export --force)")
            errors[name] = max(errors[name], float(np.abs(a - b).max(initial=0.0)))
            if a.size >= SMALL_TENSOR:
                cosines[name].append(min_cosine(a, b))
    return cosines, errors


def _divergence(label: Label, cosines: dict, errors: dict) -> LayerDivergence:
    out = np.asarray(cosines[label.tensor])
    into = np.asarray(cosines[label.input_tensor]) if label.input_tensor and cosines[label.input_tensor] else np.ones_like(out)
    return LayerDivergence(label.module, label.tensor, float(out.min()), errors[label.tensor], label.input_tensor,
                           float(into.min()), float(max((into - out).max(), 0.0)))


def _gate(artifact: Artifact) -> float:
    """The min feature cosine the artifact's precision must reach (ToleranceTable's default for it)."""
    tolerance, _ = ToleranceTable().lookup(artifact.format, artifact.precision, artifact.precision)
    return float(tolerance.min_cosine if tolerance.min_cosine is not None else 0.0)
