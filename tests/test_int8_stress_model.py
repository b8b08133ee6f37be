"""The trained-like stress model (--weights seeded-outliers): same fp32 function as seeded, outlier activations."""

from __future__ import annotations

import pytest
import torch

from vitship.models import WeightsError, load_weights, preprocess, sample_images, tiny_spec
from vitship.models.spec import DEFAULT_SPEC


def qkv_input_channel_maxima(loaded, pixels: torch.Tensor) -> torch.Tensor:
    seen = {}
    hook = loaded.model.vit.blocks[0].attn.qkv.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        loaded.model(pixels)
    hook.remove()
    return seen["x"].abs().amax(dim=(0, 1))


@pytest.mark.parametrize("spec", [tiny_spec(), pytest.param(DEFAULT_SPEC, marks=pytest.mark.slow)], ids=["tiny", "vit-s"])
def test_stress_model_computes_what_seeded_computes_with_outlier_channels(spec):
    seeded, stressed = load_weights("seeded", spec), load_weights("seeded-outliers", spec)
    pixels = torch.from_numpy(preprocess(sample_images(limit=None if spec is not DEFAULT_SPEC else 4), spec))
    with torch.no_grad():
        (logits_a, features_a), (logits_b, features_b) = seeded.model(pixels), stressed.model(pixels)
    assert (logits_a - logits_b).abs().max() < 1e-5 and (features_a - features_b).abs().max() < 1e-5
    assert stressed.info.source == "seeded-outliers:0" and stressed.info.kind == "seeded-outliers"
    assert not stressed.info.trained and stressed.info.sha256 != seeded.info.sha256
    plain, planted = qkv_input_channel_maxima(seeded, pixels), qkv_input_channel_maxima(stressed, pixels)
    assert plain.max() < 3 * plain.median()  # seeded: no outliers
    assert planted.max() > 30 * planted.median()  # stress model: one to two orders of magnitude


def test_stress_model_is_deterministic_per_seed_and_refuses_a_bad_seed():
    first, again = load_weights("seeded-outliers", tiny_spec()), load_weights("seeded-outliers:0", tiny_spec())
    assert first.info.sha256 == again.info.sha256
    assert load_weights("seeded-outliers:1", tiny_spec()).info.sha256 != first.info.sha256
    with pytest.raises(WeightsError, match="seeded-outliers:1"):
        load_weights("seeded-outliers:x", tiny_spec())
