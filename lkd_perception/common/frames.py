"""Static transforms as a tree, so an extrinsic can be looked up through any chain of frames.

Real vehicles publish ``/tf_static`` as a chain (``base_link -> sensor_mount -> os_sensor ->
os_lidar``; ``base_footprint -> base_link -> ...``), rarely as one edge from the body frame to
the sensor. The odometry needs ``T_base_lidar`` whatever the chain, in either direction, so the
edges are kept as parent -> child and composed through the nearest common ancestor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lkd_perception.common.se3 import pose_inverse


@dataclass
class TransformTree:
    """Edges ``parent -> child`` with ``T_parent_child``; a later edge for the same child
    replaces the earlier one (as tf2 does for static transforms)."""

    _edges: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._edges)

    def __contains__(self, frame: object) -> bool:
        return frame in self._edges or any(p == frame for p, _ in self._edges.values())

    def add(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        self._edges[child] = (parent, np.asarray(T_parent_child, dtype=float).copy())

    def frames(self) -> set[str]:
        """Every frame named by an edge."""
        return set(self._edges) | {p for p, _ in self._edges.values()}

    def _to_root(self, frame: str) -> dict[str, np.ndarray]:
        """``{ancestor: T_ancestor_frame}`` for the frame itself and every ancestor."""
        out = {frame: np.eye(4)}
        T, cur = np.eye(4), frame
        while cur in self._edges:
            parent, T_pc = self._edges[cur]
            if parent in out:  # a cycle in the published edges: stop rather than loop forever
                break
            T = T_pc @ T
            out[parent] = T
            cur = parent
        return out

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """``T_target_source`` (maps source coordinates into target), or None when the two
        frames are not connected."""
        if target == source:
            return np.eye(4)
        up_t, up_s = self._to_root(target), self._to_root(source)
        common = [f for f in up_s if f in up_t]  # ordered from source upwards: nearest first
        if not common:
            return None
        a = common[0]
        return pose_inverse(up_t[a]) @ up_s[a]
