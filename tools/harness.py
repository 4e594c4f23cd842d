"""Driving the page from CPython: the dev server as a subprocess, Debian's Chromium through
Playwright, and Python run inside the page's worker. Used by the e2e tests and benchmarks.

Never `playwright install`: Chromium is launched by its executable path.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("PYBRIDGE_CHROMIUM", "/usr/bin/chromium"))

# WebGPU in headless Chromium: on a machine without a GPU it runs on SwiftShader (a CPU).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEBGPU_FLAGS = ["--enable-unsafe-webgpu"]
BOOT_TIMEOUT_MS = 180_000
FINAL_STATES = "['ready', 'error']"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    @property
    def origin(self) -> str:
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_server(mounts: dict[str, Path] | None = None, script: Path | None = None,
                 host: str | None = None) -> Server:
    """tools/server.py on a free port; `mounts` adds {"/prefix/": folder}; `script` runs
    another server with the same command line (tests/e2e/fault_server.py); `host` (e.g.
    "0.0.0.0") listens beyond loopback."""
    cmd = [sys.executable, str(script or ROOT / "tools" / "server.py"), "--port", "0"]
    if host:
        cmd += ["--host", host]
    for prefix, folder in (mounts or {}).items():
        cmd += ["--mount", f"{prefix}={folder}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    for line in proc.stdout:  # "[server] pybridge is serving http://127.0.0.1:PORT/"
        if "serving http" in line:
            # keep reading what it prints, so a full pipe never stalls the server
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return Server(line.split("serving ", 1)[1].strip(), proc)
    proc.kill()
    raise RuntimeError(f"dev server did not start: {proc.stdout.read()}")


def launch(playwright, webgpu: bool = True):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=CHROMIUM_FLAGS + (WEBGPU_FLAGS if webgpu else []),
        headless=True,
    )


def new_context(browser, **options):
    """A browser context for driving the page. The server sends a Content-Security-Policy
    without 'unsafe-eval', and Playwright's wait_for_function() with a string evaluates it in
    the page, so contexts for tests and benchmarks bypass the policy in the page (not in
    workers: the page's worker keeps it, so Python there loads JS with js.importModule, never
    eval); tests/e2e/test_boot.py boots the page with the policy enforced."""
    return browser.new_context(bypass_csp=True, **options)


def wait_final(page) -> str:
    page.wait_for_function(
        f"window.pybridge && {FINAL_STATES}.includes(window.pybridge.state)",
        timeout=BOOT_TIMEOUT_MS,
    )
    return page.evaluate("pybridge.state")


class App:
    """A booted page; `py(code)` runs Python in its worker and returns the JSON-able result."""

    def __init__(self, page):
        self.page = page

    def py(self, code: str):
        return self.page.evaluate("(code) => pybridge.run(code)", code)

    def state(self) -> dict:
        return self.page.evaluate(
            "({state: pybridge.state, error: pybridge.error, result: pybridge.result,"
            " stages: pybridge.stages, assets: pybridge.assets})"
        )

    def load_module(self, name: str, path: Path) -> None:
        """Make a CPython-side module (tests/cases/*.py, tools/bench_*_page.py) importable in
        the page's Python under `name` (and imported there), so both sides run the same code."""
        source = path.read_text()
        self.py(
            "import sys, types\n"
            f"m = types.ModuleType({name!r})\n"
            f"exec(compile({source!r}, {path.name!r}, 'exec'), m.__dict__)\n"
            f"sys.modules[{name!r}] = m\n"
            f"import {name}\n"
        )


def open_app(browser, server: Server, timeout_ms: int = 900_000) -> App:
    """A booted page without the demo model (?model=none), for benchmarks; exits with the
    page's error if it does not boot."""
    page = new_context(browser).new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(server.url + "?model=none")
    if wait_final(page) != "ready":
        raise SystemExit(f"page failed: {page.evaluate('pybridge.error')}")
    if page.evaluate("pybridge.device") != "gpu":  # numpy's timings are not the GPU's
        raise SystemExit(f"the page has no WebGPU here: {page.evaluate('pybridge.noWebGPU')}")
    return App(page)


def machine() -> str:
    """This machine as the benchmarks' JSON names it (tools/report.py's captions)."""
    return f"{platform.machine()} ({os.cpu_count()} cores)"


def page_adapter(page) -> dict:
    """The WebGPU adapter the page's worker runs on, as its device panel shows it (vendor,
    architecture, device, description; the browser may leave any of them empty)."""
    page.wait_for_function("window.pybridge && pybridge.gpu")
    return page.evaluate("pybridge.gpu.adapter || {}")


def write_result(out: Path, result: dict) -> None:
    """A benchmark's JSON, next to its printed table (bench-results/ by default)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"  wrote {out}")
