"""Where the shipped files are: a relative model path works from a source checkout and from an
install (pip or colcon) alike, so a parameter file can say ``models/leyolo_n_coco.onnx`` anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

from lkd_perception.common.errors import InputError, ModelError

PACKAGE = "lkd_perception"
_HERE = Path(__file__).resolve()
#: the source checkout (repository root) when running from one
SOURCE_ROOT = _HERE.parents[2]
# An install puts this file in <prefix>/lib/pythonX.Y/site-packages/lkd_perception/common/; colcon's
# <prefix> is install/lkd_perception, not sys.prefix, so both are searched for share/lkd_perception,
# this copy's own prefix first (its share files were installed with it).
_INSTALL_PREFIXES = tuple(dict.fromkeys(([_HERE.parents[5]] if len(_HERE.parents) > 5 else []) + [Path(sys.prefix)]))


def install_share_dirs() -> list[Path]:
    """``share/lkd_perception`` of each install prefix this package may have come from."""
    return [prefix / "share" / PACKAGE for prefix in _INSTALL_PREFIXES]


def resolve_model_path(path: str | Path) -> Path:
    """An absolute path as is; a relative one in the current folder, the source checkout, then
    each install prefix's ``share/lkd_perception``. A missing file is a :class:`ModelError`
    that lists where it looked."""
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, SOURCE_ROOT / p] + [share / p for share in install_share_dirs()]
    for c in candidates:
        if c.is_file():
            return c
    raise ModelError(f"model file {str(path)!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks: the provenance of imported weights (metadata,
    model card) is stated by digest so anyone can check a file with ``sha256sum``."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; missing, unreadable or binary files are an :class:`InputError`.

    Every text reader goes through here so that a wrong file given on the command line ends in
    one line naming it, never in a ``UnicodeDecodeError`` traceback.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}" if not p.exists() else f"{p}: not a {what} (a folder?)")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not a text {what} (byte {exc.start} is not UTF-8)") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror}") from exc
