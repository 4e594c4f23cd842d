"""The dev server: serves the page, the kernels, Pyodide and the models, cross-origin isolated.

    python tools/server.py [--host 127.0.0.1] [--port 8000]

URL layout (first matching root wins):
    /wgsl/<op>.wgsl   wgsl/          the kernels, readable in the browser
    /<path>           web/           the page, the worker, the JS helpers; /selftest is
                                     web/selftest.html (PAGES)
    /<path>           build/site/    vendored assets (tools/assets.py): config.json, pyodide/<ver>/...

Every response carries the cross-origin isolation headers (COOP same-origin, COEP
require-corp: precise timers, SharedArrayBuffer). Files are served with explicit MIME types,
ETag/Last-Modified, Range, and a precompressed `.gz` sibling when the client accepts gzip.
Paths under /pyodide/<version>/ (except the lock file) never change, so they are cached
for a year; everything else is revalidated. No directory listings; no path leaves its root.

Hostile or broken clients (tests/unit/test_server.py; load in tools/bench_serve.py): methods
other than GET/HEAD answer 405; a Range the server does not serve as one byte range (another
unit, several ranges, bad syntax) or whose If-Range names another version is ignored: the
whole file, 200 (RFC 9110 13.1.5, 14.2); malformed requests answer 400 from aiohttp's parser
and print one line, not a traceback. Slow and vanished clients cost only their own
connection. At start the server raises its open-file soft limit to the hard one: each
download holds a socket and a file, and a laptop's default (256 to 1024) ran out at 256
browsers booting at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

try:
    import resource  # POSIX: the open-file limit
except ImportError:  # Windows
    resource = None

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
# pages answered at a URL without their file's name
PAGES = {"/selftest": "/selftest.html"}


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
    if segments and tail.endswith("/"):
        return None  # a folder (no listings), or a file named as one: "/main.js%2f"
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
        try:
            candidate = (base / rel).resolve()
            if not candidate.is_relative_to(base):
                return None  # a symlink pointing out of the root
            if candidate.is_file():
                return candidate
        except OSError:  # a name the file system refuses: too long, a loop of links
            return None
    return None


BYTE_RANGE = re.compile(r"bytes=(\d{0,30})-(\d{0,30})")  # 2**64 has 20 digits


def range_answer(request: web.BaseRequest, path: Path) -> str:
    """What to do with the request's Range: "none" (there is none), "serve" (aiohttp's
    FileResponse answers 206, or 416 past the end), "ignore" (the whole file, 200) or
    "unsatisfiable" (416).

    Ignored, as RFC 9110 allows (14.2) or requires (13.1.5, and an unknown unit): anything
    but one byte range, `bytes=5-1`, and an If-Range naming another version. aiohttp reads
    If-Range only as a date and served the range for any entity tag, splicing two versions;
    here a tag must equal the file's strong ETag, and where the request accepts the
    encoding of a precompressed sibling (whose ETag differs) the file is resumed only by
    date; a value that is neither never matches."""
    spec = request.headers.get("Range")
    if spec is None:
        return "none"
    m = BYTE_RANGE.fullmatch(spec)
    if m is None or m.groups() == ("", ""):
        return "ignore"
    first, last = m.groups()
    if first and last and int(first) > int(last):
        return "ignore"
    if not first and int(last) == 0:
        return "unsatisfiable"  # an empty suffix, "bytes=-0" (aiohttp sent the whole file)
    if_range = request.headers.get("If-Range")
    if if_range is None:
        return "serve"
    if if_range.startswith(('"', "W/")):  # an entity tag: compared strongly
        st = path.stat()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'  # aiohttp's ETag of the plain file
        accepted = request.headers.get("Accept-Encoding", "").lower()
        compressed = any(path.with_name(path.name + e).exists() and coding in accepted
                         for e, coding in ((".gz", "gzip"), (".br", "br")))
        return "serve" if if_range == etag and not compressed else "ignore"
    return "serve" if request.if_range is not None else "ignore"  # a date aiohttp compares


class WholeFileResponse(web.FileResponse):
    """A FileResponse that answers as if the request had no Range (nor If-Range)."""

    KEPT = ("Accept-Encoding", "If-Match", "If-None-Match", "If-Modified-Since",
            "If-Unmodified-Since")

    async def prepare(self, request: web.BaseRequest):
        kept = {k: request.headers[k] for k in self.KEPT if k in request.headers}
        try:
            plain = request.clone(headers=kept)
        except UnicodeEncodeError:  # a header that is not UTF-8: answer unconditionally
            plain = request.clone(headers={})
        return await super().prepare(plain)


@web.middleware
async def headers_middleware(request: web.Request, handler):
    try:
        if request.method not in ("GET", "HEAD"):  # CONNECT's target matched no route: 404
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


async def serve_file(request: web.Request) -> web.StreamResponse:
    path = resolve(request.app[MOUNTS_KEY], PAGES.get(request.path, request.path))
    if path is None:
        raise web.HTTPNotFound(text=f"404: {request.path} not found\n")
    headers = {
        "Content-Type": MIME_TYPES.get(path.suffix, FALLBACK_MIME),
        "Cache-Control": cache_control(request.path),
    }
    if path.with_name(path.name + ".gz").is_file():
        headers["Vary"] = "Accept-Encoding"
    try:
        answer = range_answer(request, path)
        if answer == "unsatisfiable":
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={"Content-Range": f"bytes */{path.stat().st_size}"})
    except OSError:  # removed since resolve()
        raise web.HTTPNotFound(text=f"404: {request.path} not found\n") from None
    return (WholeFileResponse if answer == "ignore" else web.FileResponse)(path, headers=headers)


def init(mounts: list[Mount] | None = None) -> web.Application:
    """The app factory (used by the CLI below and by the tests through aiohttp_client)."""
    app = web.Application(middlewares=[headers_middleware])
    app[MOUNTS_KEY] = mounts if mounts is not None else default_mounts()
    # GET (and HEAD, added by aiohttp) only: any other method answers 405 (the middleware).
    app.router.add_get("/{tail:.*}", serve_file)
    return app


def raise_open_file_limit() -> int:
    """Raises this process's open-file soft limit to its hard limit; returns the limit.

    Each download in flight holds a socket and the file, each idle browser up to 6 sockets:
    under Linux's default soft limit (1024) 256 browsers booting at once got 404s for files
    that exist (aiohttp answers 404 when open() fails with EMFILE) and accept() failed
    (tools/bench_serve.py --server-fd-limit 1024). macOS's hard limit is unlimited, which
    setrlimit refuses: 10240 (its OPEN_MAX) then. Windows has no such limit to raise."""
    if resource is None:
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 10240):
        if soft < target <= hard or (hard == resource.RLIM_INFINITY and soft < target):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                return target
            except (ValueError, OSError):
                continue
    return soft


def one_line_for_bad_requests(record: logging.LogRecord) -> bool:
    """A logging filter: a request aiohttp's parser rejected (400) prints one line, not a
    traceback of 11; the presenter's terminal is not for a LAN client to fill."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = (exc.message or "").strip().split("\n", 1)[0].rstrip(":")[:80]
        record.msg, record.args = "[server] %s from %s: %s", (exc.code, remote, reason)
        record.exc_info = record.exc_text = None
    return True


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
    files = raise_open_file_limit()
    if files < 4096:
        print(f"[server] note: this process may open {files} files; each browser booting "
              f"holds up to 12, so about {files // 12} can boot at once", file=sys.stderr)
    logging.getLogger("aiohttp.server").addFilter(one_line_for_bad_requests)
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
