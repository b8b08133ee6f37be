"""ExecuTorch intermediates: the .pte itself, run with ETDump intermediate-output capture, read by devtools' Inspector.

ExecuTorch's runtime logs every tensor of the program when it is loaded with ``enable_etdump`` and a debug
buffer: the output of each portable op (``native_layer_norm``, ``select_copy``, ...) and the inputs and
outputs of each XNNPACK delegate call. This works offline and needs no ETRecord. The granularity is the
program's own: XNNPACK fuses runs of ops into one delegate call (an MLP's fc1, GELU and fc2 with its
residual add is one call), so a layer inside a call shows up as the call's output, named by the module
that computes the same value (``blocks.0`` for an MLP call ending in the residual add). What is compared
is what the artifact computes, quantization inside the delegate included.

The runtime and the Inspector need one run per ETDump (Inspector refuses two runs on different inputs), so
each image loads the program afresh. A tensor is named by its event and its place among events alike
(``DELEGATE_CALL[(1, 17, 32)->(1, 17, 96)]#3.1``: the fourth such call, its second tensor), which pairs
the fp32 and int8 programs call by call as long as XNNPACK partitions them the same way; a call that
exists in only one of them drops out.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import FEATURES_NAME, LOGITS_NAME, MissingDependencyError

TARGET = "executorch:cpu"
_SKIPPED_EVENTS = {"OPERATOR_CALL"}  # the same tensors as the native_call_* event it wraps


def debug_buffer_bytes(spec: dict) -> int:
    """Room for every logged tensor of one image, with a 2x margin: the runtime aborts the process when it runs out.

    Per block: about 40 token-width tensors, 12 attention maps per head and 4 MLP-width ones (counted on the
    tiny ViT's ETDump: 0.37 MB used of 1.3 MB estimated; the ViT-S/16-384 gets about 3.5 GB).
    """
    tokens = (spec["image_size"] // spec["patch_size"]) ** 2 + 1
    per_block = 40 * tokens * spec["embed_dim"] + 12 * spec["num_heads"] * tokens**2 + 4 * tokens * spec["mlp_dim"]
    floats = spec["depth"] * per_block + 8 * spec["channels"] * spec["image_size"] ** 2
    return 2 * 4 * floats + (16 << 20)


class ExecutorchCapture:
    """One .pte on ExecuTorch's runtime with ETDump intermediate outputs, one image per load."""

    target = TARGET

    def __init__(self, artifact: Artifact, path: Path, threads: int | None = None, loaded=None):
        try:
            from executorch.devtools import Inspector  # noqa: F401
            from executorch.extension.pybindings import portable_lib  # noqa: F401
        except ImportError as err:
            raise MissingDependencyError("executorch", "vitship diagnose on ExecuTorch artifacts") from err
        self._path = Path(path)
        self.notes = [f"{artifact.id}: intermediates from ETDump at the program's granularity (portable ops and whole "
                      "XNNPACK delegate calls): a layer inside a fused delegate call is seen as the call's output"]
        shape = tuple(int(n) for n in artifact.input_spec["input_shape"][1:])
        self._buffer_bytes = debug_buffer_bytes(artifact.input_spec)
        tensors = self._tensors(np.zeros((1, *shape), np.float32))  # names do not depend on values
        self.tensor_names, self._shapes = list(tensors), {name: value.shape for name, value in tensors.items()}
        self._width = int(artifact.input_spec["embed_dim"])

    def output_tensor(self, name: str) -> str:
        """The program's last logged tensor is the head call's output (the logits); the class token is selected
        by the last ``select_copy`` (the features), or, in a fully delegated program (one XNNPACK call, whose
        inputs and outputs are all ETDump logs), is that call's (1, width) output before the logits."""
        if name == LOGITS_NAME:
            return self.tensor_names[-1]
        if name == FEATURES_NAME:
            selected = [n for n in self.tensor_names if n.startswith("native_call_select_copy")]
            if selected:
                return selected[-1]
            return next(n for n in reversed(self.tensor_names[:-1]) if self._shapes[n] == (1, self._width))
        raise KeyError(name)

    def run(self, image: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The logged tensors ``names`` (default: all) for one preprocessed image (C, H, W)."""
        tensors = self._tensors(image[None].astype(np.float32))
        return {name: tensors[name] for name in (self.tensor_names if names is None else names) if name in tensors}

    def _tensors(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch
        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib

        program = portable_lib._load_for_executorch(str(self._path), enable_etdump=True,
                                                    debug_buffer_size=self._buffer_bytes)
        program.forward([torch.from_numpy(batch)])
        with tempfile.TemporaryDirectory(prefix="vitship-etdump-") as work:
            etdump, buffer = Path(work) / "run.etdp", Path(work) / "run.bin"
            program.write_etdump_result_to_file(str(etdump), str(buffer))
            inspector = Inspector(etdump_path=str(etdump), debug_buffer_path=str(buffer))
        seen: Counter = Counter()
        tensors: dict[str, np.ndarray] = {}
        for event in (e for block in inspector.event_blocks for e in block.events):
            data = [d for d in (event.debug_data or []) if isinstance(d, torch.Tensor)]
            if event.name in _SKIPPED_EVENTS or not data:
                continue
            signature = f"{event.name}[{'->'.join(str(tuple(d.shape)) for d in data)}]"
            occurrence = seen[signature]
            seen[signature] += 1
            for j, value in enumerate(data):
                if value.is_floating_point():
                    tensors[f"{signature}#{occurrence}.{j}"] = value.detach().float().numpy().copy()
        return tensors
