"""Tokenizer benchmark: the WordPiece tokenizer of this checkout against the one it replaced
(pybridge/tokenizer.py at BASELINE), side by side in one run, in CPython and in Pyodide under
Node.js: milliseconds to encode_batch 32 texts of 128 tokens of real English.

    python3 tools/dev.py bench tokenizer [--quick] [--no-pyodide] [--baseline REV]

Text: paragraphs of the Python reference documentation that ships in the stdlib
(pydoc_data.topics), cut into 32 texts of up to 128 tokens ([CLS] and [SEP] included);
"typographic" is the same text with curly quotes and em dashes, as word processors write it
(the non-ASCII path). "cold" is a fresh tokenizer (empty caches; the new one's per-character
memos emptied too); "warm" is the same tokenizer again (a demo or a search box sees the same
words again and again). Old and new take turns, and each number is the best of its runs (this
machine is shared: medians are in the JSON). Once per process: the Unicode tables load on the
first non-ASCII text, and WordPiece() builds its caches. Pyodide runs Python compiled to
WebAssembly, as the page does (in Node's V8, not a browser's; no GPU involved). Writes
bench-results/tokenizer.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "58007bc"  # the last commit with the per-character tokenizer
PYODIDE_DIR = ROOT / "build" / "site" / "pyodide" / "0.27.7"
VOCAB = ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2" / "vocab.txt"
BATCH, TOKENS = 32, 128


# --- measured in both interpreters (this file is copied into Pyodide's file system) ----------

def measure(old: types.ModuleType, new: types.ModuleType, vocab_text: str,
            cases: dict[str, list[str]], cold_runs: int, warm_runs: int) -> dict:
    """ms per encode_batch of each case, old and new tokenizer, cold and warm: the best and the
    median of the runs (old and new take turns, so both see the same load on the machine)."""
    from time import perf_counter

    vocab = {token: i for i, token in enumerate(vocab_text.split("\n")[:-1])}
    t0 = perf_counter()
    new._tables()  # the one-time load of the Unicode tables (the first non-ASCII text does it)
    out: dict = {"tables_ms": (perf_counter() - t0) * 1e3, "cases": {}}
    init = {}
    for label, module in (("old", old), ("new", new)):
        t0 = perf_counter()
        module.WordPiece(vocab)
        init[label] = (perf_counter() - t0) * 1e3
    out["init_ms"] = init

    def fresh(module: types.ModuleType):
        if module is new:
            new._tables().normalized.reset()
            new._tables().spaced.reset()
        return module.WordPiece(vocab)

    def timed(tok, texts) -> float:
        t0 = perf_counter()
        tok.encode_batch(texts, TOKENS)
        return (perf_counter() - t0) * 1e3

    for name, texts in cases.items():
        pair = {"old": old, "new": new}
        cold: dict[str, list[float]] = {"old": [], "new": []}
        warm: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(cold_runs):
            for label, module in pair.items():
                cold[label].append(timed(fresh(module), texts))
        toks = {label: fresh(module) for label, module in pair.items()}
        ids = {label: tok.encode_batch(texts, TOKENS).ids.tolist() for label, tok in toks.items()}
        for _ in range(warm_runs):
            for label, tok in toks.items():
                warm[label].append(timed(tok, texts))
        row: dict = {label: {"cold_ms": min(cold[label]), "warm_ms": min(warm[label]),
                             "cold_median_ms": statistics.median(cold[label]),
                             "warm_median_ms": statistics.median(warm[label])} for label in pair}
        row["same_ids"] = ids["old"] == ids["new"]
        out["cases"][name] = row
    return out


# --- the host side ------------------------------------------------------------------------------

def english_texts(new: types.ModuleType, vocab_text: str) -> list[str]:
    """32 texts of 128 tokens: prose paragraphs of the stdlib's reference documentation, each
    text from a different part of it (whole words, running on into the next paragraphs)."""
    import pydoc_data.topics

    paragraphs = []
    for key in sorted(pydoc_data.topics.topics):
        for p in re.split(r"\n\s*\n", pydoc_data.topics.topics[key]):
            if p[:1].isalpha() and len(p.split()) >= 20 and "::" not in p and "\n  " not in p:
                paragraphs.append(p.split())
    tok = new.WordPiece.from_vocab_text(vocab_text)
    texts = []
    for i in range(BATCH):
        words = [w for p in paragraphs[i * len(paragraphs) // BATCH:] for w in p]
        n, tokens = 0, 2  # [CLS] and [SEP]
        # whitespace-separated words tokenize on their own: their token counts add up
        while n < len(words) and tokens + len(tok.encode(words[n], 10**6)) - 2 <= TOKENS:
            tokens += len(tok.encode(words[n], 10**6)) - 2
            n += 1
        texts.append(" ".join(words[:n]))
    return texts


def typographic(text: str) -> str:
    """Curly quotes, apostrophes and em dashes, as word processors write English."""
    text = re.sub(r'"([^"]*)"', "\u201c\\1\u201d", text)
    return text.replace("'", "\u2019").replace(" -- ", " \u2014 ").replace("--", "\u2014")


def load_old(rev: str) -> tuple[types.ModuleType, str]:
    source = subprocess.run(["git", "show", f"{rev}:pybridge/tokenizer.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("tokenizer_old")
    exec(compile(source, f"{rev}:pybridge/tokenizer.py", "exec"), module.__dict__)
    return module, source


NODE_RUNNER = r"""
import { loadPyodide } from "%(pyodide)s/pyodide.mjs";
import { readFileSync } from "node:fs";
const py = await loadPyodide({ indexURL: "%(pyodide)s/" });
await py.loadPackage("%(pyodide)s/%(numpy)s");
py.FS.mkdirTree("/bench/pybridge");
for (const [name, path] of Object.entries(%(files)s)) {
  py.FS.writeFile("/bench/" + name, readFileSync(path));
}
const result = await py.runPythonAsync(`
import sys, json
sys.path.insert(0, "/bench")
import bench_tokenizer, tokenizer_old
from pybridge import tokenizer
args = json.loads(open("/bench/args.json").read())
vocab = open("/bench/vocab.txt").read()
json.dumps([sys.version, bench_tokenizer.measure(tokenizer_old, tokenizer, vocab, **args)])
`);
process.stdout.write(result);
"""


def run_pyodide(old_source: str, args: dict) -> tuple[str, dict]:
    node = shutil.which("node")
    if node is None or not (PYODIDE_DIR / "pyodide.mjs").exists():
        raise RuntimeError("needs node and build/site/pyodide (python3 tools/dev.py setup)")
    numpy_wheel = next(PYODIDE_DIR.glob("numpy-*.whl")).name
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "tokenizer_old.py").write_text(old_source)
        (tmp_path / "__init__.py").write_text("")
        (tmp_path / "args.json").write_text(json.dumps(args))
        files = {
            "bench_tokenizer.py": str(Path(__file__).resolve()),
            "tokenizer_old.py": str(tmp_path / "tokenizer_old.py"),
            "pybridge/__init__.py": str(tmp_path / "__init__.py"),  # the tokenizer alone
            "pybridge/tokenizer.py": str(ROOT / "pybridge" / "tokenizer.py"),
            "pybridge/_unicode_data.py": str(ROOT / "pybridge" / "_unicode_data.py"),
            "vocab.txt": str(VOCAB),
            "args.json": str(tmp_path / "args.json"),
        }
        runner = tmp_path / "run.mjs"
        runner.write_text(NODE_RUNNER % {"pyodide": PYODIDE_DIR.as_posix(), "numpy": numpy_wheel,
                                         "files": json.dumps(files)})
        out = subprocess.run([node, str(runner)], check=True, capture_output=True, text=True)
    version, result = json.loads(out.stdout[out.stdout.index("["):])
    return version, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--no-pyodide", action="store_true", help="CPython only")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the old tokenizer")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "tokenizer.json")
    args = ap.parse_args()
    if not VOCAB.exists():
        print(f"{VOCAB.relative_to(ROOT)} is missing: run python3 tools/dev.py setup",
              file=sys.stderr)
        return 1

    sys.path.insert(0, str(ROOT))
    from pybridge import tokenizer as new

    t0 = time.perf_counter()
    new._tables()
    tables_ms = (time.perf_counter() - t0) * 1e3  # measure() finds them loaded already

    old, old_source = load_old(args.baseline)
    vocab_text = VOCAB.read_text(encoding="utf-8")
    english = english_texts(new, vocab_text)
    cases = {"english": english, "typographic": [typographic(t) for t in english]}
    runs = {"cold_runs": 3, "warm_runs": 10} if args.quick else {"cold_runs": 10, "warm_runs": 40}
    tokens = sum(len(new.WordPiece.from_vocab_text(vocab_text).encode(t, TOKENS)) for t in english)
    non_ascii = sum(not t.isascii() for t in cases["typographic"])

    results = {"batch": BATCH, "max_length": TOKENS, "tokens": tokens, "baseline": args.baseline,
               "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
               "typographic_non_ascii_texts": non_ascii, "runtimes": {}}
    t0 = time.perf_counter()
    results["runtimes"]["cpython"] = {"version": sys.version.split()[0],
                                      **measure(old, new, vocab_text, cases, **runs),
                                      "tables_ms": tables_ms}
    print(f"CPython done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not args.no_pyodide:
        t0 = time.perf_counter()
        version, r = run_pyodide(old_source, {"cases": cases, **runs})
        results["runtimes"]["pyodide"] = {"version": f"Pyodide 0.27.7, Python "
                                          f"{version.split()[0]}, Node {_node_version()}", **r}
        print(f"Pyodide done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    print(f"encode_batch of {BATCH} texts x {TOKENS} tokens ({tokens} tokens) of English, ms "
          f"(best of {runs['cold_runs']} cold / {runs['warm_runs']} warm runs; medians in the "
          f"JSON); old = {args.baseline}:pybridge/tokenizer.py; {results['machine']}")
    print(f"  {'runtime':<10}{'text':<13}{'cache':<6}{'old ms':>9}{'new ms':>9}{'speedup':>9}"
          f"{'same ids':>10}")
    for runtime, r in results["runtimes"].items():
        for case, row in r["cases"].items():
            for cache in ("cold", "warm"):
                o, n = row["old"][f"{cache}_ms"], row["new"][f"{cache}_ms"]
                print(f"  {runtime:<10}{case:<13}{cache:<6}{o:>9.2f}{n:>9.2f}{o / n:>8.1f}x"
                      f"{'yes' if row['same_ids'] else 'NO':>10}")
        print(f"  {runtime:<10}once per process: Unicode tables {r['tables_ms']:.1f} ms; "
              f"WordPiece() old {r['init_ms']['old']:.1f} ms, new {r['init_ms']['new']:.1f} ms "
              f"({r['version']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def _node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
