"""How commands print results: a human table by default, one JSON object with `--json`; errors as one line."""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give a command the `--json` flag every figure-printing command takes."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def reported(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input (missing files, malformed data, wrong parameters, incompatible weights) ends the command with
    one clear line on stderr and exit code 2, instead of a traceback. The line names the command's input file
    (a `path` argument) when the error does not."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (OSError, ValueError) as error:
            message, path = str(error), getattr(args, "path", None)
            if path is not None and str(path) not in message:
                message = f"{path}: {message}"
            command = " ".join(part for part in (args.group, getattr(args, "command", None)) if part)
            print(f"microexp {command}: error: {message}", file=sys.stderr)
            return 2

    return run


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def emit(args: argparse.Namespace, payload: Mapping[str, Any], text: str) -> None:
    """Print `payload` as JSON when `--json` was given, otherwise the human-readable `text`."""
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(payload), sort_keys=True))
    else:
        print(text)


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
