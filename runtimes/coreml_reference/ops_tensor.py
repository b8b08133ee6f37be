"""Shape and indexing ops: reshape, transpose, squeeze, expand_dims, slicing, concat, split, tile, gather, shape, fill."""

from __future__ import annotations

import numpy as np

from vitship.runtimes.coreml_reference.ops import IOS17, OpContext, as_bool, axis_of, register


@register("shape")
def shape(a: dict, ctx: OpContext):
    """The run-time shape of x as int32 (the batch is flexible, so never the static one)."""
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


@register("reshape")
def reshape(a: dict, ctx: OpContext):
    """-1 is inferred; 0 copies a dim of x: position-wise when len(shape) == rank(x) (iOS15/16),
    right-aligned with out-of-range zeros becoming 1 (iOS17+)."""
    x = np.asarray(a["x"])
    target = [int(d) for d in np.ravel(a["shape"])]
    if 0 in target:
        if ctx.opset >= IOS17:
            src = list(x.shape)[::-1]
            rev = target[::-1]
            target = [(src[i] if i < len(src) else 1) if d == 0 else d for i, d in enumerate(rev)][::-1]
        else:
            if len(target) != x.ndim:
                raise ctx.error(f"shape {target} contains 0 but its length differs from rank(x)={x.ndim}")
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        raise ctx.error(f"shape {target} has more than one -1")
    try:
        return x.reshape(target)
    except ValueError as err:
        raise ctx.error(f"cannot reshape {x.shape} to {target}: {err}") from err


@register("transpose")
def transpose(a: dict, ctx: OpContext):
    return np.transpose(np.asarray(a["x"]), [int(p) for p in np.ravel(a["perm"])])


@register("squeeze")
def squeeze(a: dict, ctx: OpContext):
    """Remove the given size-1 axes (non-size-1 ones are ignored, as in PyTorch); default: all size-1."""
    x = np.asarray(a["x"])
    axes = a.get("axes")
    if axes is None:
        return np.squeeze(x)
    axes = tuple(i for i in (axis_of(v, x.ndim) for v in np.ravel(axes)) if x.shape[i] == 1)
    return np.squeeze(x, axis=axes)


@register("expand_dims")
def expand_dims(a: dict, ctx: OpContext):
    """Insert size-1 axes; negative axes count in the output rank (rank(x) + K)."""
    x = np.asarray(a["x"])
    axes = [int(v) for v in np.ravel(a["axes"])]
    out_rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(axis_of(v, out_rank) for v in axes))


@register("slice_by_index")
def slice_by_index(a: dict, ctx: OpContext):
    """x[begin:end:stride] per axis with begin/end/squeeze masks (numpy semantics for negatives)."""
    x = np.asarray(a["x"])
    rank = x.ndim
    begin = [int(v) for v in np.ravel(a["begin"])]
    end = [int(v) for v in np.ravel(a["end"])]
    stride = [int(v) for v in np.ravel(a["stride"])] if a.get("stride") is not None else [1] * rank
    masks = {k: [bool(v) for v in np.ravel(a[k])] if a.get(k) is not None else [False] * rank
             for k in ("begin_mask", "end_mask", "squeeze_mask")}
    index = []
    for i in range(rank):
        if masks["squeeze_mask"][i]:
            # a pure index at begin[i] (0 under begin_mask); end and stride are ignored
            index.append(0 if masks["begin_mask"][i] else begin[i])
            continue
        start = None if masks["begin_mask"][i] else begin[i]
        stop = None if masks["end_mask"][i] else end[i]
        index.append(slice(start, stop, stride[i]))
    return x[tuple(index)]


@register("slice_by_size")
def slice_by_size(a: dict, ctx: OpContext):
    """x[begin : begin + size] per axis; size -1 means to the end."""
    x = np.asarray(a["x"])
    begin = [axis_of(v, x.shape[i]) for i, v in enumerate(np.ravel(a["begin"]))]
    size = [int(v) for v in np.ravel(a["size"])]
    return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@register("concat")
def concat(a: dict, ctx: OpContext):
    """Concatenate along axis; interleave=True takes one slice of each input in turn. Scalars (all
    inputs rank 0, as the type inference allows) concatenate into a vector."""
    values = [np.atleast_1d(np.asarray(v)) for v in a["values"]]
    axis = axis_of(a["axis"], values[0].ndim)
    if not as_bool(a.get("interleave"), False):
        return np.concatenate(values, axis=axis)
    stacked = np.stack(values, axis=axis + 1)  # (..., d_axis, n, ...) -> (..., d_axis * n, ...)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


@register("stack")
def stack(a: dict, ctx: OpContext):
    values = [np.asarray(v) for v in a["values"]]
    return np.stack(values, axis=axis_of(a["axis"], values[0].ndim + 1))


@register("split")
def split(a: dict, ctx: OpContext):
    """Split along axis by split_sizes, or into num_splits equal parts."""
    x = np.asarray(a["x"])
    axis = axis_of(a["axis"], x.ndim)
    if a.get("split_sizes") is not None:
        sizes = [int(s) for s in np.ravel(a["split_sizes"])]
        if sum(sizes) != x.shape[axis]:
            raise ctx.error(f"split_sizes {sizes} do not sum to x.shape[{axis}]={x.shape[axis]}")
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    parts = int(a["num_splits"])
    if x.shape[axis] % parts:
        raise ctx.error(f"x.shape[{axis}]={x.shape[axis]} is not divisible by num_splits={parts}")
    return tuple(np.split(x, parts, axis=axis))


@register("tile")
def tile(a: dict, ctx: OpContext):
    x = np.asarray(a["x"])
    reps = [int(r) for r in np.ravel(a["reps"])]
    if len(reps) != x.ndim:
        raise ctx.error(f"reps {reps} must have length rank(x)={x.ndim}")
    return np.tile(x, reps)


@register("fill")
def fill(a: dict, ctx: OpContext):
    return np.full([int(d) for d in np.ravel(a["shape"])], a.get("value", 0.0))


@register("fill_like")
def fill_like(a: dict, ctx: OpContext):
    return np.full(np.shape(a["ref_tensor"]), a.get("value", 0.0))


def _checked_indices(indices: np.ndarray, size: int, ctx: OpContext) -> np.ndarray:
    """Negative indices wrap before iOS17; from iOS17 on they are out of bounds (undefined)."""
    indices = np.asarray(indices).astype(np.int64)
    low = 0 if ctx.opset >= IOS17 else -size
    if indices.size and (indices.min() < low or indices.max() >= size):
        raise ctx.error(f"gather index out of range [{low}, {size}): the result is undefined on device")
    return np.where(indices < 0, indices + size, indices)


@register("gather")
def gather(a: dict, ctx: OpContext):
    """out[p.., i.., q..] = x[p.., indices[i..], q..] along axis; batch_dims leading dims are shared."""
    x = np.asarray(a["x"])
    axis = axis_of(a.get("axis", 0), x.ndim)
    batch_dims = int(a.get("batch_dims", 0))
    indices = _checked_indices(a["indices"], x.shape[axis], ctx)
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    if x.shape[:batch_dims] != indices.shape[:batch_dims]:
        raise ctx.error(f"batch_dims={batch_dims}: x{x.shape} and indices{indices.shape} differ in leading dims")
    lead = x.shape[:batch_dims]
    xs = x.reshape((-1,) + x.shape[batch_dims:])
    ids = indices.reshape((-1,) + indices.shape[batch_dims:])
    out = np.stack([np.take(xs[b], ids[b], axis=axis - batch_dims) for b in range(xs.shape[0])])
    return out.reshape(lead + out.shape[1:])


@register("gather_along_axis")
def gather_along_axis(a: dict, ctx: OpContext):
    x = np.asarray(a["x"])
    axis = axis_of(a.get("axis", 0), x.ndim)
    return np.take_along_axis(x, _checked_indices(a["indices"], x.shape[axis], ctx), axis=axis)
