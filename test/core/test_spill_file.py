"""The odometry's scratch file: records come back by offset, and a lost tail is an error, not zeros."""

from __future__ import annotations

import os

import pytest

from lkd_perception.common.spill_file import SpillFile


def test_records_come_back_by_offset_and_the_file_is_made_only_when_needed(tmp_path):
    spill = SpillFile("test spill file", "lkd_test_", str(tmp_path))
    assert spill.size == 0 and spill._file is None  # nothing written: no file
    offsets = [spill.append(bytes([i]) * (i + 1)) for i in range(5)]
    assert offsets == [0, 1, 3, 6, 10] and spill.size == 15
    assert [spill.read(o, i + 1) for i, o in enumerate(offsets)] == [bytes([i]) * (i + 1) for i in range(5)]
    assert os.listdir(tmp_path) == []  # unnamed: nothing left in the directory to clean up
    spill.close()


def test_reading_past_the_end_or_a_truncated_file_names_the_file(tmp_path):
    spill = SpillFile("test spill file", "lkd_test_", str(tmp_path))
    with pytest.raises(OSError, match="test spill file: no record"):
        spill.read(0, 1)
    spill.append(b"abcdef")
    with pytest.raises(OSError, match="test spill file: no record"):
        spill.read(4, 3)
    os.ftruncate(spill._file.fileno(), 2)  # the disk lost the tail behind our back
    with pytest.raises(OSError, match="test spill file truncated: read 0 of 2 bytes"):
        spill.read(4, 2)
    spill.close()
