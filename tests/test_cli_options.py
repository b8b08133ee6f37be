"""Every command's options: help without types on flags, range-checked numbers, lists by repeats or commas."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from vitship.bench.cli import COMMANDS, app


def _options(command: str):
    import typer

    click_command = typer.main.get_command(app).commands[command]
    return [p for p in click_command.params if p.param_type_name == "option"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_type_on_flags_and_no_python_types_on_lists(vitship_main, command):
    code, out, err = vitship_main(*([command] if command else []), "--help")
    assert code == 0, err
    assert "<bool>" not in out and "list[" not in out, out
    for line in out.splitlines():  # a flag's row holds its name(s) and help, nothing in angle brackets in between
        if re.search(r"│ --(help|debug|quick|force|all|plots|torch)\b", line):
            names_and_type = line.split("│")[1].split("  ")[0:3]
            assert not any("<" in part for part in names_and_type), line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_list_option_takes_repeats_and_comma_lists_alike(command):
    """A list option is declared with list_option (bench/commands/common.py): its metavar is ITEM[,ITEM...]."""
    for option in _options(command):
        if option.multiple:
            assert option.metavar and option.metavar.endswith("...]"), (command, option.name)


@pytest.mark.parametrize("argv, message", [
    (["bench", "--threads", "0"], "Invalid value for --threads: 0 is not a whole number >= 1"),
    (["bench", "--min-time", "-1"], "Invalid value for --min-time: -1.0 is not a finite number > 0"),
    (["bench", "--min-time", "0"], "Invalid value for --min-time: 0.0 is not a finite number > 0"),
    (["bench", "--warmup", "nan"], "Invalid value for --warmup: nan is not a finite number >= 0"),
    (["bench", "--row-timeout", "inf"], "Invalid value for --row-timeout: inf is not a finite number > 0"),
    (["bench", "--min-iterations", "0"], "Invalid value for --min-iterations: 0 is not a whole number >= 1"),
    (["bench", "--batch", "8", "--batch", "0"], "Invalid value for --batch: '8,0': batch sizes are whole numbers >= 1"),
    (["bench", "--hint", "latency,fast"], "Invalid value for --hint: 'fast' is not one of latency, throughput"),
    (["parity", "--threads", "0"], "Invalid value for --threads: 0 is not a whole number >= 1"),
    (["parity", "--row-timeout", "nan"], "Invalid value for --row-timeout: nan is not a finite number > 0"),
    (["parity", "--random-inputs", "-1"], "Invalid value for --random-inputs: -1 is not a whole number >= 0"),
    (["eval", "--data", "d", "--batch-size", "0"], "Invalid value for --batch-size: 0 is not a whole number >= 1"),
    (["eval", "--data", "d", "--threshold", "1.5"], "Invalid value for --threshold: 1.5 is not a finite number >= 0 and <= 1"),
    (["eval", "--data", "d", "--target", "onnx"], "Invalid value for --target: 'onnx': expected ARTIFACT_OR_FORMAT=TARGET"),
    (["predict", "x.png", "--threshold", "nan"], "Invalid value for --threshold: nan is not a finite number >= 0 and <= 1"),
    (["export", "--coreml-max-batch", "0"], "Invalid value for --coreml-max-batch: 0 is not a whole number >= 1"),
    (["export", "--executorch-max-batch", "-2"], "Invalid value for --executorch-max-batch: -2 is not a whole number >= 1"),
    (["bench-check", "--seconds", "0"], "Invalid value for --seconds: 0.0 is not a finite number > 0"),
    (["bench-check", "--rounds", "0"], "Invalid value for --rounds: 0 is not a whole number >= 1"),
    (["bench-check", "--tolerance", "nan"], "Invalid value for --tolerance: nan is not a finite number > 0"),
    (["compat-check", "--photos", "0"], "Invalid value for --photos: 0 is not a whole number >= 1"),
])
def test_bad_numbers_are_a_usage_error_before_any_work(vitship_main, tmp_path, argv, message):
    """Exit 2 with click's message, and nothing read or written: --artifacts names a folder that does not exist."""
    code, out, err = vitship_main(*argv, "--artifacts", str(tmp_path / "none"))
    assert code == 2, out + err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "none").exists()


def test_parity_takes_a_comma_list_of_targets_like_bench_and_export(vitship_main, tiny_exports):
    """`parity --target a,b` was refused as one unknown name "a,b": now each name of the list is checked on its own."""
    artifacts = tiny_exports([("onnx", "fp32")])
    code, out, err = vitship_main("parity", "--artifacts", str(artifacts), "--no-torch",
                                  "--target", "onnxruntime:cpu,nonsense:x", "--target", "torch:cpu")
    assert code == 2 and "unknown target 'nonsense:x'" in err, err  # the only bad name of the three
    assert "'onnxruntime:cpu,nonsense:x'" not in err


def test_list_option_parses_repeats_and_commas_into_one_list():
    import typer

    from vitship.bench.commands.common import list_option

    seen = {}
    demo = typer.Typer()

    @demo.command()
    def main(name: list[str] = list_option("--name", help="names"),
             batch: list[str] = list_option("--batch", numbers=True, help="sizes")) -> None:
        seen.update(name=name, batch=batch)

    result = CliRunner().invoke(demo, ["--name", "a,b", "--name", " c ", "--batch", "1,8", "--batch", "32"])
    assert result.exit_code == 0, result.output
    assert seen == {"name": ["a", "b", "c"], "batch": [1, 8, 32]}
    assert CliRunner().invoke(demo, []).exit_code == 0 and seen == {"name": [], "batch": []}
