"""Give every profiled op its part, by torch module path where the runtime keeps it, else by op kind and position.

The rules, in order (each documented in docs/DESIGN.md, "Profile"):

1. An op whose name carries a torch module path (OpenVINO, torch) counts under that module's part
   (parts.ModulePlan); inside a container (an attention block, an MLP, a Block) its kind decides.
2. A linear op without a module is matched to the model's nn.Linear calls by position: the n-th linear op
   is the n-th Linear the forward pass calls (an onnxruntime Attention kernel takes the qkv Linears of its
   block). The counts must agree; if they do not, every linear op is ``unattributed``.
3. Kinds that name their part: a convolution is the patch embedding, a LayerNorm kernel is LayerNorm, a
   softmax is attention's softmax, a fused attention kernel is attention. A matmul between activations is
   q·k when a softmax follows it and ·v when a softmax precedes it.
4. A quantize / convert op counts under the matmul it feeds (the next op that is not a layout op).
5. Every other op lies between two placed ops: between attention's matmuls and softmax it is attention's
   other ops; before a Linear whose input is a LayerNorm's output (ModulePlan.after_norm), the reductions
   and elementwise ops from the first reduction on are that LayerNorm decomposed (LiteRT, XNNPACK); the rest
   is ``rest``. Where a neighbour could not be placed, the op is ``unattributed``.
"""

from __future__ import annotations

from vitship.bench.profile import parts
from vitship.bench.profile.ops import Kind, OpTime
from vitship.bench.profile.parts import ModulePlan

_BY_KIND = {Kind.CONV: parts.PATCH, Kind.NORM: parts.LAYERNORM, Kind.SOFTMAX: parts.SOFTMAX,
            Kind.ATTENTION: parts.ATTENTION, Kind.ATTENTION_QKV: parts.QKV_ATTENTION}
_GEMM_KINDS = (Kind.LINEAR, Kind.CONV, Kind.MATMUL, Kind.ATTENTION, Kind.ATTENTION_QKV)
_CORE = {parts.QK, parts.SOFTMAX, parts.AV, parts.ATTENTION_OTHER}


def attribute(ops: list[OpTime], plan: ModulePlan) -> list[str]:
    """Set ``op.part`` on every op (in place); returns notes on what could not be placed and why."""
    notes: list[str] = []
    modules: dict[int, str] = {}  # op index -> the torch module a linear op was matched to
    for op in ops:
        if not op.part and op.module:  # a part set by the profiler (a delegate call it cannot see into) stays
            op.part = _by_module(op, plan)
    notes += _align_linears(ops, plan, modules)
    for op in ops:
        if not op.part and op.kind in _BY_KIND:
            op.part = _BY_KIND[op.kind]
    _matmuls(ops)
    _quantize(ops)
    _between(ops, plan, modules)
    return notes


def _by_module(op: OpTime, plan: ModulePlan) -> str:
    part, container = plan.module_part(op.module)
    if part is None:  # a module the model does not have: decide as if the runtime gave none
        return ""
    if part:
        return part
    if "Attention" in container and op.kind in _BY_KIND:
        return _BY_KIND[op.kind]
    return "" if op.kind in (Kind.MATMUL, Kind.QUANTIZE) or "Attention" in container else parts.REST


def _align_linears(ops: list[OpTime], plan: ModulePlan, modules: dict[int, str]) -> list[str]:
    """Rule 2: the n-th linear op without a module path is the n-th nn.Linear call the runtime did not name."""
    todo = [i for i, op in enumerate(ops) if not op.part and op.kind in (Kind.LINEAR, Kind.ATTENTION_QKV)]
    if not todo:
        return []
    named = {op.module for op in ops if op.module and op.kind == Kind.LINEAR}
    linears, at = [c for c in plan.linears() if c.module not in named], 0
    for i in todo:
        if ops[i].kind == Kind.ATTENTION_QKV:  # takes its block's q, k, v projections
            while at < len(linears) and linears[at].part == parts.QKV:
                at += 1
            continue
        if at >= len(linears):
            break
        ops[i].part, modules[i] = linears[at].part, linears[at].module
        at += 1
    count = sum(1 for i in todo if ops[i].kind == Kind.LINEAR)
    if at == len(linears) and len(modules) == count:
        return []
    for i in todo:
        if ops[i].kind == Kind.LINEAR:
            ops[i].part = parts.UNATTRIBUTED
            modules.pop(i, None)
    return [(f"{count} linear ops against {len(linears)} nn.Linear calls in the PyTorch model (not counting those the "
             "runtime names): they cannot be matched one to one, so they are unattributed")]


def _matmuls(ops: list[OpTime]) -> None:
    """Rule 3 for activation x activation matmuls: q·k before a softmax, ·v after one."""
    core = [i for i, op in enumerate(ops) if op.kind in (Kind.MATMUL, Kind.SOFTMAX) and op.part in ("", parts.SOFTMAX)]
    for n, i in enumerate(core):
        if ops[i].kind != Kind.MATMUL or ops[i].part:
            continue
        after = ops[core[n + 1]].kind if n + 1 < len(core) else None
        before = ops[core[n - 1]].kind if n > 0 else None
        ops[i].part = parts.QK if after == Kind.SOFTMAX else parts.AV if before == Kind.SOFTMAX else parts.UNATTRIBUTED


def _quantize(ops: list[OpTime]) -> None:
    """Rule 4: a quantize op counts under the matmul it feeds."""
    for i, op in enumerate(ops):
        if op.part or op.kind != Kind.QUANTIZE:
            continue
        following = next((o for o in ops[i + 1:] if o.kind != Kind.LAYOUT), None)
        if following is not None and following.kind in _GEMM_KINDS and following.part:
            op.part = following.part


def _between(ops: list[OpTime], plan: ModulePlan, modules: dict[int, str]) -> None:
    """Rule 5: ops still without a part take it from the placed ops around them."""
    after_norm = plan.after_norm()
    i = 0
    while i < len(ops):
        if ops[i].part:
            i += 1
            continue
        end = next((j for j in range(i, len(ops)) if ops[j].part), len(ops))
        before = ops[i - 1] if i > 0 else None
        after = ops[end] if end < len(ops) else None
        _fill(ops[i:end], before, after, _norm_follows(after, end, ops, modules, after_norm))
        i = end


def _norm_follows(after: OpTime | None, index: int, ops: list[OpTime], modules: dict[int, str], after_norm: set) -> bool:
    """Whether the next placed op is a Linear that takes a LayerNorm's output."""
    if after is None or after.kind != Kind.LINEAR:
        return False
    return (after.module or modules.get(index, "")) in after_norm


def _fill(run: list[OpTime], before: OpTime | None, after: OpTime | None, norm_follows: bool) -> None:
    unplaced = (parts.UNATTRIBUTED,)
    if (before is not None and before.part in unplaced) or (after is not None and after.part in unplaced):
        for op in run:
            op.part = parts.UNATTRIBUTED
        return
    if before is not None and after is not None and before.part in _CORE and after.part in _CORE:
        for op in run:
            op.part = parts.ATTENTION_OTHER
        return
    in_norm = False
    for op in run:
        in_norm = in_norm or (norm_follows and op.kind == Kind.REDUCE)
        op.part = parts.LAYERNORM if in_norm and op.kind in (Kind.REDUCE, Kind.ELEMENTWISE) else parts.REST
