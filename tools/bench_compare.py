"""Side by side with a leading browser runtime: all-MiniLM-L6-v2 in pybridge vs ONNX Runtime
Web (WebGPU execution provider), same browser, same machine, same token ids, same weights
(float32), measured in one run.

    python3 tools/dev.py bench compare [--quick]

Set-up of its own (cached under .cache/, nothing committed; tools/race.py, which the page's
race shares): the npm package onnxruntime-web@1.30.0 (sha256-pinned tarball) and an ONNX
export of the model made here with torch from the reference lock (mean pooling + L2 norm
included, as pybridge computes; the IsNaN guards the export adds after each softmax removed,
since ORT's WebGPU EP would run them on the CPU and the comparison would flatter pybridge). Both run
after a warm-up at each shape; times are end to end (ids in, embeddings out). Checks the two
agree (cosine). Writes bench-results/compare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pybridge.tokenizer import WordPiece  # noqa: E402
from tools.harness import (launch, machine, new_context, open_app, page_adapter,  # noqa: E402
                           start_server)
from tools.race import ORT_VERSION, export_onnx, vendor_ort  # noqa: E402

MODEL_DIR = ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2"
SHAPES = [(1, 10), (8, 10), (1, 126), (8, 126), (32, 10), (32, 126)]  # (batch, words)
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 1 and 8 only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "compare.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shapes = [s for s in SHAPES if s[0] < 32] if args.quick else SHAPES
    dist, onnx = vendor_ort(), export_onnx()
    tok = WordPiece.from_vocab_text((MODEL_DIR / "vocab.txt").read_text(encoding="utf-8"))

    from playwright.sync_api import sync_playwright

    server = start_server({"/ort/": dist, "/ort-model/": onnx.parent,
                           "/compare/": ROOT / "tools" / "compare"})
    rows = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            app = open_app(browser, server)
            adapter = page_adapter(app.page)
            app.py("from pybridge.minilm import MiniLM\n"
                   "m = await MiniLM.load('/models/all-MiniLM-L6-v2/', dtype='float32')")
            ort = new_context(browser).new_page()
            ort.set_default_timeout(900_000)
            ort.goto(server.url + "compare/ort.html")
            ort.wait_for_function("document.getElementById('state').textContent === 'ready'")
            ort_load = ort.evaluate(f"loadOrt('/ort-model/{onnx.name}')")
            print(f"all-MiniLM-L6-v2 float32, pybridge vs ONNX Runtime Web {ORT_VERSION} (WebGPU EP);"
                  f" Chromium {browser.version} headless, WebGPU via SwiftShader; "
                  f"{platform.machine()}, {os.cpu_count()} cores")
            print(f"  {'batch':>5}{'tokens':>7}{'pybridge':>11}{'ORT Web':>11}{'ORT/pybridge':>14}"
                  f"{'cosine':>9}")
            for batch, words in shapes:
                text = " ".join(WORDS[i % len(WORDS)] for i in range(words))
                b = tok.encode_batch([text] * batch)
                ids, lengths = b.ids.tolist(), b.lengths.tolist()
                code = ("import time\n"
                        f"s = [{text!r}] * {batch}\n"
                        f"await m.embed(s, batch_size={batch})\n"
                        "t0 = time.perf_counter()\n"
                        f"e = await m.embed(s, batch_size={batch})\n"
                        "[(time.perf_counter() - t0) * 1e3, e[0].tolist()]")
                ours_ms, ours_first = app.py(code)
                ort.evaluate("([i, l]) => runOrt(i, l)", [ids, lengths])  # warm-up
                r = ort.evaluate("([i, l]) => runOrt(i, l)", [ids, lengths])
                a, o = np.array(ours_first), np.array(r["first"])
                cos = float(a @ o / np.linalg.norm(a) / np.linalg.norm(o))
                row = {"batch": batch, "tokens": int(b.lengths[0]), "pybridge_ms": ours_ms,
                       "ort_ms": r["ms"], "ort_over_pybridge": r["ms"] / ours_ms, "cosine": cos}
                rows.append(row)
                print(f"  {batch:>5}{row['tokens']:>7}{ours_ms:>9.0f}ms{r['ms']:>9.0f}ms"
                      f"{row['ort_over_pybridge']:>14.2f}{cos:>9.5f}")
            version = browser.version
            browser.close()
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "ort": ORT_VERSION,
                                    "browser": f"Chromium {version} headless",
                                    "machine": machine(), "adapter": adapter,
                                    "ort_load_ms": ort_load, "rows": rows}, indent=1))
    print(f"  wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
