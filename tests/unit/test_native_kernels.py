"""Every kernel of wgsl/ against its numpy reference in CPython, on the native backend (wgpu-py:
Naga compiler, lavapipe in CI) and on the CPU backend (the kernels' numpy twins), across
shapes that are not multiples of the tiles (`backend`: tests/unit/conftest.py)."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from pybridge import dispatch
from pybridge.dispatch import (VARIANTS, Variant, matmul_tile, pack_params, params_binding,
                               shader_source)
from pybridge import native
from pybridge.native import NativeBackend
from pybridge.checks.selftest import MATMUL_KERNELS
from tests.cases import kernels, references
from tests.cases.kernels import rand
from tests.conftest import IN_CI

# matmul_plan's picks on a GPU: K % 4 == 0 (K % 8 with float16) runs wgsl/matmul_splitk.wgsl
# up to 512 rows, else a variant of wgsl/matmul.wgsl; other K wgsl/matmul_generic.wgsl; these
# shapes reach split-K and the 64-row tile (the 32- and 128-row tiles: MATMUL_VARIANT_CASES
# runs every kernel directly)
MATMUL_SHAPES = [(1, 1, 1), (5, 7, 3), (64, 64, 16), (65, 63, 17), (13, 1152, 384),
                 (130, 384, 1536), (7, 200, 96), (129, 131, 12), (3, 5, 6), (200, 129, 40),
                 (32, 384, 1536), (33, 260, 24), (1100, 1152, 384)]


# float16 weights are stored in pairs along K, so their cases have even K
MATMUL_CASES = [(m, n, k, gelu, False) for m, n, k in MATMUL_SHAPES for gelu in (False, True)]
MATMUL_CASES += [(m, n, k, False, True) for m, n, k in MATMUL_SHAPES if k % 2 == 0]


@pytest.mark.parametrize("M, N, K, gelu, f16", MATMUL_CASES)
async def test_matmul(backend, M, N, K, gelu, f16):
    got = await kernels.matmul(backend, M, N, K, gelu, f16)
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


# Every variant of wgsl/matmul.wgsl on shapes off its tiles: rows past two tiles, and past
# one; columns past a tile (200 = 128 + 72, 131); K past a slice (40: 2.5 slices of 16, 5 of
# 8; 24); and a sliver (5 rows, 1 column, K = 8). The plan's cases above reach them too.
MATMUL_VARIANTS = [op for op in MATMUL_KERNELS if op != "matmul_generic"]  # pybridge.checks
MATMUL_VARIANT_CASES = [
    (op, M, N, K, gelu, f16)
    for op in MATMUL_VARIANTS
    for M, N, K, gelu in ((matmul_tile(op)[1] * 2 + 5, 200, 40, False),
                          (matmul_tile(op)[1] + 3, 131, 24, True), (5, 1, 8, False))
    for f16 in (False, True)
]


def require_features(features, op: str) -> None:
    """Kernels that need a device feature (matmul_splitk_sg: subgroups) run wherever it is;
    lavapipe and SwiftShader have it, so CI runs them (SwiftShader's subgroups of 4 take the
    kernel's path without shuffles; test_matmul_splitk_sg_at_every_subgroup_size covers the
    sizes no CI device has)."""
    if features is None:  # the CPU backend: numpy's twin of the kernel needs no feature
        return
    missing = dispatch.variant_features(op) - features
    if missing:
        why = f"{op} needs {', '.join(sorted(missing))}, which this device lacks"
        if IN_CI:
            pytest.fail(f"CI must run every kernel: {why}")
        pytest.skip(why)


@pytest.mark.parametrize("op, M, N, K, gelu, f16", MATMUL_VARIANT_CASES)
async def test_matmul_variant(backend, op, M, N, K, gelu, f16):
    require_features(None if backend.name == "cpu" else backend.features, op)
    got = await kernels.matmul(backend, M, N, K, gelu, f16, op=op)
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("M, N, K, cpu, op", [
    (12, 1152, 384, False, "matmul_splitk"), (32, 384, 1536, False, "matmul_splitk"),
    (12, 1152, 384, True, "matmul_rows"), (32, 384, 1536, True, "matmul_rows"),
    (4096, 1152, 384, False, "matmul_m64"), (4096, 1152, 384, True, "matmul_cpu"),
    (33, 384, 384, True, "matmul_cpu"), (4096, 4096, 4096, True, "matmul_cpu"),
    (4096, 4096, 4096, False, "matmul"), (33, 384, 384, False, "matmul_splitk"),
    (512, 384, 1536, False, "matmul_splitk"),
    (513, 384, 384, False, "matmul_m64"),
    (4096, 384, 30, False, "matmul_generic"),
])
def test_matmul_plan_picks_by_rows_and_workgroups(M, N, K, cpu, op):
    for f16 in (False, True):
        for subgroups in (False, True):
            got, grid, constants = dispatch.matmul_plan(M, N, K, f16, True, cpu, subgroups)
            # with subgroups, split-K sums by subgroup shuffles; nothing else changes
            want = op + "_sg" if subgroups and op == "matmul_splitk" else op
            assert got == want and constants == {"B_F16": f16}
            cols, rows = matmul_tile(got)
            assert grid == (-(-N // cols), -(-M // rows), 1)


def test_a_variant_is_its_base_with_the_marked_lines_set():
    for op, v in VARIANTS.items():
        base = shader_source(v.base).splitlines()
        text = shader_source(op).splitlines()
        head = [f"// variant {op} of wgsl/{v.base}.wgsl", *(f"enable {e};" for e in v.enable)]
        assert text[:len(head)] == head and len(text) == len(base) + len(head), op
        changed = [(old, new) for old, new in zip(base, text[len(head):]) if old != new]
        consts = [(old, new) for old, new in changed if old.startswith("const ")]
        assert len(consts) <= len(v.consts) and all("// VARIANT" in new for _, new in consts)
        enabled = [(old, new) for old, new in changed if not old.startswith("const ")]
        assert all(any(re.sub(rf"^(\s*)//{e}: ?", r"\1", old) == new
                       for e in v.enable) for old, new in enabled), op
        assert 0 < len(changed) and (len(enabled) > 0) == bool(v.enable), op
        assert dispatch.variant_features(op) == set(v.enable)  # subgroups: the feature's name


def test_the_base_of_a_subgroups_variant_compiles_without_the_feature():
    # the //subgroups: lines are comments in matmul_splitk.wgsl, so it has no subgroup builtin
    text = shader_source("matmul_splitk")
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    assert "subgroup" not in code and "enable" not in code
    variant = shader_source("matmul_splitk_sg").split("enable subgroups;", 1)[1]
    assert "subgroupShuffleXor" in re.sub(r"//.*", "", variant)


def test_a_variant_naming_a_line_its_base_lacks_is_an_error():
    with pytest.raises(ValueError, match="const NOPE of matmul.wgsl: expected one such line"):
        dispatch.variant_source("x", Variant("matmul", {"NOPE": 1}))
    with pytest.raises(ValueError, match="const TILE_N of matmul.wgsl"):  # a const, not a knob
        dispatch.variant_source("x", Variant("matmul", {"TILE_N": 64}))
    with pytest.raises(TypeError, match="must be a bool or a u32"):
        dispatch.variant_source("x", Variant("matmul", {"TILE_M": -1}))
    with pytest.raises(ValueError, match="matmul.wgsl has no line written //subgroups: CODE"):
        dispatch.variant_source("x", Variant("matmul", enable=("subgroups",)))
    with pytest.raises(ValueError, match="unknown WGSL extension 'f64'"):
        dispatch.variant_source("x", Variant("matmul_splitk", enable=("f64",)))
    with pytest.raises(ValueError, match="an extension is listed twice"):
        dispatch.variant_source("x", Variant("matmul_splitk", enable=("subgroups", "subgroups")))


def test_an_indented_extension_line_is_enabled_too(monkeypatch):
    base = ("fn f() -> u32 {\n  var g = 1u;\n  //subgroups: g = 2u;\n\t//subgroups:g = 3u;\n"
            "  return g;\n}\n")
    monkeypatch.setattr(dispatch, "_kernel_file", lambda name: base)
    text = dispatch.variant_source("x", Variant("b", enable=("subgroups",)))
    assert text.splitlines()[1:] == ["enable subgroups;", "fn f() -> u32 {", "  var g = 1u;",
                                     "  g = 2u;", "\tg = 3u;", "  return g;", "}"]


# matmul_splitk_sg at every subgroup size WebGPU allows. lavapipe's subgroups have 8
# invocations, so there the reduce-scatter runs but the exchanges with lane ^ 8 and ^ 16 (what
# NVIDIA's and Apple's 32 take) never do. Here the kernel's own text runs with subgroup_size
# set to S and each subgroupShuffleXor done through workgroup memory between invocations
# tid and tid ^ d: the pairing the kernel relies on (wgsl/subgroup_probe.wgsl checks it on the
# device), so what is tested is the kernel's arithmetic and indexing at each S.
EMULATED_SHUFFLES = """
var<workgroup> exchange: array<vec4<f32>, 256>;
fn xor4(tid: u32, v: vec4<f32>, d: u32) -> vec4<f32> {
  exchange[tid] = v;
  workgroupBarrier();
  let r = exchange[tid ^ d];
  workgroupBarrier();
  return r;
}
fn xor2(tid: u32, v: vec2<f32>, d: u32) -> vec2<f32> {
  return xor4(tid, vec4<f32>(v, 0.0, 0.0), d).xy;
}
fn xor1(tid: u32, v: f32, d: u32) -> f32 {
  return xor4(tid, vec4<f32>(v), d).x;
}
"""


def emulated_subgroups(S: int) -> str:
    text = shader_source("matmul_splitk_sg").replace("enable subgroups;\n", "")
    text, n = re.subn(r"@builtin\(subgroup_size\) subgroup_size: u32,", "", text)
    assert n == 1
    text = re.sub(r"\bsubgroup_size\b", f"{S}u", text)
    calls = {"xor4": r"subgroupShuffleXor\((select\(odds)",
             "xor2": r"subgroupShuffleXor\((select\(v4)",
             "xor1": r"subgroupShuffleXor\(((?:select\(v2|v,))"}
    for fn, pattern in calls.items():
        text, n = re.subn(pattern, fn + r"(tid, \1", text)
        assert n == (2 if fn == "xor1" else 1), fn  # the kernel's 4 shuffles, each typed
    assert "subgroupShuffleXor" not in re.sub(r"//.*", "", text)
    return text.replace("fn erf(", EMULATED_SHUFFLES + "\nfn erf(", 1)


@pytest.mark.parametrize("S", [4, 8, 16, 32, 64, 128])
@pytest.mark.parametrize("M, N, K, f16", [(69, 200, 40, False), (35, 131, 24, True),
                                          (5, 1, 8, False), (33, 17, 1536, True),
                                          (100, 13, 12, False)])
async def test_matmul_splitk_sg_at_every_subgroup_size(native_backend, monkeypatch, S, M, N, K, f16):
    backend = native_backend
    op = f"matmul_splitk_sg_emulated_{S}"  # pipelines are cached by op name
    monkeypatch.setitem(native.__dict__, "shader_source",
                        lambda name: emulated_subgroups(S) if name == op else shader_source(name))
    gelu = M % 2 == 1
    got = await kernels.matmul(backend, M, N, K, gelu, f16, op=op, tile=(8, 32))
    np.testing.assert_allclose(got, references.matmul(M, N, K, gelu, f16), rtol=1e-4, atol=1e-4)


async def test_subgroups_are_probed_once_per_device():
    b = await NativeBackend.create()
    try:
        assert "subgroups" in b.features  # lavapipe has them
        assert await b.subgroups_usable() is True
        assert re.fullmatch(r"subgroups of \[\d+\] invocations, in order", b.subgroups_note)
        live = b.live_buffers()
        assert await b.subgroups_usable() is True and b.live_buffers() == live  # cached
    finally:
        b.close()


async def test_concurrent_first_calls_share_one_probe():
    b = await NativeBackend.create()
    runs = []
    dispatch_ = b.dispatch

    async def counting(op, *args, **kwargs):
        runs.append(op)
        return await dispatch_(op, *args, **kwargs)

    b.dispatch = counting
    try:
        assert await asyncio.gather(*(b.subgroups_usable() for _ in range(3))) == [True] * 3
        assert runs == ["subgroup_probe"]  # found in review: each first caller probed
    finally:
        b.close()


@pytest.mark.parametrize("probe, note", [
    # invocations whose partner is not tid ^ d: the pairing the kernels rely on fails
    ("@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n@compute "
     "@workgroup_size(256) fn main(@builtin(local_invocation_index) tid: u32) "
     "{ out[tid] = select(1u, 0u, tid == 77u) | (32u << 8u); }",
     "subgroups of [32] invocations, not in invocation order: not used"),
    # a compiler that rejects the text (Naga rejects `enable subgroups;` itself)
    ("enable nonsense;\n", "subgroup kernels do not compile here: "),
])
async def test_subgroups_unusable_where_the_probe_fails(monkeypatch, probe, note):
    monkeypatch.setitem(native.__dict__, "shader_source",
                        lambda op: probe if op == "subgroup_probe" else shader_source(op))
    b = await NativeBackend.create()
    try:
        t = await b.upload(np.zeros(256, np.uint32))
        await t.numpy()  # the readback pool's buffer, kept for reuse, exists from here on
        t.free()
        live = b.live_buffers()
        assert await b.subgroups_usable() is False
        assert b.subgroups_note.startswith(note) and b.live_buffers() == live
        assert dispatch.matmul_plan(12, 384, 384, subgroups=False)[0] == "matmul_splitk"
    finally:
        b.close()


@pytest.mark.parametrize("B, T, V, C", [(1, 1, 5, 8), (2, 7, 100, 384), (3, 33, 1000, 96)])
@pytest.mark.parametrize("f16", [False, True])
async def test_embed(backend, B, T, V, C, f16):
    got = await kernels.embed(backend, B, T, V, C, f16)
    np.testing.assert_allclose(got, references.embed(B, T, V, C, f16), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("R, C", [(1, 1), (3, 384), (17, 1000), (64, 129)])
async def test_layernorm(backend, R, C):
    got = await kernels.layernorm(backend, R, C)
    np.testing.assert_allclose(got, references.layernorm(R, C), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B, T, heads, D, lengths", [
    (1, 1, 1, 32, [1]), (2, 9, 12, 32, [9, 4]), (3, 70, 2, 64, [70, 1, 65]),
    (1, 130, 12, 32, [128]),
    # found in review: a length past T read the next sentence's keys on the GPU (the CPU
    # backend clamped), and a length of 0 is all zeros on both
    (3, 4, 2, 32, [6, 0, 4]),
])
async def test_attention(backend, B, T, heads, D, lengths):
    got = await kernels.attention(backend, B, T, heads, D, lengths)
    np.testing.assert_allclose(got, references.attention(B, T, heads, D, lengths),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B, T, C, lengths", [(1, 1, 8, [1]), (3, 10, 384, [10, 1, 5]),
                                              (2, 40, 1000, [40, 17]),
                                              (3, 4, 64, [9, 0, 4])])  # past T, 0: clamped
async def test_pool(backend, B, T, C, lengths):
    got = await kernels.pool(backend, B, T, C, lengths)
    np.testing.assert_allclose(got, references.pool(B, T, C, lengths), rtol=1e-5, atol=1e-6)


# --- NaN and infinities in the inputs ---------------------------------------------------------
#
# WGSL does not promise IEEE special values: "Implementations may assume that overflow,
# infinities, and NaNs are not present during shader execution", and where one appears the
# result is "an indeterminate value of the target type" (WGSL 15.7.2, finite math; its note:
# min and max "may not return the expected result"). So what pybridge promises, and these
# tests assert, is what data independence gives on any conforming device: a NaN, an infinity
# or the largest finite float in some inputs changes only the outputs whose numpy reference
# reads them (a row and a column of a matmul, a row of a layernorm, the rows of one head of
# one sentence in attention, the tokens with one id or position in embed, a sentence in
# pool); inputs a kernel masks (keys and tokens past a sentence's length) change nothing;
# no dispatch hangs or faults, and the device answers the next one. What the affected outputs
# hold is not promised. Seen on lavapipe (Mesa 22.3, LLVM 15): numpy's exact pattern of NaN
# and infinities in every kernel. pool used to turn a NaN in a sentence into finite values
# (max(sqrt(NaN), 1e-12) gave 1e-12 there, so the row was scaled by 1e12); it now tests the
# norm's bits, so the row comes out NaN as numpy's does. Nothing in MiniLM feeds a kernel NaN
# from user input (token ids are checked).

SPECIALS = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf,
            "max": float(np.finfo(np.float32).max)}


async def run_kernel(backend, op: str, arrays: list[np.ndarray], params: np.ndarray,
                     out_shape: tuple[int, ...], grid: tuple[int, int, int],
                     constants: dict | None = None) -> np.ndarray:
    """One dispatch of `op` over uploads of `arrays`, its params and a new output, read back;
    every buffer freed after."""
    tensors = [await backend.upload(a) for a in arrays]
    out = await backend.allocate(out_shape, np.float32)
    try:
        await backend.dispatch(op, [*tensors, params, out], grid, constants)
        return await out.numpy()
    finally:
        for t in (*tensors, out):
            t.free()


def assert_unaffected(got: np.ndarray, want: np.ndarray, affected: np.ndarray,
                      rtol: float = 1e-4, atol: float = 1e-4) -> None:
    assert affected.any() and not affected.all()
    np.testing.assert_allclose(got[~affected], want[~affected], rtol=rtol, atol=atol)


def held(backend) -> int:
    """Buffers held beyond the backend's caches (kernel parameters, the readback pool)."""
    return backend.live_buffers() - len(backend._uniforms) - len(getattr(backend, "_read_pool", ()))


async def assert_device_answers(backend, held_before: int) -> None:
    """The device still runs a kernel right after, and no tensor was left allocated."""
    x, y = np.arange(300, dtype=np.float32), np.ones(300, np.float32)
    assert np.array_equal(await run_kernel(backend, "axpy", [x, y], pack_params(300, 2.0),
                                           (300,), dispatch.grid_1d(300)), 2 * x + 1)
    assert held(backend) == held_before


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # max -> f16
@pytest.mark.parametrize("special", SPECIALS)
@pytest.mark.parametrize("op", MATMUL_KERNELS)
async def test_matmul_keeps_nan_and_inf_to_their_row_and_columns(backend, op, special):
    require_features(None if backend.name == "cpu" else backend.features, op)
    live = held(backend)
    M, N, K = 70, 131, 40  # past a tile of rows and of columns; K % 8 == 0 (float16 pairs)
    for gelu in (False, True):
        for f16 in (False, True):
            a, b, bias = rand((M, K), 1), rand((N, K), 2, 0.5), rand((N,), 3)
            a[5, 7] = b[20, 3] = bias[99] = SPECIALS[special]
            if op.startswith("matmul_splitk"):
                picked, grid, _ = dispatch.matmul_plan(M, N, K, f16, False, False,
                                                       op.endswith("_sg"))
                assert picked == op
            else:
                cols, rows = matmul_tile(op)
                grid = (-(-N // cols), -(-M // rows), 1)
            got = await run_kernel(backend, op, [a, kernels.as_words(b, f16), bias],
                                   pack_params(M, N, K), (M, N), grid,
                                   {"GELU": gelu, "B_F16": f16})
            with np.errstate(all="ignore"):
                w = (b.astype(np.float16) if f16 else b).astype(np.float64)
                y = a.astype(np.float64) @ w.T + bias
                want = references.gelu(y) if gelu else y
            affected = np.zeros((M, N), bool)
            affected[5, :] = affected[:, 20] = affected[:, 99] = True
            assert_unaffected(got, want, affected)
    await assert_device_answers(backend, live)


@pytest.mark.parametrize("special", SPECIALS)
async def test_layernorm_keeps_nan_and_inf_to_their_rows_and_columns(backend, special):
    live = held(backend)
    R, C = 17, 384
    x, r, gamma, beta = rand((R, C), 9, 3), rand((R, C), 10), rand((C,), 11) + 1, rand((C,), 12)
    x[3, 5] = r[8, 100] = gamma[200] = beta[300] = SPECIALS[special]
    got = await run_kernel(backend, "layernorm", [x, r, gamma, beta], pack_params(R, C, 1e-12),
                           (R, C), dispatch.grid_1d(R, 1))
    with np.errstate(all="ignore"):
        want = references.layer_norm(x.astype(np.float64) + r, gamma, beta)
    affected = np.zeros((R, C), bool)
    affected[[3, 8], :] = affected[:, [200, 300]] = True
    assert_unaffected(got, want, affected)
    await assert_device_answers(backend, live)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # max -> f16
@pytest.mark.parametrize("f16", [False, True])
@pytest.mark.parametrize("special", SPECIALS)
async def test_embed_keeps_nan_and_inf_to_the_tokens_that_read_them(backend, special, f16):
    live = held(backend)
    B, T, V, C = 2, 7, 100, 384
    ids = ((np.arange(B * T, dtype=np.int64) * 7919) % V).astype(np.int32)  # (B*T,)
    word, pos, typ = rand((V, C), 4), rand((T + 3, C), 5), rand((2, C), 6)
    gamma, beta = rand((C,), 7) + 1, rand((C,), 8)
    value = SPECIALS[special]
    word[ids[3], 10] = pos[5, 20] = gamma[40] = beta[50] = value
    word[V - 1, :] = typ[1, :] = value  # rows no token reads (no id V-1; token type 0 only)
    # (float16 tables: "max" rounds to an infinity, as numpy's reference rounds it too)
    got = await run_kernel(backend, "embed", [ids, *(kernels.as_words(t, f16) for t in
                                                     (word, pos, typ)), gamma, beta],
                           pack_params(T, C, 1e-12), (B * T, C), (B * T, 1, 1),
                           {"TABLE_F16": f16})
    with np.errstate(all="ignore"):
        w, p, y = ((t.astype(np.float16) if f16 else t).astype(np.float64)
                   for t in (word, pos, typ))
        t = np.arange(B * T) % T
        want = references.layer_norm(w[ids] + p[t] + y[0], gamma, beta)
    affected = np.zeros((B * T, C), bool)
    affected[(ids == ids[3]) | (t == 5), :] = affected[:, [40, 50]] = True
    assert_unaffected(got, want, affected)
    await assert_device_answers(backend, live)


@pytest.mark.parametrize("special", SPECIALS)
async def test_attention_keeps_nan_and_inf_to_one_head_and_ignores_padding(backend, special):
    live = held(backend)
    B, T, heads, D, lengths = 2, 9, 2, 32, [9, 4]
    H = heads * D
    qkv = rand((B * T, 3 * H), 13, 2)  # rows (b, t); columns [q | k | v], head h at h*D
    value = SPECIALS[special]
    qkv[0 * T + 2, 0 * H + 0 * D + 3] = value  # q: sentence 0, row 2, head 0
    qkv[0 * T + 5, 1 * H + 1 * D + 4] = value  # k: sentence 0, key 5, head 1
    qkv[1 * T + 6, 1 * H + 0 * D + 1] = value  # k: sentence 1, key 6: past its length 4
    qkv[1 * T + 7, 2 * H + 1 * D + 1] = value  # v: sentence 1, key 7: past its length 4
    got = await run_kernel(backend, "attention", [qkv, np.array(lengths, np.int32)],
                           pack_params(T, H, heads, float(D) ** -0.5), (B * T, H),
                           (-(-T // 64), heads, B), {"HEAD_DIM": D})
    q = qkv.astype(np.float64).reshape(B, T, 3, heads, D)
    want = np.zeros((B, T, heads, D))
    with np.errstate(all="ignore"):
        for b in range(B):
            n = lengths[b]
            for h in range(heads):
                s = q[b, :, 0, h] @ q[b, :n, 1, h].T / np.sqrt(D)
                p = np.exp(s - s.max(-1, keepdims=True))
                want[b, :, h] = (p / p.sum(-1, keepdims=True)) @ q[b, :n, 2, h]
    affected = np.zeros((B, T, heads, D), bool)
    affected[0, 2, 0] = affected[0, :, 1] = True
    assert_unaffected(got, want.reshape(B * T, H), affected.reshape(B * T, H),
                      rtol=1e-4, atol=1e-5)
    await assert_device_answers(backend, live)


@pytest.mark.parametrize("special", SPECIALS)
async def test_pool_keeps_nan_and_inf_to_their_sentence_and_ignores_padding(backend, special):
    live = held(backend)
    B, T, C, lengths = 3, 10, 384, [10, 1, 5]
    x = rand((B * T, C), 14)  # rows (b, t)
    x[0 * T + 3, 7] = x[1 * T + 5, 9] = x[2 * T + 4, 100] = SPECIALS[special]  # (1, 5): padding
    got = await run_kernel(backend, "pool", [x, np.array(lengths, np.int32)], pack_params(T, C),
                           (B, C), (B, 1, 1))
    with np.errstate(all="ignore"):
        xs = x.astype(np.float64).reshape(B, T, C)
        m = np.stack([xs[b, :lengths[b]].mean(0) for b in range(B)])
        want = m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12)
    affected = np.zeros((B, C), bool)
    affected[[0, 2], :] = True
    assert_unaffected(got, want, affected, rtol=1e-5, atol=1e-6)
    await assert_device_answers(backend, live)


# Shapes past what a kernel's WGSL computes (its header states the limits): the GPU wrote wrong
# numbers or zero columns where the CPU backend's numpy twin answered right (found in review);
# both refuse them now, by dispatch and in a plan, and leave nothing behind.
def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


PAST_THE_KERNELS = {
    "layernorm C=1152": ("layernorm", lambda: [_zeros(2 * 1152), _zeros(2 * 1152), _zeros(1152),
                         _zeros(1152), pack_params(2, 1152, 1e-12), _zeros(2 * 1152)],
                         (2, 1, 1), None, "C=1152"),
    "pool C=1152": ("pool", lambda: [_zeros(3 * 1152), np.array([3], np.int32), pack_params(3, 1152),
                    _zeros(1152)], (1, 1, 1), None, "C=1152"),
    "embed C=1152": ("embed", lambda: [np.array([1, 2], np.int32), _zeros(4 * 1152),
                     _zeros(2 * 1152), _zeros(1152), _zeros(1152), _zeros(1152),
                     pack_params(2, 1152, 1e-12), _zeros(2 * 1152)], (2, 1, 1), None, "C=1152"),
    "pool C=1152, Params unpadded": ("pool", lambda: [_zeros(3 * 1152), np.array([3], np.int32),
                                     np.array([3, 1152], np.uint32), _zeros(1152)], (1, 1, 1),
                                     None, "C=1152"),
    "layernorm C=2048, Params as bytes": ("layernorm", lambda: [
        _zeros(2 * 2048), _zeros(2 * 2048), _zeros(2048), _zeros(2048),
        pack_params(2, 2048, 1e-12).view(np.uint8), _zeros(2 * 2048)], (2, 1, 1), None, "C=2048"),
    "matmul K=6": ("matmul_m64", lambda: [_zeros(5 * 6), _zeros(7 * 6), _zeros(7),
                   pack_params(5, 7, 6), _zeros(5 * 7)], (1, 1, 1), {"B_F16": False}, "K=6"),
    "splitk K=12 f16": ("matmul_splitk", lambda: [_zeros(5 * 12), _zeros(7 * 6), _zeros(7),
                        pack_params(5, 7, 12), _zeros(5 * 7)], (1, 5, 1), {"B_F16": True},
                        "K=12"),
    "generic K=5 f16": ("matmul_generic", lambda: [_zeros(5 * 5), _zeros(7 * 3), _zeros(7),
                        pack_params(5, 7, 5), _zeros(5 * 7)], (1, 1, 1), {"B_F16": True},
                        "K=5"),
    "attention HEAD_DIM 8 of 16": ("attention", lambda: [_zeros(2 * 3 * 16), np.array([2], np.int32),
                                   pack_params(2, 16, 1, 0.25), _zeros(2 * 16)], (1, 1, 1),
                                   {"HEAD_DIM": 8}, "HEAD_DIM=8"),
    "attention HEAD_DIM 80": ("attention", lambda: [_zeros(2 * 3 * 80), np.array([2], np.int32),
                              pack_params(2, 80, 1, 0.1), _zeros(2 * 80)], (1, 1, 1),
                              {"HEAD_DIM": 80}, "at most 64"),
}


@pytest.mark.parametrize("case", list(PAST_THE_KERNELS))
async def test_shapes_past_a_kernel_are_refused_on_every_backend(backend, case):
    op, make, grid, constants, named = PAST_THE_KERNELS[case]
    arrays = make()
    before = backend.live_buffers()
    at = params_binding(op)  # where the kernel's WGSL declares its `var<uniform> params`
    tensors = [a if i == at else await backend.upload(a) for i, a in enumerate(arrays)]
    with pytest.raises(ValueError, match=f"dispatch {op}: .*{re.escape(named)}"):
        await backend.dispatch(op, tensors, grid, constants)
    with pytest.raises(ValueError, match=re.escape(named)):
        await backend.plan([(op, tensors, grid, constants)], label="past")
    for t in tensors:
        if not isinstance(t, np.ndarray):
            t.free()
    assert backend.live_buffers() == before


async def test_the_limits_refuse_nothing_the_model_runs():
    """MiniLM's own shapes (C=384, K=384/1536, 12 heads of 32) pass the check."""
    for op, params, constants in [("layernorm", pack_params(128, 384, 1e-12), None),
                                  ("embed", pack_params(128, 384, 1e-12), None),
                                  ("pool", pack_params(128, 384), None),
                                  ("attention", pack_params(128, 384, 12, 32 ** -0.5), {"HEAD_DIM": 32}),
                                  ("matmul_splitk", pack_params(12, 1536, 384), {"B_F16": True}),
                                  ("matmul", pack_params(4096, 384, 1536), {"B_F16": False}),
                                  ("matmul_generic", pack_params(3, 5, 7), {"B_F16": False})]:
        bindings = [None] * params_binding(op) + [params]
        assert dispatch.unsupported(op, bindings, constants) is None, op

