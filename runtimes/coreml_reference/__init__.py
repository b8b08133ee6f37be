"""coreml:reference - run a saved CoreML ML Program (.mlpackage) with numpy, so Linux can check it.

The package is read back the way coremltools reads it (Manifest.json -> spec + weight blob -> MIL
Program via coremltools' milproto loader); every op is then executed with numpy in fp32, rounding
each fp16-typed result to float16 (fp16 emulation). It is a reference executor, not the Apple
runtime: every row it produces carries REFERENCE_LABEL.
"""

from __future__ import annotations

from pathlib import Path

from vitship.runtimes.coreml_reference.executor import ReferenceExecutor
from vitship.runtimes.coreml_reference.loader import MLPackage, load_package
from vitship.runtimes.coreml_reference.ops import OPS, ReferenceExecutorError
from vitship.runtimes.coreml_reference.session import (
    PROVIDER, REFERENCE_LABEL, TARGET, Normalization, ReferenceSession, open_reference_session,
)


def open_session(artifact, model_dir: Path, options=None) -> ReferenceSession:
    """The adapter entry point runtimes.coreml_rt calls: `artifact.path` relative to `model_dir`."""
    normalization = None
    spec = artifact.input_spec or {}
    if getattr(options, "loaded", None) is None and {"mean", "std", "rescale_factor"} <= set(spec):
        normalization = Normalization(tuple(spec["mean"]), tuple(spec["std"]), float(spec["rescale_factor"]))
    return open_reference_session(Path(model_dir) / artifact.path, options, normalization=normalization)


__all__ = [
    "OPS", "PROVIDER", "REFERENCE_LABEL", "TARGET", "MLPackage", "Normalization", "ReferenceExecutor",
    "ReferenceExecutorError", "ReferenceSession", "load_package", "open_reference_session", "open_session",
]
