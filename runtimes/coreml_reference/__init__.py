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
    PROVIDER,
    REFERENCE_LABEL,
    TARGET,
    Normalization,
    ReferenceSession,
    open_reference_session,
)


def open_session(artifact, model_dir: Path, options=None) -> ReferenceSession:
    """The adapter entry point runtimes.coreml_rt calls: `artifact.path` relative to `model_dir`.

    An ImageType input gets the normalisation from the artifact's input spec: the session turns each
    normalised batch back into the 8-bit RGB pixels a CVPixelBuffer would hold (exact for the parity photos,
    which preprocessing makes from 8-bit pixels) and runs the program's own scale and bias on them, so
    parity checks the image path the app feeds. An executorch-coreml ``.pte`` runs the ML Program its
    Core ML delegate embeds (unpacked to a temporary folder for the session's life).
    """
    normalization = None
    spec = artifact.input_spec or {}
    if getattr(options, "loaded", None) is None and {"mean", "std", "rescale_factor"} <= set(spec):
        normalization = Normalization(tuple(spec["mean"]), tuple(spec["std"]), float(spec["rescale_factor"]))
    if artifact.format != "executorch-coreml":
        return open_reference_session(Path(model_dir) / artifact.path, options, normalization=normalization)
    import tempfile

    from vitship.exporters.executorch import embedded_coreml_package

    unpacked = tempfile.TemporaryDirectory(prefix="vitship-pte-")
    try:
        package = embedded_coreml_package(Path(model_dir) / artifact.path, Path(unpacked.name))
        outputs = artifact.details.embedded_outputs  # an executorch-coreml artifact's: ExecutorchDetails
        session = open_reference_session(package, options, normalization=normalization,
                                         output_names=outputs.by_program_name() if outputs else {})
    except BaseException:
        unpacked.cleanup()
        raise
    session.info.extra["embedded_in"] = artifact.path
    session.unpacked = unpacked  # removed when the session is garbage-collected or closed
    return session


__all__ = [
    "OPS", "PROVIDER", "REFERENCE_LABEL", "TARGET", "MLPackage", "Normalization", "ReferenceExecutor",
    "ReferenceExecutorError", "ReferenceSession", "load_package", "open_reference_session", "open_session",
]
