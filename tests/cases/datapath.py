"""Data-path cases shared by both backends: the same code runs in CPython on the native
backend (tests/unit/test_native_datapath.py) and inside Pyodide on the browser backend
(tests/e2e/test_datapath.py, which ships this file's source to the page).

Each case builds its data, checks it against its own numpy reference (the original array)
and returns a JSON-able summary with the copy counts it measured.
"""

from __future__ import annotations

import numpy as np

import pybridge
from pybridge.backend import Backend
from pybridge.dispatch import grid_1d

DTYPES = ("float32", "float16", "int32", "uint32", "uint8")

# error_message(backend, what) -> the start of what it must say ({backend}, {paths}: filled in)
ERROR_CASES = [
    ("dtype", "TypeError: unsupported dtype float64; accepted: float32, float16, int32, uint32, uint8"),
    ("not-array", "TypeError: upload takes a numpy.ndarray, got list"),
    ("shape", "ValueError: shape must not be negative"),
    ("too-big", "ValueError: allocate float32(1099511627776,): 4398046511104 bytes exceeds"),
    ("out-shape", "ValueError: out is float32(9,); GpuTensor(shape=(8,), dtype=float32) needs float32(8,)"),
    ("out-dtype", "ValueError: out is int32(8,)"),
    ("use-after-free", "UseAfterFree: readback GpuTensor('weights.w1' shape=(8,), dtype=float32 freed)"),
    ("path", "ValueError: unknown upload path 'teleport'; {backend} has {paths}"),
    ("validation", "GpuValidationError: dispatch axpy: GPU validation error"),
    ("kernel", "FileNotFoundError: no kernel named 'no_such_kernel'"),
]


def make_array(dtype: str, shape, seed: int = 0) -> np.ndarray:
    """Deterministic data covering each dtype's range (finite floats, negatives, extremes)."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64) + seed
    if dtype == "float32":
        a = ((i * 2654435761) % 2000003 - 1000001).astype(np.float32) / np.float32(997.0)
    elif dtype == "float16":
        a = (((i * 40503) % 60001) - 30000).astype(np.float16)
    elif dtype == "int32":
        a = ((i * 2654435761) % (2**32) - 2**31).astype(np.int32)
    elif dtype == "uint32":
        a = ((i * 2654435761) % (2**32)).astype(np.uint32)
    else:
        a = ((i * 131) % 256).astype(np.uint8)
    return a.reshape(shape)


async def roundtrip(backend: Backend, dtype: str, shape, upload_path=None, readback_path=None,
                    use_out=True) -> dict:
    a = make_array(dtype, shape)
    with pybridge.count_copies() as c:
        t = await backend.upload(a, path=upload_path)
        out = np.empty_like(a) if use_out else None
        r = await t.numpy(out=out, path=readback_path)
    t.free()
    return {
        "equal": bool(np.array_equal(r, a)) and r.shape == a.shape and r.dtype == a.dtype,
        "into_out": use_out and r is out,
        "nbytes": int(a.nbytes),
        "copies": c.as_dict(),
    }


async def non_contiguous(backend: Backend) -> dict:
    a = make_array("float32", (64, 48))[:, ::3]  # (64, 16), strided
    with pybridge.count_copies() as c:
        t = await backend.upload(a)
        r = await t.numpy()
    t.free()
    refused = None
    try:
        await backend.upload(a, copy=False)
    except ValueError as e:
        refused = str(e)
    return {"equal": bool(np.array_equal(r, a)), "copies": c.as_dict(), "refused": refused}


async def error_message(backend: Backend, what: str) -> str:
    """Trigger one kind of bad input; return 'ExceptionType: message'."""
    try:
        if what == "dtype":
            await backend.upload(np.zeros(4, np.float64))
        elif what == "not-array":
            await backend.upload([1.0, 2.0])
        elif what == "shape":
            await backend.allocate((3, -1), np.float32)
        elif what == "too-big":
            await backend.allocate((1 << 40,), np.float32)
        elif what == "out-shape":
            t = await backend.upload(np.zeros(8, np.float32))
            await t.numpy(out=np.zeros(9, np.float32))
        elif what == "out-dtype":
            t = await backend.upload(np.zeros(8, np.float32))
            await t.numpy(out=np.zeros(8, np.int32))
        elif what == "use-after-free":
            t = await backend.upload(np.zeros(8, np.float32), label="weights.w1")
            t.free()
            await t.numpy()
        elif what == "path":
            await backend.upload(np.zeros(8, np.float32), path="teleport")
        elif what == "validation":
            x = await backend.upload(np.zeros(8, np.float32))
            await backend.dispatch("axpy", [x], grid_1d(8))  # axpy needs 4 bindings
        elif what == "kernel":
            x = await backend.upload(np.zeros(8, np.float32))
            await backend.dispatch("no_such_kernel", [x], grid_1d(8))
        elif what == "oom":
            held = []
            try:
                for _ in range(64):  # up to 64 GiB: a device runs out long before
                    held.append(await backend.allocate((1 << 28,), np.float32, label="huge"))
            finally:
                for t in held:
                    t.free()
        else:
            raise AssertionError(f"unknown case {what}")
    except Exception as e:  # the point: which exception, which message
        return f"{type(e).__name__}: {e}"
    return "no error"


async def device_loss() -> dict:
    """Destroy the session's device (as a driver reset would): the next ops say so, and
    default_backend() recovers with a new device; tensors of the old one are refused."""
    backend = await pybridge.default_backend()
    t = await backend.upload(make_array("float32", (16,)))
    if backend.name == "browser":
        backend.device.destroy()
        await backend.device.lost  # resolves once the loss is reported
    else:
        backend.destroy_device()
    errors = []
    for op in ("upload", "readback"):
        try:
            if op == "upload":
                await backend.upload(np.zeros(4, np.float32))
            else:
                await t.numpy()
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
    fresh = await pybridge.default_backend()  # a new device behind the same backend
    a = make_array("float32", (1000,))
    u = await fresh.upload(a)
    ok = bool(np.array_equal(await u.numpy(), a))
    u.free()
    stale = None
    try:
        await t.numpy()
    except Exception as e:
        stale = f"{type(e).__name__}: {e}"
    return {"errors": errors, "recovered": ok, "same_backend": fresh is backend, "stale": stale}


async def leak_check(backend: Backend, cycles: int, heap_bytes=None) -> dict:
    """Many upload/readback cycles: buffers (and the wasm heap, where given) back to baseline."""
    a = make_array("float32", (1024,))
    out = np.empty_like(a)

    async def cycle():
        t = await backend.upload(a)
        await t.numpy(out=out)
        t.free()

    for _ in range(50):  # warm the pools
        await cycle()
    buffers0 = backend.live_buffers()
    heap0 = heap_bytes() if heap_bytes else 0
    for _ in range(cycles):
        await cycle()
    return {
        "equal": bool(np.array_equal(out, a)),
        "buffers": [buffers0, backend.live_buffers()],
        "heap": [heap0, heap_bytes() if heap_bytes else 0],
    }
