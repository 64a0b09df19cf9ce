"""Build test/fixtures/odometry/ouster_os1_128.npz from the Ouster SDK's sample capture.

Usage: python scripts/ouster_fixture.py PCAP METADATA_JSON OUT_NPZ

The pcap is read with lkd_perception.io.ouster (our reader of the documented packet formats; the
ouster-sdk wheel does not install beside our pinned requirements). The fixture keeps the measured
values (range in 8 mm units, reflectivity, near-infrared, column times, IMU samples); the tests
lay them out as the Ouster ROS driver's PointCloud2.
"""

from __future__ import annotations

import sys

from lkd_perception.io.ouster import OusterMetadata, read_ouster_pcap, save_frames


def main(argv: list[str]) -> int:
    pcap, meta_json, out = argv
    frames, imu = read_ouster_pcap(pcap, OusterMetadata.load(meta_json))
    save_frames(out, frames, imu)
    print(f"{out}: {len(frames)} frames, {len(imu.stamps_ns)} IMU samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
