"""What every int8 exporter shares: the smoothing and keep-in-float options, and the model they quantize.

Each int8-capable format's options dataclass subclasses ``Int8Options``, so ``smooth_alpha`` and
``keep_float`` are part of its rebuild key (``cache_key``) and of the manifest's ``options``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vitship.exporters.base import INT8_ONLY, ExportError, ExportOptions, TraceCache
from vitship.exporters.int8.calibration import calibration_images

if TYPE_CHECKING:
    from vitship.exporters.details import Smoothing
    from vitship.models import LoadedModel

# The default SmoothQuant fold strength: on the seeded ViT-S and the seeded-outliers stress model alike, every
# int8 format passes the gate with it (docs/MEASUREMENTS.md "int8 verdicts"); 0.5 is SmoothQuant's own default.
DEFAULT_SMOOTH_ALPHA = 0.5


@dataclass(frozen=True)
class Int8Options(ExportOptions):
    """The int8 recipe every format shares.

    Attributes:
        smooth_alpha: SmoothQuant fold strength in [0, 1] applied in PyTorch before export
            (``exporters.int8.smoothing``); None turns it off.
        keep_float: torch module names (``blocks.3.mlp.fc1``) whose weights stay in float; the export's int8
            gate fills it in when it escalates (``exporters.int8.ladder``).
    """

    smooth_alpha: float | None = field(default=DEFAULT_SMOOTH_ALPHA, metadata=INT8_ONLY)
    keep_float: tuple[str, ...] = field(default=(), metadata=INT8_ONLY)

    def cache_key(self) -> dict:
        # tuples as lists: the key is compared with the manifest's JSON
        return {k: list(v) if isinstance(v, tuple) else v for k, v in super().cache_key().items()}


def check_int8_options(fmt: str, options: Int8Options) -> None:
    """Refuse, before any work, a smoothing strength outside [0, 1] or an int8 option the format cannot use.

    What a format can use is its registered ``Int8Capabilities`` (``exporters.int8.capabilities``).
    """
    from vitship.exporters.int8.capabilities import int8_capabilities

    if options.precision != "int8":
        return
    alpha = options.smooth_alpha
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ExportError(f"{fmt}: smoothing alpha {alpha} is outside [0, 1]; use None (off) or e.g. 0.5")
    caps = int8_capabilities(fmt)
    caps.check(fmt, getattr(options, caps.mode_field) if caps.mode_field else None, alpha, tuple(options.keep_float))


def model_to_quantize(loaded: LoadedModel, options: Int8Options,
                      cache: TraceCache) -> tuple[LoadedModel, TraceCache, Smoothing | None]:
    """The model an int8 export starts from: ``loaded`` itself, or a smoothed copy (SmoothQuant fold).

    Returns:
        (the model, the trace cache to use with it, the fold's record for Artifact.details.smoothing or None).
        A smoothed copy is kept in ``cache`` and carries its own weights digest (the original's, the strength and
        the calibration photos), so that the ladder's later rungs from the same recipe reuse its fold and its
        trace, and no trace of other weights is ever taken for it. Exporters record ``loaded``'s own weights.
    """
    if options.precision != "int8" or options.smooth_alpha is None:
        return loaded, cache, None
    from vitship.exporters.int8 import smoothing

    key = ("int8-smoothed", loaded.info.sha256, options.smooth_alpha, str(options.calibration_dir), options.calibration_limit)

    def fold() -> tuple[LoadedModel, Smoothing, TraceCache]:
        images, _ = calibration_images(loaded.spec, options)
        smoothed, summary = smoothing.smoothed(loaded, images, options.smooth_alpha)
        digest = hashlib.sha256(repr(key).encode()).hexdigest()
        # its own trace cache: tracing the folded model must not evict the run's fp32 trace that fp16 and fp32 share
        return smoothed._replace(info=dataclasses.replace(smoothed.info, sha256=digest)), summary, TraceCache()

    (smoothed, summary, traces), _ = cache.get(key, fold)
    return smoothed, traces, summary


def linear_modules(loaded: LoadedModel, names: tuple[str, ...]) -> dict[str, object]:
    """The torch Linear modules named in ``keep_float`` (``blocks.3.mlp.fc1``); an unknown name is an error."""
    modules = dict(loaded.model.vit.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        linears = [n for n, m in modules.items() if type(m).__name__ == "Linear"]
        raise ExportError(f"keep_float: no module {unknown[0]!r} in the model; use torch names like {linears[0]!r}")
    return {name: modules[name] for name in names}
