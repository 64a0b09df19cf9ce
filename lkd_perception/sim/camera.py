"""Pinhole camera rendered by ray casting: shaded RGB plus the object-id and depth buffers
that the ground truth is computed from.

Shading: per-object colour times a procedural texture (value noise, brick courses on
facades, paver joints on sidewalks), Lambert light from the sun with cast shadows, sky
ambient, distance haze, a slowly varying exposure (passing clouds) and pixel noise. The id
and depth buffers come from the same rays as the colours, so a box or a line taken from them
matches the picture exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lkd_perception.sim.config import SimConfig
from lkd_perception.sim.raycast import WorldCaster
from lkd_perception.sim.sensors import Rig
from lkd_perception.sim.world import KIND_NAMES, object_table

_GROUND_COLORS = np.array([[0.26, 0.26, 0.28], [0.58, 0.56, 0.53], [0.32, 0.42, 0.2]])
_SKY_HORIZON = np.array([0.82, 0.86, 0.9])
_SKY_ZENITH = np.array([0.33, 0.52, 0.85])


@dataclass(frozen=True)
class Render:
    """One camera frame: ``rgb`` (H, W, 3) uint8, ``object_ids`` (H, W) int32 world object
    index per pixel (-1 = sky), ``depth`` (H, W) float32 z-depth in the optical frame (inf = sky)."""

    rgb: np.ndarray
    object_ids: np.ndarray
    depth: np.ndarray


def value_noise(p: np.ndarray, scale: float) -> np.ndarray:
    """Smooth pseudo-random field in [0, 1] at points (N, 3): trilinear value noise on a lattice
    of spacing 1/scale, hashed from the integer lattice coordinates (deterministic, seedless)."""
    q = p * scale
    base = np.floor(q)
    f = q - base
    f = f * f * (3 - 2 * f)
    b = base.astype(np.int64)
    out = np.zeros(p.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                h = ((b[:, 0] + dx) * 73856093) ^ ((b[:, 1] + dy) * 19349663) ^ ((b[:, 2] + dz) * 83492791)
                h = (h ^ (h >> 13)) * 1274126177
                h = (h ^ (h >> 16)) & 0xFFFF
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * (h / 65535.0)
    return out


def exposure(t: float, seed: int) -> tuple[float, float]:
    """(exposure gain, sun strength) at time ``t``: slow drifts and passing clouds."""
    rng = np.random.default_rng([seed, 99])
    ph = rng.uniform(0, 2 * np.pi, 3)
    gain = 1.0 + 0.12 * np.sin(2 * np.pi * t / 23.0 + ph[0])
    sun = 0.75 + 0.25 * np.sin(2 * np.pi * t / 11.0 + ph[1]) * np.sin(2 * np.pi * t / 4.3 + ph[2])
    return float(gain), float(sun)


class Camera:
    """Renders frames of a world for the rig's camera."""

    def __init__(self, caster: WorldCaster, rig: Rig, cfg: SimConfig) -> None:
        self.caster = caster
        self.cfg = cfg
        self.K = rig.K
        self.width, self.height = rig.width, rig.height
        ss = cfg.camera_supersample
        offs = (np.arange(ss) + 0.5) / ss - 0.5
        u = (np.arange(self.width)[:, None] + offs[None, :]).reshape(-1)
        v = (np.arange(self.height)[:, None] + offs[None, :]).reshape(-1)
        uu, vv = np.meshgrid(u, v)
        d = np.stack([(uu - self.K[0, 2]) / self.K[0, 0], (vv - self.K[1, 2]) / self.K[1, 1], np.ones_like(uu)], -1)
        self._dirs_cam = (d / np.linalg.norm(d, axis=-1, keepdims=True)).reshape(-1, 3)
        # sub-sample whose id/depth represents each pixel: the one nearest the pixel centre
        self._centre = (ss // 2, ss // 2)
        colors, _, kinds = object_table(caster.world)
        self._colors = colors
        self._kinds = kinds
        self._ground = KIND_NAMES.index("ground")
        self._building = (KIND_NAMES.index("building"), KIND_NAMES.index("wall"))

    def render(self, T_map_cam: np.ndarray, t: float, rng: np.random.Generator) -> Render:
        """Render the view from ``T_map_cam`` (camera_optical in map) at time ``t``."""
        cfg = self.cfg
        world = self.caster.world
        R, o = T_map_cam[:3, :3], T_map_cam[:3, 3]
        dirs = self._dirs_cam @ R.T
        origins = np.broadcast_to(o, dirs.shape)
        hits = self.caster.cast(origins, dirs, t)
        hit = hits.object >= 0
        p = o + dirs[hit] * hits.t_hit[hit, None]
        n = hits.normal[hit]
        obj = hits.object[hit]
        kind = self._kinds[obj]

        albedo = self._colors[obj].copy()
        ground = kind == self._ground
        if ground.any():
            mat = world.ground.material_at(p[ground, :2])
            albedo[ground] = _GROUND_COLORS[mat]
            joints = (mat == 1) & ((np.abs(((p[ground, 0] + 0.5) % 1.0) - 0.5) < 0.03)
                                   | (np.abs(((p[ground, 1] + 0.5) % 1.0) - 0.5) < 0.03))
            albedo[np.flatnonzero(ground)[joints]] *= 0.7
        tex = 0.85 + 0.2 * value_noise(p, 1.5) + 0.1 * value_noise(p, 9.0)
        facade = np.isin(kind, self._building)
        if facade.any():
            course = (p[facade, 2] % 0.35) < 0.04
            tex[np.flatnonzero(facade)[course]] *= 0.82
        albedo = albedo * tex[:, None]

        gain, sun_strength = exposure(t, world.seed)
        sun = world.sun_direction
        lambert = np.clip(n @ sun, 0.0, None)
        lit = lambert > 0
        if cfg.camera_shadows and lit.any():
            idx = np.flatnonzero(lit)
            shadow = self.caster.occluded(p[idx] + n[idx] * 0.02, np.broadcast_to(sun, (idx.size, 3)), t)
            lambert[idx[shadow]] = 0.0
        sky_amb = 0.35 + 0.15 * np.clip(n[:, 2], 0, 1)
        shade = sky_amb + 0.75 * sun_strength * lambert
        color = albedo * shade[:, None]
        dist = hits.t_hit[hit]
        haze = 1.0 - np.exp(-dist / 450.0)
        color = color * (1 - haze[:, None]) + _SKY_HORIZON * haze[:, None]

        img = np.empty(dirs.shape)
        img[hit] = color
        elev = np.clip(dirs[~hit, 2], 0.0, 1.0)[:, None]
        img[~hit] = _SKY_HORIZON * (1 - elev) + _SKY_ZENITH * elev
        img *= gain
        ss = cfg.camera_supersample
        H, W = self.height, self.width
        img = img.reshape(H, ss, W, ss, 3).mean(axis=(1, 3))
        img = img * 255.0 + rng.normal(0.0, cfg.camera_noise, img.shape) if cfg.camera_noise > 0 else img * 255.0
        rgb = np.clip(np.round(img), 0, 255).astype(np.uint8)

        ci, cj = self._centre
        ids = hits.object.reshape(H, ss, W, ss)[:, ci, :, cj]
        zdepth = (hits.t_hit * self._dirs_cam[:, 2]).reshape(H, ss, W, ss)[:, ci, :, cj]
        return Render(rgb, ids.astype(np.int32), zdepth.astype(np.float32))
