"""WebKit fixtures: the pages the Playwright tests open, driven through WebDriver
(tools/webdriver.py): WebKitGTK's MiniBrowser under Xvfb here, Safari on a Mac
(`python3 tools/dev.py test --browser safari`).

Layers, each started once for the whole run: `driver` (one WebDriver server, and Xvfb) ->
`server` -> `app` (one browser session, the page booted with ?gpu=none&model=none, Python
ready); `fresh_page` (function) is a new window in that session. Once, not once per module
as in tests/e2e/: Pyodide boots in 50-100 s on JavaScriptCore here (Chromium: about 20 s on
the same machine), so the modules share one page and its Python. `app`
is a tools/harness.App over a WebDriver session, so test functions written for Chromium
(tests/e2e/) that use only `app.py`, `app.state` and `app.page.evaluate` run here unchanged:
the test modules import them. WebKitGTK has no WebGPU on Linux and JavaScriptCore no JSPI, so
this job tests everything but WGSL: the page's boot, Python, the data path's CPU side and the
model on the CPU backend.
"""

from __future__ import annotations

import ast

import pytest

from tools.harness import BOOT_TIMEOUT_MS, FINAL_STATES, App, start_server
from tools.webdriver import BROWSER, Driver, Page

FINAL = list(ast.literal_eval(FINAL_STATES))  # the page's final states, as harness waits on them


@pytest.fixture(scope="session")
def driver():
    d = Driver.start(BROWSER)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def test_data(tmp_path_factory):
    """A folder the server also serves at /test-data/ (generated weights files)."""
    return tmp_path_factory.mktemp("test-data")


@pytest.fixture(scope="session")
def server(test_data):
    srv = start_server({"/test-data/": test_data})
    yield srv
    srv.stop()


def open_page(driver, url: str) -> Page:
    """A new browser session on `url`, waited until the page reaches a final state."""
    session = driver.new_session()
    try:
        session.navigate(url)
        page = Page(session)
        page.wait_for_state(FINAL, timeout_s=BOOT_TIMEOUT_MS / 1000)
    except BaseException:
        session.delete()
        raise
    return page


@pytest.fixture(scope="session")
def app(driver, server):
    """The page booted on the CPU backend (?gpu=none), without the demo model (?model=none)."""
    page = open_page(driver, server.url + "?gpu=none&model=none")
    try:
        state = page.evaluate("pybridge.state")
        assert state == "ready", f"page ended in state {state!r}: {page.evaluate('pybridge.error')}"
        yield App(page)
    finally:
        page.session.delete()


FOREIGN = """() => {
    const urls = [...performance.getEntriesByType("resource").map((e) => e.name),
                  ...((window.pybridge && pybridge.workerResources) || []).map((e) => e.name)];
    return urls.filter((u) => !u.startsWith(location.origin + "/") && !/^(data|blob):/.test(u));
}"""


@pytest.fixture
def fresh_page(app):
    """A new window in `app`'s browser session (Safari allows one session at a time), for a
    test that opens a page of its own; closed afterwards."""
    session = app.page.session
    previous = session.new_window()
    try:
        page = Page(session)
        yield page
        assert page.evaluate(FOREIGN) == [], "the page requested resources outside its origin"
    finally:
        session.close_window(previous)


@pytest.fixture(autouse=True)
def _no_foreign_requests_or_errors(request):
    """Fail a test that used `app` if the page fetched anything off its origin (resource
    timing of the page and of the worker's boot) or had an uncaught error."""
    yield
    if "app" not in request.fixturenames:
        return
    page = request.getfixturevalue("app").page
    assert page.evaluate(FOREIGN) == [], "the page requested resources outside its origin"
    assert page.session.errors() == [], "uncaught errors in the page"
