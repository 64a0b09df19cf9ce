"""sensor_msgs/CompressedImage: encode/decode (JPEG, PNG), bags of them, and the simulator writing them."""

from __future__ import annotations

import numpy as np
import pytest

from lkd_perception.io.bag import BagWriter, bag_info, image_topic_in, read_images
from lkd_perception.io.codecs import CodecError, compressed_codec, decode_compressed_image, encode_compressed_image

T0 = 1_700_000_000_000_000_000


def _image(seed: int = 0) -> np.ndarray:
    """A smooth picture with an edge (JPEG keeps such images close; noise it would not)."""
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, 255 - x * 2], axis=2).astype(np.uint8)
    img[10:30, 20:40] = (250, 20, 30) if seed == 0 else (20, 250, 30)
    return img


def test_png_is_exact_and_jpeg_close_in_rgb_order():
    img = _image()
    fmt, data = encode_compressed_image(img, "png")
    assert fmt == "rgb8; png compressed bgr8"
    assert np.array_equal(decode_compressed_image(fmt, data), img)
    fmt, data = encode_compressed_image(img, "jpeg", quality=95)
    back = decode_compressed_image(fmt, data)
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3.0
    assert back[20, 30, 0] > 200 and back[20, 30, 1] < 60  # red stays red (no BGR swap)
    assert len(data) < img.nbytes / 3


@pytest.mark.parametrize("fmt,codec", [("jpeg", "jpeg"), ("JPG", "jpeg"), ("png", "png"),
                                       ("bgr8; jpeg compressed bgr8", "jpeg"), ("mono8; png compressed ", "png")])
def test_format_field_variants(fmt, codec):
    assert compressed_codec(fmt) == codec


def test_bad_compressed_data_is_a_codec_error():
    with pytest.raises(CodecError, match="unsupported"):
        compressed_codec("theora")
    with pytest.raises(CodecError, match="does not decode"):
        decode_compressed_image("jpeg", b"\x00\x01garbage")
    with pytest.raises(CodecError, match="does not decode"):
        decode_compressed_image("png", b"")


def test_bag_of_compressed_images_reads_by_its_base_topic(tmp_path):
    path = tmp_path / "drive.mcap"
    images = [_image(0), _image(1)]
    with BagWriter(path) as w:
        for k, img in enumerate(images):
            w.write_compressed_image("/camera/image_raw/compressed", T0 + k * 100_000_000, img, "cam", codec="png")
    info = bag_info(path)
    assert image_topic_in(info, "/camera/image_raw") == "/camera/image_raw/compressed"
    got = list(read_images(path, "/camera/image_raw"))
    assert [ns for ns, _ in got] == [T0, T0 + 100_000_000]
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, images))


@pytest.mark.slow
def test_simulator_writes_jpeg_drives(tmp_path):
    from lkd_perception.sim.config import SimConfig
    from lkd_perception.sim.recording import write_drive

    cfg = SimConfig(seconds=0.3, camera_width=64, camera_height=48, camera_format="jpeg")
    write_drive(tmp_path / "drive", cfg)
    info = bag_info(tmp_path / "drive" / "drive.mcap")
    types = {t.name: t.msgtype for t in info.topics}
    assert types.get("/camera/image_raw/compressed") == "sensor_msgs/msg/CompressedImage"
    assert "/camera/image_raw" not in types
    frames = list(read_images(tmp_path / "drive" / "drive.mcap"))
    assert frames and frames[0][1].shape == (48, 64, 3)
