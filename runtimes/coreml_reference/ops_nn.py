"""Neural-network ops: linear, matmul, einsum, conv, layer_norm, softmax, gelu, scaled_dot_product_attention."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vitship.runtimes.coreml_reference.ops import OpContext, as_bool, axis_of, erf, register

GELU_MODES = ("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")


@register("linear")
def linear(a: dict, ctx: OpContext):
    """x @ weight.T + bias; weight is [D_out, D_in], bias defaults to zeros."""
    x, weight = np.asarray(a["x"]), np.asarray(a["weight"])
    out = np.dot(x.reshape(-1, x.shape[-1]), weight.T).reshape(x.shape[:-1] + (weight.shape[0],))
    if a.get("bias") is not None:
        out += np.asarray(a["bias"], dtype=out.dtype)
    return out


@register("matmul")
def matmul(a: dict, ctx: OpContext):
    """N-D batched matmul with numpy broadcasting; transpose_x/y swap the last two dims of a 2-D+ operand."""
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    if as_bool(a.get("transpose_x")) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if as_bool(a.get("transpose_y")) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    # contiguous operands keep numpy's batched matmul on BLAS (strided views are ~2x slower)
    return np.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))


@register("einsum")
def einsum(a: dict, ctx: OpContext):
    return np.einsum(str(a["equation"]), *[np.asarray(v) for v in a["values"]])


@register("softmax")
def softmax(a: dict, ctx: OpContext):
    """exp(x) / sum(exp(x)) along axis (default -1), max-subtracted for stability."""
    x = np.asarray(a["x"])
    axis = axis_of(a.get("axis", -1), x.ndim)
    e = x - np.max(x, axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


@register("gelu")
def gelu(a: dict, ctx: OpContext):
    """EXACT: 0.5x(1+erf(x/sqrt2)); TANH_APPROXIMATION: 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)));
    SIGMOID_APPROXIMATION: x*sigmoid(1.702x). Default EXACT."""
    x = np.asarray(a["x"])
    mode = str(a.get("mode", "EXACT"))
    if mode == "EXACT":
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x / (1.0 + np.exp(-1.702 * x))
    raise ctx.error(f"unknown gelu mode {mode!r}; MIL defines {', '.join(GELU_MODES)}")


@register("layer_norm")
def layer_norm(a: dict, ctx: OpContext):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta over `axes` (default: all); gamma/beta have
    shape x.shape[axes] and default to 1/0; epsilon defaults to 1e-5."""
    x = np.asarray(a["x"])
    axes = a.get("axes")
    axes = tuple(range(x.ndim)) if axes is None else tuple(sorted(axis_of(i, x.ndim) for i in np.ravel(axes)))
    norm_shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    centred = x - np.mean(x, axis=axes, keepdims=True)
    var = np.mean(np.square(centred), axis=axes, keepdims=True)
    out = centred / np.sqrt(var + np.float32(a.get("epsilon", 1e-5)))
    if a.get("gamma") is not None:
        out *= np.reshape(a["gamma"], norm_shape)
    if a.get("beta") is not None:
        out += np.reshape(a["beta"], norm_shape)
    return out


@register("scaled_dot_product_attention")
def scaled_dot_product_attention(a: dict, ctx: OpContext):
    """softmax(Q K^T / sqrt(E) + mask) V; a bool mask is -inf where False, a float mask is added."""
    q, k, v = (np.asarray(a[n]) for n in ("query", "key", "value"))
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.float32(math.sqrt(q.shape[-1]))
    mask = a.get("attn_mask")
    if mask is not None:
        mask = np.asarray(mask)
        scores = scores + (np.where(mask, 0.0, -np.inf).astype(scores.dtype) if mask.dtype == bool else mask)
    scores = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    scores /= np.sum(scores, axis=-1, keepdims=True)
    return np.matmul(scores, v)


def conv_padding(pad_type: str, pad, spatial, k_eff, strides, ctx: OpContext) -> list[tuple[int, int]]:
    """(before, after) per spatial dim for valid / custom / same / same_lower (extra on the end / start)."""
    n = len(spatial)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = [int(v) for v in np.ravel(pad)] if pad is not None else [0] * (2 * n)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        pads = []
        for size, k, s in zip(spatial, k_eff, strides):
            total = max(0, s * math.ceil(size / s) - size + k - s)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if pad_type == "same" else (big, small))
        return pads
    raise ctx.error(f"unknown pad_type {pad_type!r}; MIL defines valid, custom, same, same_lower")


def _patchify(x: np.ndarray, w: np.ndarray, k: tuple[int, ...]) -> np.ndarray:
    """A conv whose stride equals its kernel (no padding, dilation or groups) as one matmul."""
    n, c = x.shape[:2]
    out_sp = [size // kk for size, kk in zip(x.shape[2:], k)]
    x = x[(slice(None), slice(None)) + tuple(slice(0, o * kk) for o, kk in zip(out_sp, k))]
    split = [n, c] + [d for o, kk in zip(out_sp, k) for d in (o, kk)]
    nd = len(k)
    perm = [0] + [2 + 2 * i for i in range(nd)] + [1] + [3 + 2 * i for i in range(nd)]
    patches = x.reshape(split).transpose(perm).reshape(n * math.prod(out_sp), -1)
    out = np.dot(patches, w.reshape(w.shape[0], -1).T).reshape([n] + out_sp + [w.shape[0]])
    return np.moveaxis(out, -1, 1)


@register("conv")
def conv(a: dict, ctx: OpContext):
    """N-D convolution (cross-correlation) with strides, pad_type/pad, dilations, groups and bias."""
    x, w = np.asarray(a["x"]), np.asarray(a["weight"])
    nd = x.ndim - 2
    k = tuple(w.shape[2:])
    strides = [int(s) for s in np.ravel(a["strides"])] if a.get("strides") is not None else [1] * nd
    dil = [int(d) for d in np.ravel(a["dilations"])] if a.get("dilations") is not None else [1] * nd
    groups = int(a.get("groups", 1))
    k_eff = [(kk - 1) * d + 1 for kk, d in zip(k, dil)]
    pads = conv_padding(str(a.get("pad_type", "valid")), a.get("pad"), x.shape[2:], k_eff, strides, ctx)
    if groups == 1 and list(k) == strides and set(dil) == {1} and all(p == (0, 0) for p in pads):
        out = _patchify(x, w, k)
    else:
        out = _conv_general(x, w, k, strides, dil, groups, pads, ctx)
    if a.get("bias") is not None:
        out = out + np.reshape(a["bias"], (1, -1) + (1,) * nd)
    return out


def _conv_general(x, w, k, strides, dil, groups, pads, ctx: OpContext) -> np.ndarray:
    n, c = x.shape[:2]
    nd = len(k)
    if c % groups or w.shape[0] % groups or w.shape[1] != c // groups:
        raise ctx.error(f"x channels {c}, weight {w.shape} and groups={groups} do not fit")
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    k_eff = [(kk - 1) * d + 1 for kk, d in zip(k, dil)]
    win = sliding_window_view(xp, k_eff, axis=tuple(range(2, 2 + nd)))  # (N, C, *out_full, *k_eff)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dil)]  # (N, C, *out, *k)
    out_sp = list(win.shape[2:2 + nd])
    cg, fg = c // groups, w.shape[0] // groups
    win = win.reshape([n, groups, cg] + out_sp + list(k))
    perm = [0] + list(range(3, 3 + nd)) + [1, 2] + list(range(3 + nd, 3 + 2 * nd))
    cols = win.transpose(perm).reshape(n * math.prod(out_sp), groups, cg * math.prod(k))
    out = np.einsum("mgk,gfk->mgf", cols, w.reshape(groups, fg, cg * math.prod(k)), optimize=True)
    return np.moveaxis(out.reshape([n] + out_sp + [groups * fg]), -1, 1)
