"""The Android / ARM block's runtime comparison: LiteRT against ExecuTorch, the two runtimes Android apps ship.

Both run XNNPACK on a phone's CPU. Here both are timed on this host's XNNPACK build (x86 unless the report
comes from an ARM device), so the comparison says which it is; a phone's GPU and NPU delegates are named with
the artifact to try first there (families.py ``first_try``).
"""

from __future__ import annotations

from vitship.bench.report import phrases

RUNTIMES = (("litert", "LiteRT"), ("executorch", "ExecuTorch"))


def _best(ordered: list, fmt: str):
    return next((c for c in ordered if c.format == fmt and c.p50 is not None), None)


def weigh_runtimes(ordered: list, device: bool) -> str:
    """One sentence: each runtime's fastest passing artifact, its latency, and which one the pick comes from.

    Args:
        ordered: the family's allowed, timed candidates, best first (decide.rank).
        device: whether they were timed on an ARM device (else on this host, as a proxy).
    """
    best = {name: _best(ordered, fmt) for fmt, name in RUNTIMES}
    where = "on the ARM device" if device else "on this host's XNNPACK build, a labelled x86 proxy of their ARM kernels"
    parts = [f"{name} {c.artifact} {phrases.ms(c.p50)}" if c else f"{name}: no timed row passing parity"
             for name, c in best.items()]
    timed = [(name, c) for name, c in best.items() if c]
    if len(timed) < 2:
        verdict = f"only {timed[0][0]} could be weighed" if timed else "neither could be weighed"
    else:
        (winner, fast), (_, slow) = sorted(timed, key=lambda item: item[1].p50)
        verdict = f"{winner} is picked: {slow.p50 / fast.p50:.2f}x faster, parity passing"
    return f"LiteRT vs ExecuTorch ({where}): {'; '.join(parts)}; {verdict}."
