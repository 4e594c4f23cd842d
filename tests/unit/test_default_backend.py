"""pybridge.default_backend() under concurrent callers (found in review): calls that arrive
while the backend is being made or a lost device recovered share that one piece of work, and
set_default_device() during it is honoured. Device creation is made slow here (a wrapper
that yields to the event loop first, as requestAdapter/requestDevice do in a browser)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import pybridge
from pybridge import backend as backend_mod
from pybridge.cpu import CpuBackend


@pytest.fixture
def fresh_default(monkeypatch):
    """No default backend yet, the CPU kind asked for, and counts of what got made."""
    monkeypatch.setattr(backend_mod, "_backend", None)
    monkeypatch.setattr(backend_mod, "_making", None)
    monkeypatch.setattr(backend_mod, "_device", ["cpu", "the test asked for it"])
    made, recovered, started = [], [], []
    create, recover = CpuBackend.create.__func__, CpuBackend.recover

    async def slow_create(cls, *args, **kwargs):
        started.append(cls)
        await asyncio.sleep(0.01)
        b = await create(cls, *args, **kwargs)
        made.append(b)
        return b

    async def slow_recover(self):
        recovered.append(self)
        await asyncio.sleep(0.01)
        await recover(self)

    monkeypatch.setattr(CpuBackend, "create", classmethod(slow_create))
    monkeypatch.setattr(CpuBackend, "recover", slow_recover)
    yield made, recovered, started
    if backend_mod._backend is not None:
        backend_mod._backend.close()


async def test_concurrent_first_calls_make_one_backend(fresh_default):
    made, _, started = fresh_default
    got = await asyncio.gather(*(pybridge.default_backend() for _ in range(5)))
    assert len(made) == 1, f"{len(made)} backends made for 5 concurrent first calls"
    assert all(b is made[0] for b in got)
    assert await pybridge.default_backend() is made[0]


async def test_concurrent_calls_after_a_loss_recover_once(fresh_default):
    made, recovered, _ = fresh_default
    b = await pybridge.default_backend()
    b.lost = ("destroyed", "the test lost it")
    got = await asyncio.gather(*(pybridge.default_backend() for _ in range(5)))
    assert len(recovered) == 1, f"{len(recovered)} recoveries for 5 concurrent calls"
    assert all(g is b for g in got) and b.lost is None


async def test_a_kind_changed_while_the_backend_is_made_is_honoured(fresh_default):
    made, _, started = fresh_default
    first = asyncio.ensure_future(pybridge.default_backend())
    while not started:  # until the CPU backend is being made
        await asyncio.sleep(0)
    pybridge.set_default_device("gpu")
    got = await first
    assert got.name != "cpu", "a backend of the kind asked for before set_default_device"
    assert await pybridge.default_backend() is got
    assert made and made[0].lost is not None, "the CPU backend made meanwhile was not closed"


async def test_a_cancelled_caller_does_not_cancel_the_others(fresh_default):
    made, _, started = fresh_default
    first = asyncio.ensure_future(pybridge.default_backend())
    second = asyncio.ensure_future(pybridge.default_backend())
    await asyncio.sleep(0)
    first.cancel()
    assert (await second) is made[0] and len(made) == 1


async def test_a_kind_changed_during_a_recovery_closes_the_recovered_backend(fresh_default):
    """Found in review: the recovered device was held by nobody and never closed."""
    _, recovered, _ = fresh_default
    b = await pybridge.default_backend()
    b.lost = ("destroyed", "the test lost it")
    first = asyncio.ensure_future(pybridge.default_backend())
    while not recovered:  # until the recovery is under way
        await asyncio.sleep(0)
    pybridge.set_default_device("gpu")
    got = await first
    assert got.name != "cpu" and await pybridge.default_backend() is got
    assert b.lost is not None, "the recovered CPU backend was left open"


async def test_a_closed_cpu_backend_recovers_whole(fresh_default):
    """Found in review: after close() and default_backend()'s recovery, a dispatch whose
    Params had been seen before got the destroyed uniform from the cache (DeviceLost for good);
    and tensors of before the recovery still read back, where a GPU backend refuses them."""
    from pybridge.dispatch import grid_1d, pack_params
    from pybridge.errors import DeviceLost

    b = await pybridge.default_backend()

    async def axpy(alpha):
        x = await b.upload(np.arange(300, dtype=np.float32))
        out = await b.allocate(300, np.float32)
        await b.dispatch("axpy", [x, x, pack_params(300, alpha), out], grid_1d(300))
        return x, await out.numpy()

    old, first = await axpy(2.0)
    b.close()
    assert await pybridge.default_backend() is b
    _, again = await axpy(2.0)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again, 3 * np.arange(300, dtype=np.float32))
    with pytest.raises(DeviceLost, match="replaced"):
        await old.numpy()


async def test_gpu_or_cpu_leaves_a_backend_whose_recovery_failed(fresh_default, monkeypatch):
    """Found in review: a WebGPUUnavailable from recovering a lost GPU backend (its tensors
    live) made gpu_or_cpu drop it for the CPU backend; it is raised instead."""
    from pybridge.errors import WebGPUUnavailable
    from pybridge.native import NativeBackend

    pybridge.set_default_device("gpu")
    b = await pybridge.default_backend()
    b.lost = ("destroyed", "the test lost it")

    async def no_device(self):
        raise WebGPUUnavailable("the test's adapter gave no device")

    monkeypatch.setattr(NativeBackend, "recover", no_device)
    with pytest.raises(WebGPUUnavailable, match="gave no device"):
        await backend_mod.gpu_or_cpu()
    assert backend_mod._backend is b and backend_mod._device[0] == "gpu"
