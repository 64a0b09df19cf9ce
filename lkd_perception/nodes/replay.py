"""``lkd replay``: a bag through the vehicle's nodes over a real ROS graph (no ``ros2 bag`` needed).

:func:`run_replay` wires three parts and reads as its steps: the node processes
(:class:`~lkd_perception.nodes.processes.NodeProcesses`), a
:class:`~lkd_perception.nodes.player.BagPlayer` and a
:class:`~lkd_perception.nodes.recorder.BagRecorder`; it waits until they are connected, plays
the bag, and drains the nodes' last results.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from lkd_perception.common.errors import InputError
from lkd_perception.io.topics import DIAGNOSTICS, IMAGE
from lkd_perception.nodes.dds import use_dds_profile
from lkd_perception.nodes.graph import NodeSpec
from lkd_perception.nodes.player import BagPlayer, ReplayProgress
from lkd_perception.nodes.processes import NodeProcesses
from lkd_perception.nodes.recorder import BagRecorder


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


def connections_needed(
    specs: Iterable[NodeSpec], bag_topics: Iterable[str], recorded_topics: Iterable[str], wait_for: Sequence[str] = ()
) -> tuple[dict[str, int], dict[str, int]]:
    """(bag topic -> subscribers it must have, recorded topic -> publishers the recorder must see).

    One per node that reads or publishes it: several nodes read the camera, and waiting for
    "any subscriber" let the first node's match release the bag while the second was still
    being discovered, which then lost its first frames. ``wait_for`` adds one subscriber each.
    """
    bag, recorded = set(bag_topics), set(recorded_topics)
    subscribers: dict[str, int] = {t: 1 for t in wait_for}
    publishers: dict[str, int] = {}
    for spec in specs:
        for t in spec.topics.inputs:
            if t.path in bag:
                subscribers[t.path] = subscribers.get(t.path, 0) + 1
        for t in spec.topics.results:
            if t.path in recorded:
                publishers[t.path] = publishers.get(t.path, 0) + 1
    return subscribers, publishers


def wait_until_connected(
    player: BagPlayer,
    recorder: BagRecorder | None,
    nodes: NodeProcesses | None,
    subscribers: dict[str, int],
    publishers: dict[str, int],
    timeout_s: float,
) -> None:
    """Hold the first message until the graph is connected in both directions (loading models
    takes seconds); a node process that dies meanwhile, or the timeout, is an InputError."""
    if not subscribers and not publishers:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        subs, pubs = player.subscriber_counts(), recorder.publisher_counts() if recorder else {}
        missing = [f"{t} ({subs.get(t, 0)}/{n} subscribers)" for t, n in subscribers.items() if subs.get(t, 0) < n]
        missing += [f"{t} ({pubs.get(t, 0)}/{n} publishers)" for t, n in publishers.items() if pubs.get(t, 0) < n]
        if not missing:
            break
        if nodes is not None:
            nodes.check_started()
        if time.monotonic() > deadline:
            raise InputError(f"not connected within {timeout_s:.0f} s: {', '.join(missing)}")
        time.sleep(0.2)
    time.sleep(1.0)  # let discovery settle in both directions before the first message


def play_reporting(player: BagPlayer, on_progress: Callable[[ReplayProgress], None] | None) -> None:
    """Play the bag (blocking), calling ``on_progress`` every 0.25 s and once at the end."""
    done = threading.Event()

    def report() -> None:
        while not done.wait(0.25):
            if on_progress:
                on_progress(player.progress)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    player.play()
    done.set()
    reporter.join()
    if on_progress:
        on_progress(player.progress)


def drain(player: BagPlayer, recorder: BagRecorder, drain_s: float) -> None:
    """Keep sim time moving so the nodes finish their last inputs and report health; stop once
    no result (diagnostics aside, they never stop) arrived for ``drain_s``."""
    t_end = player.progress.bag_end_ns
    last_total, quiet_since = -1, time.monotonic()
    give_up = time.monotonic() + max(30.0, 10 * drain_s)
    while time.monotonic() - quiet_since < drain_s and time.monotonic() < give_up:
        t_end += 100_000_000
        player.publish_clock(t_end)
        time.sleep(0.1)
        total = sum(n for t, n in recorder.counts.items() if t != DIAGNOSTICS.path)
        if total != last_total:
            last_total, quiet_since = total, time.monotonic()


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
    The player waits until every node input that the bag carries has its subscribers, and the
    recorder sees every node's results, so no frame is lost to start-up. Pass ``nodes`` to
    control the node processes yourself (the soak benchmark kills and restarts them from
    ``on_progress``), and ``wait_for`` to hold the first message until those bag topics have a
    subscriber.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from lkd_perception.io.bag import bag_info, image_topic_in

    info = bag_info(bag)  # an unreadable bag is refused here, before any node process starts
    if image_topic_in(info, IMAGE.path).endswith("/compressed"):
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
        if nodes is not None:
            nodes.start()
        subscribers, publishers = connections_needed(
            nodes.specs.values() if nodes is not None else (), player.topics,
            recorder.topics if recorder is not None else (), wait_for,
        )
        wait_until_connected(player, recorder, nodes, subscribers, publishers, startup_timeout_s)
        play_reporting(player, on_progress)
        if recorder is not None:
            drain(player, recorder, drain_s)
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
