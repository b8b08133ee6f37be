"""SmoothQuant fold (exact in fp32, outliers gone), calibration folders with real/ and fake/, keep_float names."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from vitship.exporters import onnx as onnx_exporter
from vitship.exporters.base import ExportError, ExportOptions
from vitship.exporters.int8.calibration import calibration_images
from vitship.exporters.int8.onnx_recipe import nodes_for_modules
from vitship.exporters.int8.smoothing import input_channel_maxima, smoothed, smoothing_pairs
from vitship.models import load_weights, preprocess, sample_images, tiny_spec


@pytest.fixture(scope="module")
def stressed():
    return load_weights("seeded-outliers", tiny_spec())


@pytest.fixture(scope="module")
def photos():
    return preprocess(sample_images(), tiny_spec())


def outlier_ratio(loaded, images) -> float:
    linears = [linear for *_, linear in smoothing_pairs(loaded.model.vit)]
    return max(float(m.max() / m.median()) for m in input_channel_maxima(loaded.model, linears, images))


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_fold_keeps_the_fp32_function_and_removes_the_outliers(stressed, photos, alpha):
    folded, summary = smoothed(stressed, photos[:12], alpha)
    pixels = torch.from_numpy(photos)
    with torch.no_grad():
        (logits_a, features_a), (logits_b, features_b) = stressed.model(pixels), folded.model(pixels)
    assert (logits_a - logits_b).abs().max() < 1e-5 and (features_a - features_b).abs().max() < 1e-5
    assert summary.alpha == alpha and summary.pairs == 2 * tiny_spec().depth and summary.calibration_images == 12
    before, after = outlier_ratio(stressed, photos), outlier_ratio(folded, photos)
    assert before > 30 and after < before / 10  # alpha 0.5 takes about the square root of the ratio
    assert folded.model is not stressed.model and not torch.equal(folded.model.vit.blocks[0].norm1.weight,
                                                                   stressed.model.vit.blocks[0].norm1.weight)


def test_fold_refuses_an_alpha_outside_0_1(stressed, photos):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        smoothed(stressed, photos[:2], 1.5)
    with pytest.raises(ExportError, match="outside"):
        onnx_exporter.export(stressed, None, onnx_exporter.OnnxOptions(precision="int8", smooth_alpha=-0.1))


def test_calibration_folder_with_real_and_fake_uses_both_and_holds_photos_back(tmp_path):
    photos = sample_images()
    for i, photo in enumerate(photos[:10]):
        folder = tmp_path / ("real" if i < 6 else "fake")
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    options = ExportOptions(precision="int8", calibration_dir=tmp_path)
    used, info = calibration_images(tiny_spec(), options)
    held, held_info = calibration_images(tiny_spec(), options, "held_back")
    every, every_info = calibration_images(tiny_spec(), options, "all")
    assert [f.split("/")[0] for f in every_info.files][:4] == ["real", "fake", "real", "fake"]  # interleaved
    assert info.classes == {"real": 4, "fake": 3} and held_info.classes == {"real": 2, "fake": 1}
    assert len(used) + len(held) == len(every) == 10 and not set(info.files) & set(held_info.files)
    assert info.held_back == held_info.count == 3
    limited, limited_info = calibration_images(tiny_spec(), options.replace(calibration_limit=4), "all")
    assert limited_info.classes == {"real": 2, "fake": 2}
    (tmp_path / "fake").rename(tmp_path / "other")  # real/ alone: only real/ is read
    _, only_real = calibration_images(tiny_spec(), options, "all")
    assert only_real.classes == {"real": 6} and only_real.count == 6


def test_bundled_photos_are_a_stand_in_split_for_the_gate():
    _, info = calibration_images(tiny_spec(), ExportOptions(precision="int8"))
    _, held = calibration_images(tiny_spec(), ExportOptions(precision="int8"), "held_back")
    assert "stand-in" in info.source and info.count + held.count == len(sample_images())
    assert held.count == len(sample_images()) // 3


def test_keep_float_names_the_onnx_nodes_by_weight_and_refuses_unknown_names(stressed, tmp_path):
    options = onnx_exporter.OnnxOptions(precision="int8", smooth_alpha=None, keep_float=("blocks.0.attn.qkv", "blocks.1.mlp.fc1"))
    artifact = onnx_exporter.export(stressed, tmp_path, options)
    kept = artifact.details.quantization.keep_float_nodes
    assert set(kept) == set(options.keep_float) and all(len(nodes) == 1 for nodes in kept.values())
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    # still float: a plain MatMul, or for a qkv onnxruntime's float Attention kernel (not QAttention)
    float_nodes = {n.name for n in graph.node if n.op_type in ("MatMul", "Attention")}
    assert {nodes[0] for nodes in kept.values()} <= float_nodes
    assert artifact.option("keep_float") == list(options.keep_float)
    model = onnx.load(str(tmp_path / "model.onnx"))
    with pytest.raises(ExportError, match="blocks.0.attn.qkv"):
        nodes_for_modules(model, stressed, ("blocks.9.attn.qkv",))
    assert np.isfinite(artifact.details.quantization.quantized_weights)


@pytest.mark.parametrize("fmt", ["openvino", "executorch", "coreml"])
def test_every_int8_format_smooths_and_keeps_named_layers_in_float(stressed, tmp_path, fmt):
    from vitship.exporters import get_exporter, options_class

    options = options_class(fmt)(precision="int8", keep_float=("blocks.0.attn.qkv",))
    artifact = get_exporter(fmt)(stressed, tmp_path, options, None)
    assert artifact.details.smoothing.alpha == 0.5 and artifact.details.smoothing.pairs == 4
    assert artifact.option("keep_float") == ["blocks.0.attn.qkv"]
    with pytest.raises(ExportError, match="keep_float"):
        get_exporter(fmt)(stressed, tmp_path / "bad", options.replace(keep_float=("blocks.7.attn.qkv",)), None)
