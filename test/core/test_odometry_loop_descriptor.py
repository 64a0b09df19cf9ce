"""Global BEV descriptors: a revisit from another heading is found, a different place is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.odometry.bev import BevGrid, bev_image
from lkd_perception.odometry.keyframes import ring_key
from lkd_perception.odometry.loop_closure import SECTORS, polar_descriptor, polar_distance

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "odometry" / "fr079_scan.npz"


def test_polar_descriptor_is_rotation_invariant_up_to_a_shift():
    scan = np.load(FIXTURE)["xyz"].astype(np.float64)
    grid = BevGrid.for_range(0.4, 30.0)
    yaw = np.radians(90.0)
    a = polar_descriptor(bev_image(scan, grid), 30.0)
    b = polar_descriptor(
        bev_image(transform_points(pose_inverse(make_pose(yaw_pitch_roll_matrix(yaw))), scan), grid), 30.0
    )
    d_same, shift = polar_distance(a, b)
    assert d_same < 0.15
    assert abs(shift - 90.0 / (360.0 / SECTORS)) <= 1  # the shift is the heading change in sectors
    np.testing.assert_allclose(ring_key(a), ring_key(b), atol=0.05)
    # another place (the scan moved 15 m sideways) is much farther in descriptor space
    c = polar_descriptor(bev_image(transform_points(make_pose(translation=[0.0, 15.0, 0.0]), scan), grid), 30.0)
    d_other, _ = polar_distance(a, c)
    assert d_other > d_same + 0.2
