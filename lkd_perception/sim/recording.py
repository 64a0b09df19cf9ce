"""Write a simulated drive to disk: ``DIR/drive.mcap`` and the ground truth in ``DIR/gt/``.

The drive is streamed (one sweep interval at a time), so memory stays flat however long it is.
Messages are written in bag-time order: IMU and camera at their stamps, a LiDAR sweep when it
is complete (header stamp = sweep start, bag time = sweep end), which is when a real driver
would publish it. The layout is the contract in ``sim/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
import yaml

from lkd_perception.common.errors import InputError
from lkd_perception.common.timing import Stopwatch, peak_rss_mb
from lkd_perception.io import topics
from lkd_perception.io.bag import BagWriter
from lkd_perception.io.formats import coco_document, write_json, write_lines, write_tum
from lkd_perception.io.imu_series import ImuSeries
from lkd_perception.sim.config import SimConfig
from lkd_perception.sim.drive import START_NS, DriveSimulator, to_ns
from lkd_perception.sim.world import CATEGORIES

# the bag's topics are the nodes' inputs (un-namespaced), so a replay feeds them without remapping
TOPIC_IMAGE = topics.IMAGE.path
TOPIC_CAMERA_INFO = topics.CAMERA_INFO.path
TOPIC_POINTS = topics.LIDAR.path
TOPIC_IMU = topics.IMU.path
TOPIC_TF_STATIC = topics.TF_STATIC.path


@dataclass(frozen=True)
class RecordingSummary:
    """What was written and how long it took."""

    out_dir: str
    bag: str
    scenario: str
    seed: int
    seconds: float
    scans: int
    images: int
    imu_samples: int
    boxes: int
    lines: int
    path_length_m: float
    bag_mb: float
    wall_s: float
    peak_rss_mb: float
    stage_s: dict[str, float]  # wall time per stage: world, imu, lidar, camera (render + GT), rest

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _imu_slice(series: ImuSeries, lo_ns: int, hi_ns: int) -> ImuSeries:
    m = (series.stamps_ns >= lo_ns) & (series.stamps_ns < hi_ns)
    return ImuSeries(series.stamps_ns[m], series.gyro[m], series.accel[m], series.frame_id)


def write_drive(out_dir: str | Path, cfg: SimConfig, save_frames: bool = False,
                wrap_events: Callable[[list], Iterable] | None = None) -> RecordingSummary:
    """Simulate ``cfg`` and write the bag and ground truth into ``out_dir`` (must not hold a bag).

    ``wrap_events`` wraps the list of sensor events (scans and frames, in time order) before they
    are simulated: the CLI passes a progress bar.
    """
    out = Path(out_dir)
    bag_path = out / "drive.mcap"
    if bag_path.exists():
        raise InputError(f"{bag_path} exists already; choose an empty output folder")
    gt_dir = out / "gt"
    stages = {"world": 0.0, "imu": 0.0, "lidar": 0.0, "camera": 0.0}
    with Stopwatch() as sw:
        with Stopwatch() as w:
            sim = DriveSimulator(cfg)
        stages["world"] = w.elapsed
        ext = sim.extrinsics()
        with Stopwatch() as w:
            imu = sim.imu()
        stages["imu"] = w.elapsed
        scan_times = sim.scan_times()
        frame_times = sim.frame_times() if cfg.camera else np.zeros(0)
        images, annotations, lines = [], [], {}
        n_lines = 0
        sweep = 1.0 / cfg.lidar_rate_hz
        frames_dir = gt_dir / "frames"
        if save_frames:
            frames_dir.mkdir(parents=True, exist_ok=True)
        with BagWriter(bag_path) as bag:
            bag.write_tf_static(START_NS, [("base_link", "lidar", ext.T_base_lidar),
                                           ("base_link", "camera_optical", ext.T_base_camera),
                                           ("base_link", "imu", ext.T_base_imu)], TOPIC_TF_STATIC)
            # events in bag-time order: (time s, kind, index)
            events = [(t + sweep, 1, k) for k, t in enumerate(scan_times)]
            events += [(t, 0, k) for k, t in enumerate(frame_times)]
            events.sort()
            imu_written = START_NS - 1
            for t_event, kind, k in (wrap_events(events) if wrap_events else events):
                stop_ns = int(to_ns(t_event)) + 1
                chunk = _imu_slice(imu.series, imu_written + 1, stop_ns)
                if len(chunk):
                    bag.write_imu(TOPIC_IMU, chunk)
                imu_written = stop_ns - 1
                if kind == 1:
                    with Stopwatch() as w:
                        scan = sim.scan(float(scan_times[k]))
                    stages["lidar"] += w.elapsed
                    bag.write_cloud(TOPIC_POINTS, scan.stamp_ns, scan.cloud, "lidar", log_ns=int(to_ns(t_event)))
                else:
                    with Stopwatch() as w:
                        frame = sim.frame(k, float(frame_times[k]))
                    stages["camera"] += w.elapsed
                    bag.write_camera_info(
                        TOPIC_CAMERA_INFO, frame.stamp_ns, ext.K, ext.width, ext.height, "camera_optical"
                    )
                    if cfg.camera_format == "raw":
                        bag.write_image(TOPIC_IMAGE, frame.stamp_ns, frame.rgb, "camera_optical")
                    else:
                        bag.write_compressed_image(
                            f"{TOPIC_IMAGE}/compressed",
                            frame.stamp_ns,
                            frame.rgb,
                            "camera_optical",
                            codec=cfg.camera_format,
                        )
                    images.append(
                        {
                            "id": k + 1,
                            "file_name": frame.file_name,
                            "width": ext.width,
                            "height": ext.height,
                            "stamp_ns": frame.stamp_ns,
                        }
                    )
                    for b in frame.boxes:
                        annotations.append(
                            {
                                "image_id": k + 1,
                                "category_id": b.category_id,
                                "bbox": [round(v, 2) for v in b.bbox],
                                "area": b.area,
                                "visibility": b.visibility,
                                "track_id": b.object_index,
                            }
                        )
                    lines[frame.file_name] = frame.lines
                    n_lines += len(frame.lines)
                    if save_frames:
                        cv2.imwrite(str(frames_dir / frame.file_name), frame.rgb[:, :, ::-1])
            rest = _imu_slice(imu.series, imu_written + 1, np.iinfo(np.int64).max)
            if len(rest):
                bag.write_imu(TOPIC_IMU, rest)
        stamps, poses = sim.gt()
        write_tum(gt_dir / "trajectory.tum", stamps, poses)
        (gt_dir / "extrinsics.yaml").write_text(yaml.safe_dump(ext.to_dict(), sort_keys=False, default_flow_style=None))
        if cfg.camera:
            write_json(gt_dir / "detections.json", coco_document(images, annotations, CATEGORIES))
            write_lines(gt_dir / "lines.json", lines)
        steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    stages["rest"] = sw.elapsed - sum(stages.values())
    return RecordingSummary(
        str(out),
        str(bag_path),
        cfg.scenario,
        cfg.seed,
        cfg.seconds,
        len(scan_times),
        len(images),
        len(imu.series),
        len(annotations),
        n_lines,
        round(float(steps.sum()), 2),
        round(bag_path.stat().st_size / 2**20, 1),
        round(sw.elapsed, 3),
        round(peak_rss_mb(), 1),
        {k: round(v, 3) for k, v in stages.items()},
    )
