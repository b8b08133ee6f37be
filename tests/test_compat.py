"""vitship.bench.compat without the network: the runner, the comparison and the manifest walk on tiny artifacts.

The throwaway venv with the oldest runtimes is the part `make compat-check` adds (it needs PyPI); here the
runner runs under this interpreter, i.e. the current runtimes on both sides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (hard dependencies: a broken install fails, never skips)
import openvino  # noqa: F401
import pytest

from vitship.bench import compat
from vitship.models.status import Status


def tiny_dir_spec(model_dir: Path):
    """The spec the manifest records: its head kind decides how compare() turns logits into probabilities."""
    from vitship.bench.parity.run import manifest_spec

    return manifest_spec(model_dir)


@pytest.fixture(scope="module")
def tiny_dir(tiny_loaded, tiny_exports):
    return tiny_exports([("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")]) / tiny_loaded.spec.name


def test_items_pair_each_format_with_the_runtimes_its_manifest_names(tiny_dir):
    """onnx-int8 runs attention as onnxruntime's QAttention, which OpenVINO does not read: its manifest says so."""
    pairs = {(i["artifact"], i["runtime"]) for i in compat.compat_items(tiny_dir)}
    assert pairs == {("onnx-fp32", "onnxruntime"), ("onnx-fp32", "openvino"), ("onnx-int8", "onnxruntime"),
                     ("openvino-fp32", "openvino")}


def ran(failures: dict[str, str] | None = None) -> compat.RunnerResults:
    """A runner's results: every item ran, except the ``failures`` (key -> why)."""
    return compat.RunnerResults(versions={}, failures=failures or {})


def test_no_artifacts_is_a_clear_error(tmp_path):
    with pytest.raises(compat.CompatError, match="export them first"):
        compat.compat_items(tmp_path)


def test_runner_runs_every_pair_and_the_same_runtime_agrees_with_itself(tiny_dir, tiny_photos, tmp_path):
    items = compat.compat_items(tiny_dir)
    first = compat.run_items(Path(sys.executable), items, tiny_photos[:3], tmp_path / "a")
    second = compat.run_items(Path(sys.executable), items, tiny_photos[:3], tmp_path / "b")
    assert {"onnxruntime", "openvino", "numpy", "python"} <= set(first.versions) and first.failures == {}
    for item in items:
        row = compat.compare(item, tmp_path / "a", tmp_path / "b", first, second, tiny_dir_spec(tiny_dir))
        assert row.status is Status.PASS and row.min_cosine > 0.99999, (item["key"], row.reason)
        assert np.load(tmp_path / "a" / f"{item['key']}.features.npy").shape == (3, 32)


def test_a_runtime_that_cannot_load_or_differs_fails_with_the_reason(tiny_dir, tiny_photos, tmp_path):
    (item,) = [i for i in compat.compat_items(tiny_dir) if i["key"] == "onnx-fp32@onnxruntime"]
    results = compat.run_items(Path(sys.executable), [item], tiny_photos[:2], tmp_path / "new")
    refused = compat.compare(item, tmp_path / "old", tmp_path / "new", ran({item["key"]: "InvalidGraph: IR 10"}),
                             results, tiny_dir_spec(tiny_dir))
    assert refused.status is Status.FAIL and "oldest onnxruntime cannot run it: InvalidGraph" in refused.reason
    old = tmp_path / "old"
    old.mkdir()
    for name in ("logits", "features"):
        values = np.load(tmp_path / "new" / f"{item['key']}.{name}.npy")
        np.save(old / f"{item['key']}.{name}.npy", values + (0.5 if name == "features" else 0.0) * np.sign(values))
    differs = compat.compare(item, old, tmp_path / "new", ran(), ran(), tiny_dir_spec(tiny_dir))
    assert differs.status is Status.FAIL and "feature cosine" in differs.reason


def test_a_broken_artifact_is_reported_not_raised(tiny_dir, tiny_photos, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    item = {"key": "x@onnxruntime", "artifact": "x", "runtime": "onnxruntime", "precision": "fp32", "path": str(broken)}
    results = compat.run_items(Path(sys.executable), [item], tiny_photos[:1], tmp_path / "run")
    assert list(results.failures) == ["x@onnxruntime"] and results.failures["x@onnxruntime"]


def test_a_two_class_softmax_head_is_compared_by_its_softmax(tmp_path):
    """Logits shifted by a constant keep every softmax probability: no probability error (an element-wise sigmoid,
    as compat-check once applied, saw 0.11 here and failed the row)."""
    from vitship.models import tiny_spec

    spec = tiny_spec().replace(labels=("real", "fake"), head_kind="softmax")
    item = {"key": "onnx-fp32@onnxruntime", "artifact": "onnx-fp32", "runtime": "onnxruntime", "precision": "fp32"}
    logits = np.array([[0.5, 2.0], [1.0, -1.0]], np.float32)
    features = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    for folder, shift in (("old", 0.0), ("new", 0.5)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / f"{item['key']}.logits.npy", logits + shift)
        np.save(tmp_path / folder / f"{item['key']}.features.npy", features)
    row = compat.compare(item, tmp_path / "old", tmp_path / "new", ran(), ran(), spec)
    assert row.max_prob_err == pytest.approx(0.0, abs=1e-6) and row.max_abs_logit == pytest.approx(0.5)
    assert row.status is Status.PASS and row.min_cosine == pytest.approx(1.0)
