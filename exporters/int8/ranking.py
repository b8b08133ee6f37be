"""Which Linears the ladder keeps in float: the one ranking, most sensitive first.

Two sources, one order. The per-layer locator (``vitship diagnose``, injected as ``Int8Gate.locate``) measures
the divergence each Linear of the failing artifact adds against its fp32 sibling; it is asked only about an
unsmoothed artifact (it compares with an unsmoothed sibling) whose format it can capture. The outlier
ranking (PyTorch hooks on the model as quantized) completes it and stands in when the locator cannot rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitship.exporters.base import Artifact, TraceCache
from vitship.exporters.int8.calibration import calibration_images

if TYPE_CHECKING:
    from vitship.exporters.int8.options import Int8Options
    from vitship.exporters.int8.verdict import LocateFn
    from vitship.models import LoadedModel

LOCATOR = "per-layer locator (vitship diagnose)"
OUTLIERS = "input outlier ranking (PyTorch hooks)"


def block_linears(loaded: LoadedModel) -> list[str]:
    """The block Linears of the model as torch module paths (``blocks.3.mlp.fc1``), in graph order."""
    return [f"blocks.{name}" for name, module in loaded.model.vit.blocks.named_modules() if type(module).__name__ == "Linear"]


def outlier_ranking(loaded: LoadedModel, images: np.ndarray) -> list[str]:
    """Every block Linear ranked by how far its input's largest channel stands above the median channel.

    A per-tensor int8 activation scale is set by the largest channel, so the Linear with the most extreme
    input outliers loses the most.
    """
    from vitship.exporters.int8.smoothing import input_channel_maxima

    named = [(name, module) for name, module in loaded.model.vit.blocks.named_modules() if type(module).__name__ == "Linear"]
    maxima = input_channel_maxima(loaded.model, [module for _, module in named], images)
    ratios = [float(m.max() / m.median().clamp(min=1e-6)) for m in maxima]
    order = sorted(range(len(named)), key=lambda i: -ratios[i])
    return [f"blocks.{named[i][0]}" for i in order]


def sensitive_layers(loaded: LoadedModel, base: Int8Options, locate: LocateFn | None, artifact: Artifact | None,
                     model_dir: Path, images: np.ndarray) -> tuple[list[str], str]:
    """Block Linears, most sensitive first, and what ranked them (LOCATOR or OUTLIERS).

    Args:
        base: the recipe the Linears will be kept in float from (its smoothing decides the model ranked).
        locate, artifact: the locator and the artifact built with ``base`` (its path relative to ``model_dir``).
        images: the photos the locator runs (the gate's select photos).
    """
    from vitship.exporters.int8.options import model_to_quantize

    located = locate(artifact, model_dir, images) if locate and artifact is not None and base.smooth_alpha is None else []
    quantized, _, _ = model_to_quantize(loaded, base, TraceCache())
    photos, _ = calibration_images(loaded.spec, base)
    ranked = outlier_ranking(quantized, photos)
    located = [name for name in located if name in ranked]
    return located + [name for name in ranked if name not in located], LOCATOR if located else OUTLIERS
