"""The one place that splits any batch into the sizes an artifact accepts (``Artifact.batch_shapes``).

Every session that ``runtimes.open_session`` returns honours them: a batch the artifact does not accept
is split greedily into accepted sizes (7 on 1, 2, 4, 8 runs as 4 + 2 + 1; 15 on 1..8 as 8 + 7), as an app
splits its work, and the outputs are concatenated. So eval, predict, parity and the API run any number of images on every artifact.

The bench times one fixed batch per row, so it opens sessions with ``SessionOptions(split_batches=False)``:
a batch the artifact cannot take is then refused as ``RuntimeUnavailable`` (the row is unavailable, with the
accepted sizes as its reason), never silently timed as several smaller calls.
"""

from __future__ import annotations

import numpy as np

from vitship.exporters.batch_shapes import BatchShapes
from vitship.models import LOGITS_NAME
from vitship.runtimes.base import RuntimeUnavailable, SessionWrapper


def split_batch(shapes: BatchShapes, batch: int) -> list[int]:
    """Sizes ``shapes`` accepts that add up to ``batch``, largest first (greedy); raises RuntimeUnavailable where none do."""
    if shapes.accepts(batch):
        return [batch]
    if shapes.sizes:
        parts, left = [], batch
        for size in reversed(shapes.sizes):
            count, left = divmod(left, size)
            parts += [size] * count
    else:  # a range: full chunks of the upper bound, then the remainder
        count, left = divmod(batch, shapes.upper) if shapes.upper else (0, batch)
        parts = [shapes.upper] * count
        if left >= shapes.lower:
            parts, left = parts + [left], 0
    if left:
        raise RuntimeUnavailable(f"a batch of {batch} cannot be split into this artifact's {shapes.describe()}; "
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
        return split_batch(self.batch_shapes, batch)

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
    shapes = artifact.batch_shapes
    return session if shapes.dynamic else SplitBatchSession(session, shapes, artifact.id, split)
