"""``BagRecorder``: what the nodes publish, written to an mcap recording.

Each message is stamped with the recorder's clock at arrival (sim time during a replay), so
arrival minus header stamp is the node's end-to-end latency in bag time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from rclpy.node import Node

from lkd_perception.common.errors import InputError
from lkd_perception.io.topics import RECORDED
from lkd_perception.io.typestore import typestore_for
from lkd_perception.nodes.conversions import message_class
from lkd_perception.nodes.qos import output_qos


class BagRecorder(Node):
    """Records topics to an mcap file; stamps are the recorder's clock (sim time in replays)."""

    def __init__(self, out: str | Path, topics: dict[str, str] | None = None, **kw) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        # Refused before the node exists (an existing output, a type that cannot be recorded or
        # subscribed to): one clear error, no half-built node left for the context to destroy.
        out = Path(out)
        if out.exists():
            raise InputError(f"{out} exists; choose a new output path")
        topics = dict(topics or RECORDED)
        store = typestore_for(topics.values())
        classes = {topic: message_class(msgtype) for topic, msgtype in topics.items()}
        super().__init__("lkd_recorder", **kw)
        self.out, self.topics = out, topics
        self._writer = Writer(self.out, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self._conns = {}
        for topic, msgtype in self.topics.items():
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
            self.create_subscription(classes[topic], topic, self._make_cb(topic), output_qos(100), raw=True)

    def _make_cb(self, topic: str) -> Callable[[bytes], None]:
        def cb(raw: bytes) -> None:
            stamp = self.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is not None:
                    self._writer.write(self._conns[topic], stamp, raw)
                    self.counts[topic] += 1

        return cb

    def publisher_counts(self) -> dict[str, int]:
        """Publishers matched on each recorded topic (the replay waits for the nodes' outputs)."""
        return {t: self.count_publishers(t) for t in self.topics}

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()
