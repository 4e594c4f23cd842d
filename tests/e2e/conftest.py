"""Browser fixtures: the dev server and Debian's Chromium, each started once per module.

Layers: `server` (module) -> `browser` (module) -> `app` (module: one booted page, Python
ready) and `fresh_page` (function: a new page for tests that need their own boot). Every page
goes through `guard`, which aborts and records any request leaving the server's origin; a
test that caused one fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.reference import MODEL_DIR, need
from tools.harness import App, launch, new_context, start_server, wait_final


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    """A folder the server also serves at /test-data/ (generated weights files)."""
    return tmp_path_factory.mktemp("test-data")


@pytest.fixture(scope="module")
def server(test_data):
    srv = start_server({"/test-data/": test_data})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


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


def new_page(browser, server, guard, enforce_csp: bool = False):
    context = browser.new_context() if enforce_csp else new_context(browser)
    guard.attach(context)
    page = context.new_page()
    page.errors = []  # uncaught page errors, for assertions
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def boot(browser, server, guard, query: str = "?model=none") -> App:
    """A new page booted with `query` (e.g. "?model=none&limits=safari"), Python ready and the
    demo kernel run; close it with `app.page.context.close()`."""
    page = new_page(browser, server, guard)
    page.goto(server.url + query)
    state = wait_final(page)
    assert state == "ready", f"page ended in state {state!r}: {page.evaluate('pybridge.error')}"
    if "gpu=none" not in query:  # a Chromium without WebGPU would pass on numpy (found in review)
        device = page.evaluate("pybridge.device")
        assert device == "gpu", (f"the page runs its kernels on {device!r}, not WebGPU: "
                                 f"{page.evaluate('pybridge.noWebGPU')}")
    return App(page)


@pytest.fixture(scope="module")
def app(browser, server, guard):
    """The page booted without the demo model (?model=none), so tests own the GPU."""
    booted = boot(browser, server, guard)
    yield booted
    booted.page.context.close()


@pytest.fixture
def fresh_page(browser, server, guard):
    page = new_page(browser, server, guard)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def model(page):
    """`model` in the module's `page` (its own fixture): MiniLM float16, freed at the end."""
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    page.py("from pybridge.minilm import MiniLM\n"
            "model = await MiniLM.load('/models/all-MiniLM-L6-v2/', dtype='float16')")
    yield
    page.py("model.free()")
