"""Bag replay over DDS with /clock, and recording of a node's outputs to mcap."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from lkd_perception.common.errors import InputError
from lkd_perception.io import messages
from lkd_perception.io.topics import RECORDED
from lkd_perception.nodes.conversions import image_to_numpy, ros_message
from lkd_perception.nodes.graph import GRAPH
from lkd_perception.nodes.player import ReplayProgress
from lkd_perception.nodes.qos import sensor_qos
from lkd_perception.nodes.replay import (
    LATE_WARN_MS,
    ReplayResult,
    connections_needed,
    lateness_warning,
    run_replay,
)

N_FRAMES = 6
T0_NS = 1_700_000_000_000_000_000


def _write_bag(path):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    image_cls = store.types["sensor_msgs/msg/Image"]
    header_cls = store.types["std_msgs/msg/Header"]
    time_cls = store.types["builtin_interfaces/msg/Time"]
    zero = QosTime(0, 0)
    best_effort = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, zero, zero,
                      QosLiveliness.AUTOMATIC, zero, False)
    frames = []
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store,
                                offered_qos_profiles=[best_effort])
        for i in range(N_FRAMES):
            ns = T0_NS + i * 50_000_000
            px = np.full((4, 6, 3), i * 10, np.uint8)
            frames.append(px)
            msg = image_cls(
                header=header_cls(stamp=time_cls(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera_optical"),
                height=4,
                width=6,
                encoding="rgb8",
                is_bigendian=0,
                step=18,
                data=px.reshape(-1),
            )
            w.write(conn, ns, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return frames


class Relay(Node):
    """Stands in for a perception node: one Detection2DArray per image, same stamp."""

    def __init__(self, **kw):
        super().__init__("lkd_test_relay", **kw)
        self.images: list[np.ndarray] = []
        self.pub = self.create_publisher(Detection2DArray, "/lkd/detections", 10)
        self.create_subscription(Image, "/camera/image_raw", self.on_image, sensor_qos("reliable", 10))

    def on_image(self, msg: Image) -> None:
        self.images.append(image_to_numpy(msg))
        self.pub.publish(
            messages.detection2d_array(
                ros_message,
                msg.header.stamp,
                msg.header.frame_id,
                np.zeros((1, 2)),
                np.ones((1, 2)),
                None,
                np.array([0.5]),
                ["car"],
            )
        )


@pytest.mark.slow
def test_replay_publishes_and_records(tmp_path, ros_ctx, spin_until):
    from rosbags.highlevel import AnyReader

    bag = tmp_path / "in.mcap"
    frames = _write_bag(bag)
    relay = Relay(context=ros_ctx, parameter_overrides=[Parameter("use_sim_time", value=True)])
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(relay)
    stop = threading.Event()
    t = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
    t.start()
    try:
        out = tmp_path / "out.mcap"
        result = run_replay(bag, rate=1.0, record=out, drain_s=1.5, wait_for=["/camera/image_raw"])
    finally:
        stop.set()
        t.join()
        ex.shutdown()
        relay.destroy_node()
    assert result.published == {"/camera/image_raw": N_FRAMES}
    late = result.publish_late_ms
    assert set(late) == {"p50", "p95", "max"} and 0.0 <= late["p50"] <= late["p95"] <= late["max"]
    assert len(relay.images) == N_FRAMES  # the player waited for the relay to subscribe
    for got in relay.images:
        assert any(np.array_equal(got, f) for f in frames)
    with AnyReader([out]) as reader:
        conns = [c for c in reader.connections if c.topic == "/lkd/detections"]
        msgs = [(ts, reader.deserialize(raw, c.msgtype)) for c, ts, raw in reader.messages(connections=conns)]
    assert len(msgs) == len(relay.images) and result.recorded["/lkd/detections"] == len(msgs)
    for log_ns, m in msgs:
        stamp_ns = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        assert T0_NS <= stamp_ns <= T0_NS + N_FRAMES * 50_000_000
        assert log_ns >= stamp_ns  # recorder runs on the replayed /clock


def test_replay_missing_topic_is_a_clear_error(tmp_path):
    bag = tmp_path / "in.mcap"
    _write_bag(bag)
    with pytest.raises(InputError, match=r"not in .* it has \['/camera/image_raw'\]"):
        run_replay(bag, topics=["/lidar/points"])


def test_player_lateness_statistics_and_warning():
    progress = ReplayProgress()
    assert progress.lateness() == {}
    for ms in range(1, 101):  # 1..100 ms
        progress.late_ms.append(float(ms))
    late = progress.lateness()
    assert late["p50"] == pytest.approx(50.5) and late["p95"] == pytest.approx(95.05) and late["max"] == 100.0

    def result(late_ms):
        return ReplayResult(
            bag="b",
            record=None,
            published={},
            publish_failed={},
            recorded={},
            bag_duration_s=1.0,
            wall_s=1.0,
            rate=1.0,
            publish_late_ms=late_ms,
        )

    assert lateness_warning(result({})) is None
    assert lateness_warning(result({"p50": 1.0, "p95": LATE_WARN_MS, "max": 400.0})) is None
    warning = lateness_warning(result(late))
    assert warning is not None and "p95 95 ms" in warning and "--rate" in warning


def test_player_window_plays_only_start_to_start_plus_duration(tmp_path, ros_ctx):
    from lkd_perception.nodes.player import BagPlayer

    bag = tmp_path / "in.mcap"
    _write_bag(bag)  # frames every 50 ms
    player = BagPlayer(bag, rate=10.0, start_s=0.1, duration_s=0.1, context=ros_ctx)
    try:
        assert player.progress.bag_start_ns == T0_NS + 100_000_000
        assert player.play().per_topic == {"/camera/image_raw": 3}  # 100, 150 and 200 ms
        with pytest.raises(InputError, match="past the end"):
            BagPlayer(bag, start_s=5.0, context=ros_ctx)
    finally:
        player.destroy_node()


def test_replay_waits_for_one_subscriber_per_node_reading_a_topic_and_each_nodes_results():
    """Two nodes read the camera: the bag must wait for both (one released it early and the other
    lost its first frames); topics the bag or the recording lacks are not waited for."""
    specs = list(GRAPH)
    bag_topics = ["/camera/image_raw", "/lidar/points", "/tf_static"]  # a bag without IMU
    subscribers, publishers = connections_needed(specs, bag_topics, ["/lkd/detections", "/lkd/odometry", "/tf"],
                                                 wait_for=["/tf_static"])
    assert subscribers == {"/camera/image_raw": 2, "/lidar/points": 1, "/tf_static": 1}
    assert publishers == {"/lkd/detections": 1, "/lkd/odometry": 1}
    only_lines = [s for s in GRAPH if s.name == "line_node"]
    assert connections_needed(only_lines, bag_topics, RECORDED) == (
        {"/camera/image_raw": 1}, {"/lkd/lines": 1, "/lkd/lines/markers": 1})


def test_recorder_refuses_a_type_it_cannot_record_and_an_existing_output(tmp_path, ros_ctx):
    from lkd_perception.nodes.recorder import BagRecorder

    with pytest.raises(InputError, match="foo_msgs/msg/Bar"):
        BagRecorder(tmp_path / "rec", topics={"/x": "foo_msgs/msg/Bar"}, context=ros_ctx)
    assert not (tmp_path / "rec").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="exists"):
        BagRecorder(tmp_path / "taken", context=ros_ctx)
