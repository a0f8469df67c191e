"""Writing rosbag2 MCAP bags and reading any bag (MCAP, sqlite3, ROS 1) as CDR messages with their timing.

Writing goes through `rosbags` with metadata v9, each topic's message definition and RIHS01 hash from our type
store, and the publisher's offered QoS, so `ros2 bag info/play` and Foxglove open the result and a replay uses
the original QoS (best-effort events stay best-effort). Reading yields every message as CDR bytes (ROS 1
messages converted) with its bag record time, ready to republish without a decode/encode round trip.
No ROS imports: QoS is described by `TopicQos`, which the nodes convert to and from rclpy profiles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError

from microexp_ros.data.typestore import typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(ValueError):
    """A bag that cannot be written or read (exists already, unknown type, corrupt, missing topic)."""


@dataclass(frozen=True)
class TopicQos:
    """The QoS a publisher offered: reliability 'reliable'|'best_effort', durability 'volatile'|'transient_local'."""

    reliability: str = "reliable"
    durability: str = "volatile"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"QoS reliability must be 'reliable' or 'best_effort', got {self.reliability!r}")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"QoS durability must be 'volatile' or 'transient_local', got {self.durability!r}")
        if self.depth < 1:
            raise ValueError(f"QoS depth must be >= 1, got {self.depth}")


_RELIABILITY = {"reliable": QosReliability.RELIABLE, "best_effort": QosReliability.BEST_EFFORT}
_DURABILITY = {"volatile": QosDurability.VOLATILE, "transient_local": QosDurability.TRANSIENT_LOCAL}
_ZERO = QosTime(sec=0, nsec=0)
# rosbag2's "infinite" duration, as `ros2 bag record` writes it for unset deadline/lifespan/lease
_INFINITE = QosTime(sec=9223372036, nsec=854775807)


def to_rosbags_qos(qos: TopicQos) -> Qos:
    return Qos(history=QosHistory.KEEP_LAST, depth=int(qos.depth), reliability=_RELIABILITY[qos.reliability],
               durability=_DURABILITY[qos.durability], deadline=_INFINITE, lifespan=_INFINITE,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
               avoid_ros_namespace_conventions=False)


def from_rosbags_qos(profiles: Sequence[Qos]) -> TopicQos | None:
    """The recorded QoS of a topic (the first offered profile), or None where the bag has none (ROS 1)."""
    if not profiles:
        return None
    q = profiles[0]
    reliability = "best_effort" if q.reliability == QosReliability.BEST_EFFORT else "reliable"
    durability = "transient_local" if q.durability == QosDurability.TRANSIENT_LOCAL else "volatile"
    return TopicQos(reliability, durability, max(int(q.depth), 1))


class BagWriter:
    """A rosbag2 bag (MCAP by default, metadata v9) written from CDR bytes; close() writes metadata.yaml."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from exc
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, msgtype: str, qos: TopicQos = TopicQos()) -> None:
        """Register a topic before writing to it; BagError when the type store does not know `msgtype`."""
        if topic in self._connections:
            raise BagError(f"topic {topic} already added to {self.path}")
        store = typestore()
        if msgtype not in store.fielddefs:
            raise BagError(f"message type {msgtype} of topic {topic} is unknown to the bag type store")
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=store, offered_qos_profiles=[to_rosbags_qos(qos)])
        self.counts[topic] = 0

    def write(self, topic: str, time_ns: int, cdr: bytes | memoryview) -> None:
        """Append one serialized message received at `time_ns` (the bag record time)."""
        conn = self._connections.get(topic)
        if conn is None:
            raise BagError(f"topic {topic} was not added to {self.path}")
        self._writer.write(conn, int(time_ns), cdr)
        self.counts[topic] += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BagTopic:
    """A topic of a bag being read: type, message count and recorded QoS (None for ROS 1 bags)."""

    name: str
    msgtype: str
    count: int
    qos: TopicQos | None


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    time_ns: int       # bag record time
    cdr: bytes         # ROS 2 CDR, converted for ROS 1 bags


class BagReader:
    """Any rosbag2 (directory, .mcap, .db3) or ROS 1 .bag, as CDR messages in record-time order."""

    def __init__(self, path: str | Path, topics: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such bag")
        with self._open() as reader:
            self.is_ros1 = not reader.is2
            available: dict[str, BagTopic] = {}
            for conn in reader.connections:
                qos = None if self.is_ros1 else from_rosbags_qos(conn.ext.offered_qos_profiles)
                known = available.get(conn.topic)
                count = conn.msgcount + (known.count if known else 0)
                available[conn.topic] = BagTopic(conn.topic, conn.msgtype, count, qos)
            self.start_ns, self.end_ns = int(reader.start_time), int(reader.end_time)
        if topics:
            missing = sorted(set(topics) - set(available))
            if missing:
                raise BagError(f"{self.path}: no topic {', '.join(missing)} (bag has: {', '.join(sorted(available))})")
            available = {t: available[t] for t in topics}
        self.topics: dict[str, BagTopic] = available

    @contextlib.contextmanager
    def _open(self) -> Iterator[AnyReader]:
        try:
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
        except AnyReaderError as exc:
            raise BagError(f"cannot open bag {self.path}: {exc}") from exc
        try:
            yield reader
        finally:
            reader.close()

    def messages(self, start_ns: int | None = None) -> Iterator[BagMessage]:
        """The selected topics' messages with record time >= start_ns, in record-time order."""
        ours = typestore()
        with self._open() as reader:
            connections = [c for c in reader.connections if c.topic in self.topics]
            try:
                for conn, time_ns, raw in reader.messages(connections=connections, start=start_ns):
                    if reader.is2:
                        cdr = bytes(raw)
                    else:  # ROS 1 → ROS 2 layout needs the ROS 2 definition (Header without seq)
                        store = ours if conn.msgtype in ours.fielddefs else reader.typestore
                        cdr = bytes(store.ros1_to_cdr(raw, conn.msgtype))
                    yield BagMessage(conn.topic, conn.msgtype, int(time_ns), cdr)
            except (AnyReaderError, SerdeError, ValueError, KeyError, IndexError) as exc:
                raise BagError(f"corrupt message in {self.path}: {exc}") from exc
