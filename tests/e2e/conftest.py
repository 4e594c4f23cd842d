"""Browser fixtures: the dev server and Debian's Chromium, each started once per module.

Layers: `server` (module) -> `browser` (module) -> `app` (module: one booted page, Python
ready) and `fresh_page` (function: a new page for tests that need their own boot). Every page
goes through `guard`, which aborts and records any request leaving the server's origin; a
test that caused one fails.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from tests.conftest import CHROMIUM, ROOT

# From DESIGN.md: WebGPU through SwiftShader in headless Chromium on this machine.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEBGPU_FLAGS = ["--enable-unsafe-webgpu"]
BOOT_TIMEOUT_MS = 180_000
FINAL_STATES = "['ready', 'error', 'no-webgpu']"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    @property
    def origin(self) -> str:
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}"


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    """A folder the server also serves at /test-data/ (generated weights files)."""
    return tmp_path_factory.mktemp("test-data")


@pytest.fixture(scope="module")
def server(test_data):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "server.py"), "--port", "0",
         "--mount", f"/test-data/={test_data}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    url = None
    for line in proc.stdout:  # "[server] pybridge is serving http://127.0.0.1:PORT/"
        if "serving http" in line:
            url = line.split("serving ", 1)[1].strip()
            break
    if url is None:
        proc.kill()
        pytest.fail(f"dev server did not start: {proc.stdout.read()}")
    yield Server(url, proc)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch(playwright_instance, webgpu: bool = True):
    return playwright_instance.chromium.launch(
        executable_path=str(CHROMIUM),
        args=CHROMIUM_FLAGS + (WEBGPU_FLAGS if webgpu else []),
        headless=True,
    )


@pytest.fixture(scope="module")
def browser(playwright_instance):
    b = launch(playwright_instance)
    yield b
    b.close()


@dataclass
class Guard:
    """Aborts and records every request that leaves the server's origin."""

    origin: str
    foreign: list[str] = field(default_factory=list)

    def attach(self, context) -> None:
        def handle(route):
            url = route.request.url
            if url.startswith(("data:", "blob:")) or url.startswith(self.origin + "/"):
                route.continue_()
            else:
                self.foreign.append(url)
                route.abort()

        context.route("**/*", handle)


@pytest.fixture(scope="module")
def guard(server):
    return Guard(server.origin)


@pytest.fixture(autouse=True)
def _no_foreign_requests(guard):
    """Fail any browser test during which a page asked for something off-origin."""
    before = len(guard.foreign)
    yield
    new = guard.foreign[before:]
    assert not new, f"the page requested resources outside its origin: {new}"


def new_page(browser, server, guard):
    context = browser.new_context()
    guard.attach(context)
    page = context.new_page()
    page.errors = []  # uncaught page errors, for assertions
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


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

    def load_module(self, name: str, path) -> None:
        """Make a CPython-side test module (e.g. tests/cases/datapath.py) importable in the
        page's Python under `name`, so both backends run the same case code."""
        source = path.read_text()
        self.py(
            "import sys, types\n"
            f"m = types.ModuleType({name!r})\n"
            f"exec(compile({source!r}, {str(path.name)!r}, 'exec'), m.__dict__)\n"
            f"sys.modules[{name!r}] = m\n"
        )

    def state(self) -> dict:
        return self.page.evaluate(
            "({state: pybridge.state, error: pybridge.error, result: pybridge.result,"
            " stages: pybridge.stages, assets: pybridge.assets})"
        )


@pytest.fixture(scope="module")
def app(browser, server, guard):
    page = new_page(browser, server, guard)
    page.goto(server.url)
    state = wait_final(page)
    assert state == "ready", f"page ended in state {state!r}: {page.evaluate('pybridge.error')}"
    yield App(page)
    page.context.close()


@pytest.fixture
def fresh_page(browser, server, guard):
    page = new_page(browser, server, guard)
    yield page
    page.context.close()
