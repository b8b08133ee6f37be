"""executorch:cpu: runs ``.pte`` programs with ExecuTorch's own Python runtime (``executorch.runtime.Runtime``).

The kernels are the ones phones run: an XNNPACK-delegated program executes XNNPACK's fp32 and int8
kernels here as on an ARM phone (on x86 they are XNNPACK's x86 builds of the same operators). A program
lowered to a delegate this ExecuTorch build lacks (the Core ML delegate, which only Apple's Core ML
runtime executes) opens as `unavailable`, naming the runtime it needs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import FEATURES_NAME, LOGITS_NAME
from vitship.models.quiet import quiet_stderr
from vitship.runtimes.base import RuntimeFailure, RuntimeUnavailable, SessionInfo, TargetStatus

TARGET = "executorch:cpu"
INSTALL_HINT = "executorch is not installed; run: pip install 'executorch>=1.5.1,<1.6'"
APPLE_BACKENDS = {"CoreMLBackend": "Apple's Core ML runtime (iOS / macOS, an ExecuTorch build with the Core ML backend)",
                  "MPSBackend": "Apple's Metal Performance Shaders (macOS / iOS)"}


def _runtime():
    with quiet_stderr():  # importing it logs a torch pytree deprecation warning
        from executorch.runtime import Runtime

        return Runtime.get()


def targets() -> list[TargetStatus]:
    # Finding the runtime's compiled module is enough to list the target: importing it costs seconds (it loads
    # torch and the kernels) in every command and worker that only asks what this machine has. A broken install
    # still fails loudly, when a session opens.
    if _find("executorch.runtime") is None or _find("executorch.extension.pybindings._C") is None:
        return [TargetStatus(TARGET, False, INSTALL_HINT)]
    return [TargetStatus(TARGET, True)]


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except ImportError:  # a parent package is missing
        return None


def _threadpool(threads: int | None) -> int | None:
    """Set ExecuTorch's CPU threadpool (XNNPACK's threads) to ``threads``; returns the count in use.

    The pybindings' threadpool calls are marked experimental; where they are missing the count is unknown.
    """
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    get = getattr(portable_lib, "_threadpool_get_thread_count", None)
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    if threads and reset is not None and get is not None and get() != threads:
        reset(int(threads))
    return get() if get is not None else None


class ExecutorchSession:
    """One loaded ``forward`` method; numpy NCHW batch in, logits and features out."""

    def __init__(self, method, backend: str, max_batch: int, threads: int | None, path: Path, dtype=np.float32):
        self._method = method
        self._max_batch = max_batch
        self._dtype = dtype  # uint8 for an image-input program (a decoded frame, runtimes/frames.py)
        self.info = SessionInfo(target=TARGET, provider="executorch.runtime (ExecuTorch's own runtime)", device="cpu",
                                precision="", threads=threads,
                                extra={"delegate": backend, "batch_range": [1, max_batch], "program": str(path)})

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if not 1 <= len(batch) <= self._max_batch:
            raise RuntimeUnavailable(f"batch {len(batch)}: this program was exported for batches 1..{self._max_batch} "
                                     "(ExecuTorch plans memory for the upper bound); re-export with --executorch-max-batch")
        outputs = self._method.execute((torch.from_numpy(np.ascontiguousarray(batch, dtype=self._dtype)),))
        if len(outputs) != 2:
            raise RuntimeFailure(f"the program returned {len(outputs)} outputs; expected logits and features")
        return {LOGITS_NAME: outputs[0].numpy().astype(np.float32), FEATURES_NAME: outputs[1].numpy().astype(np.float32)}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self._method = None


def open(artifact: Artifact, model_dir: Path, device: str, options) -> ExecutorchSession:
    path = Path(model_dir) / artifact.path
    if not path.is_file():
        raise RuntimeUnavailable(f"{artifact.id}: {path} does not exist; re-export it (vitship export)")
    try:
        runtime = _runtime()
    except ImportError as err:
        raise RuntimeUnavailable(INSTALL_HINT) from err
    backend = artifact.details.delegate  # ExecutorchDetails: the backend the graph was lowered to
    if not runtime.backend_registry.is_available(backend):
        needs = APPLE_BACKENDS.get(backend, f"an ExecuTorch build with {backend}")
        raise RuntimeUnavailable(f"{artifact.id} is lowered to ExecuTorch's {backend}, which runs only in {needs}; "
                                 f"this ExecuTorch has {', '.join(runtime.backend_registry.registered_backend_names)}"
                                 + ("; its embedded Core ML program is checked on coreml:reference" if backend == "CoreMLBackend" else ""))
    with quiet_stderr():  # the threadpool's first start prints its cpuinfo probing ([cpuinfo_utils.cpp:...])
        threads = _threadpool(getattr(options, "threads", None))
        program = runtime.load_program(path)
        method = program.load_method("forward")
    if method is None:
        raise RuntimeFailure(f"{path}: the program has no forward method (methods: {sorted(program.method_names)})")
    sizes = program.metadata("forward").input_tensor_meta(0).sizes()
    frames = (artifact.input_spec or {}).get("input_type") == "frame"
    session = ExecutorchSession(method, backend, int(sizes[0]), threads, path, np.uint8 if frames else np.float32)
    session.info.precision = artifact.precision
    return session
