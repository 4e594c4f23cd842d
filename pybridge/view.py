"""Step 1, view: a numpy array's bytes as seen from JS, without copying.

A view is a Uint8Array over the wasm heap at the array's address (`getBuffer('u8')` on the
array's PyProxy). Views are taken, used and released inside one synchronous JS call by the
helpers in web/bridge.js, because wasm memory growth detaches every older view: Python never
holds one. The upload and readback paths in browser.py go through those helpers; this module
exposes the proof that a view is the numpy memory itself.
"""

from __future__ import annotations

import numpy as np

from pybridge._env import require_browser
from pybridge.backend import prepare_upload


def view_info(arr: np.ndarray) -> dict[str, int | bool]:
    """Where the JS view of `arr` lies in the wasm heap: byteOffset, byteLength, and whether
    its buffer is the wasm memory itself. Used to prove the view is not a copy."""
    require_browser("view_info")
    import pybridge_js  # registered by web/worker.js

    arr, _ = prepare_upload(arr, copy=False)
    info = pybridge_js.viewInfo(arr)  # a plain JS object (JsProxy)
    return {
        "byteOffset": int(info.byteOffset),
        "byteLength": int(info.byteLength),
        "isWasmHeap": bool(info.isWasmHeap),
    }


def write_through_view(arr: np.ndarray, byte_index: int, value: int) -> None:
    """Write one byte through the JS view of `arr` (the proof that the view aliases numpy)."""
    require_browser("write_through_view")
    import pybridge_js

    arr, _ = prepare_upload(arr, copy=False)
    pybridge_js.writeByte(arr, byte_index, value)


def wasm_heap_bytes() -> int:
    """The wasm heap's size now (it only grows)."""
    require_browser("wasm_heap_bytes")
    import pybridge_js

    return int(pybridge_js.wasmHeapBytes())
