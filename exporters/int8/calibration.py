"""The calibration photos of an int8 export, and how they split: calibrate on, select the recipe on, confirm it on.

``--calibration DIR`` (``ExportOptions.calibration_dir``) or the bundled sample photos (a stand-in). Every format
that quantizes reads its photos here: the calibrated recipes (ONNX static, OpenVINO, ExecuTorch static) and the
SmoothQuant fold take the "calibration" part, the export's int8 gate the "select" and "confirm" parts.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import numpy as np

from vitship.exporters.base import ExportError, ExportOptions
from vitship.exporters.details import Calibration
from vitship.models import IMAGE_SUFFIXES, ModelSpec, image_files, preprocess, sample_images

HOLD_BACK_EVERY = 3  # every 3rd calibration photo is held back: the export's int8 gate checks on photos not calibrated on
MIN_SPLIT = 2  # held-back photos needed to split them into the gate's select and confirm photos (one each at least)
CalibrationPart = Literal["calibration", "select", "confirm", "held_back", "all"]


def calibration_split(count: int) -> dict[str, list[int]]:
    """Indices of ``count`` calibration photos by part: calibrate on, select the int8 recipe on, confirm it on.

    Every HOLD_BACK_EVERY-th photo (of at least HOLD_BACK_EVERY) is held back from calibration; the held-back
    ones alternate between select and confirm when there are MIN_SPLIT or more, else both parts are all of them
    (the int8 record then says that the pick was confirmed on the photos that picked it).
    """
    held = [i for i in range(count) if count >= HOLD_BACK_EVERY and i % HOLD_BACK_EVERY == HOLD_BACK_EVERY - 1]
    split = len(held) >= MIN_SPLIT
    return {"all": list(range(count)), "held_back": held, "calibration": [i for i in range(count) if i not in set(held)],
            "select": held[0::2] if split else held, "confirm": held[1::2] if split else held}


def calibration_files(options: ExportOptions, part: CalibrationPart = "calibration") -> tuple[list[Path], Calibration]:
    """The calibration photos of one part (``calibration_split``), as files, and their source record."""
    paths, source, classes = _calibration_paths(options)
    split = calibration_split(len(paths))
    picked = [paths[i] for i in split[part]]
    names = [_relative_name(p, options) for p in picked]
    per_class = {name: sum(1 for n in names if n.split("/")[0] == name) for name in classes} if classes else None
    return picked, Calibration(source=source, count=len(picked), files=names, part=part, held_back=len(split["held_back"]),
                               classes=per_class)


def calibration_images(spec: ModelSpec, options: ExportOptions,
                       part: CalibrationPart = "calibration") -> tuple[np.ndarray, Calibration]:
    """The preprocessed calibration photos (``options.calibration_dir`` or the bundled samples) and their source.

    A folder with ``real/`` and ``fake/`` subfolders gives both classes, interleaved (real, fake, real, ...) so
    that ``calibration_limit`` and the split take both. ``calibration_split`` says which photos each part holds.

    Args:
        part: "calibration" (what quantizers and smoothing see), "select" / "confirm" (the int8 gate's photos),
            "held_back" (both) or "all".
    Returns:
        (float32 NCHW batch, the Calibration record of those photos) -- it goes into Artifact.calibration.
    """
    picked, info = calibration_files(options, part)
    return preprocess(picked, spec), info


def _calibration_paths(options: ExportOptions) -> tuple[list[Path], str, tuple[str, ...]]:
    """(the photos in calibration order, their source, the class subfolders used)."""
    if options.calibration_dir is None:
        return sample_images(options.calibration_limit), "sample_images (scikit-image bundled photos; a stand-in)", ()
    folder = Path(options.calibration_dir).expanduser()
    if not folder.is_dir():
        raise ExportError(f"--calibration {folder}: not a directory of images")
    classes = tuple(name for name in ("real", "fake") if (folder / name).is_dir())
    if classes:
        per_class = [image_files(folder / name) for name in classes]
        paths = [p for group in itertools.zip_longest(*per_class) for p in group if p is not None]
    else:
        paths = image_files(folder)
    paths = paths[: options.calibration_limit] if options.calibration_limit else paths
    if not paths:
        raise ExportError(f"--calibration {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found"
                          + (f" in {' or '.join(c + '/' for c in classes)}" if classes else ""))
    return paths, str(folder), classes


def _relative_name(path: Path, options: ExportOptions) -> str:
    if options.calibration_dir is None:
        return path.name
    return Path(path).relative_to(Path(options.calibration_dir).expanduser()).as_posix()
