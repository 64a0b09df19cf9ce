#!/usr/bin/env python3
"""Rough line labels of a chessboard photograph from its detected inner corners (a labelling aid).

Why: a chessboard's lines are exactly known once its corners are: OpenCV finds the inner corners
to sub-pixel accuracy, a homography from board squares to the image (fitted to all of them) gives
the board's full lines, and ``scripts/label_lines.py`` then snaps each to the image's edges (which
also absorbs the lens's slight bending). Convention of ``test/fixtures/lines_real/README.md``:
each inner row and column line runs full length across the board (one square past the outermost
inner corners; the snap then stops it where the board's edge or a cut-off border row ends it).
The outer edges of the border squares are not produced: printed boards often cut their outermost
row short, and the corners alone cannot tell.

Usage::

    python scripts/chessboard_rough_lines.py IMAGE... --pattern 9x6 --out ROUGH.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def board_lines(grey: np.ndarray, cols: int, rows: int) -> list[list[float]]:
    """Rough segments (x1, y1, x2, y2) of the board in ``grey`` with cols x rows inner corners."""
    found, corners = cv2.findChessboardCorners(grey, (cols, rows))
    if not found:
        raise SystemExit("no chessboard of that pattern found")
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.01)
    corners = cv2.cornerSubPix(grey, corners, (5, 5), (-1, -1), criteria).reshape(-1, 2)
    board = np.array([(i, j) for j in range(rows) for i in range(cols)], np.float64)
    H, _ = cv2.findHomography(board, corners.astype(np.float64))

    def img(points: list[tuple[float, float]]) -> np.ndarray:
        return cv2.perspectiveTransform(np.asarray(points, np.float64).reshape(-1, 1, 2), H).reshape(-1, 2)

    segs = []
    for i in range(cols):  # column lines, one square beyond the corners at each end
        a, b = img([(i, -1), (i, rows)])
        segs.append([*a, *b])
    for j in range(rows):
        a, b = img([(-1, j), (cols, j)])
        segs.append([*a, *b])
    return [[round(float(v), 2) for v in s] for s in segs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--pattern", default="9x6", help="inner corners, columns x rows")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cols, rows = (int(v) for v in args.pattern.lower().split("x"))
    out = {}
    for path in args.images:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SystemExit(f"cannot read image {path}")
        out[path.name] = {"width": grey.shape[1], "height": grey.shape[0], "lines": board_lines(grey, cols, rows)}
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"{len(out)} images, {sum(len(v['lines']) for v in out.values())} segments", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
