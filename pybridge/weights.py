"""Weights: a safetensors file streamed from the server straight into GPU buffers.

    tensors = await load_safetensors(url, sha256=..., blocks=..., progress=lambda done, total: ...)

The JSON header (a few kB) is fetched with Range requests (from a server that ignores them,
as the start of the whole file, the rest cancelled) and parsed in Python. The tensor
bytes never enter the wasm heap, nor a whole-file ArrayBuffer: the response body streams
chunk by chunk (web/bridge.js `streamWeights`) into STORAGE buffers created
`mappedAtCreation`, one per tensor. The file is checked while it streams, in one of two ways:
- `blocks` (the model manifest's, tools/convert_model.py): the SHA-256 of each block of the
  file (4 MiB), each digested by WebCrypto (`crypto.subtle.digest`, native code, ~7x the JS
  hash) as soon as it is whole; where a page has no WebCrypto (not a secure context), by
  web/sha256.js. Peak extra memory: one block of scratch, plus WebCrypto's copies of the few
  blocks still being digested (bridge.js: MAX_PENDING_DIGESTS). A mismatch names the first
  bad block's bytes.
- `sha256` alone (a file without a block list): an incremental SHA-256 in JS (web/sha256.js,
  ~100 MB/s, slower than a local download) over the whole file. Peak extra memory: one chunk.
A dropped connection is resumed where it stopped with a Range request (a few times in a row
without progress; the hash goes on from the same state, the partial block too). A hash
mismatch or a download that cannot finish destroys every buffer made for the file and raises
(IntegrityError, DownloadError, naming the file): nothing half-loaded stays on the GPU.

The native backend streams a local file (or http URL) the same way through wgpu-py's
mapped ranges, checking the whole file's `sha256` with hashlib.

The CPU backend (pybridge/cpu.py) has no GPU memory to stream into: in the browser the same
stream fills one JS buffer per tensor, and once the file's hash is checked each is copied
into the tensor's numpy memory (a second copy per tensor, counted as "host"). Peak memory is
then the whole file twice (JS and the wasm heap) until the JS buffers are collected; in
CPython the file streams straight into the numpy buffers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pybridge import accounting
from pybridge._env import IN_PYODIDE
from pybridge.backend import Backend, GpuTensor, default_backend
from pybridge.dtypes import DTYPES, SAFETENSORS_DTYPES, DType, padded
from pybridge.errors import DownloadError, IntegrityError

if TYPE_CHECKING:
    import numpy as np

MAX_HEADER_BYTES = 100 << 20  # the format's own limit
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
NATIVE_CHUNK = 1 << 20

Progress = Callable[[int, int], Any]

# What the last browser load measured: {"bytes", "peakChunk" (the largest network chunk held
# at once), "resumes", "blockHash" ("WebCrypto", "sha256.js" where there is none, or "" for
# the whole-file hash), "hashWaitMs" (time spent waiting on the block digests, to bound those
# in flight and after the last byte)}. Read by tools/bench_datapath.py.
last_stream: dict[str, Any] = {}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    begin: int  # byte offsets in the whole file (header included)
    end: int


@dataclass(frozen=True)
class Header:
    length: int  # bytes of the JSON header
    tensors: list[TensorInfo]  # sorted by begin
    metadata: dict[str, str]
    file_size: int

    @property
    def data_start(self) -> int:
        return 8 + self.length


def header_length(first8: bytes) -> int:
    if len(first8) != 8:
        raise ValueError(f"not a safetensors file: {len(first8)} bytes, expected at least 8")
    (n,) = struct.unpack("<Q", first8)
    if n < 2 or n > MAX_HEADER_BYTES:
        raise ValueError(f"not a safetensors file: header length {n} (must be 2..{MAX_HEADER_BYTES})")
    return n


def parse_header(header_json: bytes, file_size: int) -> Header:
    """Parse and check a safetensors header; offsets in the result are file offsets."""
    n = len(header_json)
    try:
        raw = json.loads(header_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors header is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError("safetensors header must be a JSON object")
    metadata = raw.pop("__metadata__", {}) or {}
    data_start = 8 + n
    tensors = []
    for name, spec in raw.items():
        try:
            st_dtype, shape, (begin, end) = spec["dtype"], spec["shape"], spec["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r}: header entry needs dtype, shape, data_offsets") from None
        if st_dtype not in SAFETENSORS_DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {st_dtype} is not supported; accepted: "
                            f"{', '.join(SAFETENSORS_DTYPES)}")
        row = DTYPES[SAFETENSORS_DTYPES[st_dtype]]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r}: bad shape {shape}")
        if end - begin != math.prod(shape) * row.itemsize or begin < 0:
            raise ValueError(f"tensor {name!r}: data_offsets {begin}..{end} do not hold "
                             f"{row.name}{tuple(shape)}")
        tensors.append(TensorInfo(name, row, tuple(shape), data_start + begin, data_start + end))
    tensors.sort(key=lambda t: t.begin)
    pos = data_start
    for t in tensors:
        if t.begin < pos:
            raise ValueError(f"tensor {t.name!r} overlaps the tensor before it")
        pos = t.end
    if pos > file_size:
        raise ValueError(f"tensors end at byte {pos} but the file has {file_size} bytes")
    return Header(n, tensors, metadata, file_size)


async def load_safetensors(source: str | Path, backend: Backend | None = None, *,
                           sha256: str | None = None, blocks: dict[str, Any] | None = None,
                           progress: Progress | None = None) -> dict[str, GpuTensor]:
    """Stream a safetensors file into one GPU tensor per entry; returns name -> GpuTensor.

    Copies the tensor bytes once (network chunk -> mapped GPU memory); 0 bytes pass through
    the wasm heap (on the CPU backend in the browser: twice, see the module's docstring).
    In the browser, `blocks` ({"bytes": B, "sha256": [hex, ...]}: each B bytes' digest, the
    last block shorter) are checked while the file streams (one more CPU copy of the file,
    into the hash's block, counted as "hash"); without them, `sha256` (hex) over the whole
    file, in JS. Natively `sha256` is checked (hashlib), which covers what `blocks` do; pass
    it (`blocks` alone is refused there rather than left unchecked)."""
    backend = backend or await default_backend()
    if backend.name == "browser" or (backend.name == "cpu" and IN_PYODIDE):
        return await _load_browser(backend, str(source), sha256, blocks, progress)
    if blocks is not None and sha256 is None:
        raise ValueError(f"{source}: natively the whole file's sha256 is checked (hashlib); "
                         "pass sha256= (blocks= is what the browser checks)")
    return await _load_native(backend, source, sha256, progress)


def check_block_list(url: str, blocks: dict[str, Any], file_size: int) -> int:
    """The block size of a manifest's `blocks` for a file of `file_size` bytes; ValueError,
    naming the file, when the list cannot be this file's (checked before anything streams)."""
    size, digests = blocks.get("bytes"), blocks.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"{url}: the manifest's blocks have block size {size!r}: not a "
                         "positive number of bytes")
    if not isinstance(digests, list):
        raise ValueError(f"{url}: the manifest's blocks list no sha256 digests")
    bad = next((d for d in digests if not (isinstance(d, str) and _HEX64.fullmatch(d))), None)
    if bad is not None:
        raise ValueError(f"{url}: the manifest's blocks: not a sha256 hex digest: {bad!r}")
    if len(digests) != -(-file_size // size):
        raise ValueError(f"{url}: the manifest lists {len(digests)} blocks of {size} bytes; a "
                         f"file of {file_size} bytes has {-(-file_size // size)} (not the file "
                         "the manifest describes)")
    return size


def check_blocks(url: str, got: list[str], blocks: dict[str, Any], file_size: int) -> None:
    """`got` (each block's sha256, as streamed) against the manifest's `blocks`; IntegrityError
    naming the file and the first bad block's bytes (inclusive, as HTTP ranges)."""
    size, want = blocks["bytes"], blocks["sha256"]
    for k, (g, w) in enumerate(zip(got, want)):
        if g != w.lower():
            end = min((k + 1) * size, file_size) - 1
            raise IntegrityError(
                f"{url}: bytes {k * size}-{end} of {file_size} (block {k} of {len(want)}) have "
                f"sha256 {g}, the manifest lists {w} (corrupted on the server or on the way); "
                "no tensor was kept")
    if len(got) != len(want):  # streamWeights digests every block of a whole file
        raise IntegrityError(f"{url}: {len(got)} block digests for the {len(want)} blocks the "
                             "manifest lists; no tensor was kept")


_NUMPY_TO_SAFETENSORS = {"float32": "F32", "float16": "F16", "int32": "I32", "uint32": "U32",
                         "uint8": "U8"}


def write_safetensors(path: str | Path, tensors: dict[str, "np.ndarray"],
                      metadata: dict[str, str] | None = None) -> str:
    """Write a safetensors file (JSON header padded to 8 bytes, then the raw little-endian
    tensors in order); returns its sha256. Used by the model converter and the tests."""
    import numpy as np

    header: dict[str, Any] = {"__metadata__": dict(metadata or {})}
    pos = 0
    for name, a in tensors.items():
        st = _NUMPY_TO_SAFETENSORS.get(np.dtype(a.dtype).name)
        if st is None:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} is not supported; accepted: "
                            f"{', '.join(_NUMPY_TO_SAFETENSORS)}")
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for part in (struct.pack("<Q", len(raw)), raw):
            f.write(part)
            h.update(part)
        for a in tensors.values():
            data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
            f.write(data)
            h.update(data)
    return h.hexdigest()


# --- browser ---------------------------------------------------------------------------------
async def _fetch_range(url: str, start: int, end: int) -> tuple[bytes, int]:
    """Bytes [start, end) of url and the file's total size: a Range request, or where the
    server ignores Range (a plain static host: HTTP 200, the whole file) the first `end` bytes
    of the body, the rest cancelled, and the size from Content-Length."""
    import js
    from pyodide.ffi import to_js

    from pyodide.ffi import JsException

    try:
        resp = await js.fetch(url, to_js({"headers": {"Range": f"bytes={start}-{end - 1}"}},
                                         dict_converter=js.Object.fromEntries))
        content_range = re.fullmatch(r"bytes \d+-\d+/(\d+)", str(resp.headers.get("Content-Range")))
        length = str(resp.headers.get("Content-Length"))
        if resp.status == 206 and content_range is not None:
            total = int(content_range[1])
            data = (await resp.arrayBuffer()).to_bytes()
        elif resp.status == 200 and length.isdigit() and not resp.headers.get("Content-Encoding"):
            if not resp.body:
                raise DownloadError(f"{url}: HTTP 200 with no body")
            total, data = int(length), await _read_start(resp.body.getReader(), end)
            data = data[start:]
        else:
            if resp.body:  # not what was asked for: stop the rest of the file
                await _cancel(resp.body)
            raise DownloadError(f"{url}: Range request answered HTTP {resp.status} (Content-Range "
                                f"{resp.headers.get('Content-Range')}, Content-Length {length})"
                                "; the server must support Range requests or send the file's "
                                "length")
    except JsException as e:  # the network, or the worker's fetch naming an HTTP error
        message = str(e.message)
        raise DownloadError(message if url in message else f"{url}: {message}") from None
    accounting.record("weights", "header", 2, len(data))  # response -> ArrayBuffer -> bytes
    return data, total


async def _read_start(reader: Any, n: int) -> bytes:
    """The first `n` bytes of a body (or all of a shorter one); the rest is cancelled."""
    chunks, have = [], 0
    try:
        while have < n:
            chunk = await reader.read()
            if chunk.done:
                break
            chunks.append(chunk.value.to_bytes())
            have += len(chunks[-1])
    finally:
        await _cancel(reader)
    return b"".join(chunks)[:n]


async def _cancel(stream: Any) -> None:
    """Cancel a body or its reader; one already errored (the connection dropped) rejects,
    which is no news: not left as an unhandled rejection."""
    from pyodide.ffi import JsException

    try:
        await stream.cancel()
    except JsException:
        pass


async def read_header_browser(url: str) -> Header:
    first8, size = await _fetch_range(url, 0, 8)
    try:
        n = header_length(first8)
    except ValueError as e:  # a truncated or corrupted file: name it
        raise ValueError(f"{url}: {e}") from None
    body, _ = await _fetch_range(url, 8, 8 + n)
    try:
        return parse_header(body, size)
    except ValueError as e:
        raise ValueError(f"{url}: {e}") from None


async def _load_browser(backend: Any, url: str, sha256: str | None,
                        blocks: dict[str, Any] | None,
                        progress: Progress | None) -> dict[str, GpuTensor]:
    import js
    from pyodide.ffi import JsException, create_proxy, to_js

    import pybridge_js

    header = await read_header_browser(url)
    # what streamWeights hashes: each block (WebCrypto), else the whole file (JS), else nothing
    hashing: int | bool = (check_block_list(url, blocks, header.file_size) if blocks is not None
                           else bool(sha256))
    tensors: dict[str, GpuTensor] = {}
    callback = create_proxy(progress) if progress else None
    ok = False
    try:
        async with backend.scope(f"load {url}: allocate {len(header.tensors)} tensors"):
            for t in header.tensors:
                buf = backend._weights_buffer(padded(t.end - t.begin), t.name)
                tensors[t.name] = GpuTensor(backend, buf, t.shape, t.dtype, label=t.name)
        # what streamWeights writes into: the mapped buffer itself, or (the CPU backend) JS
        # memory the backend copies from when the file is whole and checked
        targets = {t.name: backend._stream_target(tensors[t.name]._buffer, t.end - t.begin)
                   for t in header.tensors}
        plan = to_js([{"buffer": targets[t.name], "begin": t.begin, "end": t.end}
                      for t in header.tensors], dict_converter=js.Object.fromEntries)
        try:
            result = await pybridge_js.streamWeights(url, plan, header.file_size, hashing,
                                                     callback)
        except JsException as e:
            if getattr(e, "name", None) != "DownloadError":
                raise
            raise DownloadError(f"{e.message}; no tensor was kept") from None
        finally:
            del plan  # `targets` alone holds each target now: each goes once it is copied
        last_stream.update(bytes=int(result.bytes), peakChunk=int(result.peakChunk),
                           resumes=int(result.resumes), hashWaitMs=float(result.hashWaitMs),
                           blockHash=str(result.blockHash) if blocks is not None else "")
        if blocks is not None:
            check_blocks(url, [str(d) for d in result.blocks], blocks, header.file_size)
            if last_stream["blockHash"] == "WebCrypto":  # each byte into its scratch block
                accounting.record("weights", "hash", 1, header.file_size)
        elif sha256:
            digest = str(result.sha256)
            if digest != sha256.lower():
                raise IntegrityError(f"{url}: sha256 {digest} does not match the expected "
                                     f"{sha256}; no tensor was kept")
        for name, t in tensors.items():
            backend._stream_done(t._buffer, targets.pop(name), t.nbytes)
        ok = True
    finally:
        if callback is not None:
            callback.destroy()
        if not ok:  # nothing half-loaded stays on the GPU
            for t in tensors.values():
                t.free()
    data_bytes = sum(t.end - t.begin for t in header.tensors)
    accounting.record("weights", "stream", 1, data_bytes)
    return tensors


# --- native ----------------------------------------------------------------------------------
def _open(source: str | Path):
    s = str(source)
    if s.startswith(("http://", "https://")):
        import urllib.request

        resp = urllib.request.urlopen(s)
        return resp, int(resp.headers["Content-Length"])
    path = Path(s.removeprefix("file://"))
    return path.open("rb"), path.stat().st_size


async def _load_native(backend: Any, source: str | Path, sha256: str | None,
                       progress: Progress | None) -> dict[str, GpuTensor]:
    stream, size = _open(source)
    tensors: dict[str, GpuTensor] = {}
    ok = False
    try:
        h = hashlib.sha256()
        first8 = stream.read(8)
        h.update(first8)
        try:
            n = header_length(first8)
            body = stream.read(n)
            h.update(body)
            header = parse_header(body, size)
        except ValueError as e:  # a truncated or corrupted file: name it
            raise ValueError(f"{source}: {e}") from None
        with backend.scope(f"load {source}: allocate {len(header.tensors)} tensors"):
            for t in header.tensors:
                buf = backend._weights_buffer(padded(t.end - t.begin), t.name)
                tensors[t.name] = GpuTensor(backend, buf, t.shape, t.dtype, label=t.name)
        views = [(t, tensors[t.name]._buffer._experimental_get_mapped_range())
                 for t in header.tensors]
        pos, k, view, data = header.data_start, 0, None, None
        chunk = bytearray(NATIVE_CHUNK)
        while True:
            got = stream.readinto(chunk)
            if not got:
                break
            data = memoryview(chunk)[:got]
            h.update(data)
            end = pos + got
            while k < len(views) and views[k][0].end <= pos:
                k += 1
            for t, view in views[k:]:
                if t.begin >= end:
                    break
                s, e = max(t.begin, pos), min(t.end, end)
                if e > s:
                    view[s - t.begin: e - t.begin] = data[s - pos: e - pos]  # the one copy
            pos = end
            if progress:
                progress(pos, size)
        views = view = data = None  # drop every mapped memoryview before unmapping
        if pos != size:
            raise IntegrityError(f"{source}: read {pos} bytes, expected {size}")
        if sha256 and h.hexdigest() != sha256.lower():
            raise IntegrityError(f"{source}: sha256 {h.hexdigest()} does not match the expected "
                                 f"{sha256}; no tensor was kept")
        for t in tensors.values():
            t._buffer.unmap()
        ok = True
    finally:
        stream.close()
        views = view = data = None  # no mapped memoryview may outlive its buffer
        if not ok:
            for t in tensors.values():
                t.free()
    accounting.record("weights", "stream", 1, sum(t.end - t.begin for t in header.tensors))
    return tensors
