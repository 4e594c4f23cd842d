"""The native backend: the same interface over wgpu-py in plain CPython.

It runs the kernels of wgsl/ through wgpu-native (Naga compiler) on Vulkan or Metal: Mesa's
lavapipe (CPU) in CI, a Mac's GPU, an NVIDIA GPU on the accelerator machine. It makes kernels
fast to test and measurable on real GPUs; the browser backend is the product.

  upload    "view":  queue.write_buffer(buffer, numpy memory)          1 CPU copy
            "naive": tobytes -> write_buffer                           2 CPU copies (baseline)
  readback  "ring":  copy -> reused MAP_READ buffer -> map -> out       1 CPU copy
            "naive": queue.read_buffer -> np.frombuffer(...).copy()     2 CPU copies (baseline)

wgpu-py raises its validation and out-of-memory errors as Python exceptions at the call;
they are re-raised as pybridge's GpuValidationError / GpuOutOfMemory naming the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from pybridge import accounting
from pybridge.backend import (Backend, GpuTensor, Plan, Step, Submission, check_dispatch,
                              naive_bytes, naive_result, pipeline_key, prepare_out)
from pybridge.device import OPTIONAL_FEATURES, profile_features, required_limits
from pybridge.device import limits_profile as chosen_limits_profile
from pybridge.dispatch import shader_source
from pybridge.dtypes import padded
from pybridge.errors import (DeviceLost, GpuError, GpuOutOfMemory, GpuValidationError,
                             WebGPUUnavailable)

READ_POOL_MIN = 64 << 10
READ_POOL_KEEP = 8

# wgpu-py spells limits with dashes; the browser backend reports camelCase names.
_LIMITS = {
    "maxBufferSize": "max-buffer-size",
    "maxStorageBufferBindingSize": "max-storage-buffer-binding-size",
    "maxComputeWorkgroupStorageSize": "max-compute-workgroup-storage-size",
    "maxComputeInvocationsPerWorkgroup": "max-compute-invocations-per-workgroup",
    "maxComputeWorkgroupSizeX": "max-compute-workgroup-size-x",
    "maxStorageBuffersPerShaderStage": "max-storage-buffers-per-shader-stage",
    "maxComputeWorkgroupsPerDimension": "max-compute-workgroups-per-dimension",
    "minStorageBufferOffsetAlignment": "min-storage-buffer-offset-alignment",
    "maxUniformBufferBindingSize": "max-uniform-buffer-binding-size",
}

# WebGPU feature names that wgpu-native spells otherwise
_NATIVE_NAMES = {"subgroups": "subgroup"}


def _naga_source(text: str) -> str:
    """WGSL as Naga (wgpu 27) takes it: it has subgroup builtins but rejects the standard
    `enable subgroups;` directive ("not yet implemented in Naga"), which Dawn requires."""
    return re.sub(r"^enable subgroups;\n", "", text, flags=re.M)


def _wgpu():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # quiets a warning of headless Vulkan loaders
    import wgpu

    return wgpu


class NativeBackend(Backend):
    name = "native"
    upload_paths = ("view", "naive")
    readback_paths = ("ring", "naive")

    @classmethod
    async def create(cls, power_preference: str = "high-performance",
                     limits_profile: str | None = None) -> "NativeBackend":
        return cls(power_preference, limits_profile)

    def __init__(self, power_preference: str = "high-performance",
                 limits_profile: str | None = None) -> None:
        """`limits_profile`: which limits the device asks for (pybridge.device.LIMITS_PROFILES;
        None: the one pybridge.device.set_limits_profile chose)."""
        self.power_preference = power_preference
        self.limits_profile = limits_profile or chosen_limits_profile()
        self._live: dict[int, Any] = {}
        self._attach()

    def _attach(self) -> None:
        wgpu = _wgpu()
        adapter = wgpu.gpu.request_adapter_sync(power_preference=self.power_preference)
        if adapter is None:
            raise WebGPUUnavailable("wgpu found no GPU adapter (Vulkan/Metal); on Debian install "
                                    "mesa-vulkan-drivers for the CPU driver lavapipe")
        have = [f for f in OPTIONAL_FEATURES if _NATIVE_NAMES.get(f, f) in adapter.features]
        features = [_NATIVE_NAMES.get(f, f) for f in profile_features(self.limits_profile, have)]
        limits = required_limits(self.limits_profile, lambda name: adapter.limits[_LIMITS[name]])
        self.device = adapter.request_device_sync(
            required_features=features,
            required_limits={_LIMITS[name]: value for name, value in limits.items()},
        )
        self.adapter = adapter
        self.generation += 1
        self.lost = None
        self._pipelines: dict[tuple, Any] = {}
        self._modules: dict[str, Any] = {}
        self._reset_caches()
        self._read_pool: list[Any] = []
        self._fence: tuple[Any, Any] | None = None

    def check_alive(self, op: str) -> None:
        if self.lost is not None:
            raise DeviceLost(op, *self.lost)

    async def recover(self) -> None:
        self._live.clear()
        self._attach()

    def close(self) -> None:
        for buf in list(self._live.values()):
            buf.destroy()
        self._live.clear()
        self.lost = ("destroyed", "the backend was closed")
        self.device.destroy()

    def destroy_device(self) -> None:
        """Destroy the device, as a driver reset would; the backend reports it as lost."""
        self.device.destroy()
        self.lost = ("destroyed", "device.destroy() was called")

    @contextlib.contextmanager
    def scope(self, op: str) -> Iterator[None]:
        wgpu = _wgpu()
        self.check_alive(op)
        try:
            yield
        except wgpu.GPUOutOfMemoryError as e:
            raise GpuOutOfMemory(op, "out-of-memory", str(e)) from e
        except wgpu.GPUValidationError as e:
            raise GpuValidationError(op, "validation", str(e)) from e
        except wgpu.GPUError as e:
            raise GpuError(op, "internal", str(e)) from e

    @property
    def features(self) -> frozenset[str]:
        return frozenset(f for f in OPTIONAL_FEATURES
                         if _NATIVE_NAMES.get(f, f) in self.device.features)

    @property
    def is_cpu(self) -> bool:
        return str(self.adapter.info.get("adapter_type", "")).upper() == "CPU"

    def describe(self) -> dict[str, Any]:
        info = self.adapter.info
        return {
            "backend": self.name,
            "adapter": {k: str(info.get(k, "")) for k in ("vendor", "architecture", "device",
                                                          "description", "backend_type")},
            "features": sorted(self.features),
            "limits": {camel: int(self.device.limits[dash]) for camel, dash in _LIMITS.items()},
            "limits_profile": self.limits_profile,
        }

    @property
    def limits(self) -> dict[str, int]:
        return {camel: int(self.device.limits[dash]) for camel, dash in _LIMITS.items()}

    # --- buffers ----------------------------------------------------------------------
    def _create_buffer(self, size: int, usage: int, label: str, mapped: bool = False) -> Any:
        buf = self.device.create_buffer(size=size, usage=usage, label=label,
                                        mapped_at_creation=mapped)
        self._live[id(buf)] = buf
        return buf

    def _weights_buffer(self, size: int, label: str) -> Any:
        """A STORAGE buffer created mapped, for a tensor of a streamed file (pybridge.weights)."""
        usage = _wgpu().BufferUsage
        return self._create_buffer(size, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST, label,
                                   mapped=True)

    async def allocate(self, shape: Any, dtype: Any, *, label: str = "") -> GpuTensor:
        usage = _wgpu().BufferUsage
        shape, row, nbytes, op = self._allocation(shape, dtype, label)
        with self.scope(op):
            buf = self._create_buffer(nbytes, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST, label)
        return GpuTensor(self, buf, shape, row, label=label)

    # --- upload -----------------------------------------------------------------------
    async def upload(self, arr: np.ndarray, *, out: GpuTensor | None = None, path: str | None = None,
                     copy: bool = True, label: str = "") -> GpuTensor:
        arr, out, dst, path, op = await self._upload_target(arr, out, path, copy, label)
        with self.scope(op):
            if path == "view":
                self._write_view(dst, out.offset, arr)
            else:
                self.device.queue.write_buffer(dst, out.offset, naive_bytes(arr))  # copies 1, 2
                accounting.record("upload", "naive", 2, arr.nbytes)
        return out

    def _write_view(self, dst: Any, offset: int, arr: np.ndarray) -> None:
        """queue.write_buffer from the array's memory: wgpu-native copies it once; 1-3
        trailing bytes go through a zeroed word written whole ("pad": 1 copy of 4 bytes, as
        in the browser). Counted."""
        flat = arr.reshape(-1).view(np.uint8)
        whole = arr.nbytes & ~3
        if whole:
            self.device.queue.write_buffer(dst, offset, flat[:whole])
        if arr.nbytes != whole:
            tail = np.zeros(4, dtype=np.uint8)
            tail[: arr.nbytes - whole] = flat[whole:]
            self.device.queue.write_buffer(dst, offset + whole, tail)
            accounting.record("upload", "pad", 1, 4)
        accounting.record("upload", "view", 1, arr.nbytes)

    # --- dispatch ---------------------------------------------------------------------
    def pipeline(self, op: str, constants: dict[str, float] | None = None) -> Any:
        key = pipeline_key(op, constants)
        if key not in self._pipelines:
            module = self._modules.get(op)
            if module is None:
                module = self._modules[op] = self.device.create_shader_module(
                    code=_naga_source(shader_source(op)), label=op)
            compute = {"module": module, "entry_point": "main"}
            if constants:
                compute["constants"] = {k: float(v) for k, v in constants.items()}
            self._pipelines[key] = self.device.create_compute_pipeline(
                layout="auto", compute=compute, label=op)
        return self._pipelines[key]

    async def compile_pipelines(self, keys: Iterable[tuple[str, dict[str, float] | None]]
                                ) -> None:
        """Each pipeline of `keys` not compiled yet, compiled now, in turn: wgpu-native (29)
        has no asynchronous pipeline creation (wgpu-py 0.32's create_compute_pipeline_async
        compiles synchronously, as `_CREATE_PIPELINE_ASYNC_IS_IMPLEMENTED` is False there).
        Between two kernels the event loop runs the caller's other tasks. Errors name the
        kernel: GpuValidationError("compile <op>", ...)."""
        for op, constants in keys:
            if pipeline_key(op, constants) not in self._pipelines:
                with self.scope(f"compile {op}"):
                    self.pipeline(op, constants)
                await asyncio.sleep(0)

    def _new_uniform(self, data: np.ndarray, label: str) -> Any:
        usage = _wgpu().BufferUsage
        buf = self._create_buffer(padded(data.nbytes), usage.UNIFORM | usage.COPY_DST, label)
        self.device.queue.write_buffer(buf, 0, data)
        return buf

    def _new_bind_group(self, pipeline: Any, entries: list[tuple[Any, int, int]]) -> Any:
        return self.device.create_bind_group(
            layout=pipeline.get_bind_group_layout(0),
            entries=[{"binding": i, "resource": {"buffer": b, "offset": o, "size": n}}
                     for i, (b, o, n) in enumerate(entries)],
        )

    def _encode(self, compute: Any, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                grid: tuple[int, int, int], constants: dict[str, float] | None) -> None:
        pipeline = self.pipeline(op, constants)
        compute.set_pipeline(pipeline)
        compute.set_bind_group(0, self._bind(op, constants, pipeline, bindings))
        compute.dispatch_workgroups(*grid)

    async def dispatch(self, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                       grid: tuple[int, int, int], constants: dict[str, float] | None = None) -> None:
        grid = check_dispatch(op, bindings, grid, constants,
                              self.limits["maxComputeWorkgroupsPerDimension"])
        with self.scope(f"dispatch {op}"):
            encoder = self.device.create_command_encoder()
            compute = encoder.begin_compute_pass()
            try:
                self._encode(compute, op, bindings, grid, constants)
            finally:
                compute.end()
            self.device.queue.submit([encoder.finish()])

    async def _profile(self, plan: Plan, inputs: list[np.ndarray], op: str) -> list[float]:
        wgpu = _wgpu()
        n = len(plan.handle)
        count = 2 * n + 2
        usage = wgpu.BufferUsage
        with self.scope(op):
            query_set = self.device.create_query_set(type="timestamp", count=count)
            resolved = self.device.create_buffer(size=8 * count,
                                                 usage=usage.QUERY_RESOLVE | usage.COPY_SRC)
            try:
                for t, arr in zip(plan.inputs, inputs):
                    self._write_view(t._buffer, t.offset, arr)
                encoder = self.device.create_command_encoder()
                passes = [(i, i + 1) for i in range(n)] + [(0, n)]  # each dispatch, then all
                for k, (first, last) in enumerate(passes):
                    compute = encoder.begin_compute_pass(timestamp_writes={
                        "query_set": query_set, "beginning_of_pass_write_index": 2 * k,
                        "end_of_pass_write_index": 2 * k + 1})
                    for pipeline, group, grid in plan.handle[first:last]:
                        compute.set_pipeline(pipeline)
                        compute.set_bind_group(0, group)
                        compute.dispatch_workgroups(*grid)
                    compute.end()
                encoder.resolve_query_set(query_set, 0, count, resolved, 0)
                self.device.queue.submit([encoder.finish()])
                t = np.frombuffer(self.device.queue.read_buffer(resolved), dtype=np.uint64)
            finally:
                query_set.destroy()
                resolved.destroy()
        t = t.astype(np.int64)
        return [float(t[2 * k + 1] - t[2 * k]) for k in range(n + 1)]


    # --- plans ------------------------------------------------------------------------
    async def _compile_plan(self, plan: Plan, steps: list[Step],
                            grids: list[tuple[int, int, int]]) -> Any:
        with self.scope(f"plan {plan.label}"):
            return self._resolve_steps(plan, steps, grids)

    def _submit(self, plan: Plan, inputs: list[np.ndarray], outputs: list[np.ndarray],
                op: str) -> Submission:
        wgpu = _wgpu()
        buf = self._read_buffer(plan.read_bytes) if outputs else None
        try:
            with self.scope(op):
                for t, arr in zip(plan.inputs, inputs):
                    self._write_view(t._buffer, t.offset, arr)
                encoder = self.device.create_command_encoder()
                compute = encoder.begin_compute_pass()
                for pipeline, group, grid in plan.handle:
                    compute.set_pipeline(pipeline)
                    compute.set_bind_group(0, group)
                    compute.dispatch_workgroups(*grid)
                compute.end()
                for t, at in zip(plan.outputs if outputs else (), plan.read_offsets):
                    encoder.copy_buffer_to_buffer(t._buffer, t.offset, buf, at, t.padded_nbytes)
                self.device.queue.submit([encoder.finish()])
                promise = (buf.map_async(wgpu.MapMode.READ, 0, plan.read_bytes)
                           if buf is not None else None)
        except BaseException:
            if buf is not None:
                self._return_read_buffer(buf)
            raise
        return _NativeRun(self, plan, promise, buf, outputs, op)

    async def sync(self) -> None:
        """Waits by mapping a 4-byte buffer after an empty copy: a map completes only after all
        earlier work. (wgpu-py 0.32.0's on_submitted_work_done fails in its cffi binding.)"""
        wgpu = _wgpu()
        self.check_alive("sync")
        if self._fence is None:
            usage = wgpu.BufferUsage
            self._fence = (self._create_buffer(4, usage.COPY_SRC, "fence.src"),
                           self._create_buffer(4, usage.MAP_READ | usage.COPY_DST, "fence.dst"))
        src, dst = self._fence
        encoder = self.device.create_command_encoder()
        encoder.copy_buffer_to_buffer(src, 0, dst, 0, 4)
        self.device.queue.submit([encoder.finish()])
        await dst.map_async(wgpu.MapMode.READ, 0, 4)
        dst.unmap()

    # --- readback ---------------------------------------------------------------------
    def _read_buffer(self, size: int) -> Any:
        fits = [b for b in self._read_pool if b.size >= size]
        if fits:
            buf = min(fits, key=lambda b: b.size)
            self._read_pool.remove(buf)
            return buf
        usage = _wgpu().BufferUsage
        size_class = max(READ_POOL_MIN, 1 << (size - 1).bit_length())
        cls = max(size, min(size_class, self.limits["maxBufferSize"]))
        return self._create_buffer(cls, usage.MAP_READ | usage.COPY_DST, "readback")

    def _return_read_buffer(self, buf: Any) -> None:
        self._read_pool.append(buf)
        while len(self._read_pool) > READ_POOL_KEEP:
            self._destroy_buffer(self._read_pool.pop(0))

    async def readback(self, tensor: GpuTensor, out: np.ndarray | None = None, *,
                       path: str | None = None) -> np.ndarray:
        wgpu = _wgpu()
        path = self.readback_path(path)
        op = f"readback {tensor!r}"
        src = tensor.buffer_for(op)
        if out is not None or path == "ring":
            checked = prepare_out(tensor, out)
        self.check_alive(op)
        size = tensor.padded_nbytes
        with self.scope(op):
            if path == "naive":
                data = self.device.queue.read_buffer(src, tensor.offset, size)  # copy 1
                return naive_result(data, tensor, checked if out is not None else None)
            staging = self._read_buffer(size)
            try:
                encoder = self.device.create_command_encoder()
                encoder.copy_buffer_to_buffer(src, tensor.offset, staging, 0, size)
                self.device.queue.submit([encoder.finish()])
                await staging.map_async(wgpu.MapMode.READ, 0, size)
                try:
                    mapped = staging.read_mapped(0, size, copy=False)  # a view, no copy
                    flat = checked.reshape(-1).view(np.uint8)
                    flat[:] = np.frombuffer(mapped, dtype=np.uint8, count=tensor.nbytes)  # the copy
                    del mapped, flat
                finally:
                    staging.unmap()
            finally:
                self._return_read_buffer(staging)
        accounting.record("readback", "ring", 1, tensor.nbytes)
        return checked


class _NativeRun(Submission):
    """A submitted plan run on wgpu-py: waits on the map of its MAP_READ buffer."""

    def __init__(self, backend: NativeBackend, plan: Plan, promise: Any, read_buffer: Any,
                 outputs: list[np.ndarray], op: str) -> None:
        self.backend, self.plan, self.promise = backend, plan, promise
        self.read_buffer, self.outputs, self.op = read_buffer, outputs, op
        self.generation = backend.generation  # the device it was submitted to
        self.waited = False

    def _abandon(self) -> None:
        if self.waited or self.read_buffer is None:
            return
        self.waited = True
        if self.generation == self.backend.generation:
            self.backend._destroy_buffer(self.read_buffer)  # a pending map ends with it
        else:
            self.backend._live.pop(id(self.read_buffer), None)

    async def wait(self) -> None:
        """Wait for the GPU; copy each output once into its array. Cancelled before the GPU
        is done, the run's read buffer is destroyed (never handed to another run pending)."""
        if self.waited:
            raise RuntimeError(f"{self.op}: this run was already waited for")
        self.waited = True
        b, buf = self.backend, self.read_buffer
        if buf is None:
            if b.generation != self.generation:
                raise DeviceLost(self.op, "replaced", "the device this run was submitted to "
                                 "was lost and replaced before it finished")
            return
        settled = False
        try:
            if b.generation != self.generation:  # its device is gone: nothing to map
                raise DeviceLost(self.op, "replaced", "the device this run was submitted to "
                                 "was lost and replaced before it finished")
            with b.scope(self.op):
                try:
                    await self.promise
                    settled = True
                except Exception:  # the map failed (settled); a cancellation leaves it pending
                    settled = True
                    raise
                t0 = time.perf_counter()
                try:
                    raw = np.frombuffer(buf.read_mapped(0, self.plan.read_bytes, copy=False),
                                        dtype=np.uint8)  # a view of the mapped range
                    for t, at, arr in zip(self.plan.outputs, self.plan.read_offsets, self.outputs):
                        arr.reshape(-1).view(np.uint8)[:] = raw[at:at + t.nbytes]  # the copy
                        accounting.record("readback", "ring", 1, t.nbytes)
                    del raw
                finally:
                    buf.unmap()
                self.copy_ms = (time.perf_counter() - t0) * 1e3
        finally:
            if b.generation != self.generation:
                b._live.pop(id(buf), None)  # destroyed with its device
            elif not settled:
                b._destroy_buffer(buf)  # a pending map must not reach the pool
            else:
                if buf.map_state == "mapped":
                    buf.unmap()
                b._return_read_buffer(buf)

