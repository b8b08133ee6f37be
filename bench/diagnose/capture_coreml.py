"""CoreML intermediates: every float variable of the ML Program, from the numpy reference executor (coreml:reference).

The reference executor (runtimes/coreml_reference) runs the MIL ops in program order with numpy, so every
named variable can be kept instead of released. An fp16 program (coreml-fp16, coreml-int8: fp16 compute with
int8 weights) spells some variables differently from its fp32 sibling (``canonical`` says how) and adds
casts of its own, which have no fp32 counterpart. The
figures are those of the reference executor's fp16 emulation, not of the Apple runtime (macOS only).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.runtimes.coreml_reference.executor import to_declared
from vitship.runtimes.coreml_reference.ops import OpContext

TARGET = "coreml:reference"
_CAST = re.compile(r"_cast_fp(16|32)")
_FIRST = re.compile(r"_0$")
_SKIPPED_OPS = {"cast", "shape"}


def canonical(name: str) -> str:
    """A variable's name without what differs between an fp32 and an fp16 program of the same graph.

    The fp16 pass inserts ``_cast_fp16`` (``unbind_cast_fp16_0``) and numbers the first of a kind (``linear_0``
    where the fp32 program says ``linear``), so both drop: ``linear_0_cast_fp16`` -> ``linear``.
    """
    return _FIRST.sub("", _CAST.sub("", name))


class CoremlCapture:
    """One .mlpackage through the reference executor, every float variable kept (or the ``names`` given)."""

    target = TARGET

    def __init__(self, artifact: Artifact, path: Path, threads: int | None = None, loaded=None):
        from vitship.runtimes.coreml_reference import Normalization, open_reference_session

        spec = artifact.input_spec or {}
        normalization = Normalization(tuple(spec["mean"]), tuple(spec["std"]), float(spec["rescale_factor"])) \
            if {"mean", "std", "rescale_factor"} <= set(spec) else None
        self._session = open_reference_session(Path(path), normalization=normalization)
        self._executor = self._session.executor
        self.notes: list[str] = []
        self._program_names: dict[str, str] = {}  # canonical name -> the program's own name
        outputs = set(self._executor.output_names)
        for step in self._executor.steps:
            if step.ctx.op_type in _SKIPPED_OPS and not outputs & {d.name for d in step.outputs}:
                continue
            for declared in step.outputs:
                if declared.nptype in (np.float16, np.float32):
                    self._program_names.setdefault(canonical(declared.name), declared.name)
        self.tensor_names = list(self._program_names)
        renamed = {program: name for program, name in self._session.output_names.items()}
        self._outputs = {renamed.get(name, name): canonical(name) for name in self._executor.output_names}

    def output_tensor(self, name: str) -> str:
        return self._outputs[name]

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The variables ``names`` (canonical names; default: every float variable) for one image (C, H, W)."""
        wanted = {self._program_names[name]: name for name in (self.tensor_names if names is None else names)}
        session, executor = self._session, self._executor
        batch = image[None].astype(np.float32)
        if session.image_input is not None:
            batch = session.image_input.pixels_from(batch, session.normalization, session.input_name)
        env, kept = dict(executor.constants), {}
        for name, declared in executor._input_decls.items():
            env[name] = to_declared(batch, declared, OpContext("input", name, name, executor.function_name, executor.opset))
        for step in executor.steps:
            values = executor._execute(step, env)
            env.update(values)
            kept.update({wanted[name]: np.asarray(value, np.float32) for name, value in values.items() if name in wanted})
            for name in step.release:
                del env[name]
        return kept
