"""The race: the demo's texts through pybridge and ONNX Runtime Web in the same page, the same
token ids, lap after lap, drawn as they come, both answers checked against each other (and,
here, against sentence-transformers run natively). Where ONNX Runtime Web is not set up (the
default: `python3 tools/dev.py setup --race` fetches it), the panel says how to set it up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.reference import MODEL_DIR, cosine, need, st_embeddings
from tests.unit.test_tokenizer import hf, model_files  # noqa: F401  (fixtures: HF tokenizers)
from tools.race import RACE_DIR

SET_UP = (RACE_DIR / "race.json").is_file()


def demo_texts(page) -> list[str]:
    query = page.locator("#query").input_value().strip()
    lines = page.locator("#sentences").input_value().split("\n")
    return [query, *(x.strip() for x in lines if x.strip())]


def without_race(route):
    """config.json as a server without the race set up serves it."""
    config = json.loads(route.fetch().text())
    config.pop("race", None)
    config["integrity"] = {k: v for k, v in config["integrity"].items() if not k.startswith("race/")}
    route.fulfill(status=200, content_type="application/json", body=json.dumps(config))


def test_without_onnx_runtime_web_the_race_says_how_to_set_it_up(fresh_page, server):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    asked = []
    fresh_page.on("request", lambda r: ("/race/" in r.url or "race-worker" in r.url)
                  and asked.append(r.url))
    fresh_page.route("**/config.json", without_race)
    fresh_page.goto(server.url)
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    fresh_page.wait_for_function("pybridge.race", timeout=60_000)
    assert fresh_page.evaluate("pybridge.race.available") is False
    assert fresh_page.locator("#race-panel").is_visible()
    assert not fresh_page.locator("#race-run").is_visible()
    status = fresh_page.locator("#race-status").inner_text()
    assert "not set up" in status and "python3 tools/dev.py setup --race" in status, status
    fresh_page.evaluate("pybridge.runRace(1)")  # a race asked for anyway does nothing
    assert fresh_page.evaluate("pybridge.race.available") is False
    assert asked == [], asked  # neither ONNX Runtime Web nor its model was fetched
    assert fresh_page.errors == []


@pytest.mark.skipif(not SET_UP, reason="ONNX Runtime Web is not set up here: "
                    "python3 tools/dev.py setup --race")
def test_the_race_runs_both_checks_them_and_survives_a_damaged_model(
        fresh_page, server, hf, tmp_path):  # noqa: F811 (the hf fixture)
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    # float32 weights: the same model as the ONNX export, so the answers agree to rounding
    fresh_page.goto(server.url + "?dtype=float32")
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    assert fresh_page.locator("#race-run").is_visible()
    texts = demo_texts(fresh_page)

    # a model whose bytes are not the ones config.json lists: a clear line, the page goes on
    fresh_page.route("**/race/all-MiniLM-L6-v2.onnx",
                     lambda route: route.fulfill(status=200, body=b"not the model"))
    fresh_page.evaluate("pybridge.runRace(1)")
    r = fresh_page.evaluate("pybridge.race")
    assert "could not be read" in r["error"] and "setup --race" in r["error"], r["error"]
    assert fresh_page.locator("#race-status").inner_text().startswith("The race stopped:")
    assert fresh_page.locator("#race-run").inner_text() == "Race"
    fresh_page.unroute("**/race/all-MiniLM-L6-v2.onnx")

    # not beside other GPU work (its laps are timed): a search running refuses the race...
    said = fresh_page.evaluate("""async () => {
        document.querySelector('#search-button').click();  // the search starts at once
        await pybridge.runRace(1);
        return document.querySelector('#race-status').textContent; }""")
    assert said.startswith("Not now: a search still runs"), said
    assert fresh_page.evaluate("pybridge.race.available && !pybridge.race.running")
    fresh_page.wait_for_function("!document.querySelector('#search-button').disabled")
    # ... and a race running refuses a search; Stop ends the race at once
    fresh_page.evaluate("() => { pybridge.runRace(5); }")  # not awaited
    fresh_page.wait_for_function("document.querySelector('#race-status').textContent"
                                 ".startsWith('Lap ') || !pybridge.race.running", timeout=600_000)
    assert fresh_page.evaluate("pybridge.race.running"), (
        fresh_page.locator("#race-status").inner_text())
    before = fresh_page.evaluate("pybridge.lastSearch")
    fresh_page.click("#search-button")
    assert "The race is running" in fresh_page.locator("#search-timings").inner_text()
    assert fresh_page.locator("#race-run").inner_text() == "Stop"
    fresh_page.click("#race-run")
    fresh_page.wait_for_function("!pybridge.race.running", timeout=10_000)  # at once, not a lap later
    assert fresh_page.locator("#race-status").inner_text().startswith("Stopped after")
    assert fresh_page.evaluate("pybridge.lastSearch") == before  # the search did not run

    # the real model: the next race loads it in a new worker
    laps = 2
    fresh_page.evaluate(f"pybridge.runRace({laps})")
    r = fresh_page.evaluate("pybridge.race")
    assert r.get("error") is None, r.get("error")
    assert r["dtype"] == "float32" and len(r["laps"]) == laps
    assert all(lap["pybridgeMs"] > 0 and lap["ortMs"] > 0 for lap in r["laps"])

    # the same token ids: one batch of the demo's texts, padded to a multiple of 16
    longest = max(len(e.ids) for e in hf.encode_batch(texts))
    assert r["shape"] == [len(texts), math.ceil(longest / 16) * 16]

    # both answers against sentence-transformers, run here; and the page's own check of the
    # two against each other recomputed from the vectors it compared
    ours = np.array(r["vectors"]["pybridge"], np.float32).reshape(len(texts), 384)
    ort = np.array(r["vectors"]["ort"], np.float32).reshape(len(texts), 384)
    ref = st_embeddings(tmp_path, texts)
    assert cosine(ours, ref).min() > 0.9999 and cosine(ort, ref).min() > 0.9999
    assert r["laps"][-1]["least"] == pytest.approx(cosine(ours, ort).min(), abs=1e-6)
    assert r["laps"][-1]["maxDiff"] == pytest.approx(np.abs(ours - ort).max(), rel=1e-5)
    assert r["agree"] is True and r["least"] >= 0.9999 and r["agreeAt"] == 0.9999
    assert r["pybridgeMedianMs"] == pytest.approx(np.median([lap["pybridgeMs"] for lap in r["laps"]]))
    assert r["ortMedianMs"] == pytest.approx(np.median([lap["ortMs"] for lap in r["laps"]]))
    assert fresh_page.locator("#race-summary").inner_text().startswith("Same answers")

    # drawn: two bars a lap, as tall as their times (the slowest lap's bar fills the chart)
    assert fresh_page.locator("#race-chart .lap").count() == laps
    heights = fresh_page.evaluate(
        "[...document.querySelectorAll('#race-chart i')].map(b => parseFloat(b.style.height))")
    times = [t for lap in r["laps"] for t in (lap["pybridgeMs"], lap["ortMs"])]
    assert heights == pytest.approx([100 * t / max(times) for t in times], rel=1e-3)
    status = fresh_page.locator("#race-status").inner_text()
    assert f"{laps} laps" in status and "faster" in status, status
    assert fresh_page.errors == []


@pytest.mark.skipif(not SET_UP, reason="ONNX Runtime Web is not set up here: "
                    "python3 tools/dev.py setup --race")
def test_the_default_page_races_its_float16_weights_and_says_so(fresh_page, server, tmp_path):
    """The presenter's page: pybridge's float16 weights against ONNX Runtime Web's float32, the
    float16 threshold, and the weights named beside the verdict."""
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    fresh_page.goto(server.url)
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    texts = demo_texts(fresh_page)
    fresh_page.evaluate("pybridge.runRace(1)")
    r = fresh_page.evaluate("pybridge.race")
    assert r.get("error") is None, r.get("error")
    assert r["dtype"] == "float16" and r["agreeAt"] == 0.999 and r["agree"] is True
    ref = st_embeddings(tmp_path, texts)
    for side in ("pybridge", "ort"):
        got = np.array(r["vectors"][side], np.float32).reshape(len(texts), 384)
        assert cosine(got, ref).min() > (0.999 if side == "pybridge" else 0.9999), side
    status = fresh_page.locator("#race-status").inner_text()
    assert "(pybridge on float16 weights, ONNX Runtime Web on float32)" in status, status
    assert "?dtype=float32 gives pybridge the same weights" in \
        fresh_page.locator("#race-summary").inner_text()
    assert fresh_page.errors == []
