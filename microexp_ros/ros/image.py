"""sensor_msgs/Image ↔ numpy: cv_bridge when a working ROS 2 one is importable, else our own converter.

The PyPI `cv-bridge` is the ROS 1 package and fails on numpy 2, so an import alone does not prove a working
bridge: the first conversion decides, once per process.
"""

from __future__ import annotations

import sys
from functools import cache

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

# encoding → (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgb8": (np.dtype(np.uint8), 3),
    "32FC1": (np.dtype(np.float32), 1),
}


class ImageEncodingError(ValueError):
    """An image whose encoding, size or data cannot be converted."""


def _layout(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ImageEncodingError(
            f"unsupported image encoding '{encoding}' (supported: {', '.join(ENCODINGS)})") from None


def image_to_numpy(msg: Image) -> np.ndarray:
    """The image as an array [H, W] or [H, W, C] in native byte order; honours `step` padding and endianness."""
    dtype, channels = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height == 0 or width == 0:
        raise ImageEncodingError(f"empty image ({width}x{height}, encoding {msg.encoding})")
    if step < row_bytes:
        raise ImageEncodingError(f"image step {step} is shorter than a row ({row_bytes} bytes for {width} px "
                                 f"of {msg.encoding})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * (height - 1) + row_bytes:
        raise ImageEncodingError(f"image data has {data.size} bytes, {width}x{height} {msg.encoding} with step "
                                 f"{step} needs {step * (height - 1) + row_bytes}")
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, row_bytes), strides=(step, 1))
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    array = np.ascontiguousarray(rows).view(wire).astype(dtype.newbyteorder("="), copy=False)
    return array.reshape(height, width, channels) if channels > 1 else array.reshape(height, width)


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message (no padding, this machine's byte order) from an array matching `encoding`."""
    dtype, channels = _layout(encoding)
    if array.dtype != dtype:
        raise ImageEncodingError(f"{encoding} needs dtype {dtype}, got {array.dtype}")
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ImageEncodingError(f"{encoding} needs shape (H, W{'' if channels == 1 else f', {channels}'}), "
                                 f"got {array.shape}")
    array = np.ascontiguousarray(array)
    msg = Image(header=header or Header(), height=array.shape[0], width=array.shape[1], encoding=encoding,
                is_bigendian=int(sys.byteorder == "big"), step=array.shape[1] * channels * dtype.itemsize)
    msg.data = array.tobytes()
    return msg


@cache
def _bridge():
    """A working ROS 2 cv_bridge, or None."""
    try:
        from cv_bridge import CvBridge
        bridge = CvBridge()
        probe = bridge.cv2_to_imgmsg(np.zeros((2, 2), np.uint8), encoding="mono8")
        bridge.imgmsg_to_cv2(probe, desired_encoding="passthrough")
    except Exception:  # absent, or the ROS 1 PyPI package that fails on numpy 2
        return None
    return bridge


def to_numpy(msg: Image) -> np.ndarray:
    """Image → array, through cv_bridge where it works, else `image_to_numpy` (same result)."""
    _layout(msg.encoding)
    bridge = _bridge()
    if bridge is None:
        return image_to_numpy(msg)
    return bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")


def to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Array → Image, through cv_bridge where it works, else `numpy_to_image` (same result)."""
    bridge = _bridge()
    if bridge is None:
        return numpy_to_image(array, encoding, header)
    _layout(encoding)
    return bridge.cv2_to_imgmsg(array, encoding=encoding, header=header)
