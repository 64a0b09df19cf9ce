"""Train the small BEV local-descriptor CNN and export it to ONNX (needs torch; runtime does not).

Data: BEV images of simulated drives (``lkd_perception.sim``), built exactly as the odometry
builds them (deskewed scan in base_link, :func:`bev_image`). A training pair is two scans a few
frames apart, with the second image additionally rotated by a random angle, so the descriptor
must survive both viewpoint change (real appearance change between scans) and heading change
(loop closures come from any direction). Correspondences are exact: the ground-truth relative
pose maps every pixel of one image into the other.

Loss: InfoNCE over FAST keypoints of the first image (their matches in the second are the
positives, all other keypoints the negatives), in both directions.

The network is deliberately tiny (stride 4, 32-D output, about 40 k parameters) so that a
251 x 251 BEV image costs a few milliseconds in ONNX Runtime on one core.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lkd_perception.common.se3 import pose_inverse, transform_points
from lkd_perception.odometry.bev import BevGrid, bev_image
from lkd_perception.odometry.features import DESCRIPTOR_DIM, FeatureExtractor
from lkd_perception.odometry.motion import Twist, deskew

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BevSequence:
    """BEV images (N, S, S) uint8 of consecutive scans and their GT poses T_map_base (N, 4, 4)."""

    images: np.ndarray
    poses: np.ndarray
    grid: BevGrid


def bev_sequence(drive, grid: BevGrid, count_cap: int = 15) -> BevSequence:
    """Deskewed (with ground-truth motion) BEV images of every scan of a simulated drive."""
    gt_idx = np.searchsorted(drive.gt_stamps_ns, [s.stamp_ns for s in drive.scans])
    gt_idx = np.clip(gt_idx, 0, len(drive.gt_stamps_ns) - 1)
    poses = drive.gt_poses[gt_idx]
    T_bl = drive.extrinsics.T_base_lidar
    images = []
    for k, scan in enumerate(drive.scans):
        pts = transform_points(T_bl, scan.cloud.xyz.astype(np.float64))
        if scan.cloud.time is not None and k + 1 < len(drive.scans):
            dt = (drive.scans[k + 1].stamp_ns - scan.stamp_ns) * 1e-9
            pts = deskew(
                pts, scan.cloud.time.astype(np.float64), Twist.from_delta(pose_inverse(poses[k]) @ poses[k + 1], dt)
            )
        images.append(bev_image(pts, grid, count_cap).image)
    return BevSequence(np.stack(images), poses, grid)


def _pixel_map(grid: BevGrid, T_a_b: np.ndarray, uv_a: np.ndarray) -> np.ndarray:
    """Continuous pixel positions in image b of pixels ``uv_a`` of image a (planar part of T)."""
    c, res = grid.half_size, grid.resolution
    x = (c + 0.5 - uv_a[:, 1]) * res
    y = (c + 0.5 - uv_a[:, 0]) * res
    xy_b = (np.stack([x, y], 1) - T_a_b[:2, 3]) @ T_a_b[:2, :2]  # R^T (p - t), row-wise
    return np.stack([c + 0.5 - xy_b[:, 1] / res, c + 0.5 - xy_b[:, 0] / res], axis=1)


def build_model():
    """The descriptor CNN: (B, 1, H, W) in [0, 1] -> (B, 32, H/4, W/4) unit vectors."""
    import torch
    from torch import nn

    class BevDescriptorNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 64, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, DESCRIPTOR_DIM, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.body(x), dim=1)

    return BevDescriptorNet()


@dataclass(frozen=True)
class TrainReport:
    """What a training run did and how well the result matches on held-out pairs."""

    steps: int
    final_loss: float
    train_images: int
    heldout_pairs: int
    heldout_match_accuracy: float  # mutual-NN matches within 2 px of the truth, CNN
    heldout_match_accuracy_orb: float  # the same protocol with ORB descriptors
    parameters: int


def _sample_pair(seq: BevSequence, rng: np.random.Generator, max_gap: int, fast: cv2.FastFeatureDetector, n_kp: int):
    """Two images, FAST keypoints of the first and their exact positions in the (rotated) second."""
    n = len(seq.images)
    for _ in range(20):
        i = int(rng.integers(0, n - 1))
        j = int(min(n - 1, i + rng.integers(1, max_gap + 1)))
        a = seq.images[i]
        kps = fast.detect(a, None)
        if len(kps) < 16:
            continue
        kps = sorted(kps, key=lambda k: -k.response)[: 4 * n_kp]
        uv_a = np.array([k.pt for k in kps], dtype=np.float64)
        uv_b = _pixel_map(seq.grid, pose_inverse(seq.poses[i]) @ seq.poses[j], uv_a)
        # rotate image b about its centre by a random heading
        ang = float(rng.uniform(-180, 180))
        S = seq.images.shape[1]
        M = cv2.getRotationMatrix2D(((S - 1) / 2, (S - 1) / 2), ang, 1.0)
        b = cv2.warpAffine(seq.images[j], M, (S, S), flags=cv2.INTER_NEAREST)
        uv_b = uv_b @ M[:, :2].T + M[:, 2]
        inside = np.all((uv_b >= 4) & (uv_b < S - 4), axis=1)
        if inside.sum() < 16:
            continue
        keep = rng.permutation(np.nonzero(inside)[0])[:n_kp]
        return a, b, uv_a[keep], uv_b[keep]
    return None


def _sample_desc(dense, uv, size: int):
    """Bilinear descriptors (N, C) at pixel positions uv (N, 2) from a (1, C, h, w) map."""
    import torch

    g = torch.as_tensor((uv + 0.5) / size * 2 - 1, dtype=torch.float32).view(1, 1, -1, 2)
    d = torch.nn.functional.grid_sample(dense, g, mode="bilinear", align_corners=False)[0, :, 0, :].T
    return torch.nn.functional.normalize(d, dim=1)


def match_accuracy(extractor: FeatureExtractor, pairs) -> float:
    """Fraction of mutual-nearest-neighbour matches that land within 2 px of the truth."""
    norm = cv2.NORM_HAMMING if extractor.binary else cv2.NORM_L2
    good = total = 0
    for a, b, M_ab in pairs:
        uva, da = extractor.keypoints_and_descriptors(a)
        uvb, db = extractor.keypoints_and_descriptors(b)
        if len(uva) == 0 or len(uvb) == 0:
            continue
        ms = cv2.BFMatcher(norm, crossCheck=True).match(da, db)
        truth = M_ab(uva)
        good += sum(np.linalg.norm(uvb[m.trainIdx] - truth[m.queryIdx]) < 2.0 for m in ms)
        total += len(ms)
    return good / max(total, 1)


def train(
    train_seqs: list[BevSequence],
    heldout: BevSequence,
    out: Path,
    steps: int = 300,
    lr: float = 2e-3,
    batch: int = 4,
    n_kp: int = 128,
    max_gap: int = 5,
    seed: int = 0,
    temperature: float = 0.07,
) -> TrainReport:
    """Train, export to ONNX at ``out`` and measure matching on held-out pairs."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fast = cv2.FastFeatureDetector_create(20, True, cv2.FAST_FEATURE_DETECTOR_TYPE_9_16)
    net = build_model()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_val = float("nan")
    for step in range(steps):
        losses = []
        for _ in range(batch):
            seq = train_seqs[int(rng.integers(0, len(train_seqs)))]
            s = _sample_pair(seq, rng, max_gap, fast, n_kp)
            if s is None:
                continue
            a, b, uva, uvb = s
            x = torch.as_tensor(np.stack([a, b])[:, None].astype(np.float32) / 255.0)
            dense = net(x)
            S = a.shape[0]
            da = _sample_desc(dense[0:1], uva, S)
            db = _sample_desc(dense[1:2], uvb, S)
            logits = da @ db.T / temperature
            target = torch.arange(len(da))
            losses.append(
                0.5
                * (
                    torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)
                )
            )
        if not losses:
            continue
        loss = torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_val = float(loss.detach())
        if step % 50 == 0:
            log.info("step %d/%d: loss %.3f", step, steps, loss_val)
        if step == int(steps * 0.7):
            for g in opt.param_groups:
                g["lr"] = lr * 0.1
    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 1, heldout.images.shape[1], heldout.images.shape[2])
    torch.onnx.export(
        net,
        dummy,
        str(out),
        input_names=["bev"],
        output_names=["descriptors"],
        dynamic_axes={"bev": {2: "height", 3: "width"}, "descriptors": {2: "h4", 3: "w4"}},
        opset_version=17,
        dynamo=False,
    )
    pairs = _heldout_pairs(heldout, np.random.default_rng(seed + 1))
    acc_cnn = match_accuracy(FeatureExtractor("cnn", 20, 500, str(out)), pairs)
    acc_orb = match_accuracy(FeatureExtractor("orb", 20, 500), pairs)
    return TrainReport(
        steps,
        loss_val,
        sum(len(s.images) for s in train_seqs),
        len(pairs),
        acc_cnn,
        acc_orb,
        sum(p.numel() for p in net.parameters()),
    )


def _heldout_pairs(seq: BevSequence, rng: np.random.Generator, n: int = 30, gap: int = 3):
    """(a, b, pixel map a->b) for scans ``gap`` apart with b rotated by a random heading."""
    S = seq.images.shape[1]
    pairs = []
    for i in rng.choice(len(seq.images) - gap, size=min(n, len(seq.images) - gap), replace=False):
        j = int(i) + gap
        ang = float(rng.uniform(-180, 180))
        M = cv2.getRotationMatrix2D(((S - 1) / 2, (S - 1) / 2), ang, 1.0)
        b = cv2.warpAffine(seq.images[j], M, (S, S), flags=cv2.INTER_NEAREST)
        T = pose_inverse(seq.poses[int(i)]) @ seq.poses[j]
        pairs.append((seq.images[int(i)], b, lambda uv, T=T, M=M: _pixel_map(seq.grid, T, uv) @ M[:, :2].T + M[:, 2]))
    return pairs
