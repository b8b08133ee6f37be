"""The parts a profile reports, their work in FLOPs, and which torch module each part is.

A part is named after the torch module that computes it, in the names ``vitship diagnose`` gives tensors
(bench/diagnose/labels.py: module paths without the DetectorModel's ``vit.`` prefix). ``ModulePlan`` is
read once from the PyTorch model by running it with labels.py's hooks: every module in call order with
its class, which says for each module path which part it is. A Linear is ``qkv`` or ``proj`` by its place
inside an attention module (the last Linear there is the projection), ``fc1`` or ``fc2`` by its place in
the MLP: the structure decides, not the attribute names, so separate q / k / v projections are ``qkv`` too.

One plan serves every export form (models/export_form.py): each form computes with timm's own nn.Linear modules,
called in timm's order, so the n-th linear op of any artifact is the n-th Linear of timm's plan; the qkv-op
form's one-kernel attention (onnxruntime's Attention) stands for its block's qkv Linear (attribute.py, rule 2),
and a decomposed LayerNorm is placed by the Linear it feeds (rule 5). What a form changes is the work, which
``part_gflop`` counts from the artifact's recorded form.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from vitship.models.export_form import TIMM_FORM, ExportForm

PATCH = "patch embedding"
QKV = "qkv"
PROJ = "proj"
FC1 = "fc1"
FC2 = "fc2"
QKV_ATTENTION = "qkv + attention (one kernel)"
QK = "attention q·k"
SOFTMAX = "attention softmax"
AV = "attention ·v"
ATTENTION = "attention (q·k, softmax, ·v in one kernel)"
ATTENTION_OTHER = "attention: other ops"
LAYERNORM = "LayerNorm"
REST = "rest"
UNATTRIBUTED = "unattributed"
OUTSIDE = "outside the kernels"

PART_ORDER = (PATCH, QKV, PROJ, FC1, FC2, QKV_ATTENTION, QK, SOFTMAX, AV, ATTENTION, ATTENTION_OTHER, LAYERNORM, REST,
              UNATTRIBUTED, OUTSIDE)
LINEAR_PARTS = (QKV, PROJ, FC1, FC2)
ATTENTION_CORE = (QK, SOFTMAX, AV, ATTENTION_OTHER)
# Parts that are matrix multiplies: their GFLOP/s is held to the roofline's GEMM peak.
GEMM_PARTS = (PATCH, QKV, PROJ, FC1, FC2, QKV_ATTENTION, QK, AV, ATTENTION)
PART_NOTES = {
    REST: "GELU, residual adds, bias adds a runtime runs apart from their matmul, class/position tokens, reshapes and "
          "transposes, quantize/convert ops, the head",
    OUTSIDE: "the call's time minus its profiled kernels: the runtime's own dispatch, delegate-call overhead, "
             "Python binding, threads waking",
    UNATTRIBUTED: "ops the runtime's profile does not let vitship place (shown, never guessed)",
    ATTENTION_OTHER: "ops between the attention matmuls that are neither a matmul nor the softmax (mask logic, scaling)",
}
_PASS_THROUGH = ("Identity", "Dropout", "DropPath")


def part_gflop(spec, form: ExportForm = TIMM_FORM) -> dict[str, float]:
    """GFLOP per image of each matrix-multiply part (1 multiply-add = 2 FLOP) in the artifact's export form, the head
    under ``rest``.

    A class-token tail computes the last block's proj, MLP, q·k and ·v for one query (its qkv for every token:
    keys and values). The qkv-op form runs each block's qkv projection and attention as one kernel
    (``QKV_ATTENTION``), except a tail's last block (models/vit_form.py), whose qkv, q·k and ·v stay apart. In
    timm's form ``QKV_ATTENTION`` is the whole model's qkv and attention (a runtime that fuses them itself). The
    parts add up to ``bench.latency.roofline.model_gflop(spec, class_token_tail)["total"]`` (tests/test_profile.py
    checks it), so a part's % of peak and the row's roofline use one count of the work.
    """
    patches = (spec.input_shape[1] // spec.patch_size) * (spec.input_shape[2] // spec.patch_size)
    tokens, width, depth, hidden = patches + 1, spec.embed_dim, spec.depth, spec.mlp_dim

    def block(queries: int) -> dict[str, int]:
        return {QKV: 2 * tokens * width * 3 * width, PROJ: 2 * queries * width * width, FC1: 2 * queries * width * hidden,
                FC2: 2 * queries * hidden * width, QK: 2 * queries * tokens * width, AV: 2 * queries * tokens * width}

    flops = dict.fromkeys((QKV, PROJ, FC1, FC2, QK, AV, QKV_ATTENTION), 0)
    for index in range(depth):
        tail = form.class_token_tail and index == depth - 1
        one_kernel = form.attention == "qkv-op" and not tail
        for name, value in block(1 if tail else tokens).items():
            flops[QKV_ATTENTION if one_kernel and name in (QKV, QK, AV) else name] += value
    flops[PATCH] = 2 * patches * spec.channels * spec.patch_size ** 2 * width
    flops[REST] = 2 * width * spec.num_classes
    flops[ATTENTION] = flops[QK] + flops[AV]
    if form.attention != "qkv-op":
        flops[QKV_ATTENTION] = flops[QKV] + flops[ATTENTION]
    return {name: value / 1e9 for name, value in flops.items()}


@dataclass
class ModuleCall:
    """One module of the PyTorch model: its path, its class, and the part its ops count under."""

    module: str
    kind: str
    part: str = ""  # "" for a container (Block, Attention, Mlp): its own ops are placed by op kind


@dataclass
class ModulePlan:
    """The PyTorch model's modules in call order, and where the LayerNorms are."""

    calls: list[ModuleCall] = field(default_factory=list)

    def kind(self, module: str) -> str:
        return next((c.kind for c in self.calls if c.module == module), "")

    def linears(self) -> list[ModuleCall]:
        """The nn.Linear modules in the order the forward pass calls them (head included)."""
        return [c for c in self.calls if c.kind == "Linear"]

    def after_norm(self) -> set[str]:
        """The Linears whose input is a LayerNorm's output: the ops just before them are that LayerNorm."""
        leaves = [c for c in self.calls if self._leaf(c) and c.kind not in _PASS_THROUGH]
        return {c.module for before, c in itertools.pairwise(leaves) if c.kind == "Linear" and before.part == LAYERNORM}

    def module_part(self, module: str) -> tuple[str | None, str]:
        """(part, container kind) of the nearest known module at or above ``module``; (None, "") if none is known.

        The part is "" for a container: the op's kind decides (attention's matmuls and softmax, the rest).
        """
        known = {c.module: c for c in self.calls}
        path = module
        while path:
            if path in known:
                return known[path].part, known[path].kind
            path = path.rpartition(".")[0]
        return None, ""

    def _leaf(self, call: ModuleCall) -> bool:
        return not any(c.module.startswith(call.module + ".") for c in self.calls)


def _linear_parts(calls: list[ModuleCall]) -> None:
    """qkv / proj inside an attention module (the last Linear is the projection), fc1 / fc2 inside an MLP."""
    containers = [c for c in calls if "Attention" in c.kind or c.kind.endswith("Mlp")]
    for container in containers:
        inside = [c for c in calls if c.kind == "Linear" and c.module.startswith(container.module + ".")]
        if "Attention" in container.kind:
            for call in inside:
                call.part = PROJ if call is inside[-1] and len(inside) > 1 else QKV
        elif len(inside) == 2:
            inside[0].part, inside[1].part = FC1, FC2


def structure_twin(spec):
    """``spec`` with the same depth, heads, patch size and MLP ratio but tiny widths and a 2x2-patch image.

    Its ViT has the very module tree and call order of ``spec``'s (the plan reads nothing else), and builds and
    runs in milliseconds where the ViT-S/16-384 takes seconds, a minute on a busy machine.
    """
    side = 2 * spec.patch_size
    width = 4 * spec.num_heads
    return spec.replace(image_size=side, resize_size=(side, side), crop_size=(side, side), embed_dim=width,
                        mlp_dim=width * spec.mlp_dim // spec.embed_dim)


def model_plan(spec) -> ModulePlan:
    """The plan of the model ``spec`` describes, read from its structure twin (seeded weights: only the modules count)."""
    import numpy as np

    from vitship.models import load_weights

    twin = structure_twin(spec)
    return module_plan(load_weights("seeded", twin).model, np.zeros(twin.input_shape, np.float32))


def module_plan(model, image) -> ModulePlan:
    """The plan of a DetectorModel, from one forward pass with diagnose's module hooks (labels.module_sites)."""
    from vitship.bench.diagnose.labels import module_sites

    # completion order: the leaves in the order they are called, each container after its children
    calls = [ModuleCall(site.module, site.kind) for site in module_sites(model, image)]
    plan = ModulePlan(calls)
    for call in calls:
        if call.kind.endswith("LayerNorm"):  # nn.LayerNorm, or an export form's decomposed one
            call.part = LAYERNORM
        elif call.module == "patch_embed" or call.module.startswith("patch_embed."):
            call.part = PATCH
        elif call.kind == "Linear" or not plan._leaf(call):  # a container (Block, Attention, Mlp): the op decides
            call.part = ""
        else:
            call.part = REST
    _linear_parts(calls)
    for call in calls:
        if call.kind == "Linear" and not call.part:
            call.part = REST  # the head, or a Linear outside attention and MLP
    return plan
