"""The in-browser half of tools/bench_datapath.py: shipped into the page's Python and run
there (like tests/cases). Each function returns JSON-able numbers; times in ms."""

from __future__ import annotations

import time

import numpy as np

import pybridge
import pybridge_js
from pybridge.view import wasm_heap_bytes
from pybridge.weights import last_stream, load_safetensors


def reps_for(nbytes: int) -> int:
    return max(5, min(200, (256 << 20) // max(nbytes, 1)))


async def transfer(nbytes: int) -> dict:
    """GB/s for one size: memcpy floor, each upload path, each readback path."""
    backend = await pybridge.default_backend()
    a = (np.arange(nbytes // 4, dtype=np.uint32) * 2654435761).astype(np.uint32)  # (n,)
    reps = reps_for(nbytes)
    t = await backend.upload(a)
    out = np.empty_like(a)
    row = {"bytes": nbytes, "reps": reps}
    pybridge_js.memcpyMs(a, 2)
    row["memcpy"] = nbytes * reps / pybridge_js.memcpyMs(a, reps) / 1e6
    ms = await pybridge_js.rawWriteBufferMs(backend.device.queue, t._buffer, a, reps)
    row["raw_js_writebuffer"] = nbytes * reps / ms / 1e6
    # the one CPU copy of the staging path alone: numpy view -> mapped MAP_WRITE memory
    usage = __import__("js").GPUBufferUsage
    fill_ms = 0.0
    for _ in range(min(reps, 20)):
        buf = backend._create_buffer(nbytes, usage.MAP_WRITE | usage.COPY_SRC, "fill", mapped=True)
        t0 = time.perf_counter()
        pybridge_js.fillMapped(buf, a, 0, nbytes)
        fill_ms += (time.perf_counter() - t0) * 1e3
        backend._destroy_buffer(buf)
    row["copy_staging"] = nbytes * min(reps, 20) / fill_ms / 1e6
    for path in backend.upload_paths:
        for _ in range(2):
            await backend.upload(a, out=t, path=path)
        await backend.sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            await backend.upload(a, out=t, path=path)
        t1 = time.perf_counter()  # every upload call has returned: our CPU copy is done
        await backend.sync()  # ... and the browser's GPU process has finished its part
        t2 = time.perf_counter()
        row[f"issue_{path}"] = nbytes * reps / ((t1 - t0) * 1e3) / 1e6
        row[f"upload_{path}"] = nbytes * reps / ((t2 - t0) * 1e3) / 1e6
    for path in backend.readback_paths:
        for _ in range(2):
            await t.numpy(out=out, path=path)
        t0 = time.perf_counter()
        for _ in range(reps):
            await t.numpy(out=out, path=path)
        row[f"readback_{path}"] = nbytes * reps / ((time.perf_counter() - t0) * 1e3) / 1e6
    assert np.array_equal(out, a)
    t.free()
    return row


async def weights(url: str, sha256: str) -> dict:
    """Streaming into GPU buffers vs a plain fetch into one ArrayBuffer."""
    backend = await pybridge.default_backend()
    plain = await pybridge_js.fetchArrayBufferMs(url)
    heap0 = wasm_heap_bytes()
    t0 = time.perf_counter()
    tensors = await load_safetensors(url, backend, sha256=sha256)
    ms = (time.perf_counter() - t0) * 1e3
    heap1 = wasm_heap_bytes()
    for t in tensors.values():
        t.free()
    t0 = time.perf_counter()
    tensors = await load_safetensors(url, backend)  # without the hash check
    ms_nohash = (time.perf_counter() - t0) * 1e3
    for t in tensors.values():
        t.free()
    size = int(plain.bytes)
    return {
        "bytes": size,
        "stream_ms": ms,
        "stream_nohash_ms": ms_nohash,
        "fetch_arraybuffer_ms": float(plain.ms),
        "wasm_heap_growth": heap1 - heap0,
        "stream_peak_chunk": last_stream["peakChunk"],
    }
