"""The backend interface (allocate, upload, dispatch, readback, free) and GpuTensor.

Two backends implement it: `browser.BrowserBackend` (Pyodide FFI to navigator.gpu, the
product) and `native.NativeBackend` (wgpu-py in CPython: lavapipe in CI, Metal, Vulkan on
real GPUs). Model and kernel code talks to this interface only.

The checks every backend shares live here, so both raise the same errors:
unsupported dtype -> TypeError; bad shape, non-contiguous input with copy=False, an `out=`
that does not fit -> ValueError; a freed tensor -> UseAfterFree; a lost device -> DeviceLost.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from pybridge import accounting
from pybridge.dtypes import DType, lookup, padded
from pybridge.errors import DeviceLost, UseAfterFree

# Which path moves bytes when a call names none; `set_default_paths` changes it globally.
_default_paths = {"upload": None, "readback": None}  # None: the backend's measured best


def set_default_paths(upload: str | None = None, readback: str | None = None) -> None:
    """Choose the path for every later call that names none: e.g. ("naive", "naive") for the
    baseline, (None, None) for each backend's best."""
    _default_paths["upload"] = upload
    _default_paths["readback"] = readback


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
    a word-padded bytearray (`tobytes() + padding` would copy twice)."""
    if arr.nbytes % 4 == 0 and arr.nbytes:
        return arr.tobytes()
    data = bytearray(padded(arr.nbytes))
    np.frombuffer(data, dtype=np.uint8)[: arr.nbytes] = arr.reshape(-1).view(np.uint8)
    return data


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
        path = path or _default_paths["upload"] or self.upload_paths[0]
        if path not in self.upload_paths:
            raise ValueError(f"unknown upload path {path!r}; {self.name} has {self.upload_paths}")
        return path

    def readback_path(self, path: str | None) -> str:
        path = path or _default_paths["readback"] or self.readback_paths[0]
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

    @abstractmethod
    def batch(self) -> Any:
        """`async with backend.batch():` records the dispatches inside into one compute pass,
        submitted together (one error check for the lot)."""

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
        nbytes = padded(int(np.prod(shape, dtype=np.int64)) * row.itemsize)
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
        """Drop the bind groups using a buffer about to be destroyed (its id may be reused)."""
        for key in self._bind_groups_of.pop(id(buf), ()):
            self._bind_groups.pop(key, None)

    def _uniform(self, arr: np.ndarray, op: str) -> Any:
        """A UNIFORM buffer holding arr's bytes, shared by every dispatch with the same bytes."""
        u, _ = prepare_upload(arr, copy=True)
        key = u.tobytes()
        buf = self._uniforms.pop(key, None)
        if buf is None:
            buf = self._new_uniform(u, f"{op}.params")
            accounting.record("upload", "uniform", 1, u.nbytes)
            while len(self._uniforms) >= self.UNIFORM_CACHE:
                self._destroy_buffer(self._uniforms.pop(next(iter(self._uniforms))))
        self._uniforms[key] = buf  # most recently used last
        return buf

    def _bind(self, op: str, constants: dict[str, float] | None, pipeline: Any,
              bindings: Sequence[GpuTensor | np.ndarray]) -> Any:
        """The bind group of `bindings` (tensors, or numpy arrays made uniforms), cached by
        the identity of the buffers it binds."""
        entries = []
        for i, b in enumerate(bindings):
            if isinstance(b, GpuTensor):
                entries.append((b.buffer_for(f"dispatch {op}"), b.offset, b.padded_nbytes))
            elif isinstance(b, np.ndarray):  # a small uniform struct, e.g. Params
                entries.append((self._uniform(b, op), 0, padded(b.nbytes)))
            else:
                raise TypeError(f"dispatch {op}: binding {i} is a {type(b).__name__}; "
                                "expected a GpuTensor or a numpy array (uniform)")
        key = (op, tuple(sorted((constants or {}).items())),
               tuple((id(buf), off, size) for buf, off, size in entries))
        bind_group = self._bind_groups.get(key)
        if bind_group is None:
            bind_group = self._bind_groups[key] = self._new_bind_group(pipeline, entries)
            for buf, _, _ in entries:
                self._bind_groups_of.setdefault(id(buf), set()).add(key)
        return bind_group

    @abstractmethod
    def _new_uniform(self, data: np.ndarray, label: str) -> Any:
        """A UNIFORM buffer filled with data's bytes."""

    @abstractmethod
    def _new_bind_group(self, pipeline: Any, entries: list[tuple[Any, int, int]]) -> Any:
        """A bind group of (buffer, offset, size) at bindings 0..n-1 of the pipeline's group 0."""



_backend: Backend | None = None


async def default_backend() -> Backend:
    """The session's backend: the browser's in Pyodide, wgpu-py's in CPython. Created on first
    use; a lost device is replaced by a new one here."""
    global _backend
    if _backend is None:
        from pybridge._env import IN_PYODIDE

        if IN_PYODIDE:
            from pybridge.browser import BrowserBackend as Impl
        else:
            from pybridge.native import NativeBackend as Impl  # type: ignore[assignment]
        _backend = await Impl.create()
    elif _backend.lost is not None:
        await _backend.recover()
    return _backend
