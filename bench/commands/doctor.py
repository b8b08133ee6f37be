"""vitship doctor: package versions, machine facts, targets and the weights in use."""

from __future__ import annotations

from rich.table import Table

from vitship.bench.commands.common import ArchOpt, WeightsOpt, console
from vitship.models import load_weights, spec_for


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


def doctor(weights: str = WeightsOpt, arch: str = ArchOpt) -> None:
    """Print package versions, CPU and GPU facts, targets, and the weights in use with their sha256."""
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
