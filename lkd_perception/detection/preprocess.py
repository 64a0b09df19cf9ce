"""Image -> network input for both detector families (numpy + OpenCV only, no torch).

LeYOLO was trained on letterboxed squares (aspect kept, grey 114 padding), DETR on plain
resizes; using the other one at inference silently costs accuracy, so each family's geometry is
returned with the tensor and undone exactly in post-processing. Published DEIMv2 models were
trained and evaluated on PIL bilinear resizes, which OpenCV does not offer (see
:func:`antialiased_bilinear_resize`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lkd_perception.common.errors import InputError

PAD_VALUE = 114


@dataclass(frozen=True)
class Geometry:
    """Maps input-tensor pixels back to the original image: original = (tensor - pad) / scale."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_original(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Boxes in tensor pixels -> original image pixels, clipped to the image."""
        out = boxes_xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def check_rgb(image: np.ndarray) -> None:
    """Reject anything that is not an (H, W, 3) uint8 RGB image with a message that says why."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InputError(f"expected an (H, W, 3) RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"image too small: {image.shape[1]}x{image.shape[0]}")


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Geometry]:
    """Resize keeping aspect so the long side is ``size``, centre on a ``size`` square of grey 114."""
    h, w = image.shape[:2]
    r = size / max(h, w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py : py + nh, px : px + nw] = resized
    return out, Geometry(nw / w, nh / h, float(px), float(py), w, h)


def plain_resize(image: np.ndarray, size: int) -> tuple[np.ndarray, Geometry]:
    """Stretch to a ``size`` square (DETR contract: no letterbox).

    The interpolation is the DETR training loader's (``train_detr``: ``INTER_AREA``), so deployment
    sees the same pixels as training did.
    """
    h, w = image.shape[:2]
    out = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return out, Geometry(size / w, size / h, 0.0, 0.0, w, h)


def _pil_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the first input index and the fixed-point weights of PIL's bilinear filter.

    PIL's triangle filter widens with the scale factor when shrinking (antialiasing): its support is
    ``max(in/out, 1)`` input pixels each side of the sample centre. Weights are normalised per
    output pixel, then rounded to 22-bit fixed point as PIL does for 8-bit images.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale  # the bilinear filter's support is 1, scaled
    ksize = int(np.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C casts truncate toward zero
    xmax = np.minimum((centre + support + 0.5).astype(np.int64), in_size) - xmin
    k = np.arange(ksize)
    w = np.maximum(1.0 - np.abs((xmin[:, None] + k[None, :] - centre[:, None] + 0.5) / filterscale), 0.0)
    w[k[None, :] >= xmax[:, None]] = 0.0
    w /= w.sum(1, keepdims=True)
    fixed = np.floor(0.5 + w * (1 << _PRECISION_BITS)).astype(np.int32)  # weights are >= 0
    return xmin, fixed


_PRECISION_BITS = 22  # PIL's fixed-point precision for 8-bit resampling (32 - 8 - 2)


def _resample_rows(image: np.ndarray, out_size: int) -> np.ndarray:
    """One separable PIL-bilinear pass along axis 0, rounded to uint8 as PIL does after each pass.

    Along axis 0 every tap is a copy of whole contiguous rows, several times faster than gathering
    along a strided axis; the caller transposes for the horizontal pass.
    """
    in_size = image.shape[0]
    xmin, fixed = _pil_bilinear_taps(in_size, out_size)
    acc = np.full((out_size,) + image.shape[1:], 1 << (_PRECISION_BITS - 1), np.int32)
    tap = np.empty_like(acc)
    shape = (-1,) + (1,) * (image.ndim - 1)
    for j in range(fixed.shape[1]):
        idx = np.minimum(xmin + j, in_size - 1)  # taps past the edge carry weight 0
        np.multiply(image[idx], fixed[:, j].reshape(shape), out=tap)
        acc += tap
    acc >>= _PRECISION_BITS
    return np.clip(acc, 0, 255).astype(np.uint8)


def antialiased_bilinear_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, C) uint8 image as ``PIL.Image.resize(..., BILINEAR)`` does.

    This is torchvision's ``Resize`` on PIL images, the DEIMv2 training and evaluation transform.
    OpenCV's INTER_LINEAR samples only 2x2 pixels however much it shrinks (aliasing on large
    frames) and INTER_AREA is a box filter; both shift a detector's inputs away from what it saw
    in training. Same filter, fixed-point weights, pass order (horizontal, then vertical; a pass
    is skipped when its size is unchanged) and rounding as PIL: identical output at the scales a
    camera frame meets (checked against Pillow from 2x up to 1/6); off by one level in rare pixels
    at extreme reductions (tens of times).
    """
    out = image
    if width != image.shape[1]:
        out = _resample_rows(np.ascontiguousarray(out.transpose(1, 0, 2)), width).transpose(1, 0, 2)
    if height != image.shape[0]:
        out = _resample_rows(np.ascontiguousarray(out), height)
    return np.ascontiguousarray(out)


def deimv2_resize(image: np.ndarray, size: int) -> tuple[np.ndarray, Geometry]:
    """Stretch to a ``size`` square with PIL bilinear (DEIMv2 contract: plain resize, no letterbox).

    The geometry is returned for completeness; DEIMv2 models map boxes back to original pixels
    themselves from the ``orig_target_sizes`` input.
    """
    h, w = image.shape[:2]
    return antialiased_bilinear_resize(image, size, size), Geometry(size / w, size / h, 0.0, 0.0, w, h)


def to_tensor(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> (1, 3, S, S) float32 in [0, 1]."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
