"""The frame preprocessing as ONNX nodes: one definition that onnx-image, openvino-image and the fixed-size programs use.

Pillow resizes in two separable passes (horizontal, then vertical), each a weighted sum of the source pixels within
the filter's support around each output pixel's center, rounded to 8 bits. These nodes compute Pillow's own taps
(``precompute_coeffs`` in Pillow's Resample.c: center ``(j + 0.5) * scale``, support ``filter_support * max(scale, 1)``,
weights normalised per output pixel, then fixed point) for the output pixels the center crop keeps, so the resize
and the crop are one step and nothing outside the crop is computed. The outputs are grouped in ``BLOCKS`` blocks;
each block gathers the window of source pixels its outputs read and multiplies it by its weights (one integer
MatMul), so a 1920x1080 frame costs about 0.25 GMAC and the intermediate stays about the frame's size. Every size
is computed from the frame's shape in the graph (``models.preprocess.resized_size`` and ``crop_origin``
arithmetic), so any frame size runs.

Everything up to the 8-bit result is integer: the centers and bounds exactly (over the denominator 2 * n_out), the
filter in Q14 and the weights in Q15 (Pillow's are 22-bit; 15 bits keep every partial sum of the MatMul below
2 ** 24, exact where a runtime computes it in float32), every product below 2 ** 31 (OpenVINO's CPU plugin runs
int64 as int32). OpenVINO computes float ops in bf16 by default on AVX512-BF16 and AMX CPUs, which put float
coordinates pixels off; integers it leaves alone. Standard operators only (opset 18, IR 9). Against Pillow on the
bundled photos and random frames from 1x10 to 4032x3024 (``python -m vitship.bench.frames_distance``): at most 2
levels apart, 0.66% of the values 1 level or more, identical in onnxruntime and in OpenVINO at f32 and bf16.
"""

from __future__ import annotations

import numpy as np

from vitship.models import ModelSpec

PREFIX = "frame_preprocess/"  # every node and tensor name here, so nothing collides with the model's graph
OPSET = 18
BLOCKS = 8  # output blocks per pass (fewer when the crop size is not a multiple)
ONE = 1 << 14  # fixed point of the distances and the filter (Q14): every product stays below 2 ** 31
WEIGHT_ONE = 1 << 15  # fixed point of the weights: 255 * sum(|weights|) stays below 2 ** 24 (exact in a float32 MatMul)


class _Nodes:
    """Collects nodes (named ``PREFIX<op>_<n>`` unless named) and constants (``PREFIX<name>``, one per name)."""

    def __init__(self):
        self.nodes, self.constants, self._count = [], {}, 0

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.constants[PREFIX + name] = numpy_helper.from_array(np.asarray(value), PREFIX + name)
        return PREFIX + name

    def i64(self, *values: int) -> str:
        """A 1-D int64 constant; ``i64(n)`` with ``scalar`` below for a 0-D one."""
        return self.const("i" + "_".join(map(str, values)).replace("-", "m"), np.array(values, np.int64))

    def scalar(self, value: int) -> str:
        return self.const(f"s{value}", np.int64(value))

    def op(self, op: str, *inputs: str, output: str | None = None, **attrs) -> str:
        from onnx import helper

        self._count += 1
        name = f"{PREFIX}{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, list(inputs), [output or name], name=name, **attrs))
        return output or name

    def add(self, a: str, b: str) -> str:
        return self.op("Add", a, b)

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", a, b)

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", a, b)

    def div(self, a: str, b: str) -> str:
        return self.op("Div", a, b)


def _filter(g: _Nodes, x: str, interpolation: str) -> str:
    """Pillow's bicubic (a = -0.5) or bilinear (triangle) filter of ``x`` (Q14 fixed point, 0 <= x < 2 ** 15), in Q14.

    Every intermediate stays below 2 ** 31: OpenVINO's CPU plugin runs int64 as int32.
    """
    one = g.scalar(ONE)
    if interpolation == "bilinear":
        return g.op("Where", g.op("Less", x, one), g.sub(one, x), g.scalar(0))
    half = g.scalar(ONE // 2)
    x2 = g.div(g.add(g.mul(x, x), half), one)  # x^2 in Q14
    x3 = g.div(g.add(g.mul(x2, x), half), one)  # x^3 in Q14
    # a = -0.5: 1.5 x^3 - 2.5 x^2 + 1 below 1; -0.5 (x^3 - 5 x^2 + 8 x - 4) below 2; else 0
    near = g.add(g.div(g.sub(g.mul(x3, g.scalar(3)), g.mul(x2, g.scalar(5))), g.scalar(2)), one)
    far = g.div(g.add(g.sub(g.mul(x2, g.scalar(5)), x3), g.sub(g.scalar(4 * ONE), g.mul(x, g.scalar(8)))), g.scalar(2))
    return g.op("Where", g.op("Less", x, one), near, g.op("Where", g.op("Less", x, g.scalar(2 * ONE)), far, g.scalar(0)))


def _taps(g: _Nodes, n_in: str, n_out: str, start: str, count: int, interpolation: str) -> tuple[str, str, str]:
    """(source indices [B, win] int64, weights [B, count / B, win] int32 in Q15, [first, last + 1] of the sources read)
    of one pass, for the output pixels start..start+count; the indices count from the first source the pass reads.

    ``n_in``, ``n_out`` (the full resized size) and ``start`` are int64 scalars in the graph. Pillow's
    ``precompute_coeffs`` (center (j + 0.5) * scale, support filter_support * max(scale, 1), taps xmin..xmax, weights
    normalised per pixel) and its fixed-point weights (Pillow's are 22-bit, these 15-bit), all in integers: the
    centers and bounds exactly, over the common denominator 2 * n_out. A runtime that runs float ops in bf16
    (OpenVINO's default on AVX512-BF16 and AMX CPUs) cannot touch them.
    """
    blocks = next(b for b in (BLOCKS, 4, 2, 1) if count % b == 0)
    per = count // blocks
    two_out = g.mul(n_out, g.scalar(2))
    reach = g.mul(g.op("Max", n_in, n_out), g.scalar(2 * (2 if interpolation == "bicubic" else 1)))  # 2 * n_out * support
    positions = g.add(g.mul(g.add(start, g.const(f"positions_{count}", np.arange(count, dtype=np.int64))), g.scalar(2)),
                      g.scalar(1))
    center2 = g.mul(positions, n_in)  # (2j + 1) * n_in = center * 2 * n_out
    low = g.op("Max", g.div(g.add(g.sub(center2, reach), n_out), two_out), g.scalar(0))  # xmin: trunc is floor here
    high = g.op("Min", g.div(g.add(g.add(center2, reach), n_out), two_out), n_in)  # xmax
    low_b, high_b, center_b = (g.op("Reshape", v, g.i64(blocks, per)) for v in (low, high, center2))  # [B, per]
    first = g.op("Slice", low_b, g.i64(0), g.i64(1), g.i64(1))  # [B, 1]: each block's window starts here
    last = g.op("Slice", high_b, g.i64(per - 1), g.i64(per), g.i64(1))
    window = g.op("ReduceMax", g.sub(last, first), keepdims=0)
    source = g.add(first, g.op("Unsqueeze", g.op("Range", g.scalar(0), window, g.scalar(1)), g.i64(0)))  # [B, win]
    row = g.op("Unsqueeze", source, g.i64(1))  # [B, 1, win]
    low_c, high_c, center_c = (g.op("Unsqueeze", v, g.i64(2)) for v in (low_b, high_b, center_b))  # [B, per, 1]
    # |i + 0.5 - center| / filter_scale = |(2i + 1) * n_out - center2| / (2 * max(n_in, n_out)), in Q14, below 2
    denominator = g.mul(g.op("Max", n_in, n_out), g.scalar(2))
    numerator = g.op("Abs", g.sub(g.mul(g.add(g.mul(row, g.scalar(2)), g.scalar(1)), n_out), center_c))  # [B, per, win]
    numerator = g.op("Min", numerator, g.mul(denominator, g.scalar(2)))  # beyond the support: x = 2, weight 0
    distance = g.op("Min", g.div(g.add(g.mul(numerator, g.scalar(ONE)), g.div(denominator, g.scalar(2))), denominator),
                    g.scalar(2 * ONE - 1))
    inside = g.op("And", g.op("GreaterOrEqual", row, low_c), g.op("Less", row, high_c))
    raw = g.op("Where", inside, _filter(g, distance, interpolation), g.scalar(0))
    total = g.op("ReduceSum", raw, g.i64(2), keepdims=1)
    magnitude = g.div(g.add(g.mul(g.op("Abs", raw), g.scalar(WEIGHT_ONE)), g.div(total, g.scalar(2))), total)  # half away
    weights = g.op("Cast", g.mul(g.op("Sign", raw), magnitude), to=6)  # int32: what the MatMul takes
    clamped = g.op("Min", source, g.sub(n_in, g.scalar(1)))
    origin = g.op("ReduceMin", first, keepdims=1)  # [1, 1]: xmin of the first output pixel
    end = g.add(g.op("ReduceMax", clamped, keepdims=1), g.scalar(1))
    span = g.op("Reshape", g.op("Concat", origin, end, axis=1), g.i64(2))
    return g.sub(clamped, origin), weights, span


def _pass(g: _Nodes, rows: str, index: str, weights: str) -> str:
    """One Pillow pass over the first axis of int32 ``rows`` [n_in, rest]: int32 [B, per, rest], rounded and clipped to
    8 bits as Pillow does (``(sum + 2 ** 14) >> 15``, then 0..255).

    Each block gathers its window of rows (contiguous) and takes one integer MatMul with its weights: exact in
    onnxruntime, and in OpenVINO, which runs it in f32 (every partial sum stays below 2 ** 24).
    """
    summed = g.op("MatMul", weights, g.op("Gather", rows, index, axis=0))  # [B, per, win] @ [B, win, rest]
    shifted, one = g.add(summed, g.const("half_i32", np.int32(WEIGHT_ONE // 2))), g.const("one_i32", np.int32(WEIGHT_ONE))
    # floor(shifted / ONE) as an exact division: OpenVINO fuses these into the MatMul as float post-ops, where an
    # integer Div would round instead of floor
    rounded = g.div(g.sub(shifted, g.op("Mod", shifted, one)), one)
    return g.op("Clip", rounded, g.const("zero_i32", np.int32(0)), g.const("max_i32", np.int32(255)))


def _sizes(g: _Nodes, frame: str, spec: ModelSpec) -> tuple[str, str, str, str, str, str]:
    """(height, width, resized height, resized width, crop top, crop left) as int64 scalars."""
    shape = g.op("Shape", frame)
    height, width = g.op("Gather", shape, g.scalar(1), axis=0), g.op("Gather", shape, g.scalar(2), axis=0)
    if spec.resize_mode == "shortest_edge":
        short, target = g.op("Min", height, width), g.scalar(spec.resize_size[0])
        new_h, new_w = g.div(g.mul(height, target), short), g.div(g.mul(width, target), short)  # int64 Div: floor here
    else:
        new_h, new_w = g.scalar(spec.resize_size[0]), g.scalar(spec.resize_size[1])
    if not spec.do_center_crop:
        return height, width, new_h, new_w, g.scalar(0), g.scalar(0)
    return height, width, new_h, new_w, _crop_offset(g, new_h, spec.crop_size[0]), _crop_offset(g, new_w, spec.crop_size[1])


def _crop_offset(g: _Nodes, size: str, crop: int) -> str:
    """int(round((size - crop) / 2)) with Python's half-to-even: q = d // 2, plus 1 when d is odd and q is odd."""
    excess = g.sub(size, g.scalar(crop))
    half = g.div(excess, g.scalar(2))
    return g.add(half, g.mul(g.op("Mod", excess, g.scalar(2)), g.op("Mod", half, g.scalar(2))))


def output_size(spec: ModelSpec) -> tuple[int, int]:
    return spec.crop_size if spec.do_center_crop else spec.resize_size


def resize_crop_nodes(g: _Nodes, frame: str, spec: ModelSpec) -> tuple[str, dict[str, str]]:
    """The cropped, resized 8-bit values (float NHWC [1, h, w, C]) of a uint8 NHWC ``frame``, and the taps by name."""
    out_h, out_w = output_size(spec)
    channels = spec.channels
    height, width, new_h, new_w, top, left = _sizes(g, frame, spec)
    index_w, weights_w, span_w = _taps(g, width, new_w, left, out_w, spec.interpolation)
    index_h, weights_h, span_h = _taps(g, height, new_h, top, out_h, spec.interpolation)
    height_1 = g.op("Unsqueeze", height, g.i64(0))
    # horizontal, as Pillow starts: only the columns the crop reads, as int32 rows [W', H * C] (transposed as uint8)
    used = g.op("Slice", frame, g.op("Slice", span_w, g.i64(0), g.i64(1)), g.op("Slice", span_w, g.i64(1), g.i64(2)), g.i64(2))
    row_size = g.op("Concat", g.i64(-1), g.mul(height_1, g.i64(channels)), axis=0)
    columns = g.op("Reshape", g.op("Cast", g.op("Transpose", used, perm=[0, 2, 1, 3]), to=6), row_size)
    horizontal = _pass(g, columns, index_w, weights_w)  # [B, per, H * C]: the out_w columns of every row
    by_column = g.op("Reshape", horizontal, g.op("Concat", g.i64(out_w), height_1, g.i64(channels), axis=0))
    row_shape = g.op("Concat", height_1, g.i64(out_w * channels), axis=0)
    rows = g.op("Reshape", g.op("Transpose", by_column, perm=[1, 0, 2]), row_shape)
    rows = g.op("Slice", rows, g.op("Slice", span_h, g.i64(0), g.i64(1)), g.op("Slice", span_h, g.i64(1), g.i64(2)), g.i64(0))
    vertical = _pass(g, rows, index_h, weights_h)  # [B, per, out_w * C]
    resized = g.op("Cast", g.op("Reshape", vertical, g.i64(1, out_h, out_w, channels)), to=1)
    return resized, {"index_w": index_w, "weights_w": weights_w, "span_w": span_w, "index_h": index_h, "weights_h": weights_h,
                     "span_h": span_h}


def preprocessing_nodes(spec: ModelSpec, frame: str, output: str) -> tuple[list, list]:
    """(nodes, initializers) computing the spec's float NCHW input ``output`` from the uint8 NHWC ``frame``."""
    g = _Nodes()
    resized, _ = resize_crop_nodes(g, frame, spec)
    scale = np.float32(spec.rescale_factor) / np.asarray(spec.std, np.float32)
    shift = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    normalised = g.sub(g.mul(resized, g.const("scale", scale)), g.const("shift", shift))
    g.op("Transpose", normalised, output=output, perm=[0, 3, 1, 2])
    return g.nodes, list(g.constants.values())


def resize_crop_model(spec: ModelSpec, extra_outputs: bool = False):
    """A standalone ONNX model: uint8 NHWC ``pixels`` [1, H, W, 3] in, the resized and cropped ``resized`` (float) out.

    Args:
        extra_outputs: also output the taps (``index_w``, ``weights_w``, ``index_h``, ``weights_h``).
    """
    from onnx import TensorProto, helper

    g = _Nodes()
    resized, taps = resize_crop_nodes(g, "pixels", spec)
    g.op("Identity", resized, output="resized")
    out_h, out_w = output_size(spec)
    outputs = [helper.make_tensor_value_info("resized", TensorProto.FLOAT, [1, out_h, out_w, spec.channels])]
    for name, value in (taps.items() if extra_outputs else ()):
        g.op("Identity", value, output=name)
        kind = TensorProto.INT32 if name.startswith("weights") else TensorProto.INT64
        outputs.append(helper.make_tensor_value_info(name, kind, None))
    pixels = helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, "height", "width", spec.channels])
    graph = helper.make_graph(g.nodes, "vitship_frame_resize", [pixels], outputs, list(g.constants.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9, producer_name="vitship")


def fixed_taps(spec: ModelSpec, height: int, width: int) -> dict[str, np.ndarray]:
    """The taps for one frame size, computed by these nodes in onnxruntime (for programs with a fixed frame size)."""
    import onnxruntime as ort

    model = resize_crop_model(spec, extra_outputs=True).SerializeToString()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = ["index_w", "weights_w", "span_w", "index_h", "weights_h", "span_h"]
    values = session.run(names, {"pixels": np.zeros((1, height, width, spec.channels), np.uint8)})
    return dict(zip(names, values))
