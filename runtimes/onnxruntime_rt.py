"""The onnxruntime runtime: one target per execution provider; a provider that falls back to CPU is an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import LOGITS_NAME, MissingDependencyError
from vitship.runtimes.base import RuntimeFailure, RuntimeUnavailable, SessionInfo, TargetStatus

# target device -> (execution provider, what it needs when the build lacks it)
PROVIDERS: dict[str, tuple[str, str]] = {
    "cpu": ("CPUExecutionProvider", "every build has it"),
    "cuda": ("CUDAExecutionProvider", "an NVIDIA GPU and: pip install onnxruntime-gpu"),
    "tensorrt": ("TensorrtExecutionProvider", "an NVIDIA GPU with TensorRT and: pip install onnxruntime-gpu"),
    "openvino": ("OpenVINOExecutionProvider", "pip install onnxruntime-openvino (Intel CPU/GPU/NPU)"),
    "coreml": ("CoreMLExecutionProvider", "macOS and the standard onnxruntime wheel for macOS"),
    "dml": ("DmlExecutionProvider", "Windows and: pip install onnxruntime-directml"),
    "rocm": ("ROCMExecutionProvider", "an AMD GPU and an onnxruntime build with ROCm"),
    "migraphx": ("MIGraphXExecutionProvider", "an AMD GPU and an onnxruntime build with MIGraphX"),
    "qnn": ("QNNExecutionProvider", "a Qualcomm NPU and: pip install onnxruntime-qnn"),
    "xnnpack": ("XnnpackExecutionProvider", "an onnxruntime build with XNNPACK"),
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependencyError("onnxruntime", "the onnxruntime targets") from err
    return onnxruntime


def targets() -> list[TargetStatus]:
    try:
        ort = _ort()
    except MissingDependencyError as err:
        return [TargetStatus(f"onnxruntime:{device}", False, str(err)) for device in PROVIDERS]
    offered = ort.get_available_providers()
    statuses = []
    for device, (provider, needs) in PROVIDERS.items():
        reason = "" if provider in offered else (
            f"no {provider} in this onnxruntime {ort.__version__} build; needs {needs}")
        statuses.append(TargetStatus(f"onnxruntime:{device}", provider in offered, reason))
    return statuses


class OrtSession:
    """An InferenceSession pinned to one execution provider, reporting what it actually runs on."""

    def __init__(self, session, provider: str, device: str, precision: str, threads: int, level: str):
        self._session = session
        self._input = session.get_inputs()[0].name
        self._dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32  # frames: uint8
        self._outputs = [o.name for o in session.get_outputs()]
        used = session.get_providers()
        self.info = SessionInfo(target=f"onnxruntime:{device}", provider=used[0], device=device, precision=precision,
                                threads=threads, extra={"providers": used, "optimization_level": level})

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=self._dtype)})
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(self._outputs, values)}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self._session = None


def _session_options(ort, threads: int, level: str):
    if level not in OPTIMIZATION_LEVELS:
        raise RuntimeUnavailable(f"unknown onnxruntime optimization level {level!r}; valid: {', '.join(OPTIMIZATION_LEVELS)}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    opts.log_severity_level = 3  # fallbacks are detected from get_providers(), not from log lines
    return opts


def open(artifact: Artifact, model_dir: Path, device: str, options) -> OrtSession:  # noqa: A001 - adapter API
    ort = _ort()
    if device not in PROVIDERS:
        raise RuntimeUnavailable(f"unknown onnxruntime device {device!r}; valid: {', '.join(PROVIDERS)}")
    provider = PROVIDERS[device][0]
    path = model_dir / artifact.path
    if not path.is_file():
        raise RuntimeUnavailable(f"{artifact.id}: {path} does not exist; re-export it (vitship export)")
    threads = options.resolved_threads()
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), sess_options=_session_options(ort, threads, options.ort_optimization),
                                   providers=providers)
    used = session.get_providers()
    if provider not in used:
        raise RuntimeFailure(f"onnxruntime:{device}: {provider} was requested but the session runs on {', '.join(used)} "
                             "(it silently fell back); the provider failed to load on this machine")
    names = {o.name for o in session.get_outputs()}
    if LOGITS_NAME not in names:
        raise RuntimeFailure(f"{artifact.id}: no {LOGITS_NAME!r} output (outputs: {sorted(names)}); re-export it")
    return OrtSession(session, provider, device, artifact.precision, threads, options.ort_optimization)
