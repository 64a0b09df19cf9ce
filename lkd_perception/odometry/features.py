"""BEV keypoints, local descriptors, matching and 2-D rigid RANSAC.

Keypoints are FAST corners on the BEV image (REFERENCE 3.4). Descriptors come either from ORB
(the classical fallback; MapClosures uses it on density maps) or from our small CNN exported to
ONNX (``models/bev_descriptor.onnx``, trained by ``lkd train bev-descriptor``), sampled at the
keypoints. Matches are mutual nearest neighbours, then a 2-point rigid RANSAC in metres keeps
the geometrically consistent ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lkd_perception.common.errors import ConfigError, ModelError
from lkd_perception.common.paths import SOURCE_ROOT, resolve_model_path
from lkd_perception.odometry.bev import BevImage

DEFAULT_CNN_NAME = "models/bev_descriptor.onnx"  # found like every model (common.paths)
DEFAULT_CNN_MODEL = SOURCE_ROOT / DEFAULT_CNN_NAME  # the shipped file in a source checkout
DESCRIPTOR_DIM = 32  # output channels of the CNN descriptor


@dataclass(frozen=True)
class BevFeatures:
    """Keypoints of one BEV image: pixel ``uv`` (N, 2), body-frame ``xy`` (N, 2) metres, ``descriptors`` (N, D)."""

    uv: np.ndarray
    xy: np.ndarray
    descriptors: np.ndarray
    binary: bool

    def __len__(self) -> int:
        return int(self.uv.shape[0])


@dataclass(frozen=True)
class Rigid2D:
    """``dst = R @ src + t`` in the plane, with the RANSAC inlier mask over the matches."""

    rotation: np.ndarray
    translation: np.ndarray
    inliers: np.ndarray

    @property
    def yaw(self) -> float:
        return float(np.arctan2(self.rotation[1, 0], self.rotation[0, 0]))


class CnnDescriptor:
    """Dense CNN descriptors from an ONNX model: input (1, 1, H, W) float in [0, 1], output
    (1, D, H/s, W/s) L2-normalised; sampled bilinearly at keypoints."""

    def __init__(self, model_path: Path) -> None:
        import onnxruntime as ort

        if not model_path.is_file():
            raise ModelError(f"BEV descriptor model not found: {model_path} (train it with 'lkd train bev-descriptor')")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own hierarchy
            raise ModelError(f"cannot load BEV descriptor model {model_path}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{model_path}: expected one (1, 1, H, W) input, got {[i.shape for i in inputs]}")
        self._input = inputs[0].name

    def compute(self, image: np.ndarray, uv: np.ndarray) -> np.ndarray:
        x = (image.astype(np.float32) / 255.0)[None, None]
        dense = self._session.run(None, {self._input: x})[0][0]  # (D, h, w)
        stride = image.shape[0] / dense.shape[1]
        pts = ((uv + 0.5) / stride - 0.5).astype(np.float32)
        maps = [
            cv2.remap(ch, pts[:, 0:1], pts[:, 1:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 0]
            for ch in dense
        ]
        desc = np.stack(maps, axis=1)
        return desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-9)


class FeatureExtractor:
    """FAST keypoints plus ORB or CNN descriptors on BEV images."""

    def __init__(self, descriptor: str, fast_threshold: int, max_keypoints: int, model_path: str = "") -> None:
        self._max = max_keypoints
        self._orb = None
        self._cnn: CnnDescriptor | None = None
        if descriptor == "orb":
            # ORB's own detector is FAST-9 plus the intensity-centroid orientation; ORB.compute on
            # externally detected FAST corners would leave the angle unset (not rotation invariant,
            # which loop closures from the opposite heading need). One pyramid level: BEV pixels
            # have a fixed metric size.
            self._orb = cv2.ORB_create(
                nfeatures=max_keypoints,
                scaleFactor=1.2,
                nlevels=1,
                edgeThreshold=15,
                patchSize=15,
                fastThreshold=fast_threshold,
                scoreType=cv2.ORB_FAST_SCORE,
            )
        elif descriptor == "cnn":
            self._fast = cv2.FastFeatureDetector_create(
                threshold=fast_threshold, nonmaxSuppression=True, type=cv2.FAST_FEATURE_DETECTOR_TYPE_9_16
            )
            self._cnn = CnnDescriptor(resolve_model_path(model_path or DEFAULT_CNN_NAME))
        else:
            raise ConfigError(f"descriptor must be 'orb' or 'cnn', got {descriptor!r}")

    @property
    def binary(self) -> bool:
        return self._orb is not None

    def keypoints_and_descriptors(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel positions (N, 2) and descriptors (N, D) of the strongest FAST corners."""
        if self._orb is not None:
            kps, desc = self._orb.detectAndCompute(image, None)
            if desc is None or not kps:
                return np.zeros((0, 2)), np.zeros((0, 32), np.uint8)
            return np.array([k.pt for k in kps], dtype=np.float64), desc
        assert self._cnn is not None
        kps = sorted(self._fast.detect(image, None), key=lambda k: -k.response)[: self._max]
        if not kps:
            return np.zeros((0, 2)), np.zeros((0, DESCRIPTOR_DIM), np.float32)
        uv = np.array([k.pt for k in kps], dtype=np.float64)
        return uv, self._cnn.compute(image, uv)

    def extract(self, bev: BevImage) -> BevFeatures:
        uv, desc = self.keypoints_and_descriptors(bev.image)
        return BevFeatures(uv, bev.grid.to_metric(uv), desc, binary=self.binary)


def match_mutual(a: BevFeatures, b: BevFeatures) -> np.ndarray:
    """(M, 2) index pairs (i in a, j in b) that are each other's nearest descriptor."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    norm = cv2.NORM_HAMMING if a.binary else cv2.NORM_L2
    matcher = cv2.BFMatcher(norm, crossCheck=True)
    da = a.descriptors if a.binary else a.descriptors.astype(np.float32)
    db = b.descriptors if b.binary else b.descriptors.astype(np.float32)
    ms = matcher.match(da, db)
    return np.array([[m.queryIdx, m.trainIdx] for m in ms], dtype=np.int64).reshape(-1, 2)


def _rigid_from_pairs(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 2-D rotation and translation with dst ~ R src + t (Kabsch in 2-D)."""
    ms, md = src.mean(0), dst.mean(0)
    H = (src - ms).T @ (dst - md)
    ang = np.arctan2(H[0, 1] - H[1, 0], H[0, 0] + H[1, 1])
    R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    return R, md - R @ ms


def ransac_rigid_2d(
    src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int, rng: np.random.Generator
) -> Rigid2D | None:
    """2-point RANSAC for a planar rigid motion, refined on the inliers; None with < 2 matches.

    All hypotheses are scored at once (vectorised), so a few hundred trials cost about a
    millisecond.
    """
    n = len(src)
    if n < 2:
        return None
    i = rng.integers(0, n, size=iterations)
    j = rng.integers(0, n, size=iterations)
    keep = i != j
    i, j = i[keep], j[keep]
    if i.size == 0:
        return None
    ds, dd = src[j] - src[i], dst[j] - dst[i]
    ang = np.arctan2(dd[:, 1], dd[:, 0]) - np.arctan2(ds[:, 1], ds[:, 0])
    c, s = np.cos(ang), np.sin(ang)
    tx = dst[i, 0] - (c * src[i, 0] - s * src[i, 1])
    ty = dst[i, 1] - (s * src[i, 0] + c * src[i, 1])
    px = c[:, None] * src[None, :, 0] - s[:, None] * src[None, :, 1] + tx[:, None]
    py = s[:, None] * src[None, :, 0] + c[:, None] * src[None, :, 1] + ty[:, None]
    err2 = (px - dst[None, :, 0]) ** 2 + (py - dst[None, :, 1]) ** 2
    # the pair must also agree in length (a rigid motion keeps distances)
    ok_len = np.abs(np.linalg.norm(ds, axis=1) - np.linalg.norm(dd, axis=1)) < threshold
    scores = np.where(ok_len, (err2 < threshold**2).sum(axis=1), 0)
    best = int(np.argmax(scores))
    inliers = err2[best] < threshold**2
    if inliers.sum() < 2:
        return None
    for _ in range(2):
        R, t = _rigid_from_pairs(src[inliers], dst[inliers])
        inliers = np.sum((src @ R.T + t - dst) ** 2, axis=1) < threshold**2
        if inliers.sum() < 2:
            return None
    R, t = _rigid_from_pairs(src[inliers], dst[inliers])
    return Rigid2D(R, t, inliers)
