"""sensor_msgs/Image ↔ numpy for every supported encoding, with padded rows and big-endian data."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from microexp_ros.ros.image import ENCODINGS, ImageEncodingError, image_to_numpy, numpy_to_image, to_image, to_numpy

RNG = np.random.default_rng(3)


def sample(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def wire_message(array: np.ndarray, encoding: str, pad: int, bigendian: bool) -> Image:
    """An Image laid out by hand: rows padded with `pad` junk bytes, in the chosen byte order."""
    ordered = array.astype(array.dtype.newbyteorder(">" if bigendian else "<"))
    rows = ordered.reshape(array.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_round_trip(encoding):
    array = sample(encoding)
    msg = numpy_to_image(array, encoding)
    assert (msg.height, msg.width, msg.encoding) == (array.shape[0], array.shape[1], encoding)
    np.testing.assert_array_equal(image_to_numpy(msg), array)
    np.testing.assert_array_equal(to_numpy(to_image(array, encoding)), array)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("bigendian", [False, True])
def test_padded_rows_and_byte_order(encoding, bigendian):
    array = sample(encoding)
    msg = wire_message(array, encoding, pad=5, bigendian=bigendian)
    out = image_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("encoding", ["bgra8", "yuv422", "bayer_rggb8", "8UC3", ""])
def test_unsupported_encoding_names_it(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8)
    msg.data = bytes(16)
    with pytest.raises(ImageEncodingError, match="unsupported image encoding"):
        image_to_numpy(msg)


def test_truncated_and_inconsistent_images_are_clear_errors():
    msg = numpy_to_image(sample("mono16"), "mono16")
    short = Image(height=msg.height, width=msg.width, encoding="mono16", step=msg.step)
    short.data = bytes(msg.data)[:-3]
    with pytest.raises(ImageEncodingError, match="needs"):
        image_to_numpy(short)
    bad_step = Image(height=msg.height, width=msg.width, encoding="mono16", step=msg.width)
    bad_step.data = bytes(msg.data)
    with pytest.raises(ImageEncodingError, match="step"):
        image_to_numpy(bad_step)
    with pytest.raises(ImageEncodingError, match="empty"):
        image_to_numpy(Image(height=0, width=4, encoding="mono8", step=4))
    with pytest.raises(ImageEncodingError, match="dtype"):
        numpy_to_image(sample("mono16"), "mono8")
    with pytest.raises(ImageEncodingError, match="shape"):
        numpy_to_image(sample("bgr8")[..., :2], "bgr8")
