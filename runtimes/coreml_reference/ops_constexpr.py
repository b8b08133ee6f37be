"""Compile-time decompression ops (int8/int4 weights, palettes, sparsity), decoded from their MIL docs.

These are evaluated once when a session opens (their inputs are all constants). The executor casts
each result to the op's declared output dtype (the dtype of ``scale`` / ``lut`` / ``nonzero_data``).
"""

from __future__ import annotations

import math

import numpy as np

from vitship.runtimes.coreml_reference.ops import OpContext, axis_of, register


def _on_axis(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar or a vector along `axis`, shaped to broadcast against a rank-`rank` tensor."""
    param = np.asarray(param, dtype=np.float32)
    if param.ndim == 0:
        return param
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


@register("constexpr_affine_dequantize")
def constexpr_affine_dequantize(a: dict, ctx: OpContext):
    """scale * (quantized_data - zero_point); a vector scale/zero_point runs along `axis`."""
    data = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = axis_of(a["axis"], data.ndim)
    return _on_axis(a["scale"], data.ndim, axis) * (data - _on_axis(a["zero_point"], data.ndim, axis))


def _block_broadcast(param: np.ndarray, data: np.ndarray, ctx: OpContext) -> tuple[np.ndarray, list[int]]:
    """`param` (one value per block) and the (blocks, block size) split of `data`'s shape."""
    param = np.asarray(param, dtype=np.float32)
    if param.ndim != data.ndim or any(d % p for d, p in zip(data.shape, param.shape)):
        raise ctx.error(f"scale/offset shape {param.shape} does not tile data shape {data.shape}")
    split = [v for d, p in zip(data.shape, param.shape) for v in (p, d // p)]
    return param.reshape([v for p in param.shape for v in (p, 1)]), split


@register("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(a: dict, ctx: OpContext):
    """out[i, j, ..] = scale[i // bi, j // bj, ..] * (data[i, j, ..] - offset[i // bi, ..]), b = data / scale shape."""
    data = np.asarray(a["data"]).astype(np.float32)
    scale, split = _block_broadcast(a["scale"], data, ctx)
    blocks = data.reshape(split)
    if a.get("offset") is not None:
        blocks = blocks - _block_broadcast(a["offset"], data, ctx)[0]
    return (scale * blocks).reshape(data.shape)


def unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """`count` unsigned nbits-wide fields packed LSB-first, one byte at a time (iOS16 LUT indices)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: count * nbits]
    weights = (1 << np.arange(nbits)).astype(np.int64)
    return bits.reshape(count, nbits).astype(np.int64) @ weights


@register("constexpr_lut_to_dense")
def constexpr_lut_to_dense(a: dict, ctx: OpContext):
    """iOS16: lut[indices] with indices bit-packed and `shape`; iOS18: per-block LUTs of rank K+2,
    optionally vector palettes filled along `vector_axis`."""
    lut = np.asarray(a["lut"])
    if a.get("shape") is not None:  # iOS16 form
        shape = [int(s) for s in np.ravel(a["shape"])]
        nbits = int(round(math.log2(lut.size)))
        return lut[unpack_bits(a["indices"], nbits, math.prod(shape))].reshape(shape)
    indices = np.asarray(a["indices"]).astype(np.int64)
    k = indices.ndim
    if lut.ndim != k + 2:
        raise ctx.error(f"lut rank {lut.ndim} must be indices rank {k} + 2")
    groups = [np.arange(n).reshape([-1 if i == d else 1 for i in range(k)]) // (n // lut.shape[d])
              for d, n in enumerate(indices.shape)]
    values = lut[tuple(groups) + (indices,)]  # indices.shape + (VECTOR_SIZE,)
    if lut.shape[-1] == 1:
        return values[..., 0]
    if a.get("vector_axis") is None:
        raise ctx.error("vector palettes (VECTOR_SIZE > 1) need vector_axis")
    axis = axis_of(a["vector_axis"], k)
    out_shape = list(indices.shape)
    out_shape[axis] *= lut.shape[-1]
    return np.moveaxis(values, -1, axis + 1).reshape(out_shape)


@register("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(a: dict, ctx: OpContext):
    """Zeros, with nonzero_data written (row-major) where the mask bit is set.
    iOS16: mask is bit-packed LSB-first with `shape`; iOS18: mask is a uint1 tensor of the output shape."""
    data = np.asarray(a["nonzero_data"])
    if a.get("shape") is not None:
        shape = [int(s) for s in np.ravel(a["shape"])]
        mask = np.unpackbits(np.asarray(a["mask"], dtype=np.uint8), bitorder="little")[: math.prod(shape)]
        mask = mask.reshape(shape)
    else:
        mask = np.asarray(a["mask"])
    if int(np.count_nonzero(mask)) != data.size:
        raise ctx.error(f"mask has {np.count_nonzero(mask)} set bits but nonzero_data has {data.size} values")
    out = np.zeros(mask.shape, dtype=data.dtype)
    out[mask != 0] = data
    return out


@register("constexpr_cast")
def constexpr_cast(a: dict, ctx: OpContext):
    return np.asarray(a["source_val"], dtype=np.float32)
