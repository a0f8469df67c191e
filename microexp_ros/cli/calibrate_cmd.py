"""`microexp calibrate homography`: the RGB → event pixel homography for face_region, as a params YAML.

From matched points (`--points FILE`: CSV rows rgb_x,rgb_y,event_x,event_y, a header line allowed) or from a
bag (`--bag BAG`) in which both cameras watch a checkerboard shown on a flashing screen: each RGB frame is
paired with the event frame of the packets stamped in the `--window-ms` before it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from microexp_ros.cli.output import add_json_flag, emit


def register(group) -> None:
    cmd = group("calibrate", "camera calibration").add_parser(
        "homography", help="estimate the RGB -> event pixel homography (face_region's `homography` parameter)")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--points", type=Path, help="CSV of matched points: rgb_x,rgb_y,event_x,event_y per row")
    source.add_argument("--bag", type=Path, help="bag with RGB images and event packets of a flashing checkerboard")
    cmd.add_argument("--rgb-topic", default="/rgb/image_raw", help="Image topic in --bag")
    cmd.add_argument("--events-topic", default="/event_camera/events", help="EventPacket topic in --bag")
    cmd.add_argument("--pattern", default="7x6", help="inner corners of the board, COLSxROWS (default 7x6)")
    cmd.add_argument("--window-ms", type=float, default=50.0, help="events accumulated before each RGB frame")
    cmd.add_argument("--every", type=int, default=1, help="use every n-th RGB frame of --bag")
    cmd.add_argument("--ransac-px", type=float, default=3.0, help="RANSAC inlier threshold in event pixels")
    cmd.add_argument("--output", type=Path, help="write the params YAML here (default: print it)")
    add_json_flag(cmd)
    cmd.set_defaults(func=run_homography)


def read_points(path: Path):
    """(rgb [N, 2], event [N, 2]) from a CSV of rgb_x,rgb_y,event_x,event_y rows; ValueError naming the line."""
    import numpy as np

    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in line.replace(",", " ").split() if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not rows and number == 1:  # header line
                continue
            raise ValueError(f"{path}:{number}: not four numbers: {line!r}") from None
        if len(values) != 4:
            raise ValueError(f"{path}:{number}: expected rgb_x,rgb_y,event_x,event_y, got {len(values)} values")
        rows.append(values)
    array = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return array[:, :2], array[:, 2:]


def parse_pattern(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--pattern must be COLSxROWS, e.g. 7x6; got {text!r}") from None
    if cols < 2 or rows < 2:
        raise ValueError(f"--pattern needs at least 2x2 inner corners, got {text!r}")
    return cols, rows


def bag_pairs(bag: Path, rgb_topic: str, events_topic: str, window_ns: int, every: int):
    """(RGB frame, event frame) pairs from a bag: each frame with the events of packets stamped before it."""
    from collections import deque

    import numpy as np

    from microexp_ros.data.bag_io import BagReader
    from microexp_ros.data.typestore import typestore
    from microexp_ros.events.codecs import make_decoder
    from microexp_ros.events.frame import event_frame

    store, decoder, recent, pairs, frame_index = typestore(), None, deque(), [], 0
    for msg in BagReader(bag, [rgb_topic, events_topic]).messages():
        data = store.deserialize_cdr(msg.cdr, msg.msgtype)
        stamp = data.header.stamp.sec * 1_000_000_000 + data.header.stamp.nanosec
        if msg.topic == events_topic:
            if decoder is None:
                decoder = make_decoder(data.encoding, data.width, data.height)
            events = decoder.decode(data.events, time_base=int(data.time_base)).events
            recent.append((stamp, event_frame(events, int(data.width), int(data.height))))
            while recent and recent[0][0] < stamp - 10 * window_ns:
                recent.popleft()
            continue
        frame_index += 1
        if (frame_index - 1) % every or decoder is None:
            continue
        window = [f for t, f in recent if stamp - window_ns <= t < stamp]
        if not window:
            continue
        channels = {"mono8": 1, "bgr8": 3, "rgb8": 3}.get(data.encoding)
        if channels is None:
            raise ValueError(f"{bag}: {rgb_topic} has encoding {data.encoding!r}; expected mono8, bgr8 or rgb8")
        rows = np.asarray(data.data, np.uint8).reshape(int(data.height), int(data.step))
        image = rows[:, : int(data.width) * channels].reshape(int(data.height), int(data.width), channels)
        image = image[..., ::-1] if data.encoding == "rgb8" else image
        pairs.append((np.ascontiguousarray(image.squeeze()), np.sum(window, axis=0)))
    if decoder is None:
        raise ValueError(f"{bag}: no message on {events_topic}")
    return pairs


def params_yaml(params: list[float], comment: str) -> str:
    """face_region's params YAML holding the homography."""
    numbers = ", ".join(f"{v:.9g}" for v in params)
    return (f"# {comment}\nface_region:\n  ros__parameters:\n    homography: [{numbers}]\n")


def run_homography(args: argparse.Namespace) -> int:
    from microexp_ros.face.homography import estimate_from_checkerboards, estimate_homography

    if args.points is not None:
        rgb, events = read_points(args.points)
        fit, frames = estimate_homography(rgb, events, args.ransac_px), None
        source = str(args.points)
    else:
        if args.every < 1 or args.window_ms <= 0:
            raise ValueError("--every must be >= 1 and --window-ms > 0")
        pattern = parse_pattern(args.pattern)
        pairs = bag_pairs(args.bag, args.rgb_topic, args.events_topic, int(args.window_ms * 1e6), args.every)
        fit, frames = estimate_from_checkerboards(pairs, pattern, args.ransac_px)
        source = f"{args.bag} ({frames} of {len(pairs)} frame pairs show the board)"
    comment = (f"RGB -> event homography from {source}: {fit.inliers}/{fit.points} inliers, "
               f"RMS error {fit.rms_error_px:.3f} event px")
    text = params_yaml(fit.params(), comment)
    if args.output is not None:
        args.output.write_text(text)
    emit(args, {"homography": fit.params(), "inliers": fit.inliers, "points": fit.points,
                "rms_error_px": fit.rms_error_px, "frames_used": frames,
                "output": str(args.output) if args.output else None}, text.rstrip())
    return 0
