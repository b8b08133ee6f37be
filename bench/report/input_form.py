"""Which input form a family should ship: the camera frame (preprocessing inside the artifact) or the tensor.

Image-input artifacts (``input_type`` "frame": exporters/image_input.py) never rank against tensor rows: their
latency includes the resize, crop and normalisation the tensor rows leave to the app. Instead each family block
says which form to ship, from the pick's image sibling (same format, precision and target):

- the sibling passed parity end to end (decoded photos at their own sizes against PyTorch on Pillow's
  preprocessing): ship it. The app hands over the frame and cannot get the preprocessing wrong, the most common
  reason a correct model answers wrongly on a device; the sentence states what it costs per 1920x1080 frame over
  the tensor pick, which is the preprocessing the app would otherwise write and run itself;
- it failed: keep the tensor input, and say why;
- iOS: the CoreML image artifacts take the frame through Vision, whose ``centerCrop`` option is the spec's rule;
- no sibling exported: say how to export one.
"""

from __future__ import annotations

from vitship.bench.report import phrases
from vitship.bench.report.cells import ReportRow
from vitship.bench.report.families import Family
from vitship.exporters.coreml_apple import VISION_CROP_AND_SCALE
from vitship.models.status import Status

FRAME = "frame"
EXPORT_HINT = {"onnx": "onnx-image", "openvino": "openvino-image", "litert": "litert-image", "executorch": "executorch-image"}


def _export_command(fmt: str) -> str:
    """The command that exports the image-input variant of ``fmt`` (fixed-size programs: fp32, at the camera's size)."""
    if fmt in ("litert", "executorch"):
        return f"vitship export --format {EXPORT_HINT[fmt]} --precision fp32 --frame-size HEIGHTxWIDTH"
    return f"vitship export --format {EXPORT_HINT[fmt]}"


def is_frame(row: ReportRow) -> bool:
    return row.input_type == FRAME


def sentence(family: Family, rows: list[ReportRow], pick, batch: int = 1) -> str:
    """The family block's input-form line ("" when there is nothing to say)."""
    if family.slug == "ios":
        if any(r.format == "coreml" and r.input_type == "image" for r in rows):
            return (f"Input form: coreml-fp16 and coreml-int8 take the camera image (a CVPixelBuffer); set Vision's crop "
                    f"and scale option to {VISION_CROP_AND_SCALE}, which scales the short side to the model's size and "
                    "crops the center as the spec does. Vision resizes with its own filter, not Pillow's bicubic: check "
                    "its decisions on a Mac (vitship parity covers the model, not Vision).")
        return ""
    if pick is None or pick.format not in EXPORT_HINT:
        return ""
    siblings = [r for r in rows if is_frame(r) and r.format == pick.format and r.precision == pick.precision]
    sibling = next((r for r in siblings if (r.target, r.variant, r.machine) == (pick.target, pick.variant, pick.machine)),
                   next(iter(siblings), None))
    if sibling is None:
        return (f"Input form: the tensor ({pick.artifact}): no image-input variant of it was exported here "
                f"({_export_command(pick.format)}), so the app must reproduce the preprocessing exactly.")
    parity = sibling.parity
    if parity.status is not Status.PASS:
        why = f"{parity.status}" + (f": {parity.reason}" if parity.reason else "")
        return (f"Input form: the tensor ({pick.artifact}); its image-input variant {sibling.artifact} did not pass parity "
                f"end to end ({why}), so the app must reproduce the preprocessing exactly.")
    error = parity.measured("max_prob_err")
    checked = "passed parity end to end"
    checked += f" (max probability error {error:.2g} on decoded photos)" if error is not None else ""
    frame_ms, tensor_ms = sibling.p50(batch), pick.p50
    cost = ""
    if frame_ms is not None and tensor_ms is not None and sibling.target == pick.target:
        more = "more" if frame_ms >= tensor_ms else "less"
        difference = phrases.ms(abs(frame_ms - tensor_ms))
        cost = (f": {phrases.ms(frame_ms)} per 1920x1080 frame on {sibling.target}, {difference} {more} than {pick.artifact} "
                "on the preprocessed tensor, the preprocessing the app would otherwise run itself")
    return (f"Input form: ship {sibling.artifact}, which takes the camera frame (uint8 RGB, any size) with the resize, crop "
            f"and normalisation inside and {checked}{cost}. The app cannot get the preprocessing wrong; keep "
            f"{pick.artifact} where the app already resizes on a GPU or ISP.")
