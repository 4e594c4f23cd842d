"""Pipelines compiled ahead (`backend.compile_pipelines`, which `MiniLM.load` runs beside the
weights stream), shared by both GPU backends: tests/unit/test_native_minilm.py runs them in
CPython, tests/e2e/test_minilm.py inside Pyodide.

Each case returns a JSON-able summary; the tests check it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable

import numpy as np

from pybridge.backend import Backend, Step, pipeline_key
from pybridge.dispatch import grid_1d
from pybridge.errors import GpuError

# one short sentence (the page's warm-up shape) and a batch of more than 32 rows (another
# matmul kernel on a CPU device, and on a GPU past 512 rows)
WARM_UP = ["warm up"]
BATCH = [f"sentence number {i} is about the weather and the sea" for i in range(40)]


def _keys(backend: Backend) -> list[str]:
    return sorted(repr(k) for k in backend._pipelines)


async def compiled_at_load(load: Callable[[Backend], Awaitable[Any]],
                           make_backend: Callable[[], Awaitable[Backend]]) -> dict:
    """Two new devices, each loading the model: on the first its pipelines are compiled
    ahead by the load (compile_pipelines), on the second lazily, by each shape's plan
    (compile_pipelines made a no-op). What the first holds after the load, before any
    dispatch, and after two shapes' embeds; and whether both devices' embeddings agree
    bit for bit."""
    out: dict[str, Any] = {}
    vectors = []
    for mode in ("ahead", "lazy"):
        backend = await make_backend()
        try:
            if mode == "lazy":
                async def nothing(keys: Any) -> None:
                    return None

                backend.compile_pipelines = nothing  # type: ignore[method-assign]
            model = await load(backend)
            try:
                expected = sorted(repr(pipeline_key(op, c)) for op, c in model.pipeline_keys())
                loaded = _keys(backend)
                warm = await model.embed(WARM_UP)
                batch = await model.embed(BATCH, batch_size=32)
                embedded = _keys(backend)
            finally:
                model.free()
        finally:
            backend.close()
        vectors.append((warm, batch))
        out[mode] = {"expected": expected, "after_load": loaded, "after_embeds": embedded}
    (wa, ba), (wl, bl) = vectors
    out["bitwise_equal"] = bool(np.array_equal(wa.view(np.uint32), wl.view(np.uint32))
                                and np.array_equal(ba.view(np.uint32), bl.view(np.uint32)))
    out["norms"] = [float(np.linalg.norm(wa)), float(np.linalg.norm(ba[0]))]
    return out


def _error(e: BaseException) -> dict:
    return {"type": type(e).__name__, "op": getattr(e, "op", None),
            "kind": getattr(e, "kind", None), "message": str(e),
            "cause": type(e.__cause__).__name__ if e.__cause__ else None}


async def compile_errors(backend: Backend, proxies: Callable[[], int] | None = None) -> dict:
    """Kernels that do not compile, asked of compile_pipelines among one that does: a WGSL
    error (a module whose text the backend's shader_source answers for this test), an
    override constant the kernel lacks (the pipeline fails, not the module), a kernel with
    no file; then a plan compiling the bad constant synchronously, for its error. What each
    raised, what was cached, and whether the backend still works and holds nothing more
    than after the same good dispatch before (its uniform and read buffers, kept for reuse)."""
    n = 64
    params = np.array([n, np.float32(1.0).view(np.uint32), 0, 0], dtype=np.uint32)

    async def axpy() -> bool:
        a = await backend.upload(np.arange(n, dtype=np.float32))
        b = await backend.upload(np.ones(n, dtype=np.float32))
        r = await backend.allocate((n,), np.float32)
        await backend.dispatch("axpy", [a, b, params, r], grid_1d(n))
        ok = (await r.numpy()).tolist() == (np.arange(n) + 1.0).tolist()
        for t in (a, b, r):
            t.free()
        return ok

    await axpy()
    module = sys.modules[type(backend).__module__]
    original = module.shader_source

    def source(op: str) -> str:
        return "this is not WGSL" if op == "broken_kernel" else original(op)

    bad = {"NO_SUCH_CONSTANT": 1.0}
    buffers, live = backend.live_buffers(), proxies() if proxies else 0
    out: dict[str, Any] = {}
    module.shader_source = source
    try:
        for case, keys in {
            "wgsl": [("axpy", None), ("broken_kernel", None)],
            "constant": [("axpy", bad)],
            "missing": [("no_such_kernel", None)],
        }.items():
            try:
                await backend.compile_pipelines(keys)
                out[case] = {"type": None}
            except Exception as e:  # noqa: BLE001 (which error is the point)
                out[case] = _error(e)
    finally:
        module.shader_source = original
    out["cached"] = {"axpy": pipeline_key("axpy", None) in backend._pipelines,
                     "broken_kernel": any(k[0] == "broken_kernel" for k in backend._pipelines),
                     "constant": pipeline_key("axpy", bad) in backend._pipelines}
    out["modules"] = sorted(getattr(backend, "_modules", {}))
    # the same bad constant compiled synchronously, by a plan
    x, y = [await backend.allocate((n,), np.float32, label=k) for k in ("x", "y")]
    try:
        plan = await backend.plan([Step("axpy", [x, x, params, y], grid_1d(n), bad)],
                                  label="bad constant")
        plan.free()
        out["sync"] = {"type": None}
    except GpuError as e:
        out["sync"] = _error(e)
    finally:
        x.free()
        y.free()
    out["works"] = await axpy()  # and the backend works on: nothing uncaptured is pending
    await asyncio.sleep(0)
    out["uncaptured"] = list(getattr(backend, "uncaptured", []))
    out["buffers_left"] = backend.live_buffers() - buffers
    out["proxies_left"] = (proxies() if proxies else 0) - live
    return out


async def failed_load_frees_everything(load: Callable[[Backend], Awaitable[Any]],
                                       backend: Backend) -> dict:
    """A load whose compile fails (after the weights stream began): it raises that error,
    and the weights are freed; no task of it is left running."""
    original = backend.compile_pipelines

    async def failing(keys: Any) -> None:
        await asyncio.sleep(0)
        raise GpuError("compile matmul", "validation", "this compile failed (a test)")

    before = backend.live_buffers()
    backend.compile_pipelines = failing  # type: ignore[method-assign]
    try:
        await load(backend)
        raised: dict = {"type": None}
    except Exception as e:  # noqa: BLE001 (which error is the point)
        raised = _error(e)
    finally:
        del backend.compile_pipelines  # the class's method again
    await asyncio.sleep(0)
    left = [repr(t) for t in asyncio.all_tasks()
            if not t.done() and "MiniLM._compile" in repr(t.get_coro())]
    assert backend.compile_pipelines == original
    return {"raised": raised, "buffers_left": backend.live_buffers() - before, "tasks": left}
