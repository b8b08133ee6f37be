"""How far the in-graph resize and crop is from vitship's Pillow preprocessing, per runtime and precision.

``python -m vitship.bench.frames_distance`` prints a markdown table (docs/MEASUREMENTS.md "Image-input artifacts"):
the preprocessing nodes alone (``exporters.frame_graph``), fed the bundled photos decoded at their own sizes and
seeded random frames (bench/parity/frames.py sizes), against ``models.preprocess`` in 8-bit levels of the resized,
cropped frame. The end-to-end effect on the model is parity's (``vitship parity``, inputs "frames").
"""

from __future__ import annotations

import sys

import numpy as np

from vitship.models import DEFAULT_SPEC, ModelSpec, load_image, preprocess, sample_images

RANDOM_SIZES = ((1080, 1920), (1920, 1080), (1, 10), (97, 64), (385, 384), (767, 1535), (3024, 4032))


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    random = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in RANDOM_SIZES]
    return [np.asarray(load_image(p)) for p in sample_images()] + random


def runners(spec: ModelSpec) -> dict[str, object]:
    """name -> run(frame) -> resized 8-bit values (float NHWC), for onnxruntime and OpenVINO at each precision."""
    import onnxruntime as ort
    import openvino as ov

    from vitship.exporters import frame_graph

    onnx_bytes = frame_graph.resize_crop_model(spec).SerializeToString()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out = {"onnxruntime:cpu (fp32)": lambda f: session.run(None, {"pixels": f[None]})[0][0]}
    core = ov.Core()
    for hint in ("f32", "bf16"):
        model = core.read_model(onnx_bytes, ov.Tensor(ov.Type.u8, [0]))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        out[f"openvino:CPU ({hint})"] = lambda f, c=compiled: c({0: f[None]})[0][0]
    return out


def measure(spec: ModelSpec = DEFAULT_SPEC) -> dict[str, dict[str, float]]:
    """name -> {max_levels, share_off_by_1 (fraction of values 1+ level away), mean_levels} over every frame."""
    pillow_spec = spec.replace(mean=(0.0,) * spec.channels, std=(1.0,) * spec.channels, rescale_factor=1.0)
    inputs = frames()
    references = [preprocess(f, pillow_spec)[0].transpose(1, 2, 0) for f in inputs]  # 0..255, as Pillow rounds them
    results = {}
    for name, run in runners(spec).items():
        levels = np.concatenate([np.abs(run(f) - r).ravel() for f, r in zip(inputs, references)])
        results[name] = {"max_levels": float(levels.max()), "share_off": float((levels > 0.5).mean()),
                         "mean_levels": float(levels.mean())}
    return results


def main() -> int:
    print(f"{len(sample_images())} photos at their own sizes + {len(RANDOM_SIZES)} random frames "
          f"({', '.join(f'{w}x{h}' for h, w in RANDOM_SIZES)}), against Pillow (models/preprocess.py)\n")
    print("| runtime (precision) | max difference (8-bit levels) | values 1+ level off | mean difference (levels) |")
    print("|---|---|---|---|")
    for name, r in measure().items():
        print(f"| {name} | {r['max_levels']:.0f} | {r['share_off']:.4%} | {r['mean_levels']:.2g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
