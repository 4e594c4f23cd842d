"""Step 3, dispatch: which kernel, and how many workgroups. Shared by both backends.

Shader text comes from one place: the `wgsl/` folder (one kernel per file), shipped inside
the wheel as the `pybridge.wgsl` package data. Each backend compiles a kernel once per device
(`pipeline(op)`) and binds GpuTensors in order.

Variants: a few ops are one .wgsl file with other tile sizes (VARIANTS). A variant names its
base file and values for some of the base's `const` lines marked `// VARIANT`;
`shader_source(op)` replaces exactly those values (each line must appear once) and puts a
comment line naming the variant first. A variant may also enable a WGSL extension (e.g.
`subgroups`): its text then starts with `enable subgroups;`, and the base's lines written
`//subgroups: CODE` become CODE (they are comments in the base, so the base compiles on any
device). Nothing else is written: the knobs, and what they do, are in the base file's header.
Pipeline `override` constants stay for what sizes no workgroup array (Safari fails silently
on override-sized ones): GELU, B_F16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np

WORKGROUP = 256
MAX_WORKGROUPS_PER_DIM = 65535


_PACKAGE = Path(__file__).resolve().parent
KERNEL_DIRS = (_PACKAGE / "wgsl", _PACKAGE.parent / "wgsl")  # in the wheel; in a checkout


@dataclass(frozen=True)
class Variant:
    """A kernel that is wgsl/<base>.wgsl with some of its `const ...; // VARIANT` lines set
    otherwise: consts maps a name to a u32 (int) or bool value."""

    base: str
    consts: Mapping[str, int | bool] = field(default_factory=dict)
    enable: tuple[str, ...] = ()  # WGSL extensions: `enable X;` and the base's `//X: ` lines


# op name -> variant; wgsl/matmul.wgsl's header tables them and when matmul_plan picks each
VARIANTS: dict[str, Variant] = {
    "matmul_cpu": Variant("matmul", {"DIRECT": True}),
    "matmul_m64": Variant("matmul", {"TILE_M": 64, "RM": 4, "TILE_K": 16, "PREFETCH": True}),
    "matmul_rows": Variant("matmul", {"TILE_M": 32, "RM": 4, "TILE_K": 16, "PREFETCH": True}),
    "matmul_splitk_sg": Variant("matmul_splitk", enable=("subgroups",)),
}
# the device feature each WGSL extension needs
EXTENSION_FEATURES = {"subgroups": "subgroups"}


def _kernel_file(op: str) -> str:
    for folder in KERNEL_DIRS:
        path = folder / f"{op}.wgsl"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"no kernel named {op!r}: {op}.wgsl is in none of "
                            f"{', '.join(map(str, KERNEL_DIRS))}")


def variant_source(op: str, v: Variant) -> str:
    """The text of variant `op`: its base with the named `const` values replaced and, for each
    extension it enables, `enable X;` first and the base's `//X: CODE` lines made CODE."""
    text = _kernel_file(v.base)
    for name, value in v.consts.items():
        if isinstance(value, bool):
            literal = "true" if value else "false"
        elif isinstance(value, int) and value >= 0:
            literal = f"{value}u"
        else:
            raise TypeError(f"variant {op}: const {name} must be a bool or a u32, got {value!r}")
        found = list(re.finditer(rf"^const {name}: \w+ = ([^;]+);.*// VARIANT", text, flags=re.M))
        if len(found) != 1:
            raise ValueError(f"variant {op}: const {name} of {v.base}.wgsl: expected one such "
                             f"line marked // VARIANT, found {len(found)}")
        text = text[:found[0].start(1)] + literal + text[found[0].end(1):]
    if len(set(v.enable)) != len(v.enable):
        raise ValueError(f"variant {op}: an extension is listed twice in {v.enable}")
    for ext in v.enable:
        if ext not in EXTENSION_FEATURES:
            raise ValueError(f"variant {op}: unknown WGSL extension {ext!r} "
                             f"(known: {', '.join(EXTENSION_FEATURES)})")
        # the marker may be indented: `  //subgroups: CODE` -> `  CODE`
        text, n = re.subn(rf"^([ \t]*)//{ext}: ?", r"\1", text, flags=re.M)
        if n == 0:
            raise ValueError(f"variant {op}: {v.base}.wgsl has no line written //{ext}: CODE")
        text = f"enable {ext};\n{text}"
    return f"// variant {op} of wgsl/{v.base}.wgsl\n{text}"


def variant_features(op: str) -> frozenset[str]:
    """The device features kernel `op` needs beyond core WebGPU (e.g. {"subgroups"})."""
    v = VARIANTS.get(op)
    return frozenset(EXTENSION_FEATURES[e] for e in v.enable) if v else frozenset()


@lru_cache(maxsize=None)
def shader_source(op: str) -> str:
    """The text of kernel `op`: wgsl/<op>.wgsl, or a VARIANTS entry resolved from its base.
    Files come from package data (pybridge/wgsl/) when installed from the wheel, from the
    top-level wgsl/ folder in a source checkout."""
    if op in VARIANTS:
        return variant_source(op, VARIANTS[op])
    return _kernel_file(op)


def grid_1d(n: int, workgroup: int = WORKGROUP) -> tuple[int, int, int]:
    """Workgroup counts covering n items, folding into y past the 65535-per-dimension limit."""
    groups = max(1, -(-n // workgroup))
    x = min(groups, MAX_WORKGROUPS_PER_DIM)
    return (x, -(-groups // x), 1)


def pack_params(*values: int | float) -> "np.ndarray":
    """A kernel's Params struct: ints as u32, floats as f32 bits, padded to 16 bytes (uniform
    layout). E.g. pack_params(M, N, K) or pack_params(T, C, 1e-12)."""
    import numpy as np

    words = np.zeros(-(-max(len(values), 1) // 4) * 4, dtype=np.uint32)  # (4k,)
    for i, v in enumerate(values):
        if isinstance(v, float):
            words[i] = np.float32(v).view(np.uint32)
        else:
            words[i] = int(v)
    return words


MAX_ROW = 1024  # the row kernels' most columns: 128 invocations x 8 columns a row
_ROW_KERNELS = ("embed", "layernorm", "pool")  # Params (rows or T, C, ...)


@lru_cache(maxsize=None)
def params_binding(op: str) -> int | None:
    """The binding of kernel `op`'s `var<uniform> params`, as its WGSL declares it (None for
    a name no kernel file has: the backend then says so when it compiles the pipeline)."""
    try:
        text = shader_source(op)
    except FileNotFoundError:
        return None
    found = re.search(r"@binding\((\d+)\)\s*var<uniform>\s+params\b", text)
    return int(found[1]) if found else None


def unsupported(op: str, bindings: Sequence[Any], constants: dict[str, float] | None) -> str | None:
    """Why kernel `op` cannot compute the shape its Params binding states, or None: the limits
    its wgsl/ header states. Past them a GPU writes wrong numbers or leaves columns at zero
    while pybridge.cpu's numpy twin would answer right, so every backend refuses them (found
    in review). Params are read as the u32 words of the array's bytes, whatever its dtype;
    Params passed as a tensor, or too short to hold the field (the backend refuses a binding
    smaller than the struct), are not read here."""
    if not (op.startswith("matmul") or op in _ROW_KERNELS or op == "attention"):
        return None
    import numpy as np

    at = params_binding(op)
    if at is None or at >= len(bindings) or not isinstance(bindings[at], np.ndarray):
        return None
    arr = bindings[at]
    if arr.dtype == np.uint32 and arr.flags.c_contiguous:  # pack_params': read as it is
        words = arr.reshape(-1)
    elif arr.dtype.hasobject:
        return None
    else:
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        words = raw[: len(raw) // 4 * 4].view(np.uint32)
    if len(words) < (2 if op in _ROW_KERNELS else 3):
        return None
    c = constants or {}
    if op in _ROW_KERNELS:
        C = int(words[1])
        return None if C <= MAX_ROW else f"C={C} columns; {op}.wgsl computes at most {MAX_ROW}"
    if op == "attention":
        H, heads, D = int(words[1]), int(words[2]), int(c.get("HEAD_DIM", 32))
        if heads == 0 or H != heads * D or D % 2 or D > 64:
            return (f"H={H} over {heads} heads with HEAD_DIM={D}; attention.wgsl needs "
                    "HEAD_DIM = H / heads, even, at most 64 (the HEAD_DIM override constant)")
        return None
    K, f16 = int(words[2]), bool(c.get("B_F16"))
    if op == "matmul_generic":
        odd = f16 and K % 2
        return f"K={K} with float16 weights (stored in pairs): K must be even" if odd else None
    step = 8 if f16 else 4
    if K % step:
        return (f"K={K}; {op} reads K in vec4s and needs K % {step} == 0"
                f"{' (float16 weights)' if f16 else ''}: matmul_generic takes any K "
                "(pybridge.dispatch.matmul_plan picks)")
    return None


# matmul_plan on a GPU: 128-row tiles where they make at least this many workgroups (4096^3:
# 1024), else 64-row ones. Measured with tools/bench_kernels.py on an H200: MiniLM's M=4096
# layers (96 to 384 tiles of 128 rows) ran 1.1-1.25x faster as 64-row tiles through wgpu-py,
# 1.3-1.8x through Dawn; at 4096^3 the 64-row tiles ran 1.2x faster through Dawn but 2.6x
# slower through wgpu-py (Naga), so 128-row tiles there
BIG_TILE_WORKGROUPS = 512
# matmul_plan on a GPU: up to this many rows, wgsl/matmul_splitk.wgsl (K split across the
# invocations of a workgroup) rather than a tile whose workgroup walks all of K alone. bench
# gpu on an H200 through Dawn (MiniLM float32, GPU ms per forward pass, tiles -> split-K):
# 12 rows 2.2 -> 0.4, 96 rows 1.86 -> 0.71, 128 rows 2.09 -> 1.02, 384 rows 1.91 -> 1.25;
# but 1024 rows 2.33 -> 3.03 and 4096 rows 4.54 -> 10.9
SPLITK_MAX_ROWS = 512


@lru_cache(maxsize=None)
def matmul_tile(op: str) -> tuple[int, int]:
    """(columns, rows) of C that one workgroup of matmul kernel `op` computes: TILE_N and
    TILE_M as its text declares them (64 x 64 for matmul_generic)."""
    if op == "matmul_generic":
        return 64, 64
    text = shader_source(op)
    found = [re.search(rf"^const {name}(?:: u32)? = (\d+)u;", text, flags=re.M)
             for name in ("TILE_N", "TILE_M")]
    if not all(found):
        raise ValueError(f"{op} declares no TILE_N and TILE_M: not a wgsl/matmul.wgsl variant")
    return int(found[0][1]), int(found[1][1])


def matmul_plan(M: int, N: int, K: int, f16_weights: bool = False, shader_f16: bool = False,
                cpu_device: bool = False, subgroups: bool = False,
                ) -> tuple[str, tuple[int, int, int], dict[str, bool]]:
    """Which matmul kernel computes C (M, N) = A (M, K) @ B (N, K).T, its grid and override
    constants. With K % 4 == 0 (K % 8 for float16 weights): on a GPU, matmul_splitk
    (wgsl/matmul_splitk.wgsl, K split across a workgroup; matmul_splitk_sg, its sums by
    subgroup shuffles, where the device has `subgroups`) for up to SPLITK_MAX_ROWS rows;
    else a variant of wgsl/matmul.wgsl:
    matmul_rows (32-row tiles) for up to 32 rows; else on a CPU device (SwiftShader,
    lavapipe: a couple of workgroups run at a time, bigger tiles are faster) matmul_cpu (128
    rows, loads staged straight into workgroup memory); on a GPU matmul where its tiles make
    BIG_TILE_WORKGROUPS workgroups, else matmul_m64. Other K: matmul_generic (64 x 64 tiles).
    Float16 weights are unpacked with
    unpack2x16float on every device: `shader_f16` is accepted and not needed (native f16
    reads measured within 4% through Dawn, slower through wgpu-py)."""
    if K % (8 if f16_weights else 4) == 0:
        big_tiles = -(-N // matmul_tile("matmul")[0]) * -(-M // matmul_tile("matmul")[1])
        if M <= SPLITK_MAX_ROWS and not cpu_device:
            op = "matmul_splitk_sg" if subgroups else "matmul_splitk"
        elif M <= 32:
            op = "matmul_rows"
        elif cpu_device:
            op = "matmul_cpu"
        elif big_tiles >= BIG_TILE_WORKGROUPS:
            op = "matmul"
        else:
            op = "matmul_m64"
        cols, rows = matmul_tile(op)
        return op, (-(-N // cols), -(-M // rows), 1), {"B_F16": f16_weights}
    if f16_weights and K % 2:
        raise ValueError(f"float16 weights are stored in pairs: K must be even, got K={K}")
    return "matmul_generic", (-(-N // 64), -(-M // 64), 1), {"B_F16": f16_weights}
