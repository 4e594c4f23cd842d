"""What the page runs once Python and numpy are up: one WGSL kernel on numpy arrays.

    x, y (numpy, wasm heap) --view--> writeBuffer --axpy.wgsl--> out --mapAsync--> numpy

`run_axpy` checks the result against numpy and returns it, with the device description and
the time of each step, as a JSON-able dict for the page.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pybridge.device import Gpu, default_gpu
from pybridge.dispatch import grid_1d, kernel
from pybridge.readback import read_buffer
from pybridge.upload import create_buffer, write_buffer


async def axpy(gpu: Gpu, alpha: float, x: np.ndarray, y: np.ndarray,
               timings: dict[str, float] | None = None) -> np.ndarray:
    """alpha * x + y on the GPU (float32). One CPU copy per input up, one for the result down."""
    import js
    from pyodide.ffi import to_js

    if x.dtype != np.float32 or y.dtype != np.float32 or x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"axpy takes two 1-D float32 arrays of one length, got "
                         f"{x.dtype}{x.shape} and {y.dtype}{y.shape}")
    n = x.size
    t = timings if timings is not None else {}
    t0 = time.perf_counter()
    device = gpu.device
    params = np.zeros(4, dtype=np.uint32)  # Params {n: u32, alpha: f32}, padded to 16 bytes
    params[0] = n
    params[1:2].view(np.float32)[0] = alpha

    usage = js.GPUBufferUsage
    bufs = [
        create_buffer(device, x.nbytes, usage.STORAGE | usage.COPY_DST, "x"),
        create_buffer(device, y.nbytes, usage.STORAGE | usage.COPY_DST, "y"),
        create_buffer(device, params.nbytes, usage.UNIFORM | usage.COPY_DST, "params"),
        create_buffer(device, x.nbytes, usage.STORAGE | usage.COPY_SRC, "out"),
    ]
    try:
        for buf, arr in zip(bufs, (x, y, params)):
            write_buffer(device.queue, buf, arr)
        t1 = time.perf_counter()
        k = kernel(gpu, "axpy")
        encoder = device.createCommandEncoder()
        k.encode(encoder, k.bind(bufs), grid_1d(n))
        device.queue.submit(to_js([encoder.finish()]))
        await device.queue.onSubmittedWorkDone()
        t2 = time.perf_counter()
        out = np.empty(n, dtype=np.float32)  # (n,) preallocated: readback lands here
        await read_buffer(device, bufs[3], out)
        t3 = time.perf_counter()
    finally:
        for b in bufs:
            b.destroy()
    t.update(upload=(t1 - t0) * 1e3, dispatch=(t2 - t1) * 1e3, readback=(t3 - t2) * 1e3)
    return out


async def run_axpy(n: int = 1 << 20, alpha: float = 2.5, seed: int = 0) -> dict[str, Any]:
    """The page's demo: axpy on n random float32 values, compared with numpy."""
    t0 = time.perf_counter()
    gpu = await default_gpu()
    timings = {"device": (time.perf_counter() - t0) * 1e3}
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)  # (n,)
    y = rng.standard_normal(n, dtype=np.float32)  # (n,)
    out = await axpy(gpu, alpha, x, y, timings)
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
        "gpu": gpu.describe(),
    }
