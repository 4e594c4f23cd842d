"""Copies counted independently of pybridge's accounting, in the browser's worker.

`pybridge.stats()` counts what the code passes to `accounting.record()`, so a copy nobody
records would pass every test that asserts those numbers. Here two probes watch the copies
themselves while a call runs, and the bytes they see must equal the bytes the stats claim:

- JS (tests/e2e/copy_probe.mjs, loaded into the worker): `writeBuffer` (and whether its source
  is numpy's wasm-heap memory), TypedArray `set`/`slice`/`from`/copying constructors,
  `ArrayBuffer.slice`, response bodies gathered by `arrayBuffer()`, `structuredClone`: the
  primitives bridge.js and Pyodide's conversions (`to_bytes`, `to_py`, `to_js`, `assign_to`:
  HEAPU8.set / HEAP8.slice) copy with.
- Python (`_page_probes` below, run in the page): sys.monitoring sees every call made from
  pybridge's modules; calls of numpy's and Python's copying functions (`tobytes`, `copy`,
  `astype`, `copyto`, `ascontiguousarray` of a strided array, `bytes`, ...) count their bytes.
  It cannot see `a[i:j] = b`: `test_the_data_path_copies_only_by_calls` keeps the data path
  free of those.

Both count copies in the worker: the browser's GPU process copies writeBuffer's data again,
outside it. Left out, named in each test: tokenizing (tokenizer.py makes the ids: input, not
the data path), the SHA-256's block buffer (sha256.js keeps < 64 bytes of a network chunk
between chunks: hashing state) and reads of the package's files (WGSL sources).
"""

from __future__ import annotations

import ast
import inspect
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_native_datapath import SIZES, weight_set
from pybridge.weights import write_safetensors

HERE = Path(__file__).resolve().parent
PATHS = [("view", "ring"), ("staging", "ring"), ("naive", "naive")]
NOT_THE_DATA_PATH = {  # where a copy was made -> why it is not the data path's
    "tokenizer.py:": "tokenizing makes the input ids; the data path starts from them",
    "sha256.js:": "the hash keeps < 64 bytes of each network chunk in its block: hashing state",
    "pyodide.asm.js:Object.read": "Pyodide's in-memory file system: Python reading the "
                                  "package's files (a kernel's WGSL text when it is compiled)",
}


def _page_probes(js_probe):
    """Runs inside the page's Python: `measure(awaitable)` -> (its value, {"seen": copies the
    probes saw, "claimed": what pybridge.count_copies() recorded meanwhile})."""
    import json
    import sys
    import types

    import numpy as np

    import pybridge

    mon = sys.monitoring
    tool = next(i for i in range(6) if mon.get_tool(i) is None)
    mon.use_tool_id(tool, "pybridge copy probe")

    def size(x):
        if isinstance(x, np.ndarray):
            return int(x.nbytes)
        try:
            return memoryview(x).nbytes
        except TypeError:  # not a buffer (bytearray(4), np.array([1, 2])): made, not copied
            return 0

    def strided(a):
        return 0 if isinstance(a, np.ndarray) and a.flags.c_contiguous else size(a)

    copying = {np.ndarray.tobytes: size, np.ndarray.copy: size, np.ndarray.astype: size,
               np.ndarray.flatten: size, np.ndarray.tolist: size, np.copy: size, np.array: size,
               np.copyto: size, np.ascontiguousarray: strided, bytes: size, bytearray: size,
               memoryview.tobytes: size}
    rows: dict[tuple[str, str], list[int]] = {}

    def on_call(code, offset, func, arg0):
        if "/pybridge/" not in code.co_filename:
            return
        try:
            measure = copying.get(func)
        except TypeError:  # an unhashable callable: not one of the above
            return
        owner = getattr(func, "__self__", None)
        if measure is None and isinstance(owner, np.ndarray):  # a bound method: a.tobytes
            measure = copying.get(getattr(np.ndarray, getattr(func, "__name__", ""), None))
            arg0 = owner
        if measure is None or arg0 is mon.MISSING:
            return
        n = measure(arg0)
        if n:
            name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
            where = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"
            row = rows.setdefault((name, where), [0, 0])
            row[0] += 1
            row[1] += n

    mon.register_callback(tool, mon.events.CALL, on_call)

    async def measure(awaitable):
        rows.clear()
        js_probe.start()
        mon.set_events(tool, mon.events.CALL)
        try:
            with pybridge.count_copies() as c:
                value = await awaitable
        finally:
            mon.set_events(tool, 0)
            seen = json.loads(str(js_probe.take()))
        seen["copies"] += [{"op": name, "src": "numpy", "dst": "numpy", "where": where,
                            "calls": calls, "bytes": n}
                           for (name, where), (calls, n) in rows.items()]
        return value, {"seen": seen, "claimed": c.as_dict()}

    def restore():
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.CALL, None)
        mon.free_tool_id(tool)
        js_probe.restore()

    js_probe.install()
    return types.SimpleNamespace(measure=measure, restore=restore)


def mismatch(what: str, m: dict, zero_copy: bool = False) -> str | None:
    """Why the bytes the probes saw differ from the stats, or None. `zero_copy`: every
    writeBuffer reads numpy's wasm-heap memory, but a padded last word (4 bytes)."""
    def left_out(r: dict) -> bool:
        return any(r["where"].startswith(p) for p in NOT_THE_DATA_PATH)

    seen = [r for r in m["seen"]["copies"] if r["bytes"]]
    seen_bytes = sum(r["bytes"] for r in seen if not left_out(r))
    claimed_bytes = sum(p["bytes"] for d in m["claimed"].values() for p in d.values())
    rows = "\n    ".join(f"{'(left out) ' if left_out(r) else ''}{r['op']} {r['src']}->{r['dst']}"
                         f" at {r['where']}: {r['calls']} calls, {r['bytes']} bytes" for r in seen)
    if seen_bytes != claimed_bytes:
        return (f"{what}: the worker copied {seen_bytes} bytes, the stats claim {claimed_bytes} "
                f"({m['claimed']}); seen:\n    {rows}")
    if zero_copy:
        foreign = [r for r in seen if r["op"] == "writeBuffer" and r["src"] != "heap"
                   and r["bytes"] > 4 * r["calls"]]
        if foreign:
            return f"{what}: writeBuffer from a copy, not numpy's memory: {foreign}"
    return None


@pytest.fixture(scope="module")
def page(app, test_data):
    shutil.copy(HERE / "copy_probe.mjs", test_data / "copy_probe.mjs")
    app.load_module("cases", ROOT / "tests" / "cases" / "datapath.py")
    app.load_module("plan_cases", ROOT / "tests" / "cases" / "plans.py")
    app.py(inspect.getsource(_page_probes) +
           "import js, numpy as np, pybridge, cases, plan_cases\n"
           "from pybridge.backend import Step\n"
           "from pybridge.dispatch import grid_1d\n"
           "backend = await pybridge.default_backend()\n"
           "probes = _page_probes(await js.importModule('/test-data/copy_probe.mjs'))\n"
           "async def run(plan, ins, outs):\n"
           "    await backend.submit(plan, ins, outs).wait()\n")
    yield app
    app.py("probes.restore()")


@pytest.mark.parametrize("paths", PATHS)
def test_upload_and_readback_copies_match_the_stats(page, paths):
    up, down = paths
    sizes = [*SIZES, *([(5 << 20,)] if up != "naive" else [])]  # 20 MiB: 5 slots of the ring
    results = page.py(
        "res = []\n"
        "for d in cases.DTYPES:\n"
        f"    for s in {sizes!r}:\n"
        "        if s[0] >= 1 << 20 and d != 'float32': continue\n"
        "        a = cases.make_array(d, s)\n"
        f"        t, upload = await probes.measure(backend.upload(a, path={up!r}))\n"
        "        o = np.empty_like(a)\n"
        f"        _, readback = await probes.measure(t.numpy(out=o, path={down!r}))\n"
        "        t.free()\n"
        "        res.append({'what': f'{d}{s}', 'equal': bool(np.array_equal(o, a)),\n"
        "                    'upload': upload, 'readback': readback})\n"
        "res")
    assert len(results) == 5 * len(SIZES) + (len(sizes) - len(SIZES))
    problems = []
    for r in results:
        assert r["equal"], r["what"]
        for step in ("upload", "readback"):
            problems.append(mismatch(f"{r['what']} {step} via {paths}", r[step],
                                     zero_copy=up != "naive"))
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} of {2 * len(results)} disagree:\n" + "\n".join(problems)


def test_plan_copies_match_the_stats(page):
    """A plan built (uniforms), runs of it, and a plan whose input is not whole 4-byte words
    (runPlan pads its last word)."""
    r = page.py(
        "n = 1001\n"
        "x, y, mid, out = [await backend.allocate((n,), np.float32) for _ in range(4)]\n"
        "steps = [Step('axpy', [x, y, plan_cases.axpy_params(n, 2.0), mid], grid_1d(n)),\n"
        "         Step('axpy', [mid, y, plan_cases.axpy_params(n, 3.0), out], grid_1d(n)),\n"
        "         Step('axpy', [out, y, plan_cases.axpy_params(n, 3.0), mid], grid_1d(n))]\n"
        "plan, build = await probes.measure(backend.plan(steps, inputs=[x, y], outputs=[mid]))\n"
        "a, b = cases.make_array('float32', (n,)), cases.make_array('float32', (n,), seed=7)\n"
        "got = np.empty(n, np.float32)\n"
        "_, runs = await probes.measure(run(plan, [a, b], [got]))\n"
        "ok = bool(np.allclose(got, 3 * (3 * (2 * a + b) + b) + b, rtol=1e-5, atol=1e-3))\n"
        "profile = None\n"
        "if 'timestamp-query' in backend.features:  # profile writes the inputs too\n"
        "    _, profile = await probes.measure(backend.profile(plan, [a, b]))\n"
        "plan.free()\n"
        "t = await backend.allocate((4001,), np.uint8)\n"
        "echo = await backend.plan([], inputs=[t], outputs=[t], label='echo')\n"
        "u8, back = cases.make_array('uint8', (4001,)), np.empty(4001, np.uint8)\n"
        "_, tail = await probes.measure(run(echo, [u8], [back]))\n"
        "ok = ok and bool(np.array_equal(back, u8))\n"
        "echo.free()\n"
        "for v in (x, y, mid, out, t): v.free()\n"
        "{'ok': ok, 'build': build, 'runs': runs, 'tail': tail, 'profile': profile}")
    assert r["ok"]
    problems = [mismatch("plan build", r["build"]), mismatch("plan run", r["runs"], True),
                mismatch("plan run, 4001 bytes in", r["tail"], True)]
    if r["profile"] is not None:
        problems.append(mismatch("plan profile", r["profile"], True))
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_dispatch_copies_match_the_stats(page):
    """A dispatch's numpy uniform: its buffer made once per distinct content, and looked up
    on every dispatch."""
    r = page.py(
        "n = 4096\n"
        "x, y, out = [await backend.allocate((n,), np.float32) for _ in range(3)]\n"
        "p = plan_cases.axpy_params(n, 1.25)\n"
        "_, first = await probes.measure(backend.dispatch('axpy', [x, y, p, out], grid_1d(n)))\n"
        "async def three():\n"
        "    for _ in range(3):\n"
        "        await backend.dispatch('axpy', [x, y, p, out], grid_1d(n))\n"
        "_, again = await probes.measure(three())\n"
        "for v in (x, y, out): v.free()\n"
        "{'first': first, 'again': again}")
    problems = [mismatch("first dispatch", r["first"]), mismatch("3 more dispatches", r["again"])]
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_weights_load_copies_match_the_stats(page, test_data):
    """The header read with Range requests, then the tensors streamed into mapped buffers."""
    sha = write_safetensors(test_data / "wc.safetensors", weight_set())
    r = page.py(
        "from pybridge.weights import load_safetensors\n"
        "ts, load = await probes.measure(load_safetensors('/test-data/wc.safetensors', backend,\n"
        f"                                                  sha256={sha!r}))\n"
        "for v in ts.values(): v.free()\n"
        "load")
    problem = mismatch("load_safetensors", r)
    assert problem is None, problem


def test_a_forward_pass_copies_match_the_stats(page, model):
    """MiniLM embed: the first batch of a shape builds its plan (44 steps, their uniforms);
    the next runs it (ids and lengths written, the pooled rows read back)."""
    r = page.py(
        "s = ['a short sentence here', 'and another one, a little longer than the first']\n"
        "v1, first = await probes.measure(model.embed(s))\n"
        "v2, again = await probes.measure(model.embed(s))\n"
        "{'same': bool(np.array_equal(v1, v2)), 'first': first, 'again': again}")
    assert r["same"]
    problems = [mismatch("embed, plan built", r["first"], True),
                mismatch("embed, plan reused", r["again"], True)]
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


def test_the_data_path_copies_only_by_calls():
    """The Python probe sees calls, not slice assignments (`a[i:j] = b` copies too): the
    browser's data path makes none, so every numpy copy it makes is one the probe counts."""
    found = []
    for name in ("view.py", "backend.py", "browser.py"):
        tree = ast.parse((ROOT / "pybridge" / name).read_text())
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if isinstance(t, ast.Subscript) and any(
                        isinstance(s, ast.Slice) for s in ast.walk(t.slice)):
                    found.append(f"pybridge/{name}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "slice assignments the probe cannot see:\n" + "\n".join(found)
