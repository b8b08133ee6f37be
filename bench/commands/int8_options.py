"""vitship export's int8 flags, applied from the int8 capability table (``exporters.int8.capabilities``).

Each flag reaches every requested int8 format that can use it. A format named with ``--format`` that cannot
use a flag given to it is refused before any work (exit 2); with ``--all`` (no ``--format``) the formats that
cannot use it keep their own default and a note says so before the export starts. Nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vitship.bench.commands.common import err_console, split_names

MODE_HELP = ("int8 recipe, MODE for every requested int8 format that offers it or FORMAT=MODE for one: onnx dynamic|static, "
             "executorch dynamic|static, litert dynamic|weight-only, openvino static, coreml weight-only "
             "(default: each format's first)")
CALIBRATION_HELP = ("int8 calibration photos: a folder, or one with real/ and fake/ subfolders (default: the bundled samples). "
                    "Every int8 format takes them: its gate checks on the held-back third, the calibrated recipes "
                    "(onnx static, openvino, executorch static) and the SmoothQuant fold calibrate on the rest")


def int8_formats(requests: list[tuple[str, str]]) -> list[str]:
    """The requested formats that produce int8, in request order."""
    return list(dict.fromkeys(fmt for fmt, precision in requests if precision == "int8"))


def parse_modes(values: list[str], requests: list[tuple[str, str]], explicit: bool) -> dict[str, str]:
    """--int8-mode values -> {format: mode} for the requested int8 formats (refusing what a named format cannot use)."""
    from vitship.exporters.int8.capabilities import capabilities

    table, targets, chosen = capabilities(), int8_formats(requests), {}
    for value in split_names(values):
        fmt, sep, mode = value.rpartition("=")
        if sep:
            if fmt not in table:
                raise typer.BadParameter(f"{value!r}: {fmt} produces no int8; int8 formats: {', '.join(table)}", param_hint="--int8-mode")
            if mode not in table[fmt].modes:
                raise typer.BadParameter(f"{value!r}: {fmt} offers {', '.join(table[fmt].modes)}", param_hint="--int8-mode")
            if fmt not in targets:
                err_console.print(f"[yellow]note[/yellow] --int8-mode {value}: {fmt}-int8 is not requested", highlight=False)
            chosen[fmt] = mode
            continue
        offering = [f for f in targets if mode in table[f].modes]
        if not offering:
            offers = "; ".join(f"{f}: {', '.join(table[f].modes)}" for f in targets) or "no int8 format is requested"
            raise typer.BadParameter(f"{mode!r} is offered by no requested int8 format ({offers})", param_hint="--int8-mode")
        _refuse_or_note(f"--int8-mode {mode}", [f for f in targets if f not in offering], explicit,
                        lambda f: f"offers {', '.join(table[f].modes)}; keeps {table[f].default_mode}")
        chosen.update({f: mode for f in offering if f not in chosen})
    return chosen


def parse_smoothing(text: str | None) -> tuple[bool, float | None]:
    """--int8-smooth -> (given, alpha): 'off' is None; a number must lie in [0, 1]."""
    if text is None:
        return False, None
    if text.strip().lower() in ("off", "none"):
        return True, None
    try:
        alpha = float(text)
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise typer.BadParameter(f"{text!r}: use a strength from 0 to 1, or off", param_hint="--int8-smooth")
    return True, alpha


def apply_int8_flags(options: dict, requests: list[tuple[str, str]], explicit: bool, modes: list[str],
                     smooth: str | None, calibration: Path | None) -> dict:
    """Every format's options with the int8 flags applied where its capabilities take them."""
    from vitship.exporters import options_class
    from vitship.exporters.int8.capabilities import capabilities

    table, targets = capabilities(), int8_formats(requests)
    chosen = parse_modes(modes, requests, explicit)
    given, alpha = parse_smoothing(smooth)
    if given and alpha is not None:
        _refuse_or_note(f"--int8-smooth {smooth}", [f for f in targets if not table[f].smoothing], explicit,
                        lambda f: f"takes no SmoothQuant fold ({table[f].why})")
    updated = dict(options)
    for fmt in targets:
        caps, changes = table[fmt], {"calibration_dir": calibration}
        if fmt in chosen and caps.mode_field:
            changes[caps.mode_field] = chosen[fmt]
        if given and caps.smoothing:
            changes["smooth_alpha"] = alpha
        updated[fmt] = (updated.get(fmt) or options_class(fmt)()).replace(**changes)
    return updated


def _refuse_or_note(flag: str, unable: list[str], explicit: bool, why) -> None:
    """A format named with --format that cannot use ``flag`` is refused; under --all it is explained before work."""
    if not unable:
        return
    lines = [f"{fmt} {why(fmt)}" for fmt in unable]
    if explicit:
        raise typer.BadParameter(f"{flag} cannot reach {'; '.join(lines)}; leave it out of --format or drop the flag")
    for line in lines:
        err_console.print(f"[yellow]note[/yellow] {flag} does not reach {line}", highlight=False)
