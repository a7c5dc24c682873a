"""Every command's help in one style: flags without a type, choices as their choices, the bench like the rest."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from deltamem.bench import build_parser
from deltamem_chat.cli import app

ROOT = Path(__file__).resolve().parent.parent
#: A metavar in braces (`{FILE}`, argparse's `{a,b}`), not a JSON example in a help text (`{"messages": …}`).
BRACED = re.compile(r"\{[\w|,.-]+\}")


def commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command under `command`, itself first."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    return result.output


PATHS = list(commands(typer.main.get_command(app)))


def test_every_command_is_walked() -> None:
    assert {(), ("bench",), ("replay",), ("import",), ("train",), ("serve",)} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "chat")
def test_help_has_no_bool_or_braced_metavar(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert "<bool>" not in text
    assert BRACED.findall(text) == []


def test_flags_and_arguments_read_the_click_way() -> None:
    replay = help_of(("replay",))
    assert re.search(r"--ab\s+--delta-only\s+Run the frozen lane", replay), "a flag pair has no type column"
    assert "replay [OPTIONS] FILE" in replay
    imported = help_of(("import",))
    assert "import [OPTIONS] FORMAT IN OUT" in imported and "<openai|sharegpt|locomo|longmemeval|" in imported
    assert re.search(r"--force\s+-f\s+Replace files", imported)
    assert "eval [OPTIONS] PATHS..." in help_of(("eval",))


def test_help_texts_keep_their_brackets() -> None:
    """Rich markup would read `[cpu]` as a style and drop it."""
    assert "pip install 'deltamem-chat[cpu]'" in " ".join(help_of(()).split())


def _parser_options() -> dict[str, str]:
    """The bench parser's shown long options and their help."""
    return {flag: action.help or "" for action in build_parser()._actions if action.help != argparse.SUPPRESS
            for flag in action.option_strings if flag.startswith("--") and flag != "--help"}


def test_bench_help_lists_the_bench_parsers_options_in_its_words() -> None:
    text = help_of(("bench",))
    shown = set(re.findall(r"│ (--[a-z][\w-]*)", text)) - {"--help"}
    options = _parser_options()
    assert shown == set(options) and len(options) > 10
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())
    for flag, words in options.items():
        assert " ".join(words.split()) in flat, flag
    assert "--_child" not in text and "usage: python -m deltamem.bench" not in text


def test_bench_help_needs_no_torch() -> None:
    code = ("import sys; from typer.testing import CliRunner; from deltamem_chat.cli import app; "
            "result = CliRunner().invoke(app, ['bench', '--help']); assert result.exit_code == 0; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_bench_values_go_on_as_the_bench_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import deltamem.bench

    seen: list[list[str]] = []
    monkeypatch.setattr(deltamem.bench, "main", lambda argv: seen.append(list(argv)) or 0)
    result = CliRunner().invoke(app, ["bench", "--shape", "tiny", "--repeats", "2", "--json", "out.json"])
    assert result.exit_code == 0, result.output
    assert seen == [["--shape", "tiny", "--repeats", "2", "--json", "out.json"]]
    refused = CliRunner().invoke(app, ["bench", "--repeats", "0"])
    assert refused.exit_code == 2 and "greater than or equal to 1" in refused.output


def test_an_error_sentence_keeps_its_brackets(capsys: pytest.CaptureFixture) -> None:
    from deltamem_chat.commands.options import fail

    fail("FlashAttention-2 was asked for but flash-attn is not installed: pip install 'deltamem-chat[gpu]'")
    assert "pip install 'deltamem-chat[gpu]'" in capsys.readouterr().err
