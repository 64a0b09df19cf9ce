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

_GROUND_COLORS = np.array([[0.26, 0.26, 0.28], [0.58, 0.56, 0.53], [0.32, 0.42, 0.2]], np.float32)
_SKY_HORIZON = np.array([0.82, 0.86, 0.9], np.float32)
_SKY_ZENITH = np.array([0.33, 0.52, 0.85], np.float32)


@dataclass(frozen=True)
class Render:
    """One camera frame: ``rgb`` (H, W, 3) uint8, ``object_ids`` (H, W) int32 world object
    index per pixel (-1 = sky), ``depth`` (H, W) float32 z-depth in the optical frame (inf = sky)."""

    rgb: np.ndarray
    object_ids: np.ndarray
    depth: np.ndarray


def value_noise(uv: np.ndarray, scale: float) -> np.ndarray:
    """Smooth pseudo-random field in [0, 1] at 2D texture coordinates (N, 2): bilinear value
    noise on a lattice of spacing 1/scale, hashed from the integer lattice coordinates
    (deterministic, seedless, float32)."""
    q = uv * np.float32(scale)
    base = np.floor(q)
    f = q - base
    f = f * f * (3 - 2 * f)
    b = base.astype(np.int32).view(np.uint32)
    out = np.zeros(uv.shape[0], np.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            h = (b[:, 0] + np.uint32(dx)) * np.uint32(73856093) ^ (b[:, 1] + np.uint32(dy)) * np.uint32(19349663)
            h ^= h >> np.uint32(13)
            h *= np.uint32(1274126177)
            h ^= h >> np.uint32(16)
            w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
            out += w * ((h & np.uint32(0xFFFF)).astype(np.float32) * np.float32(1 / 65535.0))
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
        self._dirs_cam = (d / np.linalg.norm(d, axis=-1, keepdims=True)).reshape(-1, 3).astype(np.float32)
        # sub-sample whose id/depth represents each pixel: the one nearest the pixel centre
        self._centre = (ss // 2, ss // 2)
        colors, _, kinds = object_table(caster.world)
        self._colors = colors.astype(np.float32)
        self._kinds = kinds
        self._ground = KIND_NAMES.index("ground")
        self._building = (KIND_NAMES.index("building"), KIND_NAMES.index("wall"))

    def render(self, T_map_cam: np.ndarray, t: float, rng: np.random.Generator) -> Render:
        """Render the view from ``T_map_cam`` (camera_optical in map) at time ``t``."""
        cfg = self.cfg
        world = self.caster.world
        R = T_map_cam[:3, :3].astype(np.float32)
        o = T_map_cam[:3, 3].astype(np.float32)
        dirs = np.einsum("ij,kj->ik", self._dirs_cam, R)  # not @: BLAS is slow for (N, 3) x (3, 3)
        hits = self.caster.cast(o, dirs, t)
        hit = np.flatnonzero(hits.object >= 0)
        dist = hits.t_hit[hit]
        p = o + dirs[hit] * dist[:, None]
        n = hits.normal[hit]
        obj = hits.object[hit]
        kind = self._kinds[obj]

        albedo = self._colors[obj]
        ground = np.flatnonzero(kind == self._ground)
        if ground.size:
            pg = p[ground, :2]
            mat = world.ground.material_at(pg)
            albedo[ground] = _GROUND_COLORS[mat]
            fx, fy = np.abs((pg[:, 0] + 0.5) % 1.0 - 0.5), np.abs((pg[:, 1] + 0.5) % 1.0 - 0.5)
            joints = (mat == 1) & ((fx < 0.03) | (fy < 0.03))  # paver joints on sidewalks
            albedo[ground[joints]] *= 0.7
        # texture coordinates: the horizontal plane for up-facing surfaces, (x + y, z) for walls
        upward = np.abs(n[:, 2]) > 0.7
        uv = np.where(upward[:, None], p[:, :2], np.stack([p[:, 0] + p[:, 1], p[:, 2]], 1))
        tex = 0.82 + 0.22 * value_noise(uv, 1.3) + 0.12 * value_noise(uv, 7.0)
        facade = np.flatnonzero(np.isin(kind, self._building))
        if facade.size:
            tex[facade[(p[facade, 2] % 0.35) < 0.04]] *= 0.82  # brick courses
        albedo *= tex[:, None]

        gain, sun_strength = exposure(t, world.seed)
        sun = world.sun_direction.astype(np.float32)
        lambert = np.maximum(np.einsum("ij,j->i", n, sun), 0.0)
        if cfg.camera_shadows:
            lit = np.flatnonzero(lambert > 0)
            if lit.size:
                shadow = self.caster.occluded(p[lit] + n[lit] * np.float32(0.02), np.broadcast_to(sun, (lit.size,
                                                                                                        3)), t)
                lambert[lit[shadow]] = 0.0
        shade = 0.35 + 0.15 * np.clip(n[:, 2], 0, 1) + np.float32(0.75 * sun_strength) * lambert
        haze = (1.0 - np.exp(-dist / np.float32(450.0)))[:, None]
        color = albedo * shade[:, None] * (1 - haze) + _SKY_HORIZON * haze

        elev = np.clip(dirs[:, 2], 0.0, 1.0)[:, None]
        img = _SKY_HORIZON * (1 - elev) + _SKY_ZENITH * elev
        img[hit] = color
        ss = cfg.camera_supersample
        H, W = self.height, self.width
        if ss > 1:
            img = img.reshape(H, ss, W, ss, 3).mean(axis=(1, 3))
        img = img.reshape(H, W, 3) * np.float32(255.0 * gain)
        if cfg.camera_noise > 0:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cfg.camera_noise)
        rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)

        ci, cj = self._centre
        ids = hits.object.reshape(H, ss, W, ss)[:, ci, :, cj]
        zdepth = (hits.t_hit * self._dirs_cam[:, 2]).reshape(H, ss, W, ss)[:, ci, :, cj]
        return Render(rgb, np.ascontiguousarray(ids, np.int32), np.ascontiguousarray(zdepth, np.float32))
