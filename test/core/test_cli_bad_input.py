"""Every ``lkd`` command that reads a user's file answers a bad one (random bytes, a truncated good
file, an empty file, a missing path, a folder) with exit status 2 and one line that names the file,
no traceback, and no output file left behind.

Hypothesis draws the random bytes and the truncation points; the good files are made here (or are
shipped fixtures), so a reader that only copes with the files we write is caught.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkd_perception.cli import main
from lkd_perception.io.bag import BagWriter
from lkd_perception.io.formats import write_tum

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "test" / "fixtures"
T0 = 1_700_000_000_000_000_000


def _bag(path: Path) -> None:
    rng = np.random.default_rng(0)
    with BagWriter(path) as w:
        for k in range(3):
            w.write_image("/camera/image_raw", T0 + k * 100_000_000, rng.integers(0, 256, (24, 32, 3), np.uint8), "cam")


def _tum(path: Path) -> None:
    T = np.repeat(np.eye(4)[None], 5, 0)
    T[:, 0, 3] = np.arange(5)
    write_tum(path, np.arange(5) * 0.1, T)


def _checkpoint(path: Path) -> None:
    torch.save({"ema": {"w": torch.zeros(3)}, "model_args": {"nc": 1}}, path)


#: kind -> (suffix, writer of a good file of that kind)
GOOD: dict[str, tuple[str, Callable[[Path], None]]] = {
    "image": (".png", lambda p: shutil.copy(FIX / "lines_real" / "box.png", p)),
    "json": (".json", lambda p: shutil.copy(FIX / "lines_real" / "gt.json", p)),
    "tum": (".txt", _tum),
    "bag": (".mcap", _bag),
    "npz": (".npz", lambda p: shutil.copy(FIX / "leyolo_official" / "leyolo_nano_reference.npz", p)),
    "onnx": (".onnx", lambda p: shutil.copy(ROOT / "models" / "lsdnet.onnx", p)),
    "pt": (".pt", _checkpoint),
}


@dataclass(frozen=True)
class Case:
    """One command line; ``{x}`` is the bad file, ``{good_*}`` good files, ``{out}`` its output."""

    argv: str
    kind: str
    truncated: bool = True  # a truncated good file must fail too (not so for formats read in part)


CASES = [
    Case("detect {x} --out {out}", "image"),
    Case("lines {x} --out {out}", "image"),
    Case("detect {good_image} --model-path {x} --out {out}", "onnx"),
    Case("lines {good_image} --set model_path={x} --out {out}", "onnx"),
    Case("evaluate detections --pred {x} --gt {x} --out {out}", "json"),
    Case("evaluate lines --pred {x} --gt {good_json} --out {out}", "json"),
    Case("evaluate odometry --pred {x} --gt {good_tum} --out {out}", "tum", truncated=False),
    Case("evaluate all {x} --gt {tmp} --out {out}", "bag"),
    Case("odometry {x} --out {out}", "bag"),
    Case("replay {x} --out {out}", "bag"),
    Case("import leyolo {x} --out {out}", "npz"),
    Case("import lsdnet {x} --out {out}", "onnx"),
    Case("export leyolo --checkpoint {x} --out {out}", "pt"),
    Case("export lines --checkpoint {x} --out {out}", "pt"),
    Case("quantize lines --calibration {x} --out {out}", "npz"),
]


def _run(case: Case, bad: Path, tmp: Path, capsys) -> tuple[int, str, Path]:
    goods = {}
    for kind in ("image", "json", "tum"):
        suffix, make = GOOD[kind]
        g = tmp / f"good_{kind}{suffix}"
        if not g.exists():
            make(g)
        goods[f"good_{kind}"] = g
    out = tmp / "out" / "result.json"
    argv = case.argv.format(x=bad, out=out, tmp=tmp, **goods).split()
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err, out


def _check(case: Case, bad: Path, tmp: Path, capsys) -> None:
    rc, err, out = _run(case, bad, tmp, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"{case.argv} on {bad.name}: exit {rc}\n{err}"
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith("lkd: error:")]
    assert len(errors) == 1 and str(bad) in errors[0], f"{case.argv}: {err}"
    assert not (tmp / "out").exists(), f"{case.argv} left {list((tmp / 'out').rglob('*'))}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.argv.split(" {")[0].replace(" ", "_"))
@pytest.mark.parametrize("shape", ["empty", "missing", "folder"])
def test_empty_missing_or_folder(case, shape, tmp_path, capsys):
    suffix = GOOD[case.kind][0]
    bad = tmp_path / f"bad{suffix}"
    if shape == "empty":
        bad.write_bytes(b"")
    elif shape == "folder":
        bad.mkdir()
    _check(case, bad, tmp_path, capsys)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.argv.split(" {")[0].replace(" ", "_"))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=4096), cut=st.floats(0.05, 0.95))
def test_random_or_truncated(case, data, cut, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("bad")
    suffix, make = GOOD[case.kind]
    rand = tmp / f"random{suffix}"
    rand.write_bytes(data)
    _check(case, rand, tmp, capsys)
    if case.truncated:
        good = tmp / f"whole{suffix}"
        make(good)
        raw = good.read_bytes()
        bad = tmp / f"truncated{suffix}"
        bad.write_bytes(raw[: max(1, int(len(raw) * cut))])
        _check(case, bad, tmp, capsys)
