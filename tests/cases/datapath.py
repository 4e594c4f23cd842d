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


async def concurrent_uploads(backend: Backend, n: int, path: str | None, size: int) -> dict:
    """n uploads of `size` float32 each at once (asyncio tasks), then each read back: every
    tensor must hold its own array, and nothing but them be left. On the staging ring more
    uploads than slots wait for a slot someone else also waits for."""
    import asyncio

    arrays = [make_array("float32", (size,), seed=1000 * i) for i in range(n)]
    warm = await backend.upload(arrays[0], path=path)  # the ring's slots, the read pool
    await warm.numpy()
    warm.free()
    before = backend.live_buffers()
    tensors = await asyncio.gather(*(backend.upload(a, path=path) for a in arrays))
    try:
        equal = [bool(np.array_equal(await t.numpy(), a)) for t, a in zip(tensors, arrays)]
    finally:
        for t in tensors:
            t.free()
    return {"equal": equal, "left": backend.live_buffers() - before}


async def bind_group_bookkeeping(backend: Backend, rounds: int) -> dict:
    """A long-lived tensor (a weight) bound with short-lived ones (a batch's activations),
    `rounds` times, the short-lived freed each time: the cached bind groups and the index
    from each buffer to its groups must shrink back, with no key left naming a dropped group."""
    from pybridge.dispatch import pack_params

    w = await backend.upload(make_array("float32", (64,)))
    for i in range(rounds):
        x = await backend.upload(make_array("float32", (64,), seed=i + 1))
        out = await backend.allocate((64,), np.float32)
        await backend.dispatch("axpy", [x, w, pack_params(64, 2.0), out], grid_1d(64))
        expect = make_array("float32", (64,), seed=i + 1) * 2 + make_array("float32", (64,))
        assert np.allclose(await out.numpy(), expect), i
        x.free()
        out.free()
    groups = backend._bind_groups
    index = backend._bind_groups_of
    stale = sum(1 for keys in index.values() for k in keys if k not in groups)
    keys_of_w = len(index.get(id(w._buffer), ()))
    w.free()
    return {"groups": len(groups), "stale_keys": stale, "keys_of_w": keys_of_w}


async def dropped_tensors(backend: Backend, n: int) -> dict:
    """Tensors dropped without free() (as the README's example does) release their buffers,
    while a plan keeps the tensors it binds alive and keeps working."""
    import gc

    from pybridge.backend import Step
    from pybridge.dispatch import pack_params

    warm = await backend.upload(make_array("float32", (64,)))
    await warm.numpy()
    del warm
    before = backend.live_buffers()
    for i in range(n):
        t = await backend.upload(make_array("float32", (1024,), seed=i))
        await t.numpy()
        del t  # never freed
    gc.collect()
    after_drops = backend.live_buffers() - before
    x, y = make_array("float32", (64,), seed=1), make_array("float32", (64,), seed=2)
    out = await backend.allocate((64,), np.float32)
    plan = await backend.plan([Step("axpy", [await backend.upload(x), await backend.upload(y),
                                             pack_params(64, 3.0), out], grid_1d(64))],
                              outputs=[out])
    del out  # the plan holds x, y and out
    gc.collect()
    got = np.empty(64, np.float32)
    await backend.submit(plan, outputs=[got]).wait()
    ok = bool(np.allclose(got, 3 * x + y))
    plan.free()
    del plan
    gc.collect()
    return {"after_drops": after_drops, "plan_ok": ok, "after_plan": backend.live_buffers() - before}


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
    """Trigger one kind of bad input; return 'ExceptionType: message'. The case frees the
    tensors it made itself, so any buffer left after it is one the failing call left."""
    mine: list = []

    async def upload(*args, **kwargs):
        t = await backend.upload(*args, **kwargs)
        mine.append(t)
        return t

    try:
        if what == "dtype":
            await upload(np.zeros(4, np.float64))
        elif what == "not-array":
            await upload([1.0, 2.0])
        elif what == "shape":
            await backend.allocate((3, -1), np.float32)
        elif what == "too-big":
            await backend.allocate((1 << 40,), np.float32)
        elif what == "out-shape":
            t = await upload(np.zeros(8, np.float32))
            await t.numpy(out=np.zeros(9, np.float32))
        elif what == "out-dtype":
            t = await upload(np.zeros(8, np.float32))
            await t.numpy(out=np.zeros(8, np.int32))
        elif what == "use-after-free":
            t = await upload(np.zeros(8, np.float32), label="weights.w1")
            t.free()
            await t.numpy()
        elif what == "path":
            await upload(np.zeros(8, np.float32), path="teleport")
        elif what == "validation":
            x = await upload(np.zeros(8, np.float32))
            await backend.dispatch("axpy", [x], grid_1d(8))  # axpy needs 4 bindings
        elif what == "kernel":
            x = await upload(np.zeros(8, np.float32))
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
    finally:
        for t in mine:
            t.free()
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


async def staging_ring_broken(backend: Backend, n: int = 12) -> dict:
    """Uploads through the staging ring while its buffers are destroyed under them (as a
    failing driver would): each either lands whole or raises a pybridge error (never a raw
    JS one); the next upload works on a new ring; no tensor is left."""
    import asyncio

    arrays = [make_array("float32", (1 << 19,), seed=100 * i) for i in range(n)]  # 2 MiB
    warm = await backend.upload(arrays[0], path="staging")
    await warm.numpy()
    warm.free()
    before = backend.live_buffers() - len(backend._staging)
    tasks = [asyncio.ensure_future(backend.upload(a, path="staging")) for a in arrays]
    await asyncio.sleep(0)
    for buf, _ in list(backend._staging):
        buf.destroy()  # mapped or pending: both must be survived
    results = await asyncio.gather(*tasks, return_exceptions=True)
    outcomes, landed = [], 0
    for r, a in zip(results, arrays):
        if isinstance(r, BaseException):
            outcomes.append(type(r).__module__.split(".")[0] + "." + type(r).__name__)
        else:
            landed += bool(np.array_equal(await r.numpy(), a))
            outcomes.append("ok")
            r.free()
    again = await backend.upload(arrays[1], path="staging")
    works = bool(np.array_equal(await again.numpy(), arrays[1]))
    again.free()
    return {"outcomes": sorted(set(outcomes)), "landed": landed,
            "ok": outcomes.count("ok"), "works": works,
            "left": backend.live_buffers() - len(backend._staging) - before}
