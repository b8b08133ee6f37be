"""sample_images(): the real photographs bundled in scikit-image's wheel, for calibration and parity."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vitship.models.errors import MissingDependencyError

# Real photographs only: synthetic patterns (chessboard, logo, phantom), text scans and binary masks
# are left out because calibration and parity should see what the detector sees in production.
PHOTO_NAMES = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png", "moon.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg", "clock_motion.png",
)


def sample_images_dir() -> Path:
    try:
        return Path(str(resources.files("skimage") / "data"))
    except ModuleNotFoundError as err:
        raise MissingDependencyError("scikit-image", "the bundled sample photographs") from err


def sample_images(limit: int | None = None) -> list[Path]:
    """Paths of the bundled real photos, sorted by name (a stable order for calibration and parity)."""
    folder = sample_images_dir()
    paths = sorted(folder / name for name in PHOTO_NAMES if (folder / name).is_file())
    if not paths:
        raise MissingDependencyError("scikit-image", f"the bundled sample photographs (none found in {folder})")
    return paths[:limit] if limit else paths
