"""The simulator as a live event source: frames in, (events, triggers) packets of bounded duration out.

The event camera driver wraps each chunk into an EventPacket (evt3 via Evt3Encoder), exactly as it would a
real camera's USB buffers, so the rest of the graph cannot tell simulated from real input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from microexp_ros.events.array import empty_events, empty_triggers
from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig, resample
from microexp_ros.sim.video import bgr_to_linear, check_crop


def sensor_luminance(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """A camera's uint8 BGR frame as a width x height sensor sees it: linear luminance of its largest centred
    box of the sensor's aspect ratio (so the face is not squashed), area-resampled."""
    x, y, w, h = check_crop(None, bgr.shape[1], bgr.shape[0], aspect=width / height)
    return resample(bgr_to_linear(bgr[y:y + h, x:x + w]), width, height)


class SimulatedEventSource:
    """Iterate to get (events, triggers) chunks covering consecutive windows of `packet_ns` from the first frame.

    Every window up to the last frame time is yielded, empty or not, so consumers see time advance.
    Triggers (rising edges, channel 0, like a camera's strobe line) come at every input frame with
    frame_triggers, or at the increasing times of trigger_times (e.g. only the original video frames when the
    input is flow-upsampled); trigger times past the last frame are not reached.
    """

    def __init__(self, frames: Iterable[tuple[int, np.ndarray]], width: int, height: int,
                 config: SensorConfig = SensorConfig(), seed: int = 0, packet_ns: int = 1_000_000,
                 frame_triggers: bool = False, trigger_times: Iterable[int] | None = None) -> None:
        if int(packet_ns) <= 0:
            raise ValueError(f"packet_ns must be > 0, got {packet_ns}")
        if frame_triggers and trigger_times is not None:
            raise ValueError("give either frame_triggers or trigger_times, not both")
        self._frames = frames
        self.simulator = EventSimulator(width, height, config, seed)
        self.packet_ns = int(packet_ns)
        self.frame_triggers = frame_triggers
        self._trigger_times = iter(trigger_times) if trigger_times is not None else None
        self._next_trigger: int | None = None

    def _triggers_until(self, t_ns: int) -> np.ndarray:
        """Rising edges due at or before t_ns (the frame time just reached)."""
        if self.frame_triggers:
            times = [t_ns]
        elif self._trigger_times is not None:
            times = []
            while True:
                if self._next_trigger is None:
                    self._next_trigger = next(self._trigger_times, None)
                    if self._next_trigger is None:
                        self._trigger_times = None
                        break
                if self._next_trigger > t_ns:
                    break
                if times and self._next_trigger <= times[-1]:
                    raise ValueError(f"trigger_times must increase: {self._next_trigger} after {times[-1]}")
                times.append(int(self._next_trigger))
                self._next_trigger = None
        else:
            times = []
        trig = empty_triggers(len(times))
        trig["t"], trig["edge"], trig["id"] = times, 1, 0
        return trig

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        frames = iter(self._frames)
        try:
            t0, frame = next(frames)
        except StopIteration:
            raise ValueError("SimulatedEventSource needs at least one (t_ns, frame) pair") from None
        self.simulator.reset(frame, t0)
        events, triggers = empty_events(), self._triggers_until(int(t0))
        start = int(t0)
        for t_ns, frame in frames:
            events = np.concatenate([events, self.simulator.step(frame, t_ns)])
            triggers = np.concatenate([triggers, self._triggers_until(int(t_ns))])
            while start + self.packet_ns <= int(t_ns):  # everything before t_ns is known now
                end = start + self.packet_ns
                ne = int(np.searchsorted(events["t"], end))
                nt = int(np.searchsorted(triggers["t"], end))
                yield events[:ne], triggers[:nt]
                events, triggers, start = events[ne:], triggers[nt:], end
        if events.size or triggers.size:
            yield events, triggers
