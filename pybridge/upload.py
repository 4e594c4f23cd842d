"""Step 2, upload: numpy -> GPU buffer with one CPU copy.

`queue.writeBuffer` is handed the array's wasm-heap view (see view.py); the browser copies
the bytes once into its staging memory. Nothing is copied on the Python side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pybridge._env import require_browser
from pybridge.view import as_viewable


def write_buffer(queue: Any, buffer: Any, arr: np.ndarray, offset: int = 0) -> None:
    """Copy `arr` into `buffer` at byte `offset`. Copies the data once (in the browser)."""
    require_browser("write_buffer")
    import pybridge_js  # registered by web/worker.js

    pybridge_js.writeBuffer(queue, buffer, offset, as_viewable(arr))


def create_buffer(device: Any, nbytes: int, usage: int, label: str = "") -> Any:
    """A GPU buffer of `nbytes` (rounded up to 4) with the given GPUBufferUsage flags."""
    require_browser("create_buffer")
    import js
    from pyodide.ffi import to_js

    size = max(4, (nbytes + 3) // 4 * 4)
    return device.createBuffer(
        to_js({"size": size, "usage": usage, "label": label}, dict_converter=js.Object.fromEntries)
    )
