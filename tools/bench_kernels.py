"""Matmul kernel benchmark: GFLOP/s of the wgsl/matmul.wgsl variants at the model's shapes and
at 4096^3, through wgpu-py (the native backend: Naga) and Dawn (Chrome's WebGPU engine, under
Node), with the vendor BLAS (torch.addmm, float32, TF32 off) timed in the same run as the
yardstick.

    python3 tools/bench_kernels.py [--ops plan,matmul,...] [--dtypes f32,f16] [--quick]
        [--node NODE --webgpu DIR [--dawn-config NAME=FLAG;FLAG ...] [--dawn-dump OPS]]
        [--variant NAME=BASE:CONST=VALUE,...] [--extra-kernels DIR --tile OP=COLS,ROWS]

wgpu-py runs on whatever adapter wgpu picks (lavapipe here, the NVIDIA GPU on the accelerator
machine: the README's "Real GPUs" section has the recipe for Vulkan there). With --node (a
node binary) and --webgpu (the unpacked npm package `webgpu`), tools/bench_kernels_dawn.mjs
runs the same points through dawn.node, once per --dawn-config (a set of Dawn toggles given
to create(); default: none). dawn.node 0.6.2 crashed now and then on the H200 between points; a new
process then takes over from the point it died on. Kernel texts come from
pybridge.dispatch.shader_source, the same resolution of variants the backends use; --variant
adds bench-only variants (e.g. matmul_k16p=matmul:TILE_K=16,PREFETCH=true), --extra-kernels
a folder of candidate .wgsl files. "plan" in --ops is matmul_plan's pick on a GPU with
`subgroups` (what MiniLM runs on the H200 through Dawn; "plan_nosg" without them).
Each point: warm-up, then R dispatches recorded into one compute pass and one submission,
timed from submit to done; a sample of C (rows 0, M/2, M-1) is checked against float64 ("!"
marks a mismatch). Prints one line per (shape, kernel, weight dtype) and writes
bench-results/kernels.json (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pybridge import dispatch  # noqa: E402
from pybridge.dispatch import Variant, matmul_plan, pack_params  # noqa: E402

# (label, M, N, K): MiniLM's Linear layers at batch x tokens = 1x12, 1x128, 8x128, 32x128
MODEL_SHAPES = [(f"{name} {b}x{t}", b * t, n, k)
                for b, t in ((1, 12), (1, 128), (8, 128), (32, 128))
                for name, n, k in (("qkv", 1152, 384), ("out", 384, 384), ("ffn1", 1536, 384),
                                   ("ffn2", 384, 1536))]
BIG = [("square 4096", 4096, 4096, 4096)]
EXTRA_TILES: dict[str, tuple[int, int]] = {}  # --tile, for --extra-kernels files


def tile(op: str) -> tuple[int, int]:
    return EXTRA_TILES[op] if op in EXTRA_TILES else dispatch.matmul_tile(op)


def point(op: str, M: int, N: int, K: int, f16: bool) -> dict:
    """One measurement: the kernel, its grid and the override constants its text declares."""
    if op in ("plan", "plan_nosg"):
        op, grid, constants = matmul_plan(M, N, K, f16, subgroups=op == "plan")
    else:
        tn, tm = tile(op)
        grid, constants = (-(-N // tn), -(-M // tm), 1), {"B_F16": f16}
    declared = set(re.findall(r"^override (\w+)", dispatch.shader_source(op), flags=re.M))
    constants = {k: v for k, v in {"GELU": False, **constants}.items() if k in declared}
    return {"op": op, "M": M, "N": N, "K": K, "f16": f16, "grid": list(grid),
            "constants": {k: float(v) for k, v in constants.items()}}


def inputs(M: int, N: int, K: int, f16: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (M, K), B (N, K) and bias (N,): values k/1024, exact in float16."""
    rng = np.random.default_rng(0)
    a, b, bias = (rng.integers(-1024, 1024, size=s).astype(np.float32) / 1024
                  for s in ((M, K), (N, K), (N,)))
    return a, b, bias


async def time_native(backend, pt: dict, budget_s: float) -> dict:
    """Seconds per dispatch and relative error on a sample for one point through wgpu-py. The
    kernel comes from backend.pipeline (shader_source, as the backend compiles it); buffers and
    the command encoding are plain wgpu-py, so only submit -> done is timed, as on Dawn."""
    import wgpu

    M, N, K, f16 = pt["M"], pt["N"], pt["K"], pt["f16"]
    a, b, bias = inputs(M, N, K, f16)
    words = (b.astype(np.float16) if f16 else b).reshape(-1).view(np.uint32)
    dev, usage = backend.device, wgpu.BufferUsage
    bufs = []

    def buffer(data: np.ndarray | None, size: int, use: int):
        buf = dev.create_buffer(size=-(-size // 16) * 16, usage=use | usage.COPY_DST)
        if data is not None:
            dev.queue.write_buffer(buf, 0, data)
        bufs.append(buf)
        return buf

    try:
        pipe = backend.pipeline(pt["op"], pt["constants"])
        binds = [buffer(a, a.nbytes, usage.STORAGE), buffer(words, words.nbytes, usage.STORAGE),
                 buffer(bias, bias.nbytes, usage.STORAGE),
                 buffer(pack_params(M, N, K), 16, usage.UNIFORM),
                 buffer(None, M * N * 4, usage.STORAGE | usage.COPY_SRC)]
        group = dev.create_bind_group(layout=pipe.get_bind_group_layout(0), entries=[
            {"binding": i, "resource": {"buffer": x, "offset": 0, "size": x.size}}
            for i, x in enumerate(binds)])

        async def run(reps: int) -> float:
            enc = dev.create_command_encoder()
            cp = enc.begin_compute_pass()
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, group)
            for _ in range(reps):
                cp.dispatch_workgroups(*pt["grid"])
            cp.end()
            commands = enc.finish()
            t0 = time.perf_counter()
            dev.queue.submit([commands])
            await backend.sync()
            return time.perf_counter() - t0

        await run(1)
        one = await run(1)
        reps = max(3, min(200, int(budget_s / max(one, 1e-6))))
        per = await run(reps) / reps
        c = np.frombuffer(dev.queue.read_buffer(binds[4]), np.float32)[: M * N].reshape(M, N)
    except Exception as e:  # a candidate kernel may fail to compile: report, go on
        return {"error": f"{type(e).__name__}: {e}"[:2000]}
    finally:
        for x in bufs:
            x.destroy()
    rows = np.unique([0, M // 2, M - 1])
    ref = a[rows].astype(np.float64) @ b.astype(np.float64).T + bias
    err = float(np.max(np.abs(c[rows] - ref)) / max(1.0, np.max(np.abs(ref))))
    return {"seconds": per, "gflops": 2.0 * M * N * K / per / 1e9,
            "rel_err": err if np.isfinite(err) else None}


def torch_time(M: int, N: int, K: int, budget_s: float) -> float | None:
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


def run_dawn_once(args, points: list[dict], flags: list[str], compile_only: bool,
                  log: Path | None) -> tuple[dict, str]:
    """One dawn.node process over `points`: (its result, so far as it got; how it ended)."""
    ops = sorted({p["op"] for p in points})
    job = {"webgpu": str(Path(args.webgpu).resolve()), "flags": flags, "budget_s": args.budget,
           "kernels": {op: dispatch.shader_source(op) for op in ops}, "points": points,
           "compile_only": compile_only}
    with tempfile.TemporaryDirectory() as tmp:
        job_path, result_path = Path(tmp, "job.json"), Path(tmp, "result.json")
        job_path.write_text(json.dumps(job))
        cmd = [args.node, str(ROOT / "tools" / "bench_kernels_dawn.mjs"), str(job_path),
               str(result_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.dawn_timeout)
            status, out, err = f"exit {proc.returncode}", proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            status = f"killed after {args.dawn_timeout:.0f} s"
            out, err = (x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                        for x in (e.stdout, e.stderr))
        if log is not None:
            log.write_text(out + "\n--- stderr ---\n" + err)
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return result, f"{status}: {err.strip()[-300:]}" if err.strip() else status


def run_dawn(args, points: list[dict], flags: list[str], compile_only: bool = False,
             log: Path | None = None) -> dict:
    """All points through dawn.node with the given create() flags. dawn.node 0.6.2 crashed now
    and then on the H200 between points (a mutex assertion, a segfault): the process writes its
    result after every point, and a new process takes over from the point it died on (twice at
    most for one point, which then counts as failed)."""
    done: list[dict | None] = []
    result: dict = {"crashes": []}
    tries = 0
    while len(done) < len(points):
        got, status = run_dawn_once(args, points[len(done):], flags, compile_only, log)
        for k in ("adapter", "features"):
            result.setdefault(k, got.get(k))
        new = got.get("points", [])
        done += new
        if len(done) == len(points):
            break
        result["crashes"].append(f"at point {len(done)}: {status}")
        tries = 0 if new else tries + 1
        if tries >= 2 or "adapter" not in got:
            done.append({"error": status})
            tries = 0
            if "adapter" not in got:  # no device at all: give up on the rest
                done += [{"error": status}] * (len(points) - len(done))
    result["points"] = done
    result["status"] = f"{len(result['crashes'])} crash(es)" if result["crashes"] else "ok"
    return result


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def add_variant(spec: str) -> None:
    """NAME=BASE:CONST=VALUE,... -> dispatch.VARIANTS[NAME] (for this run only)."""
    name, rest = spec.split("=", 1)
    base, _, assigns = rest.partition(":")
    consts: dict[str, int | bool] = {}
    for item in filter(None, assigns.split(",")):
        k, v = item.split("=")
        consts[k] = v == "true" if v in ("true", "false") else int(v)
    dispatch.VARIANTS[name] = Variant(base, consts)


def fmt(x: dict | None) -> str:
    if x is None:
        return f"{'-':>9}"
    if "error" in x:
        return f"{'ERR':>9}"
    err = x.get("rel_err")  # None: NaN in the output
    flag = "!" if err is None or err > 1e-3 else " "  # the sample did not match numpy
    return f"{x['gflops']:8.{0 if x['gflops'] >= 100 else 1}f}{flag}"


async def main_async(args) -> int:
    for spec in args.variant:
        add_variant(spec)
    for spec in args.tile:
        op, cr = spec.split("=")
        EXTRA_TILES[op] = tuple(int(v) for v in cr.split(","))  # type: ignore[assignment]
    if args.extra_kernels:
        dispatch.KERNEL_DIRS = (Path(args.extra_kernels).resolve(), *dispatch.KERNEL_DIRS)
    dispatch.shader_source.cache_clear()
    dispatch.matmul_tile.cache_clear()
    shapes = MODEL_SHAPES[:4] if args.quick else MODEL_SHAPES + BIG
    if args.shapes:
        shapes = [s for s in shapes if re.search(args.shapes, s[0])]
    ops = args.ops.split(",")
    dtypes = args.dtypes.split(",")
    points, labels = [], []
    for label, M, N, K in shapes:
        for op in ops:
            for dt in dtypes:
                if (dt == "f32" and op not in ("plan", "plan_nosg")
                        and re.search(r"^enable f16;", dispatch.shader_source(op), flags=re.M)):
                    continue  # a candidate that reads float16 weights only
                points.append(point(op, M, N, K, dt == "f16"))
                labels.append(label)

    from pybridge.native import NativeBackend

    native: list[dict | None] = [None] * len(points)
    device = "-"
    adapter: dict = {}
    if not args.no_native:
        backend = await NativeBackend.create()
        adapter = backend.describe()["adapter"]
        name = adapter.get("device") or adapter.get("description")
        device = f"{name} ({adapter.get('backend_type')})"
        for i, pt in enumerate(points):
            native[i] = await time_native(backend, pt, args.budget)
        backend.close()
    torch_s = {(M, N, K): torch_time(M, N, K, args.budget) for _, M, N, K in shapes}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dawn: dict[str, dict] = {}

    def browser() -> str:  # what ran the kernels, as tools/report.py's captions name it
        return "none: " + ", ".join((["wgpu-py (Naga)"] if not args.no_native else [])
                                    + [f"Dawn under Node ({n})" for n in dawn])

    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"

    def save(partial: bool) -> None:  # after each stage, so a run cut short keeps what it did
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                                   "machine": machine, "browser": browser(),
                                   "adapter": adapter, "partial": partial, "points": points,
                                   "labels": labels, "wgpu": native, "torch": [
                                       torch_s[(p["M"], p["N"], p["K"])] for p in points],
                                   "dawn": dawn}))

    save(True)
    try:  # a SIGTERM (e.g. from `timeout`) ends the Dawn runs; the table still prints
        signal.signal(signal.SIGTERM, _interrupt)
        for spec in args.dawn_config or ["default="] if args.node else []:
            name, _, flags = spec.partition("=")
            dawn[name] = run_dawn(args, points, [f for f in flags.split(";") if f])
            save(True)
            print(f"  dawn[{name}]: {dawn[name]['status']}, {dawn[name].get('adapter')}, "
                  f"features {dawn[name].get('features')}", flush=True)
        if args.node and args.dawn_dump:
            dump_points = [point(op, 256, 256, 256, f16) for op in args.dawn_dump.split(",")
                           for f16 in (False, True)]
            run_dawn(args, dump_points,
                     ["enable-dawn-features=dump_shaders,disable_symbol_renaming"],
                     compile_only=True, log=out.with_name("dawn-dump.txt"))
    except KeyboardInterrupt:
        print("  interrupted: the table has the points measured so far", flush=True)
    names = list(dawn)

    print(f"matmul C = A @ B.T + bias, GFLOP/s; wgpu-py on {device}; "
          + "; ".join(f"dawn[{n}]: {dawn[n].get('adapter')}" for n in names))
    print(f"  {'shape':<14}{'M':>6}{'N':>6}{'K':>6} {'kernel':<14}{'w':<4}{'wgpu-py':>9}"
          + "".join(f"{('dawn:' + n)[:14]:>15}" for n in names) + f"{'torch':>9}{'best/torch':>11}")
    rows = []
    for i, (pt, label) in enumerate(zip(points, labels)):
        t = torch_s[(pt["M"], pt["N"], pt["K"])]
        flops = 2.0 * pt["M"] * pt["N"] * pt["K"]
        torch_gf = flops / t / 1e9 if t else None
        d = [dawn[n]["points"][i] if "points" in dawn[n] else None for n in names]
        ok = [x["gflops"] for x in [native[i], *d] if x and "gflops" in x]
        ratio = f"{max(ok) / torch_gf:.2f}" if ok and torch_gf else "-"
        print(f"  {label:<14}{pt['M']:>6}{pt['N']:>6}{pt['K']:>6} {pt['op']:<14}"
              f"{'f16' if pt['f16'] else 'f32':<4}{fmt(native[i])}"
              + "".join(f"{fmt(x):>15}" for x in d)
              + (f"{torch_gf:9.0f}" if torch_gf else f"{'-':>9}") + f"{ratio:>11}")
        rows.append({"shape": label, **pt, "wgpu": native[i],
                     "dawn": dict(zip(names, d)), "torch_gflops": torch_gf})
    for n in names:
        for crash in dawn[n].get("crashes", []):
            print(f"  dawn[{n}] crashed {crash[:300]}")
    errors = {(r["op"], (r["wgpu"] or {}).get("error")) for r in rows
              if (r["wgpu"] or {}).get("error")}
    errors |= {(r["op"], x.get("error")) for r in rows for x in r["dawn"].values()
               if x and x.get("error")}
    for op, e in sorted(errors):
        print(f"  ERR {op}: {e[:600]}")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                               "machine": machine, "browser": browser(),
                               "adapter": adapter, "dawn": {n: {k: v for k, v in dawn[n].items()
                                                                if k != "points"} for n in names},
                               "rows": rows}, indent=1))
    print(f"  wrote {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", default="plan",
                    help="kernels, comma-separated; plan = matmul_plan's pick")
    ap.add_argument("--dtypes", default="f32,f16", help="weight dtypes: f32, f16")
    ap.add_argument("--shapes", default=None, help="a regex over the shape labels")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=BASE:CONST=VALUE,... a bench-only variant")
    ap.add_argument("--extra-kernels", default=None, help="a folder of candidate .wgsl kernels")
    ap.add_argument("--tile", action="append", default=[], help="OP=COLS,ROWS for an extra kernel")
    ap.add_argument("--node", default=None, help="a node binary: also run on Dawn (dawn.node)")
    ap.add_argument("--webgpu", default=None, help="folder of the npm package webgpu")
    ap.add_argument("--dawn-config", action="append", default=[],
                    help="NAME=FLAG;FLAG... create() flags of one Dawn run (default: none)")
    ap.add_argument("--dawn-dump", default=None, help="ops whose SPIR-V Dawn dumps (dawn-dump.txt)")
    ap.add_argument("--dawn-timeout", type=float, default=120, help="seconds per dawn.node run")
    ap.add_argument("--no-native", action="store_true", help="skip wgpu-py")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of timed work per point")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "kernels.json"))
    args = ap.parse_args()
    if args.node and not args.webgpu:
        ap.error("--node needs --webgpu")
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
