"""vitship doctor: package versions, machine facts, targets and the weights in use."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from vitship.bench.commands.common import ArchOpt, ArtifactsOpt, ModelOpt, WeightsOpt, console, model_dir_option, wide_console
from vitship.models import VitshipError, load_weights, spec_for


def _versions_table() -> Table:
    from vitship.bench.environment import PACKAGES
    from vitship.models.versions import package_versions

    table = Table(title="Packages", show_header=True)
    table.add_column("package")
    table.add_column("version")
    for name, version in package_versions(*PACKAGES).items():
        table.add_row(name, version or "[red]not installed[/red]")
    return table


def _cpu_table(env: dict) -> Table:
    cpu = env["cpu"]
    table = Table(title="Machine", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("CPU", f"{cpu['model']} ({cpu['arch']})")
    table.add_row("cores", f"{cpu['physical_cores']} physical / {cpu['logical_cores']} logical")
    table.add_row("memory", f"{env['memory_gib']} GiB")
    table.add_row("OS", f"{env['os']} / Python {env['python']}")
    flags = cpu["flags"]
    table.add_row("CPU flags", " ".join(f"[green]{f}[/green]" if on else f"[dim]-{f}[/dim]" for f, on in flags.items()) or "unknown")
    gpus = env["gpus"]
    table.add_row("GPU", "; ".join(f"{g['name']} (driver {g['driver']}, {g['memory']})" for g in gpus) or "none found (nvidia-smi)")
    return table


def _targets_table() -> Table | None:
    try:
        from vitship.runtimes import available_targets
    except ImportError:
        return None
    table = Table(title="Targets")
    table.add_column("target")
    table.add_column("status")
    for status in available_targets():
        table.add_row(status.target, "[green]available[/green]" if status.available else f"[yellow]unavailable: {status.reason}[/yellow]")
    return table


def _artifacts_table(model_dir: Path) -> Table | None:
    """Each exported artifact's labels, threshold, input and preprocessing, read from its own file (vitship inspect)."""
    from vitship.exporters.base import manifest_artifacts
    from vitship.exporters.embedded import read_embedded, summary
    from vitship.exporters.manifest import Manifest

    if not Manifest.exists(model_dir):
        return None
    table = Table(title=f"Artifacts in {model_dir} (as each file describes itself: vitship inspect FILE)")
    for column in ("artifact", "input", "labels", "decision threshold", "preprocessing"):
        table.add_column(column, overflow="fold")
    for artifact in manifest_artifacts(model_dir):
        try:
            facts = summary(read_embedded(model_dir / artifact.path))
        except VitshipError as err:
            table.add_row(artifact.id, f"[yellow]{escape(str(err))}[/yellow]", "", "", "")
            continue
        if not facts:
            table.add_row(artifact.id, "[yellow]no vitship metadata in the file: re-export it (--force)[/yellow]", "", "", "")
            continue
        table.add_row(artifact.id, escape(facts["input"]), escape(facts["labels"]), escape(facts["decision threshold"]),
                      escape(facts["preprocessing"]))
    return table


def doctor(weights: str = WeightsOpt, arch: str = ArchOpt, artifacts: Path = ArtifactsOpt, model: str | None = ModelOpt) -> None:
    """Print package versions, CPU and GPU facts, targets, the weights in use, and what each exported artifact carries."""
    from vitship.bench.environment import environment

    env = environment()
    console.print(_versions_table())
    console.print(_cpu_table(env))
    targets = _targets_table()
    if targets is not None:
        console.print(targets)
    loaded = load_weights(weights, spec_for(arch))
    info, spec = loaded.info, loaded.spec
    table = Table(title="Weights", show_header=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("source", f"{info.source} ({info.kind})")
    table.add_row("sha256", info.sha256)
    table.add_row("revision", info.revision or "-")
    table.add_row("trained", "yes" if info.trained else "[yellow]no: untrained weights (accuracy is meaningless)[/yellow]")
    table.add_row("model", f"{spec.embed_dim}w x {spec.depth} blocks x {spec.num_heads} heads, {spec.image_size}px/{spec.patch_size}, "
                           f"{info.num_params / 1e6:.2f}M params, head {spec.head_kind} {list(spec.labels)}")
    table.add_row("preprocess", f"{spec.resize_mode} {spec.resize_size} {spec.interpolation}, crop {spec.crop_size if spec.do_center_crop else 'no'}, "
                                f"mean {spec.mean} std {spec.std}")
    console.print(table)
    exported = _artifacts_table(model_dir_option(artifacts, model, arch))
    if exported is not None:
        wide_console().print(exported)
