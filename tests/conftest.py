"""Test capability, decided once for the whole run.

Browser tests need their browser (tests/e2e/: Debian's Chromium, PYBRIDGE_CHROMIUM, default
/usr/bin/chromium; tests/webkit/: WebKitWebDriver + MiniBrowser + Xvfb, or safaridriver when
PYBRIDGE_WEBKIT_BROWSER=safari) and the vendored assets (build/site/). A missing piece is an
error naming it, so a run that could not test a browser never looks green; to run the rest
anyway, ask for the skip with `--skip-browser` (never in CI, CI=true, which must run every test).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.harness import CHROMIUM
from tools.webdriver import BROWSER as WEBKIT_BROWSER
from tools.webdriver import missing as webdriver_missing

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def browser_missing(browser: str = "chromium") -> str | None:
    """Why `browser`'s tests cannot run here, or None."""
    if browser != "chromium":  # tests/webkit/: WebKit or Safari through WebDriver
        why = webdriver_missing(browser)
        if why:
            return why
    elif not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (python3 tools/dev.py setup installs it)"
    if not (SITE / "config.json").exists():
        return "assets not vendored in build/site/ (python3 tools/dev.py setup)"
    return None


def pytest_addoption(parser):
    parser.addoption("--skip-browser", action="store_true",
                     help="skip the browser tests whose browser (Chromium, WebKit) or build/site/ "
                          "is missing (otherwise that is an error)")


def pytest_collection_modifyitems(config, items):
    for folder, browser in (("e2e", "chromium"), ("webkit", WEBKIT_BROWSER)):
        browser_items = [i for i in items if Path(i.fspath).is_relative_to(ROOT / "tests" / folder)]
        for item in browser_items:
            item.add_marker(pytest.mark.browser)
        why = browser_missing(browser)
        if why is None or not browser_items:
            continue
        if IN_CI:
            raise pytest.UsageError(f"CI must run the browser tests, but: {why}")
        if not config.getoption("--skip-browser"):
            raise pytest.UsageError(f"the browser tests cannot run: {why}. Fix that, or run the "
                                    "rest with --skip-browser")
        for item in browser_items:
            item.add_marker(pytest.mark.skip(reason=f"--skip-browser: {why}"))
