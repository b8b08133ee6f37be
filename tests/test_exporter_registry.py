"""The exporter registry: every registered format is importable, lazily, and has its own tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vitship.exporters import EXPORTERS, all_artifact_ids, get_exporter, register
from vitship.models import UnknownNameError

TESTS = Path(__file__).parent


def _test_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_every_registered_format_has_a_test_module_with_tests(fmt):
    path = TESTS / f"test_export_{EXPORTERS[fmt][0].rsplit('.', 1)[-1]}.py"  # one test module per exporter module
    assert path.is_file(), f"exporter {fmt!r} is registered but {path.name} does not exist: add tests for it"
    assert len(_test_names(path)) >= 3, f"{path.name} holds fewer than 3 tests for the {fmt!r} exporter"


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_every_registered_format_exports_through_one_function(fmt):
    export = get_exporter(fmt)
    assert callable(export) and export.__name__ == "export"


def test_the_artifact_ids():
    assert sorted(all_artifact_ids()) == sorted(
        [f"{fmt}-{p}" for fmt in ("onnx", "openvino", "coreml") for p in ("fp32", "fp16", "int8")]
        + ["coreml-tensor-fp16", "coreml-tensor-int8", "executorch-fp32", "executorch-int8", "executorch-coreml-fp16"]
        + ["litert-fp32", "litert-fp16", "litert-int8"]
        + [f"{fmt}-image-{p}" for fmt in ("onnx", "openvino") for p in ("fp32", "fp16", "int8")]
        + ["litert-image-fp32", "litert-image-fp16", "executorch-image-fp32"])


def test_export_all_builds_the_image_precisions_a_family_picks_and_a_named_format_every_precision():
    from vitship.exporters.pipeline import resolve_requests

    everything = resolve_requests()
    assert ("onnx-image", "fp32") in everything and ("openvino-image", "int8") in everything
    assert ("onnx-image", "int8") not in everything and ("openvino-image", "fp32") not in everything
    assert not [fmt for fmt, _ in everything if fmt in ("litert-image", "executorch-image")]
    assert ("onnx", "fp16") in everything  # the tensor formats still build every precision
    assert resolve_requests(["openvino-image"]) == [("openvino-image", p) for p in ("fp32", "fp16", "int8")]
    with pytest.raises(ValueError, match="not among its precisions"):
        register("never", "vitship.exporters.onnx", ("fp32",), in_all=("int8",))


def test_registering_twice_raises_and_unknown_names_suggest_one():
    with pytest.raises(ValueError, match="already registered"):
        register("onnx", "vitship.exporters.onnx")
    with pytest.raises(UnknownNameError, match="Did you mean 'openvino'"):
        get_exporter("openvin")
