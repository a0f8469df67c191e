"""iniVation AEDAT 4.0 files (DV software): event, frame and trigger streams, read with the `aedat` package.

AEDAT4 times are µs since the epoch; they become ns (EVENT_DTYPE convention). Triggers keep the AEDAT4
TriggerType as `id` (0 timestamp reset, 1/2 external rising/falling, 3 pulse, 4/5 generator rising/falling,
6/7 APS frame start/end, 8/9 APS exposure start/end); `edge` is 1 for rising edges and starts, else 0.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aedat
import numpy as np

from microexp_ros.events.array import TRIGGER_DTYPE, empty_events
from microexp_ros.events.reader_protocol import Chunk, EventFileError, StreamInfo, keep_in_bounds

US_TO_NS = 1000
_RISING_TYPES = np.array([1, 4, 6, 8], dtype=np.uint8)


@dataclass(frozen=True)
class Frame:
    """One intensity (APS) frame; times in ns; pixels as stored ([H, W] for 'L', [H, W, C] otherwise)."""

    t: int
    exposure_begin_t: int
    exposure_end_t: int
    pixels: np.ndarray
    format: str
    offset_x: int
    offset_y: int


def _open(path: Path) -> aedat.Decoder:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return aedat.Decoder(str(path))
    except (RuntimeError, OSError) as exc:  # what the Rust decoder raises for a bad header
        raise EventFileError(f"not a readable AEDAT4 file: {exc}") from exc


class Aedat4File:
    """An AEDAT4 file as an event source: one stream per event stream, triggers attached to the first one."""

    format = "aedat4"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        layout = _open(self.path).id_to_stream()
        self._event_ids = sorted(i for i, s in layout.items() if s["type"] == "events")
        if not self._event_ids:
            raise EventFileError("AEDAT4 file has no event stream")
        names = ["events"] if len(self._event_ids) == 1 else [f"events_{i}" for i in self._event_ids]
        self._names = dict(zip(self._event_ids, names))
        self.streams = {
            self._names[i]: StreamInfo(self._names[i], "aedat4", int(layout[i]["width"]), int(layout[i]["height"]))
            for i in self._event_ids
        }
        self.drops: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in self.streams}

    def chunks(self) -> Iterator[Chunk]:
        """One Chunk per AEDAT4 event or trigger packet, in file order."""
        for name in self.drops:
            self.drops[name] = collections.Counter()
        first = self._names[self._event_ids[0]]
        for packet in _iterate(self.path):
            if "events" in packet:
                stream = self._names[packet["stream_id"]]
                info = self.streams[stream]
                events = keep_in_bounds(_events(packet["events"]), info.width, info.height, self.drops[stream])
                yield Chunk(stream, events)
            elif "triggers" in packet:
                yield Chunk(first, empty_events(0), _triggers(packet["triggers"]))

    def frames(self) -> Iterator[Frame]:
        """The intensity frames, in file order."""
        for packet in _iterate(self.path):
            if "frame" in packet:
                f = packet["frame"]
                yield Frame(
                    t=int(f["t"]) * US_TO_NS,
                    exposure_begin_t=int(f["exposure_begin_t"]) * US_TO_NS,
                    exposure_end_t=int(f["exposure_end_t"]) * US_TO_NS,
                    pixels=np.asarray(f["pixels"]),
                    format=str(f["format"]),
                    offset_x=int(f["offset_x"]),
                    offset_y=int(f["offset_y"]),
                )


def _iterate(path: Path) -> Iterator[dict]:
    try:
        yield from _open(path)
    except (RuntimeError, OSError) as exc:
        raise EventFileError(f"corrupt AEDAT4 packet: {exc}") from exc


def _events(raw: np.ndarray) -> np.ndarray:
    ev = empty_events(raw.size)
    ev["t"] = raw["t"].astype(np.int64) * US_TO_NS
    ev["x"] = raw["x"]
    ev["y"] = raw["y"]
    ev["p"] = raw["on"]
    return ev


def _triggers(raw: np.ndarray) -> np.ndarray:
    tr = np.zeros(raw.size, dtype=TRIGGER_DTYPE)
    tr["t"] = raw["t"].astype(np.int64) * US_TO_NS
    tr["id"] = raw["source"]
    tr["edge"] = np.isin(raw["source"], _RISING_TYPES)
    return tr
