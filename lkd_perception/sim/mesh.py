"""Triangle-mesh primitives for the synthetic world (boxes, cylinders) and their edges.

The world is built from a few primitive shapes because the renderer and the LiDAR only need
surfaces, and the line ground truth needs exact 3D edges: with primitives we know every crease.
Meshes share vertices between faces, so edge adjacency (and therefore creases and
view-dependent silhouettes) can be computed from the triangle list alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.common.se3 import transform_points, yaw_pitch_roll_matrix


@dataclass(frozen=True)
class Mesh:
    """Vertices (V, 3) float64 and triangles (F, 3) int32 indexing them."""

    vertices: np.ndarray
    triangles: np.ndarray

    def transformed(self, T: np.ndarray) -> "Mesh":
        """The same mesh moved by the 4x4 pose ``T``."""
        return Mesh(transform_points(T, self.vertices), self.triangles)

    def face_normals(self) -> np.ndarray:
        """Unit normals (F, 3) of the triangles (orientation follows the winding)."""
        v = self.vertices[self.triangles]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


# Box corner order: bit 0 = +x, bit 1 = +y, bit 2 = +z.
_BOX_TRIS = np.array(
    [
        [0, 2, 1], [1, 2, 3],  # -z
        [4, 5, 6], [5, 7, 6],  # +z
        [0, 1, 4], [1, 5, 4],  # -y
        [2, 6, 3], [3, 6, 7],  # +y
        [0, 4, 2], [2, 4, 6],  # -x
        [1, 3, 5], [3, 7, 5],  # +x
    ],
    dtype=np.int32,
)


def box(size: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0),
        yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Mesh:
    """An oriented box of ``size`` (dx, dy, dz) centred at ``center``."""
    half = np.asarray(size, dtype=float) / 2.0
    bits = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=float)
    local = (bits * 2.0 - 1.0) * half
    R = yaw_pitch_roll_matrix(yaw, pitch, roll)
    return Mesh(local @ R.T + np.asarray(center, dtype=float), _BOX_TRIS.copy())


def cylinder(radius: float, height: float, base: tuple[float, float, float] = (0.0, 0.0, 0.0),
             sides: int = 16, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Mesh:
    """A closed cylinder along its local +z from ``base`` (centre of the bottom cap)."""
    ang = np.arange(sides) * (2 * np.pi / sides)
    ring = np.stack([radius * np.cos(ang), radius * np.sin(ang), np.zeros(sides)], axis=1)
    top = ring + np.array([0.0, 0.0, height])
    centres = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, height]])
    verts = np.concatenate([ring, top, centres])
    i = np.arange(sides)
    j = (i + 1) % sides
    bc, tc = 2 * sides, 2 * sides + 1
    tris = np.concatenate(
        [
            np.stack([i, j, sides + i], axis=1),
            np.stack([j, sides + j, sides + i], axis=1),
            np.stack([np.full(sides, bc), j, i], axis=1),
            np.stack([np.full(sides, tc), sides + i, sides + j], axis=1),
        ]
    ).astype(np.int32)
    R = yaw_pitch_roll_matrix(yaw, pitch, roll)
    return Mesh(verts @ R.T + np.asarray(base, dtype=float), tris)


def quad(corners: np.ndarray) -> Mesh:
    """A flat quadrilateral from 4 corners in order (two triangles)."""
    return Mesh(np.asarray(corners, dtype=float).reshape(4, 3), np.array([[0, 1, 2], [0, 2, 3]], np.int32))


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all of ``meshes`` (vertices are not welded across parts)."""
    if not meshes:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int32))
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes[:-1]])
    verts = np.concatenate([m.vertices for m in meshes])
    tris = np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]).astype(np.int32)
    return Mesh(verts, tris)


@dataclass(frozen=True)
class EdgeSet:
    """Edges of a mesh for the line ground truth.

    ``creases`` (C, 2) vertex pairs: edges between faces whose normals differ by more than the
    crease angle, or edges with only one face; always drawn when visible. ``smooth`` (S, 2)
    vertex pairs with their two adjacent faces ``smooth_faces`` (S, 2): drawn only where they
    are on the silhouette for the current viewpoint (the sides of a cylinder).
    """

    creases: np.ndarray
    smooth: np.ndarray
    smooth_faces: np.ndarray


def mesh_edges(mesh: Mesh, crease_deg: float = 30.0) -> EdgeSet:
    """Split a mesh's edges into creases and smooth edges (see :class:`EdgeSet`)."""
    tris = mesh.triangles
    f = tris.shape[0]
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    face = np.tile(np.arange(f), 3)
    key = np.sort(e, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face = key[order], face[order]
    uniq, start, count = np.unique(key, axis=0, return_index=True, return_counts=True)
    normals = mesh.face_normals()
    creases = [uniq[count == 1]]
    two = count == 2
    fa, fb = face[start[two]], face[start[two] + 1]
    cosang = np.abs(np.einsum("ij,ij->i", normals[fa], normals[fb]))
    # |cos| because part windings are not guaranteed consistent; coplanar faces give 1.
    sharp = cosang < np.cos(np.radians(crease_deg))
    creases.append(uniq[two][sharp])
    smooth = uniq[two][~sharp]
    smooth_faces = np.stack([fa[~sharp], fb[~sharp]], axis=1)
    # Edges shared by more than two faces (not produced by our primitives) count as creases.
    creases.append(uniq[count > 2])
    return EdgeSet(np.concatenate(creases).astype(np.int32), smooth.astype(np.int32), smooth_faces.astype(np.int32))
