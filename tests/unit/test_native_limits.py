"""The kernels on wgpu-py (Naga; lavapipe in CI) under WebGPU's default limits: the device
asked for the "default" profile (pybridge.device), then the kernel tests of
tests/unit/test_native_kernels.py run on it as they are (imported below, each with all its
cases, over this module's `backend`). tests/e2e/test_limits.py does the same in Chromium
under Safari's profile and the default one, with the model."""

from __future__ import annotations

import asyncio

import pytest

from pybridge.device import DEFAULT_LIMITS, required_limits
from pybridge.native import _LIMITS, NativeBackend
from tests.unit.test_native_kernels import (test_attention, test_embed,  # noqa: F401
                                            test_layernorm, test_matmul_variant, test_pool)


@pytest.fixture(scope="module")
def backend():
    """Overrides tests/unit/conftest.py's: one native device with WebGPU's default limits."""
    b = asyncio.run(NativeBackend.create(limits_profile="default"))
    yield b
    b.close()


def test_the_device_has_the_default_limits(backend):
    described = backend.describe()
    assert described["limits_profile"] == "default"
    assert described["limits"] == backend.limits == DEFAULT_LIMITS


def test_safaris_profile_asks_no_more_than_safari_gives():
    b = NativeBackend(limits_profile="safari")
    try:
        want = required_limits("safari", lambda name: b.adapter.limits[_LIMITS[name]])
        assert b.limits == want and b.describe()["limits_profile"] == "safari"
        assert b.limits["maxComputeWorkgroupStorageSize"] <= 32768
        assert "subgroups" not in b.features
    finally:
        b.close()
