"""Pipelines compiled ahead, at load, beside the weights stream (`backend.compile_pipelines`,
`MiniLM.pipeline_keys`): on the native backend (wgpu-py) and the CPU one; the browser runs the
same cases in tests/e2e/test_minilm.py."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from types import SimpleNamespace

import pytest

from pybridge.backend import pipeline_key
from pybridge.dispatch import MAX_WORKGROUPS_PER_DIM, matmul_plan
from pybridge.minilm import MAX_BATCH, MiniLM
from pybridge.native import NativeBackend
from tests.cases import compile_ahead as cases
from tests.reference import MODEL_DIR, need


def config() -> dict:
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    return json.loads((MODEL_DIR / "manifest.json").read_text())["config"]


@pytest.mark.parametrize("is_cpu,subgroups,dtype", list(itertools.product(
    [False, True], [False, True], ["float32", "float16"])))
def test_pipeline_keys_hold_every_shapes_kernels(is_cpu, subgroups, dtype):
    """pipeline_keys() (no shape) holds the pipelines of every batch shape's forward pass, and
    pipeline_keys(B, T) those of that shape exactly: checked against _forward over rows from
    1 to 2,100 (each up to 40 and around 512, every 13th else), and shapes up to the largest
    batch (matmul_plan picks its kernel by the rows M)."""
    stub = SimpleNamespace(features=frozenset(), is_cpu=is_cpu, generation=0)
    model = MiniLM(stub, config(), defaultdict(lambda: None), None, dtype)
    model.subgroups = subgroups
    every = {pipeline_key(op, c) for op, c in model.pipeline_keys()}
    rows = sorted({*range(1, 41), *range(500, 530), *range(41, 2100, 13)})
    shapes = [(1, m) for m in rows] + [(B, T) for B in (1, 7, 32, 257, 4096, MAX_BATCH)
                                                  for T in (1, 16, 100, 256)]
    seen = set()
    for B, T in shapes:
        keys = {pipeline_key(s.op, s.constants) for s in model._forward(defaultdict(lambda: None),
                                                                          B, T)}
        assert keys == {pipeline_key(op, c) for op, c in model.pipeline_keys(B, T)}
        assert keys <= every, (B, T, keys - every)
        seen |= keys
    assert seen == every  # none of them is compiled for nothing
    ops = {op for op, _ in every}
    assert {"embed", "attention", "layernorm", "pool"} <= ops
    # the matmul kernels: each of matmul_plan's choices for MiniLM's three N, K
    C, inner = model.hidden, model.inner
    for M in (1, 32, 33, 512, 513, 4096, 65536, MAX_BATCH * 256):
        for N, K in ((3 * C, C), (C, C), (inner, C), (C, inner)):
            op = matmul_plan(M, N, K, dtype == "float16", False, is_cpu, subgroups)[0]
            assert op in ops, (M, N, K, op)
    with pytest.raises(ValueError, match="both B and T or neither"):
        model.pipeline_keys(4)
    assert MAX_WORKGROUPS_PER_DIM == 65535  # grids of the largest shape are not checked here


async def test_a_model_is_compiled_at_load_identically_to_compiled_lazily():
    """On a new device: every pipeline of every forward pass exists when load returns, before
    any dispatch, and two shapes' embeds compile none; their embeddings are bit for bit
    those of a device where each shape's plan compiled them."""
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    r = await cases.compiled_at_load(
        lambda backend: MiniLM.load(MODEL_DIR, dtype="float16", backend=backend),
        NativeBackend.create)
    check_compiled_at_load(r)


def check_compiled_at_load(r: dict) -> None:
    ahead, lazy = r["ahead"], r["lazy"]
    for mode in (ahead, lazy):  # the subgroups probe's own, where the device has subgroups
        for k in ("after_load", "after_embeds"):
            mode[k] = [key for key in mode[k] if "subgroup_probe" not in key]
    assert ahead["after_load"] == ahead["expected"]  # all of them, and nothing else
    assert ahead["after_embeds"] == ahead["after_load"]  # no pipeline made by the embeds
    assert lazy["after_load"] == []  # the lazy device compiled nothing at load
    assert set(lazy["after_embeds"]) <= set(ahead["after_load"])  # the two shapes' own
    assert r["bitwise_equal"], r
    assert r["norms"] == pytest.approx([1.0, 1.0], abs=1e-5)


async def test_compile_errors_name_the_kernel(native_backend):
    check_compile_errors(await cases.compile_errors(native_backend))


def check_compile_errors(r: dict) -> None:
    wgsl, constant, missing = r["wgsl"], r["constant"], r["missing"]
    assert wgsl["type"] == "GpuValidationError" and wgsl["op"] == "compile broken_kernel", wgsl
    assert wgsl["message"].startswith("compile broken_kernel: GPU validation error: "), wgsl
    assert wgsl["cause"] != "JsException", wgsl
    assert constant["type"] == "GpuValidationError" and constant["op"] == "compile axpy", constant
    assert "NO_SUCH_CONSTANT" in constant["message"], constant
    assert constant["cause"] != "JsException", constant
    # the same constant in a plan: the same type of error, naming the constant
    assert r["sync"]["type"] == "GpuValidationError", r["sync"]
    assert "NO_SUCH_CONSTANT" in r["sync"]["message"], r["sync"]
    assert missing["type"] == "FileNotFoundError" and "no_such_kernel" in missing["message"]
    assert r["cached"] == {"axpy": True, "broken_kernel": False, "constant": False}, r
    assert "broken_kernel" not in r["modules"]
    assert r["works"] and r["uncaptured"] == [], r
    assert r["buffers_left"] == 0 and r["proxies_left"] == 0, r


async def test_a_failed_compile_at_load_frees_the_weights(backend):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    r = await cases.failed_load_frees_everything(
        lambda b: MiniLM.load(MODEL_DIR, dtype="float16", backend=b), backend)
    check_failed_load(r)


def check_failed_load(r: dict) -> None:
    assert r["raised"]["type"] == "GpuError", r
    assert r["raised"]["message"] == ("compile matmul: GPU validation error: this compile "
                                      "failed (a test)"), r
    assert r["buffers_left"] == 0 and r["tasks"] == [], r


async def test_a_weights_failure_cancels_the_compile(native_backend, tmp_path):
    """Weights that do not stream (a truncated file): the load raises their error, holds
    nothing, and its compile is not left running."""
    import asyncio
    import shutil

    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    for name in ("manifest.json", "vocab.txt"):
        shutil.copy(MODEL_DIR / name, tmp_path / name)
    data = (MODEL_DIR / "model-f16.safetensors").read_bytes()
    (tmp_path / "model-f16.safetensors").write_bytes(data[: len(data) // 2])
    before = native_backend.live_buffers()
    with pytest.raises(Exception) as raised:
        await MiniLM.load(tmp_path, dtype="float16", backend=native_backend)
    assert "model-f16.safetensors" in str(raised.value)
    await asyncio.sleep(0)
    assert native_backend.live_buffers() == before
    assert not [t for t in asyncio.all_tasks() if "MiniLM._compile" in repr(t.get_coro())]


async def test_the_cpu_backend_checks_each_kernel_has_a_twin():
    from pybridge.cpu import CpuBackend
    from pybridge.errors import GpuValidationError

    cpu = CpuBackend("a test")
    await cpu.compile_pipelines([("axpy", None), ("layernorm", None)])
    with pytest.raises(GpuValidationError, match=r"^compile subgroup_probe: .*no numpy twin"):
        await cpu.compile_pipelines([("subgroup_probe", None)])
    with pytest.raises(FileNotFoundError, match="no_such_kernel"):
        await cpu.compile_pipelines([("no_such_kernel", None)])
