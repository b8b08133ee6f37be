"""openvino-image-*: the OpenVINO IR with the spec's preprocessing built in by its PrePostProcessor.

The tensor IR is made as ``exporters.openvino`` makes it (fp16 compression and NNCF int8 on the model itself,
calibrated on preprocessed photos), then ``openvino.preprocess.PrePostProcessor`` puts the preprocessing in front: the
input becomes a uint8 NHWC RGB frame ``[1, -1, -1, 3]``; a ``custom`` step for the aspect-preserving resize and the
center crop (integer arithmetic on the uint8 frame, float 8-bit values out); ``mean``/``scale``; and the NHWC -> NCHW
conversion PPP inserts from the two layouts. PPP's own ``resize`` scales to the model's 384x384 (a stretch) and its
``crop`` takes fixed coordinates, so the custom step is ``exporters.frame_graph`` (Pillow's taps for the cropped
output, two passes each rounded to 8 bits), converted from its ONNX nodes. Interpolate-11's ``bicubic_pillow`` mode is
as exact, but the CPU plugin sets it up for about 20 s at every new frame size (OpenVINO 2026.4 on this machine's 2
cores), once per frame size a camera or a photo library hands over.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from vitship.exporters import frame_graph, image_input
from vitship.exporters import openvino as openvino_exporter
from vitship.exporters.base import Artifact, TraceCache
from vitship.models import LoadedModel, ModelSpec


@dataclass(frozen=True)
class OpenvinoImageOptions(openvino_exporter.OpenvinoOptions):
    """openvino-image-* options: the tensor IR's (``OpenvinoOptions``), its own rebuild key under its own name."""

    name: ClassVar[str] = "openvino-image"


Options = OpenvinoImageOptions


def export(loaded: LoadedModel, out_dir: Path, options: OpenvinoImageOptions, cache: TraceCache | None = None) -> Artifact:
    """The tensor IR of ``options`` with the frame preprocessing built in, in ``out_dir/model.xml`` (+ .bin)."""
    import openvino as ov

    image_input.check_spec(loaded.spec, options.name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vitship-openvino-image-") as tmp:
        tensor = openvino_exporter.export(loaded, Path(tmp), options, cache)
        model = ov.Core().read_model(str(Path(tmp) / openvino_exporter.MODEL_FILE))
        model = with_preprocessing(model, loaded.spec)
    for key, value in image_input.frame_metadata(loaded.spec).items():
        model.set_rt_info(value, [openvino_exporter.RT_INFO_SECTION, key])
    xml = Path(out_dir) / openvino_exporter.MODEL_FILE
    ov.save_model(model, str(xml), compress_to_fp16=options.precision == "fp16")
    details = {"preprocessing": "openvino.preprocess.PrePostProcessor: custom (the resize and center crop of "
                                "exporters.frame_graph), mean, scale, NHWC -> NCHW"}
    return image_input.frame_artifact(tensor, options, loaded.spec, xml, start, details,
                                      openvino_exporter.min_runtime_versions(model))


def with_preprocessing(model, spec: ModelSpec):
    """``model`` (float NCHW input) behind a PrePostProcessor that takes a uint8 NHWC RGB frame of any size."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    frame = ppp.input(0)
    frame.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_shape([1, -1, -1, spec.channels])
    frame.model().set_layout(ov.Layout("NCHW"))
    mean = [m / spec.rescale_factor for m in spec.mean]  # PPP: (x - mean) / scale, on 0-255 pixels
    scale = [s / spec.rescale_factor for s in spec.std]
    # custom first, on the uint8 frame: the resize computes in integers and hands back float 8-bit values
    frame.preprocess().custom(lambda node: resize_and_crop(node, spec)).mean(mean).scale(scale)
    built = ppp.build()
    built.inputs[0].get_tensor().set_names({image_input.FRAME_INPUT_NAME})
    return built


def resize_and_crop(node, spec: ModelSpec):
    """The spec's resize and center crop of a uint8 NHWC frame: ``frame_graph``'s nodes, converted and spliced in."""
    import openvino as ov

    onnx_bytes = frame_graph.resize_crop_model(spec).SerializeToString()
    resize = ov.Core().read_model(onnx_bytes, ov.Tensor(ov.Type.u8, [0]))  # OpenVINO's ONNX frontend, from memory
    (pixels,) = resize.get_parameters()
    for consumer in pixels.output(0).get_target_inputs():
        consumer.replace_source_output(node)
    return resize.get_results()[0].input_value(0)
