"""Renderings of a report document: report.md, report.csv and a self-contained report.html.

The HTML has no external URL of any kind: CSS is inline and the plots are base64 PNG data URIs.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

from vitship.bench.report.plots import PLOT_FILES
from vitship.bench.report.sources import target_display
from vitship.models.atomic import atomic_write_text

CSV_FIELDS = ("artifact", "target", "variant", "batch", "size_bytes", "parity_verdict", "parity_metric", "parity_value",
              "latency_status", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips", "accuracy",
              "accuracy_delta_points", "agreement", "accuracy_target")
STYLE = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d1d1f;max-width:1220px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{border:1px solid #d6d6d6;padding:3px 7px;text-align:left}
th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:8px 12px;font-weight:600;margin:10px 0}
.pass,.reference,.ok{color:#137333}.fail,.error{color:#b3261e;font-weight:600}.unavailable,.not{color:#8a6d00}
.meta{color:#555;font-size:12.5px}ul.rec{background:#eef6ee;border:1px solid #9cc59c;padding:8px 8px 8px 28px}
ul.rec li{margin:3px 0}.plots{display:flex;flex-wrap:wrap;gap:8px}.plots img{width:49%;border:1px solid #eee}"""


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _size(size_bytes) -> str:
    return "-" if not size_bytes else f"{size_bytes / 2**20:.1f} MiB"


def _parity(row: dict) -> str:
    parity = row["parity"]
    text = parity["verdict"] if parity["metric"] is None else f"{parity['verdict']} ({parity['metric']} {_num(parity['value'], 6)})"
    return text + "".join(f"; {v['variant']}: {v['verdict']}" for v in parity.get("variants") or [])


def _best_throughput(row: dict) -> str:
    cells = [(c["throughput_ips"], b) for b, c in row["latency"].items() if c.get("status") == "ok" and c.get("throughput_ips")]
    if not cells:
        return "-"
    value, batch = max(cells)
    return f"{_num(value)} (b{batch})"


def _latency(row: dict, field: str) -> str:
    cell = row["latency"].get("1") or next((c for b, c in row["latency"].items() if not b.isdigit()), None)
    if not cell:
        return "not run" if field == "p50_ms" else "-"
    if cell.get("status") == "ok":
        return _num(cell.get(field))
    return cell.get("status", "-") if field == "p50_ms" else "-"


def _accuracy(row: dict) -> str:
    acc = row["accuracy"]
    if acc["delta_points"] is None:
        return acc["status"].split(":", 1)[0] if acc["status"] != "ok" else "-"
    return f"{acc['delta_points']:+.2f}"


def main_table(document: dict) -> tuple[list[str], list[list[str]]]:
    """The full table: one line per (artifact, target, variant)."""
    headers = ["artifact", "target", "size", "parity", "p50 ms (b1)", "p90 ms (b1)", "img/s (b1)", "best img/s",
               "accuracy Δ (pts)" if document.get("trained") else "accuracy Δ (pts, not judged)", "agreement"]
    lines, unavailable = [], (document["sections"].get("unavailable_targets") or {})
    for r in document["sections"]["rows"]:
        if r["target"] in unavailable:  # listed once, with the reason, under the recommendation
            continue
        agreement = r["accuracy"]["agreement"]
        lines.append([r["artifact"] + (f" ({r['variant']})" if r["variant"] else ""), target_display(r["target"]) or "-", _size(r["size_bytes"]),
                      _parity(r), _latency(r, "p50_ms"), _latency(r, "p90_ms"), _latency(r, "throughput_ips"),
                      _best_throughput(r), _accuracy(r), "-" if agreement is None else f"{agreement:.1%}"])
    return headers, lines


def merged_table(document: dict) -> tuple[list[str], list[list[str]]]:
    """The merged table: one line per (artifact, target, variant), a column per machine (p50 at batch 1, parity)."""
    labels = [m["label"] for m in document["machines"]]
    lines = []
    for r in document["sections"]["rows"]:
        cells = []
        for label in labels:
            cell = r["cells"].get(label)
            cells.append("not run" if cell is None else f"{_num(cell['p50_ms'])} ms, {cell['parity']}"
                         if cell["status"] == "ok" else f"{cell['status']}, {cell['parity']}")
        lines.append([r["artifact"] + (f" ({r['variant']})" if r["variant"] else ""), target_display(r["target"]) or "-"] + cells)
    return ["artifact", "target"] + labels, lines


def accuracy_table(document: dict) -> tuple[list[str], list[list[str]]]:
    """Per artifact on its eval target: each metric with its delta (points) against the reference."""
    section = (document.get("sections") or {}).get("accuracy") or {}
    names = ("accuracy", "balanced_accuracy", "auroc", "average_precision", "f1")
    lines = []
    for r in section.get("rows") or []:
        metrics, deltas = r.get("metrics") or {}, r.get("deltas") or {}
        cells = [("-" if metrics.get(n) is None else f"{metrics[n]:.3f}")
                 + ("" if not deltas.get(n) else f" ({deltas[n]:+.2f})") for n in names]
        agreement = "-" if r.get("agreement") is None else f"{r['agreement']:.1%}"
        lines.append([r["artifact"], r.get("target") or "-", r.get("status") or "-", *cells, agreement])
    return ["artifact", "target", "status", "accuracy", "balanced acc.", "AUROC", "avg precision", "F1", "agreement"], lines


def _missing_plots(document: dict) -> list[str]:
    """A line for each plot the data did not allow, saying what would make it."""
    if document.get("kind") != "vitship-report":
        return []
    why = {"latency_vs_size": "latency against size: no batch-1 latency with a known artifact size",
           "pareto": "accuracy delta against latency: needs vitship eval and batch-1 latency",
           "throughput_vs_batch": "throughput against batch: needs two or more batch sizes (vitship bench --batch 1,8,32)"}
    made = document["sections"].get("plots") or []
    return [f"not plotted: {text}" for name, text in why.items() if PLOT_FILES[name] not in made]


def _recommendation_lines(document: dict) -> list[str]:
    """The summary lines; a merged report prefixes each machine's own lines with its label."""
    if document.get("machines"):
        return [f"{m['label']}: {s['line']}" for m in document["machines"] for s in m.get("summary") or []]
    return [s["line"] for s in document["sections"].get("summary") or []]


def _unavailable_lines(document: dict) -> list[str]:
    targets = (document.get("sections") or {}).get("unavailable_targets") or {}
    return [f"not available on this machine: {target} ({reason})" for target, reason in targets.items()]


def _meta_lines(document: dict) -> list[str]:
    weights = document.get("weights") or {}
    lines = [f"run {document['run_id']}, created {document.get('created')}",
             f"weights: {weights.get('source', '?')} ({weights.get('kind', '?')}), sha256 {weights.get('sha256', '?')}, "
             f"{'trained' if document.get('trained') else 'untrained'}"]
    env = document.get("environment")
    if env:
        cpu = env.get("cpu") or {}
        gpus = ", ".join(g.get("name", "?") for g in env.get("gpus") or []) or "no GPU"
        lines.append(f"machine: {env.get('hostname')}: {cpu.get('model')}, {cpu.get('physical_cores')} cores, "
                     f"{env.get('memory_gib')} GiB, {gpus}, {env.get('os')}, Python {env.get('python')}")
    for machine in document.get("machines") or []:
        lines.append(f"machine: {machine['label']} (run {machine['run_id']}, environment {machine['key']})")
    lines += document.get("notes") or []
    return lines


def _accuracy_lines(document: dict) -> list[str]:
    section = (document.get("sections") or {}).get("accuracy")
    if document.get("kind") != "vitship-report":
        return []
    if not section:
        return ["accuracy: not run (vitship eval --data DIR)"]
    data = section.get("data") or {}
    lines = [f"accuracy on {data.get('source')}: {data.get('n_images')} images ({data.get('n_real')} real, "
             f"{data.get('n_fake')} fake), threshold {section.get('threshold')}; {data.get('n_skipped', 0)} unreadable images skipped"]
    lines += [f"skipped: {item['reason'] if item['reason'].startswith(item['path']) else item['path'] + ': ' + item['reason']}"
              for item in (data.get("skipped") or [])[:20]]
    if section.get("note"):
        lines.append(section["note"])
    return lines


def to_markdown(document: dict) -> str:
    merged = document.get("kind") != "vitship-report"
    headers, lines = merged_table(document) if merged else main_table(document)
    out = [f"# vitship {'merged ' if merged else ''}report {document['run_id']}", ""]
    if document.get("banner"):
        out += [f"> **{document['banner']}**", ""]
    out += [f"- {line}" for line in _meta_lines(document)] + [""]
    out += ["## Recommendation", ""] + [f"- {line}" for line in _recommendation_lines(document)] + [""]
    out += [f"- {line}" for line in _unavailable_lines(document)] + [""]
    out += ["## Results", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(line) + " |" for line in lines] + [""]
    if accuracy_table(document)[1]:
        acc_headers, acc_lines = accuracy_table(document)
        out += ["## Accuracy (Δ in points vs the PyTorch reference)", "", "| " + " | ".join(acc_headers) + " |",
                "|" + "---|" * len(acc_headers)] + ["| " + " | ".join(line) + " |" for line in acc_lines] + [""]
    out += [f"- {line}" for line in _accuracy_lines(document)]
    sources = (document.get("sections") or {}).get("sources") or {}
    out += [f"- {name}: {s['status']} ({s['path']})" for name, s in sources.items()]
    out += [""] + [f"- {line}" for line in _missing_plots(document)]
    out += [""] + [f"![{name}]({name})" for name in document["sections"].get("plots") or []]
    return "\n".join(out) + "\n"


def to_csv(document: dict) -> str:
    buffer = io.StringIO()
    if document.get("kind") != "vitship-report":
        headers, lines = merged_table(document)
        writer = csv.writer(buffer)
        writer.writerow(headers)
        writer.writerows(lines)
        return buffer.getvalue()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for r in document["sections"]["rows"]:
        base = {"artifact": r["artifact"], "target": r["target"], "variant": r["variant"], "size_bytes": r["size_bytes"],
                "parity_verdict": r["parity"]["verdict"], "parity_metric": r["parity"]["metric"], "parity_value": r["parity"]["value"],
                "accuracy": r["accuracy"]["accuracy"], "accuracy_delta_points": r["accuracy"]["delta_points"],
                "agreement": r["accuracy"]["agreement"], "accuracy_target": r["accuracy"]["target"]}
        cells = sorted(r["latency"].items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0) or [("", {"status": "not run"})]
        for batch, cell in cells:
            writer.writerow(base | {"batch": batch, "latency_status": cell.get("status")}
                            | {k: cell.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput_ips")})
    return buffer.getvalue()


def _html_table(headers: list[str], lines: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for line in lines:
        cells = []
        for text in line:
            word = text.split(" ", 1)[0].rstrip(",:").lower()
            numeric = text[:1].isdigit() or text[:1] in "+-" and text[1:2].isdigit()
            cls = "num" if numeric else word if word in ("pass", "fail", "error", "unavailable", "reference", "not") else ""
            cells.append(f"<td class=\"{cls}\">{html.escape(text)}</td>" if cls else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(document: dict, folder: Path) -> str:
    """A self-contained page; plots in ``folder`` are embedded as data URIs."""
    merged = document.get("kind") != "vitship-report"
    headers, lines = merged_table(document) if merged else main_table(document)
    esc = html.escape
    parts = [f"<h1>vitship {'merged ' if merged else ''}report</h1>"]
    if document.get("banner"):
        parts.append(f"<div class=\"banner\">{esc(document['banner'])}</div>")
    parts.append("".join(f"<div class=\"meta\">{esc(line)}</div>" for line in _meta_lines(document)))
    parts.append("<h2>Recommendation</h2><ul class=\"rec\">"
                 + "".join(f"<li>{esc(line)}</li>" for line in _recommendation_lines(document)) + "</ul>")
    unavailable = _unavailable_lines(document)
    if unavailable:
        parts.append(f"<details class=\"meta\"><summary>{len(unavailable)} targets not available on this machine</summary>"
                     + "".join(f"<div>{esc(line)}</div>" for line in unavailable) + "</details>")
    parts.append("<h2>Results</h2>" + _html_table(headers, lines))
    if accuracy_table(document)[1]:
        parts.append("<h2>Accuracy (Δ in points vs the PyTorch reference)</h2>" + _html_table(*accuracy_table(document)))
    notes = _accuracy_lines(document) + [f"{name}: {s['status']}" for name, s in
                                         ((document.get("sections") or {}).get("sources") or {}).items()]
    if notes:
        parts.append("<h2>Accuracy and sources</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    plots = document["sections"].get("plots") or []
    images = [f"<img alt=\"{esc(name)}\" src=\"data:image/png;base64,"
              f"{base64.b64encode((Path(folder) / name).read_bytes()).decode('ascii')}\">" for name in plots]
    missing = _missing_plots(document)
    if images or missing:
        parts.append("<h2>Plots</h2>" + "".join(f"<div class=\"meta\">{esc(m)}</div>" for m in missing)
                     + "<div class=\"plots\">" + "".join(images) + "</div>")
    title = esc(f"vitship report {document['run_id']}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_renderings(document: dict, folder: Path) -> None:
    folder = Path(folder)
    atomic_write_text(folder / "report.md", to_markdown(document))
    atomic_write_text(folder / "report.csv", to_csv(document))
    atomic_write_text(folder / "report.html", to_html(document, folder))
