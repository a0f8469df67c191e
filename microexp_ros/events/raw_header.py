"""Prophesee .raw files: an ASCII header of `%` lines, then the encoded event words (EVT2 or EVT3).

Newer files end the header with a `% end` line; older ones just stop, so a header line is any line that starts
with `%` and is printable text. The encoding is named in the header (`% evt 3.0`, `% format EVT3;...`).
"""

from __future__ import annotations

from pathlib import Path

_MAX_HEADER_LINE = 4096


def split_raw_header(data: bytes | memoryview) -> tuple[list[str], int]:
    """The header lines (without `% `) and the byte offset where the event words begin."""
    view = memoryview(data)
    lines: list[str] = []
    pos = 0
    while pos < len(view) and view[pos] == ord("%"):
        end = bytes(view[pos : pos + _MAX_HEADER_LINE]).find(b"\n")
        if end < 0:
            break
        line = bytes(view[pos : pos + end])
        if not line.isascii() or not all(c >= 32 or c == 9 for c in line):
            break
        pos += end + 1
        text = line[1:].strip().decode("ascii")
        if text == "end":
            break
        lines.append(text)
    return lines, pos


def raw_encoding(header: list[str]) -> str | None:
    """`evt3` or `evt2` as named by a .raw header, or None when the header does not say."""
    for line in header:
        key, _, value = line.partition(" ")
        value = value.lower()
        if key == "evt":
            return {"3.0": "evt3", "2.0": "evt2"}.get(value.strip())
        if key == "format":
            name = value.split(";")[0].strip()
            return {"evt3": "evt3", "evt2": "evt2"}.get(name)
    return None


def read_raw(path: str | Path) -> tuple[list[str], bytes]:
    """Header lines and the event payload of a .raw file; FileNotFoundError naming the path if absent."""
    data = Path(path).read_bytes()
    header, offset = split_raw_header(data)
    return header, data[offset:]
