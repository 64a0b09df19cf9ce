"""Keyframes: what the back end keeps of each (compactly), and a store that bounds their memory.

The store keeps the newest keyframes whole in RAM and the bulk of older ones on disk.

Loop verification may need any old keyframe's cloud and BEV features (any place may be
revisited), so keeping them all in RAM is the odometry's one cost that grows with distance
(about 45 kB a keyframe, a keyframe every couple of metres: +100 MB of resident memory over the
10-minute urban soak). Candidate search needs the stamps and ring keys of all keyframes (80
bytes each, kept in memory) and the ring-sector images (4.8 kB) of the few candidates the ring
keys rank first. The clouds, features and ring-sector images of keyframes older than the newest
``resident`` are written to an unnamed temporary file (the OS removes it when the process ends,
however it ends) and read back only when needed: from the page cache while the machine has
memory to spare. (Keeping the ring-sector images in RAM cost 6.8 MB over the 10-minute soak.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.spill_file import SpillFile
from lkd_perception.odometry.features import BevFeatures


def ring_key(polar: np.ndarray) -> np.ndarray:
    """Rotation-invariant summary: the mean of each ring."""
    return polar.mean(axis=1)


CLOUD_QUANTUM_M = 0.01  # keyframe clouds are stored as int16 centimetres (+-327 m)


def pack_cloud(points: np.ndarray) -> np.ndarray:
    """Body-frame points (N, 3) -> int16 centimetres: 6 bytes a point instead of 12 (float32).

    A long drive keeps every keyframe's cloud for loop verification, so this is the bulk of the
    odometry's memory; 5 mm of rounding is far below the 0.5 m map voxels the clouds are
    sampled at. Points beyond the int16 range are dropped (the scans end at ``max_range``).
    """
    q = np.round(np.asarray(points, dtype=np.float64) / CLOUD_QUANTUM_M)
    lim = np.iinfo(np.int16).max
    return q[np.all(np.abs(q) <= lim, axis=1)].astype(np.int16)


def unpack_cloud(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_cloud` (float64 metres)."""
    return packed.astype(np.float64) * CLOUD_QUANTUM_M


def compact_features(f: BevFeatures) -> BevFeatures:
    """The keyframe's copy of its BEV features: float32 positions (loops only need metres to
    RANSAC precision), descriptors as they are."""
    return BevFeatures(f.uv.astype(np.float32), f.xy.astype(np.float32), f.descriptors, f.binary)


@dataclass(frozen=True)
class Keyframe:
    """What the back end keeps of a keyframe, compactly (about 45 kB on a 32-beam urban scan):
    only what loop detection and verification read."""

    id: int
    stamp_ns: int
    cloud: np.ndarray  # int16 cm (pack_cloud), map-voxel sample of the deskewed scan, body frame
    features: BevFeatures  # compact_features
    polar: np.ndarray  # (RINGS, SECTORS) float32
    ring_key: np.ndarray  # (RINGS,)

    @staticmethod
    def create(kid: int, stamp_ns: int, map_points: np.ndarray, features: BevFeatures, polar: np.ndarray) -> "Keyframe":
        return Keyframe(
            kid, stamp_ns, pack_cloud(map_points), compact_features(features), polar.astype(np.float32), ring_key(polar)
        )

    @property
    def map_points(self) -> np.ndarray:
        """The keyframe cloud (body frame, float64 metres): loop-ICP source and submap part."""
        return unpack_cloud(self.cloud)

    @property
    def nbytes(self) -> int:
        f = self.features
        return int(
            self.cloud.nbytes
            + f.uv.nbytes
            + f.xy.nbytes
            + f.descriptors.nbytes
            + self.polar.nbytes
            + self.ring_key.nbytes
        )


@dataclass(frozen=True)
class _Layout:
    """The dtypes and fixed sizes of a spilled keyframe's parts (a store sees one or two layouts);
    with its point and keypoint counts they give where each part lies in its record."""

    parts: tuple[tuple[str, tuple[int, ...]], ...]  # dtype and shape after the first axis, in file order
    binary: bool

    @staticmethod
    def of(kf: Keyframe) -> "_Layout":
        f = kf.features
        if not len(f.uv) == len(f.xy) == len(f.descriptors):
            raise ValueError(f"keyframe {kf.id}: {len(f.uv)} uv, {len(f.xy)} xy, {len(f.descriptors)} descriptors")
        arrays = (kf.cloud, f.uv, f.xy, f.descriptors, kf.polar)
        return _Layout(tuple((a.dtype.str, tuple(a.shape[1:])) for a in arrays), bool(f.binary))

    def shapes(self, points: int, keypoints: int, polar_rows: int) -> list[tuple[str, tuple[int, ...]]]:
        """(dtype, shape) of cloud, uv, xy, descriptors and polar, in file order."""
        rows = (points, keypoints, keypoints, keypoints, polar_rows)
        return [(dtype, (n, *tail)) for (dtype, tail), n in zip(self.parts, rows)]


#: per keyframe: where its record starts in the spill file (-1: whole in memory), its counts and layout
_INDEX = np.dtype(
    [("offset", "<i8"), ("points", "<i4"), ("keypoints", "<i4"), ("polar_rows", "<i2"), ("layout", "<i2")]
)


class _Rows:
    """A growing numpy array (amortised doubling): a keyframe's entry costs its bytes, not a
    Python object (which cost 1.8 kB a keyframe over a long drive)."""

    def __init__(self, dtype: np.dtype | str) -> None:
        self._dtype = np.dtype(dtype)
        self._a: np.ndarray | None = None
        self.n = 0

    def append(self, row: np.ndarray | tuple | int) -> None:
        row = np.asarray(row, dtype=self._dtype)
        if self._a is None:
            self._a = np.zeros((256, *row.shape), self._dtype)
        elif self.n == len(self._a):
            self._a = np.concatenate([self._a, np.zeros_like(self._a)])
        self._a[self.n] = row
        self.n += 1

    @property
    def rows(self) -> np.ndarray:
        """The entries so far (a view)."""
        return self._a[: self.n] if self._a is not None else np.zeros(0, self._dtype)


class KeyframeStore:
    """Keyframes by id (0, 1, 2, ... in order of :meth:`append`), with at most ``resident`` of them
    whole in memory; ``store[kid]`` always returns the whole keyframe. What stays in memory for
    every keyframe (stamp, ring key, where its record lies) is held in numpy arrays."""

    def __init__(self, resident: int = 200, spill_dir: str | None = None) -> None:
        if resident < 1:
            raise ValueError(f"resident must be at least 1, got {resident}")
        self.resident = resident
        self._whole: dict[int, Keyframe] = {}
        self._stamps = _Rows(np.int64)
        self._ring_keys = _Rows(np.float64)
        self._index = _Rows(_INDEX)
        self._layouts: list[_Layout] = []
        self._file = SpillFile("keyframe spill file", "lkd_keyframes_", spill_dir)

    def __len__(self) -> int:
        return self._stamps.n

    @property
    def spilled_bytes(self) -> int:
        """Bytes written to the spill file (a replaced keyframe's old record still counts)."""
        return self._file.size

    @property
    def stamps(self) -> np.ndarray:
        """Stamps (ns) of all keyframes, by id; increasing."""
        return self._stamps.rows.copy()

    def ring_keys(self, n: int) -> np.ndarray:
        """(n, RINGS) ring keys of keyframes 0..n-1 (the KD-tree of candidate search)."""
        return self._ring_keys.rows[:n].copy()

    def polar(self, kid: int) -> np.ndarray:
        """Ring-sector descriptor of a keyframe (read back alone when it was spilled: candidate
        ranking needs only this for a handful of keyframes)."""
        if kid in self._whole:
            return self._whole[kid].polar
        return self._read(kid, polar_only=True)[-1]

    def append(self, kf: Keyframe) -> None:
        if kf.id != len(self):
            raise ValueError(f"keyframe id {kf.id} out of sequence (expected {len(self)})")
        self._stamps.append(int(kf.stamp_ns))
        self._ring_keys.append(kf.ring_key)
        self._index.append((-1, 0, 0, 0, -1))
        self._whole[kf.id] = kf
        while len(self._whole) > self.resident:
            self._spill(min(self._whole))

    def __getitem__(self, kid: int) -> Keyframe:
        if kid in self._whole:
            return self._whole[kid]
        if not 0 <= kid < len(self):
            raise IndexError(f"keyframe {kid} not in the store ({len(self)} keyframes)")
        cloud, uv, xy, descriptors, polar = self._read(kid)
        binary = self._layouts[int(self._index.rows[kid]["layout"])].binary
        features = BevFeatures(uv, xy, descriptors, binary)
        stamp, ring_key = int(self._stamps.rows[kid]), self._ring_keys.rows[kid].copy()
        return Keyframe(kid, stamp, cloud, features, polar, ring_key)

    def __setitem__(self, kid: int, kf: Keyframe) -> None:
        """Replace a keyframe's content (same id and stamp)."""
        if kf.id != kid or not 0 <= kid < len(self) or kf.stamp_ns != int(self._stamps.rows[kid]):
            raise ValueError(f"keyframe {kf.id} cannot replace keyframe {kid}")
        self._ring_keys.rows[kid] = kf.ring_key
        self._whole[kid] = kf
        if self._index.rows[kid]["offset"] >= 0:  # its old bytes stay unused in the file
            self._spill(kid)

    def close(self) -> None:
        self._file.close()

    # -- the spill file ---------------------------------------------------------------------------
    def _spill(self, kid: int) -> None:
        kf = self._whole.pop(kid)
        f = kf.features
        layout = _Layout.of(kf)
        if layout not in self._layouts:
            self._layouts.append(layout)
        parts = [kf.cloud, f.uv, f.xy, f.descriptors, kf.polar]
        data = b"".join(np.ascontiguousarray(a).tobytes() for a in parts)
        offset = self._file.append(data)
        self._index.rows[kid] = (offset, len(kf.cloud), len(f.uv), len(kf.polar), self._layouts.index(layout))

    def _read(self, kid: int, polar_only: bool = False) -> list[np.ndarray]:
        """The parts of a spilled keyframe (cloud, uv, xy, descriptors, polar), or its polar alone."""
        entry = self._index.rows[kid]
        layout = self._layouts[int(entry["layout"])]
        shapes = layout.shapes(int(entry["points"]), int(entry["keypoints"]), int(entry["polar_rows"]))
        sizes = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for dtype, shape in shapes]
        start = int(entry["offset"]) + (sum(sizes[:-1]) if polar_only else 0)
        if polar_only:
            shapes, sizes = shapes[-1:], sizes[-1:]
        data = self._file.read(start, sum(sizes))
        out, at = [], 0
        for (dtype, shape), size in zip(shapes, sizes):
            count = size // np.dtype(dtype).itemsize
            out.append(np.frombuffer(data, dtype=dtype, count=count, offset=at).reshape(shape))
            at += size
        return out
