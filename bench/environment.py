"""The environment every report carries: CPU model and flags, cores, RAM, OS, GPU and package versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from vitship.models.versions import package_versions

PACKAGES = ("vitship", "torch", "torchvision", "timm", "numpy", "onnx", "onnxruntime", "onnxslim", "openvino",
            "nncf", "coremltools", "transformers", "safetensors", "huggingface_hub",
            "executorch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                         "amx_tile", "amx_int8", "amx_bf16", "avx512_fp16", "f16c")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    elif platform.system() == "Darwin":
        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5).stdout.strip() or model
        except (OSError, subprocess.SubprocessError):
            pass
    physical = _physical_cores()
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "flags": {flag: flag in flags for flag in CPU_FLAGS_OF_INTEREST} if flags else {},
    }


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count()
    except ImportError:
        return os.cpu_count()


def memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def gpu_info() -> list[dict]:
    """NVIDIA GPUs via nvidia-smi (name, driver, memory); empty when there are none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines() if out.returncode == 0 else []:
        name, driver, memory = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


def environment() -> dict:
    """A JSON-ready description of this machine; two reports compare rows only within one environment."""
    cpu = cpu_info()
    gpus = gpu_info()
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "memory_gib": memory_gib(),
        "gpus": gpus,
        "packages": package_versions(*PACKAGES),
        "key": environment_key(cpu, gpus),
    }


def environment_key(cpu: dict, gpus: list[dict]) -> str:
    """A short identity for 'the same kind of machine': CPU model, core count and GPU names."""
    gpu = "+".join(g["name"] for g in gpus) or "no-gpu"
    return f"{cpu.get('model')}|{cpu.get('logical_cores')}c|{gpu}"
