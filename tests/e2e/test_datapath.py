"""The data path in the browser (Pyodide + WebGPU on SwiftShader): the shared cases of
tests/cases/datapath.py, the copy counts that back the zero-copy claim, weights streaming,
and every error the issue lists."""

from __future__ import annotations

import hashlib
import struct

import pytest

from tests.cases import datapath as cases
from tests.conftest import ROOT
from pybridge.weights import write_safetensors
from tests.unit.test_native_datapath import SIZES, weight_set

PATHS = [("view", "ring"), ("staging", "ring"), ("naive", "naive")]


@pytest.fixture(scope="module")
def page(app):
    app.load_module("cases", ROOT / "tests" / "cases" / "datapath.py")
    app.py("import pybridge, cases\nbackend = await pybridge.default_backend()")
    return app


@pytest.mark.parametrize("paths", PATHS)
def test_roundtrip_every_dtype_and_size_with_exact_copy_counts(page, paths):
    results = page.py(
        f"[await cases.roundtrip(backend, d, s, {paths[0]!r}, {paths[1]!r})"
        f" for d in cases.DTYPES for s in {SIZES!r}]"
    )
    combos = [(d, s) for d in cases.DTYPES for s in SIZES]
    for (dtype, shape), r in zip(combos, results):
        where = f"{dtype}{shape} via {paths}"
        assert r["equal"] and r["into_out"], where
        up, down, n = r["copies"]["upload"], r["copies"]["readback"], r["nbytes"]
        if paths[0] == "naive":
            assert up["naive"] == {"copies": 3, "bytes": 3 * n}, where
            zeros = -n % 4  # padding its first copy to whole words; to_js and writeBuffer copy it
            assert up.get("pad", {"bytes": 0})["bytes"] == 2 * zeros, where
            assert set(up) <= {"naive", "pad"}, where
            assert down == {"naive": {"copies": 3, "bytes": 3 * n}}, where
        else:  # zero-copy: exactly one CPU copy up, one down
            assert up[paths[0]] == {"copies": 1, "bytes": n}, where
            # "view" writes a padded last word (4 bytes); the staging ring takes any length
            pad = 4 if n % 4 and paths[0] == "view" else 0
            assert up.get("pad", {"bytes": 0})["bytes"] == pad, where
            assert set(up) <= {paths[0], "pad"}, where
            assert down == {"ring": {"copies": 1, "bytes": n}}, where


@pytest.mark.parametrize("path", ["view", "staging"])
def test_large_upload_crosses_the_staging_ring(page, path):
    r = page.py(f"await cases.roundtrip(backend, 'float32', (5 << 20,), {path!r}, 'ring')")
    assert r["equal"] and r["copies"]["upload"][path] == {"copies": 1, "bytes": 20 << 20}


@pytest.mark.parametrize("path", ["staging", "view", "auto"])
def test_concurrent_uploads_each_land_whole(page, path):
    # 9 uploads at once on a ring of 4 slots: two waited on one slot, and the second filled
    # a buffer whose map was still pending (a raw JsException: getMappedRange failed)
    r = page.py(f"await cases.concurrent_uploads(backend, 9, {path!r}, 1 << 19)")  # 2 MiB
    assert r["equal"] == [True] * 9 and r["left"] == 0


def test_a_staging_ring_destroyed_under_uploads(page):
    # found in review: a slot destroyed after its map resolved raised a raw JsException from
    # getMappedRange and broke the slot for later uploads
    r = page.py("await cases.staging_ring_broken(backend)")
    assert set(r["outcomes"]) <= {"ok", "pybridge.GpuError"}, r
    assert r["landed"] == r["ok"] and r["works"] and r["left"] == 0, r


def test_tensors_dropped_without_free_release_their_buffers(page):
    r = page.py("await cases.dropped_tensors(backend, 20)")
    assert r == {"after_drops": 0, "plan_ok": True, "after_plan": 0}


def test_bind_groups_of_freed_buffers_leave_no_trace(page):
    r = page.py("await cases.bind_group_bookkeeping(backend, 8)")
    assert r == {"groups": 0, "stale_keys": 0, "keys_of_w": 0}


@pytest.mark.parametrize("n, expected", [((1 << 19) - 1, "view"), (1 << 19, "staging")])
def test_the_default_path_picks_by_size(page, n, expected):
    r = page.py(f"await cases.roundtrip(backend, 'float32', ({n},))")  # 2 MiB is the switch
    assert r["equal"] and set(r["copies"]["upload"]) == {expected}


def test_non_contiguous_input_is_copied_once_or_refused(page):
    r = page.py("await cases.non_contiguous(backend)")
    assert r["equal"]
    assert r["copies"]["contiguous"]["numpy"]["copies"] == 1
    assert "not C-contiguous and copy=False" in r["refused"]


BROWSER_PATHS = ("auto", "view", "staging", "naive")  # BrowserBackend.upload_paths


@pytest.mark.parametrize("what, expected", [
    *((w, e.format(backend="browser", paths=BROWSER_PATHS)) for w, e in cases.ERROR_CASES),
    ("oom", "GpuOutOfMemory: allocate huge (1073741824 bytes): GPU out-of-memory error"),
])
def test_bad_input_gets_a_clear_error_and_leaves_nothing_behind(page, what, expected):
    before = page.py("backend.live_buffers()")
    message = page.py(f"await cases.error_message(backend, {what!r})")
    assert message.startswith(expected), message
    assert page.py("backend.live_buffers()") == before  # the case frees its own tensors


def test_no_leaks_after_10000_upload_readback_cycles(page):
    proxies0 = page.py("import pybridge_js\npybridge_js.liveProxies()")
    r = page.py("from pybridge.view import wasm_heap_bytes\n"
                "await cases.leak_check(backend, 10_000, wasm_heap_bytes)")
    proxies1 = page.py("pybridge_js.liveProxies()")
    assert r["equal"]
    assert r["buffers"][1] == r["buffers"][0]  # live GPU buffers back to baseline
    assert r["heap"][1] == r["heap"][0]  # wasm heap did not grow
    assert proxies1 == proxies0  # no PyProxy left behind


SHA_CASES = [(size, chunk) for size in (0, 1, 55, 56, 63, 64, 65, 1000) for chunk in (1, 7, 64, 4096)]
SHA_CASES += [((1 << 20) + 7, chunk) for chunk in (7, 64, 4096, 65536)]


@pytest.mark.parametrize("size, chunk", SHA_CASES)
def test_streaming_sha256_matches_hashlib(page, size, chunk):
    data = cases.make_array("uint8", (size,))
    got = page.py(f"import pybridge_js\npybridge_js.sha256Hex(cases.make_array('uint8', ({size},)), {chunk})")
    assert got == hashlib.sha256(data.tobytes()).hexdigest()


def test_weights_stream_into_gpu_tensors(page, test_data):
    ref = weight_set()
    sha = write_safetensors(test_data / "w.safetensors", ref)
    r = page.py(
        "from pybridge.weights import load_safetensors\n"
        "seen = []\n"
        "with pybridge.count_copies() as c:\n"
        f"    ts = await load_safetensors('/test-data/w.safetensors', backend, sha256={sha!r},\n"
        "                                progress=lambda d, t: seen.append([d, t]))\n"
        "got = {k: (await v.numpy()).tobytes().hex() for k, v in ts.items()}\n"
        "for v in ts.values(): v.free()\n"
        "{'got': got, 'last': seen[-1], 'copies': c.as_dict(), 'backend': backend.name}"
    )
    assert set(r["got"]) == set(ref)
    for name, a in ref.items():
        assert bytes.fromhex(r["got"][name]) == a.tobytes(), name
    size = (test_data / "w.safetensors").stat().st_size
    assert r["last"] == [size, size]
    data_bytes = sum(a.nbytes for a in ref.values())
    assert r["copies"]["weights"]["stream"] == {"copies": 1, "bytes": data_bytes}
    header = 8 + struct.unpack("<Q", (test_data / "w.safetensors").read_bytes()[:8])[0]
    assert r["copies"]["weights"]["header"] == {"copies": 4, "bytes": 2 * header}  # 2 reads
    if r["backend"] == "cpu":  # streamed into JS memory, then copied into numpy's, per tensor
        assert r["copies"]["weights"].pop("host") == {"copies": len(ref), "bytes": data_bytes}
    assert set(r["copies"]["weights"]) == {"stream", "header"}  # tensors: 0 wasm-heap bytes


def test_weights_never_pass_through_the_wasm_heap(page, test_data):
    big = {f"layer{i}.weight": cases.make_array("float32", (1024, 1024), seed=i) for i in range(24)}
    sha = write_safetensors(test_data / "big.safetensors", big)  # 96 MiB
    r = page.py(
        "from pybridge.weights import load_safetensors\n"
        "from pybridge.view import wasm_heap_bytes\n"
        "import numpy as np\n"
        "heap0 = wasm_heap_bytes()\n"
        f"ts = await load_safetensors('/test-data/big.safetensors', backend, sha256={sha!r})\n"
        "heap1 = wasm_heap_bytes()\n"
        "probe = await ts['layer23.weight'].numpy()\n"
        "ok = bool(np.array_equal(probe, cases.make_array('float32', (1024, 1024), seed=23)))\n"
        "for v in ts.values(): v.free()\n"
        "[heap0, heap1, ok, len(ts)]"
    )
    heap0, heap1, ok, count = r
    assert ok and count == 24
    assert heap1 - heap0 < (1 << 20), f"wasm heap grew by {heap1 - heap0} bytes for a 96 MiB file"


def test_weights_with_a_wrong_hash_leave_nothing_on_the_gpu(page, test_data):
    write_safetensors(test_data / "w2.safetensors", weight_set())
    before = page.py("backend.live_buffers()")
    message = page.py(
        "from pybridge.weights import load_safetensors\n"
        "try:\n"
        "    await load_safetensors('/test-data/w2.safetensors', backend, sha256='0' * 64)\n"
        "    r = 'no error'\n"
        "except Exception as e:\n"
        "    r = f'{type(e).__name__}: {e}'\n"
        "r"
    )
    assert message.startswith("IntegrityError: /test-data/w2.safetensors: sha256 ")
    assert "does not match the expected 0000" in message
    assert page.py("backend.live_buffers()") == before


def test_missing_weights_file_is_named(page):
    message = page.py(
        "from pybridge.weights import load_safetensors\n"
        "try:\n"
        "    await load_safetensors('/test-data/nope.safetensors', backend)\n"
        "    r = 'no error'\n"
        "except Exception as e:\n"
        "    r = f'{type(e).__name__}: {e}'\n"
        "r"
    )
    assert "nope.safetensors" in message and "404" in message


def test_device_loss_is_reported_and_the_session_recovers(page):
    r = page.py("await cases.device_loss()")
    assert len(r["errors"]) == 2, r
    for e in r["errors"]:
        assert e.startswith("DeviceLost: ") and "device was lost (destroyed" in e
    assert r["recovered"] and r["same_backend"]
    assert "belonged to a device that was lost" in r["stale"]
