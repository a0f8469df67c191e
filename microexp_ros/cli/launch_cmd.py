"""`microexp launch <graph> [name:=value ...]`: the graphs of launch/*.launch.py, run without ROS launch."""

from __future__ import annotations

import argparse

from microexp_ros.bringup.graphs import GRAPHS, arguments


def register(group) -> None:
    graphs = group("launch", "run a node graph (the same one `ros2 launch microexp_ros <graph>.launch.py` runs)")
    for name in GRAPHS:
        epilog = "\n".join(f"  {arg}:={spec.default or repr('')}  {spec.description}"
                           for arg, spec in arguments(name).items())
        parser = graphs.add_parser(name, help=f"the '{name}' graph", epilog="arguments:\n" + epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("assignments", nargs="*", metavar="name:=value", help="launch arguments")
        parser.add_argument("--duration", type=float, help="stop the graph after this many seconds")
        parser.add_argument("--until-exit", metavar="NODE", help="stop the graph when this node exits")
        parser.add_argument("--no-standby", dest="standby", action="store_false",
                            help="no hot standby process per respawning node (respawns then start cold)")
        parser.set_defaults(func=run, graph=name)


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`name:=value` pairs, as `ros2 launch` takes them."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"'{item}' is not a launch argument of the form name:=value")
        values[name] = value
    return values


def run(args: argparse.Namespace) -> int:
    from microexp_ros.bringup.runner import Launcher

    launcher = Launcher(args.graph, parse_assignments(args.assignments), standby=args.standby)
    return launcher.run(duration_s=args.duration, until_exit=args.until_exit)
