"""Each op of the CoreML reference executor against an independent torch/numpy computation.

Every case builds a MIL program with coremltools' builder, converts it to an ML Program (with the
empty pass pipeline, so the op under test is what gets saved), saves the .mlpackage, reads it back
through runtimes.coreml_reference's loader and runs it. The expected values are written here from
the MIL op definitions, never by calling the executor's own functions.
"""

from __future__ import annotations

import itertools

import coremltools as ct  # noqa: E402  (a hard dependency: a broken install fails, never skips)
import numpy as np
import pytest
import torch  # noqa: E402

F = torch.nn.functional

from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import get_new_symbol, types  # noqa: E402

from vitship.runtimes.coreml_reference import ReferenceExecutor, ReferenceExecutorError, load_package  # noqa: E402
from vitship.runtimes.coreml_reference import ops as ops_module  # noqa: E402

IOS16, IOS17, IOS18 = ct.target.iOS16, ct.target.iOS17, ct.target.iOS18
_counter = itertools.count()


def t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def save_and_load(prog, tmp_path, opset, inputs=None) -> ReferenceExecutor:
    model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=opset, inputs=inputs,
                       compute_precision=ct.precision.FLOAT32, pass_pipeline=ct.PassPipeline.EMPTY)
    path = tmp_path / f"p{next(_counter)}.mlpackage"
    model.save(str(path))
    return ReferenceExecutor(load_package(path).program)


def run_op(tmp_path, build, inputs, opset=IOS17, dtype=types.fp32, op_type=None):
    """Build `build(*vars)` over inputs named x, y, z; return (list of outputs, executor)."""
    specs = [mb.TensorSpec(shape=np.shape(v), dtype=dtype) for v in inputs]
    bodies = {1: lambda x: build(x), 2: lambda x, y: build(x, y), 3: lambda x, y, z: build(x, y, z)}
    prog = mb.program(input_specs=specs, opset_version=opset)(bodies[len(inputs)])
    executor = save_and_load(prog, tmp_path, opset)
    if op_type is not None:
        assert executor.op_counts[op_type] >= 1, f"{op_type} did not survive conversion: {executor.op_counts}"
    out = executor.run(dict(zip(["x", "y", "z"], inputs)))
    return list(out.values()), executor


rng = np.random.default_rng(7)
X234 = rng.standard_normal((2, 3, 4)).astype(np.float32)
X28 = rng.standard_normal((2, 8)).astype(np.float32)
IMG = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
W8 = rng.standard_normal((5, 8)).astype(np.float32)
B5 = rng.standard_normal(5).astype(np.float32)
G4 = rng.standard_normal(4).astype(np.float32)
BE4 = rng.standard_normal(4).astype(np.float32)
G34 = rng.standard_normal((3, 4)).astype(np.float32)


def _conv_w(cout, cin, *k):
    return rng.standard_normal((cout, cin) + k).astype(np.float32)


WC = _conv_w(6, 4, 3, 3)
WC4 = _conv_w(6, 4, 4, 4)
WG = _conv_w(6, 2, 3, 3)
WD = _conv_w(8, 1, 3, 3)
WP = _conv_w(5, 4, 3, 3)
W1D = _conv_w(3, 4, 3)
BC = rng.standard_normal(6).astype(np.float32)

# (id, op type, inputs, build, expected)
CASES = [
    ("gelu-exact", "gelu", [X28], lambda x: mb.gelu(x=x, mode="EXACT"), lambda x: F.gelu(t(x))),
    ("gelu-tanh", "gelu", [X28], lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), lambda x: F.gelu(t(x), approximate="tanh")),
    ("gelu-sigmoid", "gelu", [X28], lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), lambda x: t(x) * torch.sigmoid(1.702 * t(x))),
    ("softmax-last", "softmax", [X234], lambda x: mb.softmax(x=x, axis=-1), lambda x: torch.softmax(t(x), -1)),
    ("softmax-axis1", "softmax", [X234], lambda x: mb.softmax(x=x, axis=1), lambda x: torch.softmax(t(x), 1)),
    ("layer_norm-last-gamma-beta", "layer_norm", [X234], lambda x: mb.layer_norm(x=x, axes=[-1], gamma=G4, beta=BE4, epsilon=1e-6),
     lambda x: F.layer_norm(t(x), (4,), t(G4), t(BE4), 1e-6)),
    ("layer_norm-two-axes", "layer_norm", [X234], lambda x: mb.layer_norm(x=x, axes=[1, 2], gamma=G34, epsilon=1e-5),
     lambda x: F.layer_norm(t(x), (3, 4), t(G34), None, 1e-5)),
    ("layer_norm-all-axes-no-affine", "layer_norm", [X234], lambda x: mb.layer_norm(x=x, axes=[0, 1, 2], epsilon=0.5),
     lambda x: F.layer_norm(t(x), (2, 3, 4), eps=0.5)),
    ("layer_norm-axes-0-2", "layer_norm", [X234], lambda x: mb.layer_norm(x=x, axes=[0, 2], epsilon=1e-5),
     lambda x: (x - x.mean((0, 2), keepdims=True)) / np.sqrt(x.var((0, 2), keepdims=True) + 1e-5)),
    ("linear-bias", "linear", [X28], lambda x: mb.linear(x=x, weight=W8, bias=B5), lambda x: F.linear(t(x), t(W8), t(B5))),
    ("linear-no-bias-rank3", "linear", [X234.reshape(3, 1, 8)], lambda x: mb.linear(x=x, weight=W8), lambda x: F.linear(t(x), t(W8))),
    ("linear-rank1", "linear", [X28[0]], lambda x: mb.linear(x=x, weight=W8, bias=B5), lambda x: F.linear(t(x), t(W8), t(B5))),
    ("conv-valid-bias", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC, bias=BC, pad_type="valid"), lambda x: F.conv2d(t(x), t(WC), t(BC))),
    ("conv-same-stride2", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC, strides=[2, 2], pad_type="same"),
     lambda x: F.conv2d(t(x), t(WC), stride=2, padding=1)),
    ("conv-same-even-kernel", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC4, pad_type="same"),
     lambda x: F.conv2d(F.pad(t(x), (1, 2, 1, 2)), t(WC4))),
    ("conv-same_lower-even-kernel", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC4, pad_type="same_lower"),
     lambda x: F.conv2d(F.pad(t(x), (2, 1, 2, 1)), t(WC4))),
    ("conv-custom-pad-dilation", "conv", [IMG], lambda x: mb.conv(x=x, weight=WP, pad_type="custom", pad=[1, 2, 0, 1], dilations=[2, 1]),
     lambda x: F.conv2d(F.pad(t(x), (0, 1, 1, 2)), t(WP), dilation=(2, 1))),
    ("conv-groups-2", "conv", [IMG], lambda x: mb.conv(x=x, weight=WG, groups=2, strides=[1, 2]), lambda x: F.conv2d(t(x), t(WG), groups=2, stride=(1, 2))),
    ("conv-depthwise", "conv", [IMG], lambda x: mb.conv(x=x, weight=WD, groups=4, pad_type="custom", pad=[1, 1, 1, 1]),
     lambda x: F.conv2d(t(x), t(WD), groups=4, padding=1)),
    ("conv-patchify-stride-eq-kernel", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC, bias=BC, strides=[3, 3]),
     lambda x: F.conv2d(t(x), t(WC), t(BC), stride=3)),
    ("conv-patchify-remainder", "conv", [IMG], lambda x: mb.conv(x=x, weight=WC4, strides=[4, 4]), lambda x: F.conv2d(t(x), t(WC4), stride=4)),
    ("conv-1d", "conv", [X234.reshape(2, 4, 3)], lambda x: mb.conv(x=x, weight=W1D, pad_type="same"), lambda x: F.conv1d(t(x), t(W1D), padding=1)),
    ("reshape-minus1", "reshape", [X234], lambda x: mb.reshape(x=x, shape=[-1, 6]), lambda x: x.reshape(4, 6)),
    ("transpose", "transpose", [X234], lambda x: mb.transpose(x=x, perm=[2, 0, 1]), lambda x: x.transpose(2, 0, 1)),
    ("squeeze-axes", "squeeze", [X234.reshape(2, 1, 12)], lambda x: mb.squeeze(x=x, axes=[1]), lambda x: x[:, 0]),
    ("squeeze-all", "squeeze", [X234.reshape(1, 24, 1)], lambda x: mb.squeeze(x=x), lambda x: x.reshape(24)),
    ("expand_dims", "expand_dims", [X234], lambda x: mb.expand_dims(x=x, axes=[0, -1]), lambda x: x[None, ..., None]),
    ("slice-stride", "slice_by_index", [X234], lambda x: mb.slice_by_index(x=x, begin=[0, 1, 0], end=[2, 3, 4], stride=[1, 1, 2]),
     lambda x: x[0:2, 1:3, 0:4:2]),
    ("slice-masks", "slice_by_index", [X234], lambda x: mb.slice_by_index(
        x=x, begin=[1, 5, 1], end=[0, 2, 3], begin_mask=[False, True, False], end_mask=[True, False, False]), lambda x: x[1:, :2, 1:3]),
    ("slice-squeeze", "slice_by_index", [X234], lambda x: mb.slice_by_index(
        x=x, begin=[0, 2, 0], end=[0, 3, 4], end_mask=[True, False, True], squeeze_mask=[False, True, False]), lambda x: x[:, 2, :]),
    ("slice-negative", "slice_by_index", [X234], lambda x: mb.slice_by_index(x=x, begin=[0, -1, -1], end=[2, 0, 0], stride=[1, -1, -2]),
     lambda x: x[0:2, -1:0:-1, -1:0:-2]),
    ("concat", "concat", [X234, X234[:, :2]], lambda x, y: mb.concat(values=[x, y], axis=1), lambda x, y: np.concatenate([x, y], 1)),
    ("concat-interleave", "concat", [X234, X234 * 2], lambda x, y: mb.concat(values=[x, y], axis=1, interleave=True),
     lambda x, y: np.stack([x, y], 2).reshape(2, 6, 4)),
    ("split-num", "split", [X234], lambda x: mb.split(x=x, num_splits=2, axis=2), lambda x: (x[..., :2], x[..., 2:])),
    ("split-sizes", "split", [X234], lambda x: mb.split(x=x, split_sizes=[1, 2], axis=1), lambda x: (x[:, :1], x[:, 1:])),
    ("add", "add", [X234, G4], lambda x, y: mb.add(x=x, y=y), lambda x, y: x + y),
    ("sub", "sub", [X234, X234[:1, :, :1]], lambda x, y: mb.sub(x=x, y=y), lambda x, y: x - y),
    ("mul", "mul", [X234, G34], lambda x, y: mb.mul(x=x, y=y), lambda x, y: x * y),
    ("real_div", "real_div", [X234, G4 + 3], lambda x, y: mb.real_div(x=x, y=y), lambda x, y: x / y),
    ("pow", "pow", [np.abs(X234) + 0.5, G4], lambda x, y: mb.pow(x=x, y=y), lambda x, y: x ** y),
    ("sqrt", "sqrt", [np.abs(X234)], lambda x: mb.sqrt(x=x), lambda x: np.sqrt(x)),
    ("rsqrt-epsilon", "rsqrt", [np.abs(X234)], lambda x: mb.rsqrt(x=x, epsilon=0.5), lambda x: 1 / np.sqrt(x + 0.5)),
    ("reduce_mean-axis", "reduce_mean", [X234], lambda x: mb.reduce_mean(x=x, axes=[1]), lambda x: x.mean(1)),
    ("reduce_mean-keep", "reduce_mean", [X234], lambda x: mb.reduce_mean(x=x, axes=[0, -1], keep_dims=True), lambda x: x.mean((0, 2), keepdims=True)),
    ("tile", "tile", [X234], lambda x: mb.tile(x=x, reps=[2, 1, 3]), lambda x: np.tile(x, (2, 1, 3))),
    ("gather-axis1-2d-indices", "gather", [X234], lambda x: mb.gather(x=x, indices=np.array([[2, 0], [1, 1]], np.int32), axis=1),
     lambda x: x[:, [[2, 0], [1, 1]]]),
    ("gather-scalar", "gather", [X234], lambda x: mb.gather(x=x, indices=1, axis=-1), lambda x: x[..., 1]),
    ("gather-batch_dims", "gather", [X234], lambda x: mb.gather(x=x, indices=np.array([[0, 2], [1, 1]], np.int32), axis=1, batch_dims=1),
     lambda x: np.stack([x[0, [0, 2]], x[1, [1, 1]]])),
    ("select-greater", "select", [X234, G4], lambda x, y: mb.select(cond=mb.greater(x=x, y=y), a=x, b=y),
     lambda x, y: np.where(x > y, x, np.broadcast_to(y, x.shape))),
    ("equal-cast", "equal", [np.round(X234)], lambda x: mb.cast(x=mb.equal(x=x, y=0.0), dtype="fp32"), lambda x: (x == 0).astype(np.float32)),
    ("cast-int32-truncates", "cast", [X234 * 3], lambda x: mb.cast(x=x, dtype="int32"), lambda x: np.trunc(x)),
    ("cast-fp16-rounds", "cast", [X234 / 3], lambda x: mb.cast(x=mb.cast(x=x, dtype="fp16"), dtype="fp32"),
     lambda x: x.astype(np.float16).astype(np.float32)),
    ("sdpa", "scaled_dot_product_attention", [X234, X234[:, :2] * 2, X234[:, :2]],
     lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v), lambda q, k, v: F.scaled_dot_product_attention(t(q), t(k), t(v))),
    ("sdpa-bool-mask", "scaled_dot_product_attention", [X234, X234[:, :2] * 2, X234[:, :2]],
     lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=np.array([[True, False]] * 3)),
     lambda q, k, v: F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=torch.tensor([[True, False]] * 3))),
    ("sdpa-float-mask", "scaled_dot_product_attention", [X234, X234[:, :2] * 2, X234[:, :2]],
     lambda q, k, v: mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=G34[:, :2]),
     lambda q, k, v: F.scaled_dot_product_attention(t(q), t(k), t(v), attn_mask=t(G34[:, :2]))),
]
Y254 = rng.standard_normal((2, 5, 4)).astype(np.float32)
CASES += [
    (f"matmul-tx{tx:d}-ty{ty:d}", "matmul", [X234, Y254],
     lambda x, y, tx=tx, ty=ty: mb.matmul(x=mb.transpose(x=x, perm=[0, 2, 1]) if tx else x,
                                          y=y if ty else mb.transpose(x=y, perm=[0, 2, 1]), transpose_x=tx, transpose_y=ty),
     lambda x, y: torch.bmm(t(x), t(y).transpose(1, 2)))
    for tx, ty in itertools.product([False, True], repeat=2)
] + [
    ("matmul-broadcast", "matmul", [X234[:, None], Y254[0].T.copy()], lambda x, y: mb.matmul(x=x, y=y), lambda x, y: torch.matmul(t(x), t(y))),
]
CASES_BY_ID = {c[0]: c for c in CASES}
OPSET_OF = {"sdpa": IOS18, "sdpa-bool-mask": IOS18, "sdpa-float-mask": IOS18}


@pytest.mark.parametrize("case_id", list(CASES_BY_ID))
def test_op_matches_independent_reference(case_id, tmp_path):
    _, op_type, inputs, build, expected = CASES_BY_ID[case_id]
    outputs, _ = run_op(tmp_path, build, inputs, opset=OPSET_OF.get(case_id, IOS17), op_type=op_type)
    want = expected(*inputs)
    want = list(want) if isinstance(want, tuple) else [want]
    assert len(outputs) == len(want)
    for got, ref in zip(outputs, want):
        ref = ref.numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("opset, target, shape", [(IOS16, [0, -1, 2], (2, 6, 2)), (IOS17, [0, -1], (3, 8))])
def test_reshape_zero_follows_the_opset(opset, target, shape, tmp_path):
    # iOS15/16: a 0 copies the dim at the same position; iOS17: 0s are right-aligned with x's dims.
    (out,), _ = run_op(tmp_path, lambda x: mb.reshape(x=x, shape=target), [X234], opset=opset, op_type="reshape")
    np.testing.assert_array_equal(out, X234.reshape(shape))


def test_gather_negative_index_wraps_before_ios17_and_is_refused_after(tmp_path):
    (out,), _ = run_op(tmp_path, lambda x: mb.gather(x=x, indices=np.array([-1, 0], np.int32), axis=1), [X234], opset=IOS16)
    np.testing.assert_array_equal(out, X234[:, [2, 0]])
    with pytest.raises(ReferenceExecutorError, match="gather.*out of range"):
        run_op(tmp_path, lambda x: mb.gather(x=x, indices=np.array([-1, 0], np.int32), axis=1), [X234], opset=IOS17)


def test_dynamic_batch_shape_fill_and_runtime_reshape(tmp_path):
    """The batch is flexible: shape/gather/concat/fill/reshape must be evaluated on the fed batch."""

    def build(x):
        dims = mb.shape(x=x)
        batch = mb.gather(x=dims, indices=0, axis=0)
        flat = mb.reshape(x=x, shape=mb.concat(values=[batch, np.int32(-1)], axis=0))
        return flat, mb.fill(shape=dims, value=1.5), dims

    spec = mb.TensorSpec(shape=(get_new_symbol(), 3, 4))
    flexible = [ct.TensorType(name="x", shape=(ct.RangeDim(1, 8), 3, 4))]
    executor = save_and_load(mb.program(input_specs=[spec], opset_version=IOS17)(build), tmp_path, IOS17, flexible)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 3, 4)).astype(np.float32)
        flat, filled, dims = executor.run({"x": x}).values()
        np.testing.assert_array_equal(flat, x.reshape(batch, 12))
        np.testing.assert_array_equal(filled, np.full((batch, 3, 4), 1.5, np.float32))
        np.testing.assert_array_equal(dims, [batch, 3, 4])


def test_fp16_program_rounds_every_fp16_result(tmp_path):
    """An fp16 program: values computed in fp32 and rounded to fp16 after each op (within one fp16 ulp of
    torch in fp32 then rounded); results hold exactly representable fp16 values."""
    x16 = X28.astype(np.float16)
    w16, b16 = W8.astype(np.float16), B5.astype(np.float16)

    def build(x):
        return mb.gelu(x=mb.linear(x=x, weight=w16, bias=b16), mode="TANH_APPROXIMATION")

    (out,), executor = run_op(tmp_path, build, [x16], opset=IOS17, dtype=types.fp16, op_type="gelu")
    assert executor.precision == "fp16-emulated"
    np.testing.assert_array_equal(out, out.astype(np.float16).astype(np.float32))
    lin = F.linear(t(x16), t(w16), t(b16)).half().float()
    want = F.gelu(lin, approximate="tanh").half().float().numpy()
    np.testing.assert_allclose(out, want, rtol=2 ** -10, atol=1e-3)


def _pack_lsb_first(values: np.ndarray, nbits: int) -> np.ndarray:
    """Pack unsigned nbits fields LSB-first, one byte at a time (the iOS16 constexpr layout), by hand."""
    total = 0
    for i, v in enumerate(values.ravel()):
        total |= int(v) << (i * nbits)
    return np.frombuffer(total.to_bytes(-(-values.size * nbits // 8), "little"), np.uint8).copy()


Q = rng.integers(-128, 127, (4, 6)).astype(np.int8)
ZP = rng.integers(-3, 3, 4).astype(np.int8)
SC = rng.uniform(0.01, 0.1, 4).astype(np.float32)
SC_BLOCK = rng.uniform(0.01, 0.1, (2, 3)).astype(np.float32)
OFF_BLOCK = rng.integers(-4, 4, (2, 3)).astype(np.int8)
LUT4 = np.array([-1.5, 0.25, 2.0, 7.0], np.float32)
IDX2 = rng.integers(0, 4, (4, 6)).astype(np.uint8)
MASK = rng.integers(0, 2, (4, 6)).astype(np.uint8)
NZ = rng.standard_normal(int(MASK.sum())).astype(np.float32)
U8 = rng.integers(0, 255, (4, 6)).astype(np.uint8)
X46 = rng.standard_normal((4, 6)).astype(np.float32)
LUT_GROUPS = rng.standard_normal((2, 1, 4, 1)).astype(np.float32)
LUT_VEC = rng.standard_normal((1, 1, 2, 3)).astype(np.float32)
IDX_VEC = rng.integers(0, 2, (4, 2)).astype(np.uint8)


def _sparse_ref():
    out = np.zeros(24, np.float32)
    out[np.flatnonzero(MASK.ravel())] = NZ
    return out.reshape(4, 6)


def _lut_vector_ref():
    out = np.zeros((4, 6), np.float32)  # vector_axis=1: each index fills 3 consecutive columns
    for i, j in np.ndindex(4, 2):
        out[i, 3 * j:3 * j + 3] = LUT_VEC[0, 0, IDX_VEC[i, j]]
    return out


CONSTEXPR_CASES = {
    "affine-int8-per-channel": (IOS16, lambda: mb.constexpr_affine_dequantize(quantized_data=Q, zero_point=ZP, scale=SC, axis=0),
                                lambda: SC[:, None] * (Q.astype(np.float32) - ZP[:, None])),
    "affine-uint8-scalar-zp-axis1": (IOS16, lambda: mb.constexpr_affine_dequantize(
        quantized_data=U8, zero_point=np.uint8(128), scale=SC_BLOCK.ravel(), axis=1),
        lambda: SC_BLOCK.ravel()[None, :] * (U8.astype(np.float32) - 128)),
    "blockwise-int8-offset": (IOS18, lambda: mb.constexpr_blockwise_shift_scale(data=Q, scale=SC_BLOCK, offset=OFF_BLOCK),
                              lambda: np.repeat(np.repeat(SC_BLOCK, 2, 0), 2, 1) * (Q - np.repeat(np.repeat(OFF_BLOCK, 2, 0), 2, 1))),
    "blockwise-int4-no-offset": (IOS18, lambda: mb.constexpr_blockwise_shift_scale(
        data=(Q // 16).astype(types.np_int4_dtype), scale=SC_BLOCK), lambda: np.repeat(np.repeat(SC_BLOCK, 2, 0), 2, 1) * (Q // 16)),
    "lut-ios16-2bit-packed": (IOS16, lambda: mb.constexpr_lut_to_dense(
        indices=_pack_lsb_first(IDX2, 2), lut=LUT4, shape=np.array([4, 6], np.uint32)), lambda: LUT4[IDX2]),
    "lut-ios18-per-group": (IOS18, lambda: mb.constexpr_lut_to_dense(indices=IDX2.astype(types.np_uint2_dtype), lut=LUT_GROUPS),
                            lambda: np.concatenate([LUT_GROUPS[0, 0, IDX2[:2], 0], LUT_GROUPS[1, 0, IDX2[2:], 0]])),
    "lut-ios18-vector": (IOS18, lambda: mb.constexpr_lut_to_dense(
        indices=IDX_VEC.astype(types.np_uint1_dtype), lut=LUT_VEC, vector_axis=1), _lut_vector_ref),
    "sparse-ios16-packed": (IOS16, lambda: mb.constexpr_sparse_to_dense(
        nonzero_data=NZ, mask=_pack_lsb_first(MASK, 1), shape=np.array([4, 6], np.uint32)), _sparse_ref),
    "sparse-ios18-uint1": (IOS18, lambda: mb.constexpr_sparse_to_dense(nonzero_data=NZ, mask=MASK.astype(types.np_uint1_dtype)), _sparse_ref),
    "cast-fp16-to-fp32": (IOS16, lambda: mb.constexpr_cast(source_val=X46.astype(np.float16), output_dtype="fp32"),
                          lambda: X46.astype(np.float16).astype(np.float32)),
}


@pytest.mark.parametrize("case_id", list(CONSTEXPR_CASES))
def test_constexpr_decompression(case_id, tmp_path):
    opset, build_const, expected = CONSTEXPR_CASES[case_id]
    (out,), executor = run_op(tmp_path, lambda x: mb.add(x=x, y=build_const()), [X46], opset=opset)
    assert any(op.startswith("constexpr_") for op in executor.op_counts), executor.op_counts
    np.testing.assert_allclose(out, X46 + expected(), rtol=1e-6, atol=1e-6)


def test_an_op_without_implementation_is_a_clear_error(tmp_path):
    prog = mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=IOS17)(
        lambda x: mb.cumsum(x=mb.relu(x=x), axis=1, name="running_total"))
    with pytest.raises(ReferenceExecutorError, match=r"unsupported MIL op 'cumsum'.*running_total.*block 'main/"):
        save_and_load(prog, tmp_path, IOS17)


def test_a_dropped_registry_entry_is_named_not_skipped(tmp_path, monkeypatch):
    monkeypatch.delitem(ops_module.OPS, "gelu")
    with pytest.raises(ReferenceExecutorError, match=r"unsupported MIL op 'gelu'.*gelu_0"):
        run_op(tmp_path, lambda x: mb.gelu(x=x), [X28])


def test_fast_fp16_rounding_equals_numpy_float16_everywhere():
    """Every fp16 value, every midpoint (ties to even) and its float32 neighbours, subnormals,
    overflow to inf, inf and NaN: the same as a round trip through numpy's float16."""
    from vitship.runtimes.coreml_reference.executor import round_to_fp16

    every = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = np.sort(every[np.isfinite(every)])
    mids = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)
    spread = (rng.standard_normal(200_000) * np.exp(rng.uniform(-30, 14, 200_000))).astype(np.float32)
    x = np.concatenate([every, mids, np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf)),
                        spread, np.array([65519.99, 65520.0, 1e30, -1e30], np.float32)])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(round_to_fp16(x), want)  # NaNs compare equal here
    np.testing.assert_array_equal(round_to_fp16(x.copy(), inplace=True), want)


POS = np.abs(X234) + 0.25
HALVES = np.array([0.5, 1.5, 2.5, -0.5, -1.7, 3.2], np.float32)
UNARY = {  # op -> (input: 0 = X234, 1 = POS, 2 = HALVES, independent expectation)
    "abs": (0, np.abs), "ceil": (0, np.ceil), "floor": (0, np.floor), "sign": (0, np.sign),
    "round": (2, lambda x: np.array([0, 2, 2, 0, -2, 3], np.float32)),  # ties to even: 0.5 -> 0
    "cos": (0, np.cos), "sin": (0, np.sin), "tan": (1, np.tan), "exp": (0, np.exp), "exp2": (0, lambda x: 2.0 ** x),
    "square": (0, lambda x: x * x), "tanh": (0, np.tanh), "erf": (0, lambda x: torch.erf(t(x))),
    "relu": (0, lambda x: np.where(x > 0, x, 0)), "sigmoid": (0, lambda x: torch.sigmoid(t(x))),
    "silu": (0, lambda x: F.silu(t(x))), "identity": (0, lambda x: x),
    "inverse": (1, lambda x: 1 / (x + 1e-4)), "log": (1, lambda x: np.log(x + 1e-45)),
}


@pytest.mark.parametrize("group", ["unary", "binary", "reductions", "misc"])
def test_every_other_registered_op(group, tmp_path):
    """The remaining registered ops, one program per group (one conversion), each output checked by name."""
    if group == "unary":
        inputs = [X234, POS, HALVES / 1.0]
        names = list(UNARY)
        got, _ = run_op(tmp_path, lambda *xs: tuple(getattr(mb, n)(x=xs[UNARY[n][0]]) for n in names), inputs)
        want = [UNARY[n][1](inputs[UNARY[n][0]]) for n in names]
    else:
        x, y = X234, G4 + 0.5
        cases = {
            "binary": [
                (lambda x, y: mb.maximum(x=x, y=y), np.maximum(x, y)), (lambda x, y: mb.minimum(x=x, y=y), np.minimum(x, y)),
                (lambda x, y: mb.floor_div(x=x, y=y), np.floor_divide(x, y)), (lambda x, y: mb.mod(x=x, y=y), np.mod(x, y)),
                *[(lambda x, y, o=o: mb.cast(x=getattr(mb, o)(x=x, y=y), dtype="fp32"), f(x, y).astype(np.float32))
                  for o, f in [("not_equal", np.not_equal), ("greater_equal", np.greater_equal), ("less", np.less),
                               ("less_equal", np.less_equal)]],
                *[(lambda x, y, o=o: mb.cast(x=getattr(mb, o)(x=mb.greater(x=x, y=0.0), y=mb.less(x=x, y=y)), dtype="fp32"),
                   f(x > 0, x < y).astype(np.float32))
                  for o, f in [("logical_and", np.logical_and), ("logical_or", np.logical_or), ("logical_xor", np.logical_xor)]],
                (lambda x, y: mb.cast(x=mb.logical_not(x=mb.greater(x=x, y=y)), dtype="fp32"), (x <= y).astype(np.float32)),
                (lambda x, y: mb.clip(x=x, alpha=-0.5, beta=0.7), np.clip(x, -0.5, 0.7)),
            ],
            "reductions": [
                (lambda x, y: mb.reduce_sum(x=x, axes=[1]), x.sum(1)), (lambda x, y: mb.reduce_max(x=x, axes=[0, 2]), x.max((0, 2))),
                (lambda x, y: mb.reduce_min(x=x, axes=[-1], keep_dims=True), x.min(-1, keepdims=True)),
                (lambda x, y: mb.reduce_prod(x=x, axes=[2]), x.prod(2)),
                (lambda x, y: mb.reduce_sum_square(x=x, axes=[1]), (x * x).sum(1)),
                (lambda x, y: mb.reduce_l2_norm(x=x, axes=[2]), np.sqrt((x * x).sum(2))),
                (lambda x, y: mb.reduce_log_sum_exp(x=x, axes=[1]), torch.logsumexp(t(x), 1)),
                (lambda x, y: mb.cast(x=mb.reduce_argmax(x=x, axis=1), dtype="fp32"), x.argmax(1).astype(np.float32)),
                (lambda x, y: mb.cast(x=mb.reduce_argmin(x=x, axis=-1, keep_dims=True), dtype="fp32"),
                 x.argmin(-1)[..., None].astype(np.float32)),
            ],
            "misc": [
                (lambda x, y: mb.slice_by_size(x=x, begin=[1, 0, 1], size=[1, -1, 2]), x[1:2, :, 1:3]),
                (lambda x, y: mb.stack(values=[x, mb.mul(x=x, y=2.0)], axis=1), np.stack([x, x * 2], 1)),
                (lambda x, y: mb.fill_like(ref_tensor=x, value=2.5), np.full(x.shape, 2.5, np.float32)),
                (lambda x, y: mb.gather_along_axis(x=x, indices=np.array([[[1], [0], [2]]] * 2, np.int32), axis=2),
                 np.take_along_axis(x, np.array([[[1], [0], [2]]] * 2), 2)),
                (lambda x, y: mb.einsum(values=(mb.reshape(x=x, shape=[2, 3, 2, 2]),
                                                mb.reshape(x=x, shape=[2, 2, 2, 3])), equation="nchw,nwhu->nchu"),
                 np.einsum("nchw,nwhu->nchu", x.reshape(2, 3, 2, 2), x.reshape(2, 2, 2, 3))),
            ],
        }[group]
        outputs, executor = run_op(tmp_path, lambda x, y: tuple(b(x, y) for b, _ in cases), [x, y])
        got, want, names = outputs, [w for _, w in cases], [f"{group}[{i}]" for i in range(len(cases))]
    for name, g, w in zip(names, got, want):
        w = w.numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float32)
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5, err_msg=name)


COVERED_ELSEWHERE = {  # ops exercised by the tests above other than through CASES' op types
    "maximum", "minimum", "floor_div", "mod", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
    "logical_or", "logical_xor", "logical_not", "clip", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod",
    "reduce_sum_square", "reduce_l2_norm", "reduce_log_sum_exp", "reduce_argmax", "reduce_argmin", "slice_by_size", "stack",
    "fill_like", "gather_along_axis", "einsum", "shape", "fill", "constexpr_affine_dequantize",
    "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense", "constexpr_sparse_to_dense", "constexpr_cast",
}


def test_every_registered_op_has_a_test():
    covered = {c[1] for c in CASES} | set(UNARY) | COVERED_ELSEWHERE
    assert sorted(set(ops_module.OPS) - covered) == []
