"""A stop asked for while a node process is still importing (torch alone takes seconds) ends it with 0.

Without this, a SIGINT from `ros2 launch` or `microexp launch` stopping a graph that has just started lands
in an import as KeyboardInterrupt: a traceback and a non-zero exit for a node that was only asked to stop.
The node executables (cmake/console_scripts.py) call `remember_stop` before importing their node module;
`ros.runtime.run_node` takes over the request and ends the process cleanly. Imports nothing but `signal`.
"""

from __future__ import annotations

import signal

_requested: list[int] = []


def _remember(signum: int, _frame) -> None:
    _requested.append(signum)


def remember_stop() -> None:
    """From now on SIGINT and SIGTERM are remembered instead of interrupting, until run_node handles them."""
    signal.signal(signal.SIGINT, _remember)
    signal.signal(signal.SIGTERM, _remember)


def stop_requested() -> bool:
    """Whether SIGINT or SIGTERM arrived since `remember_stop`."""
    return bool(_requested)
