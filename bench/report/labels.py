"""Point labels that never overlap: each label takes the nearest free slot around its point, with a leader line.

This is greedy point-feature label placement (the cartographers' candidate-position method): for each point, slots
on rings of growing radius are tried in order, and a slot is free when the label's box stays inside the axes and
touches no other label, no marker and no leader line, and its own leader line crosses no other label (that last
rule is dropped for a label that has no such slot, a point inside a dense cluster). A label
with no free slot anywhere in the axes goes into a key under the plot instead ("not placed"), so a crowded plot
still never draws one label over another. adjustText (the usual library) repels labels iteratively and only
reduces overlaps; this search is exact, deterministic and cheap at the few dozen points a report plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LEADER = {"color": "#888888", "linewidth": 0.6, "zorder": 2}
# Ring radii (points) and slots per ring; the first ring sits next to the marker and needs no leader line.
_RADII = (7, 18, 30, 44, 60, 80, 105, 135, 170, 210)
_ANGLES = 16


@dataclass
class Placement:
    """Where each label went: (x, y, text) placed on the axes, and those left for the key under the plot."""

    placed: list = field(default_factory=list)  # matplotlib Annotation artists (those with a leader line: arrowprops)
    unplaced: list[str] = field(default_factory=list)


def _slots():
    """(dx, dy, ha, va, leader) offsets in points, nearest ring first; on a ring the level slots first (right before
    left), the vertical ones last: labels are wide."""
    angles = sorted((2 * math.pi * k / _ANGLES for k in range(_ANGLES)),
                    key=lambda a: (round(abs(math.sin(a)), 3), math.cos(a) < 0, math.sin(a) < 0))
    for radius in _RADII:
        for angle in angles:
            dx, dy = radius * math.cos(angle), radius * math.sin(angle)
            ha = "left" if dx > 1e-6 else "right" if dx < -1e-6 else "center"
            va = "bottom" if dy > 1e-6 else "top" if dy < -1e-6 else "center"
            yield dx, dy, ha, va, radius > _RADII[0]


def _segment(p0, p1):
    from matplotlib.path import Path

    return Path([p0, p1])


def _segment_hits(segment, boxes) -> bool:
    return any(segment.intersects_bbox(box, filled=True) for box in boxes)


def place_labels(ax, points: list[tuple[float, float, str]], fontsize: float = 7.5) -> Placement:
    """Label each (x, y, text) on ``ax`` so that no label overlaps another label, a marker or a leader line.

    The figure's layout is frozen first: a layout engine that moved the axes afterwards would undo the search.
    Labels that find no free slot are listed in a key under the plot (Placement.unplaced).
    """
    from matplotlib.transforms import Bbox

    figure = ax.figure
    figure.canvas.draw()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    pad = 4 * figure.dpi / 72
    anchors = [tuple(ax.transData.transform((x, y))) for x, y, _ in points]
    markers = [Bbox.from_extents(px - pad, py - pad, px + pad, py + pad) for px, py in anchors]
    search = _Search(ax, renderer, fontsize, markers)
    placement = Placement()
    for index in sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0])):
        x, y, text = points[index]
        if not search.place((x, y), anchors[index], text, placement):
            placement.unplaced.append(text)
    if placement.unplaced:
        _add_key(figure, "not placed (no free spot): " + "; ".join(placement.unplaced), fontsize)
    return placement


class _Search:
    """The free-slot search over one axes: what is taken so far (label boxes, leader lines) in pixels."""

    def __init__(self, ax, renderer, fontsize: float, markers: list):
        self.ax, self.renderer, self.fontsize, self.markers = ax, renderer, fontsize, markers
        self.frame = ax.get_window_extent(renderer)
        self.labels: list = []
        self.segments: list = []

    def _free(self, box, anchor, leader: bool, strict: bool) -> bool:
        """The box touches no label, marker or leader line; strict: its own leader line crosses no label or marker."""
        frame = self.frame
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            return False
        if any(box.overlaps(other) for other in self.labels + self.markers):
            return False
        if any(segment.intersects_bbox(box, filled=True) for segment in self.segments):
            return False
        if not (leader and strict):
            return True
        # markers under the point itself (coincident points) cannot be avoided by any leader line
        others = [m for m in self.markers if not m.contains(*anchor)]
        return not _segment_hits(_segment(anchor, _centre(box)), self.labels + others)

    def _first_free(self, size, anchor, strict: bool):
        """The first free slot for a label of ``size`` (width, height in pixels) at ``anchor``, or None."""
        from matplotlib.transforms import Bbox

        width, height = size
        scale = self.ax.figure.dpi / 72
        for dx, dy, ha, va, leader in _slots():
            x, y = anchor[0] + dx * scale, anchor[1] + dy * scale  # the text's alignment point, as matplotlib puts it
            x0 = x if ha == "left" else x - width if ha == "right" else x - width / 2
            y0 = y if va == "bottom" else y - height if va == "top" else y - height / 2
            box = Bbox.from_bounds(x0, y0, width, height).padded(1.5 * scale)  # a little air around the text
            if self._free(box, anchor, leader, strict):
                return dx, dy, ha, va, leader, box
        return None

    def place(self, xy, anchor, text: str, placement: Placement) -> bool:
        """Annotate the first free slot; a leader line may cross another label only where no slot avoids that."""
        probe = self.ax.annotate(text, xy, xytext=(0, 0), textcoords="offset points", fontsize=self.fontsize)
        extent = probe.get_window_extent(self.renderer)  # the text alone: the probe has no arrow
        probe.remove()
        size = (extent.width, extent.height)
        found = self._first_free(size, anchor, strict=True) or self._first_free(size, anchor, strict=False)
        if found is None:
            return False
        dx, dy, ha, va, leader, box = found
        # the leader runs from the label's box towards its centre to the point, as _free assumed
        arrow = {"arrowstyle": "-", "shrinkA": 0, "shrinkB": 3, **LEADER} if leader else None
        label = self.ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=self.fontsize,
                                 arrowprops=arrow, zorder=4)
        if leader:
            self.segments.append(_segment(anchor, _centre(box)))
        self.labels.append(box)
        placement.placed.append(label)
        return True


def _centre(box) -> tuple[float, float]:
    return (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2


def _add_key(figure, note: str, fontsize: float) -> None:
    """Grow the figure downwards and write ``note`` there, every axes kept where it is in pixels."""
    import textwrap

    width_in, height_in = figure.get_size_inches()
    chars = int(width_in * 72 / (0.55 * fontsize))
    lines = textwrap.wrap(note, chars)
    extra_in = (len(lines) + 0.6) * fontsize * 1.35 / 72
    boxes = [(axes, axes.get_position()) for axes in figure.axes]
    total = height_in + extra_in
    figure.set_figheight(total)
    for axes, box in boxes:
        axes.set_position([box.x0, (box.y0 * height_in + extra_in) / total, box.width, box.height * height_in / total])
    figure.text(0.01, 0.3 * fontsize / 72 / total, "\n".join(lines), fontsize=fontsize, color="#444444", va="bottom")
