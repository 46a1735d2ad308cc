"""OpenCV's results under their real types.

OpenCV's stubs type every image it returns as ``MatLike`` (any dtype); an image OpenCV
resizes, warps, rotates, pads or recolours keeps the dtype of its input, its decoders give
uint8, and ``blobFromImages`` gives float32. :func:`u8` and :func:`f32` say so once, here,
instead of a cast at every call.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from numpy.typing import NDArray


def u8(image: Any) -> NDArray[np.uint8]:
    """An OpenCV result computed from (or decoded to) uint8 pixels, typed as such."""
    return cast(NDArray[np.uint8], image)


def f32(array: Any) -> NDArray[np.float32]:
    """An OpenCV (or model runtime) result that is float32, typed as such."""
    return cast(NDArray[np.float32], array)
