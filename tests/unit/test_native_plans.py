"""Plans on the native backend (wgpu-py on lavapipe in CI): the shared cases of
tests/cases/plans.py, run in CPython."""

from __future__ import annotations

import asyncio

import pytest

from pybridge.native import NativeBackend
from tests.cases import plans as cases


@pytest.fixture(scope="module")
def backend():
    b = asyncio.run(NativeBackend.create())
    yield b
    b.close()


async def test_a_plan_replays_with_overlapping_runs_and_exact_copies(backend):
    r = await cases.replay(backend, n=1000, runs=6)
    assert r["max_error"] < 1e-5
    # per run: 2 inputs up (1 copy each), 1 output down (1 copy); 2 uniforms once, at plan time
    assert r["copies"]["upload"] == {"view": {"copies": 12, "bytes": 12 * 4000}}
    assert r["copies"]["readback"] == {"ring": {"copies": 6, "bytes": 6 * 4000}}
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


async def test_profile_times_each_dispatch(backend):
    assert "timestamp-query" in backend.features  # lavapipe offers it
    check_profile(await cases.profile(backend))


def check_profile(r: dict) -> None:
    assert r["ops"] == ["axpy"] * 3
    assert all(t > 0 for t in r["times"]) and r["whole"] > 0, r
    assert r["max_error"] == 0.0
