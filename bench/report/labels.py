"""Point labels that do not overlap: each label takes the first nearby slot that is free, else a leader line.

matplotlib has no label repulsion of its own, and adjustText is one more dependency for a dozen points;
a greedy search over a few offsets, in display coordinates, is enough at this size.
"""

from __future__ import annotations

# Offsets (points) tried in order: right, left, above, below, then further out on a leader line.
_NEAR = [(6, -3, "left"), (-6, -3, "right"), (0, 7, "center"), (0, -13, "center"), (6, 8, "left"), (6, -14, "left"),
         (-6, 8, "right"), (-6, -14, "right")]
_FAR = [(dx, dy, ha) for dy in (22, -26, 36, -40, 50, -54) for dx, ha in ((14, "left"), (-14, "right"))]


def _overlaps(box, others) -> bool:
    return any(box.overlaps(other) for other in others)


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def place_labels(ax, points: list[tuple[float, float, str]], fontsize: float = 7.5) -> None:
    """Annotate each (x, y, text) on ``ax`` without overlapping other labels or markers.

    The figure's layout is frozen first: a layout engine that moved the axes afterwards would undo the search.
    """
    from matplotlib.transforms import Bbox

    figure = ax.figure
    figure.canvas.draw()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pad = 4 * figure.dpi / 72
    occupied = [Bbox.from_extents(px - pad, py - pad, px + pad, py + pad)
                for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)]
    order = sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0]))
    for index in order:
        x, y, text = points[index]
        _place_one(ax, (x, y), text, fontsize, renderer, frame, occupied)


def _place_one(ax, xy, text, fontsize, renderer, frame, occupied) -> None:
    for far, candidates in ((False, _NEAR), (True, _FAR)):
        for dx, dy, ha in candidates:
            arrow = {"arrowstyle": "-", "color": "#999999", "lw": 0.6} if far else None
            label = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va="bottom",
                                fontsize=fontsize, arrowprops=arrow)
            box = label.get_window_extent(renderer).expanded(1.04, 1.12)
            if _inside(box, frame) and not _overlaps(box, occupied):
                occupied.append(box)
                return
            label.remove()
    label = ax.annotate(text, xy, xytext=(6, -3), textcoords="offset points", fontsize=fontsize)  # nowhere free: nearest
    occupied.append(label.get_window_extent(renderer))
