"""Weight loading: seeded determinism, transformers-format round trips, timm state dicts and every error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers  # noqa: E402  (the [test] extra: a broken install fails, never skips)

from vitship.models import WeightsError, load_weights, preprocess, sample_images, tiny_spec
from vitship.models.weights import state_dict_sha256

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=64, patch_size=16)
PUBLISHED = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=384, patch_size=16)


def save_hf_vit(folder: Path, num_labels: int, seed: int = 0, processor: str = "pil", **config) -> "transformers.ViTForImageClassification":
    """A randomly initialised ViTForImageClassification + image processor saved with save_pretrained."""
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.models.vit import ViTImageProcessorPil

    id2label = {0: "fake"} if num_labels == 1 else {0: "real", 1: "fake"}
    cfg = ViTConfig(num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **config)
    torch.manual_seed(seed)
    model = ViTForImageClassification(cfg).eval()
    # Random init leaves LayerNorms at identity and biases at zero; perturb them so a mapping bug shows.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bias" in name or "layernorm" in name:
                param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(folder)
    size = cfg.image_size
    ViTImageProcessorPil(size={"height": size, "width": size}, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return model


@pytest.mark.parametrize("shape", ["tiny", pytest.param("published", marks=pytest.mark.slow)])
@pytest.mark.parametrize("num_labels", [1, 2])
def test_transformers_round_trip_matches_transformers_logits(tmp_path, shape, num_labels):
    dims = TINY if shape == "tiny" else PUBLISHED
    reference = save_hf_vit(tmp_path, num_labels, **dims)
    loaded = load_weights(str(tmp_path))
    assert loaded.spec.embed_dim == dims["hidden_size"] and loaded.spec.depth == dims["num_hidden_layers"]
    assert loaded.spec.num_heads == dims["num_attention_heads"] and loaded.spec.mlp_dim == dims["intermediate_size"]
    assert loaded.spec.head_kind == ("sigmoid" if num_labels == 1 else "softmax")
    assert loaded.spec.labels == (("fake",) if num_labels == 1 else ("real", "fake"))
    assert loaded.spec.layer_norm_eps == 1e-12 and loaded.info.trained and loaded.info.kind == "transformers-dir"
    photos = sample_images(limit=None if shape == "tiny" else 6)
    pixels = torch.from_numpy(preprocess(photos, loaded.spec))
    with torch.no_grad():
        expected = reference(pixel_values=pixels).logits
        logits, features = loaded.model(pixels)
    assert logits.shape == (len(photos), num_labels) and features.shape == (len(photos), dims["hidden_size"])
    assert torch.allclose(logits, expected, atol=1e-4), (logits - expected).abs().max()


@pytest.mark.parametrize("act,torch_act", [("gelu_new", "tanh"), ("relu", None)])
def test_transformers_activation_and_qkv_bias_are_honoured(tmp_path, act, torch_act):
    reference = save_hf_vit(tmp_path, 1, hidden_act=act, qkv_bias=False, layer_norm_eps=1e-5, **TINY)
    loaded = load_weights(str(tmp_path))
    assert loaded.spec.act == act and not loaded.spec.qkv_bias and loaded.spec.layer_norm_eps == 1e-5
    assert loaded.model.vit.blocks[0].attn.qkv.bias is None
    pixels = torch.from_numpy(preprocess(sample_images(limit=4), loaded.spec))
    with torch.no_grad():
        assert torch.allclose(loaded.model(pixels)[0], reference(pixel_values=pixels).logits, atol=1e-4)


def test_transformers_config_that_timm_cannot_express_names_the_field(tmp_path):
    save_hf_vit(tmp_path, 1, hidden_act="gelu_10", **TINY)
    with pytest.raises(WeightsError, match="hidden_act"):
        load_weights(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(hidden_act="gelu", num_labels=5, id2label={str(i): f"c{i}" for i in range(5)})
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="num_labels=5"):
        load_weights(str(tmp_path))


def test_preprocessor_config_drives_preprocessing(tmp_path):
    save_hf_vit(tmp_path, 2, **TINY)
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    pre.update(size={"shortest_edge": 72}, do_center_crop=True, crop_size={"height": 64, "width": 64},
               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], resample=2)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    spec = load_weights(str(tmp_path)).spec
    assert (spec.resize_mode, spec.resize_size, spec.do_center_crop, spec.crop_size) == ("shortest_edge", (72, 72), True, (64, 64))
    assert spec.interpolation == "bilinear" and spec.mean == (0.485, 0.456, 0.406)
    pre["crop_size"] = {"height": 48, "width": 48}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(WeightsError, match="expects 64x64"):
        load_weights(str(tmp_path))


def test_seeded_weights_are_deterministic():
    first, second = load_weights("seeded", tiny_spec()), load_weights("seeded:0", tiny_spec())
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].numpy().tobytes() == b[k].numpy().tobytes() for k in a)
    assert first.info.sha256 == second.info.sha256 == state_dict_sha256(first.model.vit.state_dict())
    assert not first.info.trained
    other = load_weights("seeded:1", tiny_spec())
    assert other.info.sha256 != first.info.sha256
    with pytest.raises(WeightsError, match="seed"):
        load_weights("seeded:x", tiny_spec())


def test_seeded_default_is_the_real_vit_s_16_384():
    loaded = load_weights("seeded")
    assert loaded.info.num_params == 21_811_969  # 21.8M with a one-logit head
    assert loaded.model.vit.patch_embed.img_size == (384, 384)


def test_timm_state_dict_with_common_prefixes_loads(tmp_path):
    from safetensors.torch import save_file

    source = load_weights("seeded:3", tiny_spec())
    state = {f"module.{k}": v.clone() for k, v in source.model.vit.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save({f"model.{k}": v for k, v in source.model.vit.state_dict().items()}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        loaded = load_weights(str(tmp_path / name), tiny_spec())
        assert loaded.info.kind == "state-dict" and loaded.info.trained
        x = torch.randn(2, 3, 64, 64)
        assert torch.equal(loaded.model(x)[0], source.model(x)[0])


def test_wrong_keys_are_listed(tmp_path):
    from safetensors.torch import save_file

    state = dict(load_weights("seeded", tiny_spec()).model.vit.state_dict())
    state["extra.weight"] = state.pop("head.weight")
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError) as err:
        load_weights(str(tmp_path / "bad.safetensors"), tiny_spec())
    assert "missing: ['head.weight']" in str(err.value) and "unexpected: ['extra.weight']" in str(err.value)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"head.weight": torch.zeros(1), "evil": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="refused"):
        load_weights(str(tmp_path / "evil.pt"), tiny_spec())
    assert not marker.exists()


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file(dict(load_weights("seeded", tiny_spec()).model.vit.state_dict()), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_weights(str(tmp_path / "w.safetensors"), tiny_spec())


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_weights(str(tmp_path / "nope.safetensors"))
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(WeightsError, match="unsupported weights file"):
        load_weights(str(tmp_path / "w.txt"))


def test_hub_reference_offline_says_how_to_pass_a_directory(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "vitship.bench.cli", "doctor", "--arch", "tiny", "--weights",
                             "hf:buildborderless/CommunityForensics-DeepfakeDet-ViT@main"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "--weights PATH/TO/DIR" in result.stderr and "Traceback" not in result.stderr


def test_hub_reference_without_revision_warns(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.warns(UserWarning, match="floats"), pytest.raises(WeightsError, match="could not download"):
        load_weights("hf:org/name", tiny_spec())


def test_hub_reference_loads_a_downloaded_snapshot(tmp_path, monkeypatch):
    import huggingface_hub

    save_hf_vit(tmp_path, 1, **TINY)
    calls = {}

    def fake_download(repo_id, revision, allow_patterns):
        calls.update(repo_id=repo_id, revision=revision)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    loaded = load_weights("hf:org/name@abc123", tiny_spec())
    assert calls == {"repo_id": "org/name", "revision": "abc123"}
    assert loaded.info.kind == "hub" and loaded.info.revision == "abc123" and loaded.info.source == "hf:org/name@abc123"


@pytest.mark.parametrize("change, named", [
    ({"hidden_size": 1_000_000, "num_attention_heads": 1}, "hidden_size implies vit.embeddings.cls_token of shape (1, 1, 1000000), "
                                                           "the file holds (1, 1, 32)"),
    ({"intermediate_size": 10**9}, "intermediate_size implies vit.encoder.layer.0.intermediate.dense.weight of shape "
                                   "(1000000000, 32), the file holds (64, 32)"),
    ({"image_size": 65536}, "image_size/patch_size implies vit.embeddings.position_embeddings of shape (1, 16777217, 32)"),
    ({"num_hidden_layers": 100_000}, "num_hidden_layers=100000, the file holds 2 layers"),
    ({"num_attention_heads": 3}, "hidden_size=32 is not divisible by num_attention_heads=3"),
])
def test_config_that_disagrees_with_its_weight_file_is_refused_before_the_model_is_built(tmp_path, monkeypatch, change, named):
    import vitship.models.weights as weights

    save_hf_vit(tmp_path, 1, **TINY)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    (tmp_path / "preprocessor_config.json").unlink()  # it would refuse a changed image_size on its own
    monkeypatch.setattr(weights, "build_vit", lambda spec: pytest.fail(f"built a model from a hostile config: {spec}"))
    with pytest.raises(WeightsError) as refused:
        load_weights(str(tmp_path))
    assert named in str(refused.value)


def test_safetensors_header_is_read_without_loading_tensors(tmp_path):
    from vitship.models.hf_format import safetensors_shapes

    save_hf_vit(tmp_path, 2, **TINY)
    shapes = safetensors_shapes(tmp_path / "model.safetensors")
    assert shapes["classifier.weight"] == (2, 32) and shapes["vit.embeddings.position_embeddings"] == (1, 17, 32)
    (tmp_path / "bad.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match="header length 1000000000000 does not fit the file"):
        safetensors_shapes(tmp_path / "bad.safetensors")
