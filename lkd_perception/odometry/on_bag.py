"""The odometry over a recording, as ``lkd odometry`` runs it: a bag as users have it.

The LiDAR topic is required; the IMU topic is optional (absent: LiDAR-only with a warning, as
the node treats it); the extrinsics come from the recording's ``/tf_static`` through any chain of
frames, and what it does not give stays from the config, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from lkd_perception.common.frames import TransformTree
from lkd_perception.io import topics as topic_table
from lkd_perception.io.bag import bag_info, read_clouds, read_imu, read_messages, read_tf_static
from lkd_perception.odometry.config import OdometryConfig, extrinsic_list
from lkd_perception.odometry.pipeline import LioPipeline, run_pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagOdometry:
    """What the odometry made of a recording: the config it ran with (extrinsics and IMU use as
    decided from the bag), the loop-corrected trajectory (T_map_base per accepted scan), the
    accepted loops (their keyframes' stamps and fitness) and how many scans were refused."""

    config: OdometryConfig
    stamps_ns: np.ndarray
    poses: np.ndarray
    loops: list[dict[str, Any]]
    skipped_scans: int


def run_on_bag(
    bag: str,
    config: OdometryConfig,
    lidar_topic: str = topic_table.LIDAR.path,
    imu_topic: str = topic_table.IMU.path,
    use_imu: bool = True,
    lidar_frame: str | None = None,
    imu_frame: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BagOdometry:
    """Run :class:`LioPipeline` over the bag's scans (and IMU samples, when used and recorded).

    ``lidar_frame`` / ``imu_frame`` override the frames looked up in ``/tf_static`` (default: the
    messages' frame_id); ``on_progress(done, total)`` is called per scan.
    """
    info = bag_info(bag)
    total = info.topic(lidar_topic).count  # no LiDAR: a clear error listing the topics
    topics = {t.name for t in info.topics}
    use_imu = config.use_imu and use_imu
    if use_imu and imu_topic not in topics:
        log.warning("%s has no IMU topic %s: LiDAR-only odometry (constant-velocity prediction)", bag, imu_topic)
        use_imu = False
    frames = [("base_T_lidar", lidar_frame or _first_frame_id(bag, lidar_topic))]
    if use_imu:
        frames.append(("base_T_imu", imu_frame or _first_frame_id(bag, imu_topic)))
    cfg = replace(_extrinsics_from_bag(bag, config, topics, frames), use_imu=use_imu)
    pipeline = LioPipeline(cfg)
    if use_imu:
        imu = read_imu(bag, imu_topic)
        imu_arrays = (imu.stamps_ns, imu.gyro, imu.accel)
    else:
        imu_arrays = (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)))

    def scans():
        for k, scan in enumerate(read_clouds(bag, lidar_topic)):
            yield scan
            if on_progress is not None:
                on_progress(k + 1, total)

    skipped = run_pipeline(pipeline, scans(), *imu_arrays)
    stamps, poses = pipeline.map_trajectory()
    kf_stamp = pipeline.backend.keyframes.stamps
    loops = [
        {
            "from_stamp_ns": int(kf_stamp[lc.from_id]),
            "to_stamp_ns": int(kf_stamp[lc.to_id]),
            "rmse_m": lc.rmse,
            "overlap": lc.overlap,
            "bev_inliers": lc.bev_inliers,
        }
        for lc in pipeline.loop_closures
    ]
    return BagOdometry(cfg, stamps, poses, loops, skipped)


def _first_frame_id(bag: str, topic: str) -> str:
    for _, _, msg in read_messages(bag, [topic]):
        return str(msg.header.frame_id)
    return ""


def _extrinsics_from_bag(
    bag: str, cfg: OdometryConfig, topics: set[str], frames: list[tuple[str, str]]
) -> OdometryConfig:
    """The config with the extrinsics (``base_T_lidar``, ``base_T_imu``: the frame of each) this
    recording's ``/tf_static`` gives; what it does not give stays from the config, with a warning."""
    tree = TransformTree()
    if topic_table.TF_STATIC.path in topics:
        for tf in read_tf_static(bag):
            tree.add(tf.parent, tf.child, tf.T)
    else:
        log.warning("%s has no /tf_static: extrinsics from the config (base_T_lidar %s, base_T_imu %s)",
                    bag, cfg.base_T_lidar, cfg.base_T_imu)
    for key, frame in frames:
        T = tree.lookup(cfg.base_frame, frame) if frame else None
        if T is not None:
            cfg = replace(cfg, **{key: extrinsic_list(T)})
            log.info("%s: %s <- %s from /tf_static", key, cfg.base_frame, frame)
        elif len(tree):
            log.warning("/tf_static does not connect %r and %r: %s from the config %s", cfg.base_frame, frame, key,
                        getattr(cfg, key))
    return cfg
