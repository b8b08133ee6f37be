"""The Session protocol every runtime adapter implements, and target availability."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vitship.models import VitshipError

# What a target is, wherever its rows appear (parity, bench, report): a numpy executor is not an Apple device.
REFERENCE_LABEL = "reference executor, not the Apple runtime"
TARGET_LABELS = {"coreml:reference": REFERENCE_LABEL}


def target_display(target: str) -> str:
    """The target as tables and recommendation lines show it, with its label where it has one."""
    return f"{target} ({TARGET_LABELS[target]})" if target in TARGET_LABELS else target


class RuntimeUnavailable(VitshipError):
    """A target cannot run here (package missing, no such device, needs macOS, ...)."""


class RuntimeFailure(VitshipError):
    """A runtime did not do what was asked, e.g. an execution provider silently fell back to CPU."""


@dataclass(frozen=True)
class TargetStatus:
    """A target (`<runtime>:<device>`) and whether it can run here; if not, why."""

    target: str
    available: bool
    reason: str = ""

    @property
    def runtime(self) -> str:
        return self.target.split(":", 1)[0]

    @property
    def device(self) -> str:
        return self.target.split(":", 1)[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class SessionInfo:
    """What a session actually ran with (not what was asked for)."""

    target: str
    provider: str = ""
    device: str = ""
    precision: str = ""
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SessionWrapper:
    """A session handed out around a runtime's own one (batch splitting, frames): anything it does not define,
    ``info`` included, is the wrapped session's."""

    def __init__(self, session):
        self.session = session

    def __getattr__(self, name: str):
        if name == "session":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.session, name)

    def close(self) -> None:
        self.session.close()


class Session(Protocol):
    info: SessionInfo

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NCHW batch."""

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name ('logits', 'features')."""

    def close(self) -> None: ...
