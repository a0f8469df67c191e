"""Event packets from bags: rosbag2 (sqlite3 or MCAP) and ROS 1, read through `data.bag_io.BagReader`.

Every `event_camera_msgs/EventPacket` topic is a stream. Packets are given both deserialised (our type store,
ROS 2 layout) and as CDR bytes ready to republish (ROS 1 messages are converted by BagReader), so a player
can forward them untouched. Decoding uses one stateful decoder per topic, as the packets of a topic form one
stream.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.serde import SerdeError

from microexp_ros.data.bag_io import BagError, BagReader
from microexp_ros.data.typestore import EVENT_PACKET, typestore
from microexp_ros.events.codecs import Decoder, make_decoder
from microexp_ros.events.reader_protocol import Chunk, EventFileError, StreamInfo


@dataclass(frozen=True)
class BagPacket:
    """One EventPacket message: its topic, bag record time (ns), message object and CDR bytes."""

    topic: str
    bag_time_ns: int
    msg: Any
    cdr: bytes


def _packets(reader: BagReader) -> Iterator[BagPacket]:
    """The messages of `reader`'s topics as BagPackets; EventFileError for unreadable ones."""
    store = typestore()
    try:
        for message in reader.messages():
            msg = store.deserialize_cdr(message.cdr, EVENT_PACKET)
            yield BagPacket(message.topic, message.time_ns, msg, message.cdr)
    except (BagError, SerdeError) as exc:
        raise EventFileError(str(exc)) from exc


class BagFile:
    """A rosbag2 directory / .db3 / .mcap, or a ROS 1 .bag, as an event source with one stream per topic."""

    def __init__(self, path: str | Path, topics: Sequence[str] | None = None) -> None:
        """Open the bag and read the first packet of each EventPacket topic for its encoding and geometry."""
        self.path = Path(path)
        try:
            every = BagReader(self.path)
            available = sorted(t for t, info in every.topics.items() if info.msgtype == EVENT_PACKET)
            selected = available if topics is None else list(topics)
            missing = sorted(set(selected) - set(available))
            if missing:
                raise EventFileError(
                    f"no EventPacket topic {', '.join(missing)} (bag has: {', '.join(available) or 'none'})"
                )
            if not selected:
                raise EventFileError(f"bag has no {EVENT_PACKET} topic")
            self._bag = BagReader(self.path, selected)
            first_packets = {t: next(_packets(BagReader(self.path, [t])), None) for t in selected}
        except BagError as exc:
            raise EventFileError(str(exc)) from exc
        self.format = "rosbag1" if every.is_ros1 else "rosbag2"
        self.message_counts = {t: self._bag.topics[t].count for t in selected}
        self.streams = {
            t: StreamInfo(t, str(p.msg.encoding), int(p.msg.width), int(p.msg.height))
            for t, p in first_packets.items()
            if p is not None
        }
        if not self.streams:
            raise EventFileError(f"the bag's {EVENT_PACKET} topics hold no messages")
        self.drops: dict[str, collections.Counter[str]] = {t: collections.Counter() for t in self.streams}

    def packets(self) -> Iterator[BagPacket]:
        """Every EventPacket of the selected topics, in bag time order."""
        return _packets(self._bag)

    def chunks(self) -> Iterator[Chunk]:
        """Decoded packets in bag order; one decoder per topic, so stream state carries across its packets."""
        decoders: dict[str, Decoder] = {}
        self.drops = {t: collections.Counter() for t in self.streams}
        for packet in self.packets():
            msg = packet.msg
            info = self.streams[packet.topic]
            if (msg.encoding, msg.width, msg.height) != (info.encoding, info.width, info.height):
                raise EventFileError(
                    f"topic {packet.topic} changes from {info.encoding} {info.width}x{info.height} to "
                    f"{msg.encoding} {msg.width}x{msg.height} at seq {msg.seq}"
                )
            decoder = decoders.get(packet.topic)
            if decoder is None:
                decoder = decoders[packet.topic] = self._decoder(info)
                self.drops[packet.topic] = decoder.drops  # live counts, also during a partial read
            result = decoder.decode(msg.events, time_base=int(msg.time_base))
            yield Chunk(packet.topic, result.events, result.triggers)
        for decoder in decoders.values():
            decoder.finish()

    def _decoder(self, info: StreamInfo) -> Decoder:
        try:
            return make_decoder(info.encoding, info.width, info.height)
        except ValueError as exc:
            raise EventFileError(f"topic {info.name}: {exc}") from exc
