"""The dev server: serves the page, the kernels, Pyodide and the models, cross-origin isolated.

    python tools/server.py [--host 127.0.0.1] [--port 8000]

URL layout (first matching root wins):
    /wgsl/<op>.wgsl   wgsl/          the kernels, readable in the browser
    /<path>           web/           the page, the worker, the JS helpers
    /<path>           build/site/    vendored assets (tools/assets.py): config.json, pyodide/<ver>/...

Every response carries the cross-origin isolation headers (COOP same-origin, COEP
require-corp: precise timers, SharedArrayBuffer). Files are served with explicit MIME types,
ETag/Last-Modified, Range, and a precompressed `.gz` sibling when the client accepts gzip.
Paths under /pyodide/<version>/ (except the lock file) never change, so they are cached
for a year; everything else is revalidated. No directory listings; no path leaves its root.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".wgsl": "text/wgsl; charset=utf-8",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".safetensors": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
FALLBACK_MIME = "application/octet-stream"

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything from this origin, no inline script or style, no eval: WebAssembly compiles
    # under 'wasm-unsafe-eval' alone (Pyodide needs nothing more); no framing, no plugins.
    "Content-Security-Policy": "; ".join([
        "default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "worker-src 'self'",
        "connect-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ]),
}


@dataclass(frozen=True)
class Mount:
    """URL prefix -> folder on disk."""

    prefix: str  # "/" or "/wgsl/"
    directory: Path


def default_mounts(root: Path = ROOT) -> list[Mount]:
    return [
        Mount("/wgsl/", root / "wgsl"),
        Mount("/", root / "web"),
        Mount("/", root / "build" / "site"),
    ]


MOUNTS_KEY = web.AppKey("mounts", list[Mount])


def cache_control(url_path: str) -> str:
    """Immutable for versioned Pyodide assets (the pybridge wheel's name carries its hash);
    revalidate (ETag) for everything else, the lock file included."""
    parts = PurePosixPath(url_path).parts  # ("/", "pyodide", "0.27.7", "numpy-...whl")
    if len(parts) == 4 and parts[1] == "pyodide" and parts[3] != "pyodide-lock.json":
        return IMMUTABLE
    return REVALIDATE


def safe_relative(tail: str) -> PurePosixPath | None:
    """The request path as a relative path, or None if any segment could escape or is hidden.

    `tail` is already percent-decoded by aiohttp, so an encoded `..` arrives here as `..`."""
    if "\\" in tail or "\x00" in tail:
        return None
    segments = [s for s in tail.split("/") if s]
    if any(s in (".", "..") or s.startswith(".") for s in segments):
        return None
    return PurePosixPath(*segments) if segments else PurePosixPath("index.html")


def resolve(mounts: list[Mount], url_path: str) -> Path | None:
    """The regular file serving url_path, inside its mount's folder after resolving links."""
    for mount in mounts:
        if not url_path.startswith(mount.prefix):
            continue
        rel = safe_relative(url_path[len(mount.prefix):])
        if rel is None:
            return None
        base = mount.directory.resolve()
        candidate = (base / rel).resolve()
        if not candidate.is_relative_to(base):
            return None  # a symlink pointing out of the root
        if candidate.is_file():
            return candidate
    return None


@web.middleware
async def headers_middleware(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def serve_file(request: web.Request) -> web.StreamResponse:
    path = resolve(request.app[MOUNTS_KEY], request.path)
    if path is None:
        raise web.HTTPNotFound(text=f"404: {request.path} not found\n")
    headers = {
        "Content-Type": MIME_TYPES.get(path.suffix, FALLBACK_MIME),
        "Cache-Control": cache_control(request.path),
    }
    if path.with_name(path.name + ".gz").is_file():
        headers["Vary"] = "Accept-Encoding"
    return web.FileResponse(path, headers=headers)


def init(mounts: list[Mount] | None = None) -> web.Application:
    """The app factory (used by the CLI below and by the tests through aiohttp_client)."""
    app = web.Application(middlewares=[headers_middleware])
    app[MOUNTS_KEY] = mounts if mounts is not None else default_mounts()
    # GET (and HEAD, added by aiohttp) only: any other method answers 405.
    app.router.add_get("/{tail:.*}", serve_file)
    return app


def lan_addresses() -> list[str]:
    """Best-effort addresses of this machine on the LAN (no traffic is sent)."""
    out = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = info[4][0]
            if not addr.startswith("127.") and addr not in out:
                out.append(addr)
    except OSError:
        pass
    return out


async def serve(host: str, port: int, mounts: list[Mount]) -> None:
    missing = [m.directory for m in mounts if not m.directory.is_dir()]
    if missing:
        print(f"[server] note: {', '.join(map(str, missing))} missing; run the set-up "
              "(python3 tools/dev.py demo) to vendor the assets", file=sys.stderr)
    runner = web.AppRunner(init(mounts), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # the real port when --port 0
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    print(f"[server] pybridge is serving http://{shown}:{bound}/", flush=True)
    if host in ("0.0.0.0", "::"):
        for addr in lan_addresses():
            print(f"[server] on the LAN: http://{addr}:{bound}/ (WebGPU needs https or localhost "
                  "in most browsers; see README)", flush=True)
    print("[server] press Ctrl+C to stop", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pybridge dev server")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; 0.0.0.0 for a LAN demo)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    ap.add_argument("--mount", action="append", default=[], metavar="/PREFIX/=DIR",
                    help="also serve DIR at /PREFIX/ (tests serve generated files this way)")
    args = ap.parse_args(argv)
    mounts = default_mounts()
    for spec in args.mount:
        prefix, _, folder = spec.partition("=")
        if not (prefix.startswith("/") and prefix.endswith("/") and folder):
            ap.error(f"--mount takes /PREFIX/=DIR, got {spec!r}")
        mounts.insert(0, Mount(prefix, Path(folder)))
    try:
        asyncio.run(serve(args.host, args.port, mounts))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"[server] cannot listen on {args.host}:{args.port}: {e.strerror}. "
              "Try another --port.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
