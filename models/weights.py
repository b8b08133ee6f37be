"""load_weights(source): one `--weights` value -> the model in eval mode, its spec and WeightsInfo."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from vitship.models.digest import file_sha256
from vitship.models.errors import WeightsError
from vitship.models.hf_format import convert_state_dict, read_transformers_dir
from vitship.models.outliers import default_recipe, fit_head, plant_outliers
from vitship.models.spec import DEFAULT_SPEC, ModelSpec
from vitship.models.vit import DetectorModel, build_vit, seeded_vit

DEFAULT_SEED = 0
PUBLISHED_REPO = "buildborderless/CommunityForensics-DeepfakeDet-ViT"
_STRIP_PREFIXES = ("module.", "model.", "vit.")
_HF_FILES = ["config.json", "model.safetensors", "preprocessor_config.json"]


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from and what they hash to; goes into every manifest and report."""

    source: str
    kind: str  # seeded | seeded-outliers | seeded-outliers-trained | transformers-dir | state-dict | hub
    sha256: str
    trained: bool
    revision: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    num_params: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WeightsInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class LoadedModel(NamedTuple):
    model: DetectorModel
    spec: ModelSpec
    info: WeightsInfo


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, dtypes, shapes and bytes, independent of how it was stored."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _finish(vit: nn.Module, spec: ModelSpec, info: WeightsInfo) -> LoadedModel:
    model = DetectorModel(vit).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    num_params = sum(p.numel() for p in model.parameters())
    return LoadedModel(model, spec, dataclasses.replace(info, num_params=num_params))


def _load_into(vit: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{where}: keys do not match a {type(vit).__name__}; missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            f"unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise WeightsError(f"{where}: shape mismatch: {'; '.join(wrong[:5])}")
    vit.load_state_dict(state, strict=True)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err}); is it truncated or corrupt?") from err


def _read_torch_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsError(
            f"{path}: refused: the pickle holds objects other than tensors (possible code execution); "
            "only plain state dicts load. Convert it to .safetensors in a trusted environment."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return obj


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_seeded(seed: int = DEFAULT_SEED, spec: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    vit = seeded_vit(spec, seed)
    sha = state_dict_sha256(vit.state_dict())
    info = WeightsInfo(source=f"seeded:{seed}", kind="seeded", sha256=sha, trained=False)
    return _finish(vit, spec, info)


def load_seeded_outliers(seed: int = DEFAULT_SEED, spec: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    """The seeded weights with trained-like outlier channels planted (same fp32 function; models/outliers.py)."""
    vit = seeded_vit(spec, seed)
    plant_outliers(vit, seed, default_recipe(spec.embed_dim))
    sha = state_dict_sha256(vit.state_dict())
    info = WeightsInfo(source=f"seeded-outliers:{seed}", kind="seeded-outliers", sha256=sha, trained=False)
    return _finish(vit, spec, info)


def load_seeded_outliers_trained(seed: int = DEFAULT_SEED, spec: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    """seeded-outliers with a trained-like head: logits spread over +-4 on the bundled photos (models/outliers.py).

    The int8 stress model whose decisions matter: the head reads the features' top principal direction on the
    bundled photos, so a feature error along it moves the probabilities as a trained detector's would.
    """
    from vitship.models.preprocess import preprocess
    from vitship.models.samples import sample_images

    vit = seeded_vit(spec, seed)
    plant_outliers(vit, seed, default_recipe(spec.embed_dim))
    model = DetectorModel(vit).eval()
    fit_head(model, preprocess(sample_images(), spec))
    sha = state_dict_sha256(vit.state_dict())
    info = WeightsInfo(source=f"seeded-outliers-trained:{seed}", kind="seeded-outliers-trained", sha256=sha, trained=False)
    return _finish(vit, spec, info)


def _seed_of(source: str) -> int:
    seed_text = source.partition(":")[2] or str(DEFAULT_SEED)
    if not seed_text.isdigit():
        name = source.partition(":")[0]
        raise WeightsError(f"{source!r}: the seed must be a non-negative integer, e.g. {name}:1")
    return int(seed_text)


def load_state_dict_file(path: Path, spec: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    state = read_safetensors(path) if path.suffix == ".safetensors" else _read_torch_pickle(path)
    vit = build_vit(spec)
    _load_into(vit, _strip_prefixes(state), str(path))
    sha = file_sha256(path)
    info = WeightsInfo(source=str(path), kind="state-dict", sha256=sha, trained=True, files={path.name: sha})
    return _finish(vit, spec, info)


def load_transformers_dir(directory: Path, base: ModelSpec = DEFAULT_SPEC, *, source: str | None = None,
                          revision: str | None = None, kind: str = "transformers-dir") -> LoadedModel:
    spec, weights_path = read_transformers_dir(directory, base)
    vit = build_vit(spec)
    _load_into(vit, convert_state_dict(read_safetensors(weights_path), spec), str(weights_path))
    files = {p.name: file_sha256(p) for p in sorted(directory.iterdir()) if p.name in _HF_FILES}
    info = WeightsInfo(source=source or str(directory), kind=kind, sha256=files["model.safetensors"],
                       trained=True, revision=revision, files=files)
    return _finish(vit, spec, info)


def load_from_hub(reference: str, base: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    """Load `hf:ORG/NAME@REVISION` through huggingface_hub (a pinned revision is strongly advised)."""
    match = re.fullmatch(r"hf:([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?", reference)
    if not match:
        raise WeightsError(f"{reference!r}: expected hf:ORG/NAME@REVISION, e.g. hf:{PUBLISHED_REPO}@<commit>")
    repo_id, revision = match.groups()
    if revision is None:
        warnings.warn(f"{reference}: no @REVISION given; the hub reference floats and results may change. "
                      "Pin a commit: hf:ORG/NAME@<sha>.", stacklevel=2)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise WeightsError("huggingface_hub is not installed; run: pip install huggingface_hub") from err
    try:
        local = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=_HF_FILES)
    except Exception as err:  # the hub raises many types (offline, HTTP, auth); all mean the same to the user
        raise WeightsError(
            f"{reference}: could not download from the Hugging Face hub ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            f"If this machine is offline, download config.json, model.safetensors and preprocessor_config.json "
            f"elsewhere (huggingface-cli download {repo_id}{' --revision ' + revision if revision else ''}) "
            "and pass the directory: --weights PATH/TO/DIR"
        ) from err
    return load_transformers_dir(Path(local), base, source=reference, revision=revision, kind="hub")


def load_weights(source: str = "seeded", spec: ModelSpec = DEFAULT_SPEC) -> LoadedModel:
    """Load the model from one `--weights` value.

    Args:
        source: "seeded", "seeded:N", "seeded-outliers[:N]" (the seeded weights with trained-like
            outlier channels, same fp32 function), "seeded-outliers-trained[:N]" (those plus a trained-like
            head), a transformers-format directory, a timm state dict
            (.safetensors/.pt/.pth) or "hf:ORG/NAME@REVISION".
        spec: the architecture for seeded and state-dict sources (a directory brings its own).
    Returns:
        LoadedModel(model in eval mode, spec, WeightsInfo).
    """
    if source == "seeded" or source.startswith("seeded:"):
        return load_seeded(_seed_of(source), spec)
    if source == "seeded-outliers" or source.startswith("seeded-outliers:"):
        return load_seeded_outliers(_seed_of(source), spec)
    if source == "seeded-outliers-trained" or source.startswith("seeded-outliers-trained:"):
        return load_seeded_outliers_trained(_seed_of(source), spec)
    if source.startswith("hf:"):
        return load_from_hub(source, spec)
    path = Path(source).expanduser()
    if path.is_dir():
        return load_transformers_dir(path, spec)
    if path.is_file() and path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        return load_state_dict_file(path, spec)
    if not path.exists():
        raise WeightsError(f"{source!r}: no such file or directory (expected seeded[:N], seeded-outliers[:N], seeded-outliers-trained[:N], a directory, a .safetensors/.pt file or hf:ORG/NAME@REV)")
    raise WeightsError(f"{source}: unsupported weights file type {path.suffix!r}; use .safetensors, .pt or .pth")
