"""Rules the source tree keeps, checked by reading it (STYLE.md): one status vocabulary, typed reads, short files.

Each test parses every vitship source file (not the tests) and names each offending line, so a regression
says where it is. They read files only: a fraction of a second for the whole tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from vitship.models.status import Status

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "exporters", "runtimes", "bench")
MAX_LINES = 320  # STYLE.md: files under ~300 lines, 320 at most


def source_files() -> list[Path]:
    files = [ROOT / "__init__.py"] + [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50, files  # the tree was found
    return files


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


# --- one status vocabulary -------------------------------------------------------------------------------------

# Every Status value, and the words the older vocabularies used for one (export, the int8 gate, compare).
STATUS_WORDS = {str(s) for s in Status} | {"passed", "failed", "export_failed", "parity_failed", "regression",
                                          "not compared"}
MARKUP = re.compile(r"\[[a-z ]+\](" + "|".join(map(re.escape, sorted(STATUS_WORDS))) + r")\[/")
# Strings that spell a status word and mean something else: (file, word) -> what the word is there.
NOT_A_STATUS = {
    ("models/preprocess.py", "error"): "warnings.simplefilter's action: a decompression-bomb warning raises",
    ("runtimes/coreml_rt.py", "reference"): "the device of the coreml:reference target",
    ("bench/diagnose/result.py", "reference"): "diagnose JSON's key naming the fp32 sibling compared against",
    ("bench/accuracy.py", "skipped"): "eval.json's list of the unreadable images eval skipped",
}
# Files that still speak the int8 gate's and the export's own words; issue 22's int8 work (exporters/int8/, the
# pipeline's ExportResult on Status) replaces them. Empty this set when it lands.
INT8_VOCABULARY_PENDING = {"exporters/int8_ladder.py", "exporters/pipeline.py", "bench/commands/export.py",
                           "bench/int8_gate.py"}


def bare_status_words(path: Path) -> list[tuple[int, str]]:
    """(line, string) of each string constant that is a status word, ``word: reason`` or rich markup around one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        word = text.partition(":")[0] if ":" in text else text
        markup = MARKUP.search(text)
        if word in STATUS_WORDS and (word == text or text.startswith(word + ": ")):
            found.append((node.lineno, word))
        elif markup:
            found.append((node.lineno, markup.group(1)))
    return sorted((line, word) for line, word in found if (relative(path), word) not in NOT_A_STATUS)


def test_no_status_word_is_a_bare_string_outside_the_one_status_type():
    offenders = [f"{relative(path)}:{line}: {word!r}" for path in source_files()
                 if relative(path) not in {"models/status.py", *INT8_VOCABULARY_PENDING}
                 for line, word in bare_status_words(path)]
    assert not offenders, "use vitship.models.status.Status (the reason goes in its own field):\n" + "\n".join(offenders)


def test_the_status_scan_finds_what_it_must_and_nothing_else(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('a = "ok"\nb = row.status == "fail"\nc = "unavailable: needs macOS"\nd = "[green]pass[/green]"\n'
                      'e = "reference executor, not the Apple runtime"\nf = "an error in the file"\ng = "okay"\n'
                      'h = {"passed": True}\n')
    assert bare_status_words(sample) == [(1, "ok"), (2, "fail"), (3, "unavailable"), (4, "pass"), (8, "passed")]


def test_every_exception_to_the_status_scan_is_still_needed():
    for (name, word), why in NOT_A_STATUS.items():
        assert (ROOT / name).exists() and any(w == word for _, w in _unfiltered(ROOT / name)), (name, word, why)


def _unfiltered(path: Path) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_WORDS]


# --- typed reads of the manifest and of parity ------------------------------------------------------------

# A read by key of an artifact's details, calibration or options, or of a parity metric: each is a typed attribute
# (exporters/details.py, Artifact.option, models/judgement.py Metrics). Only the schema reads the JSON by key.
KEYED_READ = re.compile(r"""
    \b(details|calibration|\.options)(\s*or\s*\{\}\s*\))?\s*(\[\s*["']|\.get\(\s*["'])
  | (\[|\.get\()\s*["'](min_cosine|max_abs_logit|mean_abs_logit|p99_abs_logit|max_prob_err|decisive_agreement|n_ambiguous
                         |ambiguous_flips|n_photos|flipped)["']
""", re.VERBOSE)
SCHEMA_MODULES = {"exporters/schema.py", "exporters/details.py"}


def keyed_reads(path: Path) -> list[tuple[int, str]]:
    return [(number, line.strip()) for number, line in enumerate(path.read_text().splitlines(), 1) if KEYED_READ.search(line)]


def test_manifest_details_and_parity_metrics_are_read_as_attributes_outside_the_schema():
    offenders = [f"{relative(path)}:{number}: {line}" for path in source_files()
                 if relative(path) not in SCHEMA_MODULES | INT8_VOCABULARY_PENDING for number, line in keyed_reads(path)]
    assert not offenders, "read the typed attribute (exporters/details.py, Artifact.option, Metrics):\n" + "\n".join(offenders)


def test_the_keyed_read_scan_finds_what_it_must_and_nothing_else(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('a = artifact.details["apple"]\nb = (artifact.details or {}).get("delegate")\n'
                      'c = entry.calibration["count"]\nd = artifact.options.get("smooth_alpha")\ne = m["min_cosine"]\n'
                      'f = artifact.details.apple\ng = artifact.option("smooth_alpha")\nh = metrics.min_cosine\n'
                      'i = session.info.extra["compute_plan"]\nj = row.metrics.get("accuracy")\n')
    assert [number for number, _ in keyed_reads(sample)] == [1, 2, 3, 4, 5]


# --- file length ----------------------------------------------------------------------------------------------

def test_no_source_file_is_over_the_line_limit():
    lengths = {relative(path): len(path.read_text().splitlines()) for path in source_files()}
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split the module by concern): {long}"
