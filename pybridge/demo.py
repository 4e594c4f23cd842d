"""What the page runs once Python and numpy are up: one WGSL kernel on numpy arrays.

    x, y (numpy, wasm heap) --view--> writeBuffer --axpy.wgsl--> out --mapAsync--> numpy

`run_axpy` checks the result against numpy and returns it, with the device description and
the time of each step, as a JSON-able dict for the page.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pybridge.backend import Backend, default_backend
from pybridge.dispatch import grid_1d


async def axpy(backend: Backend, alpha: float, x: np.ndarray, y: np.ndarray,
               timings: dict[str, float] | None = None) -> np.ndarray:
    """alpha * x + y on the GPU (float32). One CPU copy per input up, one for the result down."""
    if x.dtype != np.float32 or y.dtype != np.float32 or x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"axpy takes two 1-D float32 arrays of one length, got "
                         f"{x.dtype}{x.shape} and {y.dtype}{y.shape}")
    n = x.size
    params = np.zeros(4, dtype=np.uint32)  # Params {n: u32, alpha: f32}, padded to 16 bytes
    params[0] = n
    params[1:2].view(np.float32)[0] = alpha
    t0 = time.perf_counter()
    tensors = [await backend.upload(x, label="x"), await backend.upload(y, label="y"),
               await backend.allocate((n,), np.float32, label="out")]
    try:
        t1 = time.perf_counter()
        await backend.dispatch("axpy", [tensors[0], tensors[1], params, tensors[2]], grid_1d(n))
        await backend.sync()
        t2 = time.perf_counter()
        out = await tensors[2].numpy()  # (n,)
        t3 = time.perf_counter()
    finally:
        for t in tensors:
            t.free()
    if timings is not None:
        timings.update(upload=(t1 - t0) * 1e3, dispatch=(t2 - t1) * 1e3, readback=(t3 - t2) * 1e3)
    return out


async def run_axpy(n: int = 1 << 20, alpha: float = 2.5, seed: int = 0) -> dict[str, Any]:
    """The page's demo: axpy on n random float32 values, compared with numpy."""
    t0 = time.perf_counter()
    backend = await default_backend()
    timings = {"device": (time.perf_counter() - t0) * 1e3}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)  # (n,)
    y = rng.standard_normal(n, dtype=np.float32)  # (n,)
    out = await axpy(backend, alpha, x, y, timings)
    expected = alpha * x + y
    return {
        "kernel": "axpy",
        "n": n,
        "alpha": alpha,
        "head": [round(float(v), 6) for v in out[:4]],
        "expectedHead": [round(float(v), 6) for v in expected[:4]],
        "maxAbsError": float(np.max(np.abs(out - expected))),
        "ok": bool(np.allclose(out, expected, rtol=1e-6, atol=1e-6)),
        "timingsMs": {k: round(v, 3) for k, v in timings.items()},
        "gpu": backend.describe(),
    }
