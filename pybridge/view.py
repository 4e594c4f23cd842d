"""Step 1, view: a numpy array's bytes as seen from JS, without copying.

A view is a Uint8Array over the wasm heap at the array's address (`getBuffer('u8')` on the
array's PyProxy). Views are taken, used and released inside one synchronous JS call by the
helpers in web/bridge.js, because wasm memory growth detaches every older view: Python never
holds one. This module only prepares arrays for viewing and exposes the proof hooks.
"""

from __future__ import annotations

import numpy as np

from pybridge._env import require_browser


def as_viewable(arr: np.ndarray) -> np.ndarray:
    """The array itself when C-contiguous (no copy); refuse anything else for now.

    Raises TypeError for non-arrays and ValueError for non-contiguous arrays or byte sizes
    that are not a multiple of 4 (WebGPU copies move whole 4-byte words).
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected a numpy.ndarray, got {type(arr).__name__}")
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"array of shape {arr.shape} is not C-contiguous; pass np.ascontiguousarray(a) "
            "(one extra copy) or a contiguous array"
        )
    if arr.nbytes % 4:
        raise ValueError(f"array of {arr.nbytes} bytes: WebGPU copies need a multiple of 4 bytes")
    return arr


def view_info(arr: np.ndarray) -> dict[str, int | bool]:
    """Where the JS view of `arr` lies in the wasm heap: byteOffset, byteLength, and whether
    its buffer is the wasm memory itself. Used to prove the view is not a copy."""
    require_browser("view_info")
    import pybridge_js  # registered by web/worker.js

    info = pybridge_js.viewInfo(as_viewable(arr))  # a plain JS object (JsProxy)
    return {
        "byteOffset": int(info.byteOffset),
        "byteLength": int(info.byteLength),
        "isWasmHeap": bool(info.isWasmHeap),
    }


def write_through_view(arr: np.ndarray, byte_index: int, value: int) -> None:
    """Write one byte through the JS view of `arr` (the proof that the view aliases numpy)."""
    require_browser("write_through_view")
    import pybridge_js

    pybridge_js.writeByte(as_viewable(arr), byte_index, value)
