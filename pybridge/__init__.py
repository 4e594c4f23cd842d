"""pybridge: GPU inference from Python in the browser (Pyodide + numpy + WebGPU).

Modules, in the order data flows through them:

    _env       where we run: Pyodide in a browser worker, or plain CPython
    device     adapter and device: request, features, limits, a clear error without WebGPU
    view       step 1, view: borrow a numpy array's wasm-heap bytes (no copy) for one JS turn
    upload     step 2, upload: view -> GPU buffer (one CPU copy, done by the browser)
    dispatch   step 3, dispatch: WGSL kernels from wgsl/ (shipped as pybridge.wgsl), pipelines
    readback   step 4 and 5, readback: GPU buffer -> MAP_READ buffer -> numpy `out=` (one copy)
    demo       what the page runs once booted: one kernel, checked against numpy

In plain CPython the package imports (the browser-only parts raise a clear error when
called), so its logic is unit-tested without a browser.
"""

from pybridge._env import IN_PYODIDE

__all__ = ["IN_PYODIDE"]
__version__ = "0.1.0"
