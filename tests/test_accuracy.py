"""Accuracy on a labelled folder built from the sample photos; the expected metrics are computed by hand here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vitship.bench.accuracy import EvalOptions, EvalReport, evaluate, read_eval, write_eval
from vitship.bench.dataset import DatasetError, read_dataset
from vitship.bench.rows import ResultsFileError, RowKey
from vitship.exporters.base import MANIFEST_SCHEMA_VERSION, Artifact, write_manifest
from vitship.models import load_weights, preprocess, sample_images, tiny_spec
from vitship.runtimes import torch_artifact

SPEC = tiny_spec()


def _pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a fake > score of a real), ties counting one half: the Mann-Whitney definition."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the precision at the rank of each positive, ranking by descending score (no ties here)."""
    order = np.argsort(-scores, kind="stable")
    hits, total = 0, 0.0
    for rank, index in enumerate(order, start=1):
        if labels[index] == 1:
            hits += 1
            total += hits / rank
    return total / int(labels.sum())


def _by_hand(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    pred = (scores >= threshold).astype(int)
    tp, tn = int(((pred == 1) & (labels == 1)).sum()), int(((pred == 0) & (labels == 0)).sum())
    fp, fn = int(((pred == 1) & (labels == 0)).sum()), int(((pred == 0) & (labels == 1)).sum())
    return {"accuracy": (tp + tn) / len(labels), "balanced_accuracy": (tp / (tp + fn) + tn / (tn + fp)) / 2,
            "auroc": _pairwise_auroc(scores, labels), "average_precision": _average_precision(scores, labels),
            "f1": 2 * tp / (2 * tp + fp + fn)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """real/ and fake/ from the sample photos (every third photo 'fake'), plus one corrupt file."""
    root = tmp_path_factory.mktemp("labelled")
    for index, photo in enumerate(sample_images()):
        folder = root / ("fake" if index % 3 == 0 else "real")
        folder.mkdir(exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    (root / "fake" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture(scope="module")
def loaded():
    return load_weights("seeded", SPEC)


@pytest.fixture(scope="module")
def torch_scores(labelled, loaded):
    """The reference's fake probability per readable image, computed one image at a time."""
    scores = {}
    for item in read_dataset(labelled):
        if item.path.name == "zz_corrupt.png":
            continue
        with torch.inference_mode():
            logits, _ = loaded.model(torch.from_numpy(preprocess(item.path, SPEC)))
        scores[str(item.path)] = float(torch.sigmoid(logits[0, 0]))
    return scores


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, labelled, loaded, torch_scores):
    """eval on a manifest with torch fp32 and bf16 pseudo-artifacts and a CoreML artifact (unavailable here)."""
    model_dir = tmp_path_factory.mktemp("artifacts") / SPEC.name
    coreml = Artifact(id="coreml-fp16", format="coreml", precision="fp16", path="coreml-fp16/model.mlpackage",
                      weights=loaded.info.to_dict(), input_spec=SPEC.to_dict())
    artifacts = [torch_artifact(loaded, "fp32"), torch_artifact(loaded, "bf16"), coreml]
    write_manifest(model_dir, {"schema_version": MANIFEST_SCHEMA_VERSION, "artifacts": {a.id: a.to_dict() for a in artifacts}})
    threshold = float(np.median(list(torch_scores.values())))  # both classes get predicted
    report = evaluate(model_dir, labelled, loaded, EvalOptions(threshold=threshold, batch_size=5))
    return model_dir, report.to_dict()


def _row(document: dict, artifact: str) -> dict:
    return next(r for r in document["rows"] if r["artifact"] == artifact)


def test_reference_metrics_match_an_independent_computation(evaluation, torch_scores):
    _, document = evaluation
    labels = np.array(document["labels"])
    scores = np.array([torch_scores[path] for path in document["images"]])
    expected = _by_hand(scores, labels, document["threshold"])
    reference = _row(document, "torch-fp32")
    assert reference["target"] == "torch:cpu"
    np.testing.assert_allclose(reference["probabilities"], scores, rtol=1e-5, atol=1e-6)
    for name, value in expected.items():
        assert reference["metrics"][name] == pytest.approx(value, abs=1e-9), name
    assert 0.0 < expected["balanced_accuracy"] and 0.0 < expected["auroc"] < 1.0  # a real, non-degenerate check


def test_artifact_rows_have_deltas_and_agreement_against_the_reference(evaluation):
    _, document = evaluation
    labels = np.array(document["labels"])
    reference = _row(document, "torch-fp32")
    bf16 = [r for r in document["rows"] if r["artifact"] == "torch-bf16"][0]
    assert bf16["status"] == "ok" and bf16["n_images"] == len(labels)
    scores = np.array(bf16["probabilities"])
    assert not np.allclose(scores, reference["probabilities"], atol=1e-7)  # bf16 really computed something else
    expected = _by_hand(scores, labels, document["threshold"])
    for name, value in expected.items():
        assert bf16["metrics"][name] == pytest.approx(value, abs=1e-9), name
        assert bf16["deltas"][name] == pytest.approx((value - reference["metrics"][name]) * 100, abs=1e-6), name
    same = (scores >= document["threshold"]) == (np.array(reference["probabilities"]) >= document["threshold"])
    assert bf16["agreement"] == pytest.approx(same.mean())


def test_corrupt_image_is_counted_and_skipped(evaluation):
    _, document = evaluation
    data = document["data"]
    assert data["n_skipped"] == 1 and data["skipped"][0]["path"].endswith("zz_corrupt.png")
    assert data["n_images"] == len(sample_images()) and data["n_real"] + data["n_fake"] == data["n_images"]


def test_unavailable_target_is_a_row_not_a_crash(evaluation):
    _, document = evaluation
    coreml = _row(document, "coreml-fp16")
    assert coreml["status"] == "unavailable" and coreml["metrics"] == {}
    assert coreml["reason"]  # why, in its own field (on macOS: the .mlpackage was never written)


def test_untrained_weights_say_accuracy_is_meaningless(evaluation):
    _, document = evaluation
    assert document["accuracy_judged"] is False and "meaningless" in document["note"]
    assert document["weights"]["trained"] is False


def test_eval_json_round_trip(evaluation):
    model_dir, document = evaluation
    report = EvalReport.from_dict(document)
    path = write_eval(model_dir, report)
    assert path == model_dir / "eval.json"
    loaded = read_eval(path)
    assert loaded.to_dict() == json.loads(json.dumps(document, default=str)) and loaded.rows == report.rows
    assert loaded.rows[0].key == RowKey("torch-fp32", "torch:cpu") and loaded.rows[-1].key.artifact == "coreml-fp16"


def test_eval_json_of_another_schema_is_refused(evaluation, tmp_path):
    _, document = evaluation
    (tmp_path / "eval.json").write_text(json.dumps({**document, "schema_version": 1}))
    with pytest.raises(ResultsFileError, match="schema_version 1, this vitship reads 2; rerun vitship eval"):
        read_eval(tmp_path / "eval.json")


def test_csv_labels_and_errors(tmp_path, labelled):
    photos = sorted((labelled / "real").iterdir())[:3]
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in zip(photos, ("real", "1", "0"))))
    items = read_dataset(tmp_path / "labels.csv")
    assert [i.label for i in items] == [0, 1, 0] and items[0].path == photos[0]
    (tmp_path / "bad.csv").write_text(f"{photos[0]},maybe\n")
    with pytest.raises(DatasetError, match="real/fake/0/1"):
        read_dataset(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match="real/ and fake/"):
        read_dataset(tmp_path / "nowhere")
