"""What the page runs once Python and numpy are up: one WGSL kernel on a numpy array.

    x, y (numpy, wasm heap) --view--> writeBuffer --axpy.wgsl--> out --mapAsync--> numpy

The result is checked against numpy and returned, with the device description and the
time of each step, as a JSON-able dict for the page.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pybridge.device import request_gpu
from pybridge.dispatch import Kernel, grid_1d
from pybridge.readback import read_buffer
from pybridge.upload import create_buffer, write_buffer


async def run_axpy(n: int = 1 << 20, alpha: float = 2.5, seed: int = 0) -> dict[str, Any]:
    """out = alpha * x + y on the GPU for n float32 values; compare with numpy."""
    import js
    from pyodide.ffi import to_js

    t = {"start": time.perf_counter()}
    gpu = await request_gpu()
    device = gpu.device
    t["device"] = time.perf_counter()

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n, dtype=np.float32)  # (n,)
    y = rng.standard_normal(n, dtype=np.float32)  # (n,)
    params = np.zeros(4, dtype=np.uint32)  # Params {n: u32, alpha: f32}, padded to 16 bytes
    params[0] = n
    params[1:2].view(np.float32)[0] = alpha

    usage = js.GPUBufferUsage
    bufs = {
        "x": create_buffer(device, x.nbytes, usage.STORAGE | usage.COPY_DST, "x"),
        "y": create_buffer(device, y.nbytes, usage.STORAGE | usage.COPY_DST, "y"),
        "params": create_buffer(device, params.nbytes, usage.UNIFORM | usage.COPY_DST, "params"),
        "out": create_buffer(device, x.nbytes, usage.STORAGE | usage.COPY_SRC, "out"),
    }
    try:
        write_buffer(device.queue, bufs["x"], x)
        write_buffer(device.queue, bufs["y"], y)
        write_buffer(device.queue, bufs["params"], params)
        t["upload"] = time.perf_counter()

        kernel = Kernel(device, "axpy")
        encoder = device.createCommandEncoder()
        kernel.encode(encoder, kernel.bind([bufs["x"], bufs["y"], bufs["params"], bufs["out"]]),
                      grid_1d(n))
        device.queue.submit(to_js([encoder.finish()]))
        await device.queue.onSubmittedWorkDone()
        t["dispatch"] = time.perf_counter()

        out = np.empty(n, dtype=np.float32)  # (n,) preallocated: readback lands here
        await read_buffer(device, bufs["out"], out)
        t["readback"] = time.perf_counter()
    finally:
        for b in bufs.values():
            b.destroy()
        device.destroy()

    expected = alpha * x + y
    err = float(np.max(np.abs(out - expected)))
    steps = ["device", "upload", "dispatch", "readback"]
    prev = "start"
    timings = {}
    for s in steps:
        timings[s] = round((t[s] - t[prev]) * 1000, 3)
        prev = s
    return {
        "kernel": "axpy",
        "n": n,
        "alpha": alpha,
        "head": [round(float(v), 6) for v in out[:4]],
        "expectedHead": [round(float(v), 6) for v in expected[:4]],
        "maxAbsError": err,
        "ok": bool(np.allclose(out, expected, rtol=1e-6, atol=1e-6)),
        "timingsMs": timings,
        "gpu": gpu.describe(),
    }
