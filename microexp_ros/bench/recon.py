"""Speed of frame reconstruction on CPU: the CVAE (deterministic prior-mean decode, batch 1) against the
FireNet-style baseline measured in the same run, at a 128x128 face crop and the DAVIS346 size.

Figures: median and p99 ms per frame, frames per second (1 / median), and the CVAE/FireNet speed ratio.
The model-only rows time the network on a voxel grid; the end-to-end row adds building the voxel grid from
an event window through `Reconstructor.reconstruct`, the call the node makes.
"""

from __future__ import annotations

import numpy as np
import torch

from microexp_ros.bench.timing import latencies_ms
from microexp_ros.events.array import synthetic_events

SIZES = ((128, 128), (346, 260))
WARMUP = 3  # untimed calls before each timed series


def run_benchmark(threads: int = 2, repeats: int = 50, weights=None, density: float = 0.05) -> dict:
    """Timings of the CVAE and FireNet at each size; the returned dict has `rows` and `fps_<size>` keys."""
    from microexp_ros.models.cvae import CVAEConfig, ReconCVAE
    from microexp_ros.models.firenet import FireNet
    from microexp_ros.models.recon_inference import Reconstructor, default_weights

    torch.set_num_threads(threads)
    path = default_weights() if weights is None else weights
    if weights is None and not path.is_file():
        # Timing does not depend on the values of the weights; say so instead of failing.
        rec, label = Reconstructor(ReconCVAE(CVAEConfig())), "untrained default CVAEConfig (no shipped weights)"
    else:
        rec, label = Reconstructor.from_file(path), str(path)
    firenet = FireNet().eval()
    window_ns = 33_333_333
    rows, payload = [], {"threads": threads, "repeats": repeats, "weights": label,
                         "cvae_parameters": sum(p.numel() for p in rec.model.parameters()),
                         "firenet_parameters": sum(p.numel() for p in firenet.parameters())}
    with torch.no_grad():
        for w, h in SIZES:
            voxel = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, (1, rec.bins, h, w)).astype(np.float32))
            key = torch.rand(1, 1, h, w) if rec.uses_keyframe else None
            fire_voxel = voxel[:, : firenet.cfg.bins]
            state = firenet.initial_state(fire_voxel)
            events = synthetic_events(w, h, 0, window_ns, count=int(density * w * h))
            keyframe = np.full((h, w), 128, np.uint8) if rec.uses_keyframe else None
            cvae_ms = latencies_ms(lambda: rec.model.reconstruct(voxel, key), repeats, WARMUP)
            fire_ms = latencies_ms(lambda: firenet(fire_voxel, state), repeats, WARMUP)
            e2e_ms = latencies_ms(lambda: rec.reconstruct(events, 0, window_ns, w, h, keyframe=keyframe), repeats,
                                  WARMUP)
            baseline = float(np.median(fire_ms))
            for name, ms in (("cvae (model)", cvae_ms), ("firenet (model)", fire_ms),
                             (f"cvae end-to-end ({events.size} events)", e2e_ms)):
                med = float(np.median(ms))
                rows.append({"what": name, "size": f"{w}x{h}", "median_ms": med, "p99_ms": float(np.percentile(ms, 99)),
                             "fps": 1000.0 / med, "speed_vs_firenet": baseline / med})
            tag = "128" if (w, h) == (128, 128) else f"{w}x{h}"
            payload[f"fps_{tag}"] = 1000.0 / float(np.median(cvae_ms))
            payload[f"fps_{tag}_end_to_end"] = 1000.0 / float(np.median(e2e_ms))
            payload[f"firenet_fps_{tag}"] = 1000.0 / baseline
            payload[f"speedup_vs_firenet_{tag}"] = baseline / float(np.median(cvae_ms))
    payload["rows"] = rows
    return payload
