"""SmoothQuant fold, done once in PyTorch before any int8 export: activation outliers moved into the weights.

Trained ViTs have a few LayerNorm output channels one to two orders of magnitude above the rest
(``--weights seeded-outliers`` plants them); a per-tensor int8 activation scale then spends its range
on them and crushes the others. SmoothQuant (Xiao et al., 2022) divides each channel of the Linear's
input by ``s_c = amax_c**alpha / wmax_c**(1 - alpha)`` and multiplies the Linear's input column c by
``s_c``. Here the division is folded into the LayerNorm that feeds the Linear (gamma and beta divided
by s), so the graph is unchanged, the fp32 function is unchanged (up to rounding, ~1e-7) and every format
(ONNX, ExecuTorch, OpenVINO, CoreML) quantizes the smoothed weights with its own tools.

Pairs folded per block: ``norm1 -> attn.qkv`` and ``norm2 -> mlp.fc1`` (the only Linears fed by a LayerNorm
alone; proj and fc2 are fed by attention and GELU outputs, which have no affine to fold into).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vitship.exporters.details import Smoothing
from vitship.models import LoadedModel

SCALE_RANGE = (1e-2, 1e2)  # clamp: a dead channel (amax ~ 0) must not blow a weight column up
CALIBRATION_BATCH = 4


@dataclass(frozen=True)
class SmoothedPair:
    norm: str
    linear: str
    max_scale: float
    min_scale: float


def smoothing_pairs(vit: nn.Module) -> list[tuple[str, nn.LayerNorm, str, nn.Linear]]:
    """(norm name, norm, linear name, linear) for every LayerNorm -> Linear pair of a timm ViT's blocks."""
    pairs = []
    for index, block in enumerate(vit.blocks):
        pairs.append((f"blocks.{index}.norm1", block.norm1, f"blocks.{index}.attn.qkv", block.attn.qkv))
        pairs.append((f"blocks.{index}.norm2", block.norm2, f"blocks.{index}.mlp.fc1", block.mlp.fc1))
    return pairs


def input_channel_maxima(model: nn.Module, linears: list[nn.Linear], images: np.ndarray) -> list[torch.Tensor]:
    """Per input channel, the largest |activation| entering each Linear over ``images`` (forward hooks)."""
    maxima = [torch.zeros(linear.in_features) for linear in linears]

    def hook_for(index: int):
        def hook(module, args, output):
            maxima[index] = torch.maximum(maxima[index], args[0].detach().abs().flatten(0, -2).amax(dim=0))
        return hook

    handles = [linear.register_forward_hook(hook_for(i)) for i, linear in enumerate(linears)]
    try:
        with torch.no_grad():
            for start in range(0, len(images), CALIBRATION_BATCH):
                model(torch.from_numpy(np.ascontiguousarray(images[start:start + CALIBRATION_BATCH])))
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def fold(model: nn.Module, images: np.ndarray, alpha: float) -> list[SmoothedPair]:
    """Fold SmoothQuant scales into every LayerNorm -> Linear pair of ``model`` (a DetectorModel), in place.

    Args:
        model: the DetectorModel (``model.vit`` is the timm ViT).
        images: preprocessed calibration photos (N, C, H, W) float32.
        alpha: migration strength in [0, 1]; 0.5 splits the range evenly between activations and weights.
    Returns:
        One SmoothedPair per folded pair, with its scale range (for the manifest).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smoothing alpha must be in [0, 1], got {alpha}")
    pairs = smoothing_pairs(model.vit)
    maxima = input_channel_maxima(model, [linear for *_, linear in pairs], images)
    folded = []
    with torch.no_grad():
        for (norm_name, norm, linear_name, linear), amax in zip(pairs, maxima):
            wmax = linear.weight.abs().amax(dim=0).clamp(min=1e-5)
            scale = (amax.clamp(min=1e-5).pow(alpha) / wmax.pow(1.0 - alpha)).clamp(*SCALE_RANGE)
            norm.weight.div_(scale)
            norm.bias.div_(scale)
            linear.weight.mul_(scale)
            folded.append(SmoothedPair(norm_name, linear_name, round(float(scale.max()), 4), round(float(scale.min()), 4)))
    return folded


def smoothed(loaded: LoadedModel, images: np.ndarray, alpha: float) -> tuple[LoadedModel, Smoothing]:
    """A copy of ``loaded`` with the fold applied (the original is untouched), and its record for the manifest."""
    model = copy.deepcopy(loaded.model)
    pairs = fold(model, images, alpha)
    summary = Smoothing(method="SmoothQuant fold into LayerNorm -> Linear (norm1->qkv, norm2->fc1), PyTorch, before export",
                        alpha=alpha, pairs=len(pairs), calibration_images=len(images),
                        max_scale=max(p.max_scale for p in pairs), min_scale=min(p.min_scale for p in pairs))
    return LoadedModel(model, loaded.spec, loaded.info), summary
