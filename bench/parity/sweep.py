"""`vitship parity` as a library call: reference once, every row in its own worker, one ParityReport."""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vitship.bench.parity.plan import RowPlan, select_rows
from vitship.bench.parity.results import ParityReport, ParityResult
from vitship.bench.parity.run import ParityConfig, ParityContext, check_row_isolated, load_reference, prepare
from vitship.models.judgement import ToleranceTable
from vitship.runtimes import TARGET_LABELS

# Rows on a reference executor (numpy, mostly one core) run two at a time, each with one BLAS thread, after the other
# rows. Measured on 2 cores: two coreml:reference rows took 36 s each side by side, one took 26 s alone (2 threads),
# 29 s on one thread; two side by side on 2 threads each took 80 s. Parity times nothing: results do not change.
REFERENCE_ROWS_AT_ONCE = 2
ONE_BLAS_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

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


def run_rows(plans: list[RowPlan], ctx: ParityContext,
             progress: Callable[[int, int, RowPlan], None] | None = None) -> list[ParityResult]:
    """Every row, each in its own worker (the reference outputs are computed once, here, and shared by file), in the
    plans' order. ``progress(started, total, plan)`` is called as each row starts."""
    results: list[ParityResult | None] = [None] * len(plans)
    started, lock = iter(range(len(plans))), threading.Lock()
    numpy_rows = [i for i, plan in enumerate(plans) if plan.status.target in TARGET_LABELS and plan.status.available]
    with tempfile.TemporaryDirectory(prefix="vitship-parity-") as tmp:
        saved = ctx.save(Path(tmp))

        def check(index: int) -> None:
            with lock:
                if progress:
                    progress(next(started), len(plans), plans[index])
            env = ONE_BLAS_THREAD if index in numpy_rows else None
            results[index] = check_row_isolated(plans[index], saved, ctx.config.row_timeout_s, env)

        for index in (i for i in range(len(plans)) if i not in numpy_rows):
            check(index)
        with ThreadPoolExecutor(REFERENCE_ROWS_AT_ONCE) as pool:
            list(pool.map(check, numpy_rows))  # list(): an exception in check itself surfaces here
    return results
