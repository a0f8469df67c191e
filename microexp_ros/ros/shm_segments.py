"""FastDDS shared-memory segments whose process is gone: RAM that a killed node can leave in /dev/shm.

Each FastDDS participant maps a segment `/dev/shm/fastdds_<16 hex>` (64 MiB with this package's profile) and
holds an advisory lock on `<segment>_el` while it lives; a segment whose lock file no process holds belongs to
a participant that exited without removing it (docs/robustness.md, "Shared memory left behind by killed
nodes"). The held locks are read from /proc/locks, so looking takes no lock and cannot race a participant
being created; `fastdds shm clean` is what removes them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SHM_DIR = Path("/dev/shm")
LOCKS = Path("/proc/locks")
_SEGMENT = re.compile(r"^fastdds_[0-9a-z]{16}$")


def held_locks(locks: Path = LOCKS) -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file some process holds a lock on (/proc/locks: `MAJ:MIN:INODE`, the
    device numbers in hex)."""
    held = set()
    for line in locks.read_text().splitlines():
        fields = line.split()
        ident = next((f for f in fields if f.count(":") == 2), None)
        if ident is None:
            continue
        major, minor, inode = ident.split(":")
        held.add((int(major, 16), int(minor, 16), int(inode)))
    return held


def unowned_segments(shm_dir: Path = SHM_DIR, locks: Path = LOCKS) -> list[tuple[Path, int]]:
    """(segment, bytes it occupies) of each FastDDS segment in `shm_dir` whose `_el` lock file nobody holds."""
    if not shm_dir.is_dir() or not locks.is_file():
        return []
    held = held_locks(locks)
    found = []
    for segment in sorted(p for p in shm_dir.iterdir() if _SEGMENT.match(p.name)):
        try:
            lock = os.stat(segment.with_name(segment.name + "_el"))
            size = segment.stat().st_blocks * 512
        except FileNotFoundError:   # removed meanwhile, or a segment without its lock file
            continue
        if (os.major(lock.st_dev), os.minor(lock.st_dev), lock.st_ino) not in held:
            found.append((segment, size))
    return found
