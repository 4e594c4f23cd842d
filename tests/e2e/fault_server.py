"""The dev server with faults injected on demand, for tests of a flaky network and a dying
server. Serves everything tools/server.py serves, and under /faulty/<mode>/<path> the file
at /<path> with a fault:

    drop-once-N     the first response of each file that is longer than N bytes stops after
                    N bytes (connection reset); later requests are served normally (Range
                    included, by aiohttp's FileResponse, as the dev server does)
    drop-always-N   every response longer than N bytes stops after N bytes, and every
                    open-ended Range request past byte 0 (a resume) is reset before any byte
    die-N           the whole server process exits after sending N bytes of a response

GET /faulty-log answers the requests seen under /faulty/ as JSON: [{path, range, sent}], so a
test can check that a retry resumed with a Range request.

    python tests/e2e/fault_server.py --port 0 [--mount /PREFIX/=DIR ...]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools import server  # noqa: E402

LOG: list[dict] = []
DROPPED: set[str] = set()  # files whose first response drop-once already cut


async def faulty(request: web.Request) -> web.StreamResponse:
    mode, _, rest = request.match_info["tail"].partition("/")
    kind, _, n = mode.rpartition("-")
    path = server.resolve(request.app[server.MOUNTS_KEY], "/" + rest)
    if path is None or kind not in ("drop-once", "drop-always", "die") or not n.isdigit():
        raise web.HTTPNotFound(text=f"404: {request.path} not found\n")
    cut = int(n)
    entry = {"path": "/" + rest, "range": request.headers.get("Range"), "sent": None}
    LOG.append(entry)
    size = path.stat().st_size
    rng = request.headers.get("Range", "")
    start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") and rng[6:7].isdigit() else 0
    if kind == "drop-always" and rng.startswith("bytes=") and rng.endswith("-") and start > 0:
        entry["sent"] = 0
        request.transport.abort()
        raise asyncio.CancelledError
    fault = size > cut and request.method == "GET" and not rng and (
        kind != "drop-once" or rest not in DROPPED)
    if not fault:
        entry["sent"] = "whole"
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
    DROPPED.add(rest)
    st = path.stat()
    resp = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(size),
        "ETag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"', "Cache-Control": "no-cache",
        "Accept-Ranges": "bytes"})
    await resp.prepare(request)
    with path.open("rb") as f:
        left = cut
        while left:
            chunk = f.read(min(left, 1 << 16))
            await resp.write(chunk)
            left -= len(chunk)
    entry["sent"] = cut
    await asyncio.sleep(0.05)  # let the bytes leave before the fault
    if kind == "die":
        os._exit(0)
    request.transport.abort()  # a reset connection mid-body
    return resp


async def log(request: web.Request) -> web.Response:
    return web.json_response(LOG)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mount", action="append", default=[])
    args = ap.parse_args()
    mounts = server.default_mounts()
    for spec in args.mount:
        prefix, _, folder = spec.partition("=")
        mounts.insert(0, server.Mount(prefix, Path(folder)))
    app = web.Application(middlewares=[server.headers_middleware])
    app[server.MOUNTS_KEY] = mounts
    app.router.add_get("/faulty-log", log)
    app.router.add_get("/faulty/{tail:.*}", faulty)
    app.router.add_get("/{tail:.*}", server.serve_file)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print(f"[server] pybridge is serving http://127.0.0.1:{port}/", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
