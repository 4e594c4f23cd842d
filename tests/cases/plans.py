"""Plan cases shared by both backends (tests/unit/test_native_plans.py runs them in CPython,
tests/e2e/test_plans.py inside Pyodide): a plan resolved once and replayed, overlapping runs,
batches that do not mix, grids folded past 65,535 workgroups, and the errors of each.

Each case checks its results against numpy references computed here and returns a JSON-able
summary.
"""

from __future__ import annotations

import asyncio

import numpy as np

import pybridge
from pybridge.backend import Backend, Step
from pybridge.dispatch import grid_1d, pack_params


def axpy_params(n: int, alpha: float) -> np.ndarray:
    p = np.zeros(4, dtype=np.uint32)  # Params {n: u32, alpha: f32}, padded to 16 bytes
    p[0] = n
    p[1:2].view(np.float32)[0] = alpha
    return p


async def replay(backend: Backend, n: int = 1000, runs: int = 6) -> dict:
    """out = 3 * (2 * x + y) + y as a two-step plan; `runs` runs with different inputs, each
    submitted before the previous one is waited for (they overlap on the GPU queue)."""
    x, y, mid, out = [await backend.allocate((n,), np.float32, label=k)
                      for k in ("x", "y", "mid", "out")]
    plan = await backend.plan([Step("axpy", [x, y, axpy_params(n, 2.0), mid], grid_1d(n)),
                               Step("axpy", [mid, y, axpy_params(n, 3.0), out], grid_1d(n))],
                              inputs=[x, y], outputs=[out], label="two axpy")
    rng = np.random.default_rng(0)
    inputs = [(rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32))
              for _ in range(runs)]
    results = [np.empty(n, np.float32) for _ in range(runs)]
    with pybridge.count_copies() as c:
        pending = []
        for (a, b), r in zip(inputs, results):
            pending.append(backend.submit(plan, [a, b], [r]))
            if len(pending) == 2:  # two runs in flight at every wait
                await pending.pop(0).wait()
        for run in pending:
            await run.wait()
    errors = [float(np.abs(r - (3 * (2 * a + b) + b)).max()) for (a, b), r in zip(inputs, results)]
    buffers = backend.live_buffers()
    plan.free()
    freed = buffers - backend.live_buffers()  # the plan's own uniform buffers
    for t in (x, y, mid, out):
        t.free()
    return {"max_error": max(errors), "copies": c.as_dict(), "uniforms_freed": freed}


async def concurrent_batches(backend: Backend, n: int = 4096) -> dict:
    """Three `backend.batch()` blocks open at once in three tasks, each with a plain dispatch
    in the middle: each batch records only its own dispatches, and the plain ones run at
    once on their own."""
    async def one(alpha: float) -> float:
        x = await backend.upload(np.full(n, 1.0, np.float32))
        y = await backend.upload(np.full(n, 2.0, np.float32))
        mid, out, z = [await backend.allocate((n,), np.float32) for _ in range(3)]
        async with backend.batch() as b:
            await b.dispatch("axpy", [x, y, axpy_params(n, alpha), mid], grid_1d(n))
            await asyncio.sleep(0)  # let the other tasks record in between
            await backend.dispatch("axpy", [x, y, axpy_params(n, alpha + 1), z], grid_1d(n))
            await b.dispatch("axpy", [mid, y, axpy_params(n, alpha), out], grid_1d(n))
        r, rz = await out.numpy(), await z.numpy()
        for t in (x, y, mid, out, z):
            t.free()
        return max(float(np.abs(r - (alpha * (alpha * 1.0 + 2.0) + 2.0)).max()),
                   float(np.abs(rz - ((alpha + 1) * 1.0 + 2.0)).max()))

    errors = await asyncio.gather(one(2.0), one(5.0), one(-1.5))
    return {"max_error": max(errors)}


async def folded_rows(backend: Backend, R: int = 65537 + 300, C: int = 8) -> dict:
    """layernorm, embed and pool over more rows than one grid dimension holds (65,535): the
    grid folds into y (grid_1d(rows, 1)), and every row matches numpy."""
    rng = np.random.default_rng(1)
    eps = 1e-5
    # layernorm: (R, C) + residual
    x = rng.standard_normal((R, C), dtype=np.float32)
    r = rng.standard_normal((R, C), dtype=np.float32)
    g = rng.standard_normal(C, dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    ts = [await backend.upload(a) for a in (x, r, g, b)]
    out = await backend.allocate((R, C), np.float32)
    await backend.dispatch("layernorm", [*ts, pack_params(R, C, eps), out], grid_1d(R, 1))
    got = await out.numpy()
    y = x.astype(np.float64) + r
    ref = (y - y.mean(1, keepdims=True)) / np.sqrt(y.var(1, keepdims=True) + eps) * g + b
    ln_err = float(np.abs(got - ref).max())
    for t in (*ts, out):
        t.free()
    # embed: B x T = R tokens, a vocabulary of 50
    T, V = 7, 50
    B = -(-R // T)
    ids = rng.integers(0, V, B * T).astype(np.int32)  # (B*T,)
    word = rng.standard_normal((V, C), dtype=np.float32)
    pos = rng.standard_normal((T, C), dtype=np.float32)
    typ = rng.standard_normal((2, C), dtype=np.float32)
    ts = [await backend.upload(a) for a in (ids, word.view(np.uint32), pos.view(np.uint32),
                                            typ.view(np.uint32), g, b)]
    out = await backend.allocate((B * T, C), np.float32)
    await backend.dispatch("embed", [*ts, pack_params(T, C, eps), out], grid_1d(B * T, 1),
                           {"TABLE_F16": False})
    got = await out.numpy()
    e = word[ids].astype(np.float64) + np.tile(pos, (B, 1)) + typ[0]
    ref = (e - e.mean(1, keepdims=True)) / np.sqrt(e.var(1, keepdims=True) + eps) * g + b
    embed_err = float(np.abs(got - ref).max())
    for t in ts:
        t.free()
    # pool: B rows of T tokens, the first `lengths` of each averaged, then L2-normalised
    lengths = rng.integers(1, T + 1, B).astype(np.int32)  # (B,)
    ts = [out, await backend.upload(lengths)]
    pooled = await backend.allocate((B, C), np.float32)
    await backend.dispatch("pool", [*ts, pack_params(T, C), pooled], grid_1d(B, 1))
    got_pool = await pooled.numpy()
    h = got.reshape(B, T, C).astype(np.float64)
    mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
    m = (h * mask[..., None]).sum(1) / lengths[:, None]
    ref = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    pool_err = float(np.abs(got_pool - ref).max())
    for t in (*ts, pooled):
        t.free()
    return {"rows": R, "tokens": B * T, "pooled_rows": B, "grid": list(grid_1d(R, 1)),
            "layernorm": ln_err, "embed": embed_err, "pool": pool_err}


async def plan_errors(backend: Backend) -> dict:
    """What a bad plan or run says (exception type and message)."""
    n = 64
    x = await backend.allocate((n,), np.float32, label="x")
    out = await backend.allocate((n,), np.float32, label="out")
    said: dict[str, str] = {}

    async def attempt(name, coro_fn):
        try:
            await coro_fn()
            said[name] = "no error"
        except Exception as e:  # the point: which exception, which message
            said[name] = f"{type(e).__name__}: {e}"

    good = [Step("axpy", [x, x, axpy_params(n, 1.0), out], grid_1d(n))]
    await attempt("grid", lambda: backend.plan(
        [Step("axpy", [x, x, axpy_params(n, 1.0), out], (70000, 1, 1))], label="big grid"))
    await attempt("binding", lambda: backend.plan(
        [Step("axpy", [x, "x", axpy_params(n, 1.0), out], grid_1d(n))], label="bad binding"))
    await attempt("validation", lambda: backend.plan(
        [Step("axpy", [x, out], grid_1d(n))], label="too few bindings"))
    plan = await backend.plan(good, inputs=[x], outputs=[out], label="good")
    await attempt("inputs", lambda: backend.submit(plan, [], [np.empty(n, np.float32)]).wait())
    await attempt("input-dtype", lambda: backend.submit(
        plan, [np.zeros(n, np.int32)], [np.empty(n, np.float32)]).wait())
    await attempt("output", lambda: backend.submit(
        plan, [np.zeros(n, np.float32)], [np.empty(n - 1, np.float32)]).wait())
    x.free()
    await attempt("freed", lambda: backend.submit(
        plan, [np.zeros(n, np.float32)], [np.empty(n, np.float32)]).wait())
    plan.free()
    out.free()
    return said


# Six sentences of exactly 8 tokens each ([CLS] and [SEP] included): every batch of them has
# the same shape, whatever the order, so concurrent calls share a shape's buffers and plan.
SAME_LENGTH = ["the cat sat on the mat", "a dog ran in the park", "we like to eat red apples",
               "the stock market fell very sharply", "she plays the piano every night",
               "rain is falling on the city"]


async def concurrent_embeds(model, sentences: list[str] = SAME_LENGTH) -> dict:
    """Three `embed` calls at once on one model: two of the same batch shapes (the same
    sentences, one list reversed) and one of another shape, each with several batches in
    flight. Each must get its own sentences' embeddings (max |difference| from the same
    sentences embedded alone, one call at a time)."""
    lengths = {len(model.tokenizer.encode(s)) for s in sentences}
    assert len(lengths) == 1, f"the sentences must have one token count, got {lengths}"
    alone = np.concatenate([await model.embed([s]) for s in sentences])  # (N, 384)
    a = list(sentences)
    rev = a[::-1]
    few = a[: max(1, len(a) // 2)]
    got_a, got_rev, got_few = await asyncio.gather(
        model.embed(a, batch_size=2), model.embed(rev, batch_size=2),
        model.embed(few, batch_size=3))
    return {"same_shape": float(np.abs(got_a - alone).max()),
            "reversed": float(np.abs(got_rev - alone[::-1]).max()),
            "other_shape": float(np.abs(got_few - alone[: len(few)]).max()),
            "distinct": float(np.abs(alone[0] - alone[-1]).max())}


async def profile(backend: Backend, n: int = 1 << 16) -> dict:
    """Timestamps of a three-dispatch plan: one time per dispatch, all positive, and the plan's
    data unchanged by profiling (it runs the same dispatches)."""
    x, y, mid, out = [await backend.allocate((n,), np.float32, label=k)
                      for k in ("x", "y", "mid", "out")]
    steps = [Step("axpy", [x, y, axpy_params(n, 2.0), mid], grid_1d(n)),
             Step("axpy", [mid, y, axpy_params(n, 3.0), out], grid_1d(n)),
             Step("axpy", [out, y, axpy_params(n, 0.5), mid], grid_1d(n))]
    plan = await backend.plan(steps, inputs=[x, y], outputs=[mid], label="three axpy")
    a, b = np.full(n, 1.0, np.float32), np.full(n, 2.0, np.float32)
    if "timestamp-query" not in backend.features:
        return {"has_timestamps": False}
    r = await backend.profile(plan, [a, b])
    got = await mid.numpy()
    plan.free()
    for t in (x, y, mid, out):
        t.free()
    return {"has_timestamps": True, "ops": [op for op, _ in r["steps"]],
            "times": [t for _, t in r["steps"]], "whole": r["whole_us"],
            "max_error": float(np.abs(got - 0.5 * (3 * (2 * a + b) + b) - b).max())}


def pool_states(backend: Backend) -> list[str]:
    """The map state of each MAP_READ buffer the backend keeps for reuse."""
    if backend.name == "browser":
        return [str(buf.mapState) for _, buf in backend._read_pool]
    return [str(buf.map_state) for buf in backend._read_pool]


async def cancelled_wait(backend: Backend, n: int = 1 << 16, tries: int = 40) -> dict:
    """A run's wait cancelled while the GPU still works (as asyncio.wait_for does on a
    timeout): no pooled read buffer is left mapped or pending, and the next runs are right.
    The cancellation lands only if the map is still pending when the waiting task next runs,
    which is a race the device can win (lavapipe does the work inside submit; wgpu-py's poll
    thread then settles the map about half the time before the task runs): so it is tried
    until one lands, at most `tries` times, each a fresh run of the same plan."""
    x, y, out = [await backend.allocate((n,), np.float32, label=k) for k in ("x", "y", "out")]
    ones = np.ones(n, np.float32)
    plan = await backend.plan(
        [Step("axpy", [x, y, axpy_params(n, 2.0), out], grid_1d(n))] * 20,
        inputs=[x, y], outputs=[out], label="20 axpy")
    cancelled, states, tried = False, [], 0
    while not cancelled and tried < tries:
        tried += 1
        task = asyncio.ensure_future(
            backend.submit(plan, [ones, ones], [np.empty(n, np.float32)]).wait())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled = True
        states = pool_states(backend)
    errors = []
    for k in range(3):  # the next runs reuse the pool
        a = np.full(n, float(k), np.float32)
        r = np.empty(n, np.float32)
        await backend.submit(plan, [a, ones], [r]).wait()
        errors.append(float(np.abs(r - (2 * a + 1)).max()))
    after = pool_states(backend)
    plan.free()
    for t in (x, y, out):
        t.free()
    return {"cancelled": cancelled, "tries": tried, "pool_after_cancel": states,
            "pool_after_runs": after, "max_error": max(errors)}


async def plan_leak_check(backend: Backend, runs: int, heap_bytes=None, proxies=None) -> dict:
    """Many runs of one plan: GPU buffers (and the wasm heap and live PyProxies, where given)
    back to where they were after the first few."""
    n = 1024
    x, out = [await backend.allocate((n,), np.float32, label=k) for k in ("x", "out")]
    plan = await backend.plan([Step("axpy", [x, x, axpy_params(n, 1.5), out], grid_1d(n))],
                              inputs=[x], outputs=[out], label="leak")
    a, r = np.arange(n, dtype=np.float32), np.empty(n, np.float32)
    for _ in range(20):
        await backend.submit(plan, [a], [r]).wait()
    before = [backend.live_buffers(), heap_bytes() if heap_bytes else 0,
              proxies() if proxies else 0]
    for _ in range(runs):
        await backend.submit(plan, [a], [r]).wait()
    after = [backend.live_buffers(), heap_bytes() if heap_bytes else 0,
             proxies() if proxies else 0]
    ok = bool(np.array_equal(r, 2.5 * a))
    plan.free()
    for t in (x, out):
        t.free()
    return {"equal": ok, "buffers": [before[0], after[0]], "heap": [before[1], after[1]],
            "proxies": [before[2], after[2]]}


async def kernels_beside_a_model(model, backend: Backend) -> dict:
    """Kernels dispatched (and read back) while an embed of several batches is in flight:
    both give the answers they give alone."""
    sentences = SAME_LENGTH * 3
    alone = await model.embed(sentences, batch_size=2)
    n = 4096
    x, y = np.arange(n, dtype=np.float32), np.full(n, 2.0, np.float32)

    async def kernels() -> float:
        worst = 0.0
        for i in range(6):
            tx, ty = await backend.upload(x), await backend.upload(y)
            out = await backend.allocate((n,), np.float32)
            await backend.dispatch("axpy", [tx, ty, axpy_params(n, float(i)), out], grid_1d(n))
            worst = max(worst, float(np.abs(await out.numpy() - (i * x + y)).max()))
            for t in (tx, ty, out):
                t.free()
            await asyncio.sleep(0)
        return worst

    got, kernel_error = await asyncio.gather(model.embed(sentences, batch_size=2), kernels())
    return {"embed_error": float(np.abs(got - alone).max()), "kernel_error": kernel_error}


async def free_while_embedding(load, backend: Backend) -> dict:
    """A model freed while an embed of several batches is in flight: the embed returns the
    right rows or raises UseAfterFree; the backend keeps working and nothing is left on it."""
    import gc

    sentences = SAME_LENGTH * 4
    model = await load()  # a whole cycle first: what the backend keeps for reuse (read pool)
    alone = await model.embed(sentences, batch_size=2)
    model.free()
    before = backend.live_buffers()
    model = await load()
    task = asyncio.ensure_future(model.embed(sentences, batch_size=2))
    await asyncio.sleep(0)  # the embed has started its first batch
    model.free()
    outcome = "result"
    try:
        got = await task
        error = float(np.abs(got - alone).max())
    except Exception as e:  # noqa: BLE001 (which error is the point)
        outcome, error = f"{type(e).__name__}: {e}", 0.0
    del model, task
    gc.collect()
    t = await backend.upload(np.arange(8, dtype=np.float32))
    works = (await t.numpy()).tolist() == list(range(8))
    t.free()
    return {"outcome": outcome, "error": error, "works": works,
            "left": backend.live_buffers() - before}
