"""The batch sizes an artifact accepts, and the one place that splits any batch into them.

Core ML programs take enumerated batch sizes (coreml-fp32 and coreml-tensor-*: 1, 2, 4, 8) or a fixed batch
of 1 (the ImageType coreml-fp16/int8, executorch-coreml-fp16); an ExecuTorch XNNPACK program takes 1..max
(it plans memory for the upper bound); ONNX, OpenVINO and torch take any batch. The exporters record this
in the manifest's ``input_spec`` (``batch_shapes`` or ``batch_range``). Every session that
``runtimes.open_session`` returns honours it: a batch the artifact does not accept is split greedily into
accepted sizes (7 on 1, 2, 4, 8 runs as 4 + 2 + 1; 15 on 1..8 as 8 + 7), as an app splits its work, and the
outputs are concatenated. So eval, predict, parity and the API run any number of images on every artifact.

The bench times one fixed batch per row, so it opens sessions with ``SessionOptions(split_batches=False)``:
a batch the artifact cannot take is then refused as ``RuntimeUnavailable`` (the row is unavailable, with the
accepted sizes as its reason), never silently timed as several smaller calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitship.models import LOGITS_NAME
from vitship.runtimes.base import RuntimeUnavailable, SessionWrapper


@dataclass(frozen=True)
class BatchShapes:
    """The batch sizes an artifact accepts: enumerated ``sizes``, a range ``lower..upper``, or any (neither set)."""

    sizes: tuple[int, ...] = ()
    lower: int = 1
    upper: int | None = None

    @classmethod
    def from_input_spec(cls, input_spec: dict | None) -> "BatchShapes":
        """Read ``batch_shapes`` (enumerated or fixed) or ``batch_range`` ([lower, upper]) from a manifest input spec."""
        spec = input_spec or {}
        if spec.get("batch_shapes"):
            return cls(sizes=tuple(sorted({int(n) for n in spec["batch_shapes"]})))
        if spec.get("batch_range"):
            lower, upper = (int(n) for n in spec["batch_range"])
            return cls(lower=lower, upper=upper)
        return cls()

    @property
    def dynamic(self) -> bool:
        return not self.sizes and self.upper is None and self.lower <= 1

    def accepts(self, batch: int) -> bool:
        if self.sizes:
            return batch in self.sizes
        return self.lower <= batch and (self.upper is None or batch <= self.upper)

    def describe(self) -> str:
        """'batches 1, 2, 4, 8', 'batch 1', 'batches 1..8' or 'any batch'."""
        if self.sizes:
            return f"batch{'es' if len(self.sizes) > 1 else ''} {', '.join(map(str, self.sizes))}"
        if self.upper is not None:
            return f"batches {self.lower}..{self.upper}"
        return f"batches {self.lower} and up" if self.lower > 1 else "any batch"

    def distinct(self, batches: tuple[int, ...]) -> tuple[int, ...]:
        """The sizes among ``batches`` that compute something different here: a program that takes one image at a
        time runs every batch as one-image calls, so only the smallest batch is worth running."""
        largest = max(self.sizes) if self.sizes else self.upper
        return tuple(sorted(batches))[:1] if largest == 1 else tuple(batches)

    def split(self, batch: int) -> list[int]:
        """Accepted sizes that add up to ``batch``, largest first (greedy); raises RuntimeUnavailable where none do."""
        if self.accepts(batch):
            return [batch]
        if self.sizes:
            parts, left = [], batch
            for size in reversed(self.sizes):
                count, left = divmod(left, size)
                parts += [size] * count
        else:  # a range: full chunks of the upper bound, then the remainder
            count, left = divmod(batch, self.upper) if self.upper else (0, batch)
            parts = [self.upper] * count
            if left >= self.lower:
                parts, left = parts + [left], 0
        if left:
            raise RuntimeUnavailable(f"a batch of {batch} cannot be split into this artifact's {self.describe()}; "
                                     "re-export it with batch size 1 among its shapes")
        return parts


class SplitBatchSession(SessionWrapper):
    """A Session that feeds the runtime only batches the artifact accepts, splitting others, and joins the outputs.

    Anything else (``info``, a torch session's ``prepare``/``device``) is the wrapped session's.
    """

    def __init__(self, session, shapes: BatchShapes, artifact_id: str, split: bool = True):
        super().__init__(session)
        self.batch_shapes = shapes
        self._artifact_id = artifact_id
        self._split = split

    def _sizes(self, batch: int) -> list[int]:
        if self.batch_shapes.accepts(batch):
            return [batch]
        if not self._split:
            raise RuntimeUnavailable(f"batch {batch}: {self._artifact_id} accepts {self.batch_shapes.describe()} "
                                     "(the shapes it was exported with); re-export it for this batch to time it")
        return self.batch_shapes.split(batch)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        sizes = self._sizes(len(batch))
        if len(sizes) == 1:
            return self.session.run_outputs(batch)
        starts = np.cumsum([0, *sizes[:-1]])
        chunks = [self.session.run_outputs(batch[start:start + size]) for start, size in zip(starts, sizes)]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(self._sizes(len(batch))) == 1:
            return self.session.run(batch)
        return self.run_outputs(batch)[LOGITS_NAME]


def honour_batch_shapes(session, artifact, split: bool = True):
    """``session`` as it should be handed out: wrapped to split (or refuse) batches unless the artifact takes any."""
    shapes = BatchShapes.from_input_spec(artifact.input_spec)
    return session if shapes.dynamic else SplitBatchSession(session, shapes, artifact.id, split)
