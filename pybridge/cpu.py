"""The CPU backend: the same interface, with every kernel run by numpy in this process.

For a browser without WebGPU (WebKitGTK on Linux, Safari before 26, Firefox without the
flag), for `?gpu=none`, and for `pybridge.set_default_device("cpu")`: the page still boots
Python and answers, labelled "CPU (numpy)". Each kernel of wgsl/ has its numpy twin below,
written from the "numpy reference" line in that file's header: the same bindings (raw bytes
read as the WGSL declares them), the same uniform Params, the same override constants, the
same grid where the kernel reads it (attention's batch). A kernel without a twin raises a
clear error naming the ones that run here. float32 math throughout, as on the GPU; float16
weights are widened once per buffer and kept (twice the memory of the f16 copy, for speed).

  upload    "view":  numpy -> the buffer's numpy memory                 1 CPU copy
            "naive": tobytes -> copy into the buffer                    2 CPU copies (baseline)
  readback  "copy":  the buffer's memory -> numpy out                   1 CPU copy
            "naive": tobytes -> np.frombuffer(...).copy()               2 CPU copies (baseline)

A plan runs inside `submit`: the caller's inputs are written, every step computed and each
output copied once into the caller's arrays before `submit` returns (numpy has no queue to
run behind), so runs of one plan never overlap and `wait()` has nothing left to do. Timings
therefore put the forward pass in "submit" and nearly nothing in "gpu".
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pybridge import accounting
from pybridge.backend import (Backend, GpuTensor, Plan, Step, Submission, check_dispatch,
                              naive_bytes, naive_result, prepare_out)
from pybridge.dispatch import matmul_tile, shader_source
from pybridge.device import DEFAULT_LIMITS
from pybridge.errors import DeviceLost, GpuOutOfMemory, GpuValidationError

# WebGPU's default limits (pybridge.device.DEFAULT_LIMITS): what runs here fits any device.
LIMITS = dict(DEFAULT_LIMITS)


class CpuBuffer:
    """A buffer's bytes in numpy memory. `version` counts writes, so a float16 table widened
    to float32 once (`widened`) is widened again only after the buffer changed."""

    __slots__ = ("data", "size", "label", "version", "_widened")

    def __init__(self, size: int, label: str = "") -> None:
        self.data: np.ndarray | None = np.zeros(size, dtype=np.uint8)  # (size,) bytes
        self.size = size
        self.label = label
        self.version = 0
        self._widened: tuple[int, int, int, np.ndarray] | None = None

    def view(self, offset: int, nbytes: int, dtype: Any) -> np.ndarray:
        if self.data is None:
            raise ValueError(f"buffer {self.label!r} was destroyed")
        return self.data[offset:offset + nbytes].view(dtype)

    def widened(self, offset: int, count: int) -> np.ndarray:
        """`count` float16 values at `offset` as float32, converted once per version."""
        w = self._widened
        if w is None or w[:3] != (self.version, offset, count):
            w = (self.version, offset, count,
                 self.view(offset, 2 * count, np.float16).astype(np.float32))
            self._widened = w
        return w[3]

    def wrote(self) -> None:
        self.version += 1
        self._widened = None

    # what weights._load_native asks of a buffer created mapped (no mapping on the CPU)
    def _experimental_get_mapped_range(self) -> memoryview:
        return memoryview(self.data)

    def unmap(self) -> None:
        self.wrote()

    def destroy(self) -> None:
        self.data = None
        self._widened = None


Entry = tuple[CpuBuffer, int, int]  # (buffer, byte offset, bytes bound)


def _f32(e: Entry, count: int | None = None) -> np.ndarray:
    buf, off, size = e
    return buf.view(off, 4 * count if count is not None else size & ~3, np.float32)


def _i32(e: Entry, count: int | None = None) -> np.ndarray:
    buf, off, size = e
    return buf.view(off, 4 * count if count is not None else size & ~3, np.int32)


def _params(e: Entry, floats: Sequence[int] = ()) -> list[float | int]:
    """A uniform Params struct: u32 words, f32 where `floats` lists the word's index."""
    words = e[0].view(e[1], e[2] & ~3, np.uint32)
    return [float(words[i : i + 1].view(np.float32)[0]) if i in floats else int(words[i])
            for i in range(len(words))]


def _table(e: Entry, rows: int, cols: int, f16: bool) -> np.ndarray:
    """A (rows, cols) table of f32 bits, or of float16 pairs (widened once and kept)."""
    if f16:
        return e[0].widened(e[1], rows * cols).reshape(rows, cols)
    return _f32(e, rows * cols).reshape(rows, cols)


def _layer_norm(y: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = y.mean(-1, keepdims=True, dtype=np.float32)
    d = y - mean
    var = (d * d).mean(-1, keepdims=True, dtype=np.float32)
    return d / np.sqrt(var + np.float32(eps)) * gamma + beta


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), as wgsl/matmul.wgsl computes it."""
    a = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * a)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    return np.copysign(np.float32(1.0) - poly * np.exp(-a * a), x)


# --- the kernels' numpy twins, one per wgsl/ file, in the order of its bindings --------------
def axpy(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/axpy.wgsl: out = alpha * x + y."""
    n, alpha = _params(b[2], floats=(1,))[:2]
    out = _f32(b[3], n)
    np.multiply(np.float32(alpha), _f32(b[0], n), out=out)
    out += _f32(b[1], n)


def matmul(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/matmul.wgsl (every variant), matmul_splitk.wgsl, matmul_generic.wgsl:
    c = act(a @ b.T + bias), act = GELU (exact, erf) when GELU; b float16 when B_F16."""
    M, N, K = _params(b[3])[:3]
    a = _f32(b[0], M * K).reshape(M, K)
    w = _table(b[1], N, K, bool(c.get("B_F16")))
    out = _f32(b[4], M * N).reshape(M, N)
    np.matmul(a, w.T, out=out)
    out += _f32(b[2], N)
    if c.get("GELU"):
        out[:] = np.float32(0.5) * out * (np.float32(1.0) + _erf(out * np.float32(math.sqrt(0.5))))


def embed(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/embed.wgsl: out = LayerNorm(word[ids] + position[t] + token_type[0]) * g + b."""
    T, C, eps = _params(b[6], floats=(2,))[:3]
    ids = _i32(b[0])
    f16 = bool(c.get("TABLE_F16"))
    width = 2 if f16 else 4
    word = _table(b[1], (b[1][2] // width) // C, C, f16)
    position = _table(b[2], (b[2][2] // width) // C, C, f16)
    token_type = _table(b[3], 1, C, f16)
    ids = np.clip(ids, 0, len(word) - 1)  # out of range reads a clamped row, as robust access
    t = np.arange(len(ids)) % T
    x = word[ids] + position[np.minimum(t, len(position) - 1)] + token_type[0]
    _f32(b[7], len(ids) * C)[:] = _layer_norm(x, _f32(b[4], C), _f32(b[5], C), eps).reshape(-1)


def layernorm(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/layernorm.wgsl: out = LayerNorm(x + residual) * gamma + beta, per row."""
    R, C, eps = _params(b[4], floats=(2,))[:3]
    y = _f32(b[0], R * C).reshape(R, C) + _f32(b[1], R * C).reshape(R, C)
    _f32(b[5], R * C).reshape(R, C)[:] = _layer_norm(y, _f32(b[2], C), _f32(b[3], C), eps)


def attention(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/attention.wgsl: per (batch, head), softmax(q k[:n].T * scale) v[:n], n = length[b];
    grid (ceil(T / 64), heads, B)."""
    T, H, heads, scale = _params(b[2], floats=(3,))[:4]
    B, D = grid[2], H // heads
    qkv = _f32(b[0], B * T * 3 * H).reshape(B, T, 3, heads, D)
    lengths = _i32(b[1], B)
    out = _f32(b[3], B * T * H).reshape(B, T, heads, D)
    for i in range(B):
        n = min(max(int(lengths[i]), 0), T)
        if n == 0:
            out[i] = 0.0
            continue
        q = qkv[i, :, 0].transpose(1, 0, 2)  # (heads, T, D)
        k = qkv[i, :n, 1].transpose(1, 2, 0)  # (heads, D, n)
        v = qkv[i, :n, 2].transpose(1, 0, 2)  # (heads, n, D)
        s = (q @ k) * np.float32(scale)  # (heads, T, n)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[i] = (p @ v).transpose(1, 0, 2)


def pool(b: list[Entry], grid: tuple[int, int, int], c: dict[str, float]) -> None:
    """wgsl/pool.wgsl: out[b] = normalize(mean of x[b, :length[b]]) (length at least 1)."""
    T, C = _params(b[2])[:2]
    lengths = _i32(b[1])
    B = len(lengths)
    x = _f32(b[0], B * T * C).reshape(B, T, C)
    out = _f32(b[3], B * C).reshape(B, C)
    for i in range(B):
        n = min(max(int(lengths[i]), 1), T)
        m = x[i, :n].mean(0, dtype=np.float32)
        out[i] = m / max(float(np.sqrt(np.dot(m, m))), 1e-12)


def _rows(grid: tuple[int, int, int]) -> int:
    return grid[0] * grid[1]  # workgroups of a grid_1d grid, folded into y


def covers(op: str, b: list[Entry], grid: tuple[int, int, int]) -> str | None:
    """Why `grid` covers less than the kernel's whole output, or None. The numpy twins compute
    whole outputs; a GPU computes only what the grid covers, so a grid that covers less would
    make the two differ: refused instead."""
    if op == "axpy":
        n = _params(b[2])[0]
        return None if _rows(grid) * 256 >= n else f"{_rows(grid) * 256} of {n} elements"
    if op == "embed":
        n = b[0][2] // 4
        return None if _rows(grid) >= n else f"{_rows(grid)} of {n} tokens"
    if op == "layernorm":
        n = _params(b[4])[0]
        return None if _rows(grid) >= n else f"{_rows(grid)} of {n} rows"
    if op == "pool":
        n = b[1][2] // 4
        return None if _rows(grid) >= n else f"{_rows(grid)} of {n} sentences"
    if op == "attention":
        T, _, heads = _params(b[2])[:3]
        if grid[0] * 64 < T or grid[1] < heads or grid[2] > b[1][2] // 4:
            return f"grid {grid} for T={T}, {heads} heads, {b[1][2] // 4} lengths"
        return None
    M, N = _params(b[3])[:2]  # a matmul: its tile of C per workgroup, as matmul_plan grids it
    cols, rows = matmul_tile(op)
    if grid[0] * cols < N or grid[1] * rows < M:
        return f"{grid[0] * cols} x {grid[1] * rows} of C's {N} x {M} (columns x rows)"
    return None


@lru_cache(maxsize=None)
def _bindings(op: str) -> int:
    """How many bindings kernel `op` declares (its .wgsl, read once)."""
    return len(re.findall(r"@binding\(", shader_source(op)))


KERNELS: dict[str, Callable[[list[Entry], tuple[int, int, int], dict[str, float]], None]] = {
    "axpy": axpy, "embed": embed, "layernorm": layernorm, "attention": attention, "pool": pool,
    **{op: matmul for op in ("matmul", "matmul_cpu", "matmul_m64", "matmul_rows",
                             "matmul_splitk", "matmul_splitk_sg", "matmul_generic")},
}


class _Invalid(Exception):
    """A binding a GPU would refuse; raised as GpuValidationError naming the operation."""


class CpuBackend(Backend):
    name = "cpu"
    upload_paths = ("view", "naive")
    readback_paths = ("copy", "naive")

    @classmethod
    async def create(cls, reason: str = "") -> "CpuBackend":
        return cls(reason)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason  # why the CPU runs the kernels (e.g. "this browser has no WebGPU")
        self._live: dict[int, Any] = {}
        self.generation += 1
        self.lost = None
        self._reset_caches()

    def check_alive(self, op: str) -> None:
        if self.lost is not None:
            raise DeviceLost(op, *self.lost)

    def scope(self, op: str) -> contextlib.nullcontext:
        """What the GPU backends' error scopes are, for `with` and `async with` alike: numpy
        raises its errors where they happen."""
        self.check_alive(op)
        return contextlib.nullcontext()

    async def recover(self) -> None:
        """A fresh "device", as a GPU backend's recovery makes one: the old buffers are freed,
        their tensors and plans refused as replaced, the caches (uniforms, bind groups) reset."""
        for buf in list(self._live.values()):
            buf.destroy()
        self._live.clear()
        self.generation += 1
        self._reset_caches()
        self.lost = None

    def close(self) -> None:
        """Free every buffer; the backend then reports itself lost, as the others do."""
        for buf in list(self._live.values()):
            buf.destroy()
        self._live.clear()
        self.lost = ("destroyed", "the backend was closed")

    @property
    def features(self) -> frozenset[str]:
        return frozenset()

    @property
    def is_cpu(self) -> bool:
        return True

    @property
    def limits(self) -> dict[str, int]:
        return dict(LIMITS)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name,
                "adapter": {"vendor": "numpy", "architecture": "cpu", "device": "",
                            "description": f"CPU (numpy {np.__version__}): no GPU"
                                           + (f"; {self.reason}" if self.reason else "")},
                "features": [], "limits": self.limits}

    # --- buffers ----------------------------------------------------------------------
    def _create_buffer(self, size: int, usage: Any = None, label: str = "",
                       mapped: bool = False) -> CpuBuffer:
        try:
            buf = CpuBuffer(size, label)
        except MemoryError:
            from pybridge.errors import GpuOutOfMemory

            raise GpuOutOfMemory(f"allocate {label or size} ({size} bytes)", "out-of-memory",
                                 f"numpy could not allocate {size} bytes") from None
        self._live[id(buf)] = buf
        return buf

    # --- weights (pybridge.weights: streamed in the browser, read from a file in CPython) ----
    def _weights_buffer(self, size: int, label: str) -> CpuBuffer:
        return self._create_buffer(size, label=label)  # "mapped" from the start: numpy memory

    def _stream_target(self, buf: CpuBuffer, nbytes: int) -> Any:
        """JS memory that streamWeights fills as it would a mapped GPU buffer (the wasm heap
        may grow while the file streams, so it does not write into numpy's memory itself)."""
        import pybridge_js
        from pyodide.ffi import JsException

        try:
            return pybridge_js.hostBuffer(nbytes)
        except JsException as e:  # a RangeError: no JS memory that large (a raw error before)
            raise GpuOutOfMemory(f"load weights: {nbytes} bytes of JS memory", "out-of-memory",
                                 str(e)) from None

    def _stream_done(self, buf: CpuBuffer, target: Any, nbytes: int) -> None:
        target.bytes.assign_to(buf.view(0, nbytes, np.uint8))  # JS -> numpy: the second copy
        buf.wrote()
        accounting.record("weights", "host", 1, nbytes)

    async def allocate(self, shape: Any, dtype: Any, *, label: str = "") -> GpuTensor:
        shape, row, nbytes, _ = self._allocation(shape, dtype, label)
        self.check_alive(f"allocate {label}")
        return GpuTensor(self, self._create_buffer(nbytes, label=label), shape, row, label=label)

    def _write(self, buf: CpuBuffer, offset: int, arr: np.ndarray) -> None:
        """arr's bytes into the buffer: 1 CPU copy, counted by the caller."""
        buf.view(offset, arr.nbytes, np.uint8)[:] = arr.reshape(-1).view(np.uint8)
        buf.wrote()

    async def upload(self, arr: np.ndarray, *, out: GpuTensor | None = None, path: str | None = None,
                     copy: bool = True, label: str = "") -> GpuTensor:
        arr, out, dst, path, op = await self._upload_target(arr, out, path, copy, label)
        if path == "view":
            self._write(dst, out.offset, arr)
            accounting.record("upload", "view", 1, arr.nbytes)
        else:
            raw = naive_bytes(arr)  # copy 1
            dst.view(out.offset, len(raw), np.uint8)[:] = np.frombuffer(raw, np.uint8)  # copy 2
            dst.wrote()
            accounting.record("upload", "naive", 2, arr.nbytes)
        return out

    async def readback(self, tensor: GpuTensor, out: np.ndarray | None = None, *,
                       path: str | None = None) -> np.ndarray:
        path = self.readback_path(path)
        op = f"readback {tensor!r}"
        src = tensor.buffer_for(op)
        checked = prepare_out(tensor, out) if out is not None or path == "copy" else None
        self.check_alive(op)
        data = src.view(tensor.offset, tensor.nbytes, np.uint8)
        if path == "naive":
            return naive_result(data.tobytes(), tensor, checked)  # copy 1, then 2 (and 3)
        checked.reshape(-1).view(np.uint8)[:] = data  # the copy
        accounting.record("readback", "copy", 1, tensor.nbytes)
        return checked

    async def sync(self) -> None:
        self.check_alive("sync")

    # --- dispatch ---------------------------------------------------------------------
    def pipeline(self, op: str, constants: dict[str, float] | None = None) -> Any:
        """(op, its numpy twin, constants, the bindings its .wgsl declares)."""
        bindings = _bindings(op)  # FileNotFoundError naming the op where there is no kernel
        kernel = KERNELS.get(op)
        if kernel is None:
            raise GpuValidationError(
                f"dispatch {op}", "validation", f"the CPU backend has no numpy twin of kernel "
                f"{op!r} (it runs {', '.join(sorted(KERNELS))}); this needs a WebGPU device")
        return (op, kernel, dict(constants or {}), bindings)

    async def compile_pipelines(self, keys: Iterable[tuple[str, dict[str, float] | None]]
                                ) -> None:
        """Nothing to compile (each kernel is its numpy twin): only checks that every kernel
        of `keys` has one, raising what a dispatch of it would, named "compile <op>"."""
        for op, constants in keys:
            try:
                self.pipeline(op, constants)
            except GpuValidationError as e:
                raise GpuValidationError(f"compile {op}", e.kind, e.gpu_message) from None

    def _new_uniform(self, data: np.ndarray, label: str) -> CpuBuffer:
        buf = self._create_buffer(-(-data.nbytes // 4) * 4, label=label)
        self._write(buf, 0, data)
        return buf

    def _new_bind_group(self, pipeline: Any, entries: list[tuple[Any, int, int]]) -> Any:
        """What a GPU checks when a bind group is made: every binding there, none too big."""
        op, _, _, wanted = pipeline
        if len(entries) != wanted:
            raise _Invalid(f"{op} takes {wanted} bindings, got {len(entries)}")
        out = entries[-1][0]  # every kernel's last binding is its read_write output
        if any(buf is out for buf, _, _ in entries[:-1]):
            raise _Invalid(f"the output of {op} is bound as an input too (a GPU refuses a buffer "
                           "that one dispatch both reads and writes)")
        limit = LIMITS["maxStorageBufferBindingSize"]
        for i, (_, _, size) in enumerate(entries):
            if size > limit:
                raise _Invalid(f"binding {i} of {op} is {size} bytes, over "
                               f"maxStorageBufferBindingSize: limit {limit}")
        return (pipeline, list(entries))

    def _run(self, group: Any, grid: tuple[int, int, int], op: str) -> None:
        (name, kernel, constants, _), entries = group
        for buf, _, _ in entries:
            if buf.data is None:
                raise DeviceLost(op, "destroyed", f"a buffer bound to {name} was destroyed")
        short = covers(name, entries, grid)
        if short is not None:
            raise GpuValidationError(op, "validation", f"{name}'s grid covers {short}: the CPU "
                                     "backend runs whole kernels only")
        try:
            with np.errstate(all="ignore"):  # NaN and infinities flow as on a GPU, unannounced
                kernel(entries, grid, constants)
        except MemoryError:
            raise GpuOutOfMemory(op, "out-of-memory", f"numpy ran out of memory in {name}") from None
        except (ValueError, IndexError, ZeroDivisionError) as e:  # Params that the bindings
            raise GpuValidationError(op, "validation",  # do not hold, a grid past `lengths`
                                     f"{name}'s bindings do not fit its Params or grid: {e}") from None
        entries[-1][0].wrote()  # every kernel writes its last binding

    async def dispatch(self, op: str, bindings: Sequence[GpuTensor | np.ndarray],
                       grid: tuple[int, int, int], constants: dict[str, float] | None = None) -> None:
        grid = check_dispatch(op, bindings, grid, constants,
                              self.limits["maxComputeWorkgroupsPerDimension"])
        self.check_alive(f"dispatch {op}")
        pipeline = self.pipeline(op, constants)
        try:
            group = self._bind(op, constants, pipeline, bindings)
        except _Invalid as e:
            raise GpuValidationError(f"dispatch {op}", "validation", str(e)) from None
        self._run(group, grid, f"dispatch {op}")

    # --- plans ------------------------------------------------------------------------
    async def _compile_plan(self, plan: Plan, steps: list[Step],
                            grids: list[tuple[int, int, int]]) -> Any:
        try:
            return [(group, grid) for _, group, grid in self._resolve_steps(plan, steps, grids)]
        except _Invalid as e:
            raise GpuValidationError(f"plan {plan.label}", "validation", str(e)) from None

    def _submit(self, plan: Plan, inputs: list[np.ndarray], outputs: list[np.ndarray],
                op: str) -> Submission:
        for t, arr in zip(plan.inputs, inputs):
            self._write(t._buffer, t.offset, arr)
            accounting.record("upload", "view", 1, arr.nbytes)
        for group, grid in plan.handle:
            self._run(group, grid, op)
        for t, arr in zip(plan.outputs if outputs else (), outputs):
            arr.reshape(-1).view(np.uint8)[:] = t._buffer.view(t.offset, t.nbytes, np.uint8)
            accounting.record("readback", "copy", 1, t.nbytes)  # the copy, before any later run
        return _CpuRun(op)

    async def _profile(self, plan: Plan, inputs: list[np.ndarray], op: str) -> list[float]:
        for t, arr in zip(plan.inputs, inputs):
            self._write(t._buffer, t.offset, arr)
        ns = []
        t_all = time.perf_counter_ns()
        for group, grid in plan.handle:
            t0 = time.perf_counter_ns()
            self._run(group, grid, op)
            ns.append(float(time.perf_counter_ns() - t0))
        return [*ns, float(time.perf_counter_ns() - t_all)]


class _CpuRun(Submission):
    """A plan run numpy already computed in `submit`, its outputs already copied (once each)
    into the caller's arrays: there is nothing to wait for (copy_ms stays 0: the copy's time
    is the submit's)."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.waited = False

    async def wait(self) -> None:
        if self.waited:
            raise RuntimeError(f"{self.op}: this run was already waited for")
        self.waited = True
