"""The manifest's one schema: each artifact entry as a typed ``Artifact``, read and written here and nowhere else.

An entry's ``details`` are the format's class (``exporters/details.py``), its ``calibration`` a ``Calibration``,
and its ``options`` the options class's ``cache_key()`` (the rebuild key, a plain dict read through
``Artifact.option``). ``exporters/manifest.py`` validates the file around the entries and calls ``read_entry``.

Version rules (``MANIFEST_SCHEMA_VERSION``):
- Adding a field with a default to a details or calibration class is not a new version: an older vitship keeps
  the key in ``extra`` and writes it back, a newer one reads its absence as the default.
- Renaming, moving or removing a field, or changing what it means, is: bump the version and add the step from
  the previous one to ``MIGRATIONS``. A reader migrates an older manifest on read; a writer always writes the
  current version, so the next export rewrites it. A newer version than this vitship knows is refused.

Version 1 (vitship before typed details) kept each format's quantizer facts inside ``details["int8"]``, next to
the int8 gate's record, and CoreML's and OpenVINO's in ``weight_quantization`` and ``ignored_scope``; version 2
moves them to the format's ``quantization`` and leaves ``int8`` to the int8 record. Version 3 (issue 22's int8
package) replaces that loose record with the typed ``details.int8_gate`` (``exporters/int8/record.py``
``Int8Record``) and moves the SmoothQuant fold's summary to ``details.smoothing``; an old gate's record becomes
an ``Int8Record`` with its steps (judged then on 6 held-back photos, at batch 1).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from vitship.exporters.batch_shapes import BatchShapes
from vitship.exporters.details import ArtifactDetails, Calibration, details_class
from vitship.exporters.int8.record import Int8Record
from vitship.models.status import Status
from vitship.models.typed import from_json, to_json

MANIFEST_SCHEMA_VERSION = 3


@dataclass
class Artifact:
    """One exported file or package and everything needed to trust it later."""

    id: str  # <format>-<precision>
    format: str
    precision: str
    path: str  # relative to the model's artifact folder, e.g. "onnx-fp32/model.onnx"
    sha256: str = ""
    size_bytes: int = 0
    export_seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    input_spec: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    options: dict = field(default_factory=dict)  # the options' cache_key(): the rebuild key, read through option()
    details: ArtifactDetails = field(default_factory=ArtifactDetails)  # the format's class (DETAILS_CLASSES)
    # oldest runtime release that loads it, per runtime ({"onnxruntime": "1.16", "openvino": "2024.0"}); {}: not recorded
    min_runtime_versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if type(self.details) is ArtifactDetails:  # the core only (a test's, the torch reference's): the format's class
            core = {f.name: getattr(self.details, f.name) for f in dataclasses.fields(ArtifactDetails)}
            self.details = details_class(self.format)(**core)

    def option(self, name: str, default=None):
        """The value of the options field ``name`` this artifact was exported with (``default`` if not recorded)."""
        return self.options.get(name, default)

    @property
    def batch_shapes(self) -> BatchShapes:
        """The batch sizes this artifact accepts (its ``input_spec``)."""
        return BatchShapes.from_input_spec(self.input_spec)

    def to_dict(self) -> dict:
        """The manifest entry (JSON), at MANIFEST_SCHEMA_VERSION."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict) -> Artifact:
        """The entry of a current manifest, typed; a wrong shape is a TypeError or ValueError (the caller names the file)."""
        return read_entry(data)


def read_entry(entry: dict, version: int = MANIFEST_SCHEMA_VERSION) -> Artifact:
    """One artifact entry of a manifest of ``version``, migrated to the current schema and typed."""
    for step in range(version, MANIFEST_SCHEMA_VERSION):
        entry = MIGRATIONS[step](entry)
    names = {f.name for f in dataclasses.fields(Artifact)}
    artifact = from_json(Artifact, {k: v for k, v in entry.items() if k in names and k != "details"})
    artifact.details = from_json(details_class(artifact.format), entry.get("details") or {})
    return artifact


def read_rejected(entries: dict) -> dict[str, Int8Record]:
    """The manifest's ``int8_rejected``: id -> the int8 record of an export whose ladder shipped nothing."""
    return from_json(dict[str, Int8Record], entries)


def readable(version: object) -> bool:
    """Whether this vitship reads a manifest of ``version`` (the current one, or one it migrates from)."""
    return version == MANIFEST_SCHEMA_VERSION or version in MIGRATIONS


# --- migrations: MIGRATIONS[n] turns an entry of version n into one of version n + 1 --------------------------

# The keys of v1's details["int8"] that were each format's quantizer facts (v2: details.quantization).
V1_QUANTIZER_KEYS = {
    "onnx": ("mode", "fp32_nodes_excluded", "keep_float_nodes", "quantized_weights"),
    "executorch": ("mode", "scheme", "why_default"),
    "litert": ("mode", "quantizer_recipe", "weights", "why_default"),
}


def _v1_int8(record: dict) -> dict:
    """v1's int8 record (gate, held_back_photos, recipe, steps, kept_in_float, smoothing, ...) as v2 holds it."""
    return record


def _entry_v1_to_v2(entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    details = entry.get("details")
    if not isinstance(details, dict):
        return entry
    fmt = entry.get("format", "")
    int8 = details.pop("int8", None)
    if isinstance(int8, dict):
        moved = {k: int8.pop(k) for k in V1_QUANTIZER_KEYS.get(fmt, ()) if k in int8}
        if moved:
            details["quantization"] = moved
        details["int8"] = _v1_int8(int8)
    elif int8 is not None:
        details["int8"] = int8
    if fmt == "coreml" and "weight_quantization" in details:
        details["quantization"] = details.pop("weight_quantization")
    if fmt == "openvino" and "ignored_scope" in details:
        details["quantization"] = {"ignored_scope": details.pop("ignored_scope")}
    return entry


# v2's details["int8"] (the old ladder's record) -> v3's details["int8_gate"] (an Int8Record) and details["smoothing"]
OLD_GATE = "checked by the int8 gate of an earlier vitship, at batch 1 on 6 held-back photos (re-export to judge it again)"


def _old_step(step: dict) -> dict:
    recipe = {"smooth_alpha": step.get("smooth_alpha"), "keep_float": step.get("keep_float") or []}
    return {"step": step.get("step", 0), "why": step.get("why", ""), "recipe": recipe, "photos": "select",
            "target": step.get("target", ""), "passed": bool(step.get("passed")), "min_cosine": step.get("min_cosine", 0.0),
            "max_prob_error": step.get("max_prob_error", 0.0), "agreement": step.get("agreement"),
            "failures": step.get("failures") or []}


def _old_gate(int8: dict) -> dict:
    gate = str(int8.get("gate") or "")
    verdict = Status.PASS if gate == "passed" else Status.NOT_CHECKED
    recipe = int8.get("recipe") or {}
    return {"verdict": str(verdict), "reason": OLD_GATE if verdict is Status.PASS else gate.partition(": ")[2] or gate,
            "recipe": {"smooth_alpha": recipe.get("smooth_alpha"), "keep_float": recipe.get("keep_float") or []},
            "steps": [_old_step(step) for step in int8.get("steps") or []],
            "photos": {"select": {"role": "select", "files": int8.get("held_back_photos") or []}},
            "batches": [1], "layers_ranked_by": int8.get("layers_ranked_by")}


def _entry_v2_to_v3(entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    details = entry.get("details")
    int8 = details.pop("int8", None) if isinstance(details, dict) else None
    if not isinstance(int8, dict):
        return entry
    if isinstance(int8.get("smoothing"), dict):
        details["smoothing"] = int8["smoothing"]
    if entry.get("precision") == "int8" and int8.get("gate"):
        details["int8_gate"] = _old_gate(int8)
    return entry


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _entry_v1_to_v2, 2: _entry_v2_to_v3}
