"""What the CPU backend (pybridge/cpu.py) refuses rather than answer differently from a GPU,
found in review: a dispatch that reads and writes one buffer, a grid covering part of the
work (a GPU computes only that part; the numpy twins compute the whole), and Params the
bindings cannot hold (raw numpy exceptions before). Each is a pybridge error naming the
dispatch, and the backend answers the next one."""

from __future__ import annotations

import numpy as np
import pytest

from pybridge.cpu import CpuBackend
from pybridge.dispatch import grid_1d, pack_params
from pybridge.errors import GpuValidationError


@pytest.fixture
def cpu():
    b = CpuBackend("test")
    yield b
    b.close()


async def axpy_answers(b) -> None:
    x = await b.upload(np.arange(300, dtype=np.float32))
    out = await b.allocate(300, np.float32)
    await b.dispatch("axpy", [x, x, pack_params(300, 2.0), out], grid_1d(300))
    assert np.array_equal(await out.numpy(), 3 * np.arange(300, dtype=np.float32))
    x.free()
    out.free()


async def test_a_buffer_read_and_written_by_one_dispatch_is_refused(backend):
    x = await backend.upload(np.ones((4, 128), np.float32))
    g = await backend.upload(np.ones(128, np.float32))
    try:
        with pytest.raises(GpuValidationError, match="^dispatch layernorm: "):
            await backend.dispatch("layernorm", [x, x, g, g, pack_params(4, 128, 1e-12), x],
                                   grid_1d(4, 1))
    finally:
        x.free()
        g.free()


@pytest.mark.parametrize("grid", [(0, 0, 0), (1, 1, 1)])
async def test_a_grid_covering_part_of_the_work_is_refused(cpu, grid):
    x = await cpu.upload(np.ones(1024, np.float32))
    out = await cpu.allocate(1024, np.float32)
    with pytest.raises(GpuValidationError, match=r"axpy's grid covers \d+ of 1024 elements"):
        await cpu.dispatch("axpy", [x, x, pack_params(1024, 2.0), out], grid)
    x.free()
    out.free()
    await axpy_answers(cpu)


async def test_params_the_bindings_cannot_hold_are_a_validation_error(cpu):
    a = await cpu.upload(np.ones((2, 4), np.float32))
    out = await cpu.allocate((2, 4), np.float32)
    with pytest.raises(GpuValidationError, match="^dispatch matmul_generic: .*do not fit"):
        await cpu.dispatch("matmul_generic", [a, a, a, pack_params(8, 8, 8), out], (1, 1, 1))
    lengths = await cpu.upload(np.array([2], np.int32))
    with pytest.raises(GpuValidationError, match="^dispatch attention: "):  # grid z past B
        await cpu.dispatch("attention", [a, lengths, pack_params(2, 4, 1, 0.5), out], (1, 1, 3),
                           {"HEAD_DIM": 4})
    for t in (a, out, lengths):
        t.free()
    await axpy_answers(cpu)
