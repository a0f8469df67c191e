"""Files of length-prefixed CDR blobs: how test processes hand messages to each other and to the test."""

from __future__ import annotations

import struct
from pathlib import Path


def write_blobs(path: str | Path, blobs: list[bytes]) -> None:
    with open(path, "wb") as out:
        for blob in blobs:
            out.write(struct.pack("<Q", len(blob)) + blob)


def read_blobs(path: str | Path) -> list[bytes]:
    data, blobs, offset = Path(path).read_bytes(), [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<Q", data, offset)
        blobs.append(data[offset + 8:offset + 8 + size])
        offset += 8 + size
    return blobs
