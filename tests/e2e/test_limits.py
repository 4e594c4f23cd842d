"""Safari's limits in CI: the page booted with `?limits=safari` (only what Safari 26 gives on
the smallest Apple Silicon GPU, no `subgroups`) and with `?limits=default` (WebGPU's default
limits: 16 KiB workgroup storage, 256 invocations, 8 storage buffers per stage), on
SwiftShader. The device must really have the profile's limits, every kernel must run there
(the tests of tests/e2e/test_kernels.py, on a representative case each) and so must the model
(embeddings against sentence-transformers, as tests/e2e/test_minilm.py checks them).

Also one of Safari's bugs guarded everywhere: a GPUBuffer is never unmapped, destroyed or
mapped again while its mapAsync is pending (MAP_ORDER_PROBE watches every buffer of the worker).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from pybridge.device import DEFAULT_LIMITS, REPORTED_LIMITS, required_limits
from pybridge.dispatch import matmul_tile
from tests.cases.corpus import MODEL_SENTENCES
from tests.e2e import test_kernels, test_minilm
from tests.e2e.conftest import boot
from tests.e2e.test_kernels import page  # noqa: F401  (the fixture, over this module's `app`)
from tests.reference import cosine, st_embeddings
from tests.unit.test_native_kernels import MATMUL_VARIANTS
from tests.unit.test_native_minilm import MIN_COSINE

PROFILES = ["safari", "default"]


@pytest.fixture(scope="module", params=PROFILES)
def app(request, browser, server, guard):
    """The page booted with ?limits=<profile> (overrides conftest's `app` in this module)."""
    booted = boot(browser, server, guard, f"?model=none&limits={request.param}")
    booted.profile = request.param
    yield booted
    booted.page.context.close()


def test_the_device_has_the_profiles_limits(page):
    r = page.py("from pybridge.device import REPORTED_LIMITS\n"
                "a = backend.gpu.adapter\n"
                "{'describe': backend.describe(), 'features': sorted(str(f) for f in a.features),"
                " 'adapter': {n: int(getattr(a.limits, n)) for n in REPORTED_LIMITS}}")
    described, adapter = r["describe"], r["adapter"]
    assert described["limits_profile"] == page.profile
    if page.profile == "default":
        assert described["limits"] == DEFAULT_LIMITS
        assert described["limits"]["maxComputeWorkgroupStorageSize"] == 16384
    else:  # Safari's, where the adapter has as much (SwiftShader: 256 invocations, 32 KiB)
        want = required_limits("safari", adapter.__getitem__)
        assert {n: described["limits"][n] for n in want} == want
        assert set(described["limits"]) == set(REPORTED_LIMITS)
        assert "subgroups" in r["features"] and "subgroups" not in described["features"]
    # the page shows the device it made: the profile travels with the kernel self-check
    assert page.page.evaluate("pybridge.gpu.limits_profile") == page.profile


# One case of each test of tests/e2e/test_kernels.py per kernel (the full sets run there, on
# the adapter's limits): every variant of wgsl/matmul.wgsl and matmul_splitk.wgsl on rows past
# a tile, 131 columns, K = 24, GELU and float16 weights; matmul_generic (K odd); embed,
# layernorm and pool on one case; attention (the kernel at the 16 KiB limit) at HEAD_DIM 64
# (the model runs it at 32). SwiftShader spends most of a case compiling its pipeline.
KERNEL_CASES = [
    *[("matmul_variant", (op, matmul_tile(op)[1] + 3, 131, 24, True, True))
      for op in MATMUL_VARIANTS],
    ("matmul", (65, 63, 17, True, False)),
    ("embed", test_kernels.EMBED_CASES[1]),
    ("layernorm", test_kernels.LAYERNORM_CASES[0]),
    ("attention", test_kernels.ATTENTION_CASES[1]),
    ("pool", test_kernels.POOL_CASES[0]),
]


@pytest.mark.parametrize("test, args", KERNEL_CASES,
                         ids=[f"{t}-{'-'.join(map(str, a))}" for t, a in KERNEL_CASES])
def test_every_kernel_runs_within_the_profile(page, test, args):
    if test == "matmul_variant" and args[0] == "matmul_splitk_sg" and page.profile == "safari":
        # no subgroups under Safari's profile: what MiniLM runs instead is matmul_splitk
        assert page.py("await backend.subgroups_usable()") is False
        args = ("matmul_splitk", *args[1:])
    getattr(test_kernels, f"test_{test}")(page, *args)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """sentence-transformers' embeddings of MODEL_SENTENCES, computed once for both profiles."""
    return st_embeddings(tmp_path_factory.mktemp("st"), MODEL_SENTENCES)


def test_the_model_runs_within_the_profile(page, reference):
    # as tests/e2e/test_minilm.py checks it, in one batch (one plan: the profiles' time is CI's)
    r = page.py("import base64\nfrom pybridge.minilm import MiniLM\n"
                f"m = await MiniLM.load({test_minilm.URL!r}, dtype='float16')\n"
                f"e = await m.embed({MODEL_SENTENCES!r}, batch_size={len(MODEL_SENTENCES)})\n"
                "m.free()\n"
                "base64.b64encode(e.tobytes()).decode()")
    got = np.frombuffer(base64.b64decode(r), np.float32).reshape(len(MODEL_SENTENCES), 384)
    cos = cosine(got, reference)
    assert cos.min() >= MIN_COSINE["float16"], dict(zip(MODEL_SENTENCES, cos.round(6)))


# Wraps GPUBuffer.prototype.{unmap, destroy, mapAsync} in the worker and records each call made
# while the buffer's map is pending (mapAsync: on a buffer not unmapped). Served from
# /test-data/ and loaded by Python with js.importModule (the worker's CSP forbids eval).
MAP_ORDER_PROBE = """
const seen = [];
const undo = [];
function wrap(name, bad) {
  const original = GPUBuffer.prototype[name];
  GPUBuffer.prototype[name] = function (...args) {
    if (bad(this.mapState)) seen.push(`${name} while ${this.mapState}: ${this.label}`);
    return original.apply(this, args);
  };
  undo.push(() => { GPUBuffer.prototype[name] = original; });
}
export function install() {
  wrap("unmap", (s) => s === "pending");
  wrap("destroy", (s) => s === "pending");
  wrap("mapAsync", (s) => s !== "unmapped");
}
export function take() { return seen.splice(0); }
export function restore() { undo.splice(0).forEach((f) => f()); }
"""


def test_no_buffer_is_unmapped_or_destroyed_while_its_map_is_pending(page, test_data):
    """Every path that maps: readback (ring, naive), a plan run waited for and one dropped
    unwaited, staging uploads and closing a backend with its staging ring's maps pending, a
    readback cancelled while its map is pending (then the next readback must work: found here,
    the cancelled one put its pending buffer back in the pool), and profiling a plan."""
    (test_data / "map_order_probe.mjs").write_text(MAP_ORDER_PROBE)
    r = page.py("""import asyncio, gc, js, numpy as np
from pybridge.backend import Step
from pybridge.browser import BrowserBackend
from pybridge.dispatch import grid_1d, pack_params
probe = await js.importModule('/test-data/map_order_probe.mjs')
probe.install()
try:
    x = np.arange(1000, dtype=np.float32)  # (1000,)
    t = await backend.upload(x)
    out = await backend.allocate((1000,), np.float32)
    params = np.array([1000, np.float32(2.0).view(np.uint32), 0, 0], np.uint32)
    ok = [bool((await t.numpy() == x).all()),
          bool((await t.numpy(path="naive") == x).all())]
    plan = await backend.plan([Step("axpy", [t, t, params, out], grid_1d(1000))],
                              inputs=[t], outputs=[out])
    got = np.empty(1000, np.float32)
    await backend.submit(plan, [x], [got]).wait()
    ok.append(bool((got == 3 * x).all()))
    backend.submit(plan, [x], [got])  # dropped unwaited: its read buffer goes when mapped
    gc.collect()
    if "timestamp-query" in backend.features:
        await backend.profile(plan, [x])
    task = asyncio.ensure_future(t.numpy())
    await asyncio.sleep(0)  # the readback has submitted its copy and awaits mapAsync
    started = not task.done()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    ok.append(bool((await t.numpy() == x).all()))  # the pool gave a buffer that is not pending
    other = await BrowserBackend.create()
    for i in range(3):
        await other.upload(x + i, path="staging")  # each leaves its ring slot mapping again
    other.close()
    await backend.sync()
    await asyncio.sleep(0.2)  # maps settle, then what waited on them is destroyed
    plan.free()
    for v in (t, out):
        v.free()
    result = {"ok": ok, "started": started, "seen": probe.take().to_py()}
finally:
    probe.restore()
result""")
    assert r["started"], "the readback ended before it could be cancelled"
    assert r["ok"] == [True] * 4
    assert r["seen"] == []


def test_a_recovered_device_keeps_the_profile(page):
    """Found in review: recover() asked for the profile set_limits_profile names now, so a
    profile changed after the first device changed the limits under a running page."""
    r = page.py("import asyncio, pybridge\nfrom pybridge.device import set_limits_profile\n"
                "set_limits_profile('adapter')\n"
                "try:\n"
                "    device = backend.device\n"
                "    device.destroy()\n"
                "    await device.lost\n"
                "    while backend.lost is None:  # the page's lost handler, a task later\n"
                "        await asyncio.sleep(0)\n"
                "    assert (await pybridge.default_backend()) is backend and backend.lost is None\n"
                "    got = {**backend.describe(), 'generation': backend.generation}\n"
                f"finally:\n    set_limits_profile({page.profile!r})\n"
                "got")
    assert r["generation"] > 1 and r["limits_profile"] == page.profile
    if page.profile == "default":
        assert r["limits"] == DEFAULT_LIMITS
