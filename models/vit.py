"""Build the timm ViT from a ModelSpec and wrap it so that it returns (logits, features)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vitship.models.errors import WeightsError
from vitship.models.export_form import TIMM_FORM, ExportForm
from vitship.models.spec import ModelSpec
from vitship.models.vit_form import FormViT

# HF `hidden_act` names -> torch activation layers timm's Mlp can take as `act_layer`.
_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "gelu_fast": partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
}


class DetectorModel(nn.Module):
    """A timm VisionTransformer whose forward returns (logits, pre-logits class-token features)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def with_form(self, form: ExportForm) -> DetectorModel:
        """This model in an export form (``models.export_form``): the same function, parameters shared."""
        return self if form == TIMM_FORM else DetectorModel(FormViT(self.vit, form)).eval()

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vit.forward_features(pixel_values)
        features = self.vit.forward_head(tokens, pre_logits=True)
        logits = self.vit.head(features)
        return logits, features


def supported_activations() -> list[str]:
    return sorted(_ACTIVATIONS)


def build_vit(spec: ModelSpec) -> nn.Module:
    """Create the (randomly initialised) timm VisionTransformer that ``spec`` describes."""
    from timm.models.vision_transformer import VisionTransformer

    if spec.act not in _ACTIVATIONS:
        raise WeightsError(
            f"hidden_act={spec.act!r} cannot be expressed by timm's ViT here; supported: {', '.join(supported_activations())}"
        )
    mlp_ratio = spec.mlp_dim / spec.embed_dim
    if int(spec.embed_dim * mlp_ratio) != spec.mlp_dim:
        raise WeightsError(f"intermediate_size={spec.mlp_dim} is not expressible as a timm mlp_ratio of width {spec.embed_dim}")
    if spec.embed_dim % spec.num_heads:
        raise WeightsError(f"num_attention_heads={spec.num_heads} does not divide hidden_size={spec.embed_dim}")
    if spec.image_size % spec.patch_size:
        raise WeightsError(f"image_size={spec.image_size} is not a multiple of patch_size={spec.patch_size}")
    return VisionTransformer(
        img_size=spec.image_size,
        patch_size=spec.patch_size,
        in_chans=spec.channels,
        num_classes=spec.num_classes,
        global_pool="token",
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=spec.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=spec.layer_norm_eps),
        act_layer=_ACTIVATIONS[spec.act],
    )


def seeded_vit(spec: ModelSpec, seed: int) -> nn.Module:
    """Build the ViT with a deterministic initialisation that leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_vit(spec)
