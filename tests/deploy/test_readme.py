"""What the README tells an operator to type is what the code takes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer.main
from typer.core import TyperGroup, TyperOption

from support import ROOT
from vpsapi.cli import app


def _leaf_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_the_command_table_names_every_command_and_option() -> None:
    """`vpsapi <command> --help` and the README's table agree: the rows of a command's
    group (a row may list several of its commands) name it and every option it takes."""
    rows = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `vpsapi ")
    ]
    for path, command in _leaf_commands(typer.main.get_command(app)):
        group_rows = " ".join(row for row in rows if row.startswith(f"| `vpsapi {path.split()[0]}"))
        for word in (path.split()[-1], *_options(command)):
            assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", group_rows), (path, word)


def _options(command: Any) -> list[str]:
    return [
        option
        for param in command.params
        if isinstance(param, TyperOption) and param.name != "help"
        for option in param.opts
    ]
