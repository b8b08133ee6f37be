"""The export ladder's locator: an int8 artifact's Linears ranked by the divergence each adds (``exporters.int8_ladder``).

``vitship export`` builds the int8 gate with ``int8_gate(loaded, locate=ladder_locate(loaded))``; when smoothing
alone does not pass, the ladder keeps the first 2, 4, then 8 of these Linears in float.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from vitship.bench.diagnose.locate import DiagnoseError, locate
from vitship.bench.diagnose.result import DiagnoseResult
from vitship.exporters.base import Artifact

if TYPE_CHECKING:
    from vitship.models import LoadedModel

log = logging.getLogger(__name__)


def linear_modules(loaded: LoadedModel) -> list[str]:
    """The block Linears of the model, as module paths without the wrapper's ``vit.`` (``blocks.3.mlp.fc1``)."""
    return [f"blocks.{name}" for name, module in loaded.model.vit.blocks.named_modules() if type(module).__name__ == "Linear"]


def sensitive_linears(result: DiagnoseResult, linears: list[str]) -> list[str]:
    """``linears`` ranked by the cosine each adds over its input in ``result`` (``DiagnoseResult.worst``).

    A Linear the capture cannot see on its own (inside an ExecuTorch delegate call) ranks after the ones it
    can, in graph order: the ladder then keeps the ones measured to hurt first.
    """
    ranked = [layer.module for layer in result.worst(len(result.layers)) if layer.module in linears]
    return ranked + [name for name in linears if name not in ranked]


def ladder_locate(loaded: LoadedModel, threads: int | None = None) -> Callable[[Artifact, Path, np.ndarray], list[str]]:
    """A ``LocateFn`` for ``exporters.int8_ladder``: (artifact, model_dir, images) -> Linears, most sensitive first.

    The artifact is compared with its fp32 sibling in ``model_dir``'s manifest (``vitship export`` builds fp32
    before int8). Without a sibling, or for a format diagnose cannot capture, it falls back to the ladder's own
    ranking by input outliers (``int8_ladder.outlier_ranking``), and logs why.
    """
    linears = linear_modules(loaded)

    def rank(artifact: Artifact, model_dir: Path, images: np.ndarray) -> list[str]:
        try:
            return sensitive_linears(locate(model_dir, artifact, images, loaded, threads), linears)
        except DiagnoseError as err:
            from vitship.exporters.int8_ladder import outlier_ranking

            log.warning("%s: the per-layer locator cannot rank it (%s); ranking by input outliers instead", artifact.id, err)
            return outlier_ranking(loaded, images)

    return rank
