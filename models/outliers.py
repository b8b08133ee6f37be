"""A trained-like stress model: outlier channels planted in the seeded ViT without changing its function.

Trained ViTs have a few LayerNorm output channels that run one to two orders of magnitude above
the rest (FQ-ViT, SmoothQuant, "Massive Activations in Large Language Models", "Vision
Transformers Need Registers"); per-tensor int8 activation scales then waste their range on them.
The seeded ViT has none, so int8 defaults chosen on it alone look safer than they are.

``plant_outliers`` reparametrises each block's norm1 -> attn.qkv and norm2 -> mlp.fc1 pair:
channel c of the LayerNorm output y becomes ``k * y_c + m_c`` (gamma and beta times k, plus a mean
shift m folded into beta); the Linear's input column c is divided by k and its bias loses
``W[:, c] * m_c / k``. In exact arithmetic the network is unchanged; in fp32 its outputs move by
~1e-7.

``fit_head`` gives the stress model a trained-like head (``--weights seeded-outliers-trained``): an untrained
head's logits sit near 0 on every photo, so a lossy artifact moves its decisions little; a trained head
spreads them (about +-4 on the bundled photos for the published detector) and amplifies a feature error
along the direction it reads. The head is fitted deterministically on the photos' features: their top
principal direction, scaled so that the logits span +-``spread``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class OutlierRecipe:
    """How the stress model is planted: per block, ``channels`` channels of norm1 and of norm2.

    The tiny ViT (width 32) uses a larger scale than the ViT-S so that, smoothing off, its int8 fails
    the gate as the ViT-S's does.
    """

    channels: int = 3
    scale: float = 60.0
    shift: float = 2.0  # the mean shift, in units of the scaled channel's gamma


def default_recipe(embed_dim: int) -> OutlierRecipe:
    """The recipe for a model of this width: the ViT-S recipe, stronger on tiny test widths."""
    return OutlierRecipe() if embed_dim >= 128 else OutlierRecipe(channels=2, scale=100.0, shift=3.0)


def _reparametrise(norm: nn.LayerNorm, linear: nn.Linear, channels: torch.Tensor, scale: float, shift: torch.Tensor) -> None:
    """y_c -> scale * y_c + shift_c on ``norm``'s outputs, undone exactly by ``linear``'s columns and bias."""
    with torch.no_grad():
        columns = linear.weight[:, channels].clone()
        if linear.bias is None:
            raise ValueError(f"{type(linear).__name__} has no bias to absorb the mean shift")
        linear.bias.sub_(columns @ (shift / scale))
        linear.weight[:, channels] = columns / scale
        norm.weight[channels] *= scale
        norm.bias[channels] = norm.bias[channels] * scale + shift


def plant_outliers(vit: nn.Module, seed: int, recipe: OutlierRecipe) -> list[str]:
    """Plant outlier channels in every block of a timm VisionTransformer, in place.

    Args:
        vit: the timm VisionTransformer (its blocks' LayerNorms and the Linears they feed).
        seed: picks the channels and the signs of the shifts, deterministically.
        recipe: how many channels, how much larger, how far shifted.
    Returns:
        The reparametrised pairs, e.g. "blocks.0.norm1->blocks.0.attn.qkv".
    """
    generator = torch.Generator().manual_seed(10_000 + seed)
    planted = []
    for index, block in enumerate(vit.blocks):
        pairs = (("norm1", block.norm1, "attn.qkv", block.attn.qkv), ("norm2", block.norm2, "mlp.fc1", block.mlp.fc1))
        for norm_name, norm, linear_name, linear in pairs:
            width = norm.weight.numel()
            channels = torch.randperm(width, generator=generator)[: recipe.channels]
            signs = torch.randint(0, 2, (recipe.channels,), generator=generator) * 2 - 1
            shift = signs * recipe.shift * recipe.scale * norm.weight[channels].abs().detach()
            _reparametrise(norm, linear, channels, recipe.scale, shift.to(norm.weight.dtype))
            planted.append(f"blocks.{index}.{norm_name}->blocks.{index}.{linear_name}")
    return planted


HEAD_SPREAD = 4.0  # the largest |logit| over the bundled photos, as a trained detector's head gives


def fit_head(model: nn.Module, images: np.ndarray, spread: float = HEAD_SPREAD) -> float:
    """Replace ``model``'s head (a DetectorModel's ``vit.head``) by a trained-like one, in place.

    The head reads the features' top principal direction over ``images`` (its sign fixed so that the
    direction's largest component is positive), centred on their mean and scaled so that the largest
    |logit| over ``images`` is ``spread``. A one-logit head gets that logit; a two-class head gets
    (-z/2, z/2), whose difference spans the same range.

    Returns:
        The scale applied (logit units per unit of feature projection).
    """
    with torch.no_grad():
        _, features = model(torch.from_numpy(np.ascontiguousarray(images)))
        features = features.double()
        centred = features - features.mean(dim=0)
        direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
        direction = direction * torch.sign(direction[direction.abs().argmax()])
        projection = centred @ direction
        scale = spread / float(projection.abs().max().clamp(min=1e-12))
        weight = scale * direction
        bias = -scale * float(features.mean(dim=0) @ direction)
        head = model.vit.head
        signs = torch.tensor([1.0] if head.out_features == 1 else [-0.5, 0.5], dtype=torch.float64)
        head.weight.copy_((signs[:, None] * weight[None, :]).to(head.weight.dtype))
        head.bias.copy_((signs * bias).to(head.bias.dtype))
    return scale
