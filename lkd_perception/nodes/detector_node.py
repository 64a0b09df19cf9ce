"""detector_node: camera images in, ``vision_msgs/Detection2DArray`` out (LeYOLO or a DETR-family model).

Subscribes ``camera/image_raw`` (sensor QoS; ``image_transport: compressed`` takes JPEG/PNG on
``camera/image_raw/compressed``), publishes ``lkd/detections`` and, when
``publish_debug_image`` is on, ``lkd/detections/debug_image`` (rgb8 with boxes drawn by
:func:`lkd_perception.detection.draw.draw_detections`, the same picture as ``lkd detect --draw``). Each
detection carries the class *name* as ``results[0].hypothesis.class_id``: from the model's
metadata, or the COCO names for a published DEIMv2 export without any (see ``detection.runtime``).

A managed (lifecycle) node: configure loads the model, activate subscribes (see
:class:`~lkd_perception.nodes.base.LkdNode`). A model that cannot be loaded does not stop the node:
configure fails, the node logs the error, keeps reporting ERROR on /diagnostics, and stays
discoverable so an operator sees why there are no detections.
"""

from __future__ import annotations

from typing import Sequence

from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from lkd_perception.detection.config import DetectorConfig
from lkd_perception.detection.draw import draw_detections
from lkd_perception.detection.runtime import Detector
from lkd_perception.io import messages, topics
from lkd_perception.nodes.base import LkdNode, run_node
from lkd_perception.nodes.conversions import image_to_rgb, numpy_to_image, ros_message


class DetectorNode(LkdNode):
    """Runs one ONNX detector on every image it receives."""

    def __init__(self, node_name: str = "detector_node", **node_kwargs) -> None:
        super().__init__(node_name, **node_kwargs)
        self.cfg = self.declare_config(DetectorConfig, on_change=self._on_config)
        self.detector: Detector | None = None

    def configure(self) -> None:
        """Load the model (with TensorRT: build the engine, minutes on a Jetson) and create the outputs."""
        self.detector = Detector(self.cfg)
        info = self.detector.info
        self.get_logger().info(
            f"{info.family.value} model {info.path}: input {info.input_size}, "
            f"classes {list(self.detector.class_names)}, providers {list(self.detector.providers)}"
        )
        self.pub = self.create_publisher(Detection2DArray, topics.DETECTIONS.name, self.output_qos())
        self.debug_pub = self.create_publisher(Image, topics.DETECTIONS_DEBUG_IMAGE.name, self.output_qos(depth=1))
        self.subscribe_camera(self.cfg.image_transport, self.guarded("image", self._on_image))

    def release(self) -> None:
        self.detector = None

    def _on_config(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        if self.detector is not None:
            self.detector.config = cfg

    def _on_image(self, msg: Image) -> None:
        rgb = image_to_rgb(msg)
        det = self.detector(rgb)
        self.pub.publish(messages.detections_msg(ros_message, msg.header.stamp, msg.header.frame_id, det))
        if self.cfg.publish_debug_image:
            self.debug_pub.publish(numpy_to_image(draw_detections(rgb, det), "rgb8", msg.header.stamp,
                                                  msg.header.frame_id))


def main(args: Sequence[str] | None = None) -> None:
    run_node(DetectorNode, args)
