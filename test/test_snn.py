"""The spiking AU network, the reference CNN, the safe weights format and the activation hysteresis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from microexp_ros.events.array import empty_events, synthetic_events
from microexp_ros.events.denoise import background_activity_filter
from microexp_ros.facs import MODEL_AUS, SINGLE_LABEL_CLASSES
from microexp_ros.models.au_inference import (ActivationFilter, AUPredictor, AUResult, FrameHistory, WindowAverage,
                                              build_au_model, encode_events, fuse, fuse_probabilities,
                                              time_reversed)
from microexp_ros.models.weights import WeightsError, load_model, read_sidecar, save_model, sidecar_path

SIZE, BINS = 32, 6
SNN_CONFIG = {"arch": "snn", "modality": "events", "in_channels": 2, "bins": BINS, "size": SIZE}
CNN_CONFIG = {"arch": "cnn", "modality": "rgb", "in_channels": 1, "bins": BINS, "size": SIZE}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def moving_bar(direction: int, rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Events of a bright edge sweeping across a 32x32 sensor in one of four directions over 100 ms."""
    ev = empty_events(n)
    t = np.sort(rng.integers(0, 100_000_000, n))
    pos = (t / 100_000_000 * (SIZE - 1)).astype(int)
    other = rng.integers(0, SIZE, n)
    x, y = (pos, other) if direction in (0, 1) else (other, pos)
    if direction in (1, 3):
        x, y = (SIZE - 1 - x, y) if direction == 1 else (x, SIZE - 1 - y)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, rng.random(n) < 0.8
    return ev


def bar_windows(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 4
    x = np.stack([encode_events(moving_bar(int(k), rng), 0, 100_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE), SIZE, BINS)
                  for k in labels])
    return torch.from_numpy(x), torch.from_numpy(labels)


@pytest.mark.parametrize("config", [SNN_CONFIG, CNN_CONFIG])
def test_output_shapes_and_wrong_input_shape(config):
    model = build_au_model(config).eval()
    x = torch.rand(3, BINS, config["in_channels"], SIZE, SIZE)
    au_logits, class_logits = model(x)
    assert au_logits.shape == (3, len(MODEL_AUS)) and class_logits.shape == (3, len(SINGLE_LABEL_CLASSES))
    with pytest.raises(ValueError, match=r"model input must have shape \[batch"):
        model(torch.rand(3, BINS, config["in_channels"], SIZE + 8, SIZE + 8))
    with pytest.raises(ValueError, match="model input"):
        model(torch.rand(BINS, config["in_channels"], SIZE, SIZE))


def test_unknown_arch_and_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="unknown AU model arch"):
        build_au_model({"arch": "transformer"})
    with pytest.raises(ValueError, match="multiple of"):
        build_au_model(dict(SNN_CONFIG, size=36))
    with pytest.raises(ValueError, match="surrogate"):
        build_au_model(dict(SNN_CONFIG, surrogate="relu"))
    with pytest.raises(ValueError, match="readout"):
        build_au_model(dict(SNN_CONFIG, readout="voltage"))
    with pytest.raises(ValueError, match="input_norm"):
        build_au_model(dict(SNN_CONFIG, input_norm="standardise"))


def test_centered_input_ignores_a_uniform_floor_per_channel():
    """input_norm "center": a constant added to every cell of a channel (the floor of noise or flicker) leaves
    the outputs unchanged; without it the same floor changes them, and so does a local change either way.
    The shipped network's weights, so that spikes reach the heads."""
    predictor = AUPredictor.from_file()
    sensor, window = 2 * predictor.size, predictor.window_ns
    x = torch.from_numpy(np.stack([
        predictor.encode(synthetic_events(sensor, sensor, 0, window, count=count, seed=seed), 0, window,
                         (0, 0, sensor, sensor), (sensor, sensor)) for seed, count in enumerate((4000, 20000))]))
    floor = x + torch.tensor([0.9, 0.4]).view(1, 1, 2, 1, 1)
    local = x.clone()
    local[:, :, 1, :16, :16] += 0.9
    plain = predictor.model
    centered = build_au_model(dict(predictor.meta["config"], input_norm="center")).eval()
    centered.load_state_dict(plain.state_dict())
    with torch.no_grad():
        base = centered(x)[0]
        assert torch.allclose(centered(floor)[0], base, atol=1e-5)
        assert not torch.allclose(centered(local)[0], base, atol=1e-3)
        assert not torch.allclose(plain(floor)[0], plain(x)[0], atol=1e-3)


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
def test_snn_learns_moving_edges_and_decay_is_learned(readout):
    """Overfit a tiny labelled set of real event histograms: loss falls and training accuracy reaches 100 %."""
    torch.manual_seed(0)
    x, y = bar_windows(16, seed=1)
    model = build_au_model(dict(SNN_CONFIG, dropout=0.0, readout=readout))
    beta_before = model.lifs[0].beta.detach().clone()
    readout_beta_before = model.fc_lif.beta.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, accuracy = [], 0.0
    for step in range(1, 81):
        model.train()
        _, logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                accuracy = float((model(x)[1].argmax(1) == y).float().mean())
            if accuracy == 1.0 and losses[-1] < 0.25 * losses[0]:
                break
    assert losses[-1] < 0.25 * losses[0]
    assert accuracy == 1.0
    assert not torch.equal(model.lifs[0].beta.detach(), beta_before), "learn_beta must make the decay trainable"
    assert not torch.equal(model.fc_lif.beta.detach(), readout_beta_before)


def test_save_load_round_trip_is_exact_and_deterministic(tmp_path):
    torch.manual_seed(3)
    model = build_au_model(SNN_CONFIG)
    x, _ = bar_windows(4, seed=2)
    model.train()
    model(x)  # move BN running statistics away from their initial values
    model.eval()
    path = save_model(tmp_path / "m.safetensors", model, SNN_CONFIG, {"seed": 3, "command": "test"})
    # Not a pickle: safetensors starts with a little-endian header length followed by a JSON header.
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8:8 + header_len])["__metadata__"]["format"] == "microexp-weights/1"
    loaded, meta = load_model(path, build_au_model)
    assert meta["seed"] == 3 and meta["config"] == SNN_CONFIG
    with torch.no_grad():
        a1, c1 = model(x)
        a2, c2 = loaded(x)
        a3, c3 = loaded(x)
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    assert torch.equal(a2, a3) and torch.equal(c2, c3)


def test_inference_neuron_loop_equals_snntorch_on_the_shipped_model():
    """Without autograd the network runs its own neuron loop; it must give snntorch's spikes exactly."""
    predictor = AUPredictor.from_file()
    model = predictor.model
    sensor, window = 2 * predictor.size, predictor.window_ns
    x = torch.from_numpy(np.stack([
        predictor.encode(synthetic_events(sensor, sensor, 0, window, count=count, seed=seed), 0, window,
                         (0, 0, sensor, sensor), (sensor, sensor))
        for seed, count in enumerate((500, 4000, 20000, 60000))]))
    with torch.no_grad():
        fast = model(x)
    with torch.enable_grad():
        reference = model(x)
    assert all(torch.equal(a, b.detach()) for a, b in zip(fast, reference))
    assert len({tuple(row.tolist()) for row in fast[1]}) == len(x)  # the inputs drive different spike trains


def test_missing_and_incompatible_weights_raise_clear_errors(tmp_path):
    model = build_au_model(SNN_CONFIG)
    path = save_model(tmp_path / "m.safetensors", model, SNN_CONFIG, {})
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_model(tmp_path / "absent.safetensors", build_au_model)
    # The config now asks for narrower layers: the stored tensors no longer fit.
    record = read_sidecar(path)
    record["config"]["channels"] = [8, 16, 32]
    sidecar_path(path).write_text(json.dumps(record))
    with pytest.raises(WeightsError, match="do not fit the model.*wrong shape"):
        load_model(path, build_au_model)
    # A sidecar from another file is caught by its checksum.
    record["sha256"] = "0" * 64
    sidecar_path(path).write_text(json.dumps(record))
    with pytest.raises(WeightsError, match="sha256 differs"):
        load_model(path, build_au_model)
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="sidecar not found"):
        load_model(path, build_au_model)
    with pytest.raises(WeightsError, match=r"must end in \.safetensors"):
        save_model(tmp_path / "m.pt", model, SNN_CONFIG, {})


def test_predictor_rejects_wrong_modality_and_bad_roi(tmp_path):
    path = save_model(tmp_path / "m.safetensors", build_au_model(SNN_CONFIG), SNN_CONFIG, {})
    predictor = AUPredictor.from_file(path)
    events = moving_bar(0, np.random.default_rng(0))
    result = predictor.predict(events, 0, 100_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE))
    assert result.probabilities.shape == (len(MODEL_AUS),) and result.label in SINGLE_LABEL_CLASSES
    assert np.isclose(result.class_probabilities.sum(), 1.0, atol=1e-5) and result.latency_ms > 0
    with pytest.raises(ValueError, match="must lie inside the 32x32 sensor"):
        predictor.predict(events, 0, 100_000_000, (8, 8, SIZE, SIZE), (SIZE, SIZE))
    with pytest.raises(ValueError, match="takes events input, not rgb"):
        predictor.predict_frames(np.zeros((2, SIZE, SIZE), np.uint8), np.array([0, 1]), 0, 10, (0, 0, SIZE, SIZE))


def test_flip_average_fuses_the_window_with_its_mirror_image(tmp_path):
    torch.manual_seed(3)
    model = build_au_model(SNN_CONFIG)
    with torch.no_grad():   # at initialisation it barely spikes: scaled up, its outputs depend on the input
        for param in model.parameters():
            param.mul_(6.0 if param.dim() > 1 else 1.0)
    path = save_model(tmp_path / "m.safetensors", model, SNN_CONFIG, {})
    predictor = AUPredictor.from_file(path)
    x = encode_events(moving_bar(0, np.random.default_rng(1)), 0, 100_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE),
                      SIZE, BINS)   # a bar sweeping left to right: its mirror image sweeps the other way
    plain, mirrored = predictor.forward(x), predictor.forward(np.ascontiguousarray(x[..., ::-1]))
    assert predictor.runner == "traced"
    predictor.flip_average = True
    assert predictor.runner == "eager"          # the batch changed: traced again on the next window
    both = predictor.forward(x)
    assert predictor.runner == "traced"
    want_classes, want_aus = fuse_probabilities([plain.class_probabilities, mirrored.class_probabilities],
                                                [plain.probabilities, mirrored.probabilities])
    np.testing.assert_allclose(both.class_probabilities, want_classes, rtol=0, atol=1e-6)
    np.testing.assert_allclose(both.probabilities, want_aus, rtol=0, atol=1e-6)
    assert both.label == SINGLE_LABEL_CLASSES[int(np.argmax(want_classes))]
    assert np.abs(plain.class_probabilities - mirrored.class_probabilities).max() > 1e-3   # the views differ
    assert AUPredictor.from_file(path, flip_average=True).forward(x).probabilities == pytest.approx(
        both.probabilities, abs=1e-6)


def test_net_encoding_cancels_polarity_symmetric_counts():
    # Pixel (3, 5) fires 3 ON and 3 OFF events per bin (a flicker ripple); pixel (10, 2) 4 ON events per bin
    # (an edge moving one way): only the second survives in the net channel.
    t = np.arange(BINS)[:, None] * 10_000_000 + np.arange(1, 11)[None, :] * 100_000
    ev = empty_events(t.size)
    ev["t"] = t.ravel()
    ev["x"], ev["y"], ev["p"] = np.tile([3, 3, 3, 3, 3, 3, 10, 10, 10, 10], BINS), \
        np.tile([5, 5, 5, 5, 5, 5, 2, 2, 2, 2], BINS), np.tile([1, 0, 1, 0, 1, 0, 1, 1, 1, 1], BINS)
    args = (ev, 0, BINS * 10_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE), SIZE, BINS)
    plain, net = encode_events(*args), encode_events(*args, encoding="polarity_net")
    assert plain.shape == (BINS, 2, SIZE, SIZE) and net.shape == (BINS, 3, SIZE, SIZE)
    assert np.array_equal(net[:, :2], plain)
    assert np.allclose(plain[:, :, 5, 3], np.log1p(3)) and np.all(net[:, 2, 5, 3] == 0)
    assert np.allclose(net[:, 2, 2, 10], np.log1p(4)) and np.count_nonzero(net[:, 2]) == BINS
    ev["p"] = 0  # every event OFF: the net count turns negative
    assert np.allclose(encode_events(*args, encoding="polarity_net")[:, 2, 2, 10], -np.log1p(4))
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode_events(*args, encoding="voxel")


def test_baf_encoding_adds_the_counts_of_the_events_the_filter_keeps():
    rng = np.random.default_rng(2)
    bar = moving_bar(0, rng)
    noise = synthetic_events(SIZE, SIZE, 0, 100_000_000, count=300, seed=3)   # scattered: few neighbours
    events = np.sort(np.concatenate([bar, noise]), order="t")
    args = (0, 100_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE), SIZE, BINS)
    baf = encode_events(events, *args, encoding="polarity_baf", baf_dt_ns=2_000_000)
    assert baf.shape == (BINS, 4, SIZE, SIZE)
    assert np.array_equal(baf[:, :2], encode_events(events, *args))
    kept = background_activity_filter(events, SIZE, SIZE, 2_000_000)
    assert np.array_equal(baf[:, 2:], encode_events(kept, *args))
    assert not np.array_equal(baf[:, 2:], baf[:, :2])
    bar_kept = len(background_activity_filter(bar, SIZE, SIZE, 2_000_000)) / len(bar)
    noise_kept = len(background_activity_filter(noise, SIZE, SIZE, 2_000_000)) / len(noise)
    assert bar_kept > 0.8 > 0.2 > noise_kept, (bar_kept, noise_kept)
    with pytest.raises(ValueError, match="baf_dt_ns"):
        encode_events(events, *args, encoding="polarity_baf", baf_dt_ns=None)
    assert np.array_equal(encode_events(events, *args, baf_dt_ns=None), baf[:, :2])   # unused without the filter
    with pytest.raises(ValueError, match="cannot be played backwards"):
        time_reversed(torch.from_numpy(baf)[None])


def test_predictor_encodes_with_the_weights_encoding_and_rejects_a_mismatch(tmp_path):
    config = {**SNN_CONFIG, "in_channels": 3, "encoding": "polarity_net"}
    predictor = AUPredictor.from_file(save_model(tmp_path / "net.safetensors", build_au_model(config), config, {}))
    events = moving_bar(0, np.random.default_rng(0))
    window = (events, 0, 100_000_000, (0, 0, SIZE, SIZE), (SIZE, SIZE))
    assert predictor.encode(*window).shape == (BINS, 3, SIZE, SIZE)
    assert predictor.predict(*window).probabilities.shape == (len(MODEL_AUS),)
    config = {**SNN_CONFIG, "in_channels": 3}  # three channels but the 2-channel default encoding
    path = save_model(tmp_path / "bad.safetensors", build_au_model(config), config, {})
    with pytest.raises(WeightsError, match="encoding 'polarity' with 3 input channels"):
        AUPredictor.from_file(path)


def test_activation_filter_hysteresis():
    filt = ActivationFilter(on_threshold=0.6, off_threshold=0.4, min_windows=2, count=2)
    seq = [(0.7, 0.1), (0.7, 0.65), (0.5, 0.1), (0.3, 0.9), (0.3, 0.9), (0.5, 0.2)]
    states = [tuple(filt.update(np.array(p))) for p in seq]
    # AU a: on after two high windows, stays on at 0.5 (between thresholds), off after two low ones.
    assert [s[0] for s in states] == [False, True, True, True, False, False]
    # AU b: a single high window is not enough; two in a row are.
    assert [s[1] for s in states] == [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="expected 2 probabilities"):
        filt.update(np.zeros(3))
    with pytest.raises(ValueError, match="off_threshold <= on_threshold"):
        ActivationFilter(on_threshold=0.3, off_threshold=0.5)


def test_window_average_is_the_mean_of_the_last_windows():
    average = WindowAverage(3)
    windows = [np.array([0.9, 0.0]), np.array([0.3, 0.6]), np.array([0.0, 0.3]), np.array([0.6, 0.9])]
    got = [average.update(p) for p in windows]
    np.testing.assert_allclose(got, [[0.9, 0.0], [0.6, 0.3], [0.4, 0.3], [0.3, 0.6]])  # the first ones: fewer
    average.reset()
    np.testing.assert_allclose(average.update(np.array([0.2, 0.4])), [0.2, 0.4])
    np.testing.assert_array_equal(WindowAverage(1).update(np.array([0.25, 0.5])), [0.25, 0.5])
    with pytest.raises(ValueError, match="shape"):
        average.update(np.zeros(3))
    with pytest.raises(ValueError, match="window count must be >= 1"):
        WindowAverage(0)


@pytest.mark.parametrize("encoding", ["polarity", "polarity_net"])
def test_time_reversed_input_is_the_encoding_of_the_reversed_events(encoding):
    """The training augmentation equals encoding the events played backwards: t -> t0 + t1 - 1 - t, ON <-> OFF."""
    t0, t1, sensor = 0, 200_000_000, (48, 48)
    events = synthetic_events(*sensor, t0, t1, count=5000, seed=4)
    events["p"][events["x"] < 20] = 1   # one polarity on the left, so that swapping polarities shows
    backwards = events[::-1].copy()
    backwards["t"] = t0 + t1 - 1 - backwards["t"]
    backwards["p"] = 1 - backwards["p"]
    args = ((0, 0, *sensor), sensor, 32, 4, encoding)
    forward = torch.from_numpy(encode_events(events, t0, t1, *args))[None]
    expected = torch.from_numpy(encode_events(backwards, t0, t1, *args))[None]
    assert torch.equal(time_reversed(forward), expected) and not torch.equal(forward, expected)


def test_fusion_is_a_normalised_geometric_mean_of_class_probabilities_and_a_mean_of_au_probabilities():
    k = len(SINGLE_LABEL_CLASSES)
    a, b = np.full(k, 0.5 / (k - 1)), np.full(k, 0.5 / (k - 1))
    a[1], b[1] = 0.5, 0.5
    a[2], b[2] = 0.3, 0.0                   # one expert rules a class out: the product does too
    a, b = a / a.sum(), b / b.sum()
    au_a, au_b = np.linspace(0, 1, 12), np.linspace(1, 0, 12)
    fused = fuse([AUResult(au_a, 0, 0.0, a, 2.0), AUResult(au_b, 0, 0.0, b, 3.0)])
    want = np.sqrt(a * np.clip(b, 1e-12, None))
    np.testing.assert_allclose(fused.class_probabilities, want / want.sum(), rtol=1e-9)
    np.testing.assert_allclose(fused.probabilities, np.full(12, 0.5))
    assert fused.class_probabilities[2] < 1e-5 and fused.label == SINGLE_LABEL_CLASSES[1]
    assert fused.latency_ms == 5.0


def test_frame_history_keeps_the_last_frames_and_restarts_on_a_new_size():
    history = FrameHistory(3)
    with pytest.raises(ValueError, match="no frame"):
        history.arrays()
    for t in range(5):
        history.add(t * 10, np.full((4, 6), t, np.uint8))
    frames, times = history.arrays()
    assert times.tolist() == [20, 30, 40] and frames[:, 0, 0].tolist() == [2, 3, 4]
    history.add(50, np.zeros((8, 6), np.uint8))
    frames, times = history.arrays()
    assert times.tolist() == [50] and frames.shape == (1, 8, 6)
