"""What each format's int8 can do, declared once where the format registers (STYLE.md item 13).

``exporters/__init__.py`` passes an ``Int8Capabilities`` to ``register`` for every format that produces int8;
the CLI (which flags reach which format, and what is refused before any work), the Python API (``check``),
the ladder (which rungs a format climbs) and docs/DESIGN.md's table (``markdown_table``, checked by a test)
all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitship.exporters.base import ExportError


@dataclass(frozen=True)
class Int8Capabilities:
    """One format's int8, as its exporter implements it.

    Attributes:
        modes: the int8 recipes it offers by name, its default first (``Options.int8_mode`` when ``mode_field``).
        calibrated: the modes whose activation ranges are calibrated on the calibration photos (the others
            quantize activations at run time or not at all); every mode's gate still checks on held-back photos.
        smoothing: whether the SmoothQuant fold (``smooth_alpha``) reaches the quantized weights.
        keep_float: whether named torch Linears can stay in float (``keep_float``, the ladder's last rungs).
        gate_targets: where the export's int8 gate runs it, the first available here winning.
        mode_field: the options field that selects the mode (None: one mode, nothing to select).
        why: what a reader must know about a missing capability.
    """

    modes: tuple[str, ...]
    calibrated: tuple[str, ...] = ()
    smoothing: bool = True
    keep_float: bool = True
    gate_targets: tuple[str, ...] = ()
    mode_field: str | None = "int8_mode"
    why: str = ""

    @property
    def default_mode(self) -> str:
        return self.modes[0]

    def check(self, fmt: str, mode: str | None, smooth_alpha: float | None, keep_float: tuple[str, ...]) -> None:
        """Refuse, before any work, an int8 option this format cannot use (a one-line ExportError saying what can)."""
        if mode is not None and mode not in self.modes:
            raise ExportError(f"{fmt}: int8 mode {mode!r} is not offered; {fmt} offers {', '.join(self.modes)}")
        if smooth_alpha is not None and not self.smoothing:
            raise ExportError(f"{fmt}: the SmoothQuant fold does not reach its int8 weights ({self.why}); "
                              "use smooth_alpha=None (--int8-smooth off)")
        if keep_float and not self.keep_float:
            raise ExportError(f"{fmt}: cannot keep layers in float ({self.why})")


def int8_capabilities(fmt: str) -> Int8Capabilities:
    """The registered int8 capabilities of ``fmt`` (an ExportError when it produces no int8)."""
    from vitship.exporters import INT8_CAPABILITIES

    if fmt not in INT8_CAPABILITIES:
        raise ExportError(f"{fmt} produces no int8; int8 formats: {', '.join(INT8_CAPABILITIES)}")
    return INT8_CAPABILITIES[fmt]


def capabilities() -> dict[str, Int8Capabilities]:
    """Every int8 format's capabilities, in registry order."""
    from vitship.exporters import INT8_CAPABILITIES

    return dict(INT8_CAPABILITIES)


def markdown_table() -> str:
    """docs/DESIGN.md's int8 capability table, built from the registry (a test keeps the doc equal to it)."""
    lines = ["| format | modes (default first) | calibrated modes | SmoothQuant fold | keep in float | gate runs on |",
             "|---|---|---|---|---|---|"]
    for fmt, caps in capabilities().items():
        yes = {True: "yes", False: "no"}
        fold = yes[caps.smoothing] + ("" if caps.smoothing else f" ({caps.why})")
        lines.append(f"| {fmt} | {', '.join(caps.modes)} | {', '.join(caps.calibrated) or '-'} | {fold} | "
                     f"{yes[caps.keep_float]} | {', '.join(f'`{t}`' for t in caps.gate_targets)} |")
    return "\n".join(lines)

