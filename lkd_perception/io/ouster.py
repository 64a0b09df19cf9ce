"""Ouster recordings (pcap + sensor metadata JSON) read without the Ouster SDK.

The ``ouster-sdk`` wheel pins Flask, psutil and rosbags at other versions than ours, so it does
not install beside the product; this reader follows the sensor's documented formats instead:

* pcap: the classic libpcap container, Ethernet + IPv4 + UDP; lidar packets on
  ``udp_port_lidar``, IMU packets on ``udp_port_imu`` (from the metadata).
* Lidar packets, profile ``RNG15_RFL8_NIR8`` (low data rate, firmware >= 2.3): a 32-byte packet
  header, ``columns_per_packet`` columns of [timestamp uint64 ns, measurement id uint16, status
  uint16 (bit 0: valid), then ``pixels_per_column`` pixels of 4 bytes: range uint16 (15 bits, in
  8 mm units), reflectivity uint8, near-infrared uint8], a 32-byte footer.
* IMU packets, profile ``LEGACY``: three uint64 timestamps (diagnostic, accelerometer,
  gyroscope read time, ns), accelerometer xyz float32 (g), gyroscope xyz float32 (deg/s).
* Points: the beam model of the sensor manual, from ``beam_altitude_angles``,
  ``beam_azimuth_angles``, ``lidar_origin_to_beam_origin_mm`` and the column's measurement id,
  then ``lidar_to_sensor_transform`` (mm) into the ``os_sensor`` frame.

:func:`ouster_pointcloud2` lays a frame out as the Ouster ROS driver does (organised
``pixels_per_column`` x ``columns_per_frame``, point_step 48: x y z, intensity, t, reflectivity,
ring, ambient, range; no return = all zeros).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lkd_perception.common.errors import InputError
from lkd_perception.io.imu_series import ImuSeries

G = 9.80665  # the IMU reports acceleration in g
PACKET_HEADER, PACKET_FOOTER, COLUMN_HEADER, PIXEL_BYTES = 32, 32, 12, 4
RANGE_UNIT_MM = 8  # RNG15: 15-bit range in 8 mm steps
ETH_IP_UDP = 14 + 20 + 8

# the Ouster ROS driver's point (PCL point4D + fields, 16-byte aligned): name, offset, PointField datatype
OUSTER_ROS_FIELDS = (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7), ("t", 20, 6),
                     ("reflectivity", 24, 4), ("ring", 26, 4), ("ambient", 28, 4), ("range", 32, 6))
OUSTER_ROS_POINT_STEP = 48
_NP = {7: "<f4", 6: "<u4", 4: "<u2"}


@dataclass(frozen=True)
class OusterMetadata:
    """What decoding needs from the sensor's metadata JSON."""

    columns_per_frame: int
    columns_per_packet: int
    pixels_per_column: int
    profile: str
    altitude_deg: np.ndarray
    azimuth_deg: np.ndarray
    beam_origin_mm: float
    lidar_to_sensor: np.ndarray  # 4x4, translation in mm
    imu_to_sensor: np.ndarray  # 4x4, translation in mm
    port_lidar: int
    port_imu: int

    @staticmethod
    def load(path: str | Path) -> "OusterMetadata":
        try:
            m = json.loads(Path(path).read_text())
            f = m["data_format"]
            return OusterMetadata(
                int(f["columns_per_frame"]), int(f["columns_per_packet"]), int(f["pixels_per_column"]),
                str(f.get("udp_profile_lidar", "LEGACY")),
                np.asarray(m["beam_altitude_angles"], float), np.asarray(m["beam_azimuth_angles"], float),
                float(m["lidar_origin_to_beam_origin_mm"]),
                np.asarray(m["lidar_to_sensor_transform"], float).reshape(4, 4),
                np.asarray(m["imu_to_sensor_transform"], float).reshape(4, 4),
                int(m.get("udp_port_lidar", 7502)), int(m.get("udp_port_imu", 7503)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read Ouster metadata {path}: {exc}") from exc


@dataclass(frozen=True)
class OusterFrame:
    """One rotation as range images (pixels_per_column x columns_per_frame, staggered as measured):
    ``range_mm`` (0 = no return), ``reflectivity``, ``nir``; per column ``timestamp_ns`` and
    ``valid``; ``frame_id`` as counted by the sensor."""

    frame_id: int
    range_mm: np.ndarray
    reflectivity: np.ndarray
    nir: np.ndarray
    timestamp_ns: np.ndarray
    valid: np.ndarray

    @property
    def stamp_ns(self) -> int:
        """The first valid column's time: the ROS driver's default header stamp."""
        return int(self.timestamp_ns[self.valid][0]) if self.valid.any() else 0


def _udp_payloads(pcap: Path):
    """(dst port, payload bytes) of each UDP/IPv4 packet of an Ethernet pcap."""
    data = pcap.read_bytes()
    if len(data) < 24:
        raise InputError(f"{pcap}: not a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise InputError(f"{pcap}: not a pcap file (magic {magic.hex()}); pcapng is not supported")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise InputError(f"{pcap}: link type {linktype}, only Ethernet (1) is supported")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < ETH_IP_UDP or pkt[12:14] != b"\x08\x00" or pkt[23] != 17:  # IPv4, UDP
            continue
        ihl = (pkt[14] & 0x0F) * 4
        dport = struct.unpack(">H", pkt[14 + ihl + 2:14 + ihl + 4])[0]
        yield dport, pkt[14 + ihl + 8:]


def read_ouster_pcap(pcap: str | Path, meta: OusterMetadata) -> tuple[list[OusterFrame], ImuSeries]:
    """Complete frames and the IMU samples (rad/s, m/s^2, in the sensor's IMU frame) of a pcap."""
    if meta.profile != "RNG15_RFL8_NIR8":
        raise InputError(f"Ouster lidar profile {meta.profile!r} is not supported (RNG15_RFL8_NIR8 only)")
    H, W, C = meta.pixels_per_column, meta.columns_per_frame, meta.columns_per_packet
    col_bytes = COLUMN_HEADER + H * PIXEL_BYTES
    size = PACKET_HEADER + C * col_bytes + PACKET_FOOTER
    col_dtype = np.dtype([("ts", "<u8"), ("mid", "<u2"), ("status", "<u2"), ("px", "<u4", (H,))])
    frames: dict[int, dict[str, np.ndarray]] = {}
    imu_t, gyro, accel = [], [], []
    for port, payload in _udp_payloads(Path(pcap)):
        if port == meta.port_imu and len(payload) == 48:
            _, t_acc, t_gyr = struct.unpack("<QQQ", payload[:24])
            a = np.array(struct.unpack("<fff", payload[24:36])) * G
            w = np.deg2rad(np.array(struct.unpack("<fff", payload[36:48])))
            imu_t.append(t_gyr), accel.append(a), gyro.append(w)
        elif port == meta.port_lidar:
            if len(payload) != size:
                raise InputError(f"lidar packet of {len(payload)} bytes, {meta.profile} {H}x{W} needs {size}")
            fid = struct.unpack("<H", payload[2:4])[0]
            cols = np.frombuffer(payload, col_dtype, C, PACKET_HEADER)
            f = frames.setdefault(fid, {"rng": np.zeros((H, W), np.uint32), "rfl": np.zeros((H, W), np.uint8),
                                        "nir": np.zeros((H, W), np.uint8), "ts": np.zeros(W, np.uint64),
                                        "ok": np.zeros(W, bool)})
            mid = cols["mid"].astype(int)
            px = cols["px"].T  # (H, C)
            f["rng"][:, mid] = (px & 0x7FFF) * RANGE_UNIT_MM
            f["rfl"][:, mid] = (px >> 16) & 0xFF
            f["nir"][:, mid] = (px >> 24) & 0xFF
            f["ts"][mid] = cols["ts"]
            f["ok"][mid] = (cols["status"] & 1) == 1
    out = [OusterFrame(fid, f["rng"], f["rfl"], f["nir"], f["ts"].astype(np.int64), f["ok"])
           for fid, f in sorted(frames.items()) if f["ok"].all()]
    order = np.argsort(imu_t, kind="stable")
    imu = ImuSeries(np.asarray(imu_t, np.int64)[order], np.asarray(gyro, float).reshape(-1, 3)[order],
                    np.asarray(accel, float).reshape(-1, 3)[order], "os_imu")
    return out, imu


def frame_xyz(frame: OusterFrame, meta: OusterMetadata) -> np.ndarray:
    """(H, W, 3) points in metres in the os_sensor frame; (0, 0, 0) where there is no return."""
    H, W = frame.range_mm.shape
    theta_enc = 2 * np.pi * (1 - np.arange(W) / W)  # from the measurement id
    theta_az = -2 * np.pi * meta.azimuth_deg / 360.0
    phi = 2 * np.pi * meta.altitude_deg / 360.0
    r = frame.range_mm.astype(np.float64)
    n = meta.beam_origin_mm
    ang = theta_enc[None, :] + theta_az[:, None]
    x = (r - n) * np.cos(ang) * np.cos(phi)[:, None] + n * np.cos(theta_enc)[None, :]
    y = (r - n) * np.sin(ang) * np.cos(phi)[:, None] + n * np.sin(theta_enc)[None, :]
    z = (r - n) * np.sin(phi)[:, None] + 0 * theta_enc[None, :]
    p = np.stack([x, y, z], axis=-1) @ meta.lidar_to_sensor[:3, :3].T + meta.lidar_to_sensor[:3, 3]
    p = p / 1000.0
    p[frame.range_mm == 0] = 0.0
    return p


def ouster_pointcloud2(frame: OusterFrame, meta: OusterMetadata) -> tuple[list[tuple[str, int, int, int]], int, int,
                                                                          int, bytes]:
    """Fields, point_step, width, height and bytes of the frame in the Ouster ROS driver's layout.

    ``t`` is nanoseconds after :attr:`OusterFrame.stamp_ns` (the header stamp), ``intensity``
    carries the reflectivity (this profile has no signal channel), ``ambient`` the NIR.
    """
    H, W = frame.range_mm.shape
    xyz = frame_xyz(frame, meta).astype(np.float32)
    dtype = np.dtype(
        {
            "names": [f[0] for f in OUSTER_ROS_FIELDS],
            "formats": [_NP[f[2]] for f in OUSTER_ROS_FIELDS],
            "offsets": [f[1] for f in OUSTER_ROS_FIELDS],
            "itemsize": OUSTER_ROS_POINT_STEP,
        }
    )
    rec = np.zeros((H, W), dtype)
    rec["x"], rec["y"], rec["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    rec["intensity"] = frame.reflectivity.astype(np.float32)
    rec["t"] = np.broadcast_to((frame.timestamp_ns - frame.stamp_ns).astype(np.uint32)[None, :], (H, W))
    rec["reflectivity"] = frame.reflectivity
    rec["ring"] = np.arange(H, dtype=np.uint16)[:, None]
    rec["ambient"] = frame.nir
    rec["range"] = frame.range_mm
    fields = [(name, off, dt, 1) for name, off, dt in OUSTER_ROS_FIELDS]
    return fields, OUSTER_ROS_POINT_STEP, W, H, rec.tobytes()


def save_frames(path: str | Path, frames: list[OusterFrame], imu: ImuSeries) -> None:
    """The measured values of frames and IMU samples, compressed (a test fixture: the range in
    its 8 mm units as on the wire, so nothing is rounded twice)."""
    np.savez_compressed(
        path,
        frame_id=np.array([f.frame_id for f in frames]),
        range_8mm=np.stack([f.range_mm // RANGE_UNIT_MM for f in frames]).astype(np.uint16),
        reflectivity=np.stack([f.reflectivity for f in frames]),
        nir=np.stack([f.nir for f in frames]),
        timestamp_ns=np.stack([f.timestamp_ns for f in frames]),
        valid=np.stack([f.valid for f in frames]),
        imu_stamps_ns=imu.stamps_ns,
        imu_gyro=imu.gyro,
        imu_accel=imu.accel,
    )


def load_frames(path: str | Path) -> tuple[list[OusterFrame], ImuSeries]:
    """What :func:`save_frames` wrote."""
    z = np.load(path)
    frames = [
        OusterFrame(
            int(z["frame_id"][i]),
            z["range_8mm"][i].astype(np.uint32) * RANGE_UNIT_MM,
            z["reflectivity"][i],
            z["nir"][i],
            z["timestamp_ns"][i],
            z["valid"][i],
        )
        for i in range(len(z["frame_id"]))
    ]
    return frames, ImuSeries(z["imu_stamps_ns"], z["imu_gyro"], z["imu_accel"], "os_imu")
