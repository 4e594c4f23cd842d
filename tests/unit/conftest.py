"""The backends the CPython tests run on: `backend` is each of them in turn (the native one,
wgpu-py on lavapipe in CI, and the CPU one, numpy), `native_backend` the GPU one alone, for
what only a GPU device has (shader compilers, binding limits, timestamps, a lost device)."""

from __future__ import annotations

import asyncio

import pytest

from pybridge.cpu import CpuBackend
from pybridge.native import NativeBackend


@pytest.fixture(scope="module")
def native_backend():
    b = asyncio.run(NativeBackend.create())
    yield b
    b.close()


@pytest.fixture(scope="module", params=["native", "cpu"])
def backend(request):
    if request.param == "cpu":
        yield CpuBackend("the tests' CPU backend")
        return
    yield request.getfixturevalue("native_backend")
