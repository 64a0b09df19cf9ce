"""Bag replay and recording over a real ROS graph (no ``ros2 bag`` needed).

``BagPlayer`` publishes a bag's messages as they were recorded: raw CDR bytes (nothing is
re-encoded, so what the nodes receive is byte-for-byte what was recorded), the recorded QoS,
the recorded timing scaled by ``rate``, and ``/clock`` so nodes running on sim time see the
bag's time. ``BagRecorder`` writes what the nodes publish to an mcap file, stamping each message
with the recorder's clock at arrival (sim time during a replay), so arrival minus header stamp is
the node's end-to-end latency in bag time.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from lkd_perception.common.errors import InputError
from lkd_perception.nodes.conversions import ns_to_stamp
from lkd_perception.nodes.dds import use_dds_profile
from lkd_perception.nodes.qos import output_qos

log = logging.getLogger(__name__)

# What the product's nodes publish; the recorder subscribes to these by default.
OUTPUT_TOPICS: dict[str, str] = {
    "/lkd/detections": "vision_msgs/msg/Detection2DArray",
    "/lkd/lines": "vision_msgs/msg/Detection2DArray",
    "/lkd/lines/markers": "visualization_msgs/msg/ImageMarker",
    "/lkd/odometry": "nav_msgs/msg/Odometry",
    "/lkd/path": "nav_msgs/msg/Path",
    "/lkd/loop_closures": "visualization_msgs/msg/MarkerArray",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def message_class(msgtype: str) -> type:
    """The rclpy class of ``pkg/msg/Name`` (raises InputError when the package is missing)."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"message type {msgtype} is not available in this ROS environment") from exc


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


def _typestore_with(msgtypes: Iterable[str]):
    """A rosbags typestore that knows ``msgtypes``, adding missing ones from their .msg files."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    pending = [t for t in msgtypes if t not in store.fielddefs]
    added: dict = {}
    seen: set[str] = set()
    while pending:
        t = pending.pop()
        if t in seen or t in store.fielddefs:
            continue
        seen.add(t)
        pkg, _, name = t.split("/")
        path = Path(get_package_share_directory(pkg)) / "msg" / f"{name}.msg"
        types = get_types_from_msg(path.read_text(), t)
        added.update(types)
        for _, fields in types.values():
            for _, desc in fields:
                # nested message references look like (Nodetype.NAME, 'pkg/msg/Type') possibly inside sequences
                for ref in _refs(desc):
                    if ref not in store.fielddefs:
                        pending.append(ref)
    if added:
        store.register(added)
    return store


def _refs(desc) -> list[str]:
    out = []
    if isinstance(desc, tuple):
        for d in desc:
            if isinstance(d, str) and d.count("/") == 2:
                out.append(d)
            else:
                out.extend(_refs(d))
    return out


class BagRecorder(Node):
    """Records topics to an mcap file; stamps are the recorder's clock (sim time in replays)."""

    def __init__(self, out: str | Path, topics: dict[str, str] | None = None, **kw) -> None:
        super().__init__("lkd_recorder", **kw)
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.out = Path(out)
        if self.out.exists():
            raise InputError(f"{self.out} exists; choose a new output path")
        self.topics = dict(topics or OUTPUT_TOPICS)
        store = _typestore_with(self.topics.values())
        self._writer = Writer(self.out, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self._conns = {}
        for topic, msgtype in self.topics.items():
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
            self.create_subscription(message_class(msgtype), topic, self._make_cb(topic), output_qos(100), raw=True)

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


@dataclass(frozen=True)
class ReplayResult:
    """What a replay session did."""

    bag: str
    record: str | None
    published: dict[str, int]
    publish_failed: dict[str, int]
    recorded: dict[str, int]
    bag_duration_s: float
    wall_s: float
    rate: float
    publish_late_ms: dict[str, float] = field(default_factory=dict)  # see ReplayProgress.late_ms


LATE_WARN_MS = 50.0  # half a 10 Hz camera period


def lateness_warning(result: ReplayResult) -> str | None:
    """A warning when the player itself fell behind, so the nodes' processed fractions are suspect."""
    p95 = result.publish_late_ms.get("p95", 0.0)
    if p95 <= LATE_WARN_MS:
        return None
    return (
        f"the player fell behind its schedule (publish lateness p95 {p95:.0f} ms, max "
        f"{result.publish_late_ms['max']:.0f} ms): messages left in bursts and depth-1 subscribers "
        f"may have dropped some; replay at a lower --rate"
    )


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the replaying process dies (no orphans)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class NodeProcesses:
    """The vehicle's nodes, one process each (as on the vehicle: both cores, no shared GIL), on
    sim time; they can be killed and restarted one by one, and their memory read."""

    def __init__(
        self, capabilities: str = "all", config: str | Path | None = None, overrides: dict[str, object] | None = None
    ) -> None:
        from lkd_perception.nodes.graph import select

        self.specs = {s.name: s for s in select(capabilities)}
        self.config = config
        self.overrides = dict(overrides or {})
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str | None = None) -> None:
        """Start one node (or all of them)."""
        for spec in [self.specs[name]] if name else self.specs.values():
            cmd = [
                sys.executable,
                "-m",
                "lkd_perception.cli",
                "launch",
                "--use-sim-time",
                "--capabilities",
                spec.capability,
            ]
            if self.config:
                cmd.insert(4, str(self.config))
            for k, v in self.overrides.items():
                cmd += ["--set", f"{k}={v}"]
            self.procs[spec.name] = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)

    def kill(self, name: str) -> None:
        """Kill a node the hard way (SIGKILL), as a crash would."""
        p = self.procs[name]
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def memory_mb(self, name: str) -> dict[str, float] | None:
        """A node process's resident memory, MiB: ``rss`` (all), ``anon`` (heap, stacks),
        ``file`` (mapped files and code) and ``shmem`` (shared memory it touched, mostly the
        DDS transport's segments, whose size the Fast DDS profile bounds). None when not running."""
        if not self.alive(name):
            return None
        keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
        out: dict[str, float] = {}
        try:
            with open(f"/proc/{self.procs[name].pid}/status") as f:
                for line in f:
                    field_name, _, value = line.partition(":")
                    if field_name in keys:
                        out[keys[field_name]] = int(value.split()[0]) / 1024.0
        except OSError:
            return None
        return out if "rss" in out else None

    def cpu_s(self, name: str) -> float | None:
        """CPU time (user + system, all threads) a node's process has used so far, seconds."""
        if not self.alive(name):
            return None
        try:
            with open(f"/proc/{self.procs[name].pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)"
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def check_started(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise InputError(f"node process(es) exited during start-up: {dead}")

    def stop(self) -> None:
        """Stop every node: SIGINT (clean shutdown), SIGKILL after 15 s."""
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def run_replay(
    bag: str | Path,
    rate: float = 1.0,
    record: str | Path | None = None,
    launch_config: str | Path | None = None,
    launch_nodes: bool = False,
    capabilities: str = "all",
    topics: Sequence[str] | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    startup_timeout_s: float = 180.0,
    drain_s: float = 3.0,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    nodes: NodeProcesses | None = None,
    overrides: dict[str, object] | None = None,
    wait_for: Sequence[str] = (),
) -> ReplayResult:
    """Replay a bag; optionally start the vehicle's nodes (own process, sim time) and record.

    Each node runs in its own process, so everything crosses DDS exactly as on the vehicle.
    The player waits until every node input that the bag carries has a subscriber, so no frame
    is lost to start-up (loading models takes seconds). Pass ``nodes`` to control the node
    processes yourself (the soak benchmark kills and restarts them from ``on_progress``), and
    ``wait_for`` to hold the first message until those bag topics have a subscriber.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from lkd_perception.io.bag import bag_info, image_topic_in

    info = bag_info(bag)  # an unreadable bag is refused here, before any node process starts
    if image_topic_in(info, "/camera/image_raw").endswith("/compressed"):
        # a recording of compressed frames only: the camera nodes read image_transport's topic
        overrides = {"image_transport": "compressed", **(overrides or {})}
    use_dds_profile()  # before the first participant; the node processes inherit it
    ctx = Context()
    rclpy.init(context=ctx)
    if nodes is None and launch_nodes:
        nodes = NodeProcesses(capabilities, launch_config, overrides)
    player = recorder = None
    # single-threaded: rclpy's MultiThreadedExecutor busy-polls while a callback runs and took
    # the GIL from the player, which then published late and in bursts
    executor = SingleThreadedExecutor(context=ctx)
    spin_thread = None
    t_start = time.perf_counter()
    try:
        player = BagPlayer(bag, topics=topics, rate=rate, start_s=start_s, duration_s=duration_s, context=ctx)
        executor.add_node(player)
        if record is not None:
            recorder = BagRecorder(record, context=ctx, parameter_overrides=[Parameter("use_sim_time", value=True)])
            executor.add_node(recorder)
        spin_thread = threading.Thread(target=executor.spin, daemon=True)
        spin_thread.start()

        # bag topic -> subscribers it must have; recorded topic -> publishers the recorder must see.
        # Several nodes read the camera: waiting for "any subscriber" let the first node's match
        # release the bag while the second was still being discovered, and it lost its first frames.
        needed: dict[str, int] = {t: 1 for t in wait_for}
        outputs: dict[str, int] = {}
        if nodes is not None:
            nodes.start()
            for spec in nodes.specs.values():
                for t in spec.inputs:
                    if "/" + t in player.topics:
                        needed["/" + t] = needed.get("/" + t, 0) + 1
                for t in spec.outputs if recorder is not None else ():
                    if "/" + t in recorder.topics:
                        outputs["/" + t] = outputs.get("/" + t, 0) + 1
        if needed or outputs:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                subs, pubs = player.subscriber_counts(), recorder.publisher_counts() if recorder else {}
                missing = [f"{t} ({subs.get(t, 0)}/{n} subscribers)" for t, n in needed.items() if subs.get(t, 0) < n]
                missing += [f"{t} ({pubs.get(t, 0)}/{n} publishers)" for t, n in outputs.items() if pubs.get(t, 0) < n]
                if not missing:
                    break
                if nodes is not None:
                    nodes.check_started()
                if time.monotonic() > deadline:
                    raise InputError(f"not connected within {startup_timeout_s:.0f} s: {', '.join(missing)}")
                time.sleep(0.2)
            time.sleep(1.0)  # let discovery settle in both directions before the first message

        progress = player.progress
        done = threading.Event()

        def report() -> None:
            while not done.wait(0.25):
                if on_progress:
                    on_progress(progress)

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        player.play()
        done.set()
        reporter.join()
        if on_progress:
            on_progress(progress)

        # Drain: keep sim time moving so the nodes finish their last inputs and report health;
        # stop once no result (diagnostics aside, they never stop) arrived for drain_s.
        if recorder is not None:
            t_end = progress.bag_end_ns
            last_total, quiet_since = -1, time.monotonic()
            give_up = time.monotonic() + max(30.0, 10 * drain_s)
            while time.monotonic() - quiet_since < drain_s and time.monotonic() < give_up:
                t_end += 100_000_000
                player.publish_clock(t_end)
                time.sleep(0.1)
                total = sum(n for t, n in recorder.counts.items() if t != "/diagnostics")
                if total != last_total:
                    last_total, quiet_since = total, time.monotonic()
    finally:
        if nodes is not None:
            nodes.stop()
        if recorder is not None:
            recorder.close()
        executor.shutdown(timeout_sec=10.0)
        if spin_thread is not None:
            spin_thread.join(timeout=10.0)
        # Destroying a node while the executor thread may still hold its handles in a wait set
        # crashed librcl once at the end of a 10-minute soak; if that thread has not stopped,
        # leave the handles to process exit instead.
        if spin_thread is None or not spin_thread.is_alive():
            for n in (player, recorder):
                if n is not None:
                    executor.remove_node(n)
                    n.destroy_node()
        rclpy.try_shutdown(context=ctx)
    p = player.progress
    return ReplayResult(
        bag=str(bag),
        record=str(record) if record else None,
        published=dict(p.per_topic),
        publish_failed=dict(p.failed),
        recorded=dict(recorder.counts) if recorder else {},
        bag_duration_s=(p.bag_end_ns - p.bag_start_ns) * 1e-9,
        wall_s=time.perf_counter() - t_start,
        rate=rate,
        publish_late_ms=p.lateness(),
    )
