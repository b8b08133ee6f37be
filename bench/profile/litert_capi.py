"""LiteRT's C API (libLiteRt.so in the ai-edge-litert wheel) through ctypes: a compiled model with its profiler on.

ai-edge-litert 2.3's Python ``CompiledModel`` has no profiling switch: its options wrapper builds the runtime
options itself, with no ``enable_profiling``. The wheel's libLiteRt.so exports the C API that has one: the
runtime options travel as an opaque option ``runtime_options_string`` whose payload is TOML
(``enable_profiling = true``), the CPU accelerator's as ``xnnpack`` (``num_threads = N``), and
``LiteRtCompiledModelGetProfiler`` hands out the profiler whose events are ``ProfiledEventData`` records
(litert/c/litert_profiler_event.h). The declarations below follow those headers at LiteRT 2.3.0.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from vitship.runtimes.base import RuntimeUnavailable

_P = ctypes.c_void_p
_CPU = 1  # kLiteRtHwAcceleratorCpu
_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
_TENSOR_TYPE_BYTES = 1024  # room for a LiteRtRankedTensorType, which is only passed through
_DESTRUCTOR = ctypes.CFUNCTYPE(None, _P)


class _Memory(ctypes.Structure):
    _fields_ = [("total_allocated_bytes", ctypes.c_size_t), ("in_use_allocated_bytes", ctypes.c_size_t),
                ("private_footprint_bytes", ctypes.c_size_t)]


class Event(ctypes.Structure):
    """ProfiledEventData."""

    _fields_ = [("tag", ctypes.c_char_p), ("event_type", ctypes.c_int), ("start_timestamp_us", ctypes.c_uint64),
                ("elapsed_time_us", ctypes.c_uint64), ("begin_mem_usage", _Memory), ("end_mem_usage", _Memory),
                ("event_metadata1", ctypes.c_uint64), ("event_metadata2", ctypes.c_uint64), ("event_source", ctypes.c_int)]


def _c_string(text: bytes) -> tuple:
    """(payload, destructor): ``text`` in C memory (malloc) with libc's free, as the library's own payloads are."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = _P
    payload = libc.malloc(len(text) + 1)
    ctypes.memmove(payload, text + b"\0", len(text) + 1)
    return ctypes.c_void_p(payload), ctypes.cast(libc.free, _DESTRUCTOR)


def _library():
    try:
        import ai_edge_litert
    except ImportError as err:
        raise RuntimeUnavailable("ai-edge-litert is not installed; run: pip install 'ai-edge-litert>=2.3,<2.4'") from err
    path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
    if not path.is_file():
        raise RuntimeUnavailable(f"{path} is missing: this ai-edge-litert wheel ships no LiteRT C API to profile with")
    library = ctypes.CDLL(str(path))
    if not hasattr(library, "LiteRtCompiledModelGetProfiler"):
        raise RuntimeUnavailable(f"{path} exports no LiteRtCompiledModelGetProfiler: this LiteRT cannot profile ops")
    return library


class ProfiledModel:
    """One compiled model on LiteRT's CPU (XNNPACK) accelerator with profiling enabled, signature 0."""

    def __init__(self, path: Path, threads: int):
        self._lib = _library()
        self._keep: list = []  # payloads and type buffers the library points into
        self._env = self._out_handle("LiteRtCreateEnvironment", 0, None)
        self._model = self._out_handle("LiteRtCreateModelFromFile", self._env, str(path).encode())
        options = self._out_handle("LiteRtCreateOptions")
        self._call("LiteRtSetOptionsHardwareAccelerators", options, _CPU)
        for identifier, payload in ((b"runtime_options_string", b"enable_profiling = true\n"),
                                    (b"xnnpack", f"num_threads = {int(threads)}\n".encode())):
            opaque = self._out_handle("LiteRtCreateOpaqueOptions", ctypes.c_char_p(identifier), *_c_string(payload))
            self._call("LiteRtAddOpaqueOptions", options, opaque)
        self._compiled = self._out_handle("LiteRtCreateCompiledModel", self._env, self._model, options)
        self._signature = self._out_handle("LiteRtGetModelSignature", self._model, ctypes.c_size_t(0))
        self._inputs, self._outputs = self._buffers("Input"), self._buffers("Output")
        self.profiler = self._out_handle("LiteRtCompiledModelGetProfiler", self._compiled)

    def _call(self, name: str, *args) -> None:
        status = getattr(self._lib, name)(*args)
        if status != 0:
            raise RuntimeUnavailable(f"LiteRT's C API refused {name} (LiteRtStatus {status})")

    def _out_handle(self, name: str, *args):
        handle = _P()
        self._call(name, *args, ctypes.byref(handle))
        return handle

    def _buffers(self, kind: str) -> list:
        count = ctypes.c_size_t()
        self._call(f"LiteRtGetNumSignature{kind}s", self._signature, ctypes.byref(count))
        buffers = []
        for index in range(count.value):
            tensor = self._out_handle(f"LiteRtGetSignature{kind}TensorByIndex", self._signature, ctypes.c_size_t(index))
            tensor_type = ctypes.create_string_buffer(_TENSOR_TYPE_BYTES)
            self._call("LiteRtGetRankedTensorType", tensor, tensor_type)
            self._keep.append(tensor_type)
            requirements = self._out_handle(f"LiteRtGetCompiledModel{kind}BufferRequirements", self._compiled,
                                            ctypes.c_size_t(0), ctypes.c_size_t(index))
            buffers.append(self._out_handle("LiteRtCreateManagedTensorBufferFromRequirements", self._env, tensor_type,
                                            requirements))
        return buffers

    def write_input(self, values: np.ndarray) -> None:
        size = ctypes.c_size_t()
        self._call("LiteRtGetTensorBufferSize", self._inputs[0], ctypes.byref(size))
        data = np.ascontiguousarray(values)
        if data.nbytes != size.value:
            raise RuntimeUnavailable(f"the model's input takes {size.value} bytes, the batch has {data.nbytes}")
        address = _P()
        self._call("LiteRtLockTensorBuffer", self._inputs[0], ctypes.byref(address), _WRITE)
        ctypes.memmove(address, data.ctypes.data, size.value)
        self._call("LiteRtUnlockTensorBuffer", self._inputs[0])

    def run(self) -> None:
        inputs, outputs = (_P * len(self._inputs))(*self._inputs), (_P * len(self._outputs))(*self._outputs)
        self._call("LiteRtRunCompiledModel", self._compiled, ctypes.c_size_t(0), ctypes.c_size_t(len(self._inputs)),
                   inputs, ctypes.c_size_t(len(self._outputs)), outputs)

    def start(self) -> None:
        self._call("LiteRtStartProfiler", self.profiler)

    def stop(self) -> None:
        self._call("LiteRtStopProfiler", self.profiler)

    def events(self) -> list[tuple[str, int, float, int]]:
        """Every recorded event as (tag, event type, elapsed ms, event_metadata1)."""
        count = ctypes.c_int()
        self._call("LiteRtGetNumProfilerEvents", self.profiler, ctypes.byref(count))
        records = (Event * count.value)()
        self._call("LiteRtGetProfilerEvents", self.profiler, count, records)
        return [((r.tag or b"").decode(errors="replace"), r.event_type, r.elapsed_time_us / 1e3, r.event_metadata1)
                for r in records]
