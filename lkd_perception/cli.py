"""The ``lkd`` command: offline tools over the same core the ROS 2 nodes use.

Subcommands live in :mod:`lkd_perception.commands`; this module only discovers them and builds
the argument parser. Errors the product raises on purpose (:class:`LkdError`) end the command
with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

from lkd_perception import __version__, commands
from lkd_perception.commands import Command
from lkd_perception.common.errors import LkdError


def discover() -> list[Command]:
    """Every Command declared by the modules of :mod:`lkd_perception.commands`."""
    found: list[Command] = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        found.extend(getattr(module, "COMMANDS", []))
    return found


class HelpWithDefaults(argparse.RawDescriptionHelpFormatter):
    """``--help`` that shows each option's default (unless its text already says it) and keeps
    the example's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default in (None, False, argparse.SUPPRESS) or "default" in text.lower()
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def build_parser(cmds: Sequence[Command]) -> argparse.ArgumentParser:
    """A parser with nested subcommands (``lkd evaluate lines ...``)."""
    parser = argparse.ArgumentParser(prog="lkd", description="lkd_perception command line")
    parser.add_argument("--version", action="version", version=f"lkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {}
    groups[()] = parser.add_subparsers(dest="cmd0", metavar="COMMAND")
    groups[()].required = True
    nodes: dict[tuple[str, ...], argparse.ArgumentParser] = {(): parser}
    for cmd in sorted(cmds, key=lambda c: c.path):
        for depth in range(1, len(cmd.path)):
            prefix = cmd.path[:depth]
            if prefix not in nodes:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} ...")
                nodes[prefix] = sub
                groups[prefix] = sub.add_subparsers(dest=f"cmd{depth}", metavar="WHAT")
                groups[prefix].required = True
        leaf = groups[cmd.path[:-1]].add_parser(
            cmd.path[-1], help=cmd.help, description=cmd.help, formatter_class=HelpWithDefaults,
            epilog=f"example:\n  {cmd.example}" if cmd.example else None)
        cmd.add_arguments(leaf)
        leaf.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(discover())
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except LkdError as exc:
        print(f"lkd: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file the user named that the command's own checks did not anticipate (permissions,
        # a folder where a file was expected, a full disk): still one line naming it.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lkd: error: {where}{one_line(exc.strerror or str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def one_line(message: str, limit: int = 400) -> str:
    """An error message on one line (libraries' messages may span many), cut at ``limit`` characters."""
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
