"""Plans in the browser (Pyodide + WebGPU on SwiftShader): the shared cases of
tests/cases/plans.py, and what one forward pass of MiniLM costs in calls into WebGPU."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.reference import MODEL_DIR, need
from tests.unit.test_native_plans import check_plan_errors


@pytest.fixture(scope="module")
def page(app):
    app.load_module("plan_cases", ROOT / "tests" / "cases" / "plans.py")
    app.py("import pybridge, plan_cases\nbackend = await pybridge.default_backend()")
    return app


def test_a_plan_replays_with_overlapping_runs_and_exact_copies(page):
    r = page.py("await plan_cases.replay(backend, n=1000, runs=6)")
    assert r["max_error"] < 1e-5
    assert r["copies"]["upload"] == {"view": {"copies": 12, "bytes": 12 * 4000}}
    assert r["copies"]["readback"] == {"ring": {"copies": 6, "bytes": 6 * 4000}}
    assert r["uniforms_freed"] == 2


def test_concurrent_batches_do_not_mix(page):
    assert page.py("await plan_cases.concurrent_batches(backend)")["max_error"] == 0.0


def test_grids_fold_past_65535_rows(page):
    r = page.py("await plan_cases.folded_rows(backend)")
    assert r["grid"][1] == 2 and r["rows"] > 65535 and r["tokens"] > 65535
    assert r["layernorm"] < 1e-4 and r["embed"] < 1e-4 and r["pool"] < 1e-5, r


def test_plan_errors_name_what_was_wrong(page):
    check_plan_errors(page.py("await plan_cases.plan_errors(backend)"))


# Counts calls of WebGPU methods made in the worker (from Python or JS alike), then restores them.
# a module (the page's Content-Security-Policy forbids eval): served from /test-data/
COUNT_GPU_CALLS = """{
  const methods = [[GPUQueue, "submit"], [GPUQueue, "writeBuffer"], [GPUDevice, "createCommandEncoder"],
                   [GPUComputePassEncoder, "dispatchWorkgroups"], [GPUComputePassEncoder, "setPipeline"],
                   [GPUBuffer, "mapAsync"], [GPUDevice, "pushErrorScope"], [GPUDevice, "createBindGroup"]];
  const counts = (self.gpuCalls = {});
  self.restoreGpuCalls = () => methods.forEach(([cls, name]) => (cls.prototype[name] = cls.prototype[name].original));
  for (const [cls, name] of methods) {
    const original = cls.prototype[name];
    counts[name] = 0;
    cls.prototype[name] = function (...args) { counts[name]++; return original.apply(this, args); };
    cls.prototype[name].original = original;
  }
}
export {};"""


def test_a_forward_pass_is_one_submission_recorded_in_one_js_call(page, model, test_data):
    """Per batch, after the shape's plan is built: 1 submit, 1 command encoder, 2 small
    writes (ids, lengths), 44 dispatches, 1 map, and no bind group made; three batches of
    one shape cost three times that."""
    (test_data / "count_gpu_calls.mjs").write_text(COUNT_GPU_CALLS)
    r = page.py(
        "import js, json\n"
        "s = ['a short sentence here', 'and another one']\n"
        "await model.embed(s)\n"  # builds the (2, T) plan
        "await js.importModule('/test-data/count_gpu_calls.mjs')\n"
        "try:\n"
        "    await model.embed(s)\n"
        "    one = json.loads(js.JSON.stringify(js.gpuCalls))\n"
        "    for k in list(one): setattr(js.gpuCalls, k, 0)\n"
        "    await model.embed(s * 3, batch_size=2)\n"
        "    three = json.loads(js.JSON.stringify(js.gpuCalls))\n"
        "finally:\n"
        "    js.restoreGpuCalls()\n"
        "{'one': one, 'three': three}")
    one = {"submit": 1, "createCommandEncoder": 1, "writeBuffer": 2, "dispatchWorkgroups": 44,
           "setPipeline": 44, "mapAsync": 1, "pushErrorScope": 2, "createBindGroup": 0}
    assert r["one"] == one
    assert r["three"] == {k: 3 * v for k, v in one.items()}


def test_concurrent_embeds_each_get_their_own_rows(page, model):
    """Found in review, reproduced in Chromium: two concurrent embeds of one batch shape
    shared activation buffers and one open compute pass; one got the other's embeddings."""
    r = page.py("await plan_cases.concurrent_embeds(model)")
    assert r["distinct"] > 0.1
    assert max(r["same_shape"], r["reversed"], r["other_shape"]) < 1e-5, r


def test_profile_times_each_dispatch_or_says_why_not(page):
    from tests.unit.test_native_plans import check_profile

    r = page.py("await plan_cases.profile(backend)")
    if r["has_timestamps"]:
        check_profile(r)
    else:  # the device lacks the feature: the error names it
        said = page.py("p = await backend.plan([], label='empty')\n"
                       "try:\n    await backend.profile(p)\nexcept ValueError as e:\n    str(e)")
        assert said.startswith("profile empty: this device has no 'timestamp-query' feature")


def test_a_cancelled_wait_leaves_no_pending_buffer_in_the_pool(page):
    from tests.unit.test_native_plans import check_cancelled_wait

    check_cancelled_wait(page.py("await plan_cases.cancelled_wait(backend)"))


def test_plan_runs_leak_nothing(page):
    r = page.py("import pybridge_js\n"
                "await plan_cases.plan_leak_check(backend, 2000, pybridge_js.wasmHeapBytes,"
                " pybridge_js.liveProxies)")
    assert r["equal"], r
    assert r["buffers"][0] == r["buffers"][1] and r["heap"][0] == r["heap"][1], r
    assert r["proxies"][0] == r["proxies"][1], r


def test_kernels_run_beside_a_model(page, model):
    r = page.py("await plan_cases.kernels_beside_a_model(model, backend)")
    assert r["embed_error"] < 1e-5 and r["kernel_error"] == 0.0, r


def test_a_model_freed_while_embedding(page):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    r = page.py("from pybridge.minilm import MiniLM\n"
                "await plan_cases.free_while_embedding(lambda: MiniLM.load("
                "'/models/all-MiniLM-L6-v2/', dtype='float16'), backend)")
    assert (r["outcome"] == "result" and r["error"] < 1e-5
            or r["outcome"].startswith("UseAfterFree: embed: the model was freed")), r
    assert r["works"] and r["left"] == 0, r
