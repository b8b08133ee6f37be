"""The export's int8 gate as the doors build it: a runner on the format's gate target, and vitship diagnose's locator.

Built here, in the bench layer, because running an artifact needs a runtime and exporters never import
runtimes. ``vitship export`` and ``vitship.export(...)`` pass ``int8_gate(loaded)`` to
``pipeline.export_all(..., gate=...)``; what the gate judges and how lives in ``exporters.int8`` (its map).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.exporters.int8.capabilities import int8_capabilities
from vitship.exporters.int8.verdict import GATE_MARGIN, ArtifactRun, Int8Gate, LocateFn
from vitship.models import FEATURES_NAME, LOGITS_NAME, LoadedModel


def int8_gate(loaded: LoadedModel, locate: LocateFn | None = None, margin: float = GATE_MARGIN) -> Int8Gate:
    """The gate for ``loaded``'s int8 artifacts.

    Args:
        locate: ranks the layers of a failing artifact; default: the per-layer locator of ``vitship diagnose``
            (``diagnose_ranking``), which the ladder completes with its own outlier ranking.
        margin: the fraction of each error budget of parity's int8 gate the export gate holds back.
    """
    return Int8Gate(run=run_artifact, locate=locate or DiagnoseLocator(loaded), margin=margin)


@dataclasses.dataclass(frozen=True)
class DiagnoseLocator:
    """``diagnose_ranking`` bound to the model; picklable, so the gate travels to export worker processes."""

    loaded: LoadedModel

    def __call__(self, artifact: Artifact, model_dir: Path, images: np.ndarray) -> list[str]:
        return diagnose_ranking(self.loaded, artifact, model_dir, images)


def gate_target(fmt: str) -> str | None:
    """The first of the format's declared gate targets (``Int8Capabilities.gate_targets``) available here."""
    from vitship.runtimes import available_targets

    available = {status.target for status in available_targets() if status.available}
    return next((target for target in int8_capabilities(fmt).gate_targets if target in available), None)


def run_artifact(artifact: Artifact, model_dir: Path, pixels: np.ndarray, batch: int = 1) -> ArtifactRun | None:
    """The artifact's outputs on ``pixels``, ``batch`` at a time (the session splits a batch the artifact does not
    take, as parity's does); None: no target here runs it."""
    from vitship.runtimes import RuntimeFailure, RuntimeUnavailable, open_session

    target = gate_target(artifact.format)
    if target is None:
        return None
    try:
        session = open_session(artifact, model_dir, target)
    except RuntimeUnavailable:
        return None
    try:
        outputs = [session.run_outputs(pixels[i:i + batch]) for i in range(0, len(pixels), batch)]
    except RuntimeFailure as err:
        return ArtifactRun(target, None, str(err))
    finally:
        session.close()
    return ArtifactRun(target, {name: np.concatenate([o[name] for o in outputs]) for name in (LOGITS_NAME, FEATURES_NAME)})


def diagnose_ranking(loaded: LoadedModel, artifact: Artifact, model_dir: Path, images: np.ndarray) -> list[str]:
    """Block Linears of an int8 artifact ranked by ``vitship diagnose``'s locator (most divergence added first).

    The one locator the ladder uses (``exporters.int8.ranking.sensitive_layers`` completes it). The artifact
    still lies in the export's temporary folder, so it and its fp32 sibling from the manifest are hard-linked
    into a scratch model folder with a two-entry manifest. [] when the format has no capture, the fp32 sibling
    is not exported, or the locator cannot compare them (the ladder then ranks by input outliers).
    """
    from vitship.bench.diagnose import DiagnoseError, locate
    from vitship.bench.diagnose.capture import CAPTURES, SIBLING_FORMAT
    from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, artifact_id, read_manifest, write_manifest
    from vitship.exporters.int8.ranking import block_linears
    from vitship.runtimes.frames import takes_frames

    sibling_format = SIBLING_FORMAT.get(artifact.format, artifact.format)
    sibling = read_manifest(model_dir)["artifacts"].get(artifact_id(sibling_format, "fp32"))
    if artifact.format not in CAPTURES or sibling is None or takes_frames(artifact.input_spec):
        return []  # an image-input artifact's captures take frames, not the tensors diagnose feeds
    inner = Path(artifact.path).relative_to(Path(artifact.path).parts[0])
    candidate = dataclasses.replace(artifact, path=f"{artifact.id}/{inner}")
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".int8-locate-") as scratch:
        _link(model_dir / Path(artifact.path).parts[0], Path(scratch) / artifact.id)
        _link(model_dir / Path(sibling["path"]).parts[0], Path(scratch) / Path(sibling["path"]).parts[0])
        write_manifest(Path(scratch), {"schema_version": MANIFEST_SCHEMA_VERSION,
                                       "artifacts": {candidate.id: candidate.to_dict(), sibling["id"]: sibling}})
        try:
            result = locate(Path(scratch), candidate.id, images, loaded=loaded)
        except DiagnoseError:
            return []
    linears = set(block_linears(loaded))
    ranked = [_kernel_linear(layer.module, artifact) for layer in result.worst(len(result.layers))]
    return list(dict.fromkeys(module for module in ranked if module in linears))


def _kernel_linear(module: str, artifact: Artifact) -> str:
    """In the qkv-op export form (models.export_form) a block's qkv projection runs inside one attention kernel whose
    output diagnose names after timm's identity ``attn.norm``: the kernel's only quantized Linear is its qkv."""
    if artifact.details.form().attention == "qkv-op" and module.endswith(".attn.norm"):
        return module.removesuffix(".norm") + ".qkv"
    return module


def _link(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=os.link)
