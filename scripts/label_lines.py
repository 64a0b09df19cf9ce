#!/usr/bin/env python3
"""Refine hand-placed line-segment labels against the image gradient (a labelling tool).

Why: endpoints typed in by eye from an enlarged view are good to 2-3 px; sAP10 at the 128x128
protocol tolerates roughly 1-2 px at 640 px, so each rough segment is snapped to the edge it was
meant for. The tool never invents segments: it moves and trims the ones a person placed, and flags
those it cannot support so that the person fixes the rough label.

Input: a rough JSON in the ground-truth line format of ``lkd_perception.io.formats``
(``{image: {"width": W, "height": H, "lines": [[x1, y1, x2, y2], ...]}}``), images beside it (or in
``--images``). An image entry may carry ``"refine": {"band": 5}`` to override a knob for that image.
Output: the same format with refined endpoints, rounded to 0.01 px.

Per rough segment (pixel centres at integer coordinates, x right, y down):

1. Gradient of the grey image: Gaussian sigma 1, Sobel 3x3 / 8, i.e. grey levels per pixel.
2. Candidates: pixels within ``--band`` px of the rough line, at most ``--extend`` px beyond its
   ends, with magnitude >= max(``--min-mag``, ``--rel-mag`` x the band's 95th percentile) and gradient
   direction within ``--angle-tol`` degrees of the line normal.
3. Polarity: a step edge has one gradient sign across the line; a thin painted line or bar has
   both, on its two sides. When the minor sign carries >= 40 % of the major sign's weight and the
   two lie 1-6 px apart, both are used (the fit lands on the centre line, the wireframe convention
   for thin lines); both signs on the same place (< 1 px apart) are an edge whose polarity flips
   along it (chessboard lines) and are used too; otherwise only the major sign (the edge itself).
4. Fit: magnitude-weighted total least squares; steps 2-4 are repeated twice around the new line.
5. Ends: 1 px bins along the fitted line are "supported" if a candidate lies within 1.5 px of the
   line there. From the best-supported bin near the middle, the segment grows both ways until a
   gap longer than ``--max-gap`` px; ends never move more than ``--extend`` px beyond the rough ends.

A segment whose support covers < 60 % of its rough length, or whose refined length is < 10 px, is
reported on stderr (``FLAG``) and written unrefined, so that a flagged label stays visible.

Usage::

    python scripts/label_lines.py ROUGH.json --out GT.json [--images DIR] [--overlay DIR]

``--overlay DIR`` writes ``<image stem>_overlay.png`` per image: rough labels red, refined green,
numbered by index, at twice the size.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class RefineParams:
    """Knobs of the refinement (defaults used for the shipped fixture)."""

    band: float = 3.0
    extend: float = 6.0
    angle_tol: float = 20.0
    min_mag: float = 6.0
    rel_mag: float = 0.25
    max_gap: float = 3.0
    min_support: float = 0.6


@dataclass(frozen=True)
class Refined:
    """One refined segment and what the refinement saw."""

    segment: np.ndarray  # (4,) x1, y1, x2, y2
    support: float  # supported fraction of the rough length
    flagged: bool


def gradient(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) in grey levels per pixel after a sigma-1 Gaussian (so noise does not rule)."""
    img = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return gx, gy


def _frame(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    p, q = seg[:2], seg[2:]
    d = q - p
    length = float(np.hypot(*d))
    u = d / max(length, 1e-9)
    n = np.array([-u[1], u[0]])
    return p, u, n, length


def _candidates(
    gx: np.ndarray,
    gy: np.ndarray,
    p: np.ndarray,
    u: np.ndarray,
    n: np.ndarray,
    t_lo: float,
    t_hi: float,
    prm: RefineParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels near the line: positions (M,2), along t, across s, signed normal gradient g_n."""
    h, w = gx.shape
    ends = np.array([p + t_lo * u, p + t_hi * u])
    pad = prm.band + 1
    x0 = int(max(0, np.floor(ends[:, 0].min() - pad)))
    x1 = int(min(w - 1, np.ceil(ends[:, 0].max() + pad)))
    y0 = int(max(0, np.floor(ends[:, 1].min() - pad)))
    y1 = int(min(h - 1, np.ceil(ends[:, 1].max() + pad)))
    if x1 < x0 or y1 < y0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0)
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    rel = pts - p
    t, s = rel @ u, rel @ n
    keep = (np.abs(s) <= prm.band) & (t >= t_lo) & (t <= t_hi)
    pts, t, s = pts[keep], t[keep], s[keep]
    gxv = gx[pts[:, 1].astype(int), pts[:, 0].astype(int)].astype(np.float64)
    gyv = gy[pts[:, 1].astype(int), pts[:, 0].astype(int)].astype(np.float64)
    mag = np.hypot(gxv, gyv)
    if len(mag) == 0:
        return pts, t, s, mag
    gn = gxv * n[0] + gyv * n[1]
    thr = max(prm.min_mag, prm.rel_mag * float(np.percentile(mag, 95)))
    aligned = np.abs(gn) >= mag * np.cos(np.radians(prm.angle_tol))
    ok = (mag >= thr) & aligned
    return pts[ok], t[ok], s[ok], gn[ok]


def _polarity(s: np.ndarray, gn: np.ndarray) -> tuple[np.ndarray, bool]:
    """Pixels to fit and whether they are a thin line's two flanks (else one edge).

    Both signs on the same place are an edge whose polarity flips along its length (a chessboard
    line); both signs 1-6 px apart are a thin line; a weak minor sign is clutter.
    """
    pos, neg = gn > 0, gn < 0
    wp, wn = float(gn[pos].sum()), float(-gn[neg].sum())
    major, minor = (pos, neg) if wp >= wn else (neg, pos)
    if min(wp, wn) >= 0.4 * max(wp, wn) and minor.any():
        c_major = float(np.average(s[major], weights=np.abs(gn[major])))
        c_minor = float(np.average(s[minor], weights=np.abs(gn[minor])))
        sep = abs(c_major - c_minor)
        if sep < 1.0:
            return major | minor, False
        if sep <= 6.0:
            return major | minor, True
    return major, False


def _fit(pts: np.ndarray, wts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted total least squares: centroid and unit direction."""
    c = np.average(pts, axis=0, weights=wts)
    d = pts - c
    cov = (d * wts[:, None]).T @ d
    evals, evecs = np.linalg.eigh(cov)
    return c, evecs[:, int(np.argmax(evals))]


def refine_segment(gx: np.ndarray, gy: np.ndarray, rough: np.ndarray, prm: RefineParams) -> Refined:
    """Snap one rough segment to the gradient and cut its ends where the edge support stops."""
    rough = np.asarray(rough, np.float64)
    p, u, n, length = _frame(rough)
    if length < 2:
        return Refined(rough, 0.0, True)
    a, b = p.copy(), p + length * u  # current line through a with direction u
    for _ in range(3):
        pts, t, s, gn = _candidates(gx, gy, a, u, n, -prm.extend, length + prm.extend, prm)
        if len(pts) < 5:
            return Refined(rough, 0.0, True)
        m, _ = _polarity(s, gn)
        c, d = _fit(pts[m], np.abs(gn[m]))
        if d @ u < 0:
            d = -d
        # re-express the rough ends on the new line (projection keeps the labelled extent)
        a = c + ((p - c) @ d) * d
        b = c + ((rough[2:] - c) @ d) * d
        u = d
        n = np.array([-u[1], u[0]])
        length = float(np.hypot(*(b - a)))
    pts, t, s, gn = _candidates(gx, gy, a, u, n, -prm.extend, length + prm.extend, prm)
    m, thin_line = _polarity(s, gn) if len(pts) else (np.zeros(0, bool), False)
    # an edge is supported on the line itself; a thin line's support is on its two flanks
    near = m & (np.abs(s) <= (1.5 + prm.band if thin_line else 1.5))
    lo = int(np.floor(-prm.extend))
    bins = np.zeros(int(np.ceil(length + prm.extend)) - lo + 1, bool)
    if near.any():
        bins[np.clip(np.round(t[near]).astype(int) - lo, 0, len(bins) - 1)] = True
    rough_bins = bins[-lo : -lo + int(round(length)) + 1]
    support = float(rough_bins.mean()) if len(rough_bins) else 0.0
    if not bins.any():
        return Refined(rough, 0.0, True)
    # start at the supported bin nearest the middle of the rough segment
    mid = int(round(length / 2)) - lo
    idx = np.flatnonzero(bins)
    start = int(idx[np.argmin(np.abs(idx - mid))])
    gap = int(np.ceil(prm.max_gap))
    lo_i = _last_supported(bins, start, -1, gap)
    hi_i = _last_supported(bins, start, +1, gap)
    t0, t1 = lo_i + lo, hi_i + lo
    seg = np.concatenate([a + t0 * u, a + t1 * u])
    flagged = support < prm.min_support or (t1 - t0) < 10
    return Refined(rough if flagged else seg, support, flagged)


def _last_supported(bins: np.ndarray, start: int, step: int, gap: int) -> int:
    """Walk from ``start`` in direction ``step``: the last supported bin before a run of more
    than ``gap`` unsupported ones (where the edge stops)."""
    last, miss, i = start, 0, start + step
    while 0 <= i < len(bins):
        if bins[i]:
            last, miss = i, 0
        else:
            miss += 1
            if miss > gap:
                break
        i += step
    return last


def write_labels(path: Path, labels: dict[str, dict]) -> None:
    """Line-JSON with one segment per text line, so that label edits read well in a diff."""
    parts = []
    for name, v in labels.items():
        rows = ",\n".join("    " + json.dumps(row) for row in v["lines"])
        extra = f', "refine": {json.dumps(v["refine"])}' if "refine" in v else ""
        parts.append(
            f'  {json.dumps(name)}: {{"width": {v["width"]}, "height": {v["height"]}{extra}, "lines": [\n{rows}\n  ]}}'
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")


def _read(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SystemExit(f"cannot read image {path}")
    return img


def draw_overlay(grey: np.ndarray, rough: np.ndarray, refined: np.ndarray, scale: int = 2) -> np.ndarray:
    """Rough labels red, refined green, index in magenta, at ``scale`` x the image size."""
    big = cv2.resize(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    big = (big * 0.7).astype(np.uint8)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))

    for r in rough:
        cv2.line(big, pt(r[0], r[1]), pt(r[2], r[3]), (0, 0, 255), 1, cv2.LINE_AA)
    for i, g in enumerate(refined):
        cv2.line(big, pt(g[0], g[1]), pt(g[2], g[3]), (0, 255, 0), 1, cv2.LINE_AA)
        mx, my = pt((g[0] + g[2]) / 2, (g[1] + g[3]) / 2)
        cv2.putText(big, str(i), (mx + 3, my - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 0, 255), 1)
    return big


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rough", type=Path, help="rough labels (line ground-truth JSON)")
    ap.add_argument("--out", type=Path, required=True, help="refined labels (same format)")
    ap.add_argument("--images", type=Path, default=None, help="image folder (default: beside ROUGH)")
    ap.add_argument("--overlay", type=Path, default=None, help="folder for <stem>_overlay.png checks")
    for f, default in RefineParams.__dataclass_fields__.items():
        ap.add_argument("--" + f.replace("_", "-"), type=float, default=default.default)
    args = ap.parse_args(argv)
    prm = RefineParams(**{f: getattr(args, f) for f in RefineParams.__dataclass_fields__})
    folder = args.images or args.rough.parent
    rough_all = _read(args.rough)
    out: dict[str, dict] = {}
    n_flag = 0
    for name, entry in rough_all.items():
        lines = entry["lines"] if isinstance(entry, dict) else entry
        # an image may override knobs, e.g. a wider band where the rough grid was interpolated
        own = entry.get("refine", {}) if isinstance(entry, dict) else {}
        prm_img = replace(prm, **{k: float(v) for k, v in own.items()})
        grey = _grey(folder / name)
        h, w = grey.shape
        gx, gy = gradient(grey)
        rough = np.asarray(lines, np.float64).reshape(-1, 4)
        refined = []
        for i, r in enumerate(rough):
            res = refine_segment(gx, gy, r, prm_img)
            if res.flagged:
                n_flag += 1
                print(f"FLAG {name} #{i} {r.round(1).tolist()} support {res.support:.2f}", file=sys.stderr)
            seg = res.segment.copy()
            seg[0::2] = np.clip(seg[0::2], 0, w - 1)
            seg[1::2] = np.clip(seg[1::2], 0, h - 1)
            refined.append(seg)
        ref = np.asarray(refined).reshape(-1, 4)
        out[name] = {"width": w, "height": h, "lines": [[round(float(v), 2) for v in s] for s in ref]}
        if args.overlay is not None:
            args.overlay.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.overlay / f"{Path(name).stem}_overlay.png"), draw_overlay(grey, rough, ref))
    write_labels(args.out, out)
    total = sum(len(v["lines"]) for v in out.values())
    print(f"{len(out)} images, {total} segments, {n_flag} flagged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
