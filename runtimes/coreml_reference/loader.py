"""Read a saved .mlpackage back the way coremltools does: Manifest.json -> model.mlmodel spec + weights/,
then coremltools' own milproto loader turns the spec and the weight blob into a MIL Program."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vitship.models import MissingDependencyError
from vitship.runtimes.coreml_reference.ops import ReferenceExecutorError

APPLE_AUTHOR = "com.apple.CoreML"
WEIGHTS_ITEM = "weights"


@dataclass
class MLPackage:
    """A loaded ML Program package: its protobuf spec, weights folder and MIL program."""

    path: Path
    spec: object  # coremltools.proto.Model_pb2.Model
    weights_dir: Path | None
    program: object  # coremltools.converters.mil.mil.Program

    @property
    def input_descriptions(self) -> list:
        return list(self.spec.description.input)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.spec.description.metadata.userDefined)


def _manifest_items(path: Path) -> tuple[Path, Path | None]:
    """(model.mlmodel path, weights dir or None) from the package's Manifest.json."""
    manifest_path = path / "Manifest.json"
    if not manifest_path.is_file():
        raise ReferenceExecutorError(f"{path}: not an .mlpackage (no Manifest.json); re-export it with vitship export")
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["itemInfoEntries"]
        root = entries[manifest["rootModelIdentifier"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ReferenceExecutorError(f"{manifest_path}: corrupt manifest ({err!r}); re-export the package") from err
    spec_path = path / "Data" / root["path"]
    weights = [e for e in entries.values() if e.get("name") == WEIGHTS_ITEM and e.get("author") == APPLE_AUTHOR]
    weights_dir = path / "Data" / weights[0]["path"] if weights else None
    return spec_path, weights_dir


def read_spec(spec_path: Path):
    """The Model protobuf from model.mlmodel; a truncated or garbled file is a clear error."""
    try:
        from coremltools.proto import Model_pb2
    except ImportError as err:
        raise MissingDependencyError("coremltools", "reading CoreML packages (coreml:reference)") from err
    from google.protobuf.message import DecodeError

    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(spec_path.read_bytes())
    except (OSError, DecodeError) as err:
        raise ReferenceExecutorError(f"{spec_path}: cannot read the model spec ({err}); re-export the package") from err
    return spec


def load_package(path: Path) -> MLPackage:
    """Load `path` (an .mlpackage directory) into a MIL Program with coremltools' milproto loader."""
    path = Path(path)
    if not path.is_dir():
        raise ReferenceExecutorError(f"{path}: no such .mlpackage directory; export it first (vitship export)")
    spec_path, weights_dir = _manifest_items(path)
    spec = read_spec(spec_path)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise ReferenceExecutorError(
            f"{path}: a {kind!r} model; the reference executor runs ML Programs only (convert_to='mlprogram')")
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_to_pymil

    try:
        program = milproto_to_pymil(spec, spec.specificationVersion, str(weights_dir) if weights_dir else "")
    except Exception as err:  # the blob reader and type inference raise assorted types on corrupt input
        raise ReferenceExecutorError(
            f"{path}: coremltools could not load the ML Program ({type(err).__name__}: {err}); "
            "the weight blob or spec may be corrupt: re-export the package") from err
    return MLPackage(path=path, spec=spec, weights_dir=weights_dir, program=program)
