"""The batch sizes an artifact accepts, read from its manifest ``input_spec``: one rule for every layer.

Core ML programs take enumerated batch sizes (coreml-fp32 and coreml-tensor-*: 1, 2, 4, 8) or a fixed batch
of 1 (the ImageType coreml-fp16/int8, executorch-coreml-fp16); an ExecuTorch XNNPACK program takes 1..max
(it plans memory for the upper bound); ONNX, OpenVINO and torch take any batch. The exporters record this
as ``batch_shapes`` or ``batch_range``; ``Artifact.batch_shapes`` reads it back. The export gate and parity
ask it which batches are worth running (``distinct``); the runtimes split other batches into accepted sizes
(runtimes/batching.py).
"""

from __future__ import annotations

from dataclasses import dataclass


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
