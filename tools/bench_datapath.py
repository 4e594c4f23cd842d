"""Data-path benchmark: upload and readback paths against the in-browser memcpy floor, and
weights streaming against a plain fetch into an ArrayBuffer, measured side by side in one run.

    python3 tools/dev.py bench datapath [--sizes 4K,64K,1M,4M,16M,64M] [--weights-mb 90]
    python3 tools/dev.py bench datapath --quick      sizes 4K,64K,1M,16M and 32 MB of weights

Headless Debian Chromium, WebGPU on SwiftShader (a CPU implementation: compare the columns
of one run, not absolute speeds). Prints GB/s and ratios; writes bench-results/datapath.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pybridge.weights import write_safetensors  # noqa: E402
from tools.harness import (launch, machine, open_app, page_adapter, start_server,  # noqa: E402
                           write_result)


def parse_size(s: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def human(n: int) -> str:
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n // k}{unit}"
    return f"{n}B"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="4K,64K,1M,4M,16M,64M")
    ap.add_argument("--weights-mb", type=int, default=90)
    ap.add_argument("--quick", action="store_true", help="sizes 4K,64K,1M,16M, 32 MB of weights")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "datapath.json")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.weights_mb = "4K,64K,1M,16M", 32
    sizes = [parse_size(s) for s in args.sizes.split(",")]

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        layers = max(1, args.weights_mb * (1 << 20) // (1 << 22))
        weights = {f"layer{i}.weight": np.full((1024, 1024), i, np.float32) for i in range(layers)}
        sha = write_safetensors(Path(tmp) / "bench.safetensors", weights)
        server = start_server({"/bench-data/": Path(tmp)})
        try:
            with sync_playwright() as p:
                browser = launch(p)
                app = open_app(browser, server)
                adapter = page_adapter(app.page)
                app.load_module("bench", ROOT / "tools" / "bench_datapath_page.py")
                rows = [app.py(f"await bench.transfer({n})") for n in sizes]
                w = app.py(f"await bench.weights('/bench-data/bench.safetensors', {sha!r})")
                version = browser.version
                browser.close()
        finally:
            server.stop()

    print(f"data path, GB/s  (Chromium {version} headless, WebGPU via SwiftShader; "
          f"{platform.machine()}, {__import__('os').cpu_count()} cores)")
    print("  up:X = upload done on the GPU (synced); copy = pybridge's one CPU copy (staging fill);"
          " rawJS = writeBuffer called from JS")
    head = (f"  {'size':>7} {'memcpy':>7} {'copy':>6} {'rawJS':>6} {'up:auto':>8} {'up:view':>8} "
            f"{'up:stage':>9} {'up:naive':>9} {'copy/memcpy':>12} {'up/rawJS':>9} {'up/naive':>9} "
            f"{'rd:ring':>8} {'rd:naive':>9} {'ring/naive':>11}")
    print(head)
    for r in rows:
        best = max(r["upload_view"], r["upload_staging"])
        r["copy_over_memcpy"] = r["copy_staging"] / r["memcpy"]
        r["best_upload_over_memcpy"] = best / r["memcpy"]
        r["best_upload_over_raw_js"] = best / r["raw_js_writebuffer"]
        r["best_upload_over_naive"] = best / r["upload_naive"]
        r["ring_over_naive"] = r["readback_ring"] / r["readback_naive"]
        print(f"  {human(r['bytes']):>7} {r['memcpy']:7.2f} {r['copy_staging']:6.2f} "
              f"{r['raw_js_writebuffer']:6.2f} {r['upload_auto']:8.2f} {r['upload_view']:8.2f} "
              f"{r['upload_staging']:9.2f} {r['upload_naive']:9.2f} {r['copy_over_memcpy']:12.2f} "
              f"{r['best_upload_over_raw_js']:9.2f} {r['best_upload_over_naive']:9.2f} "
              f"{r['readback_ring']:8.2f} {r['readback_naive']:9.2f} {r['ring_over_naive']:11.2f}")
    mb = w["bytes"] / 1e6
    w["stream_gbps"] = w["bytes"] / w["stream_ms"] / 1e6
    w["stream_nohash_gbps"] = w["bytes"] / w["stream_nohash_ms"] / 1e6
    w["fetch_gbps"] = w["bytes"] / w["fetch_arraybuffer_ms"] / 1e6
    print(f"weights {mb:.0f} MB: stream->GPU {w['stream_gbps']:.2f} GB/s with sha256 "
          f"({w['stream_nohash_gbps']:.2f} without), plain fetch->ArrayBuffer {w['fetch_gbps']:.2f} GB/s; "
          f"ratio {w['stream_gbps'] / w['fetch_gbps']:.2f}")
    print(f"  extra memory: stream holds one chunk (peak {human(w['stream_peak_chunk'])}), wasm heap "
          f"grew {w['wasm_heap_growth']} B; the plain fetch holds the whole {mb:.0f} MB file")
    result = {"date": time.strftime("%Y-%m-%d"), "browser": f"Chromium {version} headless",
              "machine": machine(), "adapter": adapter, "transfer": rows, "weights": w}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
