"""compat-check: load every ONNX and OpenVINO artifact in the oldest supported runtimes and compare outputs.

The oldest runtimes (onnxruntime 1.16, OpenVINO 2024.0: docs/DESIGN.md, Compatibility) are installed from PyPI into
a throwaway venv with the same Python (their wheels need numpy<2). A small runner script, which imports nothing
of vitship, runs there: it loads each artifact, runs the inputs one image at a time and saves the outputs. The
same runs with the current runtimes happen here, and the two are compared per artifact and runtime.

The logic lives in the package, not in a shell script, because it reuses the manifest, the preprocessing and
the row status types, and because its comparison is unit-tested without the network (the venv is the only part
that needs it). OpenVINO runs at INFERENCE_PRECISION_HINT=f32 on both sides, so that a bf16 default does not
hide or fake a difference between versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vitship.models import FEATURES_NAME, LOGITS_NAME, ModelSpec, VitshipError
from vitship.models.metrics import output_errors
from vitship.models.status import Status

OLDEST = {"onnxruntime": "1.16.3", "openvino": "2024.0.0"}
PINS = ("numpy<2",)  # the 2023/2024 wheels are built against numpy 1.x
# (format, runtime) pairs: ONNX files in both runtimes, OpenVINO IRs in OpenVINO
PAIRS = (("onnx", "onnxruntime"), ("onnx", "openvino"), ("openvino", "openvino"))
MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.999}  # old vs new runtime, same artifact and precision
MAX_PROB = {"fp32": 1e-4, "fp16": 5e-3, "int8": 5e-3}

RUNNER = r'''
import json, sys, numpy as np
job = json.load(open(sys.argv[1]))
pixels = np.load(job["inputs"])
frames = np.load(job["frames"])  # the 8-bit NHWC frames the pixels came from, for image-input artifacts
versions = {"python": sys.version.split()[0], "numpy": np.__version__}
failures = {}  # key -> why the item could not run; an item that ran is not listed
for item in job["items"]:
    key = item["key"]
    try:
        if item["runtime"] == "onnxruntime":
            import onnxruntime as ort
            versions["onnxruntime"] = ort.__version__
            session = ort.InferenceSession(item["path"], providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            run = lambda x: dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
        else:
            import openvino as ov
            versions["openvino"] = ov.__version__.split("-")[0]
            compiled = ov.Core().compile_model(item["path"], "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            # by position: the outputs are (logits, features) by contract; a Cast may rename the tensor
            run = lambda x: dict(zip(("logits", "features"), compiled(x).to_tuple()))
        inputs = frames if item.get("frames") else pixels
        outs = [run(inputs[i:i + 1]) for i in range(len(inputs))]
        for name in ("logits", "features"):
            np.save(f"{job['out']}/{key}.{name}.npy", np.concatenate([np.asarray(o[name], np.float32) for o in outs]))
    except Exception as err:
        failures[key] = f"{type(err).__name__}: {str(err).strip()[:400]}"
json.dump({"versions": versions, "failures": failures}, open(f"{job['out']}/results.json", "w"))
'''


class CompatError(VitshipError):
    """The compatibility check could not run (no artifacts, the old runtimes would not install)."""


@dataclass
class CompatRow:
    """One artifact in one runtime: the old version against the current one."""

    artifact: str
    runtime: str
    precision: str
    status: Status = Status.PASS
    reason: str = ""
    min_cosine: float | None = None
    max_prob_err: float | None = None
    max_abs_logit: float | None = None


@dataclass
class CompatReport:
    rows: list[CompatRow] = field(default_factory=list)
    old_versions: dict = field(default_factory=dict)
    current_versions: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.status is Status.PASS for r in self.rows)


def compat_items(model_dir: Path) -> list[dict]:
    """Every (artifact, runtime) pair to check, from the manifest."""
    from vitship.exporters.base import manifest_artifacts, verify_artifact
    from vitship.runtimes.frames import takes_frames

    items = []
    for artifact in manifest_artifacts(model_dir):
        for fmt, runtime in PAIRS:
            if artifact.format == fmt and _loads_in(artifact, runtime):
                items.append({"key": f"{artifact.id}@{runtime}", "artifact": artifact.id, "runtime": runtime,
                              "precision": artifact.precision, "path": str(verify_artifact(model_dir, artifact)),
                              "frames": takes_frames(artifact.input_spec)})
    if not items:
        raise CompatError(f"{model_dir}: no ONNX or OpenVINO artifacts in the manifest; export them first "
                          "(vitship export -f onnx,openvino)")
    return items


def _loads_in(artifact, runtime: str) -> bool:
    """Whether the manifest says ``runtime`` loads it (an onnx-int8 with onnxruntime's QAttention lists onnxruntime only)."""
    return not artifact.min_runtime_versions or runtime in artifact.min_runtime_versions


def make_venv(folder: Path, versions: dict[str, str]) -> Path:
    """A venv in ``folder`` with the given onnxruntime/openvino from PyPI; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    packages = [f"{name}=={version}" for name, version in versions.items()] + list(PINS)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise CompatError(f"pip could not install {' '.join(packages)} for Python {sys.version.split()[0]}: {tail}")
    return python


@dataclass
class RunnerResults:
    """What the runner script wrote (results.json): the runtime versions it used, and why each failed item failed."""

    versions: dict[str, str]
    failures: dict[str, str]  # item key -> the exception that stopped it; an item that ran is not listed


def run_items(python: Path, items: list[dict], pixels: np.ndarray, work: Path, frames: np.ndarray | None = None) -> RunnerResults:
    """Run the runner script with ``python`` (another venv's, or this one's); returns what it wrote.

    ``frames``: the uint8 NHWC frames image-input artifacts (items with "frames") take instead of ``pixels``.
    """
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "inputs.npy", pixels)
    np.save(work / "frames.npy", frames if frames is not None else np.zeros((0, 1, 1, 3), np.uint8))
    (work / "runner.py").write_text(RUNNER)
    job = {"inputs": str(work / "inputs.npy"), "frames": str(work / "frames.npy"), "out": str(work), "items": items}
    (work / "job.json").write_text(json.dumps(job))
    # -I: isolated, so the runner imports the venv's runtimes, never a vitship checkout in the current folder
    done = subprocess.run([str(python), "-I", str(work / "runner.py"), str(work / "job.json")],
                          capture_output=True, text=True)
    if done.returncode != 0 or not (work / "results.json").exists():
        raise CompatError(f"the runner failed under {python}: {(done.stderr or '').strip()[-400:]}")
    return RunnerResults(**json.loads((work / "results.json").read_text()))


def compare(item: dict, old_dir: Path, new_dir: Path, old: RunnerResults, new: RunnerResults, spec: ModelSpec) -> CompatRow:
    """One CompatRow: the old runtime's outputs against the current one's for the same artifact and inputs.

    The metrics are models.metrics' (probabilities from ``spec``'s head kind), as in parity.
    """
    row = CompatRow(item["artifact"], item["runtime"], item["precision"])
    for side, results in (("oldest", old), ("current", new)):
        if item["key"] in results.failures:
            row.status, row.reason = Status.FAIL, f"{side} {item['runtime']} cannot run it: {results.failures[item['key']]}"
            return row
    outputs = [{name: np.load(folder / f"{item['key']}.{name}.npy") for name in (LOGITS_NAME, FEATURES_NAME)}
               for folder in (old_dir, new_dir)]
    errors = output_errors(*outputs, spec)
    row.min_cosine, row.max_prob_err, row.max_abs_logit = errors.min_cosine, errors.max_prob_err, errors.max_abs_logit
    precision = item["precision"] if item["precision"] in MIN_COSINE else "int8"
    if row.min_cosine < MIN_COSINE[precision] or row.max_prob_err > MAX_PROB[precision]:
        row.status = Status.FAIL
        row.reason = (f"outputs differ: feature cosine {row.min_cosine:.6f} (>= {MIN_COSINE[precision]}), "
                      f"probability error {row.max_prob_err:.2g} (<= {MAX_PROB[precision]:g})")
    return row


def compat_check(model_dir: Path, pixels: np.ndarray, versions: dict[str, str] | None = None,
                 venv: Path | None = None, progress: Callable[[str], None] | None = None) -> CompatReport:
    """Install the oldest runtimes into a throwaway venv (or reuse ``venv``), run every artifact on both sides."""
    from vitship.bench.parity.run import manifest_spec
    from vitship.runtimes.frames import tensor_frames

    spec = manifest_spec(model_dir)  # the head kind decides how logits become probabilities
    versions = versions or dict(OLDEST)
    items = compat_items(model_dir)
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="vitship-compat-") as scratch:
        work = Path(scratch)
        if venv is not None and (Path(venv) / "bin" / "python").exists():
            python = Path(venv) / "bin" / "python"
        else:
            say(f"installing onnxruntime {versions['onnxruntime']} and openvino {versions['openvino']} from PyPI "
                "into a throwaway venv")
            python = make_venv(Path(venv) if venv else work / "venv", versions)
        say(f"running {len(items)} artifact/runtime pairs in the oldest runtimes")
        frames = tensor_frames(pixels, spec.to_dict())  # image-input artifacts take the frames the pixels came from
        old = run_items(python, items, pixels, work / "oldest", frames)
        say(f"running {len(items)} artifact/runtime pairs in the current runtimes")
        new = run_items(Path(sys.executable), items, pixels, work / "current", frames)
        rows = [compare(item, work / "oldest", work / "current", old, new, spec) for item in items]
    return CompatReport(rows, old.versions, new.versions)
