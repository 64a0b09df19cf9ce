"""Camera renderer and per-image ground truth (boxes, lines) on small hand-made scenes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.scene_world import scene_world

from lkd_perception.common.se3 import make_pose, pose_inverse, yaw_pitch_roll_matrix
from lkd_perception.sim.annotations import LineAnnotator, box_annotations
from lkd_perception.sim.camera import Camera
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.mesh import box, cylinder
from lkd_perception.sim.raycast import WorldCaster
from lkd_perception.sim.sensors import R_BASE_OPTICAL, make_rig

W, H = 200, 150


def _camera_looking(from_xyz, at_xyz) -> np.ndarray:
    """T_map_cam of an optical camera at ``from_xyz`` looking at ``at_xyz`` (level, no roll)."""
    d = np.asarray(at_xyz, float) - np.asarray(from_xyz, float)
    yaw = np.arctan2(d[1], d[0])
    pitch = -np.arctan2(d[2], np.hypot(d[0], d[1]))
    return make_pose(yaw_pitch_roll_matrix(yaw, pitch) @ R_BASE_OPTICAL, from_xyz)


def _project(K, T_map_cam, pts):
    T = pose_inverse(T_map_cam)
    c = pts @ T[:3, :3].T + T[:3, 3]
    return (c[:, :2] / c[:, 2:3]) * np.diag(K)[:2] + K[:2, 2], c[:, 2]


def _render(world, T, **cfg):
    c = make_config(camera=True, camera_width=W, camera_height=H, camera_noise=0.0, **cfg)
    rig = make_rig(c)
    cam = Camera(WorldCaster(world, nthreads=1), rig, c)
    return cam.render(T, 0.0, np.random.default_rng(0)), rig.K


def test_projected_box_corners_land_on_the_rendered_object():
    car = box((4.0, 1.8, 1.5), (0.0, 0.0, 0.75), yaw=0.4)
    world = scene_world([("car", car, (0.8, 0.1, 0.1))])
    T = _camera_looking((-9.0, 3.0, 1.6), (0.0, 0.0, 0.6))
    r, K = _render(world, T)
    car_id = 1  # index 0 is the ground
    uv, _ = _project(K, T, car.vertices)
    mask = r.object_ids == car_id
    assert mask.sum() > 500
    # every corner that is not hidden behind the box itself lies on (or 1 px from) car pixels
    cam_pos = T[:3, 3]
    centre = car.vertices.mean(axis=0)
    for p, (u, v) in zip(car.vertices, uv):
        towards = cam_pos - p
        outward = p - centre
        if towards @ outward <= 0:  # corner faces away from the camera: may be self-occluded
            continue
        c, rr = int(round(u)), int(round(v))
        assert mask[max(rr - 1, 0): rr + 2, max(c - 1, 0): c + 2].any(), (u, v)
    # the id-buffer box equals the box of the projected corners (COCO pixel convention)
    anns = box_annotations(world, r.object_ids, T, K, 0.0)
    assert [a.category_id for a in anns] == [1]
    x, y, w, h = anns[0].bbox
    assert x == pytest.approx(uv[:, 0].min() + 0.5, abs=1.0)
    assert x + w == pytest.approx(uv[:, 0].max() + 0.5, abs=1.0)
    assert y == pytest.approx(uv[:, 1].min() + 0.5, abs=1.0)
    assert y + h == pytest.approx(uv[:, 1].max() + 0.5, abs=1.0)
    assert anns[0].visibility > 0.97


def test_occluded_object_has_lower_visibility_and_a_smaller_box():
    car = box((4.0, 1.8, 1.5), (0.0, 0.0, 0.75))
    wall = box((0.3, 3.0, 3.0), (-4.0, 1.6, 1.5))  # hides the car's left (+y) part from the camera
    world = scene_world([("car", car, (0.8, 0.1, 0.1)), ("wall", wall, (0.5, 0.5, 0.5))])
    T = _camera_looking((-12.0, 0.0, 1.5), (0.0, 0.0, 0.75))
    r, K = _render(world, T)
    anns = box_annotations(world, r.object_ids, T, K, 0.0)
    assert len(anns) == 1
    uv, _ = _project(K, T, car.vertices)
    full_w = uv[:, 0].max() - uv[:, 0].min()
    assert anns[0].bbox[2] < 0.8 * full_w
    assert 0.2 < anns[0].visibility < 0.8


def test_tiny_objects_are_not_annotated():
    sign = box((0.05, 0.6, 0.6), (30.0, 0.0, 1.5))  # a few pixels at 30 m
    world = scene_world([("sign", sign, (0.9, 0.1, 0.1))])
    T = _camera_looking((0.0, 0.0, 1.5), (30.0, 0.0, 1.5))
    r, K = _render(world, T)
    assert 0 < (r.object_ids == 1).sum() < 30
    assert box_annotations(world, r.object_ids, T, K, 0.0) == []


def _segment_distance(seg, p):
    a, b = np.asarray(seg[:2]), np.asarray(seg[2:])
    s = np.clip((p - a) @ (b - a) / max((b - a) @ (b - a), 1e-9), 0, 1)
    return float(np.linalg.norm(a + s * (b - a) - p))


def test_lines_follow_visible_edges_and_split_at_occluders():
    building = box((10.0, 8.0, 6.0), (20.0, 0.0, 3.0))
    pole = cylinder(0.25, 8.0, (8.0, 0.0, 0.0))
    world = scene_world([("building", building, (0.7, 0.6, 0.5)), ("pole", pole, (0.2, 0.2, 0.2))])
    T = _camera_looking((0.0, 0.0, 1.5), (15.0, 0.0, 3.0))
    r, K = _render(world, T)
    lines = LineAnnotator(world).segments(r.depth, T, K, 0.0)
    assert lines.shape[1] == 4 and len(lines) >= 4
    lengths = np.linalg.norm(lines[:, 2:] - lines[:, :2], axis=1)
    assert (lengths >= 10.0).all()
    # the facade's top edge (y from -4 to 4 at x = 15, z = 6) is cut by the pole into two pieces
    top = np.array([[15.0, -4.0, 6.0], [15.0, 4.0, 6.0]])
    uv, _ = _project(K, T, top)
    on_top = [s for s in lines if _segment_distance(np.r_[uv[0], uv[1]], s[:2]) < 1.0
              and _segment_distance(np.r_[uv[0], uv[1]], s[2:]) < 1.0]
    assert len(on_top) == 2, on_top
    pole_u = _project(K, T, np.array([[8.0, 0.0, 6.0]]))[0][0, 0]
    xs = sorted(np.concatenate([s[[0, 2]] for s in on_top]))
    assert xs[1] < pole_u < xs[2]
    # the pole gives two silhouette lines (its sides), nearly vertical
    vertical = [s for s in lines if abs(s[2] - s[0]) < 0.05 * abs(s[3] - s[1]) and abs(s[0] - pole_u) < 15]
    assert len(vertical) == 2
    # edges hidden behind the building (its back side) are not reported
    back = np.array([[25.0, -4.0, 6.0], [25.0, 4.0, 6.0]])
    buv, _ = _project(K, T, back)
    assert not any(_segment_distance(np.r_[buv[0], buv[1]], (s[:2] + s[2:]) / 2) < 0.5 for s in lines)


def test_render_buffers_are_consistent():
    building = box((10.0, 8.0, 6.0), (20.0, 0.0, 3.0))
    world = scene_world([("building", building, (0.7, 0.6, 0.5))])
    T = _camera_looking((0.0, 0.0, 1.5), (20.0, 0.0, 1.5))
    r, K = _render(world, T)
    assert r.rgb.shape == (H, W, 3) and r.rgb.dtype == np.uint8
    facade = r.object_ids == 1
    assert facade.any() and (r.object_ids == -1).any()  # building and sky
    # depth of the facade pixels is the facade's distance along the optical axis (x = 15 m)
    assert np.allclose(r.depth[facade & (np.abs(np.arange(W) - K[0, 2]) < 20)[None, :]], 15.0, atol=0.05)
    assert np.isinf(r.depth[r.object_ids == -1]).all()


def test_collinear_pieces_are_merged_but_parallel_neighbours_are_not():
    from lkd_perception.sim.annotations import merge_collinear

    pieces = np.array([[0.0, 0.0, 10.0, 0.1], [11.0, 0.1, 30.0, 0.3], [31.5, 0.3, 40.0, 0.4],  # one line, 3 pieces
                       [0.0, 5.0, 40.0, 5.0],  # parallel, 5 px away: stays
                       [50.0, 0.5, 60.0, 0.6]])  # same line but 10 px gap: stays
    out = merge_collinear(pieces)
    assert len(out) == 3
    longest = out[np.argmax(np.linalg.norm(out[:, 2:] - out[:, :2], axis=1))]
    assert min(longest[0], longest[2]) == pytest.approx(0.0, abs=0.2)
    assert max(longest[0], longest[2]) == pytest.approx(40.0, abs=0.2)


def test_single_points_do_not_extend_lines():
    from lkd_perception.sim.annotations import merge_collinear

    segs = np.array([[0.0, 0.0, 40.0, 0.0], [80.0, 0.3, 80.0, 0.3], [-50.0, 0.0, -50.0, 0.0]])
    out = merge_collinear(segs)
    assert out.shape == (1, 4) and np.allclose(out[0], [0.0, 0.0, 40.0, 0.0])


def test_a_slowly_bending_chain_does_not_become_one_straight_line():
    from lkd_perception.sim.annotations import merge_collinear

    # 12 pieces of 10 px, each turned 1 deg more than the last: neighbours merge, the arc does not
    pts = [np.zeros(2)]
    for k in range(12):
        a = np.radians(k)
        pts.append(pts[-1] + 10.0 * np.array([np.cos(a), np.sin(a)]))
    pieces = np.array([np.r_[pts[k], pts[k + 1]] for k in range(12)])
    out = merge_collinear(pieces)
    assert 1 < len(out) < 12
    for s in pieces:  # every piece stays within 2 px of the line that took it
        d = [max(_segment_distance(o, s[:2]), _segment_distance(o, s[2:])) for o in out]
        assert min(d) <= 2.0 + 1e-9
