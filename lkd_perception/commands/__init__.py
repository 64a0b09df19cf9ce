"""Subcommands of the ``lkd`` command line.

Each module in this package defines ``COMMANDS: list[Command]``; :mod:`lkd_perception.cli`
discovers the modules, so a capability adds its commands without touching a shared list.
Modules import only light things at top level; heavy imports belong inside ``run`` so that
``lkd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One ``lkd`` subcommand, e.g. path ``("evaluate", "lines")`` is ``lkd evaluate lines``."""

    path: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: one typical command line, shown at the end of ``--help`` (a test requires it)
    example: str = ""


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    """``items`` with a progress bar on stderr for the long offline commands.

    The bar shows only on a terminal (tqdm's ``disable=None``): logs, pipes and CI keep one
    line per error instead of carriage-return noise.
    """
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr, disable=None, dynamic_ncols=True)


@contextmanager
def counting_bar(desc: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback that draws a progress bar on stderr, closed on exit, for jobs
    that report counts as they go (``lkd run``, ``lkd evaluate fleet``)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=sys.stderr, desc=desc, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def emit_json(obj: Any, out: str | Path | None) -> None:
    """Write a JSON result to ``out`` (creating parent folders) or, without one, to stdout."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    if out is None or str(out) == "-":
        sys.stdout.write(text + "\n")
        return
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


def _json_default(o: Any) -> Any:
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def comma_list(text: str, kind: Callable[[str], T], flag: str) -> tuple[T, ...]:
    """A comma-separated option (``--rate 5,10``) as values of ``kind``; a bad item is an
    :class:`InputError` naming the option, not a traceback."""
    from lkd_perception.common.errors import InputError

    try:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from exc


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` items of any command, values read as YAML (``true``, ``2``, ``reliable``)."""
    import yaml

    from lkd_perception.common.errors import ConfigError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out
