"""Step 3, dispatch: which kernel, and how many workgroups. Shared by both backends.

Shader text comes from one place: the `wgsl/` folder (one kernel per file), shipped inside
the wheel as the `pybridge.wgsl` package data. Python never builds shader text. Each backend
compiles a kernel once per device (`pipeline(op)`) and binds GpuTensors in order.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

WORKGROUP = 256
MAX_WORKGROUPS_PER_DIM = 65535
FEW_WORKGROUPS = 64  # matmul_plan: below this many 128 x 128 tiles, use 32 x 128 ones


_PACKAGE = Path(__file__).resolve().parent
KERNEL_DIRS = (_PACKAGE / "wgsl", _PACKAGE.parent / "wgsl")  # in the wheel; in a checkout


@lru_cache(maxsize=None)
def shader_source(op: str) -> str:
    """The text of wgsl/<op>.wgsl: package data (pybridge/wgsl/) when installed from the
    wheel, the top-level wgsl/ folder in a source checkout."""
    for folder in KERNEL_DIRS:
        path = folder / f"{op}.wgsl"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError(f"no kernel named {op!r}: {op}.wgsl is in none of "
                            f"{', '.join(map(str, KERNEL_DIRS))}")


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


def matmul_plan(M: int, N: int, K: int, f16_weights: bool = False, shader_f16: bool = False,
                cpu_device: bool = False) -> tuple[str, tuple[int, int, int], dict[str, bool]]:
    """Which matmul kernel computes C (M, N) = A (M, K) @ B (N, K).T, its grid and override
    constants. With K % 4 == 0 (K % 8 for float16 weights): the 32 x 128 tile kernel for up to
    32 rows or, on a GPU (not `cpu_device`), when 128 x 128 tiles would make fewer than
    FEW_WORKGROUPS workgroups (measured on an H100: 1024 x 384 outputs ran 1.4x faster that way;
    on SwiftShader the same choice ran 2x slower), else the 128 x 128 one, reading
    float16 natively where the device has `shader-f16`; other K: the generic kernel (64 x 64)."""
    big_tiles = -(-M // 128) * -(-N // 128)
    # 128 x 128 tiles would leave a GPU's cores idle; a CPU implementation (SwiftShader,
    # lavapipe) runs a couple of workgroups at a time and prefers the bigger tiles
    few = M <= 32 or (not cpu_device and big_tiles < FEW_WORKGROUPS)
    if f16_weights and shader_f16 and K % 4 == 0 and not few:
        return "matmul_f16", (-(-N // 128), -(-M // 128), 1), {}
    if K % (8 if f16_weights else 4) == 0:
        if few:
            return "matmul_rows", (-(-N // 128), -(-M // 32), 1), {"B_F16": f16_weights}
        return "matmul", (-(-N // 128), -(-M // 128), 1), {"B_F16": f16_weights}
    if f16_weights and K % 2:
        raise ValueError(f"float16 weights are stored in pairs: K must be even, got K={K}")
    return "matmul_generic", (-(-N // 64), -(-M // 64), 1), {"B_F16": f16_weights}
