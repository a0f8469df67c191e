"""Finding FastDDS shared-memory segments whose process is gone, from the locks the kernel reports."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

from microexp_ros.ros.shm_segments import LOCKS, held_locks, unowned_segments

pytestmark = pytest.mark.skipif(not LOCKS.is_file() or not sys.platform.startswith("linux"),
                                reason="needs Linux /proc/locks")


def _segment(directory: Path, name: str, size: int) -> Path:
    path = directory / name
    path.write_bytes(b"\1" * size)
    (directory / f"{name}_el").touch()
    return path


def test_a_segment_is_unowned_once_no_process_holds_its_lock(tmp_path):
    live = _segment(tmp_path, "fastdds_0123456789abcdef", 8192)
    dead = _segment(tmp_path, "fastdds_fedcba9876543210", 4096)
    (tmp_path / "fastdds_port7000").write_bytes(b"\0")     # a port, not a segment
    (tmp_path / "fastdds_aaaabbbbccccdddd").touch()       # a segment without its lock file: skipped
    fd = os.open(tmp_path / f"{live.name}_el", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # what a living participant holds
        found = unowned_segments(tmp_path)
        assert [p for p, _ in found] == [dead] and found[0][1] >= 4096
    finally:
        os.close(fd)                                       # the process "exits": the kernel drops the lock
    assert [p for p, _ in unowned_segments(tmp_path)] == [live, dead]
    assert unowned_segments(tmp_path / "missing") == []


def test_held_locks_reads_hex_device_numbers(tmp_path):
    locks = tmp_path / "locks"
    locks.write_text("1: FLOCK  ADVISORY  WRITE 6098 00:1b:2205578 0 EOF\n"
                     "2: POSIX  ADVISORY  READ 77 fd:01:42 0 EOF\n"
                     "3: -> FLOCK  ADVISORY  WRITE 80 00:1b:9 0 EOF\n")
    assert held_locks(locks) == {(0, 27, 2205578), (253, 1, 42), (0, 27, 9)}


def test_system_info_reports_them(capsys):
    from microexp_ros.cli import main

    capsys.readouterr()
    assert main(["system", "info", "--json"]) == 0
    left = json.loads(capsys.readouterr().out)["fastdds_unowned_segments"]
    assert set(left) == {"count", "bytes"} and left["count"] >= 0 and left["bytes"] >= 0
    assert main(["system", "info"]) == 0
    assert "FastDDS shm of exited processes" in capsys.readouterr().out
