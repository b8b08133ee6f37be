"""Where Core ML places each op of an ML Program: MLComputePlan (macOS 14.4+ / iOS 17.4+), summarised for SessionInfo.

Written against coremltools' documented API (coremltools.models.compute_plan): load the plan of the
compiled model for one compute-unit setting, walk the main function's operations, and ask each one's
``preferred_compute_device``. Only a Mac can answer; elsewhere the plan is unavailable and says why.
"""

from __future__ import annotations

import platform
import sys
from collections import Counter
from dataclasses import dataclass, field

from vitship.models.status import Status

DEVICE_NAMES = {"MLNeuralEngineComputeDevice": "neural_engine", "MLGPUComputeDevice": "gpu", "MLCPUComputeDevice": "cpu"}
MIN_MACOS = (14, 4)


def plan_unavailable_reason() -> str | None:
    """Why MLComputePlan cannot be read on this machine, or None where it can."""
    if sys.platform != "darwin":
        return "MLComputePlan needs macOS 14.4+"
    release = tuple(int(part) for part in (platform.mac_ver()[0] or "0").split(".")[:2] if part.isdigit())
    if release < MIN_MACOS:
        return f"MLComputePlan needs macOS 14.4+ (this is macOS {platform.mac_ver()[0]})"
    return None


@dataclass
class ComputePlan:
    """Where Core ML places the program's ops: ``ok`` with the counts, or ``unavailable`` with the reason."""

    status: Status = Status.OK
    reason: str = ""
    ops_by_device: dict[str, int] = field(default_factory=dict)
    cost_by_device: dict[str, float] = field(default_factory=dict)  # MLComputePlan's estimated cost, summed per device
    off_neural_engine: dict[str, int] = field(default_factory=dict)  # op type -> count placed on the GPU or CPU

    @classmethod
    def unavailable(cls, reason: str) -> ComputePlan:
        return cls(Status.UNAVAILABLE, reason)


def summarise(plan) -> ComputePlan:
    """Op counts and estimated cost per preferred device, and the op types placed off the Neural Engine."""
    program = plan.model_structure.program
    if program is None:
        return ComputePlan.unavailable("not an ML Program")
    counts: Counter[str] = Counter()
    cost: Counter[str] = Counter()
    off_engine: Counter[str] = Counter()
    for operation in program.functions["main"].block.operations:
        if operation.operator_name == "const":
            continue
        usage = plan.get_compute_device_usage_for_mlprogram_operation(operation)
        device = DEVICE_NAMES.get(type(usage.preferred_compute_device).__name__, "unknown") if usage else "unknown"
        counts[device] += 1
        estimate = plan.get_estimated_cost_for_mlprogram_operation(operation)
        cost[device] += estimate.weight if estimate else 0.0
        if device != "neural_engine":
            off_engine[operation.operator_name] += 1
    return ComputePlan(ops_by_device=dict(counts), cost_by_device={k: round(v, 4) for k, v in cost.items()},
                       off_neural_engine=dict(sorted(off_engine.items())))


def compute_plan(mlmodel, compute_units) -> ComputePlan:
    """The placement summary of a loaded ``MLModel`` under ``compute_units`` (a ct.ComputeUnit)."""
    reason = plan_unavailable_reason()
    if reason:
        return ComputePlan.unavailable(reason)
    from coremltools.models.compute_plan import MLComputePlan

    try:
        plan = MLComputePlan.load_from_path(mlmodel.get_compiled_model_path(), compute_units=compute_units)
        return summarise(plan)
    except Exception as err:  # the proxy raises assorted types on older OS builds; placement is a note, not the row
        return ComputePlan.unavailable(f"{type(err).__name__}: {err}")
