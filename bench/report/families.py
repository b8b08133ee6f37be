"""The device families the report decides for, and the role each measured row plays in them.

docs/DESIGN.md "Device families" is the map. A row's *role* says what its numbers are worth for a family:

- ``device``: measured on hardware of that family; its latency ranks;
- ``proxy``: the family's own kernels on another host (ExecuTorch's and LiteRT's XNNPACK on this x86 machine for ARM);
  its latency ranks only while no device row exists, and the sentence says so;
- ``evidence``: parity only (coreml:reference, ExecuTorch on x86 for iOS); its timing never ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vitship.bench.report.host import HostKind
from vitship.runtimes.base import TARGET_LABELS

# Targets that execute a saved program with a reference implementation: their timing is never a device time.
REFERENCE_TARGETS = TARGET_LABELS
REFERENCE_TIME_NOTE = "reference executor time, not a device time"
MERGE_COMMAND = "`vitship report --merge reports/latest/report.json DEVICE/report.json`"


class Role(StrEnum):
    """What a row's numbers are worth for a family (the module docstring says each)."""

    DEVICE = "device"
    PROXY = "proxy"
    EVIDENCE = "evidence"


@dataclass(frozen=True)
class Family:
    """One device family: what a team ships there, and how to verify what this machine could not."""

    slug: str
    title: str
    formats: tuple[str, ...]  # artifact formats a team ships to this family
    verify: str  # where and what to run on a device of this family
    first_try: dict[str, tuple[str, str]]  # target -> (the artifact to try first there, why)


FAMILIES: tuple[Family, ...] = (
    Family("ios", "iOS / Apple", ("coreml", "executorch", "executorch-coreml"),
           "on an Apple-silicon Mac (the Core ML runtime and Neural Engine an iPhone has), with this manifest: "
           "`vitship parity --target coreml:all && vitship bench --target coreml:cpu_and_ne,coreml:all && vitship report`; "
           "on the phone itself, Xcode's Core ML performance report on the .mlpackage",
           {"coreml:cpu_and_ne": ("coreml-fp16", "the Neural Engine computes in fp16")}),
    Family("intel-cpu", "Intel CPU", ("openvino", "onnx"),
           "on the Intel machine, with this manifest: "
           "`vitship parity --target openvino:CPU --target onnxruntime:cpu && "
           "vitship bench --target openvino:CPU,onnxruntime:cpu && vitship report`",
           {"openvino:CPU": ("openvino-int8", "OpenVINO's VNNI/AMX int8 kernels")}),
    Family("intel-gpu-npu", "Intel GPU / NPU", ("openvino",),
           "on the machine with the Intel GPU or NPU, with this manifest: "
           "`vitship parity --target openvino:GPU && "
           "vitship bench --target openvino:GPU --artifact openvino-fp16,openvino-int8 && vitship report` "
           "(NPU: the same with openvino:NPU)",
           {"openvino:GPU": ("openvino-fp16", "the GPU plugin computes in f16 by default, so fp16 weights lose nothing"),
            "openvino:NPU": ("openvino-int8", "NPUs are built for int8, and bench compiles the static batch an NPU needs")}),
    Family("nvidia", "NVIDIA GPU", ("torch", "onnx"),
           "on the NVIDIA machine (pip install onnxruntime-gpu), with this manifest: "
           "`vitship parity --target onnxruntime:cuda --target torch:cuda && "
           "vitship bench --target torch:cuda,onnxruntime:cuda,onnxruntime:tensorrt --torch-variants eager,compile,cudagraphs "
           "&& vitship report`",
           {"onnxruntime:tensorrt": ("onnx-fp16", "TensorRT builds fp16 engines from it"),
            "torch:cuda": ("torch-fp16", "with --torch-variants compile,cudagraphs")}),
    Family("android", "Android / ARM CPU", ("executorch", "litert", "onnx"),
           "on an ARM64 board or phone (Linux or Termux, Python 3.11), with this manifest: "
           "`vitship parity --target executorch:cpu --target litert:cpu && "
           "vitship bench --target executorch:cpu,litert:cpu,litert:gpu,litert:npu && vitship report`",
           {"executorch:cpu": ("executorch-int8", "XNNPACK's int8 kernels are what Android phones run"),
            "litert:gpu": ("litert-fp16", "LiteRT's GPU accelerator computes in fp16, so fp16 weights lose nothing"),
            "litert:npu": ("litert-int8", "phone NPUs are built for int8; the vendor plugin compiles it ahead of time")}),
)
FAMILY_BY_SLUG = {family.slug: family for family in FAMILIES}
BASELINE_GROUP = ("torch-baseline", "PyTorch (the reference and the speed-up baseline)")
OTHER_GROUP = ("other", "Other targets")

_NVIDIA_TARGETS = ("torch:cuda", "onnxruntime:cuda", "onnxruntime:tensorrt")
_INTEL_CPU_TARGETS = ("openvino:cpu", "onnxruntime:cpu", "onnxruntime:openvino")  # AUTO: a meta-device, not a family


def is_reference(target: str) -> bool:
    return target in REFERENCE_TARGETS


def roles(target: str, host: HostKind) -> dict[str, Role]:
    """family slug -> the role of a row on ``target`` measured on a ``host`` machine."""
    name = target.lower()
    if name.startswith("coreml:"):
        return {"ios": Role.EVIDENCE if is_reference(target) else Role.DEVICE}
    if name.startswith("litert:"):  # XNNPACK on the CPU as ExecuTorch; GPU / NPU accelerators exist only on a phone
        return {"android": Role.DEVICE if host is HostKind.ARM or name != "litert:cpu" else Role.PROXY}
    if name.startswith("executorch:"):
        if host is HostKind.APPLE:
            return {"ios": Role.DEVICE, "android": Role.PROXY}
        return {"android": Role.DEVICE if host is HostKind.ARM else Role.PROXY, "ios": Role.EVIDENCE}
    if name.startswith(("openvino:gpu", "openvino:npu")):
        return {"intel-gpu-npu": Role.DEVICE}
    if name in _NVIDIA_TARGETS:
        return {"nvidia": Role.DEVICE}
    if name in _INTEL_CPU_TARGETS:
        return {"android": Role.DEVICE} if host is HostKind.ARM else {"intel-cpu": Role.DEVICE}
    return {}


def table_group(target: str, host: HostKind) -> tuple[str, str]:
    """(slug, title) of the results-table group a row belongs to: its first family, PyTorch, or other."""
    if target.lower() == "torch:cpu":
        return BASELINE_GROUP
    mine = roles(target, host)
    slug = next((s for s, role in mine.items() if role is Role.DEVICE), next(iter(mine), None))
    return (slug, FAMILY_BY_SLUG[slug].title) if slug else OTHER_GROUP


def group_order() -> list[str]:
    return [family.slug for family in FAMILIES] + [BASELINE_GROUP[0], OTHER_GROUP[0]]
