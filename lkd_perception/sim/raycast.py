"""Ray casting against a world: one open3d ``RaycastingScene`` for the static objects, built
once, plus a small one for the moving objects at the requested time.

Both the camera and the LiDAR go through :class:`WorldCaster`, so they see the same surfaces
and the object-id buffer of the camera uses the same object indices as the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from lkd_perception.sim.mesh import merge
from lkd_perception.sim.world import World, static_mesh


@dataclass(frozen=True)
class Hits:
    """Result of a cast (float32): distance along the (unit) ray ``t_hit`` (N,) (inf = miss), object
    index ``object`` (N,) (-1 = miss) and the surface normal ``normal`` (N, 3), turned to face
    the ray origin."""

    t_hit: np.ndarray
    object: np.ndarray
    normal: np.ndarray


def _scene(vertices: np.ndarray, triangles: np.ndarray) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(triangles, np.uint32)),
    )
    return scene


class WorldCaster:
    """Casts rays into a world at a given time. Holds the static acceleration structure."""

    def __init__(self, world: World, nthreads: int = 0) -> None:
        self.world = world
        self.nthreads = nthreads
        mesh, self._static_owner = static_mesh(world)
        self._static = _scene(mesh.vertices, mesh.triangles)
        self._moving = world.moving_objects
        self._moving_time: float | None = None
        self._moving_scene: o3d.t.geometry.RaycastingScene | None = None
        self._moving_owner = np.zeros(0, np.int32)

    def _moving_at(self, t: float) -> None:
        if self._moving_time == t or not self._moving:
            return
        meshes = [o.mesh_at(t) for o in self._moving]
        mesh = merge(meshes)
        self._moving_owner = np.concatenate(
            [np.full(o.mesh.triangles.shape[0], o.index, np.int32) for o in self._moving]
        )
        self._moving_scene = _scene(mesh.vertices, mesh.triangles)
        self._moving_time = t

    @staticmethod
    def _rays(origins: np.ndarray, directions: np.ndarray) -> o3d.core.Tensor:
        rays = np.empty((directions.shape[0], 6), np.float32)
        rays[:, :3] = origins
        rays[:, 3:] = directions
        return o3d.core.Tensor(rays)

    def cast(self, origins: np.ndarray, directions: np.ndarray, t: float) -> Hits:
        """Cast rays (N, 3) origins (or one (3,) origin for all) and unit directions, with
        moving objects placed at time ``t``. Results are float32."""
        rays = self._rays(origins, directions)
        ans = self._static.cast_rays(rays, nthreads=self.nthreads)
        t_hit = ans["t_hit"].numpy()
        normal = ans["primitive_normals"].numpy()
        hit = np.isfinite(t_hit)
        obj = np.full(t_hit.shape, -1, np.int32)
        obj[hit] = self._static_owner[ans["primitive_ids"].numpy()[hit]]
        if self._moving:
            self._moving_at(t)
            assert self._moving_scene is not None
            ans_m = self._moving_scene.cast_rays(rays, nthreads=self.nthreads)
            tm = ans_m["t_hit"].numpy()
            nearer = np.flatnonzero(tm < t_hit)
            t_hit[nearer] = tm[nearer]
            obj[nearer] = self._moving_owner[ans_m["primitive_ids"].numpy()[nearer]]
            normal[nearer] = ans_m["primitive_normals"].numpy()[nearer]
        # two-sided surfaces: normals face the viewer
        flip = (normal * directions).sum(axis=1) > 0
        normal[flip] *= -1.0
        return Hits(t_hit, obj, normal)

    def occluded(self, origins: np.ndarray, directions: np.ndarray, t: float) -> np.ndarray:
        """Whether anything lies along each ray (shadow rays); any-hit tests, cheaper than casts."""
        rays = self._rays(origins, directions)
        occ = self._static.test_occlusions(rays, nthreads=self.nthreads).numpy().astype(bool)
        if self._moving:
            self._moving_at(t)
            assert self._moving_scene is not None
            occ |= self._moving_scene.test_occlusions(rays, nthreads=self.nthreads).numpy().astype(bool)
        return occ
