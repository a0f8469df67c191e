"""Prophesee `.raw` recordings as an event source: an ASCII `%` header, then an EVT 3.0 or EVT 2.0 word stream.

The header names the encoding (`% format EVT3;height=720;width=1280`, or the older `% evt 3.0`) and
sometimes the sensor size (`% geometry 1280x720`); older files omit the size, so it can be passed in.
The body is decoded in chunks by one stateful decoder from `codecs.make_decoder`.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microexp_ros.events.codecs import make_decoder
from microexp_ros.events.raw_header import raw_encoding, split_raw_header
from microexp_ros.events.reader_protocol import STREAM, Chunk, EventFileError, StreamInfo, optional_int

_GEOMETRY = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_HEADER_PEEK_BYTES = 1 << 16


@dataclass(frozen=True)
class RawHeader:
    """What a `.raw` header says; encoding, width, height are None where it says nothing."""

    fields: dict[str, str]
    encoding: str | None
    width: int | None
    height: int | None
    data_offset: int


def parse_raw_header(data: bytes) -> RawHeader:
    """Parse the `%` lines at the start of `data`: encoding and, where stated, the sensor size."""
    lines, offset = split_raw_header(data)
    fields = {key: value.strip() for key, _, value in (line.partition(" ") for line in lines) if key}
    encoding = raw_encoding(lines)
    named = fields["format"].split(";")[0] if "format" in fields else fields.get("evt")
    if encoding is None and named is not None:
        raise EventFileError(f"raw encoding {named!r} is not supported (supported: EVT3, EVT2)")
    width = height = None
    if "format" in fields:  # "EVT3;height=720;width=1280"
        options = dict(o.split("=", 1) for o in fields["format"].split(";")[1:] if "=" in o)
        width, height = _int_field(options, "width"), _int_field(options, "height")
    if "geometry" in fields:
        match = _GEOMETRY.match(fields["geometry"])
        if not match:
            raise EventFileError(f"raw header geometry {fields['geometry']!r} is not of the form WIDTHxHEIGHT")
        width, height = int(match.group(1)), int(match.group(2))
    return RawHeader(fields, encoding, width, height, offset)


def _int_field(options: dict[str, str], key: str) -> int | None:
    return optional_int(options, key, "raw header {key}={value!r} is not an integer")


def _agree(name: str, from_header, given):
    """The header's value, or the given one where the header has none; EventFileError if both differ."""
    if from_header is not None and given is not None and from_header != given:
        raise EventFileError(f"raw header says {name}={from_header} but {name}={given} was passed")
    return given if from_header is None else from_header


class RawFile:
    """A Prophesee `.raw` file as an event source with one stream, "events"."""

    format = "raw"

    def __init__(
        self,
        path: str | Path,
        width: int | None = None,
        height: int | None = None,
        encoding: str | None = None,
        chunk_bytes: int = 1 << 22,
    ) -> None:
        """Read the header; width/height/encoding fill in what it lacks and must agree with what it states."""
        self.path = Path(path)
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        self.chunk_bytes = int(chunk_bytes)
        with self.path.open("rb") as f:
            self.header = parse_raw_header(f.read(_HEADER_PEEK_BYTES))
        if self.header.data_offset == 0:
            raise EventFileError("not a Prophesee raw file: no '%' header")
        enc = _agree("encoding", self.header.encoding, encoding)
        w = _agree("width", self.header.width, width)
        h = _agree("height", self.header.height, height)
        if enc is None:
            raise EventFileError("raw header names no encoding (no '% format' or '% evt' line); pass the encoding")
        if w is None or h is None:
            raise EventFileError(
                "raw header gives no sensor size (no '% geometry' line or format width/height); pass width and height"
            )
        self.streams = {STREAM: StreamInfo(STREAM, enc, int(w), int(h))}
        self.drops: dict[str, collections.Counter[str]] = {STREAM: collections.Counter()}

    def chunks(self) -> Iterator[Chunk]:
        """Decode the body chunk by chunk with one fresh decoder, whose live drop counts are self.drops["events"]."""
        info = self.streams[STREAM]
        decoder = make_decoder(info.encoding, info.width, info.height)
        self.drops[STREAM] = decoder.drops
        with self.path.open("rb") as f:
            f.seek(self.header.data_offset)
            while block := f.read(self.chunk_bytes):
                result = decoder.decode(block)
                yield Chunk(STREAM, result.events, result.triggers)
        decoder.finish()
