"""Run one function of a MIL Program with numpy, op by op in program (topological) order.

Precision: every op computes in fp32 and the result is converted to the dtype its output var declares.
An fp16-typed output is rounded to float16 (and kept as float32 holding fp16 values), so a program
converted with compute_precision=FLOAT16 is emulated at the points where the program itself says fp16:
its casts, its fp16 intermediates and its fp16 inputs/outputs. Accumulation inside an op is fp32,
which Apple's engines may not match bit for bit; that is why the fp16 gate is a tolerance.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# importing the op modules fills the registry
from vitship.runtimes.coreml_reference import ops_constexpr, ops_nn, ops_tensor  # noqa: F401
from vitship.runtimes.coreml_reference.ops import IOS15, OPS, OpContext, OpFn, ReferenceExecutorError


@dataclass
class Step:
    """One non-constant op: its function, input references (var names) and output vars."""

    fn: OpFn
    ctx: OpContext
    refs: dict[str, str | list[str]]
    outputs: list[Declared]
    exact: bool = False  # fp16 results need no rounding (data movement of fp16 values)
    release: list[str] = field(default_factory=list)  # values no later step needs


def _types():
    from coremltools.converters.mil.mil import types

    return types


# Ops that only move or select values: an fp16 result of fp16 inputs needs no rounding.
DATA_MOVEMENT = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "slice_by_index", "slice_by_size",
                           "split", "concat", "stack", "tile", "gather", "gather_along_axis", "identity", "select"})
_FP16_MAX = 65504.0


def round_to_fp16(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """float32 values rounded to the nearest float16 (ties to even), kept as float32.

    Same result as x.astype(float16).astype(float32), ~5x faster: adding and subtracting a magic
    number 1.5 * 2**(e + 13), e = max(exponent(x), -14), rounds x in float32 arithmetic to the fp16
    grid of its binade (2**-24 for fp16 subnormals); magnitudes past 65504 become +-inf, NaN stays
    NaN. tests/test_coreml_reference_ops.py checks every fp16 value, every tie and its neighbours.
    `inplace` overwrites x (a float32 array nothing else references) instead of allocating the result.
    """
    x = np.asarray(x, dtype=np.float32)
    scale = x.view(np.uint32) >> np.uint32(23)
    scale &= np.uint32(0xFF)
    np.clip(scale, 113, 142, out=scale)  # fp16 exponents -14..15 (biased 113..142 in float32)
    scale += np.uint32(13)
    scale <<= np.uint32(23)
    scale |= np.uint32(0x400000)
    magic = scale.view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.add(x, magic, out=x if inplace else None)
        out -= magic
    if out.size and not (out.max() <= _FP16_MAX and out.min() >= -_FP16_MAX):  # overflow, inf or nan
        special = ~(np.abs(out) <= _FP16_MAX)
        out[special] = np.where(np.isnan(x[special]), np.float32(np.nan), np.copysign(np.float32(np.inf), x[special]))
    return out


def declared_pattern(var) -> tuple | None:
    """The var's declared shape with symbolic dims as None; None when its rank is variadic."""
    from coremltools.converters.mil.mil.types.symbolic import any_variadic, is_symbolic

    shape = tuple(var.shape) if var.shape is not None else ()
    return None if any_variadic(shape) else tuple(None if is_symbolic(d) else int(d) for d in shape)


def check_shape(arr: np.ndarray, pattern: tuple | None, name: str, ctx: OpContext) -> None:
    if pattern is None:
        return
    if len(pattern) != arr.ndim or any(d is not None and d != n for d, n in zip(pattern, arr.shape)):
        shape = tuple("?" if d is None else d for d in pattern)
        raise ctx.error(f"computed shape {arr.shape} for %{name} but the program declares {shape}")


@dataclass(frozen=True)
class Declared:
    """What the program declares for one var: name, numpy dtype (None for str) and shape pattern."""

    name: str
    nptype: type | None
    pattern: tuple | None

    @classmethod
    def of(cls, var) -> "Declared":
        types = _types()
        nptype = None if types.is_str(var.dtype) else types.nptype_from_builtin(var.dtype)
        return cls(var.name, nptype, declared_pattern(var))


def to_declared(value, decl: Declared, ctx: OpContext, exact: bool = False, owned: bool = False):
    """`value` converted to the declared dtype (fp16: rounded unless `exact`, kept as float32); shape checked.
    `owned`: value is a fresh array no other var references, so fp16 rounding may overwrite it."""
    if decl.nptype is None:
        return str(value)
    arr = np.asarray(value)
    if decl.nptype == np.float16:
        arr = arr.astype(np.float32, copy=False) if exact else round_to_fp16(arr, inplace=owned and arr.dtype == np.float32)
    elif arr.dtype != decl.nptype:
        arr = arr.astype(decl.nptype)
    check_shape(arr, decl.pattern, decl.name, ctx)
    return arr


def _const_value(var):
    value = var.val
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _owned(value, inputs: list) -> bool:
    """A fresh array: it owns its memory (not a view) and is none of the op's input arrays."""
    return isinstance(value, np.ndarray) and value.base is None and value.flags.writeable \
        and not any(value is v for v in inputs)


class ReferenceExecutor:
    """A compiled plan for one function: constants folded once, then `run(feeds)` per batch."""

    def __init__(self, program, function_name: str = "main"):
        if function_name not in program.functions:
            raise ReferenceExecutorError(f"the program has no function {function_name!r}; it has {list(program.functions)}")
        function = program.functions[function_name]
        self.function_name = function_name
        self.opset = int(function.opset_version) if function.opset_version is not None else IOS15
        self.inputs = dict(function.inputs)
        self._input_decls = {name: Declared.of(var) for name, var in self.inputs.items()}
        self.output_names = [v.name for v in function.outputs]
        self.constants: dict[str, object] = {}
        self.steps: list[Step] = []
        self.op_counts: Counter = Counter()
        self._compile(function)

    @property
    def precision(self) -> str:
        """fp16-emulated if any computed value is fp16-typed, else fp32."""
        declared = [d for s in self.steps for d in s.outputs] + list(self._input_decls.values())
        return "fp16-emulated" if any(d.nptype == np.float16 for d in declared) else "fp32"

    def _context(self, op) -> OpContext:
        block = getattr(op.enclosing_block, "name", "?")
        first = op.outputs[0].name if op.outputs else "?"
        return OpContext(op.op_type, op.name, first, f"{self.function_name}/{block}", self.opset)

    def _compile(self, function) -> None:
        for op in function.operations:
            self.op_counts[op.op_type] += 1
            ctx = self._context(op)
            if op.op_type == "const":
                self.constants[op.outputs[0].name] = _const_value(op.outputs[0])
                continue
            if op.blocks:
                raise ctx.error("ops with nested blocks (control flow) are not supported by the reference executor")
            if op.op_type not in OPS:
                raise ReferenceExecutorError(
                    f"unsupported MIL op {op.op_type!r}: {ctx.where()}; the reference executor implements {len(OPS)} "
                    "ops (runtimes.coreml_reference.OPS) and never skips one: add it there, with a test")
            refs = {k: [v.name for v in var] if isinstance(var, (list, tuple)) else var.name for k, var in op.inputs.items()}
            step = Step(OPS[op.op_type], ctx, refs, [Declared.of(v) for v in op.outputs], exact=self._moves_fp16(op))
            names = [n for r in refs.values() for n in (r if isinstance(r, list) else [r])]
            if op.op_type.startswith("constexpr_") or all(n in self.constants for n in names):
                self.constants.update(self._execute(step, self.constants))
            else:
                self.steps.append(step)
        self._plan_releases()

    @staticmethod
    def _moves_fp16(op) -> bool:
        if op.op_type not in DATA_MOVEMENT:
            return False
        data = op.inputs.get("x", op.inputs.get("values"))
        data = data if isinstance(data, (list, tuple)) else [data] if data is not None else []
        if op.op_type == "select":
            data = [op.inputs["a"], op.inputs["b"]]
        return bool(data) and all(v.dtype == out.dtype for v in data for out in op.outputs)

    def _plan_releases(self) -> None:
        """Drop each intermediate after its last use so a large batch does not keep every activation."""
        last_use: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for ref in step.refs.values():
                for name in ref if isinstance(ref, list) else [ref]:
                    last_use[name] = i
        keep = set(self.output_names) | set(self.constants)
        for name, i in last_use.items():
            if name not in keep:
                self.steps[i].release.append(name)

    @staticmethod
    def _execute(step: Step, env: dict) -> dict:
        args = {k: [env[n] for n in r] if isinstance(r, list) else env[r] for k, r in step.refs.items()}
        try:
            result = step.fn(args, step.ctx)
        except ReferenceExecutorError:
            raise
        except Exception as err:  # a numpy error inside an op: say which op it was
            raise step.ctx.error(f"{type(err).__name__}: {err}") from err
        values = result if isinstance(result, tuple) else (result,)
        if len(values) != len(step.outputs):
            raise step.ctx.error(f"produced {len(values)} outputs, the program declares {len(step.outputs)}")
        inputs = [v for r in args.values() for v in (r if isinstance(r, list) else [r])]
        return {decl.name: to_declared(value, decl, step.ctx, step.exact, _owned(value, inputs))
                for decl, value in zip(step.outputs, values)}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the function by name, for input arrays by input name."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ReferenceExecutorError(f"missing inputs {sorted(missing)}; the program takes {list(self.inputs)}")
        env = dict(self.constants)
        for name, decl in self._input_decls.items():
            ctx = OpContext("input", name, name, self.function_name, self.opset)
            env[name] = to_declared(np.asarray(feeds[name]), decl, ctx)
        for step in self.steps:
            env.update(self._execute(step, env))
            for name in step.release:
                del env[name]
        return {name: env[name] for name in self.output_names}
