"""The browser backend: the data path over Pyodide's FFI to navigator.gpu.

Steps, in the order of this file:
  view      numpy's wasm-heap bytes, borrowed by web/bridge.js for one synchronous JS call
  upload    "view":    queue.writeBuffer(gpu, view)                       1 CPU copy
            "staging": view -> pre-mapped MAP_WRITE ring -> copyBufferToBuffer  1 CPU copy
            "auto":    "view" below 2 MiB, "staging" from 2 MiB (the default, by measurement)
            "naive":   tobytes -> to_js -> writeBuffer                      3 CPU copies (baseline)
  dispatch  wgsl/<op>.wgsl with GpuTensors (and small uniforms) bound in order
  readback  "ring":  copyBufferToBuffer -> reused MAP_READ buffer -> mapAsync -> out   1 CPU copy
            "naive": to_bytes -> np.frombuffer(...).copy()                  2 CPU copies (baseline)

The default upload path, "auto", was chosen by tools/bench_datapath.py, which measures the
paths side by side (see README): in Chrome, writeBuffer costs less per call for small arrays,
while the reused pre-mapped ring moves large ones 2-4x faster than writeBuffer. Errors: every allocation and dispatch runs inside
WebGPU error scopes, so out-of-memory and validation errors surface as Python exceptions
naming the operation; uncaptured errors and device loss are recorded and raised by the next
operation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pybridge import accounting
from pybridge._env import require_browser
from pybridge.backend import Backend, GpuTensor, naive_bytes, prepare_out
from pybridge.device import Gpu, request_gpu
from pybridge.dispatch import shader_source
from pybridge.dtypes import padded
from pybridge.errors import DeviceLost, GpuError, GpuOutOfMemory, GpuValidationError

STAGING_SLOT_BYTES = 4 << 20  # 4 MiB per slot: best of 1/4/16 MiB measured (bench_datapath)
STAGING_SLOTS = 4
STAGING_FROM_BYTES = 2 << 20  # "auto": writeBuffer below this, the staging ring from here on
READ_POOL_MIN = 64 << 10  # smallest MAP_READ buffer kept for reuse
READ_POOL_KEEP = 8  # MAP_READ buffers kept between readbacks


def _js():
    import js
    from pyodide.ffi import JsException, create_proxy, to_js

    import pybridge_js  # registered by web/worker.js

    return js, to_js, JsException, create_proxy, pybridge_js


class _ErrorScope:
    """`async with backend.scope(op)`: WebGPU errors inside become Python exceptions."""

    def __init__(self, backend: "BrowserBackend", op: str) -> None:
        self.backend, self.op = backend, op

    async def __aenter__(self) -> None:
        self.backend.check_alive(self.op)
        d = self.backend.device
        d.pushErrorScope("out-of-memory")
        d.pushErrorScope("validation")

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        js, _, JsException, _, _ = _js()
        d = self.backend.device
        validation = await d.popErrorScope()
        oom = await d.popErrorScope()
        self.backend.check_alive(self.op)
        if isinstance(exc, JsException):
            # createBuffer throws RangeError when a mapped buffer cannot be allocated at all
            if "RangeError" in str(exc) or "allocate" in str(exc):
                raise GpuOutOfMemory(self.op, "out-of-memory", str(exc)) from exc
            raise GpuValidationError(self.op, "validation", str(exc)) from exc
        if oom is not None:
            raise GpuOutOfMemory(self.op, "out-of-memory", str(oom.message))
        if validation is not None:
            raise GpuValidationError(self.op, "validation", str(validation.message))
        return False


class _Batch:
    def __init__(self, backend: "BrowserBackend") -> None:
        self.backend = backend

    async def __aenter__(self) -> "BrowserBackend":
        b = self.backend
        if b._pass is not None:
            raise RuntimeError("backend.batch() does not nest")
        b.check_alive("batch")
        b.device.pushErrorScope("out-of-memory")
        b.device.pushErrorScope("validation")
        self.encoder = b.device.createCommandEncoder()
        b._pass = self.encoder.beginComputePass()
        b._batched = []
        return b

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        _, to_js, _, _, _ = _js()
        b = self.backend
        b._pass.end()
        b._pass = None
        if exc is None:
            b.device.queue.submit(to_js([self.encoder.finish()]))
        ops = b._batched
        validation = await b.device.popErrorScope()
        oom = await b.device.popErrorScope()
        b.check_alive("batch")
        if exc is None:
            where = f"batch of {len(ops)} dispatches ({', '.join(dict.fromkeys(ops))})"
            if oom is not None:
                raise GpuOutOfMemory(where, "out-of-memory", str(oom.message))
            if validation is not None:
                raise GpuValidationError(where, "validation", str(validation.message))
        return False


class BrowserBackend(Backend):
    name = "browser"
    upload_paths = ("auto", "view", "staging", "naive")
    readback_paths = ("ring", "naive")

    @classmethod
    async def create(cls) -> "BrowserBackend":
        require_browser("BrowserBackend")
        return cls(await request_gpu())

    def __init__(self, gpu: Gpu) -> None:
        self._live: dict[int, Any] = {}  # id -> GPUBuffer we hold
        self._attach(gpu)

    # --- device life ------------------------------------------------------------------
    def _attach(self, gpu: Gpu) -> None:
        js, _, _, create_proxy, _ = _js()
        self.gpu = gpu
        self.device = gpu.device
        self.generation += 1
        self.lost = None
        self.uncaptured: list[str] = []
        self._staging: list[list[Any]] = []  # [buffer, pending mapAsync promise or None]
        self._staging_next = 0
        self._read_pool: list[Any] = []
        self._pipelines: dict[tuple, Any] = {}
        self._modules: dict[str, Any] = {}
        self._reset_caches()
        self._pass: Any = None  # the open compute pass of a batch
        self._batched: list[str] = []
        generation = self.generation

        def on_lost(info: Any) -> None:
            if generation == self.generation:
                self.lost = (str(info.reason), str(info.message))

        self.device.lost.then(on_lost)
        self._on_error = create_proxy(
            lambda ev: self.uncaptured.append(str(ev.error.message)))
        self.device.addEventListener("uncapturederror", self._on_error)

    def check_alive(self, op: str) -> None:
        if self.lost is not None:
            raise DeviceLost(op, *self.lost)
        if self.uncaptured:
            message = self.uncaptured.pop(0)
            raise GpuError(op, "uncaptured", message)

    async def recover(self) -> None:
        """Replace a lost device with a new one; tensors of the old one become invalid."""
        old = self.device
        self._live.clear()
        try:
            old.removeEventListener("uncapturederror", self._on_error)
        finally:
            self._on_error.destroy()
        self._attach(await request_gpu())

    async def sync(self) -> None:
        await self.device.queue.onSubmittedWorkDone()
        self.check_alive("sync")

    @property
    def features(self) -> frozenset[str]:
        return self.gpu.features

    @property
    def limits(self) -> dict[str, int]:
        return self.gpu.limits

    @property
    def is_cpu(self) -> bool:
        return self.gpu.is_cpu

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **self.gpu.describe()}

    def scope(self, op: str) -> _ErrorScope:
        return _ErrorScope(self, op)

    def close(self) -> None:
        """Free everything and destroy the device."""
        for buf in list(self._live.values()):
            buf.destroy()
        self._live.clear()
        self.device.removeEventListener("uncapturederror", self._on_error)
        self._on_error.destroy()
        self.device.destroy()

    # --- buffers ----------------------------------------------------------------------
    def _create_buffer(self, size: int, usage: int, label: str, mapped: bool = False) -> Any:
        js, to_js, _, _, _ = _js()
        buf = self.device.createBuffer(to_js(
            {"size": size, "usage": usage, "label": label, "mappedAtCreation": mapped},
            dict_converter=js.Object.fromEntries))
        self._live[id(buf)] = buf
        return buf

    async def allocate(self, shape: Any, dtype: Any, *, label: str = "") -> GpuTensor:
        js, _, _, _, _ = _js()
        shape, row, nbytes, op = self._allocation(shape, dtype, label)
        usage = js.GPUBufferUsage
        async with self.scope(op):
            buf = self._create_buffer(nbytes, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST, label)
        return GpuTensor(self, buf, shape, row, label=label)

    # --- upload -----------------------------------------------------------------------
    async def upload(self, arr: np.ndarray, *, out: GpuTensor | None = None, path: str | None = None,
                     copy: bool = True, label: str = "") -> GpuTensor:
        arr, out, dst, path, op = await self._upload_target(arr, out, path, copy, label)
        if path == "auto":  # measured: writeBuffer wins below 2 MiB, the ring from there on
            path = "staging" if arr.nbytes >= STAGING_FROM_BYTES else "view"
        if path == "view":
            self._upload_view(dst, out.offset, arr)
        elif path == "staging":
            await self._upload_staging(dst, out.offset, arr)
        else:
            self._upload_naive(dst, out.offset, arr)
        return out

    def _upload_view(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """queue.writeBuffer from the array's wasm-heap view. Copies the data once."""
        _, _, _, _, bridge = _js()
        whole = arr.nbytes & ~3
        if whole:
            bridge.writeBuffer(self.device.queue, dst, offset, arr, 0, whole)
        if arr.nbytes != whole:  # 1-3 trailing bytes: WebGPU writes whole 4-byte words
            tail = np.zeros(4, dtype=np.uint8)
            tail[: arr.nbytes - whole] = arr.reshape(-1).view(np.uint8)[whole:]  # extra copy
            bridge.writeBuffer(self.device.queue, dst, offset + whole, tail, 0, 4)
            accounting.record("upload", "pad", 1, arr.nbytes - whole)
        accounting.record("upload", "view", 1, arr.nbytes)  # each byte crosses writeBuffer once

    async def _upload_staging(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """Through a ring of pre-mapped MAP_WRITE buffers. Copies the data once (into the
        mapped range); the GPU copies it on with copyBufferToBuffer."""
        js, to_js, _, _, bridge = _js()
        usage = js.GPUBufferUsage
        if not self._staging:
            self._staging = [
                [self._create_buffer(STAGING_SLOT_BYTES, usage.MAP_WRITE | usage.COPY_SRC,
                                     f"staging{i}", mapped=True), None]
                for i in range(STAGING_SLOTS)
            ]
        n, done = arr.nbytes, 0
        while done < n:
            chunk = min(STAGING_SLOT_BYTES, n - done)
            slot = self._staging[self._staging_next]
            self._staging_next = (self._staging_next + 1) % len(self._staging)
            if slot[1] is not None:
                await slot[1]
                slot[1] = None
            bridge.fillMapped(slot[0], arr, done, chunk)
            slot[0].unmap()
            encoder = self.device.createCommandEncoder()
            encoder.copyBufferToBuffer(slot[0], 0, dst, offset + done, padded(chunk))
            self.device.queue.submit(to_js([encoder.finish()]))
            slot[1] = slot[0].mapAsync(js.GPUMapMode.WRITE)
            done += chunk
        accounting.record("upload", "staging", 1, n)

    def _upload_naive(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """The baseline: tobytes (copy 1) -> to_js (copy 2) -> writeBuffer (copy 3)."""
        _, to_js, _, _, _ = _js()
        self.device.queue.writeBuffer(dst, offset, to_js(naive_bytes(arr)))
        accounting.record("upload", "naive", 3, arr.nbytes)

    # --- dispatch ---------------------------------------------------------------------
    def pipeline(self, op: str, constants: dict[str, float] | None = None) -> Any:
        """The compute pipeline of wgsl/<op>.wgsl ('auto' layout, entry `main`) with the given
        override constants, compiled once per device. Call inside a scope: compile errors are
        validation errors."""
        key = (op, tuple(sorted((constants or {}).items())))
        if key not in self._pipelines:
            js, to_js, _, _, _ = _js()
            module = self._modules.get(op)
            if module is None:
                module = self._modules[op] = self.device.createShaderModule(to_js(
                    {"code": shader_source(op), "label": op}, dict_converter=js.Object.fromEntries))
            compute = {"module": module, "entryPoint": "main"}
            if constants:
                compute["constants"] = {k: float(v) for k, v in constants.items()}
            self._pipelines[key] = self.device.createComputePipeline(to_js(
                {"layout": "auto", "label": op, "compute": compute},
                dict_converter=js.Object.fromEntries))
        return self._pipelines[key]

    def _new_uniform(self, data: np.ndarray, label: str) -> Any:
        js, _, _, _, bridge = _js()
        buf = self._create_buffer(padded(data.nbytes), js.GPUBufferUsage.UNIFORM, label, mapped=True)
        bridge.fillMapped(buf, data, 0, data.nbytes)
        buf.unmap()
        return buf

    def _new_bind_group(self, pipeline: Any, entries: list[tuple[Any, int, int]]) -> Any:
        js, to_js, _, _, _ = _js()
        return self.device.createBindGroup(to_js({
            "layout": pipeline.getBindGroupLayout(0),
            "entries": [{"binding": i, "resource": {"buffer": b, "offset": o, "size": n}}
                        for i, (b, o, n) in enumerate(entries)],
        }, dict_converter=js.Object.fromEntries))

    def _encode(self, compute: Any, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                grid: tuple[int, int, int], constants: dict[str, float] | None) -> None:
        """Record one dispatch into an open compute pass."""
        pipeline = self.pipeline(op, constants)
        compute.setPipeline(pipeline)
        compute.setBindGroup(0, self._bind(op, constants, pipeline, bindings))
        compute.dispatchWorkgroups(*grid)

    async def dispatch(self, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                       grid: tuple[int, int, int], constants: dict[str, float] | None = None) -> None:
        if self._pass is not None:  # inside `async with backend.batch()`
            self._encode(self._pass, op, bindings, grid, constants)
            self._batched.append(op)
            return
        _, to_js, _, _, _ = _js()
        async with self.scope(f"dispatch {op}"):
            encoder = self.device.createCommandEncoder()
            compute = encoder.beginComputePass()
            try:
                self._encode(compute, op, bindings, grid, constants)
            finally:
                compute.end()
            self.device.queue.submit(to_js([encoder.finish()]))

    def batch(self) -> "_Batch":
        """`async with backend.batch():` records every dispatch inside into one compute pass
        and submits them together, checked by one error scope."""
        return _Batch(self)

    # --- readback ---------------------------------------------------------------------
    def _read_buffer(self, size: int) -> Any:
        js, _, _, _, _ = _js()
        fits = [b for b in self._read_pool if int(b.size) >= size]
        if fits:
            buf = min(fits, key=lambda b: int(b.size))
            self._read_pool.remove(buf)
            return buf
        size_class = max(READ_POOL_MIN, 1 << (size - 1).bit_length())  # power of two
        cls = max(size, min(size_class, self.gpu.limits["maxBufferSize"]))
        usage = js.GPUBufferUsage
        return self._create_buffer(cls, usage.MAP_READ | usage.COPY_DST, "readback")

    def _return_read_buffer(self, buf: Any) -> None:
        self._read_pool.append(buf)
        while len(self._read_pool) > READ_POOL_KEEP:
            self._destroy_buffer(self._read_pool.pop(0))

    async def readback(self, tensor: GpuTensor, out: np.ndarray | None = None, *,
                       path: str | None = None) -> np.ndarray:
        js, to_js, JsException, _, bridge = _js()
        path = self.readback_path(path)
        op = f"readback {tensor!r}"
        src = tensor.buffer_for(op)
        result = prepare_out(tensor, out) if (out is not None or path == "ring") else None
        self.check_alive(op)
        size = tensor.padded_nbytes
        staging = self._read_buffer(size)
        try:
            encoder = self.device.createCommandEncoder()
            encoder.copyBufferToBuffer(src, tensor.offset, staging, 0, size)
            self.device.queue.submit(to_js([encoder.finish()]))
            try:
                await staging.mapAsync(js.GPUMapMode.READ, 0, size)
            except JsException as e:
                self.check_alive(op)
                raise GpuError(op, "mapAsync", str(e)) from e
            try:
                mapped = staging.getMappedRange(0, size)
                if path == "ring":
                    bridge.copyMappedInto(mapped, result, 0, tensor.nbytes)
                    accounting.record("readback", "ring", 1, tensor.nbytes)
                else:
                    data = js.Uint8Array.new(mapped, 0, tensor.nbytes).to_bytes()  # copy 1
                    result = np.frombuffer(data, dtype=tensor.dtype.numpy).reshape(tensor.shape).copy()
                    copies = 2
                    if out is not None:
                        np.copyto(out, result)
                        result, copies = out, 3
                    accounting.record("readback", "naive", copies, tensor.nbytes)
            finally:
                staging.unmap()
        finally:
            self._return_read_buffer(staging)
        return result
