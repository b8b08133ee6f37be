"""torch.profiler on eager PyTorch, each op placed under the module that called it.

Forward pre-hooks and hooks open and close a ``record_function`` range named after each module (diagnose's
names: no ``vit.`` prefix), so every aten op the profiler records sits inside the ranges of the modules that
called it. An op is one top-level aten call inside a module range (its children's time included); the
innermost range names its module. A range's own time beyond its ops is Python and dispatch: outside the kernels.
"""

from __future__ import annotations

import time

from vitship.bench.profile.ops import Kind, OpTime, RawProfile

RANGE = "vitship.module::"
_KINDS = {"aten::linear": Kind.LINEAR, "aten::addmm": Kind.LINEAR, "aten::mm": Kind.LINEAR, "aten::matmul": Kind.MATMUL,
          "aten::bmm": Kind.MATMUL, "aten::conv2d": Kind.CONV, "aten::convolution": Kind.CONV,
          "aten::_convolution": Kind.CONV, "aten::layer_norm": Kind.NORM, "aten::native_layer_norm": Kind.NORM,
          "aten::softmax": Kind.SOFTMAX, "aten::_softmax": Kind.SOFTMAX, "aten::scaled_dot_product_attention": Kind.ATTENTION,
          "aten::_scaled_dot_product_flash_attention_for_cpu": Kind.ATTENTION}
_LAYOUT = ("aten::view", "aten::reshape", "aten::permute", "aten::transpose", "aten::flatten", "aten::unbind",
           "aten::select", "aten::slice", "aten::cat", "aten::expand", "aten::contiguous", "aten::clone", "aten::copy_",
           "aten::t", "aten::unsqueeze", "aten::squeeze", "aten::as_strided", "aten::empty")


def _hooks(model):
    """Forward pre-hooks and hooks that wrap each named module's call in a ``record_function`` range."""
    from torch.autograd.profiler import record_function

    open_ranges: list = []
    handles = []

    def enter(name: str):
        def hook(module, inputs):
            scope = record_function(RANGE + name)
            scope.__enter__()
            open_ranges.append(scope)
        return hook

    def leave(module, inputs, output):
        open_ranges.pop().__exit__(None, None, None)

    for name, module in model.named_modules():
        if name and name != "vit":
            handles.append(module.register_forward_pre_hook(enter(name.removeprefix("vit."))))
            handles.append(module.register_forward_hook(leave))
    return handles


def op_kind(name: str) -> str:
    if name in _KINDS:
        return _KINDS[name]
    return Kind.LAYOUT if name in _LAYOUT else Kind.ELEMENTWISE


def parse(events, calls: int) -> list[OpTime]:
    """Top-level aten calls inside module ranges: each of the ``calls`` forward passes runs the same sequence, so
    op j is the j-th such call of every pass (mean ms), named by the innermost module range."""
    inside = sorted((e for e in events if not e.name.startswith(RANGE) and e.cpu_parent is not None
                     and e.cpu_parent.name.startswith(RANGE)), key=lambda e: e.time_range.start)
    if not inside or len(inside) % calls:
        raise ValueError(f"{len(inside)} profiled ops in {calls} calls: the passes did not run the same ops")
    per_call = len(inside) // calls
    ops = []
    for j, event in enumerate(inside[:per_call]):
        module = event.cpu_parent.name.removeprefix(RANGE)
        ms = sum(inside[c * per_call + j].cpu_time_total for c in range(calls)) / 1e3 / calls
        ops.append(OpTime(f"{module}/{event.name}", event.name, op_kind(event.name), ms, module=module))
    return ops


def profile(model, batch, threads: int, calls: int, warmup: int) -> RawProfile:
    """Profile eager fp32 ``model`` (a DetectorModel) on the CPU for ``calls`` calls after ``warmup``."""
    import torch
    from torch.profiler import ProfilerActivity, schedule
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    pixels = torch.from_numpy(batch)
    model = model.eval()
    handles = _hooks(model)
    walls, traces = [], []
    try:  # the profiler's own warm-up steps run the hooks too, so the first timed call is not the first one profiled
        with torch.inference_mode(), torch_profile(activities=[ProfilerActivity.CPU],
                                                   schedule=schedule(wait=0, warmup=max(warmup, 1), active=calls),
                                                   on_trace_ready=lambda done: traces.append(done.events())) as recorded:
            for step in range(max(warmup, 1) + calls):
                start = time.perf_counter_ns()
                model(pixels)
                if step >= max(warmup, 1):
                    walls.append((time.perf_counter_ns() - start) / 1e6)
                recorded.step()
    finally:
        for handle in handles:
            handle.remove()
    ops = parse(traces[-1], calls)
    return RawProfile(ops, sum(walls) / len(walls), calls, f"torch.profiler (torch {torch.__version__.split('+')[0]})",
                      "one aten call made by a module (its nested calls included)", precision="fp32",
                      notes=["module forward hooks add a little Python time per module, counted outside the kernels"])
