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
from runtimes.coreml_reference import ops_constexpr, ops_nn, ops_tensor  # noqa: F401
from runtimes.coreml_reference.ops import IOS15, OPS, OpContext, OpFn, ReferenceExecutorError


@dataclass
class Step:
    """One non-constant op: its function, input references (var names) and output vars."""

    fn: OpFn
    ctx: OpContext
    refs: dict[str, str | list[str]]
    outputs: list
    release: list[str] = field(default_factory=list)  # values no later step needs


def _types():
    from coremltools.converters.mil.mil import types

    return types


def to_declared(value, var, ctx: OpContext):
    """`value` converted to the dtype `var` declares (fp16: rounded, kept as float32); shape checked."""
    types = _types()
    if types.is_str(var.dtype):
        return str(value)
    nptype = types.nptype_from_builtin(var.dtype)
    arr = np.asarray(value)
    if nptype == np.float16:
        arr = arr.astype(np.float16).astype(np.float32)
    elif arr.dtype != nptype:
        arr = arr.astype(nptype)
    _check_shape(arr, var, ctx)
    return arr


def _check_shape(arr: np.ndarray, var, ctx: OpContext) -> None:
    from coremltools.converters.mil.mil.types.symbolic import any_variadic, is_symbolic

    shape = tuple(var.shape) if var.shape is not None else ()
    if any_variadic(shape):
        return
    static_ok = all(is_symbolic(d) or int(d) == n for d, n in zip(shape, arr.shape))
    if len(shape) != arr.ndim or not static_ok:
        raise ctx.error(f"computed shape {arr.shape} for %{var.name} but the program declares {shape}")


def _const_value(var):
    value = var.val
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


class ReferenceExecutor:
    """A compiled plan for one function: constants folded once, then `run(feeds)` per batch."""

    def __init__(self, program, function_name: str = "main"):
        if function_name not in program.functions:
            raise ReferenceExecutorError(f"the program has no function {function_name!r}; it has {list(program.functions)}")
        function = program.functions[function_name]
        self.function_name = function_name
        self.opset = int(function.opset_version) if function.opset_version is not None else IOS15
        self.inputs = dict(function.inputs)
        self.output_names = [v.name for v in function.outputs]
        self.constants: dict[str, object] = {}
        self.steps: list[Step] = []
        self.op_counts: Counter = Counter()
        self._compile(function)

    @property
    def precision(self) -> str:
        """fp16-emulated if any computed value is fp16-typed, else fp32."""
        types = _types()
        fp16 = any(v.dtype == types.fp16 for s in self.steps for v in s.outputs)
        fp16 = fp16 or any(v.dtype == types.fp16 for v in self.inputs.values())
        return "fp16-emulated" if fp16 else "fp32"

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
                    f"unsupported MIL op {op.op_type!r}: {ctx.where()}; the reference executor implements "
                    f"{len(OPS)} ops ({', '.join(sorted(OPS))}). Add it to runtimes/coreml_reference.")
            refs = {k: [v.name for v in var] if isinstance(var, (list, tuple)) else var.name for k, var in op.inputs.items()}
            step = Step(OPS[op.op_type], ctx, refs, list(op.outputs))
            names = [n for r in refs.values() for n in (r if isinstance(r, list) else [r])]
            if op.op_type.startswith("constexpr_") or all(n in self.constants for n in names):
                self.constants.update(self._execute(step, self.constants))
            else:
                self.steps.append(step)
        self._plan_releases()

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
        return {var.name: to_declared(value, var, step.ctx) for var, value in zip(step.outputs, values)}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the function by name, for input arrays by input name."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ReferenceExecutorError(f"missing inputs {sorted(missing)}; the program takes {list(self.inputs)}")
        env = dict(self.constants)
        for name, var in self.inputs.items():
            ctx = OpContext("input", name, name, self.function_name, self.opset)
            env[name] = to_declared(np.asarray(feeds[name]), var, ctx)
        for step in self.steps:
            env.update(self._execute(step, env))
            for name in step.release:
                del env[name]
        return {name: env[name] for name in self.output_names}
