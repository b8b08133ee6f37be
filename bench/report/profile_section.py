"""The report's "Where the time goes" section: each profiled artifact's part table and stacked bar, per machine.

It reads profile.json through its producer's class (bench.profile.results.ProfileReport) and keeps the rows
without their op lists (profile.json has those). ``vitship report --merge`` carries each machine's section
under the machine's label, as it carries that machine's latency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from vitship.bench.profile.results import ProfileRow

SECTION_TITLE = "Where the time goes"
OVERVIEW_KEY = ""  # ProfileSection.plots key of the overview (a row's key is its label, never empty)
HOW = ("each runtime's own profiler (vitship profile): OpenVINO PERF_COUNT, onnxruntime's profiling JSON, ExecuTorch "
       "ETDump, LiteRT's profiler, torch.profiler; GFLOP/s against the matrix-multiply peak measured in the same run")


@dataclass
class ProfileSection:
    """One machine's profile as the report keeps it."""

    created: str = ""
    config: dict = field(default_factory=dict)
    peaks: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)
    rows: list[ProfileRow] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # row label -> its plot's file name in the report folder


@dataclass
class ProfileView:
    """One profiled row as the page shows it: a title, its table with notes, and its plot (or none)."""

    title: str
    table: object  # tables.Table (imported lazily: schema.py imports this module, tables.py imports schema.py)
    plot: str = ""


def section_of(profile) -> ProfileSection | None:
    """The report's section of a ProfileReport (None when `vitship profile` has not run)."""
    if profile is None:
        return None
    rows = [dataclasses.replace(row, ops=[], worker={}) for row in profile.rows]
    return ProfileSection(profile.created, profile.config, profile.peaks, profile.conditions, rows)


def sections(document) -> dict[str, ProfileSection]:
    """Machine label ("" for a one-machine report) -> its section."""
    if hasattr(document, "profiles"):
        return dict(document.profiles)
    return {"": document.profile} if getattr(document, "profile", None) is not None else {}


def write_section_plots(document, folder: Path) -> None:
    """One stacked-bar PNG per profiled row of every section, into the report folder; names recorded in the section."""
    from vitship.bench.plots import save_png
    from vitship.bench.profile.plot import OVERVIEW, overview, plot_name, stacked_bars

    for index, (machine, section) in enumerate(sections(document).items()):
        prefix = f"m{index}_" if machine else ""
        profiled = [row for row in section.rows if row.ok and row.parts]
        if profiled:
            save_png(overview(profiled, f" ({machine})" if machine else ""), folder / (prefix + OVERVIEW))
            section.plots[OVERVIEW_KEY] = prefix + OVERVIEW
        for row in section.rows:
            if row.ok and row.parts:
                name = prefix + plot_name(row)
                where = f" ({machine})" if machine else ""
                save_png(stacked_bars([row], f"Where the time goes: {row.artifact} on {row.target}{where}"), folder / name)
                section.plots[row.key.label()] = name


def profile_views(document) -> list[ProfileView]:
    """Per machine: the overview of its rows' shares, then every profiled row in the profile's order."""
    from vitship.bench.profile.table import SUMMARY_HEADERS, headers, lines, notes, summary_lines, title
    from vitship.bench.report.tables import Table

    views = []
    for machine, section in sections(document).items():
        where = f"{machine}: " if machine else ""
        summary = summary_lines(section.rows)
        if summary:
            table = Table(f"{where}every profiled artifact, each call as 100%", SUMMARY_HEADERS, summary)
            views.append(ProfileView(table.title, table, section.plots.get(OVERVIEW_KEY, "")))
        for row in section.rows:
            if row.ok:
                table = Table(where + title(row), headers(row), lines(row), notes(row))
                views.append(ProfileView(table.title, table, section.plots.get(row.key.label(), "")))
    return views


def not_profiled(document) -> list[str]:
    """One line per target (and status and reason) whose rows were not profiled, naming its artifacts."""
    out = []
    for machine, section in sections(document).items():
        grouped: dict[tuple, list[str]] = {}
        for row in section.rows:
            if not row.ok:
                grouped.setdefault((row.target, row.status, row.reason), []).append(row.artifact)
        where = f"{machine}: " if machine else ""
        out += [f"{where}{target} ({', '.join(ids)}): {status}: {reason}" for (target, status, reason), ids in grouped.items()]
    return out


def section_meta(document) -> list[str]:
    """How the section was measured, per machine: the profilers, the peaks, the load."""
    out = [f"measured with {HOW}"]
    for machine, section in sections(document).items():
        peaks = ", ".join(f"{name} {peak['gflops']:.0f}" for name, peak in section.peaks.items()
                          if isinstance(peak, dict) and "gflops" in peak)
        load = section.conditions.get("load_average_start")
        out.append(f"{machine + ': ' if machine else ''}profiled {section.created}, batch {section.config.get('batch')}, "
                   f"{section.config.get('threads')} threads, {section.config.get('calls')} calls per row; peaks (GFLOP/s) "
                   f"{peaks or 'not measured'}; load average at start {load}")
    return out
