"""The op registry (MIL op type -> numpy function) and the elementwise, reduction and cast ops.

Each function takes the op's *provided* inputs by name (numpy arrays, python strings, or lists of
arrays for tuple inputs such as concat's ``values``) and an `OpContext`; it applies the defaults
that the MIL op definitions document (coremltools.converters.mil.mil.ops.defs.iOS15..iOS18) itself,
because a loaded program only carries the inputs that were serialised. Values arrive in fp32 for
fp16 tensors (the executor rounds every fp16-typed result, see executor.py), so functions compute in
fp32 and never round on their own.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from vitship.models import MissingDependencyError, VitshipError

IOS15, IOS16, IOS17, IOS18 = 6, 7, 8, 9  # coremltools.target.iOS15.. as ints (the function's opset)


class ReferenceExecutorError(VitshipError):
    """The reference executor cannot run a program (unknown op, unsupported input, invalid value)."""


@dataclass(frozen=True)
class OpContext:
    """Where an op runs: its type, name, first output, block, and the function's opset (iOS version)."""

    op_type: str
    op_name: str
    output_name: str
    block: str
    opset: int

    def where(self) -> str:
        return f"op {self.op_type!r} named {self.op_name!r} (output %{self.output_name}) in block {self.block!r}"

    def error(self, message: str) -> ReferenceExecutorError:
        return ReferenceExecutorError(f"{self.where()}: {message}")


OpFn = Callable[[dict[str, Any], OpContext], Any]
OPS: dict[str, OpFn] = {}


def register(*op_types: str) -> Callable[[OpFn], OpFn]:
    """Register a numpy implementation under one or more MIL op types; registering twice raises."""

    def wrap(fn: OpFn) -> OpFn:
        for op_type in op_types:
            if op_type in OPS:
                raise ValueError(f"MIL op {op_type!r} is already registered")
            OPS[op_type] = fn
        return fn

    return wrap


def axis_of(value, rank: int) -> int:
    """A possibly negative axis as a non-negative one."""
    axis = int(value)
    return axis + rank if axis < 0 else axis


def as_bool(value, default: bool = False) -> bool:
    return default if value is None else bool(np.asarray(value))


# ---- elementwise binary (numpy broadcasting, as the MIL docs state) ------------------------------
_BINARY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "real_div": np.true_divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "floor_div": np.floor_divide,
    "mod": np.mod, "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
    "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}


def _binary(fn):
    def run(a: dict, ctx: OpContext):
        x, y = np.asarray(a["x"]), np.asarray(a["y"])
        if ctx.op_type == "real_div" and x.dtype.kind in "iu" and y.dtype.kind in "iu":
            # value_inference uses operator.truediv; the int32 result is the float quotient truncated
            return np.true_divide(x, y)
        if ctx.op_type == "pow" and x.dtype.kind in "iu":
            return np.power(x.astype(np.int64), y.astype(np.int64))
        return fn(x, y)

    return run


for _name, _fn in _BINARY.items():
    register(_name)(_binary(_fn))


# ---- elementwise unary ---------------------------------------------------------------------------
def erf(x: np.ndarray) -> np.ndarray:
    """The error function (scipy's; numpy has none)."""
    try:
        from scipy.special import erf as scipy_erf
    except ImportError as err:
        raise MissingDependencyError("scipy", "erf and exact gelu in the CoreML reference executor") from err
    return scipy_erf(x)


_UNARY = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "round": np.round, "sign": np.sign,
    "cos": np.cos, "sin": np.sin, "tan": np.tan, "exp": np.exp, "exp2": np.exp2, "sqrt": np.sqrt,
    "square": np.square, "tanh": np.tanh, "erf": erf, "logical_not": np.logical_not,
    "relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)), "identity": lambda x: x,
}

for _name, _fn in _UNARY.items():
    register(_name)(lambda a, ctx, _fn=_fn: _fn(np.asarray(a["x"])))


@register("rsqrt")
def rsqrt(a: dict, ctx: OpContext):
    """y = 1 / sqrt(x + epsilon), epsilon defaults to 1e-12."""
    eps = a.get("epsilon", 1e-12)
    return 1.0 / np.sqrt(np.asarray(a["x"]) + eps)


@register("inverse")
def inverse(a: dict, ctx: OpContext):
    """y = 1 / (x + epsilon), epsilon defaults to 1e-4."""
    return 1.0 / (np.asarray(a["x"]) + a.get("epsilon", 1e-4))


@register("log")
def log(a: dict, ctx: OpContext):
    """y = log(x + epsilon), epsilon defaults to 1e-45."""
    return np.log(np.asarray(a["x"]) + a.get("epsilon", 1e-45))


@register("clip")
def clip(a: dict, ctx: OpContext):
    return np.minimum(np.maximum(np.asarray(a["x"]), a["alpha"]), a["beta"])


@register("select")
def select(a: dict, ctx: OpContext):
    """a where cond is true, else b (broadcast)."""
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


@register("cast")
def cast(a: dict, ctx: OpContext):
    """The executor converts the result to the output var's dtype; nothing else changes the values."""
    return np.asarray(a["x"])


# ---- reductions ---------------------------------------------------------------------------------
_REDUCE = {
    "reduce_mean": np.mean, "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min,
    "reduce_prod": np.prod, "reduce_argmax": np.argmax, "reduce_argmin": np.argmin,
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(np.square(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims)),
    "reduce_log_sum_exp": lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
}


def _reduce(fn, op_type: str):
    def run(a: dict, ctx: OpContext):
        x = np.asarray(a["x"])
        keep = as_bool(a.get("keep_dims"), False)
        if op_type in ("reduce_argmax", "reduce_argmin"):  # one axis, default -1
            return fn(x, axis=axis_of(a.get("axis", -1), x.ndim), keepdims=keep)
        axes = a.get("axes")  # default: reduce over all axes
        axes = tuple(range(x.ndim)) if axes is None else tuple(axis_of(i, x.ndim) for i in np.ravel(axes))
        return fn(x, axis=axes, keepdims=keep)

    return run


for _name, _fn in _REDUCE.items():
    register(_name)(_reduce(_fn, _name))
