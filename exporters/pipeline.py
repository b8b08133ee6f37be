"""export_all: run the requested exporters into ``root/<model>/<id>/`` and keep ``manifest.json`` truthful.

Each artifact is built in a temporary folder and swapped in with one rename; the manifest is rewritten
atomically around each swap, so a run killed at any point leaves a manifest whose every entry matches
the files on disk. One exporter failing does not stop the others. A run holds the model folder's export
lock (exporters/lock.py) throughout, so the temporaries it clears on start can only be those of a dead run.

Every int8 artifact carries an int8 record (``exporters.int8.record``): ``gate`` is a required argument,
either the export's int8 gate (``vitship.bench.int8_gate.int8_gate(loaded)``, which the CLI and
``vitship.export`` pass by default) or ``False``, which ships the requested recipe with a "not checked"
verdict that parity, the report and compare show. No caller can leave it out and skip the gate silently.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vitship.exporters import EXPORTERS, IN_ALL, all_artifact_ids, get_exporter, options_class
from vitship.exporters.base import (
    MANIFEST_NAME,
    PRECISIONS,
    Artifact,
    ExportError,
    ExportOptions,
    TraceCache,
    artifact_id,
    path_sha256,
    path_size,
)
from vitship.exporters.int8.capabilities import int8_capabilities
from vitship.exporters.int8.ladder import Int8GateFailed, export_gated, not_checked
from vitship.exporters.int8.options import Int8Options, check_int8_options
from vitship.exporters.int8.record import GATE_OFF, Int8Record
from vitship.exporters.int8.verdict import Int8Gate
from vitship.exporters.lock import export_lock
from vitship.exporters.manifest import Manifest, why_stale
from vitship.exporters.workers import ExportWorker, WorkerFailure, export_in_workers
from vitship.models import LoadedModel, UnknownNameError
from vitship.models.atomic import atomic_directory, recover_directory
from vitship.models.status import Status
from vitship.models.versions import vitship_version

log = logging.getLogger(__name__)

NO_GUARD = contextlib.nullcontext()  # a serial run's manifest needs no lock (export_all's guard)

# progress(artifact_id, event): event is "start", then the result's status.
ProgressFn = Callable[[str, str], None]


@dataclass
class ExportResult:
    """What happened to one requested artifact.

    ``status``: OK (built), SKIPPED (up to date), FAIL (an int8 that no step of the ladder passed: nothing
    shipped, ``int8`` has every step's figures) or ERROR (the exporter crashed or refused).
    """

    id: str
    status: Status
    reason: str = ""  # ok: why it was (re)built ("new", "forced", "other options", ...); fail / error: what went wrong
    size_bytes: int = 0
    seconds: float = 0.0
    artifact: Artifact | None = None
    traceback: str = ""  # the exporter's traceback when it failed (the CLI shows it with --debug)
    int8: Int8Record | None = None  # the int8 gate's record (int8 artifacts, shipped or failed)

    @property
    def failed(self) -> bool:
        return self.status.failed


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
               options: Mapping[str, ExportOptions] | None = None, *, gate: Int8Gate | Literal[False],
               force: bool = False, progress: ProgressFn | None = None, wait_s: float = 0.0, jobs: int = 1,
               worker_setup: Callable[[], None] | None = None) -> list[ExportResult]:
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
        gate: the export's int8 gate (``vitship.bench.int8_gate.int8_gate(loaded)``): judges each int8 artifact
            and escalates a failing one (``exporters.int8.ladder``); False: int8 artifacts ship unchecked, their
            record saying so. Required: no caller skips the gate without saying so.
        jobs: how many formats to build at a time, each in a worker process (exporters/workers.py; the model
            and the gate must pickle); 1: all in this process, one after the other.
        worker_setup: called first in each worker process (must pickle), e.g. the CLI's quiet-backends switch.
    Returns:
        One ExportResult per request, in order.
    Raises:
        FolderLockedError: another export holds the model folder (its pid is in the message).
        ManifestError: the existing manifest is malformed and ``force`` is not set.
    """
    options = dict(options or {})
    for fmt, precision in requests:  # an int8 option the format cannot use is refused before any work
        if precision == "int8":
            check_int8_options(fmt, (options.get(fmt) or options_class(fmt)()).replace(precision="int8"))
    model_dir = make_model_dir(model_dir_for(root, loaded))
    with export_lock(model_dir, wait_s):
        for fmt, precision in requests:
            recover_directory(model_dir / artifact_id(fmt, precision))  # under the lock: only dead runs' temporaries
        manifest = _load_manifest(model_dir, loaded, force)
        guard = threading.Lock() if jobs > 1 else NO_GUARD  # the manifest, between worker threads

        def export_one(fmt: str, precision: str, cache: TraceCache | None, worker: Callable[[], ExportWorker] | None):
            aid = artifact_id(fmt, precision)
            if progress:
                progress(aid, "start")
            format_options = (options.get(fmt) or options_class(fmt)()).replace(precision=precision)
            result = _export_one(loaded, model_dir, manifest, fmt, format_options, force, cache, gate, worker, guard)
            if progress:
                progress(aid, result.status)
            return result

        if jobs > 1 and len({fmt for fmt, _ in requests}) > 1:
            groups: dict[str, list[tuple[int, str]]] = {}
            for index, (fmt, precision) in enumerate(requests):  # one format's precisions share a worker's trace
                groups.setdefault(fmt, []).append((index, precision))
            done = export_in_workers(jobs, [[(i, fmt, p) for i, p in group] for fmt, group in groups.items()],
                                     export_one, lambda: ExportWorker(loaded, gate, worker_setup))
            return [done[index] for index in range(len(requests))]
        cache = TraceCache()
        return [export_one(fmt, precision, cache, None) for fmt, precision in requests]


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
                force: bool, cache: TraceCache | None, gate: Int8Gate | Literal[False],
                worker: Callable[[], ExportWorker] | None = None, guard=NO_GUARD) -> ExportResult:
    aid = artifact_id(fmt, options.precision)
    entry = manifest.artifacts.get(aid)
    why = "forced" if entry and force else "new"
    if entry and not force:
        why = why_stale(model_dir, entry, loaded, options)
        record = Int8Record.of(entry)
        if why is None and gate is not False and record is not None and record.gate_was_off:
            why = "the int8 gate has not checked it"
        if why is None:
            return ExportResult(aid, Status.SKIPPED, "up to date", entry.size_bytes, 0.0, entry, int8=Int8Record.of(entry))
        log.info("%s: rebuilding: %s", aid, why)
    start = time.perf_counter()
    try:
        artifact = _build(loaded, model_dir, manifest, fmt, options, cache, gate, worker, guard)
    except KeyboardInterrupt:
        raise
    except Int8GateFailed as err:  # the ladder ended without a pass: nothing shipped, every step's figures kept
        with guard:
            manifest.int8_rejected[aid] = err.record  # so that the report can say why it is missing
            _write_manifest(model_dir, manifest)
        return ExportResult(aid, Status.FAIL, str(err), 0, round(time.perf_counter() - start, 2), int8=err.record)
    except Exception as err:  # a failing exporter is one row of the table, not the end of the run
        log.debug("%s failed", aid, exc_info=True)
        name = err.name if isinstance(err, WorkerFailure) else type(err).__name__
        reason = f"{name}: {err}" if not isinstance(err, ExportError) else str(err)
        return ExportResult(aid, Status.ERROR, reason, 0, round(time.perf_counter() - start, 2),
                            traceback=err.trace if isinstance(err, WorkerFailure) else traceback.format_exc())
    return ExportResult(aid, Status.OK, why, artifact.size_bytes, round(time.perf_counter() - start, 2), artifact,
                        int8=Int8Record.of(artifact))


def _build(loaded: LoadedModel, model_dir: Path, manifest: Manifest, fmt: str, options: ExportOptions,
           cache: TraceCache | None, gate: Int8Gate | Literal[False], worker: Callable[[], ExportWorker] | None = None,
           guard=NO_GUARD) -> Artifact:
    """Export into a temporary folder (here, or in ``worker()``'s process), then swap it in; the manifest never
    names a file it does not match."""
    aid = artifact_id(fmt, options.precision)
    with atomic_directory(model_dir / aid) as tmp:
        artifact = worker().build(fmt, options, tmp) if worker else fill_folder(loaded, tmp, fmt, options, cache, gate)
        inner = _inner_path(artifact, aid)
        if not (tmp / inner).exists():
            raise ExportError(f"{aid}: the exporter reported {artifact.path} but wrote no {inner} in its folder")
        with guard:
            if manifest.artifacts.pop(aid, None) is not None:
                _write_manifest(model_dir, manifest)  # the old entry goes before its files do
    final = model_dir / artifact.path
    artifact.sha256, artifact.size_bytes = path_sha256(final), path_size(final)
    artifact.versions.setdefault("vitship", vitship_version())
    with guard:
        manifest.artifacts[aid] = artifact
        manifest.int8_rejected.pop(aid, None)
        _write_manifest(model_dir, manifest)
    return artifact


def fill_folder(loaded: LoadedModel, tmp: Path, fmt: str, options: ExportOptions, cache: TraceCache | None,
                gate: Int8Gate | Literal[False]) -> Artifact:
    """Run ``fmt``'s exporter into ``tmp`` (an int8 through its gate and ladder); the Artifact it wrote."""
    exporter = get_exporter(fmt)
    if options.precision == "int8":
        return _export_int8(exporter, loaded, tmp, fmt, options, cache, gate)
    return exporter(loaded, tmp, options, cache)


def _export_int8(exporter, loaded: LoadedModel, tmp: Path, fmt: str, options: ExportOptions, cache: TraceCache,
                 gate: Int8Gate | Literal[False]) -> Artifact:
    """An int8 artifact with its record: gated along the ladder, or marked not checked when the gate is off."""
    caps = int8_capabilities(fmt)
    if not isinstance(options, Int8Options):
        raise ExportError(f"{fmt}: its options class {type(options).__name__} does not take the int8 recipe (Int8Options)")
    if gate is False:
        return not_checked(exporter(loaded, tmp, options, cache), options, caps, GATE_OFF)
    if not isinstance(gate, Int8Gate):
        raise TypeError(f"gate must be an Int8Gate or False, not {gate!r}")
    return export_gated(exporter, loaded, tmp, options, cache, gate, caps)


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
