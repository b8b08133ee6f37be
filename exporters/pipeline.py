"""export_all: run the requested exporters into ``root/<model>/<id>/`` and keep ``manifest.json`` truthful.

Each artifact is built in a temporary folder and swapped in with one rename; the manifest is rewritten
atomically around each swap, so a run killed at any point leaves a manifest whose every entry matches
the files on disk. One exporter failing does not stop the others. A run holds the model folder's export
lock (exporters/lock.py) throughout, so the temporaries it clears on start can only be those of a dead run.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from vitship.exporters import EXPORTERS, IN_ALL, all_artifact_ids, get_exporter, options_class
from vitship.exporters.base import (
    MANIFEST_NAME,
    PRECISIONS,
    Artifact,
    ArtifactPathError,
    ExportError,
    ExportOptions,
    TraceCache,
    artifact_id,
    path_sha256,
    path_size,
    resolve_artifact_path,
)
from vitship.exporters.int8 import Int8Options
from vitship.exporters.int8_ladder import Int8Gate, export_gated
from vitship.exporters.lock import export_lock
from vitship.exporters.manifest import Manifest
from vitship.models import LoadedModel, UnknownNameError
from vitship.models.atomic import atomic_directory, recover_directory
from vitship.models.versions import installed_version, vitship_version

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = "ok", "skipped", "export_failed"
log = logging.getLogger(__name__)

# progress(artifact_id, event): event is "start", then the result's status.
ProgressFn = Callable[[str, str], None]


@dataclass
class ExportResult:
    """What happened to one requested artifact."""

    id: str
    status: str  # ok | skipped (up to date) | export_failed
    reason: str = ""  # ok: why it was (re)built ("new", "forced", "other options", ...); failed: the error
    size_bytes: int = 0
    seconds: float = 0.0
    artifact: Artifact | None = None
    traceback: str = ""  # the exporter's traceback when it failed (the CLI shows it with --debug)

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED


def resolve_requests(formats: list[str] | None = None, precisions: list[str] | None = None) -> list[tuple[str, str]]:
    """The (format, precision) pairs to export, narrowed by ``formats``/``precisions``.

    Without ``formats``: what ``export --all`` builds (each format's ``IN_ALL`` precisions); a named format
    gives every precision it produces.
    """
    for fmt in formats or []:
        if fmt not in EXPORTERS:
            raise UnknownNameError("format", fmt, list(EXPORTERS))
    for precision in precisions or []:
        if precision not in PRECISIONS:
            raise UnknownNameError("precision", precision, list(PRECISIONS))
    return [(fmt, precision) for fmt, (_, supported) in EXPORTERS.items() if not formats or fmt in formats
            for precision in (supported if formats else IN_ALL.get(fmt, supported)) if not precisions or precision in precisions]


def model_dir_for(root: Path, loaded: LoadedModel) -> Path:
    return Path(root) / loaded.spec.name


def find_model_dir(artifacts: Path, model: str | None, arch: str) -> Path:
    """artifacts/<model>: ``artifacts`` itself if it holds a manifest, the named one, the only one, else ``arch``'s name."""
    from vitship.models import spec_for

    artifacts = Path(artifacts)
    if Manifest.exists(artifacts):
        return artifacts
    if model:
        return artifacts / model
    found = sorted(p.parent for p in artifacts.glob(f"*/{MANIFEST_NAME}"))
    return found[0] if len(found) == 1 else artifacts / spec_for(arch).name


def export_all(loaded: LoadedModel, root: Path, requests: list[tuple[str, str]],
               options: Mapping[str, ExportOptions] | None = None, force: bool = False,
               progress: ProgressFn | None = None, wait_s: float = 0.0,
               gate: "Int8Gate | None" = None) -> list[ExportResult]:
    """Export each (format, precision) in ``requests`` into ``root/<model-name>/`` and update its manifest.

    Args:
        loaded: the model, its spec and weights info.
        root: the artifacts folder (``artifacts`` by default in the CLI).
        requests: (format, precision) pairs, e.g. from ``resolve_requests``.
        options: each format's own options (``onnx.OnnxOptions``, ...) by format name; a format left out gets
            its defaults; ``precision`` is set per request.
        force: rebuild even artifacts that are up to date.
        progress: called with (artifact id, "start") and then (artifact id, status).
        wait_s: how long to wait for another export into the same model folder to finish (0: refuse at once).
        gate: checks each int8 artifact against fp32 and escalates a failing one (``exporters.int8_ladder``);
            None: int8 artifacts are not checked at export.
    Returns:
        One ExportResult per request, in order.
    Raises:
        FolderLockedError: another export holds the model folder (its pid is in the message).
        ManifestError: the existing manifest is malformed and ``force`` is not set.
    """
    model_dir = make_model_dir(model_dir_for(root, loaded))
    with export_lock(model_dir, wait_s):
        for fmt, precision in requests:
            recover_directory(model_dir / artifact_id(fmt, precision))  # under the lock: only dead runs' temporaries
        manifest = _load_manifest(model_dir, loaded, force)
        options, cache, results = dict(options or {}), TraceCache(), []
        for fmt, precision in requests:
            aid = artifact_id(fmt, precision)
            if progress:
                progress(aid, "start")
            format_options = (options.get(fmt) or options_class(fmt)()).replace(precision=precision)
            result = _export_one(loaded, model_dir, manifest, fmt, format_options, force, cache, gate)
            results.append(result)
            if progress:
                progress(aid, result.status)
    return results


def make_model_dir(model_dir: Path) -> Path:
    """Create the model folder; a path that cannot be a folder (e.g. under a regular file) is an ExportError."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in [model_dir, *model_dir.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (err.strerror or str(err))
        raise ExportError(f"cannot create the model folder {model_dir}: {why}; export into another --out folder") from err
    return model_dir


def _load_manifest(model_dir: Path, loaded: LoadedModel, force: bool) -> Manifest:
    """The existing manifest, minus entries made from other weights (a malformed one is replaced only with force)."""
    try:
        manifest = Manifest.read(model_dir)
    except ExportError:
        if not force:
            raise
        log.warning("%s: replacing the malformed manifest (--force)", model_dir)
        manifest = Manifest()
    for aid in [aid for aid, a in manifest.artifacts.items() if a.weights.get("sha256") != loaded.info.sha256]:
        log.warning("%s: dropping %s from the manifest: it was exported from other weights", model_dir, aid)
        del manifest.artifacts[aid]
    manifest.model, manifest.spec, manifest.weights = loaded.spec.name, loaded.spec.to_dict(), loaded.info.to_dict()
    manifest.vitship_version = vitship_version()
    return manifest


def _export_one(loaded: LoadedModel, model_dir: Path, manifest: Manifest, fmt: str, options: ExportOptions,
                force: bool, cache: TraceCache, gate: "Int8Gate | None" = None) -> ExportResult:
    aid = artifact_id(fmt, options.precision)
    entry = manifest.artifacts.get(aid)
    why = "forced" if entry and force else "new"
    if entry and not force:
        why = why_stale(model_dir, entry, loaded, options)
        if why is None:
            return ExportResult(aid, STATUS_SKIPPED, "up to date", entry.size_bytes, 0.0, entry)
        log.info("%s: rebuilding: %s", aid, why)
    start = time.perf_counter()
    try:
        artifact = _build(loaded, model_dir, manifest, fmt, options, cache, gate)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # a failing exporter is one row of the table, not the end of the run
        log.debug("%s failed", aid, exc_info=True)
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, ExportError) else str(err)
        return ExportResult(aid, STATUS_FAILED, reason, 0, round(time.perf_counter() - start, 2),
                            traceback=traceback.format_exc())
    return ExportResult(aid, STATUS_OK, why + _escalation(artifact), artifact.size_bytes,
                        round(time.perf_counter() - start, 2), artifact)


def _escalation(artifact: Artifact) -> str:
    """'; int8 gate: ...' when the export's int8 gate had to escalate (the steps are in details.int8)."""
    steps = (artifact.details.int8 or {}).get("steps") or []
    if len(steps) < 2:
        return ""
    return f"; int8 gate: requested recipe failed, shipped step {steps[-1]['step']} ({steps[-1]['why']})"


def _build(loaded: LoadedModel, model_dir: Path, manifest: Manifest, fmt: str, options: ExportOptions,
           cache: TraceCache, gate: "Int8Gate | None" = None) -> Artifact:
    """Export into a temporary folder, then swap it in; the manifest never names a file it does not match."""
    aid = artifact_id(fmt, options.precision)
    exporter = get_exporter(fmt)
    with atomic_directory(model_dir / aid) as tmp:
        if gate is not None and options.precision == "int8" and isinstance(options, Int8Options):
            artifact = export_gated(exporter, loaded, tmp, options, cache, gate)
        else:
            artifact = exporter(loaded, tmp, options, cache)
        inner = _inner_path(artifact, aid)
        if not (tmp / inner).exists():
            raise ExportError(f"{aid}: the exporter reported {artifact.path} but wrote no {inner} in its folder")
        if manifest.artifacts.pop(aid, None) is not None:
            _write_manifest(model_dir, manifest)  # the old entry goes before its files do
    final = model_dir / artifact.path
    artifact.sha256, artifact.size_bytes = path_sha256(final), path_size(final)
    artifact.versions.setdefault("vitship", vitship_version())
    manifest.artifacts[aid] = artifact
    _write_manifest(model_dir, manifest)
    return artifact


def _write_manifest(model_dir: Path, manifest: Manifest) -> None:
    """Write atomically, artifacts in registry order (onnx-fp32, onnx-fp16, ...) however they were built."""
    order = {aid: i for i, aid in enumerate(all_artifact_ids())}
    entries = manifest.artifacts
    manifest.artifacts = {aid: entries[aid] for aid in sorted(entries, key=lambda a: (order.get(a, len(order)), a))}
    manifest.write(model_dir)


def _inner_path(artifact: Artifact, aid: str) -> Path:
    path = Path(artifact.path)
    if path.is_absolute() or not path.parts or path.parts[0] != aid or ".." in path.parts:
        raise ExportError(f"{aid}: artifact path {artifact.path!r} must be relative and start with '{aid}/'")
    return path.relative_to(aid)


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
