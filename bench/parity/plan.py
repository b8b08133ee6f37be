"""Which parity rows to run: the manifest's artifacts (plus PyTorch itself) on every target that runs their format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitship.exporters.base import Artifact
from vitship.runtimes import SessionOptions, TargetStatus, can_run


# Checked only when named (--target): AUTO compiles for one of the devices whose own rows parity checks already.
NAMED_ONLY = {"openvino:AUTO": "it runs on one of the devices openvino:CPU/GPU/NPU, each checked in its own row"}
ONE_IMAGE = "takes one image per call"  # in the note of a row that ran batch 1 alone (RowPlan.batch_sizes)


@dataclass
class RowPlan:
    artifact: Artifact
    status: TargetStatus
    options: SessionOptions
    variant: str = ""  # "" for the runtime's defaults; e.g. "f32 inference" for OpenVINO's explicit-f32 row

    def batch_sizes(self, sizes: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
        """The sizes among ``sizes`` worth running on this artifact, and a note on those left out ("" when none)."""
        kept = self.artifact.batch_shapes.distinct(sizes)
        left = [str(b) for b in sizes if b not in kept]
        return kept, (f"batch {', '.join(left)} not run: {self.artifact.id} {ONE_IMAGE}, so it would repeat batch "
                      f"{kept[0]}'s calls") if left else ""

    def to_dict(self) -> dict:
        return {"artifact": self.artifact.to_dict(), "status": self.status.to_dict(), "options": self.options.to_dict(),
                "variant": self.variant}

    @classmethod
    def from_dict(cls, data: dict) -> "RowPlan":
        return cls(Artifact.from_dict(data["artifact"]), TargetStatus(**data["status"]), SessionOptions(**data["options"]),
                   data["variant"])


def plan_rows(artifacts: list[Artifact], statuses: list[TargetStatus], options: SessionOptions,
              explicit: set[str] = frozenset()) -> list[RowPlan]:
    """Every (artifact, target) whose runtime runs the artifact's format, unavailable targets included.

    torch-fp16/bf16 pair with torch:cpu only when named in `explicit` (CPU half precision is slow and
    not a deployment target). An fp32 OpenVINO IR gets a second row with inference precision f32
    when the device's default is lower (bf16 on this CPU): both are what a user may run.
    """
    from vitship.runtimes.openvino_rt import default_precision

    plans = []
    for artifact in artifacts:
        for status in statuses:
            if not can_run(status.target, artifact.format):
                continue
            if artifact.format == "torch" and artifact.precision != "fp32" and status.device == "cpu" \
                    and artifact.id not in explicit:
                continue
            plans.append(RowPlan(artifact, status, options))
            if status.runtime == "openvino" and status.available and artifact.precision == "fp32" \
                    and default_precision(status.device) not in (None, "fp32"):
                plans.append(RowPlan(artifact, status, options.replace(openvino_precision="f32"), "f32 inference"))
    return plans


def select_rows(model_dir: Path, loaded, artifact_ids: list[str], target_names: list[str], with_torch: bool,
                options: SessionOptions) -> list[RowPlan]:
    """The rows to check: manifest artifacts (+ PyTorch itself) x targets, narrowed by --artifact/--target."""
    from vitship.exporters.base import manifest_artifacts
    from vitship.models import UnknownNameError
    from vitship.runtimes import available_targets, torch_artifact

    artifacts = manifest_artifacts(model_dir)
    torch_rows = [torch_artifact(loaded, p) for p in ("fp32", "fp16", "bf16")]
    if artifact_ids:
        known = {a.id: a for a in artifacts + torch_rows}
        for name in artifact_ids:
            if name not in known:
                raise UnknownNameError("artifact", name, list(known))
        artifacts = [known[name] for name in artifact_ids]
    elif with_torch:
        artifacts = artifacts + torch_rows
    statuses = [s for s in available_targets() if target_names or s.target not in NAMED_ONLY]
    if target_names:
        known_targets = {s.target.lower(): s for s in statuses}
        for name in target_names:
            if name.lower() not in known_targets:
                raise UnknownNameError("target", name, [s.target for s in statuses])
        statuses = [known_targets[name.lower()] for name in target_names]
    return plan_rows(artifacts, statuses, options, explicit=set(artifact_ids))
