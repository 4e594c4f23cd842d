"""Plans on the native backend (wgpu-py on lavapipe in CI) and the CPU backend (numpy): the
shared cases of tests/cases/plans.py, run in CPython."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from pybridge.backend import Step
from pybridge.dispatch import grid_1d

from pybridge.native import NativeBackend
from tests.cases import plans as cases
from tests.conftest import ROOT


async def test_a_plan_replays_with_overlapping_runs_and_exact_copies(backend):
    r = await cases.replay(backend, n=1000, runs=6)
    assert r["max_error"] < 1e-5
    # per run: 2 inputs up (1 copy each), 1 output down (1 copy); 2 uniforms once, at plan time
    assert r["copies"]["upload"] == {"view": {"copies": 12, "bytes": 12 * 4000}}
    assert r["copies"]["readback"] == {backend.readback_paths[0]: {"copies": 6, "bytes": 6 * 4000}}
    assert r["uniforms_freed"] == 2


async def test_concurrent_batches_do_not_mix(backend):
    assert (await cases.concurrent_batches(backend))["max_error"] == 0.0


async def test_grids_fold_past_65535_rows(backend):
    r = await cases.folded_rows(backend)
    assert r["grid"][1] == 2 and r["rows"] > 65535 and r["tokens"] > 65535
    assert r["layernorm"] < 1e-4 and r["embed"] < 1e-4 and r["pool"] < 1e-5, r


async def test_plan_errors_name_what_was_wrong(backend):
    said = await cases.plan_errors(backend)
    check_plan_errors(said)


def check_plan_errors(said: dict) -> None:
    assert said["grid"].startswith("ValueError: dispatch axpy: grid (70000, 1, 1) is outside "
                                   "0..65535 workgroups per dimension"), said
    assert said["binding"].startswith("TypeError: plan bad binding: step axpy binding 1 is a "
                                      "str; expected a GpuTensor or a numpy array"), said
    assert said["validation"].startswith("GpuValidationError: plan too few bindings: GPU "
                                         "validation error"), said
    assert said["inputs"].startswith("ValueError: submit good: takes 1 input and 1 output "
                                     "arrays, got 0 and 1"), said
    assert said["input-dtype"].startswith("ValueError: submit good: input for GpuTensor('x' "
                                          "shape=(64,), dtype=float32) is int32(64,)"), said
    assert said["output"].startswith("ValueError: submit good: output for GpuTensor('out'"), said
    assert said["freed"].startswith("UseAfterFree: submit good: GpuTensor('x' shape=(64,), "
                                    "dtype=float32 freed) was freed"), said


async def test_profile_times_each_dispatch(native_backend):
    backend = native_backend
    assert "timestamp-query" in backend.features  # lavapipe offers it
    check_profile(await cases.profile(backend))


def check_profile(r: dict) -> None:
    assert r["ops"] == ["axpy"] * 3
    assert all(t > 0 for t in r["times"]) and r["whole"] > 0, r
    assert r["max_error"] == 0.0


async def test_a_cancelled_wait_leaves_no_pending_buffer_in_the_pool(native_backend):
    """Found in review: a cancelled wait put its MAP_READ buffer back in the pool with its map
    pending; the next run using it failed (natively the process aborted)."""
    backend = native_backend
    r = await cases.cancelled_wait(backend)
    check_cancelled_wait(r)


def check_cancelled_wait(r: dict) -> None:
    assert r["cancelled"], r
    assert r["pool_after_runs"], r  # the runs after it did use the pool
    assert all(s == "unmapped" for s in r["pool_after_cancel"] + r["pool_after_runs"]), r
    assert r["max_error"] == 0.0


async def test_plan_runs_leak_nothing(backend):
    r = await cases.plan_leak_check(backend, 2000)
    assert r["equal"] and r["buffers"][0] == r["buffers"][1], r


async def test_profile_checks_its_inputs(native_backend):
    backend = native_backend
    n = 64
    x, out = [await backend.allocate((n,), np.float32, label=k) for k in ("x", "out")]
    plan = await backend.plan([Step("axpy", [x, x, cases.axpy_params(n, 1.0), out], grid_1d(n))],
                              inputs=[x], outputs=[out], label="p")
    try:
        with pytest.raises(ValueError, match=r"profile p: input for GpuTensor\('x'.* is int32"):
            await backend.profile(plan, [np.zeros(n, np.int32)])
        with pytest.raises(ValueError, match=r"is float32\(65,\)"):
            await backend.profile(plan, [np.zeros(n + 1, np.float32)])
    finally:
        plan.free()
        x.free()
        out.free()


def test_a_run_waited_after_recover_raises_device_lost():
    """Found in review: a run submitted before the device was lost and replaced read the old
    device's destroyed buffer (the process aborted). Run apart: an abort must not take pytest."""
    code = (
        "import asyncio, numpy as np\n"
        "from pybridge.native import NativeBackend\n"
        "from pybridge.backend import Step\n"
        "from pybridge.dispatch import grid_1d\n"
        "from pybridge.errors import DeviceLost\n"
        "from tests.cases.plans import axpy_params\n"
        "async def main():\n"
        "    b = await NativeBackend.create()\n"
        "    n = 1 << 16\n"
        "    x, y, out = [await b.allocate((n,), np.float32) for _ in range(3)]\n"
        "    plan = await b.plan([Step('axpy', [x, y, axpy_params(n, 2.0), out], grid_1d(n))],\n"
        "                        inputs=[x, y], outputs=[out])\n"
        "    a = np.ones(n, np.float32)\n"
        "    run = b.submit(plan, [a, a], [np.empty(n, np.float32)])\n"
        "    b.destroy_device()\n"
        "    await b.recover()\n"
        "    try:\n"
        "        await run.wait()\n"
        "    except DeviceLost as e:\n"
        "        print('DeviceLost:', e)\n"
        "    print('pool', len(b._read_pool))\n"
        "asyncio.run(main())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr[-800:]
    assert "DeviceLost: submit plan: the GPU device was lost (replaced" in p.stdout, p.stdout
    assert "pool 0" in p.stdout  # the old device's buffer is not reused


async def test_a_plan_on_the_baseline_paths_moves_data_by_those_paths(backend):
    import pybridge

    n = 1000
    x, y, out = [await backend.allocate((n,), np.float32) for _ in range(3)]
    plan = await backend.plan([Step("axpy", [x, y, cases.axpy_params(n, 2.0), out], grid_1d(n))],
                              inputs=[x, y], outputs=[out], label="naive")
    a, r = np.arange(n, dtype=np.float32), np.empty(n, np.float32)
    pybridge.set_default_paths("naive", "naive")
    try:
        with pybridge.count_copies() as c:
            await backend.submit(plan, [a, a], [r]).wait()
    finally:
        pybridge.set_default_paths(None, None)
        plan.free()
        for t in (x, y, out):
            t.free()
    assert np.array_equal(r, 3 * a)
    assert set(c.as_dict()["upload"]) == {"naive"} and set(c.as_dict()["readback"]) == {"naive"}


async def test_a_run_dropped_unwaited_releases_its_read_buffer(backend):
    """Found in review: a run submitted and never waited for (its caller raised first) kept
    its MAP_READ buffer for good."""
    import gc

    n = 1024
    x, out = [await backend.allocate((n,), np.float32) for _ in range(2)]
    plan = await backend.plan([Step("axpy", [x, x, cases.axpy_params(n, 1.5), out],
                                    grid_1d(n))], inputs=[x], outputs=[out], label="p")
    a, r = np.arange(n, dtype=np.float32), np.empty(n, np.float32)
    await backend.submit(plan, [a], [r]).wait()
    before = backend.live_buffers()
    for _ in range(10):
        backend.submit(plan, [a], [r])  # dropped at once, never waited for
    gc.collect()
    await backend.sync()
    after = backend.live_buffers()
    await backend.submit(plan, [a], [r]).wait()  # the backend still runs plans
    plan.free()
    x.free()
    out.free()
    assert after <= before, (before, after)
    assert np.array_equal(r, 2.5 * a)


def test_profile_timestamps_are_plausible_natively():
    """Found in review: unsigned timestamp differences would turn a timestamp going back
    into 1.8e19 ns, and `> 0` checks could not tell."""
    async def go():
        b = await NativeBackend.create()
        try:
            r = await cases.profile(b)
        finally:
            b.close()
        return r

    r = asyncio.run(go())
    assert all(0 < t < 1e6 for t in r["times"]) and 0 < r["whole"] < 1e6, r  # µs
