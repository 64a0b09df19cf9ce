"""The shipped BEV descriptor CNN (models/bev_descriptor.onnx) in ONNX Runtime, and its use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lkd_perception.common.errors import ModelError
from lkd_perception.common.se3 import make_pose, pose_inverse, transform_points, yaw_pitch_roll_matrix
from lkd_perception.odometry.bev import BevGrid, bev_image
from lkd_perception.odometry.features import (
    DEFAULT_CNN_MODEL,
    DESCRIPTOR_DIM,
    FeatureExtractor,
    match_mutual,
    ransac_rigid_2d,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "odometry" / "fr079_scan.npz"


def test_model_is_small_and_gives_unit_descriptors():
    assert DEFAULT_CNN_MODEL.is_file() and DEFAULT_CNN_MODEL.stat().st_size < 15e6
    scan = np.load(FIXTURE)["xyz"].astype(np.float64)
    f = FeatureExtractor("cnn", 20, 300).extract(bev_image(scan, BevGrid.for_range(0.4, 30.0)))
    assert len(f) > 20 and not f.binary
    assert f.descriptors.shape == (len(f), DESCRIPTOR_DIM)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)


def test_cnn_matches_recover_planar_motion_of_real_scan():
    scan = np.load(FIXTURE)["xyz"].astype(np.float64)
    grid = BevGrid.for_range(0.4, 30.0)
    T = make_pose(yaw_pitch_roll_matrix(0.3), [1.0, -0.6, 0.0])
    ext = FeatureExtractor("cnn", 20, 500)
    fa = ext.extract(bev_image(scan, grid))
    fb = ext.extract(bev_image(transform_points(pose_inverse(T), scan), grid))
    pairs = match_mutual(fb, fa)
    fit = ransac_rigid_2d(fb.xy[pairs[:, 0]], fa.xy[pairs[:, 1]], 1.0, 500, np.random.default_rng(0))
    assert fit is not None and fit.inliers.sum() >= 8
    assert abs(fit.yaw - 0.3) < 0.05
    np.testing.assert_allclose(fit.translation, [1.0, -0.6], atol=0.4)


def test_missing_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        FeatureExtractor("cnn", 20, 100, str(tmp_path / "none.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        FeatureExtractor("cnn", 20, 100, str(bad))
