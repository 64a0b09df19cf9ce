"""``lkd simulate`` output: layout contract, bag contents, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml

from lkd_perception.io.bag import bag_info, read_clouds, read_images, read_imu
from lkd_perception.io.formats import read_coco, read_lines, read_tum
from lkd_perception.sim.drive import make_config
from lkd_perception.sim.recording import write_drive

SMALL = dict(camera=True, camera_width=96, camera_height=72, lidar_azimuths=128, lidar_beams=8)


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("drive")
    cfg = make_config("loop", 0.5, 4, **SMALL)
    summary = write_drive(out, cfg, save_frames=True)
    return out, summary


@pytest.mark.slow
def test_layout_and_contents(recorded):
    out, s = recorded
    assert (out / "drive.mcap").is_file()
    info = bag_info(out / "drive.mcap")
    counts = {t.name: t.count for t in info.topics}
    assert counts == {"/camera/image_raw": 6, "/camera/camera_info": 6, "/lidar/points": 5,
                      "/imu/data": 101, "/tf_static": 1}
    assert (s.images, s.scans, s.imu_samples) == (6, 5, 101)
    imgs = list(read_images(out / "drive.mcap"))
    assert imgs[0][1].shape == (72, 96, 3)
    clouds = list(read_clouds(out / "drive.mcap"))
    assert all(c.time is not None and c.intensity is not None for _, c in clouds)
    imu = read_imu(out / "drive.mcap")
    assert imu.frame_id == "imu" and np.all(np.diff(imu.stamps_ns) == 5_000_000)
    # IMU stamps, image stamps and GT share one time base
    gt = read_tum(out / "gt" / "trajectory.tum")
    assert len(gt) == 51 and gt.stamps_s[0] == pytest.approx(imu.stamps_ns[0] * 1e-9)
    ext = yaml.safe_load((out / "gt" / "extrinsics.yaml").read_text())
    assert np.array(ext["T_base_lidar"]).shape == (4, 4) and ext["camera"]["width"] == 96
    coco = read_coco(out / "gt" / "detections.json")
    assert [im["file_name"] for im in coco["images"]] == [f"frame_{k:06d}.png" for k in range(6)]
    assert coco["images"][1]["stamp_ns"] == imgs[1][0]
    assert {c["name"] for c in coco["categories"]} == {"car", "pedestrian", "cyclist", "traffic_sign"}
    lines = read_lines(out / "gt" / "lines.json")
    assert set(lines) == {im["file_name"] for im in coco["images"]}
    assert sum(len(v) for v in lines.values()) > 0
    assert len(list((out / "gt" / "frames").glob("*.png"))) == 6
    assert json.loads(json.dumps(s.to_dict()))["scans"] == 5


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(recorded, tmp_path):
    out, _ = recorded
    write_drive(tmp_path / "again", make_config("loop", 0.5, 4, **SMALL), save_frames=True)
    assert _digest(tmp_path / "again") == _digest(out)
    write_drive(tmp_path / "other", make_config("loop", 0.5, 5, **SMALL), save_frames=True)
    other = _digest(tmp_path / "other")
    assert other["drive.mcap"] != _digest(out)["drive.mcap"]


@pytest.mark.slow
def test_refuses_to_overwrite(recorded):
    out, _ = recorded
    from lkd_perception.common.errors import InputError

    with pytest.raises(InputError, match="exists"):
        write_drive(out, make_config("loop", 0.5, 4, **SMALL))


@pytest.mark.slow
def test_cli_simulate_and_bench(tmp_path, capsys):
    from lkd_perception.cli import main

    assert main(["simulate", "--out", str(tmp_path / "d"), "--seconds", "0.3", "--no-camera", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scans"] == 3 and summary["images"] == 0
    assert {t.name for t in bag_info(tmp_path / "d" / "drive.mcap").topics} == {
        "/lidar/points",
        "/imu/data",
        "/tf_static",
    }
    assert not (tmp_path / "d" / "gt" / "detections.json").exists()
    assert (
        main(
            [
                "bench",
                "sim",
                "--seconds",
                "0.3",
                "--no-camera",
                "--scenario",
                "corridor",
                "--out",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["scans"] == 3 and res["wall_s"] > 0 and res["peak_rss_mb"] > 0
    assert "per LiDAR sweep" in capsys.readouterr().err


def test_cli_config_file_is_used_and_options_win(tmp_path, capsys):
    from lkd_perception.cli import main

    (tmp_path / "sim.yaml").write_text("scenario: corridor\nseconds: 5.0\ncamera: false\nlidar_azimuths: 64\n")
    assert (
        main(["simulate", "--out", str(tmp_path / "d"), "--config", str(tmp_path / "sim.yaml"), "--seconds", "0.2"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "corridor" and summary["seconds"] == 0.2 and summary["images"] == 0
    (tmp_path / "bad.yaml").write_text("lidar_beems: 16\n")
    assert main(["simulate", "--out", str(tmp_path / "e"), "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "lidar_beems" in capsys.readouterr().err
