"""The self-test the page /selftest runs (web/selftest.js asks for one check at a time, so rows
appear as checks finish and a failure stops nothing):

    data path  numpy -> GPU -> numpy for a few dtypes and sizes on the default (zero-copy)
               paths: exactly one CPU copy each way (pybridge's copy accounting, as in
               pybridge.stats()), the bytes back exactly, into the caller's array
    kernels    every kernel of wgsl/ against its float64 reference (pybridge.checks): each
               matmul kernel (the wgsl/matmul.wgsl variants, matmul_splitk and its
               `subgroups` variant, matmul_generic) with float32 and float16 weights on shapes
               off its tiles; embed (float32 and float16 tables), layernorm, attention, pool
    model      all-MiniLM-L6-v2 (float16 and float32 weights) against sentence-transformers'
               embeddings stored in web/selftest-reference.json (tools/selftest_reference.py),
               by cosine, with the tests' thresholds

    names()                    the checks in the order they run: [{"id", "group", "what"}]
    await run(id)              {"id", "group", "what", "status", "maxError", "tolerance",
                                "ms", "timings", "detail", "error"}
    await environment()        backend, adapter, features, limits, versions

A status is "pass"; "fail" (a value out of tolerance, a copy too many: `detail` says which);
"error" (it raised: `error` is "Type: message"); or "skip" (the device lacks what the check
needs: `detail` says why). Tolerances are the tests' (tests/unit/test_native_kernels.py); the
model's thresholds (MIN_COSINE) and the list of matmul kernels (MATMUL_KERNELS) are defined
here once, and the tests import them. The CPU backend runs every check on its numpy twins; natively
tests/unit/test_selftest_reference.py runs them all on wgpu-py and on numpy.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from pybridge._env import IN_PYODIDE
from pybridge.accounting import count_copies
from pybridge.backend import Backend, default_backend
from pybridge.checks import kernels, rand, references
from pybridge.dispatch import VARIANTS, matmul_tile, variant_features

MODEL_URL = "/models/all-MiniLM-L6-v2/"
REFERENCE_URL = "/selftest-reference.json"  # web/selftest-reference.json
MIN_COSINE = {"float32": 0.9999, "float16": 0.999}  # per sentence, as the model tests ask

# every matmul kernel: wgsl/matmul.wgsl and its variants, wgsl/matmul_splitk.wgsl and its
# variants (matmul_splitk_sg: subgroups), wgsl/matmul_generic.wgsl (any K)
MATMUL_KERNELS = ["matmul", *sorted(op for op, v in VARIANTS.items() if v.base == "matmul"),
                  "matmul_splitk",
                  *sorted(op for op, v in VARIANTS.items() if v.base == "matmul_splitk"),
                  "matmul_generic"]
# the default paths' names that copy each byte once (pybridge.accounting)
ONE_COPY_PATHS = {"upload": ("view", "staging"), "readback": ("ring", "copy")}


@dataclass
class Outcome:
    """What a check found: within tolerance or not, how far off, and what it measured."""

    ok: bool
    max_error: float | None = None
    tolerance: str = ""
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    id: str
    group: str  # "data path" | "kernel" | "model"
    what: str
    fn: Callable[[Backend, dict[str, Any]], Awaitable[Outcome]]
    needs: frozenset[str] = frozenset()  # device features (a GPU's; numpy needs none)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _e(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")  # 1e-4


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> Outcome:
    """got within |got - want| <= atol + rtol * |want| everywhere (numpy's allclose)."""
    tolerance = f"rtol {_e(rtol)} atol {_e(atol)}"
    if got.shape != want.shape:
        return Outcome(False, None, tolerance, f"shape {got.shape}, expected {want.shape}")
    err = np.abs(got.astype(np.float64) - want)
    bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
    finite = bool(np.isfinite(err).all())
    max_error = float(err.max()) if finite and err.size else None
    if not bad.any():
        return Outcome(True, max_error, tolerance, f"{want.size} values")
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return Outcome(False, max_error, tolerance,
                   f"{int(bad.sum())} of {want.size} values out of tolerance, the first at "
                   f"{first}: {float(got[first]):.6g}, expected {want[first]:.6g}"
                   + ("" if finite else "; the output holds NaN or infinity"))


def kernel_check(id: str, what: str, case: Callable[[Backend], Awaitable[np.ndarray]],
                 reference: Callable[[], np.ndarray], rtol: float, atol: float,
                 needs: frozenset[str] = frozenset()) -> Check:
    async def fn(backend: Backend, where: dict[str, Any]) -> Outcome:
        t0 = time.perf_counter()
        got = await case(backend)
        t1 = time.perf_counter()
        want = reference()
        out = compare(got, want, rtol, atol)
        out.timings = {"kernel": (t1 - t0) * 1e3, "reference": _ms(t1)}
        return out

    return Check(id, "kernel", what, fn, needs)


def matmul_checks() -> list[Check]:
    """Each matmul kernel run directly (its own grid), float32 and float16 weights, on shapes
    off its tiles: rows past one tile and past two, 131 and 200 columns (64 and 128 wide
    tiles, 8 for split-K), K past a slice of 16; matmul_generic with K not a multiple of 4."""
    out = []
    for op in MATMUL_KERNELS:
        rows = matmul_tile(op)[1]
        k32, k16 = (17, 18) if op == "matmul_generic" else (40, 24)  # float16: K even (pairs)
        for M, N, K, gelu, f16 in ((rows + 3, 131, k32, False, False),
                                   (2 * rows + 5, 200, k16, True, True)):
            weights = "float16" if f16 else "float32"
            out.append(kernel_check(
                f"{op} {weights} {M}x{N}x{K}{' gelu' if gelu else ''}",
                f"wgsl/{VARIANTS[op].base if op in VARIANTS else op}.wgsl"
                f"{f' ({op})' if op in VARIANTS else ''}: act(A @ B.T + bias), {weights} B",
                lambda b, a=(M, N, K, gelu, f16, op): kernels.matmul(b, *a[:5], op=a[5]),
                lambda a=(M, N, K, gelu, f16): references.matmul(*a),
                1e-4, 1e-4, variant_features(op)))
    return out


def other_kernel_checks() -> list[Check]:
    """The tests' browser cases of the other kernels (tests/e2e/test_kernels.py), attention
    at MiniLM's head size only (another HEAD_DIM is another compile: seconds on SwiftShader)."""
    out = []
    for B, T, V, C, f16 in ((2, 7, 100, 384, False), (3, 33, 1000, 96, True)):
        table = "float16" if f16 else "float32"
        out.append(kernel_check(
            f"embed {table} {B}x{T} V={V} C={C}",
            f"wgsl/embed.wgsl: word + position + type embeddings, LayerNorm ({table} tables)",
            lambda b, a=(B, T, V, C, f16): kernels.embed(b, *a),
            lambda a=(B, T, V, C, f16): references.embed(*a), 1e-4, 1e-4))
    for R, C in ((3, 384), (17, 1000)):
        out.append(kernel_check(
            f"layernorm {R}x{C}", "wgsl/layernorm.wgsl: LayerNorm(x + residual)",
            lambda b, a=(R, C): kernels.layernorm(b, *a),
            lambda a=(R, C): references.layernorm(*a), 1e-4, 1e-4))
    for B, T, heads, D, lengths in ((2, 9, 12, 32, [9, 4]), (3, 70, 2, 32, [70, 1, 65])):
        out.append(kernel_check(
            f"attention {B}x{T} heads={heads} D={D} lengths={lengths}",
            "wgsl/attention.wgsl: softmax(Q K.T / sqrt(D)) V over each sentence's tokens",
            lambda b, a=(B, T, heads, D, lengths): kernels.attention(b, *a),
            lambda a=(B, T, heads, D, lengths): references.attention(*a), 1e-4, 1e-5))
    for B, T, C, lengths in ((3, 10, 384, [10, 1, 5]), (2, 40, 1000, [40, 17])):
        out.append(kernel_check(
            f"pool {B}x{T}x{C} lengths={lengths}",
            "wgsl/pool.wgsl: the mean of each sentence's tokens, normalized",
            lambda b, a=(B, T, C, lengths): kernels.pool(b, *a),
            lambda a=(B, T, C, lengths): references.pool(*a), 1e-5, 1e-6))
    return out


async def subgroups_probe(backend: Backend, where: dict[str, Any]) -> Outcome:
    """wgsl/subgroup_probe.wgsl: whether kernels may use subgroup shuffles here. Not a
    failure when they may not: pybridge then runs matmul_splitk instead."""
    t0 = time.perf_counter()
    usable = await backend.subgroups_usable()
    return Outcome(True, None, "", ("used: " if usable else "not used: ") + backend.subgroups_note,
                   {"probe": _ms(t0)})


# --- the data path ---------------------------------------------------------------------------
# (dtype, shape): lengths that are and are not whole 4-byte words, 2-D, and 3 MiB (past the
# browser's 2 MiB threshold: the staging ring instead of writeBuffer)
ROUNDTRIPS = [("float32", (1000,)), ("float16", (3, 333)), ("uint8", (1001,)),
              ("int32", (64, 64)), ("uint32", (7,)), ("float32", (768, 1024))]


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Deterministic values over much of the dtype's range."""
    if dtype in ("float32", "float16"):
        return rand(shape, 21, 6e4 if dtype == "float16" else 1e30).astype(dtype)
    n = int(np.prod(shape))
    words = ((np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32))
    words = words.astype(np.uint32)  # (n,)
    if dtype == "int32":
        words = words.view(np.int32)
    return words.astype(dtype).reshape(shape)  # uint8: the low byte


def roundtrip_check(dtype: str, shape: tuple[int, ...]) -> Check:
    async def fn(backend: Backend, where: dict[str, Any]) -> Outcome:
        a = sample(dtype, shape)
        out = np.empty_like(a)
        t0 = time.perf_counter()
        with count_copies() as c:
            t = await backend.upload(a)
            t1 = time.perf_counter()
            try:
                r = await t.numpy(out=out)
            finally:
                t.free()
        t2 = time.perf_counter()
        copies = c.as_dict()
        n = a.nbytes
        problems = []
        for direction in ("upload", "readback"):
            seen = {p: v for p, v in copies.get(direction, {}).items() if p != "pad"}
            if (len(seen) != 1 or next(iter(seen)) not in ONE_COPY_PATHS[direction]
                    or next(iter(seen.values())) != {"copies": 1, "bytes": n}):
                problems.append(f"{direction} made {seen or 'no counted copy'}, expected 1 copy "
                                f"of {n} bytes on {' or '.join(ONE_COPY_PATHS[direction])}")
        pad = copies.get("upload", {}).get("pad", {"bytes": 0})["bytes"]
        if pad > (4 if n % 4 else 0):  # a length off whole words: its last word written once
            problems.append(f"upload padded {pad} bytes")
        if set(copies) - {"upload", "readback"}:
            problems.append(f"other copies: {copies}")
        if r is not out or r.dtype != a.dtype or r.shape != a.shape or r.tobytes() != a.tobytes():
            problems.append("the array read back differs from the one uploaded"
                            if r is out else "the readback did not land in the given array")
        ways = ", ".join(f"{d} {p} {v['copies']} x {v['bytes']} B"
                         for d in ("upload", "readback") for p, v in copies.get(d, {}).items())
        return Outcome(not problems, None, "exact, 1 copy each way", "; ".join(problems) or ways,
                       {"upload": (t1 - t0) * 1e3, "readback": (t2 - t1) * 1e3})

    return Check(f"roundtrip {dtype}{shape}", "data path",
                 f"numpy {dtype}{shape} -> GPU -> numpy out=, default paths", fn)


# --- the model -------------------------------------------------------------------------------
def parse_reference(text: str) -> tuple[list[str], np.ndarray]:
    """web/selftest-reference.json: the sentences and their embeddings (n, 384) float32."""
    doc = json.loads(text)
    vectors = np.frombuffer(base64.b64decode(doc["embeddings"]), "<f4").reshape(doc["shape"])
    if len(doc["sentences"]) != vectors.shape[0]:
        raise ValueError(f"{len(doc['sentences'])} sentences but {vectors.shape[0]} embeddings")
    return doc["sentences"], vectors


async def read_reference(where: str | Path) -> tuple[list[str], np.ndarray]:
    """The stored embeddings: fetched in the browser (a URL of this origin), read natively."""
    if not IN_PYODIDE:
        return parse_reference(Path(where).read_text(encoding="utf-8"))
    import js

    resp = await js.fetch(str(where))
    if not resp.ok:
        raise FileNotFoundError(f"{where}: HTTP {resp.status}")
    return parse_reference(await resp.text())


def model_check(dtype: str) -> Check:
    async def fn(backend: Backend, where: dict[str, Any]) -> Outcome:
        from pybridge.minilm import MiniLM

        sentences, want = await read_reference(where["reference"])
        t0 = time.perf_counter()
        model = await MiniLM.load(where["model"], dtype=dtype, backend=backend)
        t1 = time.perf_counter()
        try:
            got = await model.embed(sentences, batch_size=len(sentences))  # (n, 384)
        finally:
            model.free()
        t2 = time.perf_counter()
        g, w = got.astype(np.float64), want.astype(np.float64)
        cos = (g * w).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1))  # (n,)
        cos = np.where(np.isfinite(cos), cos, -1.0)
        worst = int(np.argmin(cos))
        ok = bool(cos.min() >= MIN_COSINE[dtype])
        return Outcome(ok, float(1 - cos.min()), f"cosine >= {MIN_COSINE[dtype]}",
                       f"{len(sentences)} sentences, lowest cosine {cos.min():.7f} "
                       f"({sentences[worst]!r})",
                       {"load": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3})

    return Check(f"all-MiniLM-L6-v2 {dtype}", "model",
                 f"load ({dtype} weights streamed to the device), embed the stored sentences, "
                 "compare with sentence-transformers", fn)


CHECKS: dict[str, Check] = {c.id: c for c in [
    *(roundtrip_check(d, s) for d, s in ROUNDTRIPS),
    Check("subgroups probe", "kernel", "wgsl/subgroup_probe.wgsl: may kernels use subgroup "
          "shuffles here (matmul_splitk_sg)?", subgroups_probe, frozenset({"subgroups"})),
    *matmul_checks(),
    *other_kernel_checks(),
    model_check("float16"),
    model_check("float32"),
]}


def names() -> list[dict[str, str]]:
    """The checks, in the order the page runs them."""
    return [{"id": c.id, "group": c.group, "what": c.what} for c in CHECKS.values()]


async def unsupported(check: Check, backend: Backend) -> str | None:
    """Why `check` cannot run on `backend`, or None. The CPU backend runs every kernel (numpy
    twins need no feature) but has no subgroup probe (it runs no WGSL)."""
    if backend.name == "cpu":
        return ("the CPU backend runs no WGSL: numpy twins of the kernels need no subgroups"
                if check.fn is subgroups_probe else None)
    missing = check.needs - backend.features
    if missing:
        return f"needs {', '.join(sorted(missing))}, which this device lacks"
    if "subgroups" in check.needs and check.fn is not subgroups_probe \
            and not await backend.subgroups_usable():
        return f"pybridge does not use subgroups here ({backend.subgroups_note})"
    return None


async def run(check_id: str, *, backend: Backend | None = None, model: str | Path = MODEL_URL,
              reference: str | Path = REFERENCE_URL) -> dict[str, Any]:
    """Run one check; never raises for what the check finds (its error goes in the result)."""
    if check_id not in CHECKS:
        raise ValueError(f"no self-test check named {check_id!r}")
    check = CHECKS[check_id]
    result: dict[str, Any] = {"id": check.id, "group": check.group, "what": check.what,
                              "status": "error", "maxError": None, "tolerance": "", "ms": 0.0,
                              "timings": {}, "detail": "", "error": None}
    t0 = time.perf_counter()
    try:
        backend = backend or await default_backend()
        why = await unsupported(check, backend)
        if why:
            result.update(status="skip", detail=why)
        else:
            out = await check.fn(backend, {"model": model, "reference": reference})
            result.update(status="pass" if out.ok else "fail", maxError=out.max_error,
                          tolerance=out.tolerance, detail=out.detail,
                          timings={k: round(v, 3) for k, v in out.timings.items()})
    except Exception as e:  # noqa: BLE001  (reported in the row; the next check runs)
        result["error"] = f"{type(e).__name__}: {e}"
    result["ms"] = round(_ms(t0), 3)
    return result


async def environment(backend: Backend | None = None) -> dict[str, Any]:
    """What the report says about where it ran: the backend's description (adapter, features,
    limits), and the versions of Python, numpy, pybridge (and Pyodide in the browser)."""
    import platform

    import pybridge

    backend = backend or await default_backend()
    described = backend.describe()
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "pybridge": pybridge.__version__}
    if IN_PYODIDE:
        import pyodide

        versions["pyodide"] = pyodide.__version__
    return {"backend": backend.name, "device": "cpu" if backend.name == "cpu" else "gpu",
            "softwareDevice": backend.is_cpu, "adapter": described.get("adapter", {}),
            "features": sorted(backend.features), "limits": dict(backend.limits),
            "described": described, "versions": versions}
