"""The export's int8 gate: run an int8 artifact on held-back photos and judge it against PyTorch fp32.

Built here, in the bench layer, because running an artifact needs a runtime and exporters never import
runtimes; ``vitship export`` passes it to ``pipeline.export_all(..., gate=...)``, which calls it through
``exporters.int8_ladder`` (the ladder that escalates a failing int8).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.exporters.int8_ladder import GateCheck, Int8Gate, LocateFn
from vitship.models import FEATURES_NAME, LOGITS_NAME, LoadedModel
from vitship.models.judgement import DEFAULT_TOLERANCES, compare


def int8_gate(loaded: LoadedModel, locate: LocateFn | None = None) -> Int8Gate:
    """The gate for ``loaded``'s int8 artifacts (docs/DESIGN.md's int8 tolerance, the ambiguity band of parity).

    Args:
        locate: ranks the layers of a failing artifact; default: the per-layer locator of ``vitship diagnose``
            (``diagnose_ranking``), which the ladder completes with its own outlier ranking.
    """
    locate = locate or (lambda artifact, model_dir, images: diagnose_ranking(loaded, artifact, model_dir, images))
    references: dict[int, dict[str, np.ndarray]] = {}

    def reference(images: np.ndarray) -> dict[str, np.ndarray]:
        key = hash(images.tobytes())
        if key not in references:
            import torch

            with torch.inference_mode():
                logits, features = loaded.model(torch.from_numpy(np.ascontiguousarray(images)))
            references[key] = {LOGITS_NAME: logits.numpy(), FEATURES_NAME: features.numpy()}
        return references[key]

    def check(artifact: Artifact, model_dir: Path, images: np.ndarray) -> GateCheck | None:
        return check_artifact(loaded, artifact, model_dir, images, reference(images))

    return Int8Gate(check=check, locate=locate)


def check_artifact(loaded: LoadedModel, artifact: Artifact, model_dir: Path, images: np.ndarray,
                   reference: dict[str, np.ndarray]) -> GateCheck | None:
    """The int8 gate's verdict for one artifact, on the first CPU target here that runs it (None: no target)."""
    from vitship.bench.accuracy import default_target
    from vitship.runtimes import RuntimeFailure, RuntimeUnavailable, available_targets, open_session

    target = default_target(artifact.format, available_targets())
    if target is None:
        return None
    try:
        session = open_session(artifact, model_dir, target)
    except RuntimeUnavailable:
        return None
    try:
        outputs = [session.run_outputs(images[i:i + 1]) for i in range(len(images))]  # batch 1: every input kind takes it
    except RuntimeFailure as err:
        return GateCheck(False, target, 0.0, 1.0, None, (f"could not run on {target}: {err}",))
    finally:
        session.close()
    candidate = {name: np.concatenate([o[name] for o in outputs]) for name in (LOGITS_NAME, FEATURES_NAME)}
    tolerance = DEFAULT_TOLERANCES["int8"]
    names = [f"held-back photo {i}" for i in range(len(images))]
    metrics = compare(candidate, reference, loaded.spec, names, np.ones(len(images), bool), band=tolerance.max_prob or 0.0)
    failures = tuple(tolerance.judge(metrics))
    return GateCheck(not failures, target, metrics.min_cosine or 0.0, metrics.max_prob_err, metrics.decisive_agreement, failures)


def diagnose_ranking(loaded: LoadedModel, artifact: Artifact, model_dir: Path, images: np.ndarray) -> list[str]:
    """Block Linears of an int8 artifact ranked by ``vitship diagnose``'s locator (most divergence added first).

    The artifact still lies in the export's temporary folder, so it and its fp32 sibling from the manifest are
    hard-linked into a scratch model folder with a two-entry manifest. [] when the format has no capture or the
    fp32 sibling is not exported (the ladder then ranks by input outliers).
    """
    from torch import nn

    from vitship.bench.diagnose import DiagnoseError, locate
    from vitship.bench.diagnose.capture import CAPTURES
    from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, artifact_id, read_manifest, write_manifest
    from vitship.runtimes.frames import takes_frames

    sibling = read_manifest(model_dir)["artifacts"].get(artifact_id(artifact.format, "fp32"))
    if artifact.format not in CAPTURES or sibling is None or takes_frames(artifact.input_spec):
        return []  # an image-input artifact's captures take frames, not the tensors diagnose feeds
    candidate = dataclasses.replace(artifact, path=f"{artifact.id}/{Path(artifact.path).relative_to(Path(artifact.path).parts[0])}")
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".int8-locate-") as scratch:
        _link(model_dir / Path(artifact.path).parts[0], Path(scratch) / artifact.id)
        _link(model_dir / Path(sibling["path"]).parts[0], Path(scratch) / Path(sibling["path"]).parts[0])
        write_manifest(Path(scratch), {"schema_version": MANIFEST_SCHEMA_VERSION,
                                       "artifacts": {candidate.id: candidate.to_dict(), sibling["id"]: sibling}})
        try:
            result = locate(Path(scratch), candidate.id, images, loaded=loaded)
        except DiagnoseError:
            return []
    linears = {name for name, module in loaded.model.vit.named_modules() if isinstance(module, nn.Linear) and name.startswith("blocks.")}
    return [layer.module for layer in result.worst(len(result.layers)) if layer.module in linears]


def _link(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=os.link)
