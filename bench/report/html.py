"""report.html: the report's view rendered by a Jinja2 template (autoescaped), as one self-contained file.

The page has no external URL of any kind: CSS is inline and the plots are base64 PNG data URIs.
Every text comes from the report document, which may hold another machine's strings (a merged
hostname, a runtime's error message): autoescaping turns any markup in them into text.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path

from vitship.bench.report.view import build_view
from vitship.models.status import Status

TEMPLATE = "report.html.j2"
# Status words coloured in a cell ("not" for "not run"); the template's CSS has a class for each.
STATUS_WORDS = {str(s).split(" ")[0] for s in (Status.PASS, Status.FAIL, Status.ERROR, Status.UNAVAILABLE, Status.REFERENCE,
                                               Status.NOT_RUN)}


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("vitship.bench.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(code=code_spans, cell_class=cell_class)
    return env


def code_spans(text: str):
    """Escape ``text``, then show its `backtick` spans as <code> (escaping first keeps any markup inert)."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    return Markup("".join(f"<code>{escape(p)}</code>" if i % 2 else str(escape(p)) for i, p in enumerate(parts)))


def cell_class(text: str) -> str:
    """A CSS class for a table cell: numbers right-aligned, status words coloured."""
    text = str(text)
    if re.match(r"^[+-]?\d", text):
        return "num"
    word = text.split(" ", 1)[0].rstrip(",:").lower()
    return word if word in STATUS_WORDS else ""


def _plot_uris(folder: Path, names: list[str]) -> list[dict]:
    return [{"name": name, "uri": "data:image/png;base64," + base64.b64encode((Path(folder) / name).read_bytes()).decode("ascii")}
            for name in names]


def to_html(document, folder: Path) -> str:
    """A self-contained page (a Report or a MergedReport); the plots written in ``folder`` are embedded as data URIs."""
    view = build_view(document)
    profile_plots = {p["name"]: p["uri"] for p in _plot_uris(folder, [v.plot for v in view.profile if v.plot])}
    return _environment().get_template(TEMPLATE).render(view=view, plots=_plot_uris(folder, view.plots),
                                                        profile_plots=profile_plots)
