"""The Core ML delegate's side of ExecuTorch export: the ML Program a ``.pte`` embeds, unpacked and described.

Only Apple's Core ML runtime executes that delegate; here its embedded program is read back
(``embedded_coreml_package``) and checked on coreml:reference (``runtimes.coreml_reference``).
"""

from __future__ import annotations

from pathlib import Path

from vitship.exporters.base import ExportError
from vitship.exporters.coreml_apple import AppleDetails, apple_details, mil_op_counts
from vitship.exporters.details import EmbeddedOutputs, ExecutorchDetails

BACKEND = "CoreMLBackend"


def embedded_apple_details(path: Path, min_target: str, details: ExecutorchDetails) -> AppleDetails:
    """The embedded ML Program's AppleDetails; records which of its outputs are logits and features in ``details``."""
    import tempfile

    import coremltools as ct

    with tempfile.TemporaryDirectory(prefix="vitship-pte-") as tmp:
        package = embedded_coreml_package(path, Path(tmp))
        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    names = [output.name for output in spec.description.output]
    order = details.delegate_output_index or list(range(len(names)))
    if sorted(order) != list(range(len(names))) or len(order) != 2:
        raise ExportError(f"{path}: the Core ML delegate returns {names}; cannot tell logits from features")
    details.embedded_outputs = EmbeddedOutputs(logits=names[order[0]], features=names[order[1]])
    return apple_details(compute_precision="fp16", input_kind="tensor", batch_kind="fixed", batch_shapes=[1],
                         min_target=min_target, op_counts=mil_op_counts(spec))


def embedded_coreml_package(pte_path: Path, dest: Path) -> Path:
    """Unpack the ML Program a Core ML-delegated ``.pte`` embeds into ``dest``; returns its ``.mlpackage``.

    Raises:
        ExportError: the program holds no Core ML delegate, or more than one (a partly delegated graph).
    """
    from executorch.backends.apple.coreml import executorchcoreml
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(pte_path).read_bytes()).program
    delegates = [d for plan in program.execution_plan for d in plan.delegates if d.id == BACKEND]
    if len(delegates) != 1:
        raise ExportError(f"{pte_path}: expected one Core ML delegate, found {len(delegates)}")
    payload = bytes(program.backend_delegate_data[delegates[0].processed.index].data)
    if not executorchcoreml.unflatten_directory_contents(payload, str(dest)):
        raise ExportError(f"{pte_path}: the Core ML delegate's payload could not be unpacked")
    packages = sorted(Path(dest).rglob("*.mlpackage"))
    if len(packages) != 1:
        raise ExportError(f"{pte_path}: the Core ML delegate holds {len(packages)} .mlpackage folders, expected one")
    return packages[0]
