"""The machine a report's measurements come from, read once from its environment record (bench/environment.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vitship.models.typed import from_json


class HostKind(StrEnum):
    APPLE = "apple"
    ARM = "arm"
    X86 = "x86"
    UNKNOWN = "unknown"


@dataclass
class Cpu:
    model: str | None = None
    arch: str | None = None
    physical_cores: int | None = None


@dataclass
class Gpu:
    name: str = "?"


@dataclass
class Host:
    """What the report reads of an environment record; the record itself travels untouched in report.json."""

    hostname: str | None = None
    os: str | None = None
    python: str | None = None
    memory_gib: float | None = None
    key: str | None = None
    cpu: Cpu = field(default_factory=Cpu)
    gpus: list[Gpu] = field(default_factory=list)

    @classmethod
    def of(cls, environment: dict | None) -> "Host":
        host = from_json(cls, environment or {})
        host.cpu = host.cpu or Cpu()
        host.gpus = host.gpus or []
        return host

    @property
    def kind(self) -> HostKind:
        """Apple, ARM or x86, from the OS and the CPU architecture."""
        arch = str(self.cpu.arch or "").lower()
        if str(self.os or "").lower().startswith(("darwin", "ios")):
            return HostKind.APPLE
        if arch in ("aarch64", "arm64") or arch.startswith("arm"):
            return HostKind.ARM
        if arch in ("x86_64", "amd64", "i686", "x86"):
            return HostKind.X86
        return HostKind.UNKNOWN

    def label(self) -> str:
        """'hostname: CPU model / GPUs', a merged report's column title."""
        gpus = "+".join(g.name for g in self.gpus)
        return f"{self.hostname or '?'}: {self.cpu.model or '?'}" + (f" / {gpus}" if gpus else "")
