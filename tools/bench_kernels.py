"""Native kernel benchmark: GFLOP/s of wgsl/matmul.wgsl at the model's shapes and at 4096^3,
with the vendor BLAS (torch.matmul, float32, TF32 off) timed in the same run as the yardstick.

    python3 tools/bench_kernels.py [--ops matmul] [--extra-kernels DIR] [--quick]

Runs through wgpu-py (the native backend) on whatever adapter wgpu picks: lavapipe here, the
NVIDIA GPU on the accelerator machine (see ../shared/device-gpu.md). Each point: warm-up,
then R dispatches recorded into one submission, timed to completion. Prints a compact table
and writes bench-results/kernels.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pybridge import dispatch  # noqa: E402
from pybridge.dispatch import pack_params  # noqa: E402
from pybridge.native import NativeBackend  # noqa: E402

# (label, M, N, K): MiniLM's Linear layers at batch x tokens = 1x12, 8x128, 32x128
MODEL_SHAPES = [(f"{name} B{b}xT{t}", b * t, n, k)
                for b, t in ((1, 12), (8, 128), (32, 128))
                for name, n, k in (("qkv", 1152, 384), ("out", 384, 384), ("ffn1", 1536, 384),
                                   ("ffn2", 384, 1536))]
BIG = [("square 4096", 4096, 4096, 4096)]
# output tile of each kernel, (columns, rows): grid = (ceil(N / columns), ceil(M / rows))
TILES = {"matmul": (128, 128), "matmul_rows": (128, 32), "matmul_generic": (64, 64),
         "matmul_f16": (128, 128)}


async def time_op(backend, op, M, N, K, budget_s: float) -> tuple[float, float]:
    """(seconds per dispatch, max abs error vs numpy on a sample) for C = A @ B.T + bias."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((N, K), dtype=np.float32)
    bias = rng.standard_normal(N, dtype=np.float32)
    ta, tb, tbias = [await backend.upload(x) for x in (a, b.view(np.uint32), bias)]
    tc = await backend.allocate((M, N), np.float32)
    tn, tm = TILES.get(op, (128, 128))
    grid = (-(-N // tn), -(-M // tm), 1)
    p = pack_params(M, N, K)
    binds = [ta, tb, tbias, p, tc]
    await backend.dispatch(op, binds, grid, {"GELU": False, "B_F16": False})
    await backend.sync()
    t0 = time.perf_counter()
    await backend.dispatch(op, binds, grid, {"GELU": False, "B_F16": False})
    await backend.sync()
    one = time.perf_counter() - t0
    reps = max(3, min(200, int(budget_s / max(one, 1e-6))))
    t0 = time.perf_counter()
    async with backend.batch():
        for _ in range(reps):
            await backend.dispatch(op, binds, grid, {"GELU": False, "B_F16": False})
    await backend.sync()
    per = (time.perf_counter() - t0) / reps
    c = await tc.numpy()
    rows = np.unique(np.r_[0:min(M, 32), max(0, M - 32):M, M // 2])  # first, last, middle rows
    ref = a[rows].astype(np.float64) @ b.astype(np.float64).T + bias
    err = float(np.max(np.abs(c[rows] - ref)) / max(1.0, np.max(np.abs(ref))))
    for x in (ta, tb, tbias, tc):
        x.free()
    return per, err


def torch_time(M, N, K, budget_s: float):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a = torch.randn(M, K, device="cuda")
    b = torch.randn(N, K, device="cuda")
    bias = torch.randn(N, device="cuda")
    f = lambda: torch.addmm(bias, a, b.T)  # noqa: E731  (the same Linear layer)
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    f()
    torch.cuda.synchronize()
    one = time.perf_counter() - t0
    reps = max(5, min(500, int(budget_s / max(one, 1e-6))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        f()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


async def main_async(args) -> int:
    if args.extra_kernels:
        dispatch.KERNEL_DIRS = (Path(args.extra_kernels).resolve(), *dispatch.KERNEL_DIRS)
        dispatch.shader_source.cache_clear()
    backend = await NativeBackend.create()
    info = backend.describe()["adapter"]
    device = f"{info.get('device') or info.get('description')} ({info.get('backend_type')})"
    shapes = MODEL_SHAPES[:4] if args.quick else MODEL_SHAPES + BIG
    ops = args.ops.split(",")
    rows = []
    print(f"matmul C = A @ B.T + bias, float32, GFLOP/s on {device}")
    print(f"  {'shape':<18}{'M':>6}{'N':>6}{'K':>6}" + "".join(f"{op:>12}" for op in ops)
          + f"{'torch':>10}{'best/torch':>12}")
    for label, M, N, K in shapes:
        flops = 2.0 * M * N * K
        row = {"shape": label, "M": M, "N": N, "K": K}
        for op in ops:
            per, err = await time_op(backend, op, M, N, K, args.budget)
            row[op] = flops / per / 1e9
            row[f"{op}_rel_err"] = err
            if err > 1e-3:
                print(f"  WARNING {op} {label}: relative error {err:.2e}")
        tt = torch_time(M, N, K, args.budget)
        row["torch"] = flops / tt / 1e9 if tt else None
        best = max(row[op] for op in ops)
        ratio = f"{best / row['torch']:.2f}" if row["torch"] else "-"
        torch_s = f"{row['torch']:10.0f}" if row["torch"] else f"{'-':>10}"
        print(f"  {label:<18}{M:>6}{N:>6}{K:>6}" + "".join(f"{row[op]:12.1f}" for op in ops)
              + f"{torch_s}{ratio:>12}")
        rows.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                               "adapter": info, "rows": rows}, indent=1))
    print(f"  wrote {out}")
    backend.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", default="matmul")
    ap.add_argument("--extra-kernels", default=None, help="a folder of candidate .wgsl kernels")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timed work per point")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "kernels.json"))
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
