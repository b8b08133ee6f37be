"""One parity row in its own process: `python -P -m vitship.bench.parity.worker JOB.json RESULT.json`.

The parent computes the PyTorch reference once and passes its outputs by file (ParityContext.save);
the worker opens the row's runtime, checks the artifact at every batch size and writes the
ParityResult. A runtime that segfaults or hangs kills only this process (bench/isolated.py).
"""

from __future__ import annotations

import sys

from vitship.bench.isolated import worker_main


def check(job: dict) -> dict:
    from vitship.bench.parity.plan import RowPlan
    from vitship.bench.parity.run import ParityContext, check_row

    return check_row(RowPlan.from_dict(job["plan"]), ParityContext.load(job["context"])).to_dict()


def main(argv: list[str] | None = None) -> int:
    return worker_main(check, argv)


if __name__ == "__main__":
    sys.exit(main())
