"""Name a format's tensors by the torch module that computes them, by value, so names agree across formats.

Every format renames tensors its own way (ONNX ``linear_4``, OpenVINO ``__module.vit.blocks.0...``, MIL
``var_123``, ...), and some drop the module path altogether. What they all keep is the value: the fp32
artifact computes, for one image, the same numbers as the PyTorch module. So the PyTorch model runs once
with forward hooks on every module, and each module's output (and input) is matched to the fp32
artifact's tensors by a layout-free fingerprint: the element count and the sorted values sampled at fixed
quantiles (a transpose or reshape of the same numbers has the same fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINGERPRINT_POINTS = 65
MATCH_TOLERANCE = 2e-3  # relative to the tensor's largest magnitude: fp32 formats agree to ~1e-6
_PASS_THROUGH = ("Identity", "Dropout", "DropPath")  # modules that only forward their input


@dataclass(frozen=True)
class ModuleSite:
    """One torch module's output (and input) fingerprint, from a single image."""

    module: str  # the module path without the DetectorModel wrapper's ``vit.`` prefix
    kind: str  # the module's class name
    output: tuple[int, np.ndarray]
    input: tuple[int, np.ndarray] | None

    @property
    def pass_through(self) -> bool:
        return self.kind in _PASS_THROUGH


@dataclass(frozen=True)
class Label:
    """A format tensor named by its module, with the tensor that feeds that module (None: the model input)."""

    module: str
    tensor: str
    input_tensor: str | None


def fingerprint(values: np.ndarray) -> tuple[int, np.ndarray]:
    """(element count, sorted values at FINGERPRINT_POINTS quantiles): the same for any layout of the numbers."""
    flat = np.sort(np.asarray(values, np.float64).ravel())
    index = np.linspace(0, flat.size - 1, FINGERPRINT_POINTS).round().astype(int) if flat.size else np.zeros(0, int)
    return flat.size, flat[index]


def same_values(a: tuple[int, np.ndarray], b: tuple[int, np.ndarray]) -> bool:
    if a[0] != b[0] or a[0] < 1:
        return False
    scale = max(float(np.abs(b[1]).max(initial=0.0)), 1e-6)
    return bool(np.abs(a[1] - b[1]).max() <= MATCH_TOLERANCE * scale)


def module_sites(model, image: np.ndarray) -> list[ModuleSite]:
    """Run ``model`` (a DetectorModel) on one preprocessed image with a hook on every module, in call order."""
    import torch

    sites: list[ModuleSite] = []

    def hook(name: str):
        def record(module, inputs, output) -> None:
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            sites.append(ModuleSite(name, type(module).__name__, fingerprint(output.detach().numpy()),
                                    None if first is None else fingerprint(first.detach().numpy())))
        return record

    handles = [module.register_forward_hook(hook(name.removeprefix("vit.")))
               for name, module in model.named_modules() if name and name != "vit"]
    try:
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    return sites


def _preference(site: ModuleSite) -> tuple:
    """Which of several modules with the same output names the tensor: a computing leaf, then the deepest."""
    return (site.pass_through, -site.module.count("."))


def label_tensors(sites: list[ModuleSite], tensors: dict[str, np.ndarray], outputs: dict[str, str]) -> list[Label]:
    """The tensors (format name -> one image's values, in graph order) that a module computes, in graph order.

    Args:
        sites: the modules' fingerprints (``module_sites``).
        tensors: the fp32 artifact's float tensors for the same image, in graph order.
        outputs: the model outputs' format tensor names by output name (``{"features": ..., "logits": ...}``);
            they are always labelled by the output name.
    Returns:
        One Label per module that was found, the tensor being the first in graph order that matches its output.
    """
    prints = {name: fingerprint(values) for name, values in tensors.items()}
    order = {name: i for i, name in enumerate(tensors)}

    def first_match(target) -> str | None:
        return next((name for name, fp in prints.items() if target is not None and same_values(fp, target)), None)

    chosen: dict[str, ModuleSite] = {}
    for site in sites:
        tensor = first_match(site.output)
        if tensor is not None and (tensor not in chosen or _preference(site) < _preference(chosen[tensor])):
            chosen[tensor] = site
    by_output = {tensor: name for name, tensor in outputs.items()}
    labels = [Label(by_output.get(tensor, site.module), tensor, first_match(site.input)) for tensor, site in chosen.items()]
    labels += [Label(name, tensor, None) for name, tensor in outputs.items() if tensor not in chosen and tensor in order]
    return sorted(labels, key=lambda label: order[label.tensor])
