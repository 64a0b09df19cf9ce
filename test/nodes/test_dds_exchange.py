"""Two real rclpy nodes exchange an Image, a PointCloud2 and a Detection2DArray over FastDDS."""

from __future__ import annotations

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.serialization import serialize_message
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import Image, PointCloud2
from vision_msgs.msg import Detection2DArray

from lkd_perception.io import messages
from lkd_perception.nodes.conversions import (
    Cloud,
    cloud_to_pointcloud2,
    image_to_numpy,
    ns_to_stamp,
    numpy_to_image,
    pointcloud2_to_cloud,
    ros_message,
)
from lkd_perception.nodes.qos import output_qos


def test_messages_arrive_byte_exact(ros_ctx, spin_until):
    assert get_rmw_implementation_identifier() == "rmw_fastrtps_cpp"
    rng = np.random.default_rng(7)
    stamp = ns_to_stamp(1_234_567_890_123)
    image = numpy_to_image(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "rgb8", stamp, "camera_optical")
    cloud = cloud_to_pointcloud2(
        Cloud(rng.normal(size=(500, 3)).astype(np.float32), rng.random(500).astype(np.float32),
              np.linspace(0, 0.1, 500, dtype=np.float32)), stamp, "lidar")
    dets = messages.detection2d_array(ros_message, stamp, "camera_optical", np.array([[5.0, 6.0], [7.5, 8.5]]),
                             np.array([[2.0, 3.0], [4.0, 1.0]]), np.array([0.0, 1.2]), np.array([0.9, 0.4]),
                             ["car", "line"])
    sent = {"image": image, "cloud": cloud, "dets": dets}
    types = {"image": Image, "cloud": PointCloud2, "dets": Detection2DArray}

    talker = Node("lkd_test_talker", context=ros_ctx)
    listener = Node("lkd_test_listener", context=ros_ctx)
    received: dict[str, object] = {}
    pubs = {k: talker.create_publisher(types[k], f"lkd_test/{k}", output_qos()) for k in sent}
    for k in sent:
        listener.create_subscription(types[k], f"lkd_test/{k}", lambda m, k=k: received.setdefault(k, m), output_qos())
    ex = SingleThreadedExecutor(context=ros_ctx)
    ex.add_node(talker)
    ex.add_node(listener)
    try:
        assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 15.0)
        for k, p in pubs.items():
            p.publish(sent[k])
        assert spin_until(ex, lambda: len(received) == len(sent), 15.0), f"received only {sorted(received)}"
    finally:
        ex.shutdown()
        talker.destroy_node()
        listener.destroy_node()

    for k in sent:
        assert serialize_message(received[k]) == serialize_message(sent[k]), k
    assert np.array_equal(image_to_numpy(received["image"]), image_to_numpy(image))
    assert np.array_equal(pointcloud2_to_cloud(received["cloud"]).xyz, pointcloud2_to_cloud(cloud).xyz)
    assert received["dets"].detections[1].results[0].hypothesis.class_id == "line"
