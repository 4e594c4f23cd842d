"""Server load benchmark: N browsers cold-booting at once from the dev server on loopback, and
slow or vanishing clients beside one that boots.

    python3 tools/dev.py bench serve [--clients 1,2,4,8,16,32,64] [--budget 100] [--quick]
    python3 tools/dev.py bench serve --clients 128,256 --budget 300 --server-fd-limit 1024

Starts tools/server.py --port 0 on 127.0.0.1 (the code that `--host 0.0.0.0` serves a room
with; --server-fd-limit starts it under a laptop's open-file soft limit) on a private copy of
what a boot fetches (the tree is shared: a set-up elsewhere may rebuild the wheel mid-run),
and plays every request of a first visit, derived from what is on disk, in the page's
order (each stage starts when the one before it is done):

    1. web/index.html and each `./file` it, main.js and the worker load (src, href, Worker, import)
    2. config.json, then pyodide.mjs, then pyodide.asm.js/.asm.wasm, python_stdlib.zip, the lock
    3. the wheels of numpy and pybridge (and what they depend on) named by pyodide-lock.json
    4. the default model: manifest.json, then vocab.txt and the float16 weights (the header by
       two Range requests, then the whole file, as web/bridge.js streamWeights does)

Each client is its own aiohttp session with 6 connections, like a browser, and accepts gzip
(the server then sends the `.gz` siblings). A client is booted when every response has the
right status and exactly the bytes on disk (of the `.gz` sibling when gzip came back), and
the sha256 that the lock or the manifest gives (checked by every client with --hash all; by
the first client of each round by default: hashing is the clients' CPU, which they share
with the server on a small machine). Rounds ramp N until one has an error, N reaches the
cap, or the next round would not fit the time budget. Per round: errors, p50/p99 time from
start to all assets done, MB/s through the server, the server's peak RSS (VmHWM, reset before
each round) and its open file descriptors once the round's clients are gone.

Then one client boots alone, beside a slow reader (1 byte a second) and a slow sender (its
request line 1 byte a second), and beside K clients that close their socket (FIN or RST)
after a few kB of the weights: its time in each case, and the server's fds before, with the
slow clients connected, and after (they must come back to the baseline).

Clients and server share this machine's cores: N boots measure the pair, not the server
alone. Prints a compact table and writes bench-results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from pybridge.minilm import DTYPE_FILES  # noqa: E402
from tools.harness import write_result  # noqa: E402

SITE = ROOT / "build" / "site"
PACKAGES = ("numpy", "pybridge")  # web/worker.js: pyodide.loadPackage(["numpy", "pybridge"])
MODEL = "models/all-MiniLM-L6-v2/"  # pybridge/demo.py load_model's default
MODEL_DTYPE = "float16"  # web/main.js: the page's default ?dtype
PYODIDE_CORE = ("pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")
BROWSER_CONNECTIONS = 6  # per origin, as Chromium, Firefox and Safari open over HTTP/1.1
ACCEPT = {"Accept-Encoding": "gzip, deflate, br"}
# web/: what a file loads (relative `./x` only: the page loads nothing from elsewhere).
REFERENCE = re.compile(r'''(?:src|href)="\./([^"?#]+)"'''  # index.html
                       r'''|new Worker\("\./([^"]+)"|from\s+"\./([^"]+)"''')  # JS


@dataclass(frozen=True)
class Asset:
    """One request of a boot: the URL, the file behind it and what a complete answer is."""

    url: str  # "/pyodide/0.27.7/numpy-2.0.2-...whl"
    path: Path  # the file on disk (identity encoding)
    sha256: str | None = None  # from pyodide-lock.json or the model's manifest
    weights: bool = False  # fetched as bridge.js does: header by Range, then the whole file

    def expected_bytes(self, encoding: str) -> int:
        gz = self.path.with_name(self.path.name + ".gz")
        return (gz if encoding == "gzip" else self.path).stat().st_size


def page_stages(web: Path) -> list[list[Asset]]:
    """index.html, then what each file of web/ references, breadth first (one stage a depth)."""
    stages, seen, frontier = [], {"index.html"}, ["index.html"]
    while frontier:
        stages.append([Asset("/" if n == "index.html" else f"/{n}", web / n) for n in frontier])
        found = []
        for name in frontier:
            for groups in REFERENCE.findall((web / name).read_text()):
                ref = next(g for g in groups if g)
                if ref not in seen and (web / ref).is_file():
                    seen.add(ref)
                    found.append(ref)
        frontier = found
    return stages


def boot_stages(site: Path = SITE, web: Path = ROOT / "web") -> list[list[Asset]]:
    """Every request of a cold boot, in stages: a stage starts when the one before is done."""
    config = json.loads((site / "config.json").read_text())
    index_url = config["indexURL"]  # "pyodide/0.27.7/"
    pyo = site / index_url
    lock = json.loads((pyo / "pyodide-lock.json").read_text())["packages"]
    wanted, todo = [], list(PACKAGES)
    while todo:  # the packages and what they depend on, as loadPackage resolves them
        name = todo.pop(0)
        if name not in wanted:
            wanted.append(name)
            todo += lock[name]["depends"]
    model = site / MODEL
    manifest = json.loads((model / "manifest.json").read_text())["files"]
    weights = DTYPE_FILES[MODEL_DTYPE]

    def at(base: str, name: str, folder: Path, **kw) -> Asset:
        return Asset(f"/{base}{name}", folder / name, **kw)

    return page_stages(web) + [
        [Asset("/config.json", site / "config.json")],
        [at(index_url, "pyodide.mjs", pyo)],
        [at(index_url, n, pyo) for n in PYODIDE_CORE],
        [at(index_url, lock[n]["file_name"], pyo, sha256=lock[n]["sha256"]) for n in wanted],
        [at(MODEL, "manifest.json", model)],
        [at(MODEL, "vocab.txt", model, sha256=manifest["vocab.txt"]["sha256"]),
         at(MODEL, weights, model, sha256=manifest[weights]["sha256"], weights=True)],
    ]


def snapshot(dest: Path) -> tuple[Path, Path]:
    """A private copy of web/ and of what a boot fetches from build/site/ (with the .gz
    siblings), served in front of both: the tree is shared, and a set-up run elsewhere
    replaces the pybridge wheel and the lock mid-benchmark."""
    web, site = dest / "web", dest / "site"
    shutil.copytree(ROOT / "web", web)
    for stage in boot_stages():
        for a in stage:
            if a.path.is_relative_to(SITE):
                for f in (a.path, a.path.with_name(a.path.name + ".gz")):
                    if f.is_file():
                        (site / f.relative_to(SITE)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, site / f.relative_to(SITE))
    return web, site


class BootError(Exception):
    pass


async def get(session: aiohttp.ClientSession, url: str, want_status: int, headers: dict[str, str],
              want_bytes, sha256: str | None = None) -> bytes | int:
    """One request read to its end; `want_bytes(encoding)` is the size it must have. Returns
    the body when small (<= 64 bytes), else its size."""
    async with session.get(url, headers=headers, auto_decompress=False) as r:
        if r.status != want_status:
            raise BootError(f"{url}: HTTP {r.status}, expected {want_status}")
        encoding = r.headers.get("Content-Encoding", "identity")
        h = hashlib.sha256() if sha256 and encoding == "identity" else None
        n, small = 0, b""
        while chunk := await r.content.readany():
            n += len(chunk)
            if h:
                h.update(chunk)
            if n <= 64:
                small += chunk
    if n != want_bytes(encoding):
        raise BootError(f"{url}: {n} bytes ({encoding}), expected {want_bytes(encoding)}")
    if h and h.hexdigest() != sha256:
        raise BootError(f"{url}: sha256 mismatch")
    return small if n <= 64 else n


async def fetch(session: aiohttp.ClientSession, asset: Asset, check_hash: bool) -> int:
    """All of one asset as the page fetches it; returns the bytes received."""
    sha = asset.sha256 if check_hash else None
    if not asset.weights:
        return await get(session, asset.url, 200, ACCEPT, asset.expected_bytes, sha)
    # web/bridge.js: 8 bytes (header length), the JSON header, then the whole file streamed.
    first8 = await get(session, asset.url, 206, {"Range": "bytes=0-7"}, lambda _: 8)
    n = struct.unpack("<Q", first8)[0]
    await get(session, asset.url, 206, {"Range": f"bytes=8-{8 + n - 1}"}, lambda _: n)
    size = asset.path.stat().st_size
    await get(session, asset.url, 200, {}, lambda _: size, sha)
    return 8 + n + size


@dataclass
class Boot:
    seconds: float = 0.0
    bytes: int = 0
    error: str | None = None


async def boot(base: str, stages: list[list[Asset]], check_hash: bool) -> Boot:
    """One browser's first visit: its own connection pool, stages in order, assets in parallel."""
    result, t0 = Boot(), time.perf_counter()
    connector = aiohttp.TCPConnector(limit=BROWSER_CONNECTIONS, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    try:
        async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
            for stage in stages:
                sizes = await asyncio.gather(*(fetch(session, a, check_hash) for a in stage))
                result.bytes += sum(sizes)
    except (aiohttp.ClientError, asyncio.TimeoutError, BootError, OSError) as e:
        result.error = f"{type(e).__name__}: {e}"[:200]
    result.seconds = time.perf_counter() - t0
    return result


class ServerProcess:
    """tools/server.py on 127.0.0.1 and a free port; its log goes to a file (a pipe nobody
    drains would block the server once it filled)."""

    def __init__(self, web: Path, site: Path, fd_limit: int | None = None) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.log = tempfile.NamedTemporaryFile(mode="w+", prefix="bench-serve-", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "server.py"), "--host", "127.0.0.1",
             "--port", "0", "--mount", f"/={site}", "--mount", f"/={web}"],  # each goes first
            stdout=self.log, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, hard)))
            if fd_limit else None)  # a laptop's soft limit; the server may raise it to hard
        end = time.monotonic() + 30
        while not (m := re.search(r"serving (http://\S+)", self.log_text())):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                raise SystemExit(f"dev server did not start: {self.log_text()}")
            time.sleep(0.05)
        self.url = m.group(1)  # "[server] pybridge is serving http://127.0.0.1:PORT/"
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.fd_limit = resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE)[0]  # once started

    def status(self, key: str) -> int:
        """A /proc/<pid>/status field in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    async def settle_fds(self, target: int, limit_s: float = 5.0) -> int:
        """The fd count once it is back to target, or after limit_s (closes are asynchronous)."""
        end = time.monotonic() + limit_s
        while (n := self.fds()) > target and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return n

    def log_text(self) -> str:
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


async def run_round(server: ServerProcess, stages, n: int, hash_all: bool, limit_s: float) -> dict:
    server.reset_peak()
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(boot(server.url, stages, hash_all or i == 0)) for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - t0
    boots = [t.result() for t in done]
    errors = [b.error for b in boots if b.error] + ["round time limit"] * len(pending)
    times = [b.seconds for b in boots if not b.error]
    return {
        "clients": n, "errors": len(errors), "firstErrors": sorted(set(errors))[:3],
        "p50s": percentile(times, 50) if times else None,
        "p99s": percentile(times, 99) if times else None,
        "wallS": wall, "bytes": sum(b.bytes for b in boots),
        "mbPerS": sum(b.bytes for b in boots) / wall / 1e6,
        "serverPeakRssBytes": server.status("VmHWM"),
        "serverFdsAfter": await server.settle_fds(server.baseline_fds),
    }


# --- slow and vanishing clients -------------------------------------------------------------

def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n".encode()


async def slow_reader(port: int, path: str, seconds: float, stop: asyncio.Event) -> int:
    """Asks for the weights with a 4 kB receive buffer and reads 1 byte a second."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    s.setblocking(False)
    got = 0
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, request_bytes(path))
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            got += len(await loop.sock_recv(s, 1))
            await asyncio.sleep(1.0)
    finally:
        s.close()
    return got


async def slow_sender(port: int, path: str, seconds: float, stop: asyncio.Event) -> int:
    """Sends its request line 1 byte a second (never finishing within `seconds`)."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    sent = 0
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        data = request_bytes(path)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set() and sent < len(data) - 1:
            await loop.sock_sendall(s, data[sent:sent + 1])
            sent += 1
            await asyncio.sleep(1.0)
    finally:
        s.close()
    return sent


async def vanisher(port: int, path: str, after: int, stop: asyncio.Event, max_count: int) -> int:
    """Downloads `path` and closes the socket after `after` bytes, again and again until `stop`;
    odd rounds reset the connection (RST, a crashed tab), even ones close it (FIN)."""
    loop = asyncio.get_running_loop()
    count = 0
    while not stop.is_set() and count < max_count:
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, request_bytes(path))
            got = 0
            while got < after:
                chunk = await loop.sock_recv(s, after - got)
                if not chunk:
                    break
                got += len(chunk)
            if count % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            s.close()
        count += 1
        await asyncio.sleep(0.01)
    return count


async def timed_boots(server: ServerProcess, stages, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        b = await boot(server.url, stages, True)
        if b.error:
            raise SystemExit(f"a normal boot failed beside slow/vanishing clients: {b.error}")
        out.append(b.seconds)
    return out


async def hostile_neighbours(server: ServerProcess, stages, weights_url: str, vanishers: int,
                             slow_s: float, repeats: int) -> dict:
    base = server.fds()
    alone = await timed_boots(server, stages, repeats)

    stop = asyncio.Event()
    slow = [asyncio.ensure_future(slow_reader(server.port, weights_url, slow_s, stop)),
            asyncio.ensure_future(slow_sender(server.port, "/", slow_s, stop))]
    await asyncio.sleep(0.5)  # both connected, the reader's file open
    fds_with_slow = server.fds()
    with_slow = await timed_boots(server, stages, repeats)
    stop.set()
    slow_read, slow_sent = await asyncio.gather(*slow)
    fds_after_slow = await server.settle_fds(base)

    stop = asyncio.Event()
    gone = [asyncio.ensure_future(vanisher(server.port, weights_url, 16 << 10, stop, 500))
            for _ in range(vanishers)]
    with_gone = await timed_boots(server, stages, repeats)
    stop.set()
    vanished = sum(await asyncio.gather(*gone))
    fds_after = await server.settle_fds(base)
    return {
        "aloneS": statistics.median(alone), "withSlowS": statistics.median(with_slow),
        "withVanishingS": statistics.median(with_gone), "repeats": repeats,
        "slowReaderBytes": slow_read, "slowSenderBytes": slow_sent, "slowSeconds": slow_s,
        "vanishingClients": vanishers, "vanished": vanished, "vanishAfterBytes": 16 << 10,
        "fdsBaseline": base, "fdsWithSlow": fds_with_slow, "fdsAfterSlow": fds_after_slow,
        "fdsAfter": fds_after, "fdsBackToBaseline": fds_after_slow == base and fds_after == base,
    }


async def run(args, tmp: Path) -> dict:
    web, site = snapshot(tmp)
    stages = boot_stages(site, web)
    assets = [a for stage in stages for a in stage]
    weights_url = next(a.url for a in assets if a.weights)
    server = ServerProcess(web, site, args.server_fd_limit)
    started = time.monotonic()
    try:
        server.baseline_fds = server.fds()
        rounds, stopped = [], "cap"
        for n in args.clients:
            left = args.budget - (time.monotonic() - started) - args.neighbour_reserve
            if rounds:  # a round grows about linearly with N
                forecast = rounds[-1]["wallS"] * n / rounds[-1]["clients"] * 1.3
                if forecast > left:
                    stopped = f"time budget (N={n} forecast {forecast:.0f}s, {left:.0f}s left)"
                    break
            r = await run_round(server, stages, n, args.hash == "all", max(5.0, left))
            rounds.append(r)
            if r["errors"]:
                stopped = f"errors at N={n}"
                break
        ok = [r["clients"] for r in rounds if not r["errors"]]
        neighbours = await hostile_neighbours(server, stages, weights_url, args.vanishers,
                                              args.slow_seconds, args.repeats)
        fd_limit = server.fd_limit
        noise = [ln for ln in server.log_text().splitlines() if not ln.startswith("[server]")]
    finally:
        server.stop()
    gz = {a.url for a in assets if a.path.with_name(a.path.name + ".gz").is_file()}
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.node()} ({os.cpu_count()} cores)",
        "aiohttp": aiohttp.__version__, "loadAvgAtEnd": os.getloadavg(),
        "serverFdLimit": fd_limit, "serverFdsIdle": server.baseline_fds,
        "boot": {"requests": len(assets) + 2,  # the weights: 2 Range requests first
                 "assets": [a.url for a in assets],
                 "identityBytes": sum(a.path.stat().st_size for a in assets),
                 "gzipSiblings": sorted(gz)},
        "hash": args.hash, "rounds": rounds, "highestNWithoutErrors": max(ok, default=0),
        "rampStopped": stopped, "neighbours": neighbours,
        "serverLogLines": len(noise), "serverLogTail": noise[-30:],
        "totalS": time.monotonic() - started,
    }


def print_table(result: dict) -> None:
    b, n = result["boot"], result["neighbours"]
    print(f"serve: N cold boots at once from tools/server.py on 127.0.0.1 "
          f"({len(b['assets'])} assets, {b['identityBytes'] / 1e6:.1f} MB before gzip, "
          f"{BROWSER_CONNECTIONS} connections a client, sha256 by {result['hash']} client(s); "
          f"{result['machine']}, server open-file limit {result['serverFdLimit']})")
    print(f"  {'N':>4}{'errors':>8}{'p50 ready':>11}{'p99 ready':>11}{'MB/s':>7}"
          f"{'server peak RSS':>17}{'server fds after':>18}")
    for r in result["rounds"]:
        p50, p99 = (f"{r[k]:.2f}s" if r[k] is not None else "-" for k in ("p50s", "p99s"))
        print(f"  {r['clients']:>4}{r['errors']:>8}{p50:>11}{p99:>11}{r['mbPerS']:>7.0f}"
              f"{r['serverPeakRssBytes'] / 1e6:>14.1f} MB{r['serverFdsAfter']:>18}")
        for e in r["firstErrors"]:
            print(f"        {e}")
    print(f"  highest N with 0 errors: {result['highestNWithoutErrors']} (ramp stopped: "
          f"{result['rampStopped']}; server fds idle: {result['serverFdsIdle']})")
    rows = [("alone", n["aloneS"]),
            ("beside a 1 B/s reader (weights) and a 1 B/s request sender", n["withSlowS"]),
            (f"beside {n['vanishingClients']} clients vanishing after 16 kB "
             f"({n['vanished']} vanished)", n["withVanishingS"])]
    print(f"  one boot beside hostile clients (median of {n['repeats']}):")
    for name, seconds in rows:
        print(f"    {name:<62}{seconds:>6.2f}s  x{seconds / n['aloneS']:.2f}")
    back = "back to baseline" if n["fdsBackToBaseline"] else "NOT back to baseline"
    print(f"    server fds: {n['fdsBaseline']} before, {n['fdsWithSlow']} with the slow clients, "
          f"{n['fdsAfterSlow']} after them, {n['fdsAfter']} after the vanishing ones ({back})")
    print(f"  server log: {result['serverLogLines']} lines past start-up; "
          f"load average at end {result['loadAvgAtEnd'][0]:.1f}; total {result['totalS']:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,2,4,8,16,32,64",
                    help="N per round, ascending (default 1,2,4,8,16,32,64)")
    ap.add_argument("--max-clients", type=int, default=256, help="cap on N (default 256)")
    ap.add_argument("--budget", type=float, default=100.0,
                    help="seconds for the whole run; the ramp stops before it (default 100)")
    ap.add_argument("--hash", choices=("first", "all"), default="first",
                    help="which clients check sha256 (default: the first of each round)")
    ap.add_argument("--vanishers", type=int, default=16, help="clients vanishing mid-download")
    ap.add_argument("--slow-seconds", type=float, default=6.0, help="how long slow clients stay")
    ap.add_argument("--repeats", type=int, default=3, help="boots per neighbour case (median)")
    ap.add_argument("--server-fd-limit", type=int, metavar="N",
                    help="start the server under an open-file soft limit of N (1024: Linux's "
                    "default; the server raises it to the hard limit)")
    ap.add_argument("--quick", action="store_true", help="N up to 8, 4 vanishers, 1 boot a case")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "serve.json")
    args = ap.parse_args()
    args.clients = [n for n in map(int, args.clients.split(",")) if n <= args.max_clients]
    if args.quick:
        args.clients = [n for n in args.clients if n <= 8]
        args.vanishers, args.repeats, args.slow_seconds = 4, 1, 3.0
    args.neighbour_reserve = args.slow_seconds + 10  # kept for the slow/vanishing part
    if not (SITE / "config.json").is_file():
        raise SystemExit("build/site/ is missing: run python3 tools/dev.py setup first")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print_table(result)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
