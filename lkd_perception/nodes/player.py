"""``BagPlayer``: a bag's messages published as they were recorded, with ``/clock``.

Raw CDR bytes (nothing is re-encoded, so what the nodes receive is byte-for-byte what was
recorded), the recorded QoS, the recorded timing scaled by ``rate``, and ``/clock`` so nodes
running on sim time see the bag's time.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from lkd_perception.common.errors import InputError
from lkd_perception.nodes.conversions import message_class, ns_to_stamp
from lkd_perception.nodes.qos import output_qos

log = logging.getLogger(__name__)


def qos_from_bag(profiles: Sequence[object]) -> QoSProfile:
    """The rclpy QoS of a recorded topic (reliable, depth 10 when the bag recorded none).

    Durability and depth are the recorded ones; reliability is always RELIABLE, because a
    reliable writer serves best-effort and reliable readers alike, whereas a best-effort writer
    is incompatible with a reliable reader (nodes configured `sensor_qos_reliability: reliable`
    would then receive nothing).
    """
    if not profiles:
        return output_qos(10)
    q = profiles[0]

    def value(v) -> int:  # rosbags enums are plain Enums; keep ints as they are
        return int(getattr(v, "value", v))

    reliability = ReliabilityPolicy.RELIABLE
    durability = DurabilityPolicy.TRANSIENT_LOCAL if value(q.durability) == 1 else DurabilityPolicy.VOLATILE
    depth = int(q.depth) if int(q.depth) > 0 else 10
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=durability)


@dataclass
class ReplayProgress:
    """Counts of what a player has published; read from another thread for a progress bar."""

    total: int = 0
    published: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)  # the middleware refused the sample
    bag_start_ns: int = 0
    bag_end_ns: int = 0
    done: bool = False
    # how late each message left the player against its scaled recorded time (ms): a player
    # that falls behind publishes in bursts, and depth-1 subscribers then drop frames, so a
    # replay's processed fractions only mean something while this stays small
    late_ms: array = field(default_factory=lambda: array("f"))

    def lateness(self) -> dict[str, float]:
        """p50 / p95 / max of the publish lateness (ms); empty before the first message."""
        if not self.late_ms:
            return {}
        a = np.frombuffer(self.late_ms, dtype=np.float32)
        return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
                "max": round(float(a.max()), 2)}


class BagPlayer(Node):
    """Publishes a bag's topics with ``/clock``; call :meth:`play` (blocking) from a thread."""

    def __init__(
        self,
        bag: str | Path,
        topics: Iterable[str] | None = None,
        rate: float = 1.0,
        start_s: float = 0.0,
        duration_s: float | None = None,
        **kw,
    ) -> None:
        from lkd_perception.io.bag import open_bag

        if rate <= 0:
            raise InputError(f"rate must be positive, got {rate}")
        # The bag is opened before the node exists: an unreadable bag is one clear error, with no
        # half-built node left for the context's shutdown to destroy.
        self._reader = open_bag(bag)
        super().__init__("lkd_replay", **kw)
        self.bag = Path(bag)
        self.rate = rate
        available = {c.topic: c for c in self._reader.connections}
        wanted = list(topics) if topics else sorted(available)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise InputError(f"topic(s) {missing} not in {self.bag}; it has {sorted(available)}")
        self._connections = [available[t] for t in wanted]
        self._topic_pubs = {}
        for c in self._connections:
            profiles = getattr(c.ext, "offered_qos_profiles", ()) or ()
            self._topic_pubs[c.topic] = self.create_publisher(message_class(c.msgtype), c.topic, qos_from_bag(profiles))
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        if start_s < 0 or (duration_s is not None and duration_s <= 0):
            raise InputError(f"start must be >= 0 and duration > 0, got {start_s} and {duration_s}")
        begin = self._reader.start_time + int(start_s * 1e9)
        end = self._reader.end_time if duration_s is None else min(self._reader.end_time, begin + int(duration_s * 1e9))
        if begin > self._reader.end_time:
            length_s = (self._reader.end_time - self._reader.start_time) * 1e-9
            raise InputError(f"start {start_s} s is past the end of the bag ({length_s:.1f} s)")
        self._window = (begin, end + 1)  # rosbags' stop is exclusive
        share = (end - begin) / max(1, self._reader.end_time - self._reader.start_time)
        self.progress = ReplayProgress(
            total=int(round(sum(c.msgcount for c in self._connections) * min(1.0, share))),  # exact for the whole bag
            bag_start_ns=begin,
            bag_end_ns=end,
        )
        self._stop_event = threading.Event()

    @property
    def topics(self) -> list[str]:
        return [c.topic for c in self._connections]

    def subscriber_counts(self) -> dict[str, int]:
        return {t: p.get_subscription_count() for t, p in self._topic_pubs.items()}

    def stop(self) -> None:
        self._stop_event.set()

    def play(self) -> ReplayProgress:
        """Publish every message at its recorded time (scaled by rate); returns the counts."""
        begin, stop = self._window
        self._publish_latched_before(begin)
        t0_wall = time.perf_counter()
        t0_bag = None
        for conn, stamp_ns, raw in self._reader.messages(connections=self._connections, start=begin, stop=stop):
            if self._stop_event.is_set():
                break
            if t0_bag is None:
                t0_bag = stamp_ns
            due = t0_wall + (stamp_ns - t0_bag) * 1e-9 / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                self._stop_event.wait(delay)
            self.progress.late_ms.append(max(0.0, (time.perf_counter() - due) * 1e3))
            self._clock_pub.publish(Clock(clock=ns_to_stamp(stamp_ns)))
            try:
                self._topic_pubs[conn.topic].publish(bytes(raw))
            except RCLError as exc:
                # e.g. FastDDS gives up on a reliable sample while readers lag: drop it, count it, go on
                self.progress.failed[conn.topic] = self.progress.failed.get(conn.topic, 0) + 1
                log.warning("could not publish on %s: %s", conn.topic, exc)
                continue
            self.progress.published += 1
            self.progress.per_topic[conn.topic] = self.progress.per_topic.get(conn.topic, 0) + 1
        self.progress.done = True
        return self.progress

    def _publish_latched_before(self, begin_ns: int) -> None:
        """Playing from --start: the latest message before it on each latched (transient-local)
        topic, e.g. /tf_static, which late joiners would otherwise never get."""
        if begin_ns <= self._reader.start_time:
            return
        latched = [
            c
            for c in self._connections
            if self._topic_pubs[c.topic].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        ]
        last: dict[str, bytes] = {}
        if latched:
            for conn, _, raw in self._reader.messages(connections=latched, stop=begin_ns):
                last[conn.topic] = bytes(raw)
        for topic, raw in last.items():
            self._topic_pubs[topic].publish(raw)

    def publish_clock(self, stamp_ns: int) -> None:
        """Keep sim time moving after the last message so nodes can finish and report."""
        self._clock_pub.publish(Clock(clock=ns_to_stamp(stamp_ns)))

    def destroy_node(self) -> None:
        self._reader.close()
        super().destroy_node()
