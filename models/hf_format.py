"""Read a transformers-format ViTForImageClassification checkpoint into a ModelSpec and a timm state dict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from vitship.models.errors import WeightsError
from vitship.models.spec import ModelSpec
from vitship.models.vit import supported_activations

# PIL resample codes used by transformers' image processors.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: cannot read JSON ({err})") from err


def _labels(config: dict) -> tuple[str, ...]:
    num_labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    if id2label and sorted(id2label) != list(range(num_labels)):
        raise WeightsError(f"id2label keys {sorted(id2label)} do not match num_labels={num_labels}")
    if num_labels not in (1, 2):
        raise WeightsError(f"num_labels={num_labels}: vitship ships binary real/fake detectors (1 or 2 labels)")
    default = ("fake",) if num_labels == 1 else ("real", "fake")
    return tuple(id2label.get(i, default[i]) for i in range(num_labels))


def spec_from_config(config: dict, preprocessor: dict | None, base: ModelSpec) -> ModelSpec:
    """Derive the ModelSpec from config.json (and preprocessor_config.json when present)."""
    archs = config.get("architectures") or []
    if config.get("model_type") != "vit" or "ViTForImageClassification" not in archs:
        raise WeightsError(
            f"config.json: architectures={archs} model_type={config.get('model_type')!r}; "
            "expected a 'vit' ViTForImageClassification checkpoint"
        )
    act = config.get("hidden_act", "gelu")
    if act not in supported_activations():
        raise WeightsError(f"config.json: hidden_act={act!r} is not supported; use one of {supported_activations()}")
    for field in ("image_size", "patch_size"):
        if not isinstance(config.get(field, 16), int):
            raise WeightsError(f"config.json: {field}={config.get(field)!r} must be a single integer")
    labels = _labels(config)
    spec = base.replace(
        name=config.get("_name_or_path") and Path(str(config["_name_or_path"])).name.lower() or base.name,
        architecture="vit_from_transformers_config",
        image_size=int(config.get("image_size", 224)),
        patch_size=int(config.get("patch_size", 16)),
        channels=int(config.get("num_channels", 3)),
        embed_dim=int(config.get("hidden_size", 768)),
        depth=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_dim=int(config.get("intermediate_size", 3072)),
        qkv_bias=bool(config.get("qkv_bias", True)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        act=act,
        labels=labels,
        head_kind="sigmoid" if len(labels) == 1 else "softmax",
        resize_size=(int(config.get("image_size", 224)),) * 2,
        crop_size=(int(config.get("image_size", 224)),) * 2,
        resize_mode="exact",
        do_center_crop=False,
    )
    return _apply_preprocessor(spec, preprocessor) if preprocessor else spec


def _size_pair(value, field: str) -> tuple[str, tuple[int, int]]:
    if isinstance(value, int):
        return "shortest_edge", (value, value)
    if isinstance(value, dict) and "height" in value and "width" in value:
        return "exact", (int(value["height"]), int(value["width"]))
    if isinstance(value, dict) and "shortest_edge" in value:
        return "shortest_edge", (int(value["shortest_edge"]),) * 2
    raise WeightsError(f"preprocessor_config.json: {field}={value!r} is not a size vitship understands")


def _apply_preprocessor(spec: ModelSpec, pre: dict) -> ModelSpec:
    changes: dict = {}
    if pre.get("do_resize", True) and "size" in pre:
        changes["resize_mode"], changes["resize_size"] = _size_pair(pre["size"], "size")
    if "resample" in pre:
        if pre["resample"] not in _PIL_RESAMPLE:
            raise WeightsError(f"preprocessor_config.json: resample={pre['resample']!r} is not a PIL filter code")
        changes["interpolation"] = _PIL_RESAMPLE[pre["resample"]]
    if pre.get("do_center_crop"):
        changes["do_center_crop"] = True
        _, changes["crop_size"] = _size_pair(pre.get("crop_size", pre.get("size")), "crop_size")
    else:
        changes["do_center_crop"] = False
        changes["crop_size"] = changes.get("resize_size", spec.resize_size)
    if pre.get("do_normalize", True):
        changes["mean"] = tuple(float(x) for x in pre.get("image_mean", spec.mean))
        changes["std"] = tuple(float(x) for x in pre.get("image_std", spec.std))
    else:
        changes["mean"], changes["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    changes["rescale_factor"] = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    spec = spec.replace(**changes)
    if spec.input_shape[1:] != (spec.image_size, spec.image_size):
        raise WeightsError(
            f"preprocessor_config.json produces {spec.input_shape[1:]} images but the model expects "
            f"{spec.image_size}x{spec.image_size} (config.json image_size)"
        )
    return spec


# transformers >= 5 names its modules differently in memory (files saved by save_pretrained keep the
# published names); accept both by mapping the new names onto the published ones.
_V5_ALIASES = [
    (re.compile(r"^vit\.layers\.(\d+)\.attention\.([qkv])_proj\."), None),
    (re.compile(r"^vit\.layers\.(\d+)\.attention\.o_proj\."), r"vit.encoder.layer.\1.attention.output.dense."),
    (re.compile(r"^vit\.layers\.(\d+)\.mlp\.fc1\."), r"vit.encoder.layer.\1.intermediate.dense."),
    (re.compile(r"^vit\.layers\.(\d+)\.mlp\.fc2\."), r"vit.encoder.layer.\1.output.dense."),
    (re.compile(r"^vit\.layers\.(\d+)\."), r"vit.encoder.layer.\1."),
]
_QKV = {"q": "query", "k": "key", "v": "value"}


def _published_name(key: str) -> str:
    for pattern, replacement in _V5_ALIASES:
        match = pattern.match(key)
        if match and replacement is None:
            return f"vit.encoder.layer.{match[1]}.attention.attention.{_QKV[match[2]]}." + key[match.end():]
        if match:
            return pattern.sub(replacement, key, count=1)
    return key


def convert_state_dict(hf: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Map ViTForImageClassification keys onto timm VisionTransformer keys (q/k/v fused into qkv)."""
    hf = {_published_name(k.removeprefix("module.")): v for k, v in hf.items()}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise WeightsError(f"model.safetensors: missing key {key!r} for a {spec.depth}-layer ViT")
        used.add(key)
        return hf[key]

    emb = "vit.embeddings."
    out["cls_token"] = take(emb + "cls_token")
    out["pos_embed"] = take(emb + "position_embeddings")
    out["patch_embed.proj.weight"] = take(emb + "patch_embeddings.projection.weight")
    out["patch_embed.proj.bias"] = take(emb + "patch_embeddings.projection.bias")
    for i in range(spec.depth):
        src, dst = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        att = src + "attention.attention."
        for p in ("weight", "bias"):
            out[dst + f"norm1.{p}"] = take(src + f"layernorm_before.{p}")
            out[dst + f"norm2.{p}"] = take(src + f"layernorm_after.{p}")
            out[dst + f"attn.proj.{p}"] = take(src + f"attention.output.dense.{p}")
            out[dst + f"mlp.fc1.{p}"] = take(src + f"intermediate.dense.{p}")
            out[dst + f"mlp.fc2.{p}"] = take(src + f"output.dense.{p}")
        out[dst + "attn.qkv.weight"] = torch.cat([take(att + f"{n}.weight") for n in ("query", "key", "value")])
        if spec.qkv_bias:
            out[dst + "attn.qkv.bias"] = torch.cat([take(att + f"{n}.bias") for n in ("query", "key", "value")])
    for p in ("weight", "bias"):
        out[f"norm.{p}"] = take(f"vit.layernorm.{p}")
        out[f"head.{p}"] = take(f"classifier.{p}")
    unexpected = sorted(set(hf) - used - {"vit.pooler.dense.weight", "vit.pooler.dense.bias"})
    if unexpected:
        raise WeightsError(f"model.safetensors: unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    return out


MAX_HEADER_BYTES = 100 * 2**20  # a safetensors JSON header larger than this is not a ViT checkpoint


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's JSON header, without reading (or allocating) any tensor."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError(f"header length {length} does not fit the file")
            header = json.loads(handle.read(length))
        return {name: tuple(int(d) for d in entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err}); is it truncated or corrupt?") from err


def _expected_shapes(spec: ModelSpec) -> list[tuple[str, str, tuple[int, ...]]]:
    """(config.json field, published tensor name, the shape that field implies) for every dimension."""
    width, grid = spec.embed_dim, spec.image_size // spec.patch_size
    layer = "vit.encoder.layer.0."
    return [
        ("hidden_size", "vit.embeddings.cls_token", (1, 1, width)),
        ("num_channels/patch_size", "vit.embeddings.patch_embeddings.projection.weight",
         (width, spec.channels, spec.patch_size, spec.patch_size)),
        ("image_size/patch_size", "vit.embeddings.position_embeddings", (1, grid * grid + 1, width)),
        ("hidden_size", layer + "attention.attention.query.weight", (width, width)),
        ("intermediate_size", layer + "intermediate.dense.weight", (spec.mlp_dim, width)),
        ("num_labels", "classifier.weight", (spec.num_classes, width)),
    ]


def check_config_against_weights(spec: ModelSpec, weights_path: Path) -> None:
    """Refuse a config.json whose dimensions disagree with model.safetensors, before any model is built.

    A hostile or mismatched config (hidden_size=10**6) would otherwise make the ViT allocate terabytes.
    """
    shapes = {_published_name(k.removeprefix("module.")): v for k, v in safetensors_shapes(weights_path).items()}
    if spec.num_heads < 1 or spec.embed_dim % spec.num_heads:
        raise WeightsError(f"config.json: hidden_size={spec.embed_dim} is not divisible by "
                           f"num_attention_heads={spec.num_heads}")
    for field, name, expected in _expected_shapes(spec):
        if name not in shapes:
            raise WeightsError(f"{weights_path.name}: missing key {name!r} for a ViTForImageClassification checkpoint")
        if shapes[name] != expected:
            raise WeightsError(f"config.json does not match {weights_path.name}: {field} implies {name} of shape "
                               f"{expected}, the file holds {shapes[name]}; use the config.json saved with these weights")
    layers = {int(m[1]) for k in shapes if (m := re.match(r"vit\.encoder\.layer\.(\d+)\.", k))}
    if len(layers) != spec.depth:
        raise WeightsError(f"config.json does not match {weights_path.name}: num_hidden_layers={spec.depth}, "
                           f"the file holds {len(layers)} layers; use the config.json saved with these weights")


def read_transformers_dir(directory: Path, base: ModelSpec) -> tuple[ModelSpec, Path]:
    """Validate a transformers-format directory; return its spec and the safetensors path."""
    config_path = directory / "config.json"
    weights_path = directory / "model.safetensors"
    if not config_path.is_file():
        raise WeightsError(f"{directory}: no config.json (expected a transformers-format ViTForImageClassification directory)")
    if not weights_path.is_file():
        found = sorted(p.name for p in directory.iterdir())
        raise WeightsError(f"{directory}: no model.safetensors (found: {found}); save with save_pretrained(safe_serialization=True)")
    pre_path = directory / "preprocessor_config.json"
    preprocessor = _read_json(pre_path) if pre_path.is_file() else None
    spec = spec_from_config(_read_json(config_path), preprocessor, base)
    check_config_against_weights(spec, weights_path)
    return spec, weights_path
