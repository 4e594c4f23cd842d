"""Steps 4 and 5, readback: GPU buffer -> MAP_READ buffer -> numpy, one CPU copy.

The GPU copies the result into a MAP_READ buffer; after `await mapAsync` the mapped range is
copied once, in JS, straight into the numpy array's wasm-heap view (`out`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pybridge._env import require_browser
from pybridge.upload import create_buffer
from pybridge.view import as_viewable


async def read_buffer(device: Any, buffer: Any, out: np.ndarray, offset: int = 0) -> np.ndarray:
    """Fill `out` with `out.nbytes` bytes of `buffer` from byte `offset`. Copies the data once
    on the CPU (mapped range -> numpy); returns `out`."""
    require_browser("read_buffer")
    import js
    import pybridge_js  # registered by web/worker.js
    from pyodide.ffi import to_js

    out = as_viewable(out)
    staging = create_buffer(
        device, out.nbytes, js.GPUBufferUsage.MAP_READ | js.GPUBufferUsage.COPY_DST, "readback"
    )
    try:
        encoder = device.createCommandEncoder()
        encoder.copyBufferToBuffer(buffer, offset, staging, 0, out.nbytes)
        device.queue.submit(to_js([encoder.finish()]))
        await staging.mapAsync(js.GPUMapMode.READ, 0, out.nbytes)
        pybridge_js.copyMappedInto(staging.getMappedRange(0, out.nbytes), out)
        staging.unmap()
    finally:
        staging.destroy()
    return out
