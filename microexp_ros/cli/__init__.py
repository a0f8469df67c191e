"""The `microexp` command: one entry point whose subcommand groups are contributed by feature modules.

Each module in COMMAND_MODULES defines `register(group)`, where `group(name, help)` returns the
subparsers object of that group (created on first use), and `group(None, "")` the top level (for the few
commands that stand alone, like `microexp demo`). Handlers are set with
`parser.set_defaults(func=handler)`, take the parsed args and return an exit code; bad input is raised as
OSError or ValueError, which `main` turns into one line on stderr and exit code 2 (`output.reported`). Heavy
imports (torch, rclpy) belong inside handlers so `microexp --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from microexp_ros.cli.output import reported

COMMAND_MODULES: tuple[str, ...] = (
    "microexp_ros.cli.info_cmd",
    "microexp_ros.cli.data_cmd",
    "microexp_ros.cli.launch_cmd",
    "microexp_ros.cli.demo_cmd",
    "microexp_ros.cli.events_cmd",
    "microexp_ros.cli.recon_cmd",
    "microexp_ros.cli.bench_decode_cmd",
    "microexp_ros.cli.dataplane_cmd",
    "microexp_ros.cli.au_cmd",
    "microexp_ros.cli.sim_cmd",
    "microexp_ros.cli.calibrate_cmd",
)

GroupFactory = Callable[[str, str], "argparse._SubParsersAction[argparse.ArgumentParser]"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every registered group and command."""
    parser = argparse.ArgumentParser(
        prog="microexp",
        description="Facial micro-expression analysis with event and RGB cameras (microexp_ros).",
    )
    top = parser.add_subparsers(dest="group", metavar="<group>")
    groups: dict[str, argparse._SubParsersAction] = {}

    def group(name: str | None, help_text: str) -> argparse._SubParsersAction:
        if name is None:
            return top
        if name not in groups:
            sub = top.add_parser(name, help=help_text, description=help_text)
            groups[name] = sub.add_subparsers(dest="command", metavar="<command>")
            sub.set_defaults(func=lambda args, _sub=sub: _missing_command(_sub))
        return groups[name]

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(group)
    return parser


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `microexp` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(reported(args.func)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
