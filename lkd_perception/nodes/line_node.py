"""line_node: camera images in, line segments out (LSDNet).

Subscribes ``camera/image_raw`` (sensor QoS; ``image_transport: compressed`` takes JPEG/PNG on
``camera/image_raw/compressed``) and publishes

* ``lkd/lines`` (``vision_msgs/Detection2DArray``): one oriented box per segment, the encoding of
  :mod:`lkd_perception.io.line_encoding` (midpoint, direction theta, size_x = length,
  size_y = width, class_id ``"line"``, score = the confidence in [0, 1) of ``confidence_length``),
  from which endpoints are exact;
* ``lkd/lines/markers`` (``visualization_msgs/ImageMarker``, LINE_LIST, one colour per point);
* ``lkd/lines/debug_image`` (rgb8, segments drawn) when ``publish_debug_image`` is on.

Grouping settings (thresholds, tolerances) can be changed at run time; model, input size,
providers and threads only at start-up. A managed (lifecycle) node: configure loads the model,
activate subscribes. A model that cannot be loaded does not stop the node: configure fails, it
logs the error, reports ERROR on /diagnostics and stays up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray
from visualization_msgs.msg import ImageMarker

from lkd_perception.io import messages, topics
from lkd_perception.lines.config import LineConfig
from lkd_perception.lines.draw import draw_segments
from lkd_perception.lines.runtime import LineDetector
from lkd_perception.nodes.base import LkdNode, run_node
from lkd_perception.nodes.conversions import image_to_rgb, numpy_to_image, ros_message


class LineNode(LkdNode):
    """Runs the LSDNet line detector on every image it receives."""

    def __init__(self, node_name: str = "line_node", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self.cfg = self.declare_config(LineConfig, on_change=self._on_config)
        self.detector: LineDetector | None = None

    def configure(self) -> None:
        """Load the model and create the outputs (see the module docstring)."""
        self.detector = LineDetector(self.cfg)
        self.get_logger().info(
            f"line model {self.detector.model_path}: input {self.detector.input_size[0]}x{self.detector.input_size[1]} "
            f"({self.detector.layout.value}), "
            f"providers {list(self.detector.providers)}"
        )
        self.pub = self.create_publisher(Detection2DArray, topics.LINES.name, self.output_qos())
        self.marker_pub = self.create_publisher(ImageMarker, topics.LINE_MARKERS.name, self.output_qos())
        self.debug_pub = self.create_publisher(Image, topics.LINES_DEBUG_IMAGE.name, self.output_qos(depth=1))
        self.subscribe_camera(self.cfg.image_transport, self.guarded("image", self._on_image))

    def release(self) -> None:
        self.detector = None

    def _on_config(self, cfg: LineConfig) -> None:
        self.cfg = cfg
        if self.detector is not None:
            self.detector.config = replace(
                cfg, model_path=self.detector.config.model_path, provider=self.detector.config.provider
            )

    def _on_image(self, msg: Image) -> None:
        rgb = image_to_rgb(msg)
        assert self.detector is not None
        found = self.detector.detect(rgb)
        stamp, frame_id = msg.header.stamp, msg.header.frame_id
        self.pub.publish(messages.lines_msg(ros_message, stamp, frame_id, found))
        self.marker_pub.publish(messages.line_marker(ros_message, stamp, frame_id, found))
        if self.cfg.publish_debug_image:
            self.debug_pub.publish(numpy_to_image(draw_segments(rgb, found.segments), "rgb8", msg.header.stamp,
                                                  msg.header.frame_id))


def main(args: Sequence[str] | None = None) -> None:
    run_node(LineNode, args)
