"""litert:cpu: runs ``.tflite`` models with ai-edge-litert's ``CompiledModel`` on its XNNPACK CPU accelerator.

XNNPACK is LiteRT's CPU path on Android phones too; here its x86 build runs the same operators, so a
litert:cpu row is a labelled x86 proxy of a phone's ARM CPU, as executorch:cpu is. ``litert:gpu`` and
``litert:npu`` need a phone: the GPU accelerator its OpenCL / OpenGL ES driver, the NPU one a vendor plugin
(Qualcomm QNN, MediaTek NeuroPilot, Google Tensor). Off an ARM Linux / Android host they are unavailable,
saying so; on one they open with that accelerator alone and refuse a model it does not fully take (never a
silent CPU fallback). That device path is written to LiteRT's API but was not run here (no phone).

The programs vitship exports take a fixed batch of 1 (``input_spec["batch_shapes"] == [1]``): callers split
a larger batch, as for the Core ML image programs.
"""

from __future__ import annotations

import atexit
import gc
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import FEATURES_NAME, LOGITS_NAME
from vitship.models.quiet import quiet_stderr, silence_exit_logs
from vitship.runtimes.base import RuntimeFailure, RuntimeUnavailable, SessionInfo, TargetStatus

TARGET = "litert:cpu"
SIGNATURE = "serving_default"
ACCELERATORS = {"cpu": "XNNPACK", "gpu": "GPU", "npu": "NPU"}
INSTALL_HINT = "ai-edge-litert is not installed; run: pip install 'ai-edge-litert>=2.3,<2.4'"
# What the device targets need, and how to bench them there (a phone runs `vitship bench` against the same manifest).
PHONE_BENCH = "on the phone (Termux, or adb shell with Python): pip install vitship ai-edge-litert; vitship bench --target {target}"
DEVICE_NEEDS = {
    "litert:gpu": "needs a phone's GPU (LiteRT's GPU accelerator over OpenCL / OpenGL ES; fp16 is its native precision); "
                  + PHONE_BENCH.format(target="litert:gpu")
                  + "; or Google's benchmark_model binary: adb shell benchmark_model --graph=model.tflite --use_gpu=true",
    "litert:npu": "needs a phone NPU and its vendor's LiteRT plugin (Qualcomm QNN, MediaTek NeuroPilot, Google Tensor), which "
                  "compiles int8 programs ahead of time; " + PHONE_BENCH.format(target="litert:npu")
                  + "; or benchmark_model --graph=model.tflite --use_npu=true",
}


def _on_arm_device() -> bool:
    """An ARM Linux / Android host (a phone under Termux, an ARM board), where a GPU or NPU accelerator may load."""
    import platform

    return platform.machine().lower() in ("aarch64", "arm64") and platform.system() != "Darwin"


def targets() -> list[TargetStatus]:
    try:
        import ai_edge_litert.compiled_model  # noqa: F401
    except ImportError:
        return [TargetStatus(TARGET, False, INSTALL_HINT)] + [TargetStatus(t, False, INSTALL_HINT) for t in DEVICE_NEEDS]
    device = _on_arm_device()
    return [TargetStatus(TARGET, True)] + [TargetStatus(target, device, "" if device else reason)
                                           for target, reason in DEVICE_NEEDS.items()]


def image_pixels(batch: np.ndarray, spec: dict) -> np.ndarray:
    """The 8-bit NHWC RGB images a normalised NCHW batch came from, as a camera pipeline hands them over."""
    mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
    pixels = np.clip(np.rint((batch * std + mean) / spec["rescale_factor"]), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


class LitertSession:
    """One compiled ``serving_default`` signature; a normalised NCHW batch of 1 in, logits and features out."""

    def __init__(self, model, input_spec: dict, threads: int, path: Path, device: str = "cpu"):
        self._model = model
        self._spec = input_spec
        self._image = input_spec.get("input_type") == "image"
        (self._input,) = model.get_signature_list()[SIGNATURE]["inputs"]
        outputs = model.get_output_tensor_details(SIGNATURE)
        if set(outputs) != {LOGITS_NAME, FEATURES_NAME}:
            raise RuntimeFailure(f"{path}: signature outputs {sorted(outputs)}; expected {LOGITS_NAME} and {FEATURES_NAME}")
        self._sizes = {name: int(np.prod(detail["shape"])) for name, detail in outputs.items()}
        self._first_run = True
        self._in = model.create_input_buffer_by_name(SIGNATURE, self._input)
        self._out = {name: model.create_output_buffer_by_name(SIGNATURE, name) for name in outputs}
        accelerator = ACCELERATORS[device]
        self.info = SessionInfo(target=f"litert:{device}", provider=f"ai-edge-litert CompiledModel ({accelerator} accelerator)",
                                device=device, threads=threads,
                                extra={"accelerator": accelerator, "batch_shapes": [1], "program": str(path),
                                                        "input": "NHWC uint8 image" if self._image else "NCHW float32"})

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) != 1:
            raise RuntimeUnavailable(f"batch {len(batch)}: this .tflite takes a fixed batch of 1 (input_spec batch_shapes "
                                     "[1]); feed one image at a time")
        if self._first_run:  # LiteRT builds its environment on first use and logs every accelerator it probes
            self._first_run = False
            with quiet_stderr():
                return self._run_one(batch)
        return self._run_one(batch)

    def _run_one(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        frame = self._spec.get("input_type") == "frame"  # a decoded frame (runtimes/frames.py): uint8 as it is
        dtype = np.uint8 if frame else np.float32
        pixels = image_pixels(batch, self._spec) if self._image else np.ascontiguousarray(batch, dtype=dtype)
        self._in.write(pixels)
        self._model.run_by_name(SIGNATURE, {self._input: self._in}, self._out)
        return {name: self._out[name].read(size, np.float32).reshape(1, -1) for name, size in self._sizes.items()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        with quiet_stderr():  # LiteRT logs each accelerator it destroys (INFO lines on fd 2)
            self._in = self._out = self._model = None
            gc.collect()


def open(artifact: Artifact, model_dir: Path, device: str, options) -> LitertSession:  # noqa: A001 - adapter API
    path = Path(model_dir) / artifact.path
    if not path.is_file():
        raise RuntimeUnavailable(f"{artifact.id}: {path} does not exist; re-export it (vitship export)")
    try:
        with quiet_stderr():
            from ai_edge_litert.compiled_model import CompiledModel
    except ImportError as err:
        raise RuntimeUnavailable(INSTALL_HINT) from err
    threads = options.resolved_threads()
    try:
        with quiet_stderr():  # absl INFO lines: environment, accelerator registry, vendor plugins it cannot load here
            model = CompiledModel.from_file(str(path), options=_model_options(device, threads))
    except RuntimeError as err:
        raise RuntimeFailure(f"{path}: LiteRT could not compile it for litert:{device} ({str(err).splitlines()[0][:300]})") from err
    if device != "cpu" and not model.is_fully_accelerated():
        raise RuntimeFailure(f"{artifact.id}: LiteRT's {device.upper()} accelerator does not take the whole model; "
                             f"some ops would fall back to the CPU, so litert:{device} would not measure the {device.upper()}")
    with quiet_stderr():
        session = LitertSession(model, artifact.input_spec or {}, threads, path, device)
    atexit.register(silence_exit_logs)  # its accelerators log their destruction when the process exits
    session.info.precision = artifact.precision
    return session


def _model_options(device: str, threads: int):
    from ai_edge_litert.cpu_options import CpuOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import Options

    accelerator = {"cpu": HardwareAccelerator.CPU, "gpu": HardwareAccelerator.GPU, "npu": HardwareAccelerator.NPU}[device]
    return Options(hardware_accelerators=accelerator, cpu_options=CpuOptions(num_threads=threads))
