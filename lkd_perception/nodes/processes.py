"""The vehicle's nodes as child processes: started, killed, restarted one by one, measured.

Each node runs in its own process (as on the vehicle: both cores, no shared GIL), on sim time,
started through ``lkd launch`` so it reads its parameters exactly as a launch would. Imports no
ROS (the children do); it stays in ``nodes`` beside the graph it starts, because the replay uses
it and everything outside ``nodes`` that starts nodes depends on ``nodes`` already.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lkd_perception.common.errors import InputError
from lkd_perception.nodes.graph import select


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
