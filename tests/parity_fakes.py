"""A parity worker whose onnxruntime rows die with SIGSEGV, as a broken native runtime would; other rows run for real.

Run as ``python -P -m parity_fakes JOB RESULT`` with tests/ on PYTHONPATH (see test_parity.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from vitship.bench.parity import worker

if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    if job["plan"]["status"]["target"].startswith("onnxruntime:"):
        os.kill(os.getpid(), signal.SIGSEGV)
    sys.exit(worker.main())
