"""The browser backend: the data path over Pyodide's FFI to navigator.gpu.

Steps, in the order of this file (copies: CPU copies in the worker, counted by
pybridge.accounting; the browser's GPU process copies writeBuffer's data again, outside it):
  view      numpy's wasm-heap bytes, borrowed by web/bridge.js for one synchronous JS call
  upload    "view":    queue.writeBuffer(gpu, view)                       1 copy
            "staging": view -> pre-mapped MAP_WRITE ring -> copyBufferToBuffer  1 copy
            "auto":    "view" below 2 MiB, "staging" from 2 MiB (the default, by measurement)
            "naive":   tobytes -> to_js -> writeBuffer                      3 copies (baseline)
            ("view" and "naive" write whole 4-byte words: a length that is not a multiple of
            4 also copies a zero-padded last word, counted as "pad")
  dispatch  wgsl/<op>.wgsl with GpuTensors (and small uniforms) bound in order; a numpy
            uniform's bytes are copied to look up its buffer ("uniform key", each dispatch)
            and into a new buffer when no buffer holds them yet ("uniform"); pipelines are
            compiled once per device, ahead and all at once (compile_pipelines:
            createComputePipelineAsync, as MiniLM.load does) or by the first plan using them
  readback  "ring":  copyBufferToBuffer -> reused MAP_READ buffer -> mapAsync -> out   1 copy
            "naive": to_bytes -> np.frombuffer(...).copy()                  2 copies (baseline)
  plans     a sequence of dispatches resolved once (pipelines, bind groups, grids, uniforms)
            and run with ONE JS call (web/bridge.js runPlan): each input written from its
            wasm-heap view (1 copy), every dispatch in one compute pass, the outputs
            copied to one MAP_READ buffer, one submit; then one call copies each output into
            its numpy array (1 copy) and unmaps. Error scopes open and close inside runPlan.

The default upload path, "auto", was chosen by tools/bench_datapath.py, which measures the
paths side by side (see README): in Chrome, writeBuffer costs less per call for small arrays,
while the reused pre-mapped ring moves large ones 2-4x faster than writeBuffer. Errors: every allocation and dispatch runs inside
WebGPU error scopes, so out-of-memory and validation errors surface as Python exceptions
naming the operation; uncaptured errors and device loss are recorded and raised by the next
operation.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import numpy as np

from pybridge import accounting
from pybridge._env import require_browser
from pybridge.backend import (Backend, GpuTensor, Plan, Step, Submission, check_dispatch,
                              naive_bytes, naive_result, pipeline_key, prepare_out)
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


def _record_view(nbytes: int) -> None:
    """What web/bridge.js writeBuffer/runPlan copy for an array of `nbytes`: each byte once
    (inside writeBuffer, from the wasm-heap view) and, when the length is not whole 4-byte
    words, its 1-3 trailing bytes into a zeroed word that writeBuffer copies too (4 bytes)."""
    accounting.record("upload", "view", 1, nbytes)
    if nbytes % 4:
        accounting.record("upload", "pad", 1, 4)


def _pipeline_error(op: str, reason: Any) -> GpuError:
    """The error of a rejected createComputePipelineAsync: a GPUPipelineError's reason is
    "validation" (what the sync path's error scope reports) or "internal"; any other
    rejection (a TypeError of the descriptor) is reported as validation, as a throwing
    call inside a scope is."""
    kind = str(getattr(reason, "reason", "validation"))
    message = str(getattr(reason, "message", reason))
    if kind == "internal":
        return GpuError(op, "internal", message)
    return GpuValidationError(op, "validation", message)


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
        # both pops in one synchronous turn: another coroutine's scope cannot interleave
        validation_popped, oom_popped = d.popErrorScope(), d.popErrorScope()
        validation, oom = await validation_popped, await oom_popped
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


class _Run(Submission):
    """A submitted plan run: one JS promise settles when the GPU is done and the outputs'
    MAP_READ buffer is mapped (or with the errors the run's error scopes caught)."""

    def __init__(self, backend: "BrowserBackend", plan: Plan, promise: Any, read_buffer: Any,
                 outputs: list[np.ndarray], op: str) -> None:
        self.backend, self.plan, self.promise = backend, plan, promise
        self.read_buffer, self.outputs, self.op = read_buffer, outputs, op
        self.generation = backend.generation  # the device it was submitted to

    def _abandon(self) -> None:
        if self.promise is None or self.read_buffer is None:
            return  # waited for, or nothing to read
        _, _, _, _, bridge = _js()
        promise, self.promise = self.promise, None
        self.backend._forget_read_buffer(self.read_buffer)
        if self.generation == self.backend.generation:
            bridge.destroyWhenSettled(promise, self.read_buffer)

    async def wait(self) -> None:
        """Wait for the GPU; copy each output once into its array (one JS call for all).
        Cancelled before the GPU is done, the run's read buffer is destroyed once its map
        settles (never handed to another run while pending)."""
        if self.promise is None:
            raise RuntimeError(f"{self.op}: this run was already waited for")
        _, _, _, _, bridge = _js()
        b, plan, op, buf = self.backend, self.plan, self.op, self.read_buffer
        promise, self.promise = self.promise, None
        settled = read = False
        try:
            failed = await promise  # null, or {validation, oom, thrown, mapError}
            settled = True
            if b.generation != self.generation:
                raise DeviceLost(op, "replaced", "the device this run was submitted to was "
                                 "lost and replaced before it finished")
            b.check_alive(op)
            if failed is not None:
                where = f"{op} ({len(plan.ops)} dispatches: {', '.join(dict.fromkeys(plan.ops))})"
                if failed.oom:
                    raise GpuOutOfMemory(where, "out-of-memory", str(failed.oom))
                if failed.validation or failed.thrown:
                    raise GpuValidationError(where, "validation",
                                             str(failed.validation or failed.thrown))
                raise GpuError(where, "mapAsync", str(failed.mapError))
            if buf is not None:
                targets: list[Any] = []
                for t, at, arr in zip(plan.outputs, plan.read_offsets, self.outputs):
                    targets += [arr, at, t.nbytes]
                t0 = time.perf_counter()
                bridge.readMapped(buf, plan.read_bytes, *targets)  # copies each output once
                self.copy_ms = (time.perf_counter() - t0) * 1e3
                for t in plan.outputs:
                    accounting.record("readback", "ring", 1, t.nbytes)
                read = True
        finally:
            if buf is not None:
                if b.generation != self.generation:  # the old device's buffer: gone with it
                    b._forget_read_buffer(buf)
                elif not settled:  # cancelled while the map is pending
                    b._forget_read_buffer(buf)
                    bridge.destroyWhenSettled(promise, buf)
                else:
                    if not read:  # readMapped unmaps; after an error it may still be mapped
                        bridge.unmapIfMapped(buf)
                    b._return_read_buffer(buf)


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
        self._read_pool: list[tuple[int, Any]] = []  # (size, MAP_READ buffer) kept for reuse
        self._read_sizes: dict[int, int] = {}  # id -> size of the read buffers lent out
        self._pipelines: dict[tuple, Any] = {}
        self._modules: dict[str, Any] = {}
        self._reset_caches()
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
        """Replace a lost device with a new one; tensors of the old one become invalid. The
        new device (with the limits profile of the old) is had first: where that fails, the
        backend stays as it was, lost, and a later recover() tries again (found in review:
        the old error listener was destroyed first, so a retry raised Pyodide's own error)."""
        gpu = await request_gpu(profile=self.gpu.limits_profile)
        old = self.device
        self._live.clear()
        try:
            old.removeEventListener("uncapturederror", self._on_error)
        finally:
            self._on_error.destroy()
        self._attach(gpu)

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
        self._drop_staging()  # its pending maps settle before their buffers go
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

    # --- weights (pybridge.weights: streamWeights fills these, then the file is checked) -----
    def _weights_buffer(self, size: int, label: str) -> Any:
        """A STORAGE buffer created mapped, for a tensor of a streamed file."""
        js = _js()[0]
        usage = js.GPUBufferUsage
        return self._create_buffer(size, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST, label,
                                   mapped=True)
    # _stream_target, _stream_done: Backend's (streamWeights copies each chunk straight into
    # the mapped range, then each buffer is unmapped)

    async def allocate(self, shape: Any, dtype: Any, *, label: str = "") -> GpuTensor:
        js, _, _, _, _ = _js()
        shape, row, nbytes, op = self._allocation(shape, dtype, label)
        usage = js.GPUBufferUsage
        buf = None
        try:
            async with self.scope(op):
                buf = self._create_buffer(nbytes, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST,
                                          label)
        except BaseException:
            if buf is not None:  # made, then refused (out of memory): an invalid buffer
                self._destroy_buffer(buf)
            raise
        return GpuTensor(self, buf, shape, row, label=label)

    # --- upload -----------------------------------------------------------------------
    async def upload(self, arr: np.ndarray, *, out: GpuTensor | None = None, path: str | None = None,
                     copy: bool = True, label: str = "") -> GpuTensor:
        arr, dst_tensor, dst, path, op = await self._upload_target(arr, out, path, copy, label)
        if path == "auto":  # measured: writeBuffer wins below 2 MiB, the ring from there on
            path = "staging" if arr.nbytes >= STAGING_FROM_BYTES else "view"
        try:
            if path == "view":
                self._upload_view(dst, dst_tensor.offset, arr)
            elif path == "staging":
                await self._upload_staging(dst, dst_tensor.offset, arr, op)
            else:
                self._upload_naive(dst, dst_tensor.offset, arr)
        except BaseException:
            if out is None:  # made here for this upload: nothing half-written is kept
                dst_tensor.free()
            raise
        return dst_tensor

    def _upload_view(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """queue.writeBuffer from the array's wasm-heap view. Copies the data once; a length
        that is not whole 4-byte words also copies a padded last word (4 bytes, "pad")."""
        _, _, _, _, bridge = _js()
        if arr.nbytes:
            bridge.writeBuffer(self.device.queue, dst, offset, arr, 0, arr.nbytes)
        _record_view(arr.nbytes)

    async def _upload_staging(self, dst: Any, offset: int, arr: np.ndarray, op: str) -> None:
        """Through a ring of pre-mapped MAP_WRITE buffers. Copies the data once (into the
        mapped range); the GPU copies it on with copyBufferToBuffer. Concurrent uploads share
        the ring: a slot is filled only once its map is done and nobody else has taken it."""
        js, to_js, JsException, _, bridge = _js()
        usage = js.GPUBufferUsage
        if not self._staging:
            self._staging = [
                [self._create_buffer(STAGING_SLOT_BYTES, usage.MAP_WRITE | usage.COPY_SRC,
                                     f"staging{i}", mapped=True), None]
                for i in range(STAGING_SLOTS)
            ]
        n, done = arr.nbytes, 0
        generation = self.generation

        def failed(e: Exception, what: str) -> GpuError:
            """A slot that could not be mapped or filled: the ring goes (made again by the
            next upload) and the caller gets a pybridge error, never a raw JS one."""
            if self.generation != generation:
                return DeviceLost(op, "replaced", "the device was replaced during this upload")
            self.check_alive(op)
            if any(x is slot for x in self._staging):
                self._drop_staging()
            return GpuError(op, "staging", f"the staging buffer could not be {what}: {e}")

        while done < n:
            chunk = min(STAGING_SLOT_BYTES, n - done)
            slot = self._staging[self._staging_next]
            self._staging_next = (self._staging_next + 1) % len(self._staging)
            while slot[1] is not None:  # mapping again after its last use
                pending = slot[1]
                try:
                    await pending
                except Exception as e:  # the map failed: a lost device, or a destroyed ring
                    raise failed(e, "mapped") from e
                if slot[1] is pending:  # else another upload took the slot meanwhile: wait again
                    slot[1] = None
            if not any(x is slot for x in self._staging):  # dropped while this upload waited
                raise failed(RuntimeError("the ring was dropped by a failed upload"), "used")
            try:
                bridge.fillMapped(slot[0], arr, done, chunk)
            except JsException as e:
                raise failed(e, "filled") from e
            slot[0].unmap()
            encoder = self.device.createCommandEncoder()
            encoder.copyBufferToBuffer(slot[0], 0, dst, offset + done, padded(chunk))
            self.device.queue.submit(to_js([encoder.finish()]))
            slot[1] = slot[0].mapAsync(js.GPUMapMode.WRITE)
            done += chunk
        accounting.record("upload", "staging", 1, n)

    def _drop_staging(self) -> None:
        """Destroy the ring; a slot whose map is pending once that map settles (a buffer is
        never destroyed while its mapAsync is pending: Safari)."""
        _, _, _, _, bridge = _js()
        ring, self._staging, self._staging_next = self._staging, [], 0
        for buf, pending in ring:
            if pending is None:
                self._destroy_buffer(buf)
            else:  # observe its rejection (nobody else may), then destroy
                self._live.pop(id(buf), None)
                self._forget_buffer(buf)
                bridge.destroyWhenSettled(pending.catch(lambda _: None), buf)

    def _upload_naive(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """The baseline: tobytes (copy 1) -> to_js (copy 2) -> writeBuffer (copy 3). A length
        that is not whole 4-byte words is padded with zeros, which copies 2 and 3 carry too
        ("pad"). An empty array writes nothing."""
        _, to_js, _, _, _ = _js()
        if arr.nbytes:
            data = naive_bytes(arr)
            self.device.queue.writeBuffer(dst, offset, to_js(data))
            if len(data) != arr.nbytes:
                accounting.record("upload", "pad", 2, len(data) - arr.nbytes)
        accounting.record("upload", "naive", 3, arr.nbytes)

    # --- dispatch ---------------------------------------------------------------------
    def pipeline(self, op: str, constants: dict[str, float] | None = None) -> Any:
        """The compute pipeline of wgsl/<op>.wgsl ('auto' layout, entry `main`) with the given
        override constants, compiled once per device (here, synchronously, unless
        compile_pipelines made it ahead). Call inside a scope: compile errors are
        validation errors."""
        key = pipeline_key(op, constants)
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            module = self._modules.get(op)
            if module is None:
                module = self._modules[op] = self.device.createShaderModule(
                    self._module_descriptor(op, shader_source(op)))
            pipeline = self._pipelines[key] = self.device.createComputePipeline(
                self._pipeline_descriptor(module, op, constants))
        return pipeline

    async def compile_pipelines(self, keys: Iterable[tuple[str, dict[str, float] | None]]
                                ) -> None:
        """Compile every pipeline of `keys` not compiled yet at once: in one synchronous turn,
        a shader module per kernel (each in its own error scopes, so a WGSL error names its
        kernel) and createComputePipelineAsync per key; then one await for them all
        (Promise.allSettled), during which the caller's other tasks run. Errors as the sync
        path gives them, naming the kernel: GpuValidationError("compile <op>", ...) (the
        module's WGSL error where the module failed; else the GPUPipelineError's message),
        GpuError(..., "internal", ...) for a pipeline the implementation could not make,
        DeviceLost where the device went meanwhile. The pipelines that compiled are cached,
        failed ones are not (a later compile or plan tries again); nothing else is held."""
        js, to_js, _, _, _ = _js()
        wanted: dict[tuple, tuple[str, dict[str, float] | None]] = {}
        for op, constants in keys:
            key = pipeline_key(op, constants)
            if key not in self._pipelines:
                wanted.setdefault(key, (op, constants))
        if not wanted:
            return
        ops = list(dict.fromkeys(op for op, _ in wanted.values()))
        where = f"compile {', '.join(ops)}"
        self.check_alive(where)
        sources = {op: shader_source(op) for op in ops if op not in self._modules}  # raises
        # FileNotFoundError naming a kernel that has no file, before any scope is pushed
        d, cache, generation = self.device, self._pipelines, self.generation
        modules = {op: self._modules.get(op) for op in ops}
        popped: dict[str, tuple[Any, Any]] = {}  # op -> its module's (validation, oom) pops
        # one synchronous turn, from the first push to the last pop: no other coroutine's
        # error scope can interleave with these
        for op, source in sources.items():
            d.pushErrorScope("out-of-memory")
            d.pushErrorScope("validation")
            try:
                modules[op] = d.createShaderModule(self._module_descriptor(op, source))
            finally:
                popped[op] = (d.popErrorScope(), d.popErrorScope())
        settled = js.Promise.allSettled(to_js([
            d.createComputePipelineAsync(self._pipeline_descriptor(modules[op], op, constants))
            for op, constants in wanted.values()]))  # never rejects: one result per key
        errors: dict[str, GpuError] = {}
        for op, (validation_popped, oom_popped) in popped.items():
            validation, oom = await validation_popped, await oom_popped
            if oom is not None:
                errors[op] = GpuOutOfMemory(f"compile {op}", "out-of-memory", str(oom.message))
            elif validation is not None:
                errors[op] = GpuValidationError(f"compile {op}", "validation",
                                                str(validation.message))
        results = await settled
        if self.generation != generation:
            raise DeviceLost(where, "replaced", "the device was lost and replaced while its "
                             "pipelines compiled")
        self.check_alive(where)
        for op in sources:
            if op not in errors:
                self._modules.setdefault(op, modules[op])
        for key, (op, _), result in zip(wanted, wanted.values(), results):
            if str(result.status) == "fulfilled":
                cache.setdefault(key, result.value)  # a sync compile meanwhile: keep its
            elif op not in errors:
                errors[op] = _pipeline_error(f"compile {op}", result.reason)
        if errors:
            first, *more = errors.values()
            if more:
                raise type(first)(first.op, first.kind, f"{first.gpu_message} (and "
                                  f"{len(more)} more: {', '.join(e.op for e in more)})")
            raise first

    @staticmethod
    def _module_descriptor(op: str, source: str) -> Any:
        js, to_js, _, _, _ = _js()
        return to_js({"code": source, "label": op}, dict_converter=js.Object.fromEntries)

    @staticmethod
    def _pipeline_descriptor(module: Any, op: str, constants: dict[str, float] | None) -> Any:
        js, to_js, _, _, _ = _js()
        compute = {"module": module, "entryPoint": "main"}
        if constants:
            compute["constants"] = {k: float(v) for k, v in constants.items()}
        return to_js({"layout": "auto", "label": op, "compute": compute},
                     dict_converter=js.Object.fromEntries)

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
        _, to_js, _, _, _ = _js()
        grid = check_dispatch(op, bindings, grid, constants,
                              self.limits["maxComputeWorkgroupsPerDimension"])
        async with self.scope(f"dispatch {op}"):
            encoder = self.device.createCommandEncoder()
            compute = encoder.beginComputePass()
            try:
                self._encode(compute, op, bindings, grid, constants)
            finally:
                compute.end()
            self.device.queue.submit(to_js([encoder.finish()]))

    # --- plans: a whole forward pass in one JS call -------------------------------------
    async def _compile_plan(self, plan: Plan, steps: list[Step],
                            grids: list[tuple[int, int, int]]) -> Any:
        """Pipelines, bind groups and grids as one JS object (web/bridge.js makePlan)."""
        _, to_js, _, _, bridge = _js()
        async with self.scope(f"plan {plan.label}"):
            resolved = self._resolve_steps(plan, steps, grids)
            pipelines = [r[0] for r in resolved]
            bind_groups = [r[1] for r in resolved]
            flat = [g for r in resolved for g in r[2]]
            inputs = [[t.buffer_for(plan.label), t.offset, t.nbytes] for t in plan.inputs]
            outputs = [[t.buffer_for(plan.label), t.offset, t.padded_nbytes, at]
                       for t, at in zip(plan.outputs, plan.read_offsets)]
            return bridge.makePlan(to_js(pipelines), to_js(bind_groups), to_js(flat),
                                   to_js(inputs), to_js(outputs), plan.read_bytes)

    def _submit(self, plan: Plan, inputs: list[np.ndarray], outputs: list[np.ndarray],
                op: str) -> Submission:
        """One JS call: writeBuffer from each input's wasm-heap view (1 CPU copy), every
        dispatch in one compute pass, the outputs copied to a MAP_READ buffer, submit, and
        mapAsync. Error scopes are pushed and popped inside that call."""
        _, _, _, _, bridge = _js()
        buf = self._read_buffer(plan.read_bytes) if outputs else None
        try:
            promise = bridge.runPlan(self.device, plan.handle, buf, *inputs)
        except BaseException:
            if buf is not None:
                self._return_read_buffer(buf)
            raise
        for arr in inputs:
            _record_view(arr.nbytes)
        return _Run(self, plan, promise, buf, outputs, op)

    async def _profile(self, plan: Plan, inputs: list[np.ndarray], op: str) -> list[float]:
        _, _, JsException, _, bridge = _js()
        async with self.scope(op):
            promise = bridge.profilePlan(self.device, plan.handle, *inputs)
        for arr in inputs:  # written from their views, like a run's
            _record_view(arr.nbytes)
        try:
            return [float(t) for t in (await promise).to_py()]
        except JsException as e:
            self.check_alive(op)
            raise GpuValidationError(op, "validation", str(e)) from e


    # --- readback ---------------------------------------------------------------------
    def _read_buffer(self, size: int) -> Any:
        js, _, _, _, _ = _js()
        # sizes are kept in Python: asking a JS buffer its size is an FFI crossing
        fits = [i for i, (n, _) in enumerate(self._read_pool) if n >= size]
        if fits:
            n, buf = self._read_pool.pop(min(fits, key=lambda i: self._read_pool[i][0]))
            self._read_sizes[id(buf)] = n
            return buf
        size_class = max(READ_POOL_MIN, 1 << (size - 1).bit_length())  # power of two
        cls = max(size, min(size_class, self.gpu.limits["maxBufferSize"]))
        usage = js.GPUBufferUsage
        buf = self._create_buffer(cls, usage.MAP_READ | usage.COPY_DST, "readback")
        self._read_sizes[id(buf)] = cls
        return buf

    def _forget_read_buffer(self, buf: Any) -> None:
        """A lent read buffer that must not go back to the pool (its caller destroys it)."""
        self._read_sizes.pop(id(buf), None)
        self._live.pop(id(buf), None)

    def _return_read_buffer(self, buf: Any) -> None:
        self._read_pool.append((self._read_sizes.pop(id(buf)), buf))
        while len(self._read_pool) > READ_POOL_KEEP:
            self._destroy_buffer(self._read_pool.pop(0)[1])

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
            mapping = staging.mapAsync(js.GPUMapMode.READ, 0, size)
            try:
                await mapping
            except JsException as e:
                self.check_alive(op)
                raise GpuError(op, "mapAsync", str(e)) from e
            except BaseException:  # cancelled while the map is pending: the buffer is never
                # reused, unmapped or destroyed before its map settles (Safari), so not pooled
                self._forget_read_buffer(staging)
                bridge.destroyWhenSettled(mapping.catch(lambda _: None), staging)
                staging = None
                raise
            try:
                mapped = staging.getMappedRange(0, size)
                if path == "ring":
                    bridge.copyMappedInto(mapped, result, 0, tensor.nbytes)
                    accounting.record("readback", "ring", 1, tensor.nbytes)
                else:
                    data = js.Uint8Array.new(mapped, 0, tensor.nbytes).to_bytes()  # copy 1
                    result = naive_result(data, tensor, result)
            finally:
                staging.unmap()
        finally:
            if staging is not None:
                self._return_read_buffer(staging)
        return result
