"""vitship.models.export_form: every form computes timm's function, keeps timm's names, and runs the tail it says."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tests.conftest import torch_outputs
from vitship.bench.diagnose.labels import module_sites
from vitship.models.export_form import TIMM_FORM, ExportForm

FORMS = [ExportForm(attention, norm, tail)
         for attention, norm, tail in itertools.product(("fused", "explicit", "qkv-op"), ("native", "decomposed"), (False, True))]


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"{f.attention}-{f.layer_norm}-{'tail' if f.class_token_tail else 'all'}")
def test_every_form_computes_the_fp32_function(form, tiny_loaded, tiny_photos):
    model = tiny_loaded.model.with_form(form)
    logits, features = torch_outputs(tiny_loaded, tiny_photos[:4])
    with torch.no_grad():
        got_logits, got_features = model(torch.from_numpy(tiny_photos[:4]))
    np.testing.assert_allclose(got_logits.numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(got_features.numpy(), features, atol=1e-5)


def test_a_form_shares_timms_parameters_and_names(tiny_loaded):
    form = ExportForm("explicit", "decomposed", True)
    model = tiny_loaded.model.with_form(form)
    assert tiny_loaded.model.with_form(TIMM_FORM) is tiny_loaded.model
    timm_params = dict(tiny_loaded.model.named_parameters())
    form_params = dict(model.named_parameters())
    assert form_params.keys() == timm_params.keys()  # keep_float, the int8 filters and diagnose find the same names
    assert all(form_params[name] is timm_params[name] for name in timm_params)  # shared: a SmoothQuant fold carries over
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears == {n for n, m in tiny_loaded.model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_the_class_token_tail_runs_the_last_blocks_tail_on_one_token(tiny_loaded, tiny_photos):
    """diagnose's module hooks see what the artifact computes: every token up to the last qkv, one token after it."""
    last = f"blocks.{tiny_loaded.spec.depth - 1}"
    tokens = (tiny_loaded.spec.image_size // tiny_loaded.spec.patch_size) ** 2 + 1
    width = tiny_loaded.spec.embed_dim
    sizes = {site.module: site.output[0] for site in module_sites(tiny_loaded.model.with_form(ExportForm(class_token_tail=True)),
                                                                  tiny_photos[0])}
    assert sizes[f"{last}.attn.qkv"] == tokens * 3 * width and sizes[f"{last}.norm1"] == tokens * width
    assert sizes[f"{last}.attn.proj"] == width and sizes[f"{last}.mlp.fc2"] == width and sizes[f"{last}"] == width
    assert sizes["blocks.0.mlp.fc2"] == tokens * width and sizes["norm"] == width


def test_the_form_round_trips_through_the_manifest():
    from vitship.exporters.details import ExecutorchDetails
    from vitship.exporters.schema import Artifact

    form = ExportForm("explicit", "decomposed", True)
    artifact = Artifact("executorch-int8", "executorch", "int8", "executorch-int8/model.pte", details=ExecutorchDetails(export_form=form))
    entry = artifact.to_dict()
    assert entry["details"]["export_form"] == {"attention": "explicit", "layer_norm": "decomposed", "class_token_tail": True}
    assert Artifact.from_dict(entry).details.form() == form
    del entry["details"]["export_form"]  # a manifest written before the export form: timm's own
    assert Artifact.from_dict(entry).details.form() == TIMM_FORM
