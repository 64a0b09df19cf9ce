"""Classical baselines with the same interface as :class:`~lkd_perception.lines.runtime.LineDetector`.

* OpenCV LSD (``cv2.createLineSegmentDetector``, OpenCV defaults with ``LSD_REFINE_ADV`` so that
  it reports NFA); score = -log10(NFA), or the length (``score="length"``).
* OpenCV FastLineDetector (``cv2.ximgproc.createFastLineDetector``, defaults); score = length.

Both work on grey images and return segments with pixel centres at integer coordinates, the
same convention as ours.
"""

from __future__ import annotations

import cv2
import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.lines.runtime import LineSegments


def _grey(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"expected (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)


def _lengths(seg: np.ndarray) -> np.ndarray:
    return np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])


class OpenCvLsd:
    """OpenCV's LSD."""

    name = "opencv_lsd"

    def __init__(self, score: str = "nfa") -> None:
        if score not in ("nfa", "length"):
            raise InputError(f"LSD score must be 'nfa' or 'length', got {score!r}")
        self.score = score
        self._lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_ADV)

    def detect(self, rgb: np.ndarray) -> LineSegments:
        lines, widths, _, nfa = self._lsd.detect(_grey(rgb))
        if lines is None:
            return LineSegments(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
        seg = lines.reshape(-1, 4).astype(np.float64)
        scores = nfa.reshape(-1).astype(np.float64) if self.score == "nfa" else _lengths(seg)
        return LineSegments(seg, scores, widths.reshape(-1).astype(np.float64))


class OpenCvFld:
    """OpenCV's FastLineDetector (ximgproc)."""

    name = "opencv_fld"

    def __init__(self) -> None:
        self._fld = cv2.ximgproc.createFastLineDetector()

    def detect(self, rgb: np.ndarray) -> LineSegments:
        lines = self._fld.detect(_grey(rgb))
        if lines is None:
            return LineSegments(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
        seg = lines.reshape(-1, 4).astype(np.float64)
        return LineSegments(seg, _lengths(seg), np.ones(len(seg)))
