"""Presenter mode (?present): one panel at a time, scaled to the window with no scrolling,
driven by the keyboard (arrows move, Space runs the panel's action, keys typed into a field
stay there); the normal page is untouched."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import new_page
from tests.reference import MODEL_DIR, need

MAIN_PANELS = ["boot-panel", "model-panel", "corpus-panel", "timeline-panel", "editor-panel",
               "result-panel", "gpu-panel"]


@pytest.fixture
def page(browser, server, guard):
    page = new_page(browser, server, guard)
    page.set_viewport_size({"width": 1920, "height": 1080})
    yield page
    page.context.close()


def visible(page) -> list[str]:
    return [p for p in MAIN_PANELS if page.locator(f"#{p}").is_visible()]


def state(page) -> dict:
    return page.evaluate("""({ ...pybridge.present, scroll: document.scrollingElement.scrollHeight,
        height: innerHeight, nav: document.querySelector('#present-nav').textContent })""")


def test_presenter_mode_is_driven_by_the_keyboard(page, server):
    page.goto(server.url + "?present&model=none")
    page.wait_for_function("pybridge.state === 'ready' || pybridge.state === 'error'", timeout=300_000)
    page.wait_for_timeout(100)  # the last refit, one frame after the last change
    s = state(page)
    assert s["id"] == "boot-panel" and s["count"] == 4, s  # the model's panels are off
    assert visible(page) == ["boot-panel"] and s["scroll"] <= s["height"] and s["zoom"] > 1.2, s
    assert s["nav"].startswith("1 / 4 · Boot")
    page.keyboard.press("ArrowRight")
    s = state(page)
    assert s["id"] == "editor-panel" and visible(page) == ["editor-panel"], s
    page.keyboard.press(" ")  # runs the editor's code
    page.wait_for_function("pybridge.snippet", timeout=120_000)
    assert page.evaluate("pybridge.snippet.ok") is True
    assert state(page)["scroll"] <= s["height"]  # the output shown, still no scrolling
    page.focus("#editor-run")  # as a click leaves it: Space and Enter are the button's own
    assert page.evaluate("document.activeElement.id") == "editor-run"
    page.keyboard.press("ArrowRight")  # (found in review: a focused button swallowed them)
    s = state(page)
    assert s["id"] == "result-panel" and visible(page) == ["result-panel"], s
    assert s["scroll"] <= s["height"] and "space runs" in s["nav"]
    page.evaluate("pybridge.result = null")
    page.keyboard.press(" ")  # runs the kernel again
    page.wait_for_function("pybridge.result", timeout=120_000)
    assert page.evaluate("pybridge.result.ok") is True
    page.keyboard.press("End")
    assert state(page)["id"] == "gpu-panel" and visible(page) == ["gpu-panel"]
    page.keyboard.press("ArrowRight")  # past the last: stays
    assert state(page)["id"] == "gpu-panel"
    page.keyboard.press("Home")
    assert state(page)["id"] == "boot-panel"
    page.keyboard.press("ArrowLeft")  # before the first: stays
    assert state(page)["id"] == "boot-panel"
    assert page.errors == []


def test_space_searches_and_typing_stays_in_the_field(page, server):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    page.goto(server.url + "?present&corpus=2")
    page.wait_for_function("pybridge.corpus || pybridge.error", timeout=600_000)
    page.keyboard.press("ArrowRight")
    assert state(page)["id"] == "model-panel" and visible(page) == ["model-panel"]
    page.fill("#query", "")
    page.click("#query")
    page.keyboard.type("rain tomorrow")  # its space and arrows are the field's
    page.keyboard.press("ArrowLeft")
    assert page.input_value("#query") == "rain tomorrow" and state(page)["id"] == "model-panel"
    page.keyboard.press("Escape")  # leaves the field: keys drive the presenter again
    page.evaluate("pybridge.lastSearch = null")
    page.keyboard.press(" ")
    page.wait_for_function("pybridge.lastSearch", timeout=120_000)
    calls = page.evaluate("pybridge.lastSearch.ranked.length")
    assert calls == 7
    s = state(page)
    assert s["scroll"] <= s["height"]
    page.keyboard.press("ArrowRight")
    assert state(page)["id"] == "corpus-panel"
    page.keyboard.press(" ")  # embeds the corpus (a slice of 2)
    page.wait_for_function("pybridge.corpus.how === 'embedded' || pybridge.error", timeout=600_000)
    assert page.evaluate("pybridge.corpus.sentences") == 2
    assert page.errors == []


def test_the_normal_page_has_no_presenter(page, server):
    page.goto(server.url + "?model=none")
    page.wait_for_function("pybridge.state === 'ready' || pybridge.state === 'error'", timeout=300_000)
    assert page.evaluate("document.body.classList.contains('present')") is False
    assert page.locator("#present-nav").count() == 0
    assert page.evaluate("pybridge.present") is None
    assert {"boot-panel", "result-panel", "gpu-panel"} <= set(visible(page))
    page.keyboard.press("ArrowRight")  # nothing moves
    assert page.evaluate("pybridge.present") is None


def test_a_notice_above_the_panel_is_fitted_too(page, server):
    page.goto(server.url + "?present&model=none&gpu=none")  # the CPU's notice stays shown
    page.wait_for_function("pybridge.state === 'ready' || pybridge.state === 'error'", timeout=300_000)
    page.wait_for_timeout(100)
    for _ in range(4):
        fits = page.evaluate("""(() => {
            const p = document.querySelector('main .panel.current').getBoundingClientRect();
            const n = document.querySelector('#notice').getBoundingClientRect();
            const nav = document.querySelector('#present-nav').getBoundingClientRect();
            return [n.height > 0, p.bottom <= nav.top + 1 || document.body.classList.contains('present-scroll')];
        })()""")
        assert fits == [True, True], (state(page), fits)
        page.keyboard.press("ArrowRight")
