"""A montage PNG of dataset clips so a person can see what was generated: per clip, the webcam frame and the
ground truth at the AU apex, the event frames of both sensors over the onset -> apex window, and a timeline of
the AU activation against the event rate and the webcam frame times."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microexp_ros.data.dataset import Clip
from microexp_ros.events.frame import event_frame
from microexp_ros.events.window import window_slice
from microexp_ros.facs import au_name
from microexp_ros.viz.render import signed_colors


def default_montage_clips(entries: list[dict], limit: int = 6) -> list[str]:
    """One labelled (non-neutral, micro) clip per lighting condition, up to `limit`."""
    chosen: dict[str, str] = {}
    for c in entries:
        if c["label"] != 0 and not c.get("macro") and c["lighting"] not in chosen:
            chosen[c["lighting"]] = c["id"]
    return list(chosen.values())[:limit]


def focus_window(meta: dict) -> tuple[int, int]:
    """The [t0, t1) ns window to show: onset -> offset of the main AU, or the middle 200 ms of a neutral clip."""
    main = [a for a in meta["aus"] if a.get("role", "main") == "main"]
    if main:
        return int(main[0]["onset_ns"]), int(main[0]["offset_ns"])
    mid = int(meta["duration_ns"]) // 2
    return mid - 100_000_000, mid + 100_000_000


def write_montage(clips: list[Clip], path: str | os.PathLike, manifest: dict) -> Path:
    """Write the montage of `clips` to `path` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not clips:
        raise ValueError("montage needs at least one clip")
    res = manifest["resolutions"]
    fig, axes = plt.subplots(len(clips), 5, figsize=(17, 3.2 * len(clips)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 2.2]}, squeeze=False)
    for row, clip in zip(axes, clips):
        meta = clip.meta
        t0, t1 = focus_window(meta)
        apex = int(next((a["apex_ns"] for a in meta["aus"] if a.get("role", "main") == "main"), (t0 + t1) // 2))
        k = int(np.argmin(np.abs(clip.rgb_t - apex)))
        row[0].imshow(clip.rgb[k][..., ::-1])
        row[0].set_title(f"RGB @ {clip.rgb_t[k] / 1e6:.0f} ms\n{meta['lighting']}", fontsize=9)
        row[1].imshow(clip.gray["high"][k], cmap="gray", vmin=0, vmax=255)
        row[1].set_title("ground truth (high)", fontsize=9)
        for ax, r in ((row[2], "high"), (row[3], "low")):
            w, h = res[r]["width"], res[r]["height"]
            ev = window_slice(clip.events[r], t0, t1)
            ax.imshow(signed_colors(event_frame(ev, w, h)), interpolation="nearest")
            ax.set_title(f"events {r} {w}x{h} (blurred)\n{len(ev)} ev in {t0 / 1e6:.0f}-{t1 / 1e6:.0f} ms", fontsize=9)
        for ax in row[:4]:
            ax.set_xticks([])
            ax.set_yticks([])
        _timeline(row[4], clip)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _timeline(ax, clip: Clip) -> None:
    from microexp_ros.sim.facs_motion import AUEvent

    meta = clip.meta
    duration = int(meta["duration_ns"])
    bins = np.arange(0, duration + 1, 10_000_000)
    rate = np.histogram(clip.events["high"]["t"], bins=bins)[0] / 10.0  # events per ms
    centres = (bins[:-1] + bins[1:]) / 2e6
    ax.plot(centres, rate / max(rate.max(), 1.0), color="0.5", lw=1, label="event rate (high, norm.)")
    t = np.linspace(0, duration, 400)
    for a in meta["aus"]:
        e = AUEvent(au=a["au"], intensity=a["intensity"], onset_ns=a["onset_ns"], apex_ns=a["apex_ns"],
                    offset_ns=a["offset_ns"])
        style = "-" if a.get("role", "main") == "main" else ":"
        ax.plot(t / 1e6, e.activation(t), style, lw=2,
                label=f"AU{a['au']} {au_name(a['au'])} ({a.get('role', 'main')}, I={a['intensity']:.1f})")
    for ft in clip.rgb_t:
        ax.axvline(ft / 1e6, color="tab:green", alpha=0.15, lw=1)
    kind = "macro" if meta.get("macro") else "micro"
    ax.set_title(f"{meta['id']} {meta['identity']} label {meta['label']} ({kind}); green = RGB frames", fontsize=9)
    ax.set_xlim(0, duration / 1e6)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("ms")
    ax.legend(fontsize=7, loc="upper left")
