"""The export form's modules (``models.export_form`` says what each form changes): timm's ViT over its own submodules."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vitship.models.export_form import ExportForm


@torch.library.custom_op("vitship::qkv_attention", mutates_args=())
def qkv_attention(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_heads: int) -> torch.Tensor:
    """timm's attention from its fused qkv projection (scale head_dim ** -0.5) up to the output projection, as one op.

    Computed as timm computes it; an exporter writes it as one runtime op (ONNX: ``com.microsoft.Attention``).
    """
    batch, tokens, width = x.shape[0], x.shape[1], weight.shape[0] // 3
    qkv = F.linear(x, weight, bias).reshape(batch, tokens, 3, num_heads, width // num_heads).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(batch, tokens, width)


@qkv_attention.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_heads: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[1], weight.shape[0] // 3)


class FormViT(nn.Module):
    """timm's VisionTransformer (class token, absolute position embedding, token pool) over its own submodules."""

    def __init__(self, vit: nn.Module, form: ExportForm):
        super().__init__()
        if getattr(vit, "reg_token", None) is not None or vit.global_pool != "token" or vit.no_embed_class:
            raise ValueError("the export form covers timm ViTs with a class token, no register tokens and token pooling")
        self.form = form
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.patch_embed, self.pos_drop, self.norm_pre = vit.patch_embed, vit.pos_drop, vit.norm_pre
        last = len(vit.blocks) - 1
        self.blocks = nn.Sequential(*[FormBlock(block, form, form.class_token_tail and i == last) for i, block in enumerate(vit.blocks)])
        self.norm = _norm(vit.norm, form)
        self.fc_norm, self.head_drop, self.head = vit.fc_norm, vit.head_drop, vit.head

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        # a zero row in front, then position embedding + class token in that row: exactly cat(cls, x) + pos_embed
        start = F.pad(self.cls_token, (0, 0, 0, self.pos_embed.shape[1] - 1))
        x = F.pad(x, (0, 0, 1, 0)) + (self.pos_embed + start)
        return self.norm(self.blocks(self.norm_pre(self.pos_drop(x))))

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        first = tokens if tokens.shape[1] == 1 else tokens[:, :1]  # a slice, not a select (XNNPACK has no select)
        x = self.head_drop(self.fc_norm(first.reshape(-1, tokens.shape[-1])))
        return x if pre_logits else self.head(x)


class FormBlock(nn.Module):
    """timm's Block over its own submodules; ``class_token_only``: the output is the class token alone."""

    def __init__(self, block: nn.Module, form: ExportForm, class_token_only: bool):
        super().__init__()
        self.class_token_only = class_token_only
        self.norm1, self.norm2 = _norm(block.norm1, form), _norm(block.norm2, form)
        rewritten = form.attention != "fused" or class_token_only
        # the class token's tail has one query: scaled_dot_product_attention, or explicit, never the all-token qkv op
        mode = "fused" if class_token_only and form.attention == "qkv-op" else form.attention
        self.attn = FormAttention(block.attn, mode, class_token_only) if rewritten else block.attn
        self.ls1, self.drop_path1, self.ls2, self.drop_path2 = block.ls1, block.drop_path1, block.ls2, block.drop_path2
        self.mlp = block.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        x = (x[:, :1] if self.class_token_only else x) + attended
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class FormAttention(nn.Module):
    """timm's Attention over its own submodules.

    Args:
        mode: fused (scaled_dot_product_attention), explicit (matmul, softmax, matmul, batched over batch x heads) or
            qkv-op (``qkv_attention``: projection and attention as one op).
        class_token_only: one query, the class token's (keys and values from every token).
    """

    def __init__(self, attn: nn.Module, mode: str, class_token_only: bool):
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise ValueError("the export form covers timm Attention without a gate")
        plain = isinstance(attn.q_norm, nn.Identity) and isinstance(attn.k_norm, nn.Identity) and attn.scale == attn.head_dim ** -0.5
        if mode == "qkv-op" and not plain:
            raise ValueError("the qkv-op attention form covers timm Attention without q/k norms and with the default scale")
        self.mode, self.class_token_only = mode, class_token_only
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.qkv, self.q_norm, self.k_norm, self.norm, self.proj = attn.qkv, attn.q_norm, attn.k_norm, attn.norm, attn.proj
        self.attn_drop, self.proj_drop = attn.attn_drop, attn.proj_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, heads, dim = x.shape[1], self.num_heads, self.head_dim
        if self.mode == "qkv-op":
            bias = self.qkv.bias if self.qkv.bias is not None else self.qkv.weight.new_zeros(self.qkv.weight.shape[0])
            return self.proj_drop(self.proj(self.norm(torch.ops.vitship.qkv_attention(x, self.qkv.weight, bias, heads))))
        # (batch, 3 * heads, tokens, dim), sliced into q, k, v along heads; -1: the batch stays one inferred dim
        qkv = self.qkv(x).reshape(-1, tokens, 3 * heads, dim).permute(0, 2, 1, 3)
        q, k, v = qkv[:, :heads], qkv[:, heads:2 * heads], qkv[:, 2 * heads:]
        q, k = self.q_norm(q), self.k_norm(k)
        if self.class_token_only:
            q = q[:, :, :1]
        queries = q.shape[2]
        if self.mode == "explicit":
            q, k, v = (t.reshape(-1, t.shape[2], dim) for t in (q, k, v))  # (batch * heads, tokens, dim) for bmm
            attn = torch.bmm(q * self.scale, k.transpose(1, 2)).softmax(dim=-1)
            x = torch.bmm(self.attn_drop(attn), v).reshape(-1, heads, queries, dim)
        else:
            x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj_drop(self.proj(self.norm(x.permute(0, 2, 1, 3).reshape(-1, queries, heads * dim))))


class DecomposedLayerNorm(nn.Module):
    """A LayerNorm over the last dim as elementwise ops and 4-D means over the innermost two dims (XNNPACK's mean)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.eps, self.weight, self.bias = norm.eps, norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = x.unsqueeze(-1)
        centered = x4 - x4.mean(dim=(-2, -1), keepdim=True)
        variance = (centered * centered).mean(dim=(-2, -1), keepdim=True)
        # a reshape with one inferred dim, not squeeze: XNNPACK has no squeeze and no reshape to a symbolic size
        normed = (centered * torch.rsqrt(variance + self.eps)).reshape(-1, *x.shape[1:])
        return normed * self.weight + self.bias


def _norm(norm: nn.Module, form: ExportForm) -> nn.Module:
    decompose = form.layer_norm == "decomposed" and type(norm) is nn.LayerNorm and norm.elementwise_affine
    return DecomposedLayerNorm(norm) if decompose else norm
