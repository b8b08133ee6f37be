"""The README stays honest: every `vitship COMMAND` it shows exists, with every --flag it shows for that command.

Commands are read from the README's code (inline `code` and fenced blocks), where a user copies them from; each
command's --help runs through the installed entry point, once per command.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
COMMAND = re.compile(r"\bvitship ([a-z][a-z0-9-]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _code_spans(text: str) -> list[str]:
    """Each line of a fenced block, and each inline `code` span outside the blocks."""
    spans = []
    for index, part in enumerate(re.split(r"^```[a-z]*\n", text, flags=re.MULTILINE)):
        spans += part.splitlines() if index % 2 else re.findall(r"`([^`\n]+)`", part)
    return spans


def readme_commands() -> dict[str, set[str]]:
    """command -> the flags the README shows for it: after `vitship COMMAND` in the same piece of code (a line may
    chain commands with && or ;), and in any code of the command's own section (### COMMAND) that names no command."""
    shown: dict[str, set[str]] = {}
    for section in re.split(r"^#{2,3} ", README.read_text(), flags=re.MULTILINE):
        heading = section.split("\n", 1)[0].strip()
        for span in _code_spans(section):
            for piece in re.split(r"&&|;|\|", span.split(" # ")[0]):
                match = COMMAND.search(piece)
                if match:
                    shown.setdefault(match.group(1), set()).update(FLAG.findall(piece[match.end():]))
                elif "vitship" not in piece and heading in shown and FLAG.search(piece):
                    shown[heading].update(FLAG.findall(piece))
    return shown


def test_the_readme_shows_the_commands_a_new_user_needs():
    shown = readme_commands()
    for command in ("export", "parity", "diagnose", "bench", "report", "predict", "eval", "compare", "doctor"):
        assert command in shown, command
    assert "--debug" in shown["parity"] and "--merge" in shown["report"]


@pytest.mark.parametrize("command", sorted(readme_commands()))
def test_every_readme_command_and_flag_is_in_its_help(vitship_main, command):
    code, out, err = vitship_main(command, "--help")
    assert code == 0, f"the README shows `vitship {command}`, which does not run: {err}"
    options = set(FLAG.findall(out))
    missing = readme_commands()[command] - options
    assert not missing, f"the README shows vitship {command} {' '.join(sorted(missing))}, which its --help does not list"


def test_no_readme_line_cites_a_file_outside_the_repository():
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        assert "../" not in line, (number, line)
    repository = README.parent
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not re.match(r"[a-z]+://", target):
            assert (repository / target).exists(), target
