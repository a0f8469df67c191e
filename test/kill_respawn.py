"""Repeated kill -9 of nodes in the looping HRI graph: how long until each node's stream resumes.

The measurement of test_hri_robustness.py beside it (`_resume_after_kill`: SIGKILL, then the first message
about a window newer than the kill), repeated, for the figures in docs/robustness.md (a measurement, not a
test: pytest does not collect it):

    .venv/bin/python test/kill_respawn.py --repeats 4 time_sync au_classifier
    .venv/bin/python test/kill_respawn.py --cold --repeats 3 time_sync au_classifier   # --no-standby graph
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from microexp_ros.ros.dds import configure_transport, private_domain_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nodes", nargs="*", default=["time_sync", "au_classifier"])
    parser.add_argument("--repeats", type=int, default=4, help="kills per node")
    parser.add_argument("--cold", action="store_true", help="launch with --no-standby (respawns start cold)")
    args = parser.parse_args()
    env = dict(os.environ, ROS_DOMAIN_ID=str(private_domain_id()), PYTHONUNBUFFERED="1")
    configure_transport(env)
    os.environ.update(env)
    import test_hri_robustness as robustness   # beside this file, on sys.path when it runs

    unknown = set(args.nodes) - set(robustness.KILLS)
    if unknown:
        parser.error(f"unknown node(s) {', '.join(sorted(unknown))}; choose from {', '.join(robustness.KILLS)}")
    log = Path(tempfile.mkdtemp(prefix="kill_respawn_")) / "launch.log"
    graph = robustness.Graph(env, log, ("--no-standby",) if args.cold else ())
    watcher = robustness.Watcher(int(env["ROS_DOMAIN_ID"]))
    gaps: dict[str, list[float]] = {}
    deaf: list[str] = []   # nodes that a kill left deaf (they restarted themselves)
    try:
        if not watcher.wait_for(lambda: len(watcher.after(0.0)) >= 20, 90.0):
            raise SystemExit(f"no predictions from the looping graph; log: {log}")
        for _ in range(args.repeats):
            for node in args.nodes:
                time.sleep(5.0 if args.cold else 1.0)   # cold: let the previous respawn finish starting
                resume = robustness._resume_after_kill(graph, watcher, node, robustness.KILLS[node][0],
                                                       standby=not args.cold)
                gaps.setdefault(node, []).append(resume.seconds)
                deaf.extend(f"{node} kill {len(gaps[node])}: {name}" for name in resume.deaf)
    finally:
        watcher.close()
        graph.stop()
    for node, values in gaps.items():
        print(f"{node}: {robustness.KILLS[node][0]} resumed after {', '.join(f'{v:.2f}' for v in values)} s "
              f"(median {statistics.median(values):.2f})")
    print(f"left deaf by a kill: {'; '.join(deaf) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
