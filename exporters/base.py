"""What every exporter shares: ExportOptions in, Artifact out, and the manifest that lists them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from vitship.exporters.schema import MANIFEST_SCHEMA_VERSION, Artifact  # noqa: F401  (re-exported: every layer imports them here)
from vitship.models import VitshipError, file_sha256
from vitship.models.export_form import ExportForm
from vitship.models.versions import package_versions, vitship_version  # noqa: F401  (the exporters record them)

if TYPE_CHECKING:  # torch: not imported by runtimes and workers that only read manifests
    from vitship.models import LoadedModel

MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "openvino", "coreml")
PRECISIONS = ("fp32", "fp16", "int8")


class ExportError(VitshipError):
    """An export failed for a reason the user can act on."""


class ArtifactPathError(ExportError):
    """A manifest entry whose artifact path leads outside its model folder (absolute, '..', or a symlink out)."""


class ArtifactIntegrityError(ExportError):
    """An artifact whose bytes no longer match the sha256 its manifest records (or that records none)."""


INT8_ONLY = {"int8_only": True}  # dataclass field metadata: the option changes int8 artifacts only


@dataclass(frozen=True)
class ExportOptions:
    """What every exporter reads. Each format subclasses it with its own options (``onnx.OnnxOptions``, ...).

    The rebuild key is the options dataclass itself (``cache_key``): a changed field rebuilds the artifacts
    it concerns, and fields marked ``INT8_ONLY`` concern int8 artifacts only.
    """

    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    example_batch: int = 2  # torch.export specialises a size-1 dim; 2+ keeps the batch dynamic
    calibration_dir: Path | None = field(default=None, metadata=INT8_ONLY)  # default: models.sample_images()
    calibration_limit: int | None = field(default=None, metadata=INT8_ONLY)
    # the last block's tail for the class token only (models.export_form); a format turns it on where it measured faster
    class_token_tail: bool = False

    def export_form(self) -> ExportForm:
        """The form the exporter traces (``DetectorModel.with_form``); recorded as ``ArtifactDetails.export_form``."""
        return ExportForm(class_token_tail=self.class_token_tail)

    def cache_key(self) -> dict:
        """The options that change the bytes of this artifact (compared to skip up-to-date exports)."""
        return {f.name: str(value) if isinstance(value := getattr(self, f.name), Path) else value
                for f in dataclasses.fields(self)
                if self.precision == "int8" or not f.metadata.get("int8_only")}

    def replace(self, **changes) -> "ExportOptions":
        return dataclasses.replace(self, **changes)


class TraceCache:
    """The traced/exported fp32 graph of one model, shared by the precisions of one export run.

    fp16 and int8 start from the fp32 graph, so ``export_all`` passes one cache to every exporter of a
    run: an ``export --all`` traces the ViT-S once per format, not three times. Explicit, never a
    process-wide global, so that no test depends on what ran before it.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, object] = {}

    def get(self, key: tuple, make: Callable[[], object]) -> tuple[object, bool]:
        """(the entry for ``key``, whether it was already there); ``make()`` builds it on a miss."""
        if key in self._entries:
            return self._entries[key], True
        self._entries = {key: make()} | {k: v for k, v in self._entries.items() if k[0] != key[0]}
        return self._entries[key], False


# export(loaded, out_dir, options, cache) -> Artifact. out_dir is the artifact's own (temporary) folder; options
# is the format's own ExportOptions subclass; cache (may be None) holds the fp32 trace across precisions.
ExportFn = Callable[["LoadedModel", Path, ExportOptions, "TraceCache | None"], Artifact]


def artifact_id(fmt: str, precision: str) -> str:
    return f"{fmt}-{precision}"


def artifact_files(path: Path) -> list[Path]:
    """The files an artifact consists of: a directory's files (.mlpackage), an IR's .xml and .bin, or the file."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    companion = path.with_suffix(".bin")
    if path.suffix == ".xml" and companion.is_file():  # OpenVINO IR: topology + weights
        return [path, companion]
    return [path]


def path_sha256(path: Path) -> str:
    """sha256 of an artifact: a plain file's own digest, else one over its files' sorted relative paths and bytes.

    Deterministic for directories (.mlpackage) and for an OpenVINO IR (.xml + .bin, hashed together), so
    ``path_sha256(model_dir / artifact.path) == artifact.sha256`` holds for every format.
    """
    path = Path(path)
    files = artifact_files(path)
    if files == [path]:
        return file_sha256(path)
    root = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
        digest.update(f"{file.relative_to(root).as_posix()}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def path_size(path: Path) -> int:
    """Bytes of all the files an artifact consists of (see artifact_files)."""
    return sum(f.stat().st_size for f in artifact_files(Path(path)))


def model_metadata(loaded: LoadedModel) -> dict[str, str]:
    """What every artifact carries inside itself (ONNX metadata_props, OpenVINO rt_info, CoreML user metadata,
    LiteRT metadata, an ExecuTorch constant method), read back by ``exporters.embedded`` (``vitship inspect``).

    All values are strings; lists are JSON. The input facts are the tensor input's; an image-input artifact
    overrides them (``exporters.image_input.frame_metadata``).
    """
    from vitship.models.head import DEFAULT_THRESHOLD

    spec, info = loaded.spec, loaded.info
    return {
        "model_name": spec.name,
        "architecture": spec.architecture,
        "weights_sha256": info.sha256,
        "weights_source": info.source,
        "weights_trained": str(info.trained).lower(),
        "labels": json.dumps(list(spec.labels)),
        "head_kind": spec.head_kind,
        "fake_index": str(spec.fake_index),
        "decision_threshold": repr(DEFAULT_THRESHOLD),
        "input_type": "tensor",
        "input_layout": "NCHW",
        "input_dtype": "float32",
        "input_name": spec.input_name,
        "output_names": json.dumps(list(spec.output_names)),
        "input_size": json.dumps(list(spec.input_shape)),  # C, H, W
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "interpolation": spec.interpolation,
        "resize": json.dumps({"mode": spec.resize_mode, "size": list(spec.resize_size)}),
        "center_crop": json.dumps(list(spec.crop_size) if spec.do_center_crop else None),
        "rescale_factor": repr(spec.rescale_factor),
        "vitship_version": vitship_version(),
    }


def read_manifest(model_dir: Path) -> dict:
    """The manifest as a JSON dict, validated (``Manifest.read``); for tests and tools that edit the file.

    vitship's own readers use ``vitship.exporters.manifest.Manifest``; an empty manifest where there is none.
    """
    from vitship.exporters.manifest import Manifest

    return Manifest.read(model_dir).to_dict()


def write_manifest(model_dir: Path, manifest: dict) -> None:
    """Validate a manifest dict (``Manifest.from_dict``) and write it atomically."""
    from vitship.exporters.manifest import Manifest, manifest_path

    Manifest.from_dict(manifest, manifest_path(model_dir)).write(model_dir)


def resolve_artifact_path(model_dir: Path, artifact: Artifact) -> Path:
    """``model_dir / artifact.path``, refused unless it stays inside ``model_dir`` (symlinks followed).

    Every reader of a manifest's paths goes through here before it opens, hashes or stats anything, so
    a hostile manifest cannot point vitship at ``/etc/passwd`` or ``../other-model``, whatever sha256 it
    records.
    """
    root = Path(model_dir).resolve()
    relative = Path(artifact.path)
    candidate = (root / relative).resolve()
    if relative.is_absolute() or ".." in relative.parts or not candidate.is_relative_to(root) or candidate == root:
        raise ArtifactPathError(f"{Path(model_dir) / MANIFEST_NAME}: artifact {artifact.id} path {artifact.path!r} leads "
                                f"outside its model folder {model_dir}; refused before reading it. A manifest names only "
                                "files inside its own folder: re-export (vitship export --force)")
    return root / relative


def manifest_artifacts(model_dir: Path) -> list[Artifact]:
    """The manifest's artifacts (validated); one whose path leads outside ``model_dir`` is refused (ArtifactPathError)."""
    from vitship.exporters.manifest import Manifest

    artifacts = list(Manifest.read(model_dir).artifacts.values())
    for artifact in artifacts:
        resolve_artifact_path(model_dir, artifact)
    return artifacts


# (resolved path, inode, size, mtime_ns, ctime_ns) of each file -> sha256, for this process: eval, predict and
# a parity or bench process open the same artifact several times, and the ViT-S fp32 ONNX file is 87 MB.
_VERIFIED: dict[tuple, str] = {}


def _fingerprint(path: Path) -> tuple:
    stats = [(str(file), file.stat()) for file in artifact_files(path)]
    return (str(path), *((name, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for name, s in stats))


def verify_artifact(model_dir: Path, artifact: Artifact) -> Path:
    """The artifact's path, once its bytes are checked against the sha256 the manifest records.

    Every session goes through here (``runtimes.open_session``), so eval, predict, bench, parity, compat-check
    and the API all refuse an artifact that was modified after export. A missing file is left to the runtime,
    which reports it as unavailable. The digest is cached per file identity (inode, size, mtime, ctime).

    Raises:
        ArtifactPathError: the path leads outside ``model_dir``.
        ArtifactIntegrityError: no sha256 is recorded, or the bytes hash to another one.
    """
    path = resolve_artifact_path(model_dir, artifact)
    if not path.exists():
        return path
    if not artifact.sha256:
        raise ArtifactIntegrityError(f"{Path(model_dir) / MANIFEST_NAME}: artifact {artifact.id} records no sha256, so "
                                     "its bytes cannot be checked; re-export it (vitship export --force)")
    key = _fingerprint(path)
    actual = _VERIFIED.get(key) or path_sha256(path)
    if actual != artifact.sha256:
        raise ArtifactIntegrityError(f"{path} hashes to {actual[:16]}, but {Path(model_dir) / MANIFEST_NAME} records "
                                     f"{artifact.sha256[:16]} for {artifact.id}: modified since export; refused. "
                                     "Re-export it (vitship export --force)")
    _VERIFIED[key] = actual
    return path
