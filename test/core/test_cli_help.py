"""``lkd <command> --help`` of every command: its defaults and one example, as users expect."""

from __future__ import annotations

import argparse
import shlex

import pytest

from lkd_perception.cli import build_parser, discover

COMMANDS = sorted(discover(), key=lambda c: c.path)


def _leaf(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "_".join(c.path))
def test_help_shows_defaults_and_an_example_that_parses(cmd):
    parser = build_parser(COMMANDS)
    leaf = _leaf(parser, cmd.path)
    text = " ".join(leaf.format_help().split())
    for action in leaf._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        if action.default in (None, False, argparse.SUPPRESS):
            continue
        assert action.help, f"lkd {' '.join(cmd.path)} {action.option_strings[0]}: no help text"
        if "default" in action.help.lower():
            continue  # the text says the default in words (e.g. "default: the config's path")
        compact = "".join(text.split())  # argparse may wrap inside a long default
        assert "(default:" + "".join(str(action.default).split()) in compact, (
            f"{action.option_strings[0]} default {action.default!r} not shown"
        )
    assert cmd.example.startswith("lkd " + " ".join(cmd.path)), f"lkd {' '.join(cmd.path)}: no example"
    assert "example:" in leaf.format_help()
    args = parser.parse_args(shlex.split(cmd.example)[1:])  # the example is a valid command line
    assert args._run is cmd.run
