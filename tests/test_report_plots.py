"""The report's plots: labels never overlap one another, a marker or the axes' edge, even where points coincide.

Checked with matplotlib's own renderer (each label's drawn box, get_window_extent) on figures that place
litert-int8 and openvino-int8 at the same size and latency, as a real ViT-S run does.
"""

from __future__ import annotations

import itertools

import pytest
from matplotlib.text import Text

from vitship.bench.plots import new_figure
from vitship.bench.report import plots
from vitship.bench.report.cells import LatencyCell, ReportRow
from vitship.bench.report.labels import place_labels
from vitship.bench.rows import RowKey
from vitship.models.status import Status

# artifact, target, variant, size MB, p50 ms: the ViT-S quick bench, with openvino:AUTO beside openvino:CPU
REAL_RUN = [("openvino-int8", "openvino:CPU", "hint=latency,static", 23.1, 77.8),
            ("openvino-int8", "openvino:AUTO", "hint=latency,static", 23.1, 78.4),
            ("litert-int8", "litert:cpu", "", 23.2, 77.9), ("openvino-fp16", "openvino:CPU", "hint=latency,static", 43.7, 119.6),
            ("openvino-fp16", "openvino:AUTO", "hint=latency,static", 43.7, 121.0), ("onnx-int8", "onnxruntime:cpu", "opt=all", 23.6, 160.7),
            ("litert-fp32", "litert:cpu", "", 87.3, 163.6), ("litert-fp16", "litert:cpu", "", 44.2, 176.4),
            ("executorch-int8", "executorch:cpu", "", 22.9, 336.7), ("onnx-fp32", "onnxruntime:cpu", "opt=all", 87.1, 337.6),
            ("executorch-fp32", "executorch:cpu", "", 87.2, 443.6), ("coreml-fp16", "coreml:reference", "", 43.7, 1480.0)]


def _rows(table) -> list[ReportRow]:
    rows = []
    for artifact, target, variant, size_mb, p50 in table:
        cell = LatencyCell(batch=1, status=Status.OK, p50_ms=p50, throughput_ips=1000 / p50)
        rows.append(ReportRow(key=RowKey(artifact, target, variant), format=artifact.split("-")[0],
                              precision=artifact.split("-")[1], size_bytes=int(size_mb * 1e6), group="intel-cpu",
                              group_title="Intel CPU", reference_executor=target == "coreml:reference", latency=[cell]))
    return rows


def _drawn_boxes(figure, ax):
    """(label text, its drawn box without the leader line) for every label, and every marker's box, in pixels."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    labels = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]
    markers = [box for collection in ax.collections for box in _marker_boxes(collection, ax, figure.dpi)]
    return labels, markers


def _marker_boxes(collection, ax, dpi):
    from matplotlib.transforms import Bbox

    radius = 3 * dpi / 72  # a marker of area 42 pt^2 is about 6.5 pt across
    return [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
            for x, y in ax.transData.transform(collection.get_offsets())]


def _assert_apart(figure, ax) -> list[str]:
    labels, markers = _drawn_boxes(figure, ax)
    frame = ax.get_window_extent()
    for (text_a, a), (text_b, b) in itertools.combinations(labels, 2):
        assert not a.overlaps(b), (text_a, text_b, a, b)
    for text, box in labels:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
        assert not any(box.overlaps(marker) for marker in markers), text
    return [text for text, _ in labels]


def test_latency_against_size_labels_coincident_points_apart():
    figure = plots.latency_vs_size(_rows(REAL_RUN))
    ax = figure.axes[0]
    shown = _assert_apart(figure, ax)
    assert "litert-int8 @ litert:cpu" in shown and "openvino-int8 @ openvino:AUTO" in shown
    assert len(shown) == len(REAL_RUN) - 1  # every row but the reference executor's, which the plot leaves out
    assert "left out: coreml:reference" in ax.get_xlabel()


@pytest.mark.parametrize("crowd", [3, 12])
def test_labels_of_points_at_one_spot_never_overlap(crowd):
    figure = new_figure(8, 4.8)
    ax = figure.add_subplot()
    points = [(23.1, 77.8, f"openvino-int8 @ target-{i}") for i in range(crowd)] + [(87.0, 300.0, "onnx-fp32 @ onnxruntime:cpu")]
    ax.scatter([x for x, _, _ in points], [y for _, y, _ in points], s=42)
    ax.margins(0.12)
    placement = place_labels(ax, points)
    assert placement.unplaced == []
    assert sorted(_assert_apart(figure, ax)) == sorted(text for _, _, text in points)
    leaders = sum(1 for label in placement.placed if label.arrow_patch is not None)
    assert leaders >= crowd - 4  # the ring next to the spot holds four labels (right, left, above, below); the rest lead


def test_labels_that_find_no_room_go_to_a_key_under_the_plot():
    figure = new_figure(3.5, 2.2)
    ax = figure.add_subplot()
    points = [(1.0, 1.0, f"a long label number {i:02d}") for i in range(24)]
    ax.scatter([1.0], [1.0], s=42)
    placement = place_labels(ax, points)
    assert placement.unplaced and len(placement.placed) + len(placement.unplaced) == 24
    _assert_apart(figure, ax)
    key = " ".join(t.get_text() for t in figure.texts).replace("\n", " ")
    assert all(text in key for text in placement.unplaced), key
    figure.canvas.draw()
    key_box = figure.texts[0].get_window_extent()
    assert key_box.y1 < ax.get_tightbbox().y0  # under the axes and their tick labels, not on them


def test_bench_throughput_legend_sits_beside_the_lines_and_no_two_series_look_alike():
    from vitship.bench.plots import line_figure

    series = {f"{artifact} @ {target}": ([1, 8, 32], [1000 / p50, 1200 / p50, 1250 / p50])
              for artifact, target, _, _, p50 in REAL_RUN}
    figure = line_figure(series, title="t", xlabel="batch size", ylabel="images per second", log_x=True)
    figure.canvas.draw()
    ax = figure.axes[0]
    assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())
    assert figure.bbox.contains(*ax.get_legend().get_window_extent().p1)  # inside the saved picture
    looks = {(line.get_color(), line.get_marker()) for line in ax.get_lines()}
    assert len(looks) == len(series) == 12
