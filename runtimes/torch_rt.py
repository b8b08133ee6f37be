"""The PyTorch runtime: the reference itself, on cpu and cuda, in fp32, fp16 and bf16 (eager, compile, CUDA graphs)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from vitship.exporters.base import Artifact
from vitship.models import FEATURES_NAME, LOGITS_NAME, LoadedModel, ModelSpec, load_weights
from vitship.runtimes.base import RuntimeFailure, RuntimeUnavailable, SessionInfo, TargetStatus

TORCH_FORMAT = "torch"
TORCH_PRECISIONS = ("fp32", "fp16", "bf16")


def torch_artifact(loaded: LoadedModel, precision: str = "fp32") -> Artifact:
    """The PyTorch model as a pseudo-artifact `torch-<precision>`.

    Its `path` is the weights source and its `sha256` the weights sha256, so a torch session can be
    opened without the LoadedModel (the weights are reloaded and their sha256 verified).
    """
    if precision not in TORCH_PRECISIONS:
        raise RuntimeUnavailable(f"torch runs {', '.join(TORCH_PRECISIONS)}, not {precision!r}")
    info = loaded.info
    return Artifact(id=f"{TORCH_FORMAT}-{precision}", format=TORCH_FORMAT, precision=precision, path=info.source,
                    sha256=info.sha256, weights=info.to_dict(), input_spec=loaded.spec.to_dict())


def targets() -> list[TargetStatus]:
    import torch

    cuda = torch.cuda.is_available()
    reason = "" if cuda else f"no CUDA device visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return [TargetStatus("torch:cpu", True), TargetStatus("torch:cuda", cuda, reason)]


def _model_for(artifact: Artifact, options) -> LoadedModel:
    """The LoadedModel from the options, or reloaded from the recorded weights source (sha256 verified)."""
    expected = artifact.weights.get("sha256") or artifact.sha256
    loaded = options.loaded
    if loaded is None:
        spec = ModelSpec.from_dict(artifact.input_spec) if artifact.input_spec else ModelSpec()
        loaded = load_weights(artifact.weights.get("source", artifact.path), spec)
    if expected and loaded.info.sha256 != expected:
        raise RuntimeFailure(f"{artifact.id}: weights sha256 {loaded.info.sha256[:12]} != recorded {expected[:12]} "
                             f"(source {loaded.info.source}); the weights changed since they were recorded")
    return loaded


class TorchSession:
    """Runs the DetectorModel on one device in one dtype; outputs are float32 numpy arrays."""

    def __init__(self, loaded: LoadedModel, device: str, dtype_name: str, variant: str, threads: int):
        import torch

        self._torch = torch
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
        self.device = torch.device(device)
        model = loaded.model
        if self.device.type != "cpu" or self.dtype != torch.float32:
            model = copy.deepcopy(model)  # never change the caller's (reference) model in place
        model = model.to(self.device, self.dtype).eval()
        if variant == "compile":
            model = torch.compile(model)
        elif variant == "cudagraphs":
            if self.device.type != "cuda":
                raise RuntimeUnavailable("CUDA graphs need torch:cuda")
            model = torch.compile(model, mode="reduce-overhead")
        if self.device.type == "cpu":
            torch.set_num_threads(threads)
        self.model = model
        self.info = SessionInfo(target=f"torch:{device}", provider=f"torch {torch.__version__} {variant}",
                                device=device, precision=dtype_name, threads=torch.get_num_threads(),
                                extra={"variant": variant, "weights_sha256": loaded.info.sha256})

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
            logits, features = self.model(pixels)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            return {LOGITS_NAME: logits.float().cpu().numpy(), FEATURES_NAME: features.float().cpu().numpy()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch)[LOGITS_NAME]

    def close(self) -> None:
        self.model = None


def open(artifact: Artifact, model_dir: Path, device: str, options) -> TorchSession:  # noqa: A001 - adapter API
    dtype_name = options.torch_dtype or artifact.precision
    if dtype_name not in TORCH_PRECISIONS:
        raise RuntimeUnavailable(f"torch:{device} runs {', '.join(TORCH_PRECISIONS)}, not {dtype_name!r}")
    return TorchSession(_model_for(artifact, options), device, dtype_name, options.torch_variant,
                        options.resolved_threads())
