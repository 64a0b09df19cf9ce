"""Official LeYOLO checkpoints (LilianHollard/LeYOLO, an ultralytics 8.1.4 fork) into our LeYOLO.

The published ``.pt`` files pickle the fork's own classes, so they are read here only as plain
named tensors (an ``.npz`` of the checkpoint's state_dict) plus a JSON beside it holding the
layer list, class names and strides. Nothing of ultralytics is imported or unpickled.

Loading is by an explicit name map from our module tree to the official tensor names
(:func:`official_name`), and it is strict both ways: every tensor of our model must be found
with the same shape, and every official tensor must be used (the only exception is the DFL
convolution, a fixed ``arange`` that our decoder holds as a buffer; it is checked instead).
A mismatch is a :class:`ModelError` naming the tensors, so a wrong file can never load
half-way and produce plausible-looking wrong boxes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lkd_perception.common.errors import ModelError
from lkd_perception.common.paths import sha256_of
from lkd_perception.detection.leyolo import SIZES, LeYOLO

#: upstream layer list: ``[from, repeats, module, args]`` rows of ``backbone`` then ``head``
OfficialLayers = dict[str, list[list[Any]]]

# Our module path -> the official one. Applied in order, first match wins; ``{i}`` is our layer index.
#   layers.i.conv.*               mn_conv at the top level          -> model.i.c.*
#   layers.i.layers.j.conv.*      mn_conv inside MobileNetV3_BLOCK  -> model.i.layers.j.c.*
#   layers.i.layers.j.*           plain Conv2d / BatchNorm2d        -> model.i.layers.j.*
#   layers.i.reduce/fuse.*        SPPF                              -> model.i.cv1/cv2.*
#   head.box/cls.l.k.*            Detect (DNiN) branches            -> model.H.cv2/cv3.l.k.*
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^layers\.(\d+)\.conv\.(.+)$"), r"model.\1.c.\2"),
    (re.compile(r"^layers\.(\d+)\.bn\.(.+)$"), r"model.\1.bn.\2"),
    (re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.conv\.(.+)$"), r"model.\1.layers.\2.c.\3"),
    (re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.bn\.(.+)$"), r"model.\1.layers.\2.bn.\3"),
    (re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$"),
     r"model.\1.layers.\2.\3"),
    (re.compile(r"^layers\.(\d+)\.reduce\.(.+)$"), r"model.\1.cv1.\2"),
    (re.compile(r"^layers\.(\d+)\.fuse\.(.+)$"), r"model.\1.cv2.\2"),
)
_HEAD = re.compile(r"^head\.(box|cls)\.(.+)$")
_DFL = "dfl.conv.weight"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """An official checkpoint as read from disk: tensors by name and the facts of its JSON."""

    tensors: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    strides: tuple[float, ...]
    layers: OfficialLayers
    meta: dict[str, Any]
    path: Path


def official_name(ours: str, head_index: int) -> str:
    """The official tensor name of one of our state_dict keys (``head_index``: the Detect layer)."""
    m = _HEAD.match(ours)
    if m:
        return f"model.{head_index}.{'cv2' if m.group(1) == 'box' else 'cv3'}.{m.group(2)}"
    for pattern, repl in _RULES:
        if pattern.match(ours):
            return pattern.sub(repl, ours)
    raise ModelError(f"no official name for our tensor {ours!r} (the name map does not cover this module)")


def table_from_official(layers: OfficialLayers) -> tuple[tuple[Any, str, tuple], ...]:
    """Translate the upstream layer list into our table rows (see ``leyolo._Row``), Detect excluded.

    Used to prove that our nano table *is* the published one, row by row, rather than a lookalike.
    """
    rows: list[tuple[Any, str, tuple]] = []
    for src, repeats, module, args in [*layers["backbone"], *layers["head"]]:
        if repeats != 1:
            raise ModelError(f"layer {module} with {repeats} repeats: not used by any published LeYOLO")
        if module == "mn_conv":
            c2, k, s, _act = args
            rows.append((src, "conv", (c2, k, s)))
        elif module == "MobileNetV3_BLOCK":
            c2, k, e, _se, _act, s, *rest = args
            rows.append((src, "ib", (c2, k, e, s, bool(rest[0]) if rest else True)))
        elif module == "SPPF":
            rows.append((src, "sppf", (args[0], args[1])))
        elif module == "nn.Upsample":
            rows.append((src, "up", ()))
        elif module == "Concat":
            rows.append((list(src), "cat", ()))
        elif module == "Detect":
            continue
        else:
            raise ModelError(f"unknown upstream module {module!r} in the layer list")
    return tuple(rows)


def _detect_sources(layers: OfficialLayers) -> tuple[int, ...]:
    detect = [row for row in layers["head"] if row[2] == "Detect"]
    if len(detect) != 1:
        raise ModelError("the layer list must end with exactly one Detect layer")
    return tuple(int(i) for i in detect[0][0])


def match_size(layers: OfficialLayers) -> str:
    """Which of our LeYOLO sizes builds exactly this upstream layer list (else a ModelError)."""
    table, head_from = table_from_official(layers), _detect_sources(layers)
    for name, spec in SIZES.items():
        if spec.width == 1.0 and _normalise(spec.table) == _normalise(table) and spec.head_from == head_from:
            return name
    raise ModelError("the checkpoint's layer list matches none of our LeYOLO tables (only nano, width 1.0, "
                     "is importable: the published small/medium/large checkpoints embed other layer indices)")


def _normalise(table: Sequence[tuple[Any, str, tuple]]) -> list[tuple[Any, str, tuple]]:
    return [(list(src) if isinstance(src, (list, tuple)) else src, kind, tuple(args)) for src, kind, args in table]


def read_checkpoint(npz_path: str | Path, json_path: str | Path | None = None) -> OfficialCheckpoint:
    """Read the tensors (``.npz``) and their description (``.json``, default: beside the npz)."""
    npz = Path(npz_path)
    meta_path = Path(json_path) if json_path else npz.with_suffix(".json")
    if not npz.is_file():
        raise ModelError(f"weights file {str(npz)!r} not found (an official LeYOLO import needs the tensors (.npz) "
                         f"and the layer list/class names (.json) beside them)")
    if not meta_path.is_file():
        raise ModelError(f"{npz}: its layer list/class names {str(meta_path)!r} are not found (an official LeYOLO "
                         f"import needs the .json beside the tensors, or --json)")
    try:
        with np.load(npz, allow_pickle=False) as data:
            tensors = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:  # zipfile/np errors for a corrupt file
        raise ModelError(f"{npz}: not a readable .npz of named tensors: {exc}") from exc
    try:
        meta = json.loads(meta_path.read_text())
        names = tuple(str(n) for n in meta["names"])
        strides = tuple(float(s) for s in meta["stride"])
        layers = {"backbone": meta["layers"]["backbone"], "head": meta["layers"]["head"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{meta_path}: expected JSON with 'names', 'stride' and 'layers' (backbone/head): {exc}"
        ) from exc
    return OfficialCheckpoint(tensors, names, strides, layers, meta, npz)


def build_official(ckpt: OfficialCheckpoint) -> LeYOLO:
    """Our LeYOLO with the official weights loaded by the explicit name map, in eval mode."""
    size = match_size(ckpt.layers)
    model = LeYOLO(size, nc=len(ckpt.class_names))
    if tuple(float(s) for s in model.strides) != ckpt.strides:
        raise ModelError(f"{ckpt.path}: strides {ckpt.strides} differ from ours {model.strides}")
    head_index = len(ckpt.layers["backbone"]) + len(ckpt.layers["head"]) - 1
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    missing, wrong_shape = [], []
    for key, value in ours.items():
        name = official_name(key, head_index)
        if name not in ckpt.tensors:
            missing.append(name)
            continue
        src = ckpt.tensors[name]
        if tuple(src.shape) != tuple(value.shape):
            wrong_shape.append(f"{name} {tuple(src.shape)} (expected {tuple(value.shape)})")
            continue
        loaded[key] = torch.from_numpy(np.array(src)).to(value.dtype)
    used = {official_name(k, head_index) for k in ours} | {f"model.{head_index}.{_DFL}"}
    unused = sorted(set(ckpt.tensors) - used)
    if missing or wrong_shape or unused:
        parts = []
        if missing:
            parts.append(f"missing tensors {_few(missing)}")
        if wrong_shape:
            parts.append(f"wrong shapes {_few(wrong_shape)}")
        if unused:
            parts.append(f"tensors our LeYOLO-{size} has no place for {_few(unused)}")
        raise ModelError(
            f"{ckpt.path}: not the official LeYOLO-{size} with {len(ckpt.class_names)} classes: " + "; ".join(parts)
        )
    _check_dfl(ckpt, head_index, model.reg_max)
    model.load_state_dict(loaded, strict=True)
    return model.eval()


def _check_dfl(ckpt: OfficialCheckpoint, head_index: int, reg_max: int) -> None:
    """The DFL 1x1 conv must be the fixed bin index ``0..reg_max-1`` our decoder assumes."""
    name = f"model.{head_index}.{_DFL}"
    w = ckpt.tensors.get(name)
    if w is None or w.size != reg_max or not np.array_equal(w.reshape(-1), np.arange(reg_max, dtype=w.dtype)):
        raise ModelError(f"{ckpt.path}: {name} must be the fixed bins 0..{reg_max - 1} (shape (1, {reg_max}, 1, 1))")


def _few(items: Sequence[str], n: int = 6) -> str:
    head = ", ".join(items[:n])
    return f"[{head}{', ...' if len(items) > n else ''}] ({len(items)} in all)"


@dataclass(frozen=True)
class ImportResult:
    """What ``lkd import leyolo`` wrote and measured."""

    onnx: str
    img_size: int
    size: str
    classes: int
    parameters: int
    source_sha256: str
    onnx_sha256: str


def import_leyolo(
    npz_path: str | Path, out_path: str | Path, img_size: int = 320, json_path: str | Path | None = None
) -> ImportResult:
    """Official checkpoint -> our LeYOLO -> ONNX with the detector contract and provenance metadata.

    The metadata records where the weights came from and under which licence, because the
    published LeYOLO weights are AGPL-3.0 while this package is Apache-2.0: whoever ships the
    ONNX file must be able to tell from the file itself.
    """
    from lkd_perception.detection.export import export_leyolo
    from lkd_perception.detection.leyolo import count_parameters

    ckpt = read_checkpoint(npz_path, json_path)
    model = build_official(ckpt)
    source_sha = sha256_of(ckpt.path)
    extra = {
        "source": str(ckpt.meta.get("source", "LilianHollard/LeYOLO (official checkpoint)")),
        "licence": str(ckpt.meta.get("licence", "AGPL-3.0")),
        "source_sha256": source_sha,
        "imported_by": f"lkd import leyolo {ckpt.path.name} --img-size {img_size}",
    }
    out = export_leyolo(model, out_path, img_size, ckpt.class_names, extra)
    return ImportResult(str(out), img_size, model.size, model.nc, count_parameters(model), source_sha, sha256_of(out))
