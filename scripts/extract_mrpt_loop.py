"""One-off: turn MRPT's SENA 2-D laser loop into ``test/fixtures/odometry/mrpt_sena_loop.npz``.

The rawlog ships in the Debian package ``mrpt-common`` (1:2.5.8+ds-2) as
``usr/share/mrpt/datasets/2006-01ENE-21-SENA_Telecom Faculty_one_loop_only.rawlog``. Its scans
have an empty sensor label, which ``rawlog-edit --export-2d-scans-txt`` refuses ("Exporting as
TXT requires all observations having non-empty sensorLabels"), so the text export used here is
``rawlog-edit --describe`` (package ``mrpt-apps``), which prints every object of the rawlog:

    apt-get download mrpt-common && dpkg -x mrpt-common_*.deb pkg
    cp "pkg/usr/share/mrpt/datasets/2006-01ENE-21-SENA_Telecom Faculty_one_loop_only.rawlog" EXPORT/sena.rawlog
    rawlog-edit --describe -i EXPORT/sena.rawlog > EXPORT/sena_describe.txt

An independent estimate of the path, to judge our loop closures by (not ground truth: the log has
none), comes from MRPT's own ``icp-slam`` (scan-to-map ICP, no loop closure) with the demo
config ``pkg/usr/share/mrpt/config_files/icp-slam/icp-slam_demo_classic.ini``, changed only in
``rawlog_file=EXPORT/sena.rawlog``, ``SAVE_3D_SCENE=0``, ``SAVE_POSE_LOG=1`` and
``SHOW_PROGRESS_3D_REAL_TIME=0`` (two runs give identical files):

    icp-slam icp.ini
    cp LOG_ICP-SLAM/log_estimated_path.txt EXPORT/icp_slam_estimated_path.txt
    cp LOG_ICP-SLAM/log_odometry_path.txt EXPORT/icp_slam_odometry_path.txt
    python scripts/extract_mrpt_loop.py EXPORT

The rawlog is in MRPT's actions/sensory-frame format: pairs (odometry increment, scan), the
increment leading from the previous scan's robot pose to this one's (its time stamp lies
between the two scans'). ``--describe`` prints each pair scan first, then its action.

Stored (``numpy.savez_compressed``):

- ``ranges_cm`` (N, 361) uint16 centimetres (the log's own resolution, so lossless); 0 marks
  an invalid beam (MRPT's validity flag 0, mostly the 81.87 m no-return value);
- ``angles`` (361,) float32 rad in the sensor frame, right to left over the 180 deg aperture;
- ``sensor_pose`` (3,) float64 x, y, yaw of the laser on the robot (m, rad);
- ``scan_stamps`` (N,) float64 UNIX seconds;
- ``odometry`` (N, 3) float64 dx, dy, dyaw (m, m, rad) in the previous robot frame; row k leads
  from scan k-1 to scan k (row 0 is the increment before the first scan);
- ``odometry_cov`` (N, 3, 3) float32, MRPT's Gaussian covariance of each increment;
- ``odometry_stamps`` (N,) float64 UNIX seconds;
- ``icp_slam_path`` (N, 3) float64 x, y, yaw (m, rad) of each scan's robot pose from ``icp-slam``.

The script checks that chaining ``odometry`` reproduces ``icp-slam``'s own odometry path (to the
1 mm / 0.01 deg rounding of ``--describe``), which pins down the pairing of increments and scans.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DESCRIBE_NAME = "sena_describe.txt"
ICP_SLAM_PATH_NAME = "icp_slam_estimated_path.txt"
ODOMETRY_PATH_NAME = "icp_slam_odometry_path.txt"
OUTPUT_NAME = "mrpt_sena_loop.npz"

_FLOATS = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


@dataclass
class _Scan:
    stamp: float = float("nan")
    ranges: list[float] = field(default_factory=list)
    valid: list[int] = field(default_factory=list)
    sensor_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    aperture_deg: float = float("nan")
    right_to_left: bool = True


@dataclass
class _Odometry:
    stamp: float = float("nan")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cov: list[list[float]] = field(default_factory=list)


def _floats(text: str) -> list[float]:
    return [float(x) for x in _FLOATS.findall(text)]


def parse_describe(text: str) -> tuple[list[_Scan], list[_Odometry]]:
    """Scans and odometry increments of a ``rawlog-edit --describe`` dump, in file order."""
    scans: list[_Scan] = []
    odos: list[_Odometry] = []
    for block in text.split("\n---\n"):
        stamp_m = re.search(r"\(as time_t\):\s*([0-9.]+)", block)
        stamp = float(stamp_m.group(1)) if stamp_m else float("nan")
        if "ClassName: mrpt::obs::CObservation2DRangeScan" in block:
            s = _Scan(stamp=stamp)
            pose = re.search(r"\(x,y,z,yaw,pitch,roll\)=\(([^)]*)\)", block)
            assert pose, "scan without a sensor pose"
            x, y, _z, yaw_deg, _p, _r = _floats(pose.group(1))
            s.sensor_pose = (x, y, np.deg2rad(yaw_deg))
            s.aperture_deg = _floats(re.search(r"aperture\"\):\s*([0-9.]+)", block).group(1))[0]
            s.right_to_left = "Samples direction: Right->Left" in block
            s.ranges = _floats(re.search(r"Raw scan values: \[([^\]]*)\]", block).group(1))
            s.valid = [int(v) for v in re.search(r"Raw valid-scan values: \[([^\]]*)\]", block).group(1).split()]
            assert len(s.ranges) == len(s.valid), "ranges and validity flags differ in length"
            scans.append(s)
        elif "ClassName: mrpt::obs::CActionRobotMovement2D" in block:
            mean = re.search(r"Mean = \(([^)]*)\)", block)
            assert mean, "odometry action without a mean"
            dx, dy, dyaw_deg = _floats(mean.group(1))
            cov_lines = block.split("Covariance:")[1].splitlines()[1:4]
            odos.append(_Odometry(stamp, (dx, dy, float(np.deg2rad(dyaw_deg))), [_floats(line) for line in cov_lines]))
    return scans, odos


def build_arrays(scans: list[_Scan], odos: list[_Odometry]) -> dict[str, np.ndarray]:
    """The fixture arrays (see the module doc); checks the pairing of increments and scans."""
    if len(scans) != len(odos):
        raise ValueError(f"expected one increment per scan, got {len(scans)} scans and {len(odos)} increments")
    n_beams = len(scans[0].ranges)
    if any(len(s.ranges) != n_beams or s.sensor_pose != scans[0].sensor_pose or not s.right_to_left for s in scans):
        raise ValueError("scans differ in beam count, sensor pose or direction")
    scan_t = np.array([s.stamp for s in scans])
    odo_t = np.array([o.stamp for o in odos])
    # increment k precedes scan k and follows scan k-1
    if not (np.all(odo_t < scan_t) and np.all(odo_t[1:] > scan_t[:-1])):
        raise ValueError("odometry stamps do not interleave with the scan stamps as (increment, scan) pairs")
    ranges_cm = np.round(np.array([s.ranges for s in scans]) * 100.0)
    valid = np.array([s.valid for s in scans], dtype=bool)
    if ranges_cm[valid].min() < 1 or ranges_cm[valid].max() > np.iinfo(np.uint16).max:
        raise ValueError("valid ranges outside the uint16 centimetre range")
    ranges_cm[~valid] = 0
    aperture = np.deg2rad(scans[0].aperture_deg)
    angles = np.linspace(-aperture / 2, aperture / 2, n_beams)
    return {
        "ranges_cm": ranges_cm.astype(np.uint16),
        "angles": angles.astype(np.float32),
        "sensor_pose": np.array(scans[0].sensor_pose, dtype=np.float64),
        "scan_stamps": scan_t,
        "odometry": np.array([o.mean for o in odos], dtype=np.float64),
        "odometry_cov": np.array([o.cov for o in odos], dtype=np.float32),
        "odometry_stamps": odo_t,
    }


def read_path(path: Path, n: int) -> np.ndarray:
    """(n, 3) x, y, yaw of an MRPT ``log_*_path.txt`` (rows: index x y yaw)."""
    rows = np.loadtxt(path, ndmin=2)
    if rows.shape != (n, 4) or not np.array_equal(rows[:, 0], np.arange(n)):
        raise ValueError(f"{path}: expected {n} rows 'index x y yaw', got shape {rows.shape}")
    return rows[:, 1:]


def chain_odometry(increments: np.ndarray) -> np.ndarray:
    """(N, 3) x, y, yaw of the robot at each scan, composing increments 1..N-1 from the origin."""
    out = np.zeros((len(increments), 3))
    for k in range(1, len(increments)):
        x, y, th = out[k - 1]
        dx, dy, dth = increments[k]
        out[k] = x + np.cos(th) * dx - np.sin(th) * dy, y + np.sin(th) * dx + np.cos(th) * dy, th + dth
    return out


def check_odometry(arrays: dict[str, np.ndarray], mrpt_odometry_path: np.ndarray) -> float:
    """Largest position gap (m) between our chained odometry and MRPT's; raises when the pairing is off."""
    ours = chain_odometry(arrays["odometry"])
    gap = float(np.max(np.linalg.norm(ours[:, :2] - mrpt_odometry_path[:, :2], axis=1)))
    dyaw = np.angle(np.exp(1j * (ours[:, 2] - mrpt_odometry_path[:, 2])))
    if gap > 0.05 or float(np.max(np.abs(dyaw))) > np.deg2rad(0.1):
        raise ValueError(f"chained odometry is {gap:.3f} m from icp-slam's odometry path: wrong pairing?")
    return gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", type=Path, help=f"folder holding {DESCRIBE_NAME}, {ICP_SLAM_PATH_NAME} and "
                                                  f"{ODOMETRY_PATH_NAME}")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "test" / "fixtures" / "odometry" / OUTPUT_NAME
    )
    args = ap.parse_args()
    scans, odos = parse_describe((args.export_dir / DESCRIBE_NAME).read_text())
    arrays = build_arrays(scans, odos)
    n = len(scans)
    gap = check_odometry(arrays, read_path(args.export_dir / ODOMETRY_PATH_NAME, n))
    arrays["icp_slam_path"] = read_path(args.export_dir / ICP_SLAM_PATH_NAME, n)
    np.savez_compressed(args.out, **arrays)
    n_valid = int(np.count_nonzero(arrays["ranges_cm"]))
    print(
        f"{args.out}: {len(scans)} scans x {arrays['ranges_cm'].shape[1]} beams ({n_valid} valid), {len(odos)} "
        f"increments, {args.out.stat().st_size} bytes; odometry within {gap * 1000:.1f} mm of icp-slam's"
    )


if __name__ == "__main__":
    main()
