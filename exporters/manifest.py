"""manifest.json as a typed, validated class: what a model folder holds, read and written in one place.

Every reader (export, parity, bench, eval, predict, compat-check, the report, the Python API) goes through
``Manifest.read``: a malformed file is a one-line ``ManifestError`` that names the file and says what to do,
never a ``TypeError`` from deep inside a reader. A dict is for JSON at the file boundary only. Each artifact
entry is read and written by the schema (``exporters/schema.py``: typed details, versions, migrations); an
older manifest is migrated on read and written at the current version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType
from typing import TYPE_CHECKING

from vitship.exporters.base import (
    MANIFEST_NAME,
    ArtifactPathError,
    ExportError,
    ExportOptions,
    path_sha256,
    resolve_artifact_path,
)
from vitship.exporters.int8.record import Int8Record
from vitship.exporters.schema import MANIFEST_SCHEMA_VERSION, Artifact, read_entry, read_rejected, readable
from vitship.models.atomic import atomic_write_json
from vitship.models.typed import to_json
from vitship.models.versions import installed_version

if TYPE_CHECKING:
    from vitship.models import LoadedModel

FIX = "re-export to rebuild it (vitship export --force), or delete it"

# The JSON type of every Artifact field (tests/test_manifest.py checks that each field has one).
ARTIFACT_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "format": str, "precision": str, "path": str, "sha256": str, "size_bytes": int,
    "export_seconds": (int, float), "versions": dict, "input_spec": dict, "weights": dict,
    "calibration": (dict, NoneType), "options": dict, "details": dict, "min_runtime_versions": dict,
}
REQUIRED_ARTIFACT_FIELDS = ("id", "format", "precision", "path")
TOP_LEVEL_TYPES = {"model": str, "spec": dict, "weights": dict, "vitship_version": str}


class ManifestError(ExportError):
    """manifest.json cannot be read or is malformed; the message names the file and says what to do."""


def manifest_path(model_dir: Path) -> Path:
    return Path(model_dir) / MANIFEST_NAME


@dataclass
class Manifest:
    """A model folder's manifest: the model, the weights its artifacts were exported from, and the artifacts by id."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    model: str = ""
    spec: dict = field(default_factory=dict)  # ModelSpec.to_dict()
    weights: dict = field(default_factory=dict)  # WeightsInfo.to_dict()
    vitship_version: str = ""
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    # int8 exports whose ladder ended without a pass (nothing shipped): id -> their int8 record (every step's figures)
    int8_rejected: dict[str, Int8Record] = field(default_factory=dict)

    @staticmethod
    def exists(model_dir: Path) -> bool:
        """Whether ``model_dir`` holds a manifest.json (a model folder)."""
        return manifest_path(model_dir).is_file()

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        """The manifest of ``model_dir``; an empty one where there is none yet; a malformed one is a ManifestError."""
        path = manifest_path(model_dir)
        if not path.exists():
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ManifestError(f"{path}: cannot read the manifest ({getattr(err, 'strerror', None) or err}); {FIX}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}: not JSON ({err}); {FIX}") from err
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: object, source: Path | str = MANIFEST_NAME) -> Manifest:
        """Validate the structure of a decoded manifest.json (``source`` names it in errors)."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: a JSON {_json_type(data)}, not a manifest object; {FIX}")
        version = data.get("schema_version")
        if not readable(version):
            raise ManifestError(f"{source}: manifest schema {version!r}, this vitship reads {MANIFEST_SCHEMA_VERSION} "
                                f"(and migrates older ones); {FIX}, or upgrade vitship if a newer one wrote it")
        for name, kind in TOP_LEVEL_TYPES.items():
            if name in data and not isinstance(data[name], kind):
                raise ManifestError(f"{source}: '{name}' is a JSON {_json_type(data[name])}, not a {_json_name(kind)}; {FIX}")
        weights = data.get("weights") or {}
        if weights and not all(isinstance(weights.get(k), str) and weights.get(k) for k in ("source", "sha256")):
            raise ManifestError(f"{source}: 'weights' records no 'source' and 'sha256' strings; {FIX}")
        entries = data.get("artifacts")
        if not isinstance(entries, dict):
            what = "no 'artifacts'" if entries is None else f"'artifacts' as a JSON {_json_type(entries)}, not an object"
            raise ManifestError(f"{source}: {what}; {FIX}")
        artifacts = {aid: _artifact(aid, entry, source, version) for aid, entry in entries.items()}
        rejected = data.get("int8_rejected") or {}
        if not isinstance(rejected, dict):
            raise ManifestError(f"{source}: 'int8_rejected' is a JSON {_json_type(rejected)}, not an object of int8 records; {FIX}")
        try:
            rejected = read_rejected(rejected)
        except (TypeError, ValueError) as err:
            raise ManifestError(f"{source}: 'int8_rejected': {str(err)[:200]}; {FIX}") from err
        return cls(MANIFEST_SCHEMA_VERSION, data.get("model", ""), data.get("spec", {}), data.get("weights", {}),
                   data.get("vitship_version", ""), artifacts, rejected)

    def to_dict(self) -> dict:
        """The JSON document, artifacts last (for readers of the file)."""
        return {"schema_version": self.schema_version, "model": self.model, "spec": self.spec, "weights": self.weights,
                "vitship_version": self.vitship_version,
                "artifacts": {aid: artifact.to_dict() for aid, artifact in self.artifacts.items()},
                **({"int8_rejected": to_json(self.int8_rejected)} if self.int8_rejected else {})}

    def write(self, model_dir: Path) -> None:
        """Write atomically: a reader sees the old manifest or the new one, never half of one."""
        atomic_write_json(manifest_path(model_dir), self.to_dict())

    def reference_weights(self) -> dict:
        """The weights info the artifacts were exported from: the top-level record, else the first artifact's."""
        return self.weights or next((a.weights for a in self.artifacts.values() if a.weights), {})

    def spec_dict(self) -> dict:
        """The recorded ModelSpec as a dict (top level, else the first artifact's input spec); {} if none."""
        return self.spec or next((a.input_spec for a in self.artifacts.values() if a.input_spec), {})


def _artifact(aid: object, entry: object, source: Path | str, version: int) -> Artifact:
    if not isinstance(entry, dict):
        raise ManifestError(f"{source}: artifact {aid!r} is a JSON {_json_type(entry)}, not an object; {FIX}")
    for name in REQUIRED_ARTIFACT_FIELDS:
        if not entry.get(name):
            raise ManifestError(f"{source}: artifact {aid!r} has no '{name}'; {FIX}")
    for name, kind in ARTIFACT_FIELD_TYPES.items():
        if name in entry and not isinstance(entry[name], kind) or isinstance(entry.get(name), bool):
            raise ManifestError(f"{source}: artifact {aid!r} field '{name}' is a JSON {_json_type(entry[name])}, "
                                f"not a {_json_name(kind)}; {FIX}")
    if entry["id"] != aid:
        raise ManifestError(f"{source}: artifact {aid!r} records id {entry['id']!r}; {FIX}")
    try:
        return read_entry(entry, version)
    except (TypeError, ValueError) as err:
        raise ManifestError(f"{source}: artifact {aid!r}: {str(err)[:200]}; {FIX}") from err


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            NoneType: "null"}.get(type(value), type(value).__name__)


def _json_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys({dict: "object", str: "string", int: "number", float: "number",
                                      NoneType: "null"}.get(k, k.__name__) for k in kinds))


def why_stale(model_dir: Path, entry: Artifact, loaded: LoadedModel, options: ExportOptions) -> str | None:
    """Why a manifest entry must be rebuilt, or None when it is up to date."""
    if entry.weights.get("sha256") != loaded.info.sha256:
        return "other weights"
    if entry.options != options.cache_key():
        return "other options"
    changed = [f"{name} {version} -> {installed_version(name)}" for name, version in entry.versions.items()
               if not _same_version(version, installed_version(name))]
    if changed:
        return "library versions changed: " + ", ".join(changed)
    try:
        path = resolve_artifact_path(model_dir, entry)
    except ArtifactPathError:
        return "its manifest path leads outside the model folder"  # rebuilt in place, never opened
    if not path.exists():
        return "its file is missing"
    if path_sha256(path) != entry.sha256:
        return "its file no longer matches the manifest sha256"
    return None


def _same_version(recorded: str, installed: str | None) -> bool:
    # Exporters record what their library reports: openvino says "2026.4.0-<build>" where the
    # package metadata says "2026.4.0", so a recorded version may extend the installed one.
    if installed is None:
        return recorded in (None, "not installed", "unknown")
    return recorded == installed or str(recorded).startswith(installed + "-")
