"""The CoreML runtime: MLModel(compute_units=...).predict on macOS, plus `coreml:reference` everywhere.

`coreml:reference` is the numpy executor of a saved ML Program (issue 7), not Apple's runtime. It
lives in `runtimes.coreml_reference`, imported lazily; that module provides
`open_session(artifact, model_dir, options) -> Session`. Until it exists the target is unavailable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import INPUT_NAME, LOGITS_NAME, MissingDependencyError
from vitship.runtimes.base import REFERENCE_LABEL, RuntimeUnavailable, SessionInfo, TargetStatus

COMPUTE_UNITS = {"cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE", "all": "ALL"}
REFERENCE_DEVICE = "reference"
REFERENCE_MODULE = "vitship.runtimes.coreml_reference"
NEEDS_MACOS = "CoreML runtime needs macOS"


def _reference_module():
    import importlib

    try:
        return importlib.import_module(REFERENCE_MODULE)
    except ModuleNotFoundError as err:
        if err.name and REFERENCE_MODULE.startswith(err.name):
            return None
        raise


def _reference_status() -> TargetStatus:
    target = f"coreml:{REFERENCE_DEVICE}"
    try:
        module = _reference_module()
    except ImportError as err:  # the executor exists but one of its own imports is missing
        return TargetStatus(target, False, f"reference executor cannot be imported: {err}")
    if module is None or not hasattr(module, "open_session"):  # a bare folder imports as a namespace package
        return TargetStatus(target, False, "reference executor not installed")
    return TargetStatus(target, True)


def targets() -> list[TargetStatus]:
    statuses = []
    for device in COMPUTE_UNITS:
        if sys.platform != "darwin":
            statuses.append(TargetStatus(f"coreml:{device}", False, NEEDS_MACOS))
            continue
        try:
            import coremltools  # noqa: F401
        except ImportError:
            statuses.append(TargetStatus(f"coreml:{device}", False, "coremltools is not installed; run: pip install coremltools"))
            continue
        statuses.append(TargetStatus(f"coreml:{device}", True))
    statuses.append(_reference_status())
    return statuses


# The Neural Engine computes in fp16 whatever the program's precision; CPU and GPU honour an fp32 program.
_FP16_ONLY_UNITS = ("cpu_and_ne", "all")


class CoreMLSession:
    """An MLModel loaded with one compute-unit setting; predict() on a dict of numpy inputs (PIL images for ImageType)."""

    def __init__(self, model, device: str, artifact: Artifact, output_names: dict[str, str] | None = None):
        spec = artifact.input_spec or {}
        self._model = model
        self._input = spec.get("input_name", INPUT_NAME)
        self._image = spec.get("input_type") == "image"
        self._norm = (spec.get("mean"), spec.get("std"), spec.get("rescale_factor"))
        self._rename = output_names or {}
        self.unpacked = None  # an executorch-coreml payload's temporary folder
        lowered = artifact.precision == "fp32" and device in _FP16_ONLY_UNITS
        self.info = SessionInfo(target=f"coreml:{device}", provider="coremltools MLModel.predict", device=device,
                                precision="fp16" if lowered else artifact.precision, threads=None,
                                extra={"compute_units": COMPUTE_UNITS[device],
                                       "precision_source": "Neural Engine (fp16) may run it" if lowered else "program"})

    def _images(self, batch: np.ndarray) -> list:
        """The 8-bit RGB images a normalised batch came from, as the CVPixelBuffers an app passes."""
        from PIL import Image

        mean, std, rescale = (np.reshape(v, (1, -1, 1, 1)) for v in self._norm)
        pixels = np.clip(np.rint((batch * std + mean) / rescale), 0, 255).astype(np.uint8)
        return [Image.fromarray(np.transpose(p, (1, 2, 0)), "RGB") for p in pixels]

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._image:  # one image per prediction (MLArrayBatchProvider batches them in an app)
            runs = [self._model.predict({self._input: image}) for image in self._images(batch)]
            out = {name: np.concatenate([np.asarray(r[name]) for r in runs]) for name in runs[0]}
        else:
            out = self._model.predict({self._input: batch})
        return {self._rename.get(name, name): np.asarray(value, dtype=np.float32) for name, value in out.items()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self._model = None
        if self.unpacked is not None:
            self.unpacked.cleanup()
            self.unpacked = None


def open(artifact: Artifact, model_dir: Path, device: str, options) -> object:  # noqa: A001 - adapter API
    path = model_dir / artifact.path
    if not path.exists():
        raise RuntimeUnavailable(f"{artifact.id}: {path} does not exist; re-export it (vitship export)")
    if device == REFERENCE_DEVICE:
        module = _reference_module()
        if module is None or not hasattr(module, "open_session"):
            raise RuntimeUnavailable("coreml:reference: reference executor not installed")
        session = module.open_session(artifact, model_dir, options)
        session.info.extra.setdefault("note", REFERENCE_LABEL)
        return session
    if sys.platform != "darwin":
        raise RuntimeUnavailable(NEEDS_MACOS)
    if device not in COMPUTE_UNITS:
        raise RuntimeUnavailable(f"unknown CoreML compute units {device!r}; valid: {', '.join(COMPUTE_UNITS)}")
    try:
        import coremltools as ct
    except ImportError as err:
        raise MissingDependencyError("coremltools", "the CoreML targets") from err
    return _open_apple(ct, artifact, path, device)


def _open_apple(ct, artifact: Artifact, path: Path, device: str) -> CoreMLSession:
    """The real Core ML runtime; an executorch-coreml .pte runs the ML Program its delegate embeds."""
    import tempfile

    from vitship.runtimes.coreml_plan import compute_plan

    unpacked, names = None, None
    if artifact.format == "executorch-coreml":
        from vitship.exporters.executorch import embedded_coreml_package

        unpacked = tempfile.TemporaryDirectory(prefix="vitship-pte-")
        path = embedded_coreml_package(path, Path(unpacked.name))
        outputs = artifact.details.embedded_outputs  # an executorch-coreml artifact's: ExecutorchDetails
        names = outputs.by_program_name() if outputs else {}
    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[device])
    model = ct.models.MLModel(str(path), compute_units=units)
    session = CoreMLSession(model, device, artifact, names)
    session.unpacked = unpacked
    session.info.extra["compute_plan"] = compute_plan(model, units)
    return session
