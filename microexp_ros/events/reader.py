"""One entry point for every event file format: `open_events(path)` picks the reader by file type.

Use `reader_protocol.read_all(open_events(path))` for whole arrays, or iterate `.chunks()` for large files.
"""

from __future__ import annotations

from pathlib import Path

from microexp_ros.events.aedat4 import Aedat4File
from microexp_ros.events.bag_reader import BagFile
from microexp_ros.events.dat_file import DatFile
from microexp_ros.events.es_file import EsFile
from microexp_ros.events.nmnist_bin import NmnistFile
from microexp_ros.events.raw_file import RawFile
from microexp_ros.events.reader_protocol import EventFileError, EventSource

# File suffix -> reader kind; directories are rosbag2 bags.
_SUFFIXES = {
    ".raw": "raw",
    ".aedat4": "aedat4",
    ".bin": "nmnist_bin",
    ".dat": "dat",
    ".es": "es",
    ".bag": "bag",
    ".db3": "bag",
    ".mcap": "bag",
}
# Leading bytes -> reader kind, for files whose suffix says nothing.
_MAGIC = {
    b"%": "raw",
    b"Event Stream": "es",
    b"#!AER-DAT4": "aedat4",
    b"#ROSBAG": "bag",
    b"\x89MCAP": "bag",
    b"SQLite format 3": "bag",
}
SUPPORTED = (
    "Prophesee .raw (EVT3/EVT2) and .dat, .aedat4, Event Stream .es (DVS/ATIS), N-MNIST .bin, "
    "rosbag2 (directory, .db3, .mcap), ROS 1 .bag"
)
# Formats that may not store the sensor size, so open_events accepts width/height for them.
_SIZE_OPTIONAL = ("raw", "nmnist_bin", "dat")


def detect_format(path: Path) -> str:
    """The reader kind for `path`: by suffix, else by leading bytes; EventFileError if neither tells."""
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(path.glob("*.db3")) or any(path.glob("*.mcap")):
            return "bag"
        raise EventFileError("directory is not a rosbag2 bag (no metadata.yaml, .db3 or .mcap)")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is not None:
        return kind
    with path.open("rb") as f:
        head = f.read(16)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            # A ROS 1 bag must end in .bag for rosbags to read it as one.
            if magic == b"#ROSBAG":
                raise EventFileError("looks like a ROS 1 bag; rename it to end in .bag")
            return kind
    raise EventFileError(f"unknown event file format (supported: {SUPPORTED})")


def open_events(
    path: str | Path,
    width: int | None = None,
    height: int | None = None,
    encoding: str | None = None,
    topics: list[str] | None = None,
) -> EventSource:
    """Open an event file or bag; width/height/encoding are for formats that may not store them (.raw, .bin, .dat).

    Raises FileNotFoundError for a missing path and EventFileError (naming the path) for an unreadable one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    try:
        kind = detect_format(path)
        if kind != "raw" and encoding is not None:
            raise EventFileError(f"encoding= applies to .raw files only, not {kind}")
        if kind not in _SIZE_OPTIONAL and (width is not None or height is not None):
            raise EventFileError(f"width/height apply to .raw, .bin and .dat files only, not {kind} (it stores them)")
        if kind != "bag" and topics is not None:
            raise EventFileError(f"topics= applies to bags only, not {kind}")
        if kind == "raw":
            return RawFile(path, width, height, encoding)
        if kind == "aedat4":
            return Aedat4File(path)
        if kind == "nmnist_bin":
            return NmnistFile(path, width, height)
        if kind == "dat":
            return DatFile(path, width, height)
        if kind == "es":
            return EsFile(path)
        return BagFile(path, topics)
    except EventFileError as exc:
        if str(path) in str(exc):
            raise
        raise EventFileError(f"{path}: {exc}") from exc
