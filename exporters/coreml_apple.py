"""What an Apple-facing artifact promises an iPhone: ``AppleDetails`` (``Artifact.details.apple``), read by the report's iOS section.

Nothing here runs on a Neural Engine: the verdicts follow from the program's precision, its input shapes
and its op types, by the rules Apple documents. Per-op placement is only known on a Mac
(``runtimes.coreml_rt`` records MLComputePlan's where the platform has it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

# The Neural Engine runs enumerated and fixed shapes; a RangeDim model runs there only at its default shape,
# other shapes fall back to the GPU or CPU (coremltools flexible-inputs guide; coremltools issue 2370).
RANGE_DIM_LIMIT = ("a RangeDim (flexible) batch runs on the Neural Engine only at its default shape; "
                   "other batches fall back to the GPU or CPU")
FP32_LIMIT = "an fp32 ML Program never runs on the Neural Engine (it computes in fp16): Core ML runs it on the CPU or GPU"
# MIL op types with no Neural Engine path on any Apple chip so far (the scatter family, reduce_prod, the recurrent
# cells); a program holding one is split and those ops run on the CPU. A ViT holds none of them: the list
# flags a future model change rather than this one.
KNOWN_FALLBACK_OPS = frozenset({"reduce_prod", "scatter", "scatter_nd", "scatter_along_axis", "lstm", "gru", "rnn",
                                "non_maximum_suppression", "conv3d"})
NOT_FOR_NEURAL_ENGINE = "not for the Neural Engine"
# What an app sets so that Vision resizes and crops a camera frame the way the spec does (shortest side to the input
# size, aspect kept, center crop): VNCoreMLRequest.imageCropAndScaleOption, or CoreMLRequest.cropAndScaleAction on
# iOS 18+, whose default is scaleToFill (a stretch). Vision scales with its own filter, not Pillow's bicubic.
VISION_CROP_AND_SCALE = "centerCrop (VNImageCropAndScaleOption.centerCrop; iOS 18+: ImageCropAndScaleAction.centerCrop)"


class NeuralEngine(StrEnum):
    """Whether the Neural Engine can run the program, as the exporter judged it from precision, shapes and op types."""

    ELIGIBLE = "eligible"
    NOT_ELIGIBLE = "not eligible"
    NOT_RECORDED = "not recorded"  # an older manifest


@dataclass
class AppleDetails:
    """What an Apple-facing artifact promises an iPhone: Neural Engine eligibility and why, input, shapes, target."""

    neural_engine: NeuralEngine = NeuralEngine.NOT_RECORDED
    neural_engine_reason: str = ""
    input: str = "?"  # image | tensor
    batch_shapes: list[int] | str = field(default_factory=list)  # [1], [1, 2, 4, 8], or "1..64" (a RangeDim)
    minimum_deployment_target: str = ""
    compute_precision: str = ""  # fp16 | fp32
    fallback_ops: list[str] = field(default_factory=list)  # op types known to fall back to the CPU


def batch_shapes_label(kind: str, shapes: tuple[int, ...] = (), max_batch: int = 0) -> list[int] | str:
    """``[1]`` (fixed), ``[1, 2, 4, 8]`` (enumerated) or ``"1..64"`` (RangeDim), as AppleDetails records it."""
    if kind == "range":
        return f"1..{max_batch}"
    return sorted(shapes) if kind == "enumerated" else [1]


def apple_details(*, compute_precision: str, input_kind: str, batch_kind: str, batch_shapes: list[int] | str,
                  min_target: str, op_counts: dict[str, int]) -> AppleDetails:
    """Neural Engine eligibility and why, input, shapes, target, precision and fallbacks of one program.

    Args:
        compute_precision: "fp16" or "fp32" (the ML Program's compute precision).
        input_kind: "image" or "tensor".
        batch_kind: "fixed", "enumerated" or "range".
        batch_shapes: from ``batch_shapes_label``.
        min_target: the minimum deployment target, e.g. "iOS17".
        op_counts: MIL op type -> count in the saved program.
    """
    fallback = sorted(KNOWN_FALLBACK_OPS & set(op_counts))
    if compute_precision != "fp16":
        eligible, reason = False, FP32_LIMIT
    elif batch_kind == "range":
        eligible, reason = False, RANGE_DIM_LIMIT
    else:
        shapes = "a fixed batch of 1" if batch_kind == "fixed" else f"enumerated batches {batch_shapes}"
        reason = f"fp16 program at {shapes}"
        reason += f"; {', '.join(fallback)} fall back to the CPU" if fallback else "; no op type known to fall back"
        eligible = True
    return AppleDetails(NeuralEngine.ELIGIBLE if eligible else NeuralEngine.NOT_ELIGIBLE, reason, input_kind, batch_shapes,
                        min_target, compute_precision, fallback)


def mil_op_counts(spec) -> dict[str, int]:
    """MIL op types (with counts) in an ML Program spec, nested blocks included."""
    counts: Counter[str] = Counter()

    def visit(block) -> None:
        for op in block.operations:
            counts[op.type] += 1
            for nested in op.blocks:
                visit(nested)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            visit(block)
    return dict(sorted(counts.items()))
