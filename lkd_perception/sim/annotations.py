"""Per-image ground truth from a rendered frame: 2D boxes and 2D line segments.

Conventions (also in ``sim/README.md``):

* Pixel coordinates put pixel centres at integers (the camera matrix K uses this convention);
  lines are in these coordinates.
* Boxes are COCO ``[x, y, w, h]`` in COCO's convention, pixel ``i`` covering ``[i, i+1)``: the
  tight box of the object's visible pixels in the renderer's id buffer. ``visibility`` = visible
  pixels / pixels of the unoccluded silhouette (the object ray-cast alone, same pixel rays;
  truncation at the image border is not occlusion).
  Objects with fewer than ``min_pixels`` visible pixels are skipped.
* Lines are projected 3D edges: mesh creases (faces meeting at > 30 deg, or outline edges of
  flat parts such as windows and sign plates), the silhouette generators of round parts (pole
  sides), the line where building and wall faces meet the ground, and the centre line of each
  painted road marking. An edge is sampled every pixel along its projection and a sample is
  visible where nothing in the depth buffer (3x3 neighbourhood maximum) is nearer than the
  sample by more than 2 % + 5 cm; edges are split where occluded and kept if >= ``min_length``
  pixels. Ground roughness makes no edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lkd_perception.common.se3 import pose_inverse
from lkd_perception.sim.clip import clip_range, clip_segments
from lkd_perception.sim.mesh import EdgeSet
from lkd_perception.sim.world import KINDS, World

NEAR = 0.1  # m, near clipping distance for projecting edges and silhouettes


@dataclass(frozen=True)
class BoxAnnotation:
    """One visible object: world ``object_index``, COCO ``category_id``, ``bbox`` [x, y, w, h]
    (COCO pixel convention), ``area`` visible pixels, ``visibility`` in (0, 1]."""

    object_index: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: int
    visibility: float


def _project(K: np.ndarray, pts_cam: np.ndarray) -> np.ndarray:
    return (pts_cam[:, :2] / pts_cam[:, 2:3]) * np.diag(K)[:2] + K[:2, 2]


def _silhouette_area(mesh_vertices: np.ndarray, triangles: np.ndarray, T_map_cam: np.ndarray,
                     K: np.ndarray, shape: tuple[int, int]) -> int:
    """Pixels whose centre ray hits the mesh when it is alone in the scene: the unoccluded
    silhouette, sampled exactly like the renderer samples the id buffer."""
    H, W = shape
    T_cam_map = pose_inverse(T_map_cam)
    v = mesh_vertices @ T_cam_map[:3, :3].T + T_cam_map[:3, 3]
    if (v[:, 2] > NEAR).all():
        uv = _project(K, v)
        c0, r0 = np.floor(uv.min(axis=0)).astype(int)
        c1, r1 = np.ceil(uv.max(axis=0)).astype(int)
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, W - 1), min(r1, H - 1)
        if c0 > c1 or r0 > r1:
            return 0
    else:  # reaches behind the camera: its projection is unbounded, test the whole image
        c0, r0, c1, r1 = 0, 0, W - 1, H - 1
    cc, rr = np.meshgrid(np.arange(c0, c1 + 1), np.arange(r0, r1 + 1))
    d = np.stack([(cc.ravel() - K[0, 2]) / K[0, 0], (rr.ravel() - K[1, 2]) / K[1, 1], np.ones(cc.size)], 1)
    dirs = np.einsum("ij,kj->ik", d / np.linalg.norm(d, axis=1, keepdims=True), T_map_cam[:3, :3])
    rays = np.concatenate([np.broadcast_to(T_map_cam[:3, 3], dirs.shape), dirs], 1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh_vertices.astype(np.float32)),
                        o3d.core.Tensor(triangles.astype(np.uint32)))
    hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(rays), nthreads=1)["t_hit"].numpy())
    return int(hit.sum())


def box_annotations(world: World, object_ids: np.ndarray, T_map_cam: np.ndarray, K: np.ndarray,
                    t: float, min_pixels: int = 30) -> list[BoxAnnotation]:
    """Boxes of the annotated objects (cars, pedestrians, cyclists, signs) visible in a frame."""
    H, W = object_ids.shape
    flat = object_ids.ravel()
    valid = flat >= 0
    counts = np.bincount(flat[valid], minlength=len(world.objects))
    out = []
    for idx in np.flatnonzero(counts >= min_pixels):
        obj = world.objects[idx]
        if obj.category_id == 0:
            continue
        rows, cols = np.nonzero(object_ids == idx)
        x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
        mesh = obj.mesh_at(t)
        full = _silhouette_area(mesh.vertices, mesh.triangles, T_map_cam, K, (H, W))
        vis = float(min(1.0, counts[idx] / max(full, 1)))
        out.append(BoxAnnotation(int(idx), obj.category_id,
                                 (float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)),
                                 int(counts[idx]), round(vis, 4)))
    return out


def _silhouette_edges(vertices: np.ndarray, edges: EdgeSet, normals: np.ndarray, cam_pos: np.ndarray) -> np.ndarray:
    """Smooth edges (K, 2, 3) between a face turned towards ``cam_pos`` and one turned away."""
    ends = vertices[edges.smooth]
    to_cam = cam_pos - ends.mean(axis=1)
    sa = np.einsum("ij,ij->i", normals[edges.smooth_faces[:, 0]], to_cam)
    sb = np.einsum("ij,ij->i", normals[edges.smooth_faces[:, 1]], to_cam)
    return ends[np.sign(sa) != np.sign(sb)]


class LineAnnotator:
    """Line ground truth for one world; the static objects' edges are gathered once."""

    def __init__(self, world: World) -> None:
        self.world = world
        creases, smooth, faces_a, faces_b = [], [], [], []
        self._moving = []
        for obj in world.objects:
            e = obj.edges
            if not KINDS[obj.kind][1] or (e.creases.size == 0 and e.smooth.size == 0):
                continue
            if obj.motion is not None:
                self._moving.append(obj)
                continue
            v = obj.mesh.vertices
            creases.append(v[e.creases])
            if e.smooth.size:
                normals = obj.mesh.face_normals()
                smooth.append(v[e.smooth])
                faces_a.append(normals[e.smooth_faces[:, 0]])
                faces_b.append(normals[e.smooth_faces[:, 1]])
        z3 = np.zeros((0, 2, 3))
        self._creases = np.concatenate(creases) if creases else z3
        self._smooth = np.concatenate(smooth) if smooth else z3
        self._na = np.concatenate(faces_a) if faces_a else np.zeros((0, 3))
        self._nb = np.concatenate(faces_b) if faces_b else np.zeros((0, 3))

    def edges(self, cam_pos: np.ndarray, t: float) -> np.ndarray:
        """All candidate 3D edges (E, 2, 3) in the map frame for a camera at ``cam_pos``."""
        to_cam = cam_pos - self._smooth.mean(axis=1)
        sil = np.sign(np.einsum("ij,ij->i", self._na, to_cam)) != np.sign(np.einsum("ij,ij->i", self._nb, to_cam))
        parts = [self._creases, self._smooth[sil]]
        for obj in self._moving:
            mesh = obj.mesh_at(t)
            parts.append(mesh.vertices[obj.edges.creases])
            if obj.edges.smooth.size:
                parts.append(_silhouette_edges(mesh.vertices, obj.edges, mesh.face_normals(), cam_pos))
        return np.concatenate(parts)

    def segments(self, depth: np.ndarray, T_map_cam: np.ndarray, K: np.ndarray, t: float,
                 min_length: float = 10.0) -> np.ndarray:
        """Visible projected scene edges of a frame as (L, 4) ``x1, y1, x2, y2`` (pixel centres at
        integers), following the convention in the module docstring."""
        return _visible_segments(self.edges(T_map_cam[:3, 3], t), depth, T_map_cam, K, min_length)


def _visible_segments(E: np.ndarray, depth: np.ndarray, T_map_cam: np.ndarray, K: np.ndarray,
                      min_length: float) -> np.ndarray:
    H, W = depth.shape
    T_cam_map = pose_inverse(T_map_cam)
    if E.shape[0] == 0:
        return np.zeros((0, 4))
    # einsum, not @: a BLAS call for (N, 3) x (3, 3) is slow and spawns threads
    P = np.einsum("ij,kj->ik", E.reshape(-1, 3), T_cam_map[:3, :3]) + T_cam_map[:3, 3]
    a, b = P[0::2], P[1::2]
    # clip to the near plane
    keep = (a[:, 2] >= NEAR) | (b[:, 2] >= NEAR)
    a, b = a[keep], b[keep]
    dz = b[:, 2] - a[:, 2]
    s_near = (NEAR - a[:, 2]) / np.where(np.abs(dz) > 1e-12, dz, 1e-12)
    cut = a + s_near[:, None] * (b - a)  # where the edge crosses the near plane
    a, b = np.where((a[:, 2] < NEAR)[:, None], cut, a), np.where((b[:, 2] < NEAR)[:, None], cut, b)
    ua, ub = _project(K, a), _project(K, b)
    d = ub - ua
    lo, hi, ok = clip_range(ua, d, -0.5, -0.5, W - 0.5, H - 0.5)
    length = np.linalg.norm(d, axis=1) * (hi - lo)
    ok &= length >= 2.0  # shorter pieces may still join others (see merge_collinear)
    if not ok.any():
        return np.zeros((0, 4))
    ua, d, lo, hi, length = ua[ok], d[ok], lo[ok], hi[ok], length[ok]
    inv_za, inv_zb = 1.0 / a[ok, 2], 1.0 / b[ok, 2]
    # samples every pixel along each clipped projection
    n = np.ceil(length).astype(int) + 1
    seg = np.repeat(np.arange(len(n)), n)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    k = np.arange(n.sum()) - np.repeat(start, n)
    frac = k / np.repeat(n - 1, n)
    s_par = lo[seg] + (hi[seg] - lo[seg]) * frac
    uv = ua[seg] + d[seg] * s_par[:, None]
    z = 1.0 / (inv_za[seg] + (inv_zb[seg] - inv_za[seg]) * s_par)  # 1/z is linear on the image
    col = np.clip(np.round(uv[:, 0]).astype(int), 0, W - 1)
    row = np.clip(np.round(uv[:, 1]).astype(int), 0, H - 1)
    dmax = cv2.dilate(np.where(np.isfinite(depth), depth, 1e6).astype(np.float32), np.ones((3, 3), np.uint8))
    vis = z <= dmax[row, col] * 1.02 + 0.05
    # close one-sample gaps (aliasing), then split into runs of visible samples
    gap = ~vis & np.r_[False, vis[:-1]] & np.r_[vis[1:], False]
    gap &= np.r_[False, seg[1:] == seg[:-1]] & np.r_[seg[:-1] == seg[1:], False]
    vis |= gap
    change = np.r_[True, (vis[1:] != vis[:-1]) | (seg[1:] != seg[:-1])]
    run_start = np.flatnonzero(change)
    run_end = np.r_[run_start[1:], len(vis)] - 1
    run_vis = vis[run_start]
    p0, p1 = uv[run_start[run_vis]], uv[run_end[run_vis]]
    out = merge_collinear(np.concatenate([p0, p1], axis=1))
    # a merged line spans its pieces' projections on one line: clip it to the image again
    return clip_segments(out, -0.5, -0.5, W - 0.5, H - 0.5, min_length)


def _parallel_pairs(u: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of directions ``u`` (N, 2) within ``angle`` rad of each other (undirected;
    a pair may repeat), found by sorting angles instead of comparing all pairs."""
    theta = np.arctan2(u[:, 1], u[:, 0]) % np.pi
    # angles near pi also neighbour angles near 0: append those shifted by pi
    wrap = np.flatnonzero(theta < angle)
    th = np.concatenate([theta, theta[wrap] + np.pi])
    idx = np.concatenate([np.arange(len(theta)), wrap])
    order = np.argsort(th, kind="stable")
    th, idx = th[order], idx[order]
    hi = np.searchsorted(th, th + angle, side="right")
    counts = hi - np.arange(len(th)) - 1
    a = np.repeat(np.arange(len(th)), counts)
    b = a + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    i, j = idx[a], idx[b]
    keep = i != j  # a wrapped copy meets its own original
    return i[keep], j[keep]


def _continues(p: np.ndarray, u: np.ndarray, length: np.ndarray, q: np.ndarray, i: np.ndarray,
               j: np.ndarray, offset_px: float, gap_px: float) -> np.ndarray:
    """Whether segment j lies on segment i's line (both ends within ``offset_px``) and overlaps it
    or is at most ``gap_px`` away along it."""
    rp, rq = p[j] - p[i], q[j] - p[i]
    off_p = np.abs(u[i, 0] * rp[:, 1] - u[i, 1] * rp[:, 0])
    off_q = np.abs(u[i, 0] * rq[:, 1] - u[i, 1] * rq[:, 0])
    tp, tq = (rp * u[i]).sum(1), (rq * u[i]).sum(1)
    gap = np.maximum(np.minimum(tp, tq) - length[i], -np.maximum(tp, tq))
    return (off_p < offset_px) & (off_q < offset_px) & (gap < gap_px)


def merge_collinear(seg: np.ndarray, angle_deg: float = 2.0, offset_px: float = 1.0, gap_px: float = 2.0) -> np.ndarray:
    """Join segments that continue one another on the image: nearly parallel, within
    ``offset_px`` of one another's line and overlapping or at most ``gap_px`` apart.

    One straight image edge can come from several 3D edges (kerb pieces, a facade foot line
    meeting the next building's); an image-space detector sees one line, so the ground truth
    gives one. Chains of such pairs form one line: it lies on the longest member's line and
    spans the projections of all members.
    """
    seg = np.asarray(seg, float).reshape(-1, 4)
    # pieces under 2 px have no usable direction (a single sample has none at all)
    seg = seg[np.linalg.norm(seg[:, 2:] - seg[:, :2], axis=1) >= 2.0]
    if len(seg) < 2:
        return seg
    seg = seg[np.argsort(-np.linalg.norm(seg[:, 2:] - seg[:, :2], axis=1), kind="stable")]
    p, q = seg[:, :2], seg[:, 2:]
    length = np.linalg.norm(q - p, axis=1)
    u = (q - p) / length[:, None]
    i, j = _parallel_pairs(u, np.radians(angle_deg))
    # the test depends on the reference line; either direction qualifies
    ok = _continues(p, u, length, q, i, j, offset_px, gap_px) | _continues(p, u, length, q, j, i, offset_px, gap_px)
    n = len(seg)
    graph = coo_matrix((np.ones(int(ok.sum())), (i[ok], j[ok])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    _, ref = np.unique(label, return_index=True)  # first member = longest (sorted above)
    r = ref[label]
    # a chain can drift: members off the longest member's line by > 2 offsets stay on their own
    def cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]

    off = np.maximum(np.abs(cross2(u[r], p - p[r])), np.abs(cross2(u[r], q - p[r])))
    label = np.where(off > 2 * offset_px, label.max() + 1 + np.arange(n), label)
    _, ref, label = np.unique(label, return_index=True, return_inverse=True)
    n_lines = len(ref)
    r = ref[label]
    tp = ((p - p[r]) * u[r]).sum(1)
    tq = ((q - p[r]) * u[r]).sum(1)
    t_lo = np.full(n_lines, np.inf)
    t_hi = np.full(n_lines, -np.inf)
    np.minimum.at(t_lo, label, np.minimum(tp, tq))
    np.maximum.at(t_hi, label, np.maximum(tp, tq))
    pr, ur = p[ref], u[ref]
    return np.concatenate([pr + ur * t_lo[label[ref], None], pr + ur * t_hi[label[ref], None]], axis=1)
