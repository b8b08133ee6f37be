"""vitship.runtimes: open_session(artifact, model_dir, target, options) -> Session for every runtime vitship can measure.

`RUNTIMES` maps a runtime name (the part of a target before the colon) to a `RuntimeAdapter`. Each
adapter lives in its own module (`runtimes.torch_rt`, `runtimes.onnxruntime_rt`, ...), which imports
its backend lazily, so a missing package only affects its own targets and says what to install.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vitship.exporters.base import Artifact, verify_artifact
from vitship.models import UnknownNameError
from vitship.runtimes.base import (
    REFERENCE_LABEL,
    TARGET_LABELS,
    RuntimeFailure,
    RuntimeUnavailable,
    Session,
    SessionInfo,
    TargetStatus,
    target_display,
)
from vitship.runtimes.batching import BatchShapes, honour_batch_shapes
from vitship.runtimes.frames import FrameError, FrameSession, takes_frames

if TYPE_CHECKING:  # torch: an onnxruntime or OpenVINO session never needs it
    from vitship.models import LoadedModel

TorchVariant = Literal["eager", "compile", "cudagraphs"]
OrtOptimization = Literal["disable", "basic", "extended", "all"]
OpenvinoHint = Literal["latency", "throughput"]
OpenvinoPrecision = Literal["f32", "bf16", "f16"]  # OpenVINO's INFERENCE_PRECISION_HINT names


def physical_cores() -> int:
    """Physical CPU cores (the default thread count: hyper-threads rarely help dense inference)."""
    import os

    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class SessionOptions:
    """How to open a session; each adapter reads the fields that concern it and records what it used.

    Attributes:
        threads: intra-op threads; None means the physical cores.
        openvino_hint: OpenVINO PERFORMANCE_HINT.
        openvino_precision: OpenVINO INFERENCE_PRECISION_HINT ("f32", "bf16", "f16"); None keeps the
            device default (bf16 on AVX512-BF16/AMX CPUs). The precision actually used is recorded.
        ort_optimization: onnxruntime graph optimization level.
        torch_variant: eager, torch.compile, or CUDA graphs (torch.compile mode="reduce-overhead").
        torch_dtype: torch compute dtype; None means the artifact's precision.
        loaded: the already-loaded PyTorch model for torch sessions (otherwise it is reloaded from the
            weights source the artifact records, and its sha256 is verified).
        static_batch: OpenVINO only: reshape the dynamic-batch IR to this batch before compiling. A static
            shape is what a fixed-batch app deploys, and OpenVINO's CPU plugin runs it markedly faster
            (ViT-S int8, batch 1, on a 2-core AVX-512 machine: 57 ms static vs 87 ms dynamic). None keeps
            the batch dynamic as exported.
        split_batches: split a batch the artifact does not accept (Core ML enumerated or fixed shapes, an
            ExecuTorch range) into accepted sizes and join the outputs (runtimes.batching); False refuses it
            with RuntimeUnavailable instead, as the bench does, since it times one fixed batch per row.
    """

    threads: int | None = None
    openvino_hint: OpenvinoHint = "latency"
    openvino_precision: OpenvinoPrecision | None = None
    ort_optimization: OrtOptimization = "all"
    torch_variant: TorchVariant = "eager"
    torch_dtype: Literal["fp32", "fp16", "bf16"] | None = None
    loaded: LoadedModel | None = field(default=None, compare=False, repr=False)
    static_batch: int | None = None
    split_batches: bool = True

    def resolved_threads(self) -> int:
        return self.threads or physical_cores()

    def replace(self, **changes) -> "SessionOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "loaded"}


@dataclass(frozen=True)
class RuntimeAdapter:
    """A runtime: the artifact formats it runs, its targets, and how it opens a session.

    The module named by `module` provides `targets() -> list[TargetStatus]` and
    `open(artifact, model_dir, device, options) -> Session`; it is imported on first use. Every session
    it opens honours the artifact's accepted batch sizes (runtimes.batching), whatever the runtime.
    """

    name: str
    module: str
    formats: tuple[str, ...]

    def _impl(self):
        return importlib.import_module(self.module)

    def targets(self) -> list[TargetStatus]:
        return self._impl().targets()

    def open(self, artifact: Artifact, model_dir: Path, device: str, options: SessionOptions) -> Session:
        session = self._impl().open(artifact, Path(model_dir), device, options)
        if takes_frames(artifact.input_spec):  # one decoded frame per call: run_frames (runtimes/frames.py)
            return FrameSession(session, artifact.input_spec, artifact.id, options.split_batches)
        return honour_batch_shapes(session, artifact, options.split_batches)


RUNTIMES: dict[str, RuntimeAdapter] = {}


def register(adapter: RuntimeAdapter) -> None:
    if adapter.name in RUNTIMES:
        raise ValueError(f"runtime {adapter.name!r} is already registered")
    RUNTIMES[adapter.name] = adapter


register(RuntimeAdapter("torch", "vitship.runtimes.torch_rt", ("torch",)))
register(RuntimeAdapter("onnxruntime", "vitship.runtimes.onnxruntime_rt", ("onnx",)))
register(RuntimeAdapter("openvino", "vitship.runtimes.openvino_rt", ("openvino",)))
# coreml runs executorch-coreml too: the ML Program that .pte embeds is what its Core ML delegate executes.
register(RuntimeAdapter("coreml", "vitship.runtimes.coreml_rt", ("coreml", "executorch-coreml")))
register(RuntimeAdapter("executorch", "vitship.runtimes.executorch_rt", ("executorch", "executorch-coreml")))
register(RuntimeAdapter("litert", "vitship.runtimes.litert_rt", ("litert",)))


def get_runtime(name: str) -> RuntimeAdapter:
    if name not in RUNTIMES:
        raise UnknownNameError("runtime", name, list(RUNTIMES))
    return RUNTIMES[name]


def available_targets(runtimes: list[str] | None = None) -> list[TargetStatus]:
    """Every target of every registered runtime, each with `available` or the reason it is not."""
    statuses = []
    for name in runtimes or list(RUNTIMES):
        adapter = get_runtime(name)
        try:
            statuses.extend(adapter.targets())
        except Exception as err:  # a broken backend install must not hide the other runtimes
            statuses.append(TargetStatus(f"{name}:*", False, f"{type(err).__name__}: {err}"))
    return statuses


def target_status(target: str) -> TargetStatus:
    """The status of one target; an unknown target lists the known ones."""
    runtime, sep, device = target.partition(":")
    if not sep or not device:
        raise UnknownNameError("target", target, [s.target for s in available_targets()])
    statuses = get_runtime(runtime).targets()
    for status in statuses:
        if status.target.lower() == target.lower():
            return status
    raise UnknownNameError("target", target, [s.target for s in statuses])


def can_run(target: str, fmt: str) -> bool:
    return fmt in get_runtime(target.partition(":")[0]).formats


def open_session(artifact: Artifact, model_dir: Path, target: str, options: SessionOptions | None = None) -> Session:
    """Open `artifact` (paths relative to `model_dir`) on `target`.

    Raises:
        RuntimeUnavailable: the target cannot run here, or cannot run this artifact's format.
        RuntimeFailure: the runtime did not do what was asked (e.g. a provider fell back to CPU).
    """
    status = target_status(target)
    adapter = get_runtime(status.runtime)
    if artifact.format not in adapter.formats:
        raise RuntimeUnavailable(f"{status.target} cannot run {artifact.format} artifacts ({artifact.id}); "
                                 f"it runs: {', '.join(adapter.formats)}")
    if not status.available:
        raise RuntimeUnavailable(f"{status.target}: {status.reason}")
    if artifact.format != "torch":  # its path is a weights source; anything else must stay inside model_dir
        verify_artifact(model_dir, artifact)  # inside model_dir, and its bytes match the manifest's sha256
    return adapter.open(artifact, Path(model_dir), status.device, options or SessionOptions())


def torch_artifact(loaded: LoadedModel, precision: str = "fp32") -> Artifact:
    """A pseudo-artifact for the PyTorch model itself (`torch-fp32`, ...); its path is the weights source."""
    from vitship.runtimes.torch_rt import torch_artifact as make

    return make(loaded, precision)


__all__ = [
    "REFERENCE_LABEL", "RUNTIMES", "BatchShapes", "FrameError", "FrameSession", "TARGET_LABELS", "RuntimeAdapter",
    "RuntimeFailure", "RuntimeUnavailable", "Session", "SessionInfo", "SessionOptions",
    "TargetStatus", "available_targets", "can_run", "get_runtime", "open_session", "physical_cores", "register",
    "takes_frames", "target_display", "target_status", "torch_artifact",
]
