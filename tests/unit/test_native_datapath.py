"""The data path on the native backend (wgpu-py on lavapipe in CI) and the CPU backend
(numpy): the shared cases of tests/cases/datapath.py, run in CPython."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

import pybridge
from pybridge.dispatch import grid_1d, pack_params
from pybridge.dtypes import padded
from pybridge.weights import load_safetensors, write_safetensors
from tests.cases import datapath as cases

SIZES = [(0,), (1,), (3,), (5,), (7, 3), (1023,), (4097,), (257, 129)]


@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("paths", [(None, None), ("naive", "naive")])
async def test_roundtrip_every_dtype_and_size(backend, dtype, shape, paths):
    r = await cases.roundtrip(backend, dtype, shape, *paths)
    assert r["equal"] and r["into_out"]
    up, down = r["copies"].get("upload", {}), r["copies"].get("readback", {})
    if paths == (None, None):  # the zero-copy path: one CPU copy each way
        assert up["view"] == {"copies": 1, "bytes": r["nbytes"]}
        # a GPU takes whole 4-byte words (the tail goes through a zeroed word); numpy does not
        pad = 4 if r["nbytes"] % 4 and backend.name != "cpu" else 0
        assert up.get("pad", {"bytes": 0})["bytes"] == pad
        assert down == {backend.readback_paths[0]: {"copies": 1, "bytes": r["nbytes"]}}
    else:  # the labelled baseline
        assert up == {"naive": {"copies": 2, "bytes": 2 * r["nbytes"]}}
        assert down == {"naive": {"copies": 3, "bytes": 3 * r["nbytes"]}}


@pytest.mark.parametrize("path", [None, "view", "naive"])
async def test_concurrent_uploads_each_land_whole(backend, path):
    r = await cases.concurrent_uploads(backend, 9, path, 1 << 18)
    assert r["equal"] == [True] * 9 and r["left"] == 0


async def test_bind_groups_of_freed_buffers_leave_no_trace(backend):
    # _forget_buffer dropped a freed buffer's groups but left their keys in the sets of the
    # other buffers they bound: a weight's set grew by one key per batch shape, forever
    r = await cases.bind_group_bookkeeping(backend, 8)
    assert r == {"groups": 0, "stale_keys": 0, "keys_of_w": 0}


async def test_a_tensor_cannot_be_copied(backend):
    # found in review: copy.copy(t) shared t's buffer, and dropping the copy destroyed it
    # (natively the process aborted at the next submit; in the browser reads were garbage)
    import copy
    import pickle

    t = await backend.upload(np.arange(8, dtype=np.float32))
    for clone in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="GpuTensor"):
            clone(t)
    assert (await t.numpy()).tolist() == list(range(8))
    t.free()


async def test_tensors_dropped_without_free_release_their_buffers(backend):
    # the backend held every buffer by id, so a tensor never freed was never reclaimed
    r = await cases.dropped_tensors(backend, 20)
    assert r == {"after_drops": 0, "plan_ok": True, "after_plan": 0}


async def test_non_contiguous_input_is_copied_once_or_refused(backend):
    r = await cases.non_contiguous(backend)
    assert r["equal"]
    assert r["copies"]["contiguous"]["numpy"]["copies"] == 1
    assert "not C-contiguous and copy=False" in r["refused"]


@pytest.mark.parametrize("what, expected", [
    (w, e) for w, e in cases.ERROR_CASES
])
async def test_bad_input_gets_a_clear_error(backend, what, expected):
    expected = expected.format(backend=backend.name, paths=backend.upload_paths)
    before = backend.live_buffers()
    message = await cases.error_message(backend, what)
    assert message.startswith(expected), message
    assert backend.live_buffers() == before  # the case frees its own tensors


async def test_device_loss_is_reported_and_recovered():
    r = await cases.device_loss()
    assert len(r["errors"]) == 2
    for e in r["errors"]:
        assert e.startswith("DeviceLost: ") and "device was lost (destroyed" in e
    assert r["recovered"] and r["same_backend"]
    assert r["stale"].startswith("DeviceLost: readback") and "belonged to a device that was lost" in r["stale"]


async def test_no_buffer_leaks_after_10000_cycles(backend):
    r = await cases.leak_check(backend, 10_000)
    assert r["equal"]
    assert r["buffers"][1] == r["buffers"][0]


def weight_set() -> dict[str, np.ndarray]:
    return {
        "embeddings.word": cases.make_array("float32", (97, 33)),
        "layer0.weight.f16": cases.make_array("float16", (31, 7)),
        "token_ids": cases.make_array("int32", (13,)),
        "mask": cases.make_array("uint8", (5, 3)),
        "counts": cases.make_array("uint32", (1,)),
        "empty": np.zeros((0,), np.float32),
    }


async def test_weights_stream_into_gpu_tensors(backend, tmp_path):
    ref = weight_set()
    sha = write_safetensors(tmp_path / "w.safetensors", ref)
    seen = []
    with pybridge.count_copies() as c:
        tensors = await load_safetensors(tmp_path / "w.safetensors", backend, sha256=sha,
                                         progress=lambda done, total: seen.append((done, total)))
    assert set(tensors) == set(ref)
    for name, a in ref.items():
        got = await tensors[name].numpy()
        assert got.dtype == a.dtype and np.array_equal(got, a), name
        tensors[name].free()
    size = (tmp_path / "w.safetensors").stat().st_size
    assert seen[-1] == (size, size)
    data_bytes = sum(a.nbytes for a in ref.values())
    assert c.copies("weights", "stream") == 1 and c.bytes("weights", "stream") == data_bytes


async def test_weights_with_a_wrong_hash_leave_nothing_on_the_gpu(backend, tmp_path):
    write_safetensors(tmp_path / "w.safetensors", weight_set())
    before = backend.live_buffers()
    with pytest.raises(pybridge.errors.IntegrityError, match="does not match the expected"):
        await load_safetensors(tmp_path / "w.safetensors", backend, sha256="0" * 64)
    assert backend.live_buffers() == before


@pytest.mark.parametrize("mutate, error, match", [
    (lambda b: b[:4], ValueError, "not a safetensors file"),
    (lambda b: struct.pack("<Q", 1 << 40) + b[8:], ValueError, "header length"),
    (lambda b: b[:8] + b"x" + b[9:], ValueError, "not valid JSON"),
    (lambda b: b.replace(b'"F32"', b'"F64"', 1), TypeError, "dtype F64 is not supported; accepted: F32, F16"),
    (lambda b: b[:-10], ValueError, "tensors end at byte"),
])
async def test_malformed_safetensors_are_refused(backend, tmp_path, mutate, error, match):
    write_safetensors(tmp_path / "w.safetensors", weight_set())
    bad = mutate((tmp_path / "w.safetensors").read_bytes())
    (tmp_path / "bad.safetensors").write_bytes(bad)
    before = backend.live_buffers()
    with pytest.raises(error, match=match):
        await load_safetensors(tmp_path / "bad.safetensors", backend)
    assert backend.live_buffers() == before


# --- dtypes and sizes it cannot take ---------------------------------------------------------

ACCEPTED = "float32, float16, int32, uint32, uint8"
UNSUPPORTED = {  # dtype -> the name the error gives it
    "float64": "float64", "complex64": "complex64", "complex128": "complex128",
    "longdouble": "float128", "bool": "bool", "int64": "int64", "uint64": "uint64",
    "int16": "int16", "uint16": "uint16", "int8": "int8", "object": "object",
    "datetime64[ns]": "datetime64[ns]", "timedelta64[s]": "timedelta64[s]", "U3": "str96",
    "S4": "bytes32", "V8": "void64", "[('a', '<f4'), ('b', '<i4')]": "void64",
}


@pytest.mark.parametrize("dtype", UNSUPPORTED)
async def test_every_unsupported_dtype_is_refused_naming_it(backend, dtype):
    dt = np.dtype(eval(dtype) if dtype.startswith("[") else dtype)  # a structured dtype
    a = np.zeros((3, 4), dt)
    target = await backend.upload(np.zeros((3, 4), np.float32))
    before = backend.live_buffers()
    want = f"unsupported dtype {UNSUPPORTED[dtype]}; accepted: {ACCEPTED}"
    for attempt in (lambda: backend.upload(a), lambda: backend.upload(a, out=target),
                    lambda: backend.upload(a, path="naive"), lambda: backend.allocate(8, dt)):
        with pytest.raises(TypeError, match=re.escape(want)):
            await attempt()
    assert backend.live_buffers() == before
    target.free()


@pytest.mark.parametrize("dtype", [">f4", ">i4", ">u4", ">f2"])
async def test_big_endian_dtypes_are_refused(backend, dtype):
    before = backend.live_buffers()
    with pytest.raises(TypeError, match=rf"big-endian dtype \{dtype} is not supported; "
                                        rf"accepted \(little-endian\): {ACCEPTED}"):
        await backend.upload(np.zeros(4, dtype))
    assert backend.live_buffers() == before


async def test_an_array_over_the_buffer_limit_is_refused_before_it_is_read(backend, tmp_path):
    """An array one byte past maxBufferSize (2 GiB on lavapipe), mapped from a sparse file so
    that it takes no memory: refused from its size alone, without reading it or making a
    buffer."""
    limit = backend.limits["maxBufferSize"]
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(limit + 1)  # sparse: no disk, no memory
    a = np.memmap(path, dtype=np.uint8, mode="r", shape=(limit + 1,))
    before = backend.live_buffers()
    for upload_path in (None, "naive"):
        with pytest.raises(ValueError, match=rf"{padded(limit + 1)} bytes exceeds this device's "
                                             rf"maxBufferSize of {limit} bytes"):
            await backend.upload(a, path=upload_path)
    assert backend.live_buffers() == before
    del a


@pytest.mark.parametrize("shape", [(1 << 40,), (1 << 20, 1 << 20), (1 << 62, 8), (1 << 63,),
                                   (1 << 64,), (1 << 31, 1 << 31, 4)])
async def test_an_allocation_whose_size_overflows_is_refused(backend, shape):
    """Found here: sizes were multiplied in int64, so (2**62, 8) float32 wrapped to 0 bytes and
    allocated a 4-byte buffer for a tensor of 2**65 elements; (2**64,) raised numpy's
    OverflowError."""
    before = backend.live_buffers()
    with pytest.raises(ValueError, match=r"exceeds this device's maxBufferSize"):
        await backend.allocate(shape, np.float32)
    assert backend.live_buffers() == before


async def test_a_binding_over_the_storage_binding_limit_is_a_validation_error(backend):
    """A tensor may be larger than maxStorageBufferBindingSize (128 MiB on lavapipe and in
    Chrome by default) but not be bound whole: the dispatch raises GpuValidationError naming
    the kernel and the limit, and leaves nothing behind."""
    limit = backend.limits["maxStorageBufferBindingSize"]
    n = limit // 4 + 64  # float32 elements: 256 bytes past the limit
    x = await backend.upload(np.zeros(n, np.float32))
    y, out = await backend.upload(np.ones(64, np.float32)), await backend.allocate(64, np.float32)
    held = backend.live_buffers() - len(backend._uniforms)
    try:
        with pytest.raises(pybridge.errors.GpuValidationError,
                           match=rf"(?s)^dispatch axpy: .*limit {limit}"):
            await backend.dispatch("axpy", [x, y, pack_params(64, 2.0), out], grid_1d(64))
        assert backend.live_buffers() - len(backend._uniforms) == held
        await backend.dispatch("axpy", [y, y, pack_params(64, 2.0), out], grid_1d(64))
        assert (await out.numpy()).tolist() == [3.0] * 64  # the device still answers
    finally:
        for t in (x, y, out):
            t.free()
