"""locate(): run an artifact and its fp32 sibling in the same format with every layer's output exposed, and compare."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vitship.bench.diagnose.capture import SIBLING_FORMAT, SIBLING_PRECISION, open_capture
from vitship.bench.diagnose.labels import Label, label_tensors, module_sites
from vitship.bench.diagnose.result import DiagnoseError, DiagnoseResult, LayerDivergence
from vitship.exporters.base import Artifact, artifact_id, manifest_artifacts, resolve_artifact_path
from vitship.models import ModelSpec, preprocess, sample_images
from vitship.models.export_form import ExportForm
from vitship.models.judgement import ToleranceTable
from vitship.models.metrics import abs_errors, min_cosine

if TYPE_CHECKING:
    from vitship.models import LoadedModel


SMALL_TENSOR = 8  # fewer values per image (the logits): no cosine, only the error (see _compare)


def locate(model_dir: Path, artifact: str | Artifact, images: np.ndarray | Sequence[Path] | None = None,
           loaded: LoadedModel | None = None, threads: int | None = None) -> DiagnoseResult:
    """Per-layer divergence of ``artifact`` against its fp32 sibling in the same format, from input to logits.

    Args:
        model_dir: the model folder (with manifest.json), e.g. ``artifacts/<model>``.
        artifact: the artifact id (``onnx-int8``), or an Artifact whose path is relative to ``model_dir`` (the export
            ladder's candidate in its temporary folder); its sibling is ``<format>-fp32`` of ``model_dir``'s manifest.
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
    exposed = set(subject.tensor_names)
    common = [name for name in reference.tensor_names if name in exposed]
    labels = _labels(loaded, pixels[0], reference, common, sibling.details.form())
    if not labels:
        raise DiagnoseError(f"{candidate.id}: no tensor of {sibling.id} could be matched to a PyTorch module; "
                            "re-export both from the same weights (vitship export --force)")
    order = {name: i for i, name in enumerate(common)}
    names = sorted({label.tensor for label in labels} | {label.input_tensor for label in labels if label.input_tensor},
                   key=order.__getitem__)
    cosines, errors = _compare(reference, subject, pixels, names)
    layers = _divergences(labels, cosines, errors, _smoothed_norms(candidate, loaded))
    gate = _gate(candidate)
    notes = list(subject.notes)
    notes += [f"{label.module} ({label.tensor}) has under {SMALL_TENSOR} values per image, so no cosine: max abs error "
              f"{errors[label.tensor]:.3g}; vitship parity judges it by probability error"
              for label in labels if not cosines[label.tensor]]
    return DiagnoseResult(candidate.id, sibling.id, subject.target, gate, len(pixels), layers, notes)


def _pair(model_dir: Path, artifact: str | Artifact) -> tuple[Artifact, Artifact]:
    """The artifact and its fp32 sibling from the manifest."""
    artifacts = {a.id: a for a in manifest_artifacts(model_dir)}
    if isinstance(artifact, str) and artifact not in artifacts:
        raise DiagnoseError(f"{artifact}: not in {model_dir}/manifest.json (it has {', '.join(artifacts) or 'none'}); "
                            "export it first (vitship export)")
    candidate = artifacts[artifact] if isinstance(artifact, str) else artifact
    sibling_id = artifact_id(SIBLING_FORMAT.get(candidate.format, candidate.format), SIBLING_PRECISION)
    if candidate.precision == SIBLING_PRECISION:
        raise DiagnoseError(f"{candidate.id} is the fp32 reference itself; diagnose an fp16 or int8 artifact")
    if sibling_id not in artifacts:
        raise DiagnoseError(f"{candidate.id}: its fp32 sibling {sibling_id} is not exported; run vitship export "
                            f"--format {sibling_id.rsplit('-', 1)[0]} --precision fp32")
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


def _labels(loaded: LoadedModel, image: np.ndarray, reference, common: list[str], form: ExportForm) -> list[Label]:
    """The common tensors a PyTorch module computes, named by module path (matched by value on one image).

    The modules run in the fp32 sibling's export form: a class-token tail computes its last block for one token.
    """
    values = reference.run(image, common)
    tensors = {name: values[name] for name in common if name in values}
    outputs = {name: reference.output_tensor(name) for name in loaded.spec.output_names}
    return label_tensors(module_sites(loaded.model.with_form(form), image), tensors, outputs)


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
            a, b = np.reshape(actual[name], (1, -1)), np.reshape(expected[name], (1, -1))
            if a.shape != b.shape:
                raise DiagnoseError(f"tensor {name}: {a.size} values in the artifact but {b.size} in its fp32 sibling; "
                                    "re-export both (vitship export --force)")
            errors[name] = max(errors[name], float(abs_errors(a, b).max(initial=0.0)))
            if a.size >= SMALL_TENSOR:
                cosines[name].append(min_cosine(a, b))
    return cosines, errors


def _smoothed_norms(artifact: Artifact, loaded: LoadedModel) -> set[str]:
    """The LayerNorms whose output the artifact's SmoothQuant fold rescales (none when smoothing was off)."""
    if artifact.option("smooth_alpha") is None:
        return set()
    from vitship.exporters.int8.smoothing import smoothing_pairs

    return {norm for norm, _, _, _ in smoothing_pairs(loaded.model.vit)}


def _divergences(labels: list[Label], cosines: dict, errors: dict, smoothed: set[str]) -> list[LayerDivergence]:
    """One row per label with a cosine, each measured against its input (``_input_of``)."""
    rows = []
    for index, label in enumerate(labels):
        if not cosines[label.tensor]:
            continue
        out = np.asarray(cosines[label.tensor])
        source = _input_of(labels, index, smoothed)
        into = np.asarray(cosines[source]) if source and cosines.get(source) else np.ones_like(out)
        drop = 0.0 if label.module in smoothed else float(max((into - out).max(), 0.0))
        rows.append(LayerDivergence(label.module, label.tensor, float(out.min()), errors[label.tensor], source,
                                    float(into.min()), drop, label.module in smoothed))
    return rows


def _input_of(labels: list[Label], index: int, smoothed: set[str]) -> str | None:
    """The tensor a layer's added divergence is measured against.

    Its module's input, except: a Linear fed by a smoothed LayerNorm is measured against the norm's input (the
    rescale is not an error), and a container (``blocks.3``, whose output is the residual add) against its last
    sublayer before it, so that it ranks only for what the residual add itself loses, not for its sublayers.
    """
    label = labels[index]
    inner = [other for other in labels[:index] if other.module.startswith(label.module + ".")]
    if inner:
        return inner[-1].tensor
    through = {other.tensor: other.input_tensor for other in labels if other.module in smoothed}
    return through.get(label.input_tensor, label.input_tensor) if label.input_tensor else None


def _gate(artifact: Artifact) -> float:
    """The min feature cosine the artifact's precision must reach (ToleranceTable's default for it)."""
    tolerance, _ = ToleranceTable().lookup(artifact.format, artifact.precision, artifact.precision)
    return float(tolerance.min_cosine if tolerance.min_cosine is not None else 0.0)
