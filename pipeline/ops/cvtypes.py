"""OpenCV's results under their real types.

OpenCV's stubs type every image it returns as ``MatLike`` (any dtype); an image OpenCV
resizes, warps, rotates, pads or recolours keeps the dtype of its input, and its decoders give
uint8. :func:`u8` says so once, here, instead of a cast at every call.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from numpy.typing import NDArray


def u8(image: Any) -> NDArray[np.uint8]:
    """An OpenCV result computed from (or decoded to) uint8 pixels, typed as such."""
    return cast(NDArray[np.uint8], image)
