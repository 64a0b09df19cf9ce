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

import os
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

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
class _Part:
    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class _Spilled:
    """Where a keyframe's cloud, uv, xy, descriptors and polar descriptor lie in the spill file."""

    cloud: _Part
    uv: _Part
    xy: _Part
    descriptors: _Part
    binary: bool
    polar: _Part


class KeyframeStore:
    """Keyframes by id (0, 1, 2, ... in order of :meth:`append`), with at most ``resident`` of them
    whole in memory; ``store[kid]`` always returns the whole keyframe."""

    def __init__(self, resident: int = 200, spill_dir: str | None = None) -> None:
        if resident < 1:
            raise ValueError(f"resident must be at least 1, got {resident}")
        self.resident = resident
        self._spill_dir = spill_dir
        self._whole: dict[int, Keyframe] = {}
        self._spilled: dict[int, _Spilled] = {}
        self._stamps: list[int] = []
        self._polar: list[np.ndarray | None] = []  # None once spilled
        self._ring_key: list[np.ndarray] = []
        self._file: BinaryIO | None = None
        self._end = 0
        self.spilled_bytes = 0

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def stamps(self) -> np.ndarray:
        """Stamps (ns) of all keyframes, by id; increasing."""
        return np.asarray(self._stamps, dtype=np.int64)

    def ring_keys(self, n: int) -> np.ndarray:
        """(n, RINGS) ring keys of keyframes 0..n-1 (the KD-tree of candidate search)."""
        return np.stack(self._ring_key[:n])

    def polar(self, kid: int) -> np.ndarray:
        """Ring-sector descriptor of a keyframe (read back alone when it was spilled: candidate
        ranking needs only this for a handful of keyframes)."""
        p = self._polar[kid]
        return p if p is not None else self._read(self._spilled[kid].polar)

    def append(self, kf: Keyframe) -> None:
        if kf.id != len(self._stamps):
            raise ValueError(f"keyframe id {kf.id} out of sequence (expected {len(self._stamps)})")
        self._stamps.append(int(kf.stamp_ns))
        self._polar.append(kf.polar)
        self._ring_key.append(kf.ring_key)
        self._whole[kf.id] = kf
        while len(self._whole) > self.resident:
            self._spill(min(self._whole))

    def __getitem__(self, kid: int) -> Keyframe:
        if kid in self._whole:
            return self._whole[kid]
        if not 0 <= kid < len(self._stamps):
            raise IndexError(f"keyframe {kid} not in the store ({len(self._stamps)} keyframes)")
        s = self._spilled[kid]
        features = BevFeatures(self._read(s.uv), self._read(s.xy), self._read(s.descriptors), s.binary)
        return Keyframe(kid, self._stamps[kid], self._read(s.cloud), features, self._read(s.polar), self._ring_key[kid])

    def __setitem__(self, kid: int, kf: Keyframe) -> None:
        """Replace a keyframe's content (same id and stamp)."""
        if kf.id != kid or not 0 <= kid < len(self._stamps) or kf.stamp_ns != self._stamps[kid]:
            raise ValueError(f"keyframe {kf.id} cannot replace keyframe {kid}")
        self._polar[kid], self._ring_key[kid] = kf.polar, kf.ring_key
        self._whole[kid] = kf
        if self._spilled.pop(kid, None) is not None:  # its old bytes stay unused in the file
            self._spill(kid)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- the spill file ---------------------------------------------------------------------------
    def _spill(self, kid: int) -> None:
        kf = self._whole.pop(kid)
        f = kf.features
        self._spilled[kid] = _Spilled(
            self._write(kf.cloud),
            self._write(f.uv),
            self._write(f.xy),
            self._write(f.descriptors),
            f.binary,
            self._write(kf.polar),
        )
        self._polar[kid] = None

    def _write(self, a: np.ndarray) -> _Part:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="lkd_keyframes_", dir=self._spill_dir)
        data = np.ascontiguousarray(a).tobytes()
        os.pwrite(self._file.fileno(), data, self._end)
        part = _Part(a.dtype.str, tuple(a.shape), self._end)
        self._end += len(data)
        self.spilled_bytes += len(data)
        return part

    def _read(self, p: _Part) -> np.ndarray:
        assert self._file is not None
        data = os.pread(self._file.fileno(), p.nbytes, p.offset)
        if len(data) != p.nbytes:
            raise OSError(f"keyframe spill file truncated: read {len(data)} of {p.nbytes} bytes")
        return np.frombuffer(data, dtype=p.dtype).reshape(p.shape)
