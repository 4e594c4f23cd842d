"""The backend interface (allocate, upload, dispatch, readback, free) and GpuTensor.

Three backends implement it: `browser.BrowserBackend` (Pyodide FFI to navigator.gpu, the
product), `native.NativeBackend` (wgpu-py in CPython: lavapipe in CI, Metal, Vulkan on real
GPUs) and `cpu.CpuBackend` (each kernel's numpy twin, where there is no WebGPU). Model and
kernel code talks to this interface only.

The checks every backend shares live here, so both raise the same errors:
unsupported dtype -> TypeError; bad shape, non-contiguous input with copy=False, an `out=`
that does not fit -> ValueError; a freed tensor -> UseAfterFree; a lost device -> DeviceLost.
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from pybridge import accounting
from pybridge.dispatch import unsupported
from pybridge.dtypes import DType, lookup, padded
from pybridge.errors import DeviceLost, GpuError, UseAfterFree

# Which path moves bytes when a call names none; `set_default_paths` changes it globally,
# `using_paths` for one task.
_default_paths = {"upload": None, "readback": None}  # None: the backend's measured best
_task_paths: ContextVar[dict[str, str | None] | None] = ContextVar("pybridge_paths", default=None)


def set_default_paths(upload: str | None = None, readback: str | None = None) -> None:
    """Choose the path for every later call that names none: e.g. ("naive", "naive") for the
    baseline, (None, None) for each backend's best."""
    _default_paths["upload"] = upload
    _default_paths["readback"] = readback


@contextmanager
def using_paths(upload: str | None = None, readback: str | None = None) -> Iterator[None]:
    """Within the block, calls of this task (and of the tasks it starts) that name no path use
    these (None: the backend's best), whatever set_default_paths says; other tasks are
    unaffected (e.g. a zero-copy search beside a naive one)."""
    token = _task_paths.set({"upload": upload, "readback": readback})
    try:
        yield
    finally:
        _task_paths.reset(token)


def _default_path(kind: str) -> str | None:
    own = _task_paths.get()
    return own[kind] if own is not None else _default_paths[kind]


class GpuTensor:
    """A tensor in GPU memory: buffer, shape, dtype, byte offset. It stays on the GPU between
    kernels; `await t.numpy()` reads it back (one CPU copy on the zero-copy path)."""

    __slots__ = ("backend", "_buffer", "shape", "dtype", "offset", "nbytes", "label", "generation")

    def __init__(self, backend: "Backend", buffer: Any, shape: tuple[int, ...], dtype: DType,
                 offset: int = 0, label: str = "") -> None:
        self.backend = backend
        self._buffer = buffer
        self.shape = shape
        self.dtype = dtype
        self.offset = offset
        self.nbytes = math.prod(shape) * dtype.itemsize
        self.label = label
        self.generation = backend.generation  # which device of the backend holds it

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def padded_nbytes(self) -> int:
        return padded(self.nbytes)

    @property
    def freed(self) -> bool:
        return self._buffer is None

    def buffer_for(self, op: str) -> Any:
        """The backend buffer, after checking the tensor is alive and on the live device."""
        if self._buffer is None:
            raise UseAfterFree(f"{op}: {self!r} was freed; upload or allocate a new tensor")
        if self.generation != self.backend.generation:
            raise DeviceLost(op, "replaced", f"{self!r} belonged to a device that was lost")
        return self._buffer

    def free(self) -> None:
        """Release the GPU memory now (idempotent)."""
        self.backend.free(self)

    def __copy__(self):
        raise TypeError("a GpuTensor owns its GPU buffer and cannot be copied (a copy would "
                        "free it when dropped); use the same tensor, or allocate another")

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __reduce__(self):
        raise TypeError("a GpuTensor cannot be pickled: read it back with `await t.numpy()`")

    def __del__(self) -> None:
        # A tensor dropped without free() takes its GPU memory with it: the backend holds its
        # buffers by id only, so nothing else would ever release it (GPU work already
        # submitted with it finishes first: WebGPU defers destroy() past submitted work).
        if getattr(self, "_buffer", None) is not None:
            try:
                self.backend.free(self)
            except Exception:  # in a finalizer: never raise (the device may be gone)
                pass

    async def numpy(self, out: np.ndarray | None = None, *, path: str | None = None) -> np.ndarray:
        """Read back into `out` (or a new array). Copies the data once on the zero-copy path."""
        return await self.backend.readback(self, out, path=path)

    def __repr__(self) -> str:
        state = " freed" if self._buffer is None else ""
        name = f"{self.label!r} " if self.label else ""
        return f"GpuTensor({name}shape={self.shape}, dtype={self.dtype.name}{state})"


def normalize_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"shape must hold ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shape must not be negative, got {shape!r}")
    return tuple(int(d) for d in dims)


def prepare_upload(arr: Any, copy: bool) -> tuple[np.ndarray, DType]:
    """The array as it will be viewed: C-contiguous, a supported dtype. A non-contiguous array
    is copied once (counted under "contiguous") unless copy=False, which refuses it."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"upload takes a numpy.ndarray, got {type(arr).__name__}; "
                        "wrap it with np.asarray(x, dtype=...) first")
    row = lookup(arr.dtype)
    if not arr.flags.c_contiguous:
        if not copy:
            raise ValueError(
                f"array of shape {arr.shape} (strides {arr.strides}) is not C-contiguous and "
                "copy=False was asked; pass np.ascontiguousarray(a) or allow copy=True")
        arr = np.ascontiguousarray(arr)
        accounting.record("contiguous", "numpy", 1, arr.nbytes)
    return arr, row


def naive_bytes(arr: np.ndarray) -> bytes | bytearray:
    """The naive baseline's first copy: the array's bytes, padded to whole 4-byte words.
    Exactly one copy: `tobytes()`, or for a length that is not a multiple of 4 one copy into
    a zeroed word-padded bytearray (`tobytes() + padding` would copy twice)."""
    if arr.nbytes % 4 == 0 and arr.nbytes:
        return arr.tobytes()
    data = bytearray(padded(arr.nbytes))
    np.copyto(np.frombuffer(data, dtype=np.uint8)[: arr.nbytes], arr.reshape(-1).view(np.uint8))
    return data


def naive_result(data: Any, tensor: GpuTensor, out: np.ndarray | None) -> np.ndarray:
    """The naive baseline's readback after its first copy (`data`: the buffer's bytes, copied
    out by the backend): np.frombuffer(...).copy() (copy 2), then into `out` when given
    (copy 3, from prepare_out); counted."""
    result = np.frombuffer(data, dtype=np.uint8, count=tensor.nbytes).view(
        tensor.dtype.numpy).reshape(tensor.shape).copy()  # copy 2
    copies = 2
    if out is not None:
        np.copyto(out, result)
        result, copies = out, 3
    accounting.record("readback", "naive", copies, tensor.nbytes)
    return result


def prepare_out(tensor: GpuTensor, out: np.ndarray | None) -> np.ndarray:
    """The array readback writes into: `out` if it fits, else a new one."""
    if out is None:
        return np.empty(tensor.shape, dtype=tensor.dtype.numpy)  # shape of the tensor
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != tensor.dtype.numpy or out.shape != tensor.shape:
        raise ValueError(f"out is {out.dtype}{out.shape}; {tensor!r} needs "
                         f"{tensor.dtype.name}{tensor.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out


def pipeline_key(op: str, constants: dict[str, float] | None) -> tuple:
    """How a backend caches kernel `op`'s pipeline: (op, its override constants, sorted)."""
    return (op, tuple(sorted((constants or {}).items())))


class Step(NamedTuple):
    """One dispatch of a plan: wgsl/<op>.wgsl over `bindings` (GpuTensors, or numpy arrays that
    become uniform buffers owned by the plan), `grid` workgroups, `constants` overrides."""

    op: str
    bindings: Sequence[GpuTensor | np.ndarray]
    grid: tuple[int, int, int]
    constants: dict[str, float] | None = None
    name: str = ""  # what the step is for (e.g. "qkv"), in profiles; the op where empty


class Plan:
    """A sequence of dispatches resolved once (pipelines, bind groups, uniform buffers, grids)
    and replayed by `backend.submit(plan, ...)` as ONE submission, with a constant number of
    calls into the GPU API per run whatever the number of steps (in the browser: one JS call
    that uploads the inputs, records every dispatch and the readback copy, and submits).

    `inputs` are tensors a run writes from numpy (in this order); `outputs` are tensors a run
    reads back (in this order). Both are bound by identity: a plan stays valid while every
    tensor it binds is alive, and `submit` refuses it (UseAfterFree / DeviceLost) otherwise.
    Runs of one plan may overlap: the GPU queue orders them, and each run reads back into
    its own MAP_READ buffer, so a run's result is never another run's.
    """

    def __init__(self, backend: "Backend", label: str, steps: Sequence[Step],
                 inputs: Sequence[GpuTensor], outputs: Sequence[GpuTensor]) -> None:
        self.backend = backend
        self.label = label
        self.ops = [s.op for s in steps]
        self.names = [s.name or s.op for s in steps]
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        tensors: dict[int, GpuTensor] = {}
        for t in (*inputs, *outputs, *(b for s in steps for b in s.bindings
                                       if isinstance(b, GpuTensor))):
            tensors[id(t)] = t
        self.tensors = list(tensors.values())  # every tensor the plan binds, once
        # outputs land at aligned offsets of one MAP_READ buffer per run
        self.read_offsets: list[int] = []
        end = 0
        for t in outputs:
            self.read_offsets.append(end)
            end += -(-t.padded_nbytes // 256) * 256
        self.read_bytes = end
        self.uniforms: list[Any] = []  # UNIFORM buffers this plan made and owns
        self.handle: Any = None  # the backend's compiled form
        self.generation = backend.generation

    def check(self, op: str) -> None:
        """Raise UseAfterFree / DeviceLost when a tensor the plan binds is gone."""
        if self.handle is None:
            raise UseAfterFree(f"{op}: the plan {self.label!r} was freed")
        if self.generation != self.backend.generation:
            raise DeviceLost(op, "replaced", f"the plan {self.label!r} belonged to a lost device")
        for t in self.tensors:
            t.buffer_for(op)

    def free(self) -> None:
        """Release the plan's uniform buffers (idempotent). Its tensors are the caller's."""
        if self.handle is None:
            return
        self.handle = None
        if self.generation == self.backend.generation and self.backend.lost is None:
            for buf in self.uniforms:
                self.backend._destroy_buffer(buf)
        self.uniforms.clear()

    def __repr__(self) -> str:
        return f"Plan({self.label!r}, {len(self.ops)} dispatches)"


class Submission(ABC):
    """A submitted run of a plan. `await run.wait()` waits for the GPU, raises its errors
    (naming the plan) and copies each output once into the arrays given to `submit`;
    `copy_ms` is then the time of that copy."""

    copy_ms: float = 0.0

    @abstractmethod
    async def wait(self) -> None: ...

    def _abandon(self) -> None:
        """Release what a run never waited for holds (its MAP_READ buffer), without reading."""

    def __del__(self) -> None:
        # a run dropped unwaited (its caller raised before `wait`) must not keep its buffer
        try:
            self._abandon()
        except Exception:  # noqa: BLE001 (interpreter shutdown, a lost device: nothing to free)
            pass


class Batch:
    """`async with backend.batch() as b:` then `await b.dispatch(op, bindings, grid, constants)`:
    the dispatches are recorded here, in this batch alone, and run as one plan (one
    submission, one error check) when the block ends without an exception."""

    def __init__(self, backend: "Backend") -> None:
        self.backend = backend
        self.steps: list[Step] = []

    async def __aenter__(self) -> "Batch":
        self.backend.check_alive("batch")
        return self

    async def dispatch(self, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                       grid: tuple[int, int, int], constants: dict[str, float] | None = None) -> None:
        self.steps.append(Step(op, list(bindings), grid, constants))

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc is None and self.steps:
            ops = ", ".join(dict.fromkeys(s.op for s in self.steps))
            plan = await self.backend.plan(self.steps, label=f"batch of {len(self.steps)} "
                                                             f"dispatches ({ops})")
            try:
                await self.backend.submit(plan).wait()
            finally:
                plan.free()
        return False


class _NaiveRun(Submission):
    """A plan run on the labelled baseline paths (`set_default_paths("naive", ...)`): inputs
    uploaded and outputs read back by the chosen paths, around the plan's dispatches. It runs
    when waited for, under a lock, so concurrent baseline runs cannot share buffers."""

    def __init__(self, backend: "Backend", plan: Plan, inputs: list[np.ndarray],
                 outputs: list[np.ndarray], op: str) -> None:
        self.backend, self.plan, self.inputs, self.outputs, self.op = (backend, plan, inputs,
                                                                       outputs, op)

    async def wait(self) -> None:
        b = self.backend
        if b._baseline_lock is None:
            b._baseline_lock = asyncio.Lock()
        async with b._baseline_lock:
            self.plan.check(self.op)
            for t, arr in zip(self.plan.inputs, self.inputs):
                await b.upload(arr.reshape(t.shape), out=t)
            await b._submit(self.plan, [], [], self.op).wait()
            await b.sync()  # the GPU's time is not the readback's
            for t, arr in zip(self.plan.outputs, self.outputs):
                t0 = time.perf_counter()
                await t.numpy(out=arr.reshape(t.shape))
                self.copy_ms += (time.perf_counter() - t0) * 1e3


def check_grid(op: str, grid: Any, limit: int) -> tuple[int, int, int]:
    """A dispatch's grid as three ints within the device's per-dimension limit."""
    try:
        x, y, z = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise TypeError(f"dispatch {op}: grid must be three ints, got {grid!r}") from None
    if min(x, y, z) < 0 or max(x, y, z) > limit:
        raise ValueError(f"dispatch {op}: grid {grid!r} is outside 0..{limit} workgroups per "
                         "dimension; fold it (pybridge.dispatch.grid_1d)")
    return x, y, z


def check_dispatch(op: str, bindings: Sequence[Any], grid: Any, constants: dict | None,
                   limit: int) -> tuple[int, int, int]:
    """check_grid, and a shape the kernel cannot compute (pybridge.dispatch.unsupported)
    refused as ValueError on every backend."""
    why = unsupported(op, bindings, constants)
    if why is not None:
        raise ValueError(f"dispatch {op}: {why}")
    return check_grid(op, grid, limit)


class Backend(ABC):
    """allocate -> upload -> dispatch -> readback -> free, over one device.

    Paths: `upload_paths[0]` and `readback_paths[0]` are each backend's measured best;
    "naive" is the labelled baseline (several copies). `live_buffers()` counts what is held.
    """

    name: str
    upload_paths: tuple[str, ...]
    readback_paths: tuple[str, ...]
    generation: int = 0

    def upload_path(self, path: str | None) -> str:
        path = path or _default_path("upload") or self.upload_paths[0]
        if path not in self.upload_paths:
            raise ValueError(f"unknown upload path {path!r}; {self.name} has {self.upload_paths}")
        return path

    def readback_path(self, path: str | None) -> str:
        path = path or _default_path("readback") or self.readback_paths[0]
        if path not in self.readback_paths:
            raise ValueError(f"unknown readback path {path!r}; {self.name} has {self.readback_paths}")
        return path

    @abstractmethod
    async def allocate(self, shape: Any, dtype: Any, *, label: str = "") -> GpuTensor:
        """An uninitialised tensor on the GPU (STORAGE | COPY_SRC | COPY_DST)."""

    @abstractmethod
    async def upload(self, arr: np.ndarray, *, out: GpuTensor | None = None, path: str | None = None,
                     copy: bool = True, label: str = "") -> GpuTensor:
        """numpy -> GPU. One CPU copy on the zero-copy paths; into `out` when given."""

    @abstractmethod
    async def dispatch(self, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                       grid: tuple[int, int, int], constants: dict[str, float] | None = None) -> None:
        """Run wgsl/<op>.wgsl with `bindings` at 0..n-1 (numpy arrays become uniform buffers,
        cached by content) and `constants` for its `override` declarations."""

    async def plan(self, steps: Sequence[Step], *, inputs: Sequence[GpuTensor] = (),
                   outputs: Sequence[GpuTensor] = (), label: str = "plan") -> Plan:
        """Resolve `steps` once: pipelines (compiled once per device), bind groups, and the
        plan's own uniform buffers (one per distinct numpy binding, 1 CPU copy each, after
        1 copy of each step's binding to find it: "uniform key"). Replay
        with `submit`. Errors: TypeError/ValueError for bad steps or grids; compile and
        binding errors as GpuValidationError naming the plan."""
        steps = [s if isinstance(s, Step) else Step(*s) for s in steps]
        plan = Plan(self, label, steps, inputs, outputs)
        limit = self.limits.get("maxComputeWorkgroupsPerDimension", 65535)
        grids = [check_dispatch(s.op, s.bindings, s.grid, s.constants, limit) for s in steps]
        for t in plan.tensors:
            t.buffer_for(f"plan {label}")
        try:
            plan.handle = await self._compile_plan(plan, steps, grids)
        except BaseException:
            for buf in plan.uniforms:
                self._destroy_buffer(buf)
            plan.uniforms.clear()
            raise
        return plan

    def _resolve_steps(self, plan: Plan, steps: list[Step], grids: list[tuple[int, int, int]]
                       ) -> list[tuple[Any, Any, tuple[int, int, int]]]:
        """(pipeline, bind group, grid) per step; numpy bindings become uniform buffers owned
        by the plan (one per distinct content, 1 CPU copy each), and a bind group is made once
        per distinct (op, constants, buffers) within the plan. Call inside an error scope."""
        uniforms: dict[bytes, Any] = {}
        groups: dict[tuple, Any] = {}

        def uniform(arr: np.ndarray, op: str) -> Any:
            u, _ = prepare_upload(arr, copy=True)
            key = u.tobytes()
            accounting.record("dispatch", "uniform key", 1, u.nbytes)
            if key not in uniforms:
                uniforms[key] = self._new_uniform(u, f"{plan.label}.{op}.params")
                plan.uniforms.append(uniforms[key])
                accounting.record("upload", "uniform", 1, u.nbytes)
            return uniforms[key]

        resolved = []
        for step, grid in zip(steps, grids):
            pipeline = self.pipeline(step.op, step.constants)
            entries = self._entries(f"plan {plan.label}", f"plan {plan.label}: step {step.op}",
                                    step.bindings, lambda a, op=step.op: uniform(a, op))
            key = self._group_key(step.op, step.constants, entries)
            if key not in groups:
                groups[key] = self._new_bind_group(pipeline, entries)
            resolved.append((pipeline, groups[key], grid))
        return resolved

    @abstractmethod
    def pipeline(self, op: str, constants: dict[str, float] | None = None) -> Any:
        """The compute pipeline of kernel `op` with the given override constants, compiled
        once per device."""

    @abstractmethod
    async def compile_pipelines(self, keys: Iterable[tuple[str, dict[str, float] | None]]
                                ) -> None:
        """Compile ahead the pipelines of `keys`, (op, constants) as `pipeline()` takes them,
        so that later plans and dispatches find them compiled (keys already compiled are
        skipped). The browser compiles them all at once (createComputePipelineAsync), while
        the caller's other awaits go on (e.g. weights streaming). Errors name the kernel: a
        kernel that does not compile raises GpuValidationError("compile <op>", ...), as
        compiling it in a plan would, and the pipelines that did compile stay cached."""

    @abstractmethod
    async def _compile_plan(self, plan: Plan, steps: list[Step],
                            grids: list[tuple[int, int, int]]) -> Any:
        """The backend's replayable form of the plan (pipelines, bind groups, grids)."""

    def submit(self, plan: Plan, inputs: Sequence[np.ndarray] = (),
               outputs: Sequence[np.ndarray] = ()) -> Submission:
        """Run a plan as one submission: each input array written into its tensor (1 CPU copy,
        from numpy's memory), every dispatch, and each output tensor copied to a MAP_READ
        buffer; `await run.wait()` then copies each output once into `outputs` (C-contiguous
        arrays of the tensors' dtype and size). Submitting does not wait, so the CPU can
        prepare the next run while the GPU works."""
        op = f"submit {plan.label}"
        self.check_alive(op)
        plan.check(op)
        if len(inputs) != len(plan.inputs) or len(outputs) != len(plan.outputs):
            raise ValueError(f"{op}: takes {len(plan.inputs)} input and {len(plan.outputs)} "
                             f"output arrays, got {len(inputs)} and {len(outputs)}")
        ins = self._plan_inputs(plan, inputs, op)
        for t, out in zip(plan.outputs, outputs):
            if (not isinstance(out, np.ndarray) or out.dtype != t.dtype.numpy
                    or out.size != t.size or not out.flags.c_contiguous
                    or not out.flags.writeable):
                raise ValueError(f"{op}: output for {t!r} must be a writeable C-contiguous "
                                 f"{t.dtype.name} array of {t.size} elements")
        if "naive" in (self.upload_path(None), self.readback_path(None)):
            return _NaiveRun(self, plan, ins, list(outputs), op)
        return self._submit(plan, ins, list(outputs), op)

    async def profile(self, plan: Plan, inputs: Sequence[np.ndarray] = ()) -> dict[str, Any]:
        """GPU time of each dispatch of a plan, from timestamp queries (needs the device feature
        `timestamp-query`): each dispatch timed in a compute pass of its own, then the whole
        plan in one pass. Returns {"steps": [(name, µs), ...], "ops", "sum_us", "whole_us"}; for
        finding where GPU time goes, not for the hot path (it creates and destroys its query
        buffers each call)."""
        op = f"profile {plan.label}"
        if "timestamp-query" not in self.features:
            raise ValueError(f"{op}: this device has no 'timestamp-query' feature "
                             f"(features: {', '.join(sorted(self.features)) or 'none'})")
        self.check_alive(op)
        plan.check(op)
        if len(inputs) != len(plan.inputs):
            raise ValueError(f"{op}: takes {len(plan.inputs)} input arrays, got {len(inputs)}")
        ns = await self._profile(plan, self._plan_inputs(plan, inputs, op), op)
        if min(ns) < 0:  # a timestamp went back: the device's timestamps cannot be trusted
            raise GpuError(op, "timestamp-query", f"a pass ended before it began ({min(ns)} ns)")
        steps = [(name, t / 1e3) for name, t in zip(plan.names, ns)]
        return {"steps": steps, "ops": list(plan.ops), "sum_us": sum(t for _, t in steps),
                "whole_us": ns[-1] / 1e3}

    @abstractmethod
    async def _profile(self, plan: Plan, inputs: list[np.ndarray], op: str) -> list[float]:
        """ns per dispatch (each in its own timed pass), then ns of the whole plan in one."""

    @staticmethod
    def _plan_inputs(plan: Plan, inputs: Sequence[np.ndarray], op: str) -> list[np.ndarray]:
        """The input arrays as written: C-contiguous, each of its tensor's dtype and size."""
        ins = []
        for t, arr in zip(plan.inputs, inputs):
            arr, row = prepare_upload(arr, copy=True)
            if row != t.dtype or arr.size != t.size:
                raise ValueError(f"{op}: input for {t!r} is {row.name}{arr.shape}")
            ins.append(arr)
        return ins

    @abstractmethod
    def _submit(self, plan: Plan, inputs: list[np.ndarray], outputs: list[np.ndarray],
                op: str) -> Submission:
        """One submission of a checked plan run: inputs written, dispatches, outputs copied to
        a MAP_READ buffer (no inputs and no outputs given: the dispatches alone)."""

    def batch(self) -> Batch:
        """`async with backend.batch() as b:` then `await b.dispatch(op, bindings, grid,
        constants)`: the dispatches recorded inside are submitted together as one plan when
        the block ends (one error check for the lot). Each batch records only its own
        dispatches, so concurrent batches and dispatches do not mix; `backend.dispatch` inside
        the block runs at once, on its own."""
        return Batch(self)

    @abstractmethod
    async def readback(self, tensor: GpuTensor, out: np.ndarray | None = None, *,
                       path: str | None = None) -> np.ndarray:
        """GPU -> numpy. One CPU copy on the zero-copy path, into `out` when given."""

    @abstractmethod
    async def sync(self) -> None:
        """Wait until the GPU has finished all submitted work."""

    @abstractmethod
    async def recover(self) -> None:
        """Replace a lost device with a new one; tensors of the old one become invalid."""

    @property
    @abstractmethod
    def features(self) -> frozenset[str]:
        """The optional WebGPU features the device was created with (e.g. "shader-f16")."""

    @property
    @abstractmethod
    def is_cpu(self) -> bool:
        """Whether the device is a CPU implementation (SwiftShader, lavapipe): kernels pick
        their tiles differently there."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able facts: backend name, adapter, features, limits."""

    lost: tuple[str, str] | None = None  # (reason, message) once the device is lost
    _subgroups: tuple[int, bool, str] | None = None  # (generation, usable, why) once probed

    async def subgroups_usable(self) -> bool:
        """Whether kernels may use subgroup shuffles here (MiniLM's matmul_splitk_sg): the
        device has `subgroups`, compiles WGSL that enables them, and its subgroups are aligned
        runs of invocations in order, as those kernels pair lanes (wgsl/subgroup_probe.wgsl,
        run once per device). `subgroups_note` says why not. A lost device raises DeviceLost."""
        if self._subgroups is not None and self._subgroups[0] == self.generation:
            return self._subgroups[1]
        probing = self._probing
        if probing is not None and probing[0] == self.generation:  # another caller's probe
            return await asyncio.shield(probing[1])
        task = asyncio.ensure_future(self._probe_subgroups())
        self._probing = (self.generation, task)
        try:
            return await asyncio.shield(task)
        finally:
            if self._probing is not None and self._probing[1] is task and task.done():
                self._probing = None

    _probing: tuple[int, Any] | None = None  # (generation, the probe running now)

    async def _probe_subgroups(self) -> bool:
        generation = self.generation
        if "subgroups" not in self.features:
            usable, why = False, "the device has no `subgroups` feature"
        else:
            out = await self.allocate((256,), np.uint32, label="subgroup_probe")
            try:
                await self.dispatch("subgroup_probe", [out], (1, 1, 1))
                got = await out.numpy()  # (256,) u32: bit 0 = pairing holds, >> 8 = size
                sizes = sorted({int(v) >> 8 for v in got})
                usable = bool(np.all(got & 1))
                why = (f"subgroups of {sizes} invocations, in order" if usable else
                       f"subgroups of {sizes} invocations, not in invocation order: not used")
            except DeviceLost:
                raise
            except GpuError as e:  # e.g. a compiler that rejects `enable subgroups;`
                usable, why = False, f"subgroup kernels do not compile here: {e}"
            finally:
                out.free()
        self._subgroups = (generation, usable, why)
        return usable


    @property
    def subgroups_note(self) -> str:
        """What subgroups_usable() found on this device ("" before it ran)."""
        s = self._subgroups
        return s[2] if s is not None and s[0] == self.generation else ""
    _baseline_lock: Any = None  # serialises plan runs on the baseline paths (_NaiveRun)

    # --- what both backends share: buffers held, argument checks, cached bindings -----------
    _live: dict[int, Any]  # id -> every buffer this backend made and has not destroyed

    def live_buffers(self) -> int:
        return len(self._live)

    def _destroy_buffer(self, buf: Any) -> None:
        """Destroy a buffer this backend made (and forget what refers to it)."""
        self._live.pop(id(buf), None)
        self._forget_buffer(buf)
        buf.destroy()

    def free(self, tensor: GpuTensor) -> None:
        buf = tensor._buffer
        if buf is None:
            return
        tensor._buffer = None
        if tensor.generation == self.generation and self.lost is None:
            self._destroy_buffer(buf)
        else:  # its device is gone: nothing to destroy
            self._live.pop(id(buf), None)

    def _allocation(self, shape: Any, dtype: Any, label: str) -> tuple[tuple[int, ...], DType, int, str]:
        """(shape, dtype row, padded bytes, op name) of an allocation, after the checks."""
        shape = normalize_shape(shape)
        row = lookup(dtype)
        nbytes = padded(math.prod(shape) * row.itemsize)  # Python ints: no overflow
        limit = self.limits["maxBufferSize"]
        if nbytes > limit:
            raise ValueError(f"allocate {row.name}{shape}: {nbytes} bytes exceeds this device's "
                             f"maxBufferSize of {limit} bytes")
        return shape, row, nbytes, f"allocate {label or row.name + str(shape)} ({nbytes} bytes)"

    async def _upload_target(self, arr: Any, out: GpuTensor | None, path: str | None, copy: bool,
                             label: str) -> tuple[np.ndarray, GpuTensor, Any, str, str]:
        """(array as viewed, destination tensor, its buffer, path, op name) of an upload."""
        path = self.upload_path(path)
        arr, row = prepare_upload(arr, copy)
        op = f"upload {label or row.name + str(arr.shape)}"
        self.check_alive(op)
        if out is None:
            out = await self.allocate(arr.shape, row.numpy, label=label)
        elif out.dtype != row or out.shape != arr.shape:
            raise ValueError(f"{op}: out is {out!r}; the array is {row.name}{arr.shape}")
        return arr, out, out.buffer_for(op), path, op

    @property
    @abstractmethod
    def limits(self) -> dict[str, int]:
        """The device's limits, WebGPU's camelCase names."""

    @abstractmethod
    def check_alive(self, op: str) -> None:
        """Raise DeviceLost (or a pending uncaptured GPU error) naming `op`."""

    # --- bind groups and uniforms cached across dispatches ----------------------------------
    UNIFORM_CACHE = 512  # kernel-parameter buffers kept, keyed by their bytes

    def _reset_caches(self) -> None:
        self._bind_groups: dict[tuple, Any] = {}
        self._bind_groups_of: dict[int, set[tuple]] = {}  # buffer id -> keys of its bind groups
        self._uniforms: dict[bytes, Any] = {}

    def _forget_buffer(self, buf: Any) -> None:
        """Drop the bind groups using a buffer about to be destroyed (its id may be reused),
        and their keys from the index of every other buffer they bound. GpuTensor.__del__
        reaches here whenever Python collects a tensor: never iterate these dicts across
        code that may allocate (copy them first)."""
        for key in self._bind_groups_of.pop(id(buf), ()):
            self._bind_groups.pop(key, None)
            for other, _, _ in key[2]:  # (buffer id, offset, size) of each binding
                keys = self._bind_groups_of.get(other)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._bind_groups_of[other]

    def _uniform(self, arr: np.ndarray, op: str) -> Any:
        """A UNIFORM buffer holding arr's bytes, shared by every dispatch with the same bytes.
        Copies them once to look the buffer up (the key must not change if the caller later
        writes into `arr`), and once more into a new buffer when none holds them yet."""
        u, _ = prepare_upload(arr, copy=True)
        key = u.tobytes()
        accounting.record("dispatch", "uniform key", 1, u.nbytes)
        buf = self._uniforms.pop(key, None)
        if buf is None:
            buf = self._new_uniform(u, f"{op}.params")
            accounting.record("upload", "uniform", 1, u.nbytes)
            while len(self._uniforms) >= self.UNIFORM_CACHE:
                self._destroy_buffer(self._uniforms.pop(next(iter(self._uniforms))))
        self._uniforms[key] = buf  # most recently used last
        return buf

    def _entries(self, op: str, where: str, bindings: Sequence[GpuTensor | np.ndarray],
                 uniform: Any) -> list[tuple[Any, int, int]]:
        """(buffer, offset, size) per binding: a tensor's buffer, or for a numpy array (a small
        uniform struct, e.g. Params) the buffer `uniform(array)` gives."""
        entries = []
        for i, b in enumerate(bindings):
            if isinstance(b, GpuTensor):
                entries.append((b.buffer_for(op), b.offset, b.padded_nbytes))
            elif isinstance(b, np.ndarray):
                entries.append((uniform(b), 0, padded(b.nbytes)))
            else:
                raise TypeError(f"{where} binding {i} is a {type(b).__name__}; "
                                "expected a GpuTensor or a numpy array (uniform)")
        return entries

    @staticmethod
    def _group_key(op: str, constants: dict[str, float] | None,
                   entries: list[tuple[Any, int, int]]) -> tuple:
        """What makes two bind groups the same: kernel, constants, and the buffers bound."""
        return (op, tuple(sorted((constants or {}).items())),
                tuple((id(buf), off, size) for buf, off, size in entries))

    def _bind(self, op: str, constants: dict[str, float] | None, pipeline: Any,
              bindings: Sequence[GpuTensor | np.ndarray]) -> Any:
        """The bind group of `bindings` (tensors, or numpy arrays made uniforms), cached by
        the identity of the buffers it binds."""
        entries = self._entries(f"dispatch {op}", f"dispatch {op}:", bindings,
                                lambda a: self._uniform(a, op))
        key = self._group_key(op, constants, entries)
        bind_group = self._bind_groups.get(key)
        if bind_group is None:
            bind_group = self._bind_groups[key] = self._new_bind_group(pipeline, entries)
            for buf, _, _ in entries:
                self._bind_groups_of.setdefault(id(buf), set()).add(key)
        return bind_group

    # --- weights (pybridge.weights) -------------------------------------------------------
    @abstractmethod
    def _weights_buffer(self, size: int, label: str) -> Any:
        """A buffer for one tensor of a weights file, writable at once: a STORAGE buffer
        created mapped on a GPU, numpy memory on the CPU backend."""

    def _stream_target(self, buf: Any, nbytes: int) -> Any:
        """What the browser's streamWeights writes the tensor into (it takes a mapped GPU
        buffer or JS memory): the buffer itself unless the backend says otherwise."""
        return buf

    def _stream_done(self, buf: Any, target: Any, nbytes: int) -> None:
        """The streamed file was whole and checked: the tensor's bytes are final (unmap)."""
        buf.unmap()

    @abstractmethod
    def _new_uniform(self, data: np.ndarray, label: str) -> Any:
        """A UNIFORM buffer filled with data's bytes."""

    @abstractmethod
    def _new_bind_group(self, pipeline: Any, entries: list[tuple[Any, int, int]]) -> Any:
        """A bind group of (buffer, offset, size) at bindings 0..n-1 of the pipeline's group 0."""



_backend: Backend | None = None
_device: list[str] = ["gpu", ""]  # what default_backend() makes: "gpu" or "cpu", and why


def set_default_device(device: str, reason: str = "") -> None:
    """"gpu" (the default: WebGPU in the browser, wgpu-py in CPython) or "cpu" (every kernel
    run by numpy in this process: pybridge.cpu), for the backend default_backend() makes next;
    `reason` is shown in the backend's description (e.g. "this browser has no WebGPU"). The
    backend already made, if any, is kept until this changes the kind; then it is dropped,
    not closed: its tensors keep working, and it holds its device (in the browser, for good:
    its error listener keeps it alive) until you close() it."""
    global _backend
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be 'gpu' or 'cpu', got {device!r}")
    if _backend is not None and (_backend.name == "cpu") != (device == "cpu"):
        _backend = None  # the next default_backend() makes the other kind
    _device[0], _device[1] = device, reason


async def default_backend() -> Backend:
    """The session's backend: the browser's in Pyodide, wgpu-py's in CPython, numpy's after
    set_default_device("cpu"). Created on first use; a lost device is replaced by a new one
    here. Callers that arrive while it is being made or recovered wait for that same work
    (one device, one recovery); a caller cancelled meanwhile does not cancel it for the
    others."""
    global _making
    while True:
        backend = _backend
        if backend is not None and backend.lost is None:
            return backend
        making = _making
        if making is None or making.done():
            making = _making = asyncio.ensure_future(_make_or_recover())
            # its error reaches every caller; retrieved here too, for when all were cancelled
            making.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.shield(making)
        finally:
            if _making is making and making.done():
                _making = None
        if _backend is not None:  # None: set_default_device changed the kind meanwhile
            return _backend


_making: Any = None  # the task making or recovering the default backend now, if any


async def gpu_or_cpu() -> str | None:
    """A page's first default_backend(), before any other caller's: None where it got its
    GPU; where the GPU cannot be had here (WebGPUUnavailable: the worker has no navigator.gpu,
    no adapter or no device, although the page had one), the CPU backend is made the default
    instead and the reason is returned, for the page to say. A caller waiting on the same
    making meanwhile gets the WebGPUUnavailable; a failed recovery of a backend already made
    (its tensors live) is raised, not replaced by the CPU backend."""
    from pybridge.device import NO_WEBGPU_HELP
    from pybridge.errors import WebGPUUnavailable

    try:
        await default_backend()
        return None
    except WebGPUUnavailable as e:  # the page saw WebGPU: no browser advice, just what failed
        if _backend is not None:  # a recovery failed: the backend and its tensors stay
            raise
        what = str(e).replace(NO_WEBGPU_HELP, "").strip()
        why = f"WebGPU works on this page but not in its worker: {what}"
        set_default_device("cpu", why)
        await default_backend()
        return why


async def _make_or_recover() -> None:
    global _backend
    if _backend is not None:
        recovering = _backend
        if recovering.lost is not None:
            await recovering.recover()
            if _backend is not recovering:  # set_default_device switched kinds meanwhile
                recovering.close()  # its new device would be held by nobody
        return
    from pybridge._env import IN_PYODIDE

    kind, reason = _device
    if kind == "cpu":
        from pybridge.cpu import CpuBackend

        backend: Backend = await CpuBackend.create(reason)
    elif IN_PYODIDE:
        from pybridge.browser import BrowserBackend

        backend = await BrowserBackend.create()
    else:
        from pybridge.native import NativeBackend

        backend = await NativeBackend.create()
    if _backend is None and _device[0] == kind:
        _backend = backend
    else:  # set_default_device asked for the other kind while this one was made
        backend.close()
