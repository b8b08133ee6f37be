"""A Session (runtimes/base.py) over the reference executor: normalised NCHW batch in, named outputs out."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitship.models import FEATURES_NAME, LOGITS_NAME
from vitship.runtimes.base import REFERENCE_LABEL, SessionInfo
from vitship.runtimes.coreml_reference.executor import ReferenceExecutor
from vitship.runtimes.coreml_reference.loader import MLPackage, load_package
from vitship.runtimes.coreml_reference.ops import ReferenceExecutorError

TARGET = "coreml:reference"
PROVIDER = "vitship numpy reference executor, not the Apple runtime"
IOS_NAMES = {6: "iOS15", 7: "iOS16", 8: "iOS17", 9: "iOS18"}


@dataclass(frozen=True)
class Normalization:
    """How a normalised batch maps back to 8-bit pixels: x = (pixel * rescale - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale_factor: float

    def to_pixels(self, batch: np.ndarray) -> np.ndarray:
        shape = (1, -1, 1, 1)
        mean, std = np.reshape(self.mean, shape), np.reshape(self.std, shape)
        return (batch * std + mean) / self.rescale_factor


@dataclass(frozen=True)
class ImageInput:
    """An ImageType input: the program receives raw pixels (0..255) in `color_space` channel order."""

    color_space: str  # RGB, BGR, GRAYSCALE, GRAYSCALE_FLOAT16
    height: tuple[int, int | None]  # (lower, upper or None) as the spec's imageSizeRange says; fixed: (h, h)
    width: tuple[int, int | None]

    def pixels_from(self, batch: np.ndarray, norm: Normalization | None, name: str) -> np.ndarray:
        for size, (low, high), what in zip(batch.shape[2:], (self.height, self.width), ("height", "width")):
            if size < low or (high is not None and size > high):
                raise ReferenceExecutorError(f"input {name!r}: image {what} {size} outside the declared {low}..{high}")
        if norm is None:
            raise ReferenceExecutorError(
                f"input {name!r} is an ImageType; the reference session needs the model's mean/std/rescale "
                "(pass normalization=Normalization(...) or SessionOptions(loaded=...)) to turn the batch into pixels")
        pixels = norm.to_pixels(np.asarray(batch, dtype=np.float64))
        if self.color_space in ("RGB", "BGR", "GRAYSCALE"):  # an 8-bit pixel buffer on device
            pixels = np.clip(np.rint(pixels), 0, 255)
        if self.color_space == "BGR":
            pixels = pixels[:, ::-1]
        if self.color_space.startswith("GRAYSCALE") and pixels.shape[1] != 1:
            raise ReferenceExecutorError(f"input {name!r} is a grayscale image but the batch has {pixels.shape[1]} channels")
        return pixels.astype(np.float32)


def image_input_of(description) -> ImageInput | None:
    """The ImageType of a spec input description, or None for a multiarray input."""
    if description.type.WhichOneof("Type") != "imageType":
        return None
    image = description.type.imageType
    from coremltools.proto import FeatureTypes_pb2

    space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
    if image.WhichOneof("SizeFlexibility") == "imageSizeRange":
        bounds = image.imageSizeRange
        return ImageInput(space, _bounds(bounds.heightRange), _bounds(bounds.widthRange))
    return ImageInput(space, (int(image.height),) * 2, (int(image.width),) * 2)


def _bounds(size_range) -> tuple[int, int | None]:
    return int(size_range.lowerBound), None if size_range.upperBound < 0 else int(size_range.upperBound)


def declared_ranges(description) -> list[tuple[int, int | None]] | None:
    """Per-dim (lower, upper or None) of a multiarray input as its spec declares them; None: not a multiarray."""
    if description.type.WhichOneof("Type") != "multiArrayType":
        return None
    array = description.type.multiArrayType
    if array.WhichOneof("ShapeFlexibility") == "shapeRange":
        return [(int(r.lowerBound), None if r.upperBound < 0 else int(r.upperBound)) for r in array.shapeRange.sizeRanges]
    if array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
        shapes = [list(s.shape) for s in array.enumeratedShapes.shapes]
        return [(min(dims), max(dims)) for dims in zip(*shapes)]
    return [(int(d), int(d)) for d in array.shape]


def enumerated_shapes(description) -> list[tuple[int, ...]] | None:
    """The shapes an enumerated-shape multiarray input accepts, or None when its shapes are not enumerated."""
    if description.type.WhichOneof("Type") != "multiArrayType":
        return None
    array = description.type.multiArrayType
    if array.WhichOneof("ShapeFlexibility") != "enumeratedShapes":
        return None
    return [tuple(int(n) for n in s.shape) for s in array.enumeratedShapes.shapes]


def check_input_shape(description, shape: tuple[int, ...]) -> None:
    """Refuse a batch the Apple runtime would refuse: not one of the enumerated shapes, or outside the range."""
    shapes = enumerated_shapes(description)
    if shapes is not None:
        if tuple(shape) not in shapes:
            raise ReferenceExecutorError(
                f"input {description.name!r} of shape {tuple(shape)} is not one of the enumerated shapes {shapes}; "
                "Core ML refuses other shapes: split the batch into enumerated sizes")
        return
    ranges = declared_ranges(description)
    if ranges is None:
        return
    fits = len(ranges) == len(shape) and all(lo <= n and (hi is None or n <= hi) for (lo, hi), n in zip(ranges, shape))
    if not fits:
        raise ReferenceExecutorError(
            f"input {description.name!r} of shape {tuple(shape)} is outside the declared shape range "
            f"{[(lo, hi if hi is not None else 'inf') for lo, hi in ranges]}; split the batch or re-export with a larger range")


def _blas_threads() -> int | None:
    """The threads numpy's BLAS uses by default (what an unlimited session runs with), if threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return max(counts) if counts else None


class ReferenceSession:
    """Runs an .mlpackage through the numpy executor; `info` says what ran (never the Apple runtime)."""

    def __init__(self, package: MLPackage, normalization: Normalization | None = None, threads: int | None = None,
                 output_names: dict[str, str] | None = None):
        self.package = package
        self.output_names = output_names or {}  # program output name -> logits / features, where they differ
        self.executor = ReferenceExecutor(package.program)
        descriptions = package.input_descriptions
        if len(descriptions) != 1:
            raise ReferenceExecutorError(f"{package.path}: expected one input, the model has {len(descriptions)}")
        self.description = descriptions[0]
        self.input_name = descriptions[0].name
        self.image_input = image_input_of(descriptions[0])
        self.normalization = normalization
        self._threads = threads
        meta = package.metadata
        self.info = SessionInfo(
            target=TARGET, provider=PROVIDER, device="cpu (numpy)", precision=self.executor.precision,
            threads=threads if threads is not None else _blas_threads(),
            extra={"note": REFERENCE_LABEL, "package": str(package.path), "opset": IOS_NAMES.get(self.executor.opset, str(self.executor.opset)),
                   "specification_version": int(package.spec.specificationVersion),
                   "image_input": self.image_input.color_space if self.image_input else None,
                   "ops": dict(sorted(self.executor.op_counts.items())),
                   "coremltools_version": meta.get("com.github.apple.coremltools.version", "")})

    def _blas_limit(self):
        if self._threads is None:
            return contextlib.nullcontext()
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return contextlib.nullcontext()
        return threadpool_limits(limits=self._threads)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.asarray(batch, dtype=np.float32)
        check_input_shape(self.description, batch.shape)
        if self.image_input is not None:
            batch = self.image_input.pixels_from(batch, self.normalization, self.input_name)
        with self._blas_limit():
            if self.image_input is None:
                outputs = self.executor.run({self.input_name: batch})
            else:  # one image per prediction, as apps batch CVPixelBuffers (MLArrayBatchProvider)
                runs = [self.executor.run({self.input_name: batch[i:i + 1]}) for i in range(len(batch))]
                outputs = {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}
        outputs = {self.output_names.get(name, name): np.asarray(value, dtype=np.float32) for name, value in outputs.items()}
        if LOGITS_NAME not in outputs and len(outputs) == 2:  # unnamed outputs: DetectorModel order
            outputs = dict(zip((LOGITS_NAME, FEATURES_NAME), outputs.values()))
        return outputs

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self.executor = None
        self.package = None
        if getattr(self, "unpacked", None) is not None:  # an ExecuTorch payload unpacked for this session
            self.unpacked.cleanup()
            self.unpacked = None


def open_reference_session(package_path: Path, options=None, *, normalization: Normalization | None = None,
                           output_names: dict[str, str] | None = None) -> ReferenceSession:
    """Load `package_path` (.mlpackage) and return a Session that runs it with the reference executor.

    Args:
        options: a runtimes.SessionOptions (its `threads` limits BLAS threads; `loaded.spec` gives the
            normalisation an ImageType input needs), or None.
        normalization: overrides the normalisation taken from `options`.
        output_names: renames the program's outputs (an ExecuTorch Core ML payload names them after graph nodes).
    """
    if normalization is None and getattr(options, "loaded", None) is not None:
        spec = options.loaded.spec
        normalization = Normalization(tuple(spec.mean), tuple(spec.std), float(spec.rescale_factor))
    return ReferenceSession(load_package(Path(package_path)), normalization, getattr(options, "threads", None), output_names)
