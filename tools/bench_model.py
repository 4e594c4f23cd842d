"""Model benchmark in the browser: all-MiniLM-L6-v2 latency for batch 1, 8, 32 x about 12 and
128 tokens, split into tokenize / prepare (the shape's plan, cached) / submit (ids up + the
forward pass, one JS call) / GPU / readback / other Python, on the zero-copy path and on the
naive path, side by side.

    python3 tools/dev.py bench model [--dtype float16] [--quick]

Headless Debian Chromium, WebGPU on SwiftShader (a CPU implementation: the GPU column is not a
GPU's speed; the copy share and the path ratio are what this run shows). Writes
bench-results/model.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import launch, machine, open_app, page_adapter, start_server  # noqa: E402

SHAPES = [(1, 10), (8, 10), (32, 10), (1, 126), (8, 126), (32, 126)]  # (batch, words) -> 12 / 128 tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--quick", action="store_true", help="only batch 1 and 8")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "model.json")
    args = ap.parse_args()
    shapes = [s for s in SHAPES if s[0] < 32] if args.quick else SHAPES

    from playwright.sync_api import sync_playwright

    server = start_server()
    rows = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            app = open_app(browser, server)
            adapter = page_adapter(app.page)
            app.load_module("bench_model", ROOT / "tools" / "bench_model_page.py")
            load_ms = app.py(f"await bench_model.load({args.dtype!r})")
            print(f"all-MiniLM-L6-v2 ({args.dtype}) in Chromium {browser.version} headless, WebGPU "
                  f"via SwiftShader; {platform.machine()}, {__import__('os').cpu_count()} cores; "
                  f"load {load_ms / 1e3:.2f} s")
            print(f"  {'batch':>5}{'tok':>5}{'path':>10}{'total':>10}{'tokenize':>9}{'prepare':>8}"
                  f"{'submit':>8}{'GPU':>10}{'readback':>9}{'other':>7}{'copy%':>7}")
            for batch, words in shapes:
                for path in ("zero-copy", "naive"):
                    r = app.py(f"await bench_model.run({batch}, {words}, {path!r})")
                    t = r["timings_ms"]
                    r["copy_share"] = t["readback"] / r["total_ms"]  # uploads: inside submit
                    rows.append(r)
                    print(f"  {batch:>5}{r['tokens']:>5}{path:>10}{r['total_ms']:>8.0f}ms"
                          f"{t['tokenize']:>9.1f}{t['prepare']:>8.1f}{t['submit']:>8.1f}"
                          f"{t['gpu']:>10.0f}{t['readback']:>9.1f}{t['python_other']:>7.1f}"
                          f"{100 * r['copy_share']:>6.2f}%")
            version = browser.version
            browser.close()
    finally:
        server.stop()
    for zc, nv in zip(rows[::2], rows[1::2]):
        zc["naive_over_zero_copy_readback"] = (
            nv["timings_ms"]["readback"] / max(zc["timings_ms"]["readback"], 1e-9))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "dtype": args.dtype,
                                    "browser": f"Chromium {version} headless",
                                    "machine": machine(), "adapter": adapter,
                                    "load_ms": load_ms, "rows": rows}, indent=1))
    print(f"  wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
