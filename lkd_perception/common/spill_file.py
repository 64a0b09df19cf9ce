"""An append-only scratch file for data a long run must keep but rarely reads back.

The odometry keeps every keyframe and every scan's anchor for a whole drive; holding them all in
memory would grow the process for hours. They go here instead: an unnamed temporary file (gone
when the process ends, even on a crash), created only when the first record arrives, written and
read by offset so no file position is shared between the two.
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO


class SpillFile:
    """Records appended at increasing offsets and read back by (offset, size)."""

    def __init__(self, what: str, prefix: str, directory: str | None = None) -> None:
        self.what = what  # names the file in errors, e.g. "keyframe spill file"
        self._prefix = prefix
        self._directory = directory
        self._file: BinaryIO | None = None
        self.size = 0  # bytes appended so far

    def append(self, data: bytes) -> int:
        """Write ``data`` after everything written so far; returns its offset."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix=self._prefix, dir=self._directory)
        offset = self.size
        os.pwrite(self._file.fileno(), data, offset)
        self.size += len(data)
        return offset

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``; an OSError when the file holds fewer (it was truncated
        behind our back, or the disk lost them)."""
        if self._file is None or offset + size > self.size:
            raise OSError(f"{self.what}: no record at {offset}+{size} (holds {self.size} bytes)")
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{self.what} truncated: read {len(data)} of {size} bytes")
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
