"""The frame preprocessing as ONNX nodes: one definition that onnx-image, openvino-image and the fixed-size programs use.

Pillow resizes in two separable passes (horizontal, then vertical), each a weighted sum of the source pixels within
the filter's support around each output pixel's center, rounded to 8 bits. These nodes compute Pillow's own taps
(``precompute_coeffs`` in Pillow's Resample.c: center ``(j + 0.5) * scale``, support ``filter_support * max(scale, 1)``,
weights normalised per output pixel) for the output pixels the center crop keeps, so the resize and the crop are one
step and nothing outside the crop is computed. The outputs are grouped in ``BLOCKS`` blocks; each block gathers the
window of source pixels its outputs read and multiplies it by its weights (a batched MatMul), so a 1920x1080 frame
costs about 0.25 GMAC and the intermediate stays about the frame's size. Every size is computed from the frame's
shape in the graph (``models.preprocess.resized_size`` and ``crop_origin`` arithmetic), so any frame size runs.

Standard operators only (Gather, MatMul, Range, Where, ReduceSum, ...; opset 18, IR 9): onnxruntime runs them, and
OpenVINO converts them (its Interpolate-11 Pillow modes are exact too, but set up for about 20 s at every new frame
size on this machine). Measured against Pillow on the bundled photos and random frames from 1x10 to 4032x3024: at
most 2 levels apart on one pixel, 1 level on at most 0.11% of the pixels (Pillow's 22-bit fixed-point weights
against float32 here).
"""

from __future__ import annotations

import numpy as np

from vitship.models import ModelSpec

PREFIX = "frame_preprocess/"  # every node and tensor name here, so nothing collides with the model's graph
OPSET = 18
BLOCKS = 8  # output blocks per pass (fewer when the crop size is not a multiple)
CUBIC_A = -0.5  # Pillow's bicubic


class _Nodes:
    """Collects nodes and constants, each named under PREFIX."""

    def __init__(self):
        self.nodes, self.constants = [], {}

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.constants[PREFIX + name] = numpy_helper.from_array(np.asarray(value), PREFIX + name)
        return PREFIX + name

    def op(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        from onnx import helper

        out = output or PREFIX + name
        self.nodes.append(helper.make_node(op, inputs, [out], name=PREFIX + name, **attrs))
        return out

    def f32(self, value: float) -> str:
        return self.const(f"f{value:g}".replace("-", "m").replace(".", "p"), np.float32(value))


def _filter(g: _Nodes, x: str, interpolation: str, name: str) -> str:
    """Pillow's bicubic (a = -0.5) or bilinear (triangle) filter of ``x``, elementwise."""
    ax = g.op("Abs", [x], f"{name}_abs")
    below_one = g.op("Less", [ax, g.f32(1.0)], f"{name}_lt1")
    if interpolation == "bilinear":
        return g.op("Where", [below_one, g.op("Sub", [g.f32(1.0), ax], f"{name}_tri"), g.f32(0.0)], f"{name}_w")
    a = CUBIC_A
    inner = g.op("Mul", [g.op("Sub", [g.op("Mul", [ax, g.f32(a + 2)], f"{name}_p1a"), g.f32(a + 3)], f"{name}_p1b"), ax], f"{name}_p1c")
    near = g.op("Add", [g.op("Mul", [inner, ax], f"{name}_p1d"), g.f32(1.0)], f"{name}_p1")
    far = g.op("Mul", [g.op("Sub", [g.op("Mul", [g.op("Add", [g.op("Mul", [g.op("Sub", [ax, g.f32(5.0)], f"{name}_p2a"), ax], f"{name}_p2b"),
                                                             g.f32(8.0)], f"{name}_p2c"), ax], f"{name}_p2d"), g.f32(4.0)], f"{name}_p2e"),
                       g.f32(a)], f"{name}_p2")
    below_two = g.op("Less", [ax, g.f32(2.0)], f"{name}_lt2")
    return g.op("Where", [below_one, near, g.op("Where", [below_two, far, g.f32(0.0)], f"{name}_far")], f"{name}_w")


def _taps(g: _Nodes, n_in: str, n_out: str, start: str, count: int, interpolation: str, name: str) -> tuple[str, str, str]:
    """(source indices [B, win] int64, weights [B, count / B, win], the first source index [1]) of one pass, for the
    output pixels start..start+count; the indices count from the first source index the pass reads.

    ``n_in``, ``n_out`` (the full resized size) and ``start`` are int64 scalars in the graph.
    """
    blocks = next(b for b in (BLOCKS, 4, 2, 1) if count % b == 0)
    per = count // blocks
    size_in = g.op("Cast", [n_in], f"{name}_in_f", to=1)
    scale = g.op("Div", [size_in, g.op("Cast", [n_out], f"{name}_out_f", to=1)], f"{name}_scale")
    filter_scale = g.op("Max", [scale, g.f32(1.0)], f"{name}_fscale")
    support = g.op("Mul", [filter_scale, g.f32(2.0 if interpolation == "bicubic" else 1.0)], f"{name}_support")
    offsets = g.const(f"{name}_offsets", np.arange(count, dtype=np.float32) + np.float32(0.5))
    center = g.op("Mul", [g.op("Add", [g.op("Cast", [start], f"{name}_start_f", to=1), offsets], f"{name}_pos"), scale], f"{name}_center")
    low = g.op("Max", [g.op("Floor", [g.op("Add", [g.op("Sub", [center, support], f"{name}_l0"), g.f32(0.5)], f"{name}_l1")],
                            f"{name}_l2"), g.f32(0.0)], f"{name}_xmin")
    high = g.op("Min", [g.op("Floor", [g.op("Add", [g.op("Add", [center, support], f"{name}_h0"), g.f32(0.5)], f"{name}_h1")],
                             f"{name}_h2"), size_in], f"{name}_xmax")
    shape = g.const(f"{name}_blocks", np.array([blocks, per]))
    low_b, high_b, center_b = (g.op("Reshape", [v, shape], f"{name}_{v.rsplit('_', 1)[-1]}_b") for v in (low, high, center))
    axis1, axis2 = g.const("i1", np.array([1])), g.const("i2", np.array([2]))
    first = g.op("Slice", [low_b, g.const("i0", np.array([0])), axis1, axis1], f"{name}_first")  # [B, 1]: windows start here
    last = g.op("Slice", [high_b, g.const(f"{name}_per1", np.array([per - 1])), g.const(f"{name}_per", np.array([per])), axis1],
                f"{name}_last")
    window = g.op("Cast", [g.op("ReduceMax", [g.op("Sub", [last, first], f"{name}_spans")], f"{name}_span", keepdims=0)], f"{name}_win", to=7)
    steps = g.op("Cast", [g.op("Range", [g.const("zero_i", np.int64(0)), window, g.const("one_i", np.int64(1))], f"{name}_range")],
                 f"{name}_steps", to=1)
    source = g.op("Add", [first, g.op("Unsqueeze", [steps, g.const("i0", np.array([0]))], f"{name}_steps_row")], f"{name}_source")
    row = g.op("Unsqueeze", [source, axis1], f"{name}_source_row")  # [B, 1, win]
    low_c, high_c, center_c = (g.op("Unsqueeze", [v, axis2], f"{v.removeprefix(PREFIX)}_col") for v in (low_b, high_b, center_b))
    distance = g.op("Div", [g.op("Add", [g.op("Sub", [row, center_c], f"{name}_d0"), g.f32(0.5)], f"{name}_d1"), filter_scale],
                    f"{name}_distance")  # [B, per, win]
    inside = g.op("And", [g.op("GreaterOrEqual", [row, low_c], f"{name}_ge"), g.op("Less", [row, high_c], f"{name}_lt")], f"{name}_in")
    raw = g.op("Where", [inside, _filter(g, distance, interpolation, f"{name}_filter"), g.f32(0.0)], f"{name}_raw")
    weights = g.op("Div", [raw, g.op("ReduceSum", [raw, axis2], f"{name}_norm", keepdims=1)], f"{name}_weights")
    last_index = g.op("Sub", [size_in, g.f32(1.0)], f"{name}_last_index")
    clamped = g.op("Min", [source, last_index], f"{name}_clamped")
    origin = g.op("ReduceMin", [first], f"{name}_origin", keepdims=1)  # [1, 1]: xmin of the first output pixel
    end = g.op("Add", [g.op("ReduceMax", [clamped], f"{name}_end0", keepdims=1), g.f32(1.0)], f"{name}_end")
    index = g.op("Cast", [g.op("Sub", [clamped, origin], f"{name}_relative")], f"{name}_index", to=7)
    span = g.op("Cast", [g.op("Reshape", [g.op("Concat", [origin, end], f"{name}_span2", axis=1), g.const("two_1", np.array([2]))],
                              f"{name}_span_flat")], f"{name}_span_i", to=7)
    return index, weights, span


def _pass(g: _Nodes, rows: str, index: str, weights: str, name: str) -> str:
    """One Pillow pass over the first axis of ``rows`` [n_in, rest]: [B, per, rest], rounded to 8 bits.

    Each block gathers its window of rows (contiguous) and takes one MatMul with its weights.
    """
    gathered = g.op("Gather", [rows, index], f"{name}_gather", axis=0)  # [B, win, rest]
    summed = g.op("MatMul", [weights, gathered], f"{name}_mm")  # [B, per, rest]
    clipped = g.op("Clip", [summed, g.f32(0.0), g.f32(255.0)], f"{name}_clip")  # Pillow: clip, then round half up
    return g.op("Floor", [g.op("Add", [clipped, g.f32(0.5)], f"{name}_half")], f"{name}_8bit")


def _sizes(g: _Nodes, frame: str, spec: ModelSpec) -> tuple[str, str, str, str, str, str]:
    """(height, width, resized height, resized width, crop top, crop left) as int64 scalars."""
    shape = g.op("Shape", [frame], "shape")
    height = g.op("Gather", [shape, g.const("s1", np.int64(1))], "height", axis=0)
    width = g.op("Gather", [shape, g.const("s2", np.int64(2))], "width", axis=0)
    if spec.resize_mode == "shortest_edge":
        short, target = g.op("Min", [height, width], "short"), g.const("target", np.int64(spec.resize_size[0]))
        new_h = g.op("Div", [g.op("Mul", [height, target], "h_scaled"), short], "new_height")  # int64 Div: floor here
        new_w = g.op("Div", [g.op("Mul", [width, target], "w_scaled"), short], "new_width")
    else:
        new_h, new_w = g.const("new_height", np.int64(spec.resize_size[0])), g.const("new_width", np.int64(spec.resize_size[1]))
    if not spec.do_center_crop:
        zero = g.const("zero_i", np.int64(0))
        return height, width, new_h, new_w, zero, zero
    return height, width, new_h, new_w, _crop_offset(g, new_h, spec.crop_size[0], "top"), _crop_offset(g, new_w, spec.crop_size[1], "left")


def _crop_offset(g: _Nodes, size: str, crop: int, name: str) -> str:
    """int(round((size - crop) / 2)) with Python's half-to-even: q = d // 2, plus 1 when d is odd and q is odd."""
    two = g.const("two", np.int64(2))
    excess = g.op("Sub", [size, g.const(f"{name}_crop", np.int64(crop))], f"{name}_excess")
    half = g.op("Div", [excess, two], f"{name}_half")
    bump = g.op("Mul", [g.op("Mod", [excess, two], f"{name}_odd"), g.op("Mod", [half, two], f"{name}_half_odd")], f"{name}_bump")
    return g.op("Add", [half, bump], name)


def output_size(spec: ModelSpec) -> tuple[int, int]:
    return spec.crop_size if spec.do_center_crop else spec.resize_size


def resize_crop_nodes(g: _Nodes, frame: str, spec: ModelSpec) -> tuple[str, dict[str, str]]:
    """The cropped, resized 8-bit values (float NHWC [1, h, w, 3]) of an NHWC ``frame``, and the taps by name."""
    out_h, out_w = output_size(spec)
    channels = spec.channels
    height, width, new_h, new_w, top, left = _sizes(g, frame, spec)
    index_w, weights_w, span_w = _taps(g, width, new_w, left, out_w, spec.interpolation, "w")
    index_h, weights_h, span_h = _taps(g, height, new_h, top, out_h, spec.interpolation, "h")
    starts, ends = g.const("i0", np.array([0])), g.const("i1", np.array([1]))
    origin_w, end_w = (g.op("Slice", [span_w, a, b], f"span_w_{n}") for a, b, n in ((starts, ends, 0), (ends, g.const("i2", np.array([2])), 1)))
    origin_h, end_h = (g.op("Slice", [span_h, a, b], f"span_h_{n}") for a, b, n in ((starts, ends, 0), (ends, g.const("i2", np.array([2])), 1)))
    height_1 = g.op("Unsqueeze", [height, g.const("i0", np.array([0]))], "height_1")
    # horizontal: only the columns the crop reads, as rows of [H * C], transposed before the cast (a quarter of the bytes)
    used = g.op("Slice", [frame, origin_w, end_w, g.const("i2", np.array([2]))], "used_columns")
    columns = g.op("Cast", [g.op("Transpose", [used], "columns_first", perm=[0, 2, 1, 3])], "columns_f", to=1)
    columns = g.op("Reshape", [columns, g.op("Concat", [g.const("minus_one", np.array([-1])), height_1,
                                                        g.const("channels", np.array([channels]))], "columns_shape", axis=0)],
                   "columns_3d")
    columns = g.op("Reshape", [columns, g.const("columns_2d_shape", np.array([0, -1]))], "columns")
    horizontal = _pass(g, columns, index_w, weights_w, "pass_w")  # [B, per, H * C]: out_w columns of every row
    by_column = g.op("Reshape", [horizontal, g.op("Concat", [g.const("out_w", np.array([out_w])), height_1,
                                                            g.const("channels", np.array([channels]))], "by_column_shape", axis=0)],
                     "by_column")
    row_shape = g.op("Concat", [height_1, g.const("row_size", np.array([out_w * channels]))], "rows_shape", axis=0)
    rows = g.op("Reshape", [g.op("Transpose", [by_column], "rows_first", perm=[1, 0, 2]), row_shape], "rows_all")
    rows = g.op("Slice", [rows, origin_h, end_h, g.const("i0", np.array([0]))], "rows")
    vertical = _pass(g, rows, index_h, weights_h, "pass_h")  # [B, per, out_w * C]
    resized = g.op("Reshape", [vertical, g.const("out_shape", np.array([1, out_h, out_w, channels]))], "resized_nhwc")
    return resized, {"index_w": index_w, "weights_w": weights_w, "span_w": span_w, "index_h": index_h, "weights_h": weights_h,
                     "span_h": span_h}


def preprocessing_nodes(spec: ModelSpec, frame: str, output: str) -> tuple[list, list]:
    """(nodes, initializers) computing the spec's float NCHW input ``output`` from the uint8 NHWC ``frame``."""
    g = _Nodes()
    resized, _ = resize_crop_nodes(g, frame, spec)
    scale = np.float32(spec.rescale_factor) / np.asarray(spec.std, np.float32)
    shift = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    normalised = g.op("Sub", [g.op("Mul", [resized, g.const("scale", scale)], "scaled"), g.const("shift", shift)], "normalised")
    g.op("Transpose", [normalised], "to_nchw", output=output, perm=[0, 3, 1, 2])
    return g.nodes, list(g.constants.values())


def resize_crop_model(spec: ModelSpec, extra_outputs: bool = False):
    """A standalone ONNX model: float NHWC ``pixels`` [1, H, W, 3] in, the resized and cropped ``resized`` out.

    Args:
        extra_outputs: also output the taps (``index_w``, ``weights_w``, ``index_h``, ``weights_h``).
    """
    from onnx import TensorProto, helper

    g = _Nodes()
    resized, taps = resize_crop_nodes(g, "pixels", spec)
    g.op("Identity", [resized], "out", output="resized")
    out_h, out_w = output_size(spec)
    outputs = [helper.make_tensor_value_info("resized", TensorProto.FLOAT, [1, out_h, out_w, spec.channels])]
    for name, value in (taps.items() if extra_outputs else ()):
        g.op("Identity", [value], f"{name}_out", output=name)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT if name.startswith("weights") else TensorProto.INT64, None))
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, "height", "width", spec.channels])
    graph = helper.make_graph(g.nodes, "vitship_frame_resize", [pixels], outputs, list(g.constants.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9, producer_name="vitship")


def fixed_taps(spec: ModelSpec, height: int, width: int) -> dict[str, np.ndarray]:
    """The taps for one frame size, computed by these nodes in onnxruntime (for programs with a fixed frame size)."""
    import onnxruntime as ort

    session = ort.InferenceSession(resize_crop_model(spec, extra_outputs=True).SerializeToString(), providers=["CPUExecutionProvider"])
    names = ["index_w", "weights_w", "span_w", "index_h", "weights_h", "span_h"]
    values = session.run(names, {"pixels": np.zeros((1, height, width, spec.channels), np.float32)})
    return dict(zip(names, values))
