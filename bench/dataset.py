"""A labelled folder for eval: ``real/`` + ``fake/`` subfolders or a CSV of ``path,label`` (real/fake or 0/1, fake = 1).

Unreadable images are listed and skipped, never fatal.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitship.models import ImageError, ModelSpec, VitshipError, image_files, preprocess

_LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}


class DatasetError(VitshipError):
    """The labelled folder or CSV cannot be used."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # 1 = fake, 0 = real


def read_dataset(data: Path) -> list[LabelledImage]:
    """The labelled images of a real/ + fake/ folder or a path,label CSV (paths relative to the CSV)."""
    data = Path(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        return _read_csv(data)
    if not data.is_dir():
        raise DatasetError(f"{data}: no such folder or CSV; pass a folder with real/ and fake/ or a path,label CSV")
    items = [LabelledImage(path, label) for name, label in (("real", 0), ("fake", 1)) if (data / name).is_dir()
             for path in image_files(data / name)]
    if not items:
        raise DatasetError(f"{data}: no images found; expected {data}/real/*.jpg and {data}/fake/*.jpg")
    return items


def _read_csv(path: Path) -> list[LabelledImage]:
    items = []
    with open(path, newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path}:{line_no}: expected path,label, got {row!r}")
            image, label = row[0].strip(), row[1].strip().lower()
            if line_no == 1 and (image.lower(), label) == ("path", "label"):
                continue  # the header line
            if label not in _LABELS:
                raise DatasetError(f"{path}:{line_no}: label {row[1]!r} is not real/fake/0/1")
            image_path = Path(image) if Path(image).is_absolute() else path.parent / image
            items.append(LabelledImage(image_path, _LABELS[label]))
    if not items:
        raise DatasetError(f"{path}: no labelled rows; expected lines of path,label")
    return items


def load_batches(images: list[LabelledImage], spec: ModelSpec, batch_size: int):
    """Yield (batch, labels, paths) of readable images; unreadable ones go to the returned skipped list."""
    skipped: list[dict] = []

    def generate():
        for start in range(0, len(images), batch_size):
            arrays, labels, paths = [], [], []
            for item in images[start:start + batch_size]:
                try:
                    arrays.append(preprocess(item.path, spec)[0])
                except (ImageError, OSError, ValueError) as err:
                    skipped.append({"path": str(item.path), "reason": str(err)})
                    continue
                labels.append(item.label)
                paths.append(str(item.path))
            if arrays:
                yield np.stack(arrays), labels, paths

    return generate(), skipped
