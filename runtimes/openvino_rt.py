"""The OpenVINO runtime: every device Core().available_devices lists, plus AUTO; records the precision used.

OpenVINO picks an inference precision per device: on CPUs with AVX512-BF16 or AMX an fp32 IR runs in
bf16 unless INFERENCE_PRECISION_HINT says otherwise. Sessions report the precision the compiled model
actually uses (compiled_model.get_property("INFERENCE_PRECISION_HINT")) and whether it was requested
or the runtime default, so that parity judges a row by what really ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import LOGITS_NAME, MissingDependencyError
from vitship.runtimes.base import RuntimeUnavailable, SessionInfo, TargetStatus

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
# OpenVINO element type names <-> vitship precision names
_TO_VITSHIP = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
_TO_OPENVINO = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16"}
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


def _ov():
    try:
        import openvino
    except ImportError as err:
        raise MissingDependencyError("openvino", "the OpenVINO targets") from err
    return openvino


_CORE = None


def core():
    """One shared openvino.Core (creating one per session is slow and re-reads plugin configs)."""
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def targets() -> list[TargetStatus]:
    try:
        devices = list(core().available_devices)
    except MissingDependencyError as err:
        return [TargetStatus(f"openvino:{d}", False, str(err)) for d in DEVICES]
    # GPU.0/GPU.1 appear when there are several; each is its own target.
    families = {d.split(".")[0] for d in devices}
    statuses = [TargetStatus(f"openvino:{d}", True) for d in devices]
    for family in ("CPU", "GPU", "NPU"):
        if family not in families:
            statuses.append(TargetStatus(f"openvino:{family}", False,
                                         f"no OpenVINO {family} device here (Core().available_devices = {devices})"))
    statuses.append(TargetStatus("openvino:AUTO", bool(devices), "" if devices else "no OpenVINO device at all"))
    return statuses


def default_precision(device: str) -> str | None:
    """The device's default inference precision in vitship names (None where it cannot be queried, e.g. AUTO)."""
    try:
        return _TO_VITSHIP.get(core().get_property(device, "INFERENCE_PRECISION_HINT").get_type_name())
    except Exception:  # AUTO/MULTI do not expose the property; OpenVINO raises a plain RuntimeError
        return None


def _model_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if not found:
            raise RuntimeUnavailable(f"{path}: no OpenVINO IR (.xml) inside; re-export it")
        return found[0]
    if not path.is_file():
        raise RuntimeUnavailable(f"{path} does not exist; re-export it (vitship export)")
    return path


class OpenVinoSession:
    """A compiled OpenVINO model with one infer request; outputs copied out as float32."""

    def __init__(self, compiled, device: str, requested: str | None, hint: str, threads: int, shape: str):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._outputs = [o.get_any_name() for o in compiled.outputs]
        self._dtype = np.uint8 if compiled.inputs[0].get_element_type().get_type_name() == "u8" else np.float32  # frames
        precision, executed_on = _compiled_precision(compiled, device)
        self.info = SessionInfo(
            target=f"openvino:{device}", provider=f"openvino {_ov().__version__}", device=",".join(executed_on) or device,
            precision=precision, threads=threads,
            extra={"precision_source": "requested" if requested else "runtime default",
                   "requested_precision": requested, "performance_hint": hint, "execution_devices": executed_on,
                   "input_shape": shape},
        )

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        results = self._request.infer({0: np.ascontiguousarray(batch, dtype=self._dtype)})
        by_name = {}
        for port, value in results.items():
            by_name[port.get_any_name()] = np.array(value, dtype=np.float32, copy=True)
        return by_name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _compiled_precision(compiled, device: str) -> tuple[str, list[str]]:
    try:
        executed_on = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
    except Exception:  # not every plugin reports it
        executed_on = []
    try:
        name = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return _TO_VITSHIP.get(name, name), executed_on
    except Exception:  # AUTO does not expose it: ask the device it actually compiled for
        actual = default_precision(executed_on[0]) if len(executed_on) == 1 else None
        return (actual or "unknown"), executed_on


def open(artifact: Artifact, model_dir: Path, device: str, options) -> OpenVinoSession:  # noqa: A001 - adapter API
    ov_core = core()
    config = {"PERFORMANCE_HINT": _HINTS[options.openvino_hint]}
    threads = options.resolved_threads()
    requested = options.openvino_precision
    if device.split(".")[0] == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    if requested is not None:
        if requested not in _TO_OPENVINO:
            raise RuntimeUnavailable(f"unknown OpenVINO inference precision {requested!r}; valid: f32, bf16, f16")
        if device == "AUTO":
            raise RuntimeUnavailable("openvino:AUTO cannot be given an inference precision; pick a device")
        config["INFERENCE_PRECISION_HINT"] = _TO_OPENVINO[requested]
    model = ov_core.read_model(str(_model_file(model_dir / artifact.path)))
    shape = "dynamic batch (as exported)"
    if options.static_batch:
        static = [options.static_batch, *list(model.inputs[0].get_partial_shape())[1:]]
        model.reshape({model.inputs[0].get_any_name(): static})
        shape = f"static [{', '.join(str(d) for d in static)}]"  # an image IR keeps its dynamic height and width (?)
    compiled = ov_core.compile_model(model, device, config)
    return OpenVinoSession(compiled, device, requested, config["PERFORMANCE_HINT"], threads, shape)
