"""Synthetic line-segment images with exact ground truth, and the training targets drawn from it.

Why synthetic: no labelled line data set is reachable offline, and exact endpoints are what
sAP needs. Scenes follow the SuperPoint/SOLD2 idea (polygons, stars, checkerboards, thin lines on
textured backgrounds). Shapes sit in disjoint cells of a random grid, so no edge is occluded and
every drawn edge is a labelled segment.

Conventions (REFERENCE 2.6): pixel centres at integer coordinates; shapes are rasterised at
``SUPERSAMPLE``x and reduced with INTER_AREA, so an edge lies where the polygon says to within
1/``SUPERSAMPLE`` px. A region boundary is labelled on the boundary itself; a thin drawn line is
labelled on its centre line (the LSDNet / wireframe convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUPERSAMPLE = 8
_SHIFT = 4  # fractional bits for cv2 polygon vertices


@dataclass(frozen=True)
class SyntheticImage:
    """One rendered image: ``rgb`` (H,W,3) uint8, its exact ``segments`` (N,4) float32 x1,y1,x2,y2,
    and the ``crossings`` (K,2) float32 where two labelled segments cross (X-junctions)."""

    rgb: np.ndarray
    segments: np.ndarray
    crossings: np.ndarray


@dataclass(frozen=True)
class LineTargets:
    """Per-pixel training targets: ``heat`` in [0,1], the doubled-angle field ``cos2``/``sin2`` (H,W) float32."""

    heat: np.ndarray
    cos2: np.ndarray
    sin2: np.ndarray


def _coverage(polys: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage (H,W) float32 in [0,1] of filled polygons given in pixel coordinates."""
    s = SUPERSAMPLE
    canvas = np.zeros((height * s, width * s), np.uint8)
    pts = [np.round(((p + 0.5) * s - 0.5) * (1 << _SHIFT)).astype(np.int32) for p in polys]
    cv2.fillPoly(canvas, pts, 255, lineType=cv2.LINE_8, shift=_SHIFT)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random background with weak fine texture, float32 (H,W,3) in [0,255]."""
    base = rng.uniform(30, 225)
    tint = rng.uniform(-20, 20, size=3)
    coarse = rng.normal(0, 1, size=(max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    low = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(3, 15)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = rng.normal(0, 1, size=2) * rng.uniform(0, 25) / max(height, width)
    ramp = (g[0] * (xx - width / 2) + g[1] * (yy - height / 2))[..., None]
    fine = rng.normal(0, rng.uniform(0, 6), size=(height, width, 3)).astype(np.float32)
    if rng.random() < 0.5:
        fine = cv2.GaussianBlur(fine, (0, 0), rng.uniform(0.6, 1.5)) * 2.0
    return np.clip(base + tint + low + ramp + fine, 0, 255).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, against: float) -> np.ndarray:
    """An RGB colour whose mean differs from ``against`` by at least 45 grey levels."""
    for _ in range(20):
        level = rng.uniform(10, 245)
        if abs(level - against) >= 45:
            break
    else:
        level = 245.0 if against < 128 else 10.0
    return np.clip(level + rng.uniform(-25, 25, size=3), 0, 255).astype(np.float32)


def _edges_ok(poly: np.ndarray, min_edge: float, min_turn_deg: float) -> bool:
    """Edges long enough and consecutive edges not nearly collinear (each edge = one clean segment)."""
    d = np.roll(poly, -1, axis=0) - poly
    lengths = np.hypot(d[:, 0], d[:, 1])
    if lengths.min() < min_edge:
        return False
    u = d / lengths[:, None]
    cos_turn = np.sum(u * np.roll(u, -1, axis=0), axis=1)
    return bool(np.all(cos_turn < np.cos(np.deg2rad(min_turn_deg))))


def _polygon_edges(poly: np.ndarray) -> np.ndarray:
    return np.concatenate([poly, np.roll(poly, -1, axis=0)], axis=1)


def _random_polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray | None:
    n = int(rng.integers(3, 7))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.5, 1.0, n)
    poly = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
    hull = cv2.convexHull(poly.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    return hull if len(hull) >= 3 and _edges_ok(hull, 8.0, 15.0) else None


def _star(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray | None:
    n = int(rng.integers(4, 8))
    a0 = rng.uniform(0, 2 * np.pi)
    ang = a0 + np.arange(2 * n) * np.pi / n
    rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.3, 0.6))
    poly = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
    return poly if _edges_ok(poly, 8.0, 15.0) else None


def _ellipse(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    ax = r * rng.uniform(0.4, 1.0, size=2)
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    pts = np.stack([ax[0] * np.cos(t), ax[1] * np.sin(t)], axis=1)
    return pts @ _rotation(rng.uniform(0, np.pi)).T + np.array([cx, cy])


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _draw_polygon(img: np.ndarray, rng: np.random.Generator, poly: np.ndarray) -> None:
    h, w = img.shape[:2]
    alpha = _coverage([poly], h, w)[..., None]
    x0, y0 = np.clip(poly.min(axis=0).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(poly.max(axis=0).astype(int) + 1, 1, [w, h])
    colour = _contrasting_colour(rng, float(img[y0:y1, x0:x1].mean()))
    fill = colour + rng.normal(0, rng.uniform(0, 5), size=img.shape).astype(np.float32)
    img[:] = img * (1 - alpha) + fill * alpha


def _checkerboard(
    img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, r: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A rotated, sheared checkerboard of 2-5 x 2-5 cells."""
    h, w = img.shape[:2]
    nx, ny = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    cell = 2 * r / max(nx, ny) / 1.2
    if cell < 8:
        return [], []
    shear = np.array([[1.0, rng.uniform(-0.3, 0.3)], [0.0, rng.uniform(0.8, 1.2)]])
    A = _rotation(rng.uniform(0, np.pi)) @ shear
    origin = np.array([cx, cy]) - A @ np.array([nx * cell / 2, ny * cell / 2])

    def to_img(u: float, v: float) -> np.ndarray:
        return origin + A @ np.array([u * cell, v * cell])

    board = np.array([to_img(0, 0), to_img(nx, 0), to_img(nx, ny), to_img(0, ny)])
    dark = [
        np.array([to_img(i, j), to_img(i + 1, j), to_img(i + 1, j + 1), to_img(i, j + 1)])
        for i in range(nx) for j in range(ny) if (i + j) % 2 == 0
    ]
    light = 255.0 * (rng.random() < 0.5)
    c_a = np.full(3, abs(light - rng.uniform(0, 50)), np.float32)
    c_b = np.full(3, abs(255.0 - light - rng.uniform(0, 50)), np.float32)
    a_board = _coverage([board], h, w)[..., None]
    img[:] = img * (1 - a_board) + c_a * a_board
    a_dark = _coverage(dark, h, w)[..., None]
    img[:] = img * (1 - a_dark) + c_b * a_dark
    # The border is one segment per side. Interior grid lines cross each other, and a per-pixel
    # direction field (ours, LSD's) cannot carry two directions at a crossing, so they are
    # labelled cell edge by cell edge and the crossings are returned for the targets.
    segs = [np.concatenate([to_img(i, 0), to_img(i, ny)]) for i in (0, nx)]
    segs += [np.concatenate([to_img(0, j), to_img(nx, j)]) for j in (0, ny)]
    segs += [np.concatenate([to_img(i, j), to_img(i, j + 1)]) for i in range(1, nx) for j in range(ny)]
    segs += [np.concatenate([to_img(i, j), to_img(i + 1, j)]) for j in range(1, ny) for i in range(nx)]
    crossings = [to_img(i, j) for i in range(1, nx) for j in range(1, ny)]
    return segs, crossings


def _thin_lines(
    img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, r: float
) -> list[np.ndarray]:
    """1-4 straight strokes 1.5-3 px wide with flat ends; labelled on their centre lines."""
    h, w = img.shape[:2]
    segs = []
    for _ in range(int(rng.integers(1, 5))):
        theta = rng.uniform(0, np.pi)
        half = rng.uniform(0.35, 1.0) * r
        off = rng.uniform(-0.6, 0.6, size=2) * r
        u = np.array([np.cos(theta), np.sin(theta)])
        n = np.array([-u[1], u[0]]) * rng.uniform(0.75, 1.5)
        p, q = np.array([cx, cy]) + off - half * u, np.array([cx, cy]) + off + half * u
        if np.any(np.minimum(p, q) < 2) or q[0] > w - 3 or p[0] > w - 3 or max(p[1], q[1]) > h - 3:
            continue
        if any(_segments_close(np.concatenate([p, q]), s) for s in segs):
            continue
        stroke = np.array([p - n, q - n, q + n, p + n])
        alpha = _coverage([stroke], h, w)[..., None]
        colour = _contrasting_colour(rng, float(img[int(cy), int(cx)].mean()))
        img[:] = img * (1 - alpha) + colour * alpha
        segs.append(np.concatenate([p, q]))
    return segs


def _segments_close(a: np.ndarray, b: np.ndarray, gap: float = 6.0) -> bool:
    """Whether two segments intersect or pass within ``gap`` px (sampled test; strokes must not touch)."""
    t = np.linspace(0, 1, 32)[:, None]
    pa = a[:2] + t * (a[2:] - a[:2])
    pb = b[:2] + t * (b[2:] - b[:2])
    return bool(np.min(np.linalg.norm(pa[:, None] - pb[None], axis=2)) < gap)


def render_scene(
    rng: np.random.Generator, height: int, width: int, *, thin_lines: bool = True
) -> SyntheticImage:
    """A random scene: a grid of cells, each holding at most one shape, on a textured background."""
    img = _background(rng, height, width)
    rows = int(rng.integers(1, max(2, height // 48) + 1))
    cols = int(rng.integers(1, max(2, width // 48) + 1))
    ch, cw = height / rows, width / cols
    kinds = ["polygon", "polygon", "star", "checkerboard", "ellipse"] + (["lines"] if thin_lines else [])
    segs: list[np.ndarray] = []
    crossings: list[np.ndarray] = []
    for i in range(rows):
        for j in range(cols):
            if rng.random() < 0.1:
                continue
            r = 0.5 * min(ch, cw) * rng.uniform(0.55, 0.9)
            cx = (j + 0.5) * cw + rng.uniform(-1, 1) * (0.5 * cw - r)
            cy = (i + 0.5) * ch + rng.uniform(-1, 1) * (0.5 * ch - r)
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "checkerboard":
                board_segs, board_crossings = _checkerboard(img, rng, cx, cy, r)
                segs += board_segs
                crossings += board_crossings
            elif kind == "ellipse":  # a curved distractor: drawn, never labelled
                _draw_polygon(img, rng, _ellipse(rng, cx, cy, r))
            elif kind == "lines":
                segs += _thin_lines(img, rng, cx, cy, r)
            else:
                make = _random_polygon if kind == "polygon" else _star
                poly = next((q for q in (make(rng, cx, cy, r) for _ in range(8)) if q is not None), None)
                if poly is not None:
                    _draw_polygon(img, rng, poly)
                    segs += list(_polygon_edges(poly))
    seg_arr = np.asarray(segs, np.float32).reshape(-1, 4)
    return SyntheticImage(
        rgb=np.clip(img + 0.5, 0, 255).astype(np.uint8),
        segments=seg_arr,
        crossings=np.asarray(crossings, np.float32).reshape(-1, 2),
    )


def augment(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Photometric degradation toward real photographs: lighting, blur, noise, grey, JPEG (geometry unchanged)."""
    img = rgb.astype(np.float32)
    if rng.random() < 0.7 * strength:  # lighting: gain, offset, gamma, smooth shading
        h, w = img.shape[:2]
        img = img * rng.uniform(0.6, 1.3) + rng.uniform(-25, 25)
        shade = cv2.resize(rng.uniform(0.7, 1.2, size=(2, 2)).astype(np.float32), (w, h))
        img = np.clip(img * shade[..., None], 0, 255)
        img = 255.0 * (img / 255.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.5 * strength:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.3))
    if rng.random() < 0.6 * strength:
        img = img + rng.normal(0, rng.uniform(1, 10), size=img.shape).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.15 * strength:  # monochrome cameras and grey photographs
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < 0.5 * strength:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def line_targets(
    segments: np.ndarray,
    height: int,
    width: int,
    crossings: np.ndarray | None = None,
    sigma: float = 0.75,
    sigma_end: float = 0.5,
    crossing_radius: float = 1.5,
) -> LineTargets:
    """Heat = Gaussian of the distance across the nearest segment, cut off faster past its ends.

    The sharper fall-off beyond the endpoints keeps the thresholded support from overshooting
    them, which is what makes min/max projections good endpoint estimates. Heat is zero within
    ``crossing_radius`` of a crossing, so the segments that meet there stay apart.
    """
    heat = np.zeros((height, width), np.float32)
    ang = np.zeros((height, width), np.float32)
    pad = int(np.ceil(3 * sigma)) + 1
    for x1, y1, x2, y2 in np.asarray(segments, np.float64).reshape(-1, 4):
        length = np.hypot(x2 - x1, y2 - y1)
        if length < 1e-6:
            continue
        ux, uy = (x2 - x1) / length, (y2 - y1) / length
        xa = max(int(np.floor(min(x1, x2))) - pad, 0)
        xb = min(int(np.ceil(max(x1, x2))) + pad + 1, width)
        ya = max(int(np.floor(min(y1, y2))) - pad, 0)
        yb = min(int(np.ceil(max(y1, y2))) + pad + 1, height)
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb]
        dx, dy = xx - x1, yy - y1
        t = dx * ux + dy * uy
        d = dx * uy - dy * ux
        t_out = np.maximum(np.maximum(-t, t - length), 0.0)
        h = np.exp(-(d * d) / (2 * sigma**2) - (t_out * t_out) / (2 * sigma_end**2)).astype(np.float32)
        win_h, win_a = heat[ya:yb, xa:xb], ang[ya:yb, xa:xb]
        better = h > win_h
        win_h[better] = h[better]
        win_a[better] = np.arctan2(uy, ux)
    for x, y in np.asarray(crossings if crossings is not None else [], np.float64).reshape(-1, 2):
        xa, xb = max(int(x - crossing_radius), 0), min(int(x + crossing_radius) + 2, width)
        ya, yb = max(int(y - crossing_radius), 0), min(int(y + crossing_radius) + 2, height)
        yy, xx = np.mgrid[ya:yb, xa:xb]
        heat[ya:yb, xa:xb][(xx - x) ** 2 + (yy - y) ** 2 <= crossing_radius**2] = 0.0
    return LineTargets(heat=heat, cos2=np.cos(2 * ang), sin2=np.sin(2 * ang))
