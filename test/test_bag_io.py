"""bag_io: MCAP bags with metadata v9, definitions and offered QoS, read back by rosbags and by `mcap` alone."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader

from microexp_ros.data.bag_io import BagError, BagReader, BagWriter, TopicQos
from microexp_ros.data.typestore import EVENT_PACKET, IMAGE, typestore
from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.packetizer import Packetizer
from microexp_ros.events.reader import open_events
from microexp_ros.events.reader_protocol import read_all


def _event_packets(real_data):
    """CDR EventPackets of a real EVT3 recording, packetized at 1 ms."""
    store = typestore()
    ev = read_all(open_events(real_data / "expelliarmus" / "evt3_sample.raw", width=1280, height=720))["events"].events
    packetizer = Packetizer(1_000_000)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    cls = store.types[EVENT_PACKET]
    out = []
    for seq, packet in enumerate(packetizer.add(ev) + packetizer.flush()):
        stamp = 1_700_000_000_000_000_000 + packet.first_t
        msg = cls(header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam"),
                  height=720, width=1280, seq=seq, time_base=0, encoding="evt3", is_bigendian=False,
                  events=np.frombuffer(packet.data, np.uint8))
        out.append((stamp + 300_000, store.serialize_cdr(msg, EVENT_PACKET)))
    return ev, out


def _image(store, stamp_ns: int) -> bytes:
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    pixels = np.random.default_rng(stamp_ns % 1000).integers(0, 255, (48, 64, 3), np.uint8)
    msg = store.types[IMAGE](header=Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="rgb"),
                             height=48, width=64, encoding="bgr8", is_bigendian=0, step=192, data=pixels.reshape(-1))
    return store.serialize_cdr(msg, IMAGE)


def test_mcap_bag_round_trip_with_metadata_and_independent_reader(tmp_path, real_data):
    store = typestore()
    ev, packets = _event_packets(real_data)
    images = [(1_700_000_000_000_000_000 + 11_720_000_000 + k * 3_000_000, None) for k in range(3)]
    images = [(t, _image(store, t)) for t, _ in images]
    path = tmp_path / "bag"
    with BagWriter(path) as writer:
        writer.add_topic("/event_camera/events", EVENT_PACKET, TopicQos("best_effort", depth=1000))
        writer.add_topic("/rgb/image_raw", IMAGE, TopicQos("best_effort", depth=10))
        merged = sorted([("/event_camera/events", t, c) for t, c in packets] + [("/rgb/image_raw", t, c) for t, c in images],
                        key=lambda m: m[1])
        for topic, t, cdr in merged:
            writer.write(topic, t, cdr)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    assert meta["message_count"] == len(merged)
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    events_meta = topics["/event_camera/events"]["topic_metadata"]
    assert events_meta["type_description_hash"].startswith("RIHS01_")
    offered = events_meta["offered_qos_profiles"][0]  # a v9 YAML list, as rosbag2 (Jazzy+) writes it
    assert (offered["reliability"], offered["durability"], offered["depth"]) == ("best_effort", "volatile", 1000)
    assert topics["/event_camera/events"]["message_count"] == len(packets)

    # rosbags (through BagReader): same bytes, same record times, QoS restored
    reader = BagReader(path)
    assert reader.topics["/event_camera/events"].qos == TopicQos("best_effort", "volatile", 1000)
    got = [(m.topic, m.time_ns, m.cdr) for m in reader.messages()]
    assert got == merged

    # the independent `mcap` reader: schemas carry the ros2msg definitions, messages the same bytes
    with open(next(path.glob("*.mcap")), "rb") as f:
        mcap_messages = [(channel.topic, message.log_time, message.data, schema)
                         for schema, channel, message in make_reader(f).iter_messages()]
    assert [(t, lt, bytes(d)) for t, lt, d, _ in mcap_messages] == merged
    schema = next(s for t, _, _, s in mcap_messages if t == "/event_camera/events")
    assert schema.encoding == "ros2msg" and "uint8[] events" in schema.data.decode()

    # and the events decode back to the recording
    decoder = make_decoder("evt3", 1280, 720)
    decoded = np.concatenate([decoder.decode(store.deserialize_cdr(m.cdr, EVENT_PACKET).events).events
                              for m in reader.messages() if m.topic == "/event_camera/events"])
    assert np.array_equal(decoded, ev)


def test_reads_ros1_and_sqlite3_bags_with_offsets(real_data):
    ros1 = BagReader(real_data / "event_camera_py" / "test_events_1.bag")
    assert ros1.is_ros1 and ros1.topics["/event_camera/events"].qos is None
    messages = list(ros1.messages())
    assert len(messages) == 517
    msg = typestore().deserialize_cdr(messages[0].cdr, EVENT_PACKET)  # converted to ROS 2 CDR
    assert (msg.encoding, msg.width, msg.height) == ("evt3", 640, 480)
    later = list(ros1.messages(start_ns=ros1.start_ns + 1_000_000_000))
    assert 0 < len(later) < 517 and later[0].time_ns >= ros1.start_ns + 1_000_000_000
    sqlite = BagReader(real_data / "event_camera_codecs" / "test_data_evt3_trigger")
    assert sum(1 for _ in sqlite.messages()) == 105


def test_bad_bags_and_topics_are_clear_errors(tmp_path, real_data):
    path = tmp_path / "bag"
    with BagWriter(path) as writer:
        with pytest.raises(BagError, match="unknown to the bag type store"):
            writer.add_topic("/x", "nobody_msgs/msg/Nothing")
        with pytest.raises(BagError, match="was not added"):
            writer.write("/y", 0, b"")
    with pytest.raises(BagError, match="exists already"):
        BagWriter(path)
    with pytest.raises(BagError, match="storage"):
        BagWriter(tmp_path / "other", storage="rosbag3")
    with pytest.raises(FileNotFoundError):
        BagReader(tmp_path / "missing")
    with pytest.raises(BagError, match="no topic /nope"):
        BagReader(real_data / "event_camera_py" / "test_events_1.bag", topics=["/nope"])
    with pytest.raises(ValueError, match="reliability"):
        TopicQos("sometimes")
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 64)
    with pytest.raises(BagError):
        list(BagReader(broken).messages())
