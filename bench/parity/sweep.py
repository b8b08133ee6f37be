"""`vitship parity` as a library call: reference once, every row in its own worker, one ParityReport."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vitship.bench.parity.plan import select_rows
from vitship.bench.parity.results import ParityReport
from vitship.bench.parity.run import ParityConfig, load_reference, prepare, run_rows
from vitship.models.judgement import ToleranceTable

# progress(done, total, what): total is None while the reference is computed
ProgressFn = Callable[[int, int | None, str], None]


@dataclass(frozen=True)
class ParityRequest:
    """Which rows to check and with which reference weights (everything empty: all of them)."""

    weights: str | None = None  # None: the source the manifest records (its sha256 must match)
    artifacts: tuple[str, ...] = ()  # artifact ids; torch-fp16/torch-bf16 add PyTorch half-precision rows
    targets: tuple[str, ...] = ()
    with_torch: bool = True  # also check the PyTorch model itself on every torch target
    threads: int | None = None


def run_parity(model_dir: Path, request: ParityRequest = ParityRequest(), config: ParityConfig = ParityConfig(),
               tolerances: ToleranceTable | None = None, progress: ProgressFn | None = None) -> ParityReport:
    """Check the rows ``request`` selects against the PyTorch fp32 reference; returns the report (not written)."""
    from vitship.bench.environment import environment
    from vitship.runtimes import SessionOptions, takes_frames

    progress = progress or (lambda done, total, what: None)
    loaded = load_reference(Path(model_dir), request.weights)
    options = SessionOptions(threads=request.threads)
    plans = select_rows(Path(model_dir), loaded, list(request.artifacts), list(request.targets), request.with_torch, options)
    progress(0, None, f"PyTorch fp32 reference on {len(config.batch_sizes)} batch sizes")
    frames = any(takes_frames(plan.artifact.input_spec) for plan in plans)
    ctx = prepare(model_dir, loaded, config, tolerances, options, frames=frames)
    rows = run_rows(plans, ctx, lambda done, total, plan: progress(
        done, total, f"{plan.artifact.id} on {plan.status.target} {plan.variant}".strip()))
    return ParityReport(environment=environment(), weights=loaded.info.to_dict(), spec=loaded.spec.to_dict(),
                        config=config.to_dict(), inputs={"names": ctx.inputs.names, "photos": int(ctx.inputs.is_photo.sum()),
                                                         **({"frames": ctx.frames.names, "frame_sizes": ctx.frames.sizes()}
                                                            if ctx.frames else {})},
                        tolerances=ctx.tolerances.to_dict(), rows=rows)
