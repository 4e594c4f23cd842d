"""The self-test page (/selftest) in Chromium: on WebGPU (SwiftShader) every check passes, with
one row per check, and the JSON download is the report the page holds; on the CPU backend
(?gpu=none) the same checks pass and the page says it has no GPU; a stored reference made
wrong and a weights file made missing show as a failed row and an errored one, and the other
checks still run.

The three pages run at once, each in its own browser context: SwiftShader spends seconds
compiling each kernel, so this module takes about as long as the WebGPU page alone.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pybridge.checks.selftest import names, parse_reference
from tests.e2e.conftest import new_page
from tests.reference import MODEL_DIR, need
from tools.server import SECURITY_HEADERS

ROOT = Path(__file__).resolve().parents[2]
FINAL = "body[data-state=done], body[data-state=error]"
RUN_TIMEOUT_MS = 600_000
IDS = [c["id"] for c in names()]


def corrupted_reference() -> bytes:
    """web/selftest-reference.json with its first embedding negated (cosine -1)."""
    doc = json.loads((ROOT / "web" / "selftest-reference.json").read_text(encoding="utf-8"))
    _, vectors = parse_reference(json.dumps(doc))
    wrong = vectors.copy()
    wrong[0] = -wrong[0]
    doc["embeddings"] = base64.b64encode(wrong.astype("<f4").tobytes()).decode()
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def pages(browser, server, guard):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    gpu = new_page(browser, server, guard, enforce_csp=True)  # the server's CSP, as users get it
    gpu.violations = []
    gpu.on("console", lambda m: gpu.violations.append(m.text)
           if "Content Security Policy" in m.text else None)
    cpu = new_page(browser, server, guard)
    broken = new_page(browser, server, guard)
    # routes added after the guard's are tried first (the worker's fetches pass through them)
    broken.context.route("**/selftest-reference.json",
                         lambda route: route.fulfill(status=200, body=corrupted_reference(),
                                                     content_type="application/json"))
    broken.context.route("**/model-f32.safetensors", lambda route: route.fulfill(status=404))
    response = gpu.goto(server.url + "selftest")
    cpu.goto(server.url + "selftest?gpu=none")
    broken.goto(server.url + "selftest?gpu=none&only=pool,MiniLM&limits=safari")
    yield SimpleNamespace(gpu=gpu, cpu=cpu, broken=broken, response=response)
    for page in (gpu, cpu, broken):
        page.context.close()


def finish(page) -> dict:
    """The page's report once its run is over."""
    page.wait_for_selector(FINAL, timeout=RUN_TIMEOUT_MS)
    return page.evaluate("pybridge.report")


def rows(page) -> list[list[str]]:
    """[id, status, result cell] of each row of the table, in order."""
    return page.locator("#checks tr[data-id]").evaluate_all(
        "trs => trs.map(tr => [tr.dataset.id, tr.dataset.status, tr.cells[0].textContent])")


def test_every_check_passes_on_webgpu(pages):
    page = pages.gpu
    report = finish(page)
    assert page.evaluate("pybridge.state") == "done", report["error"]
    for name, value in SECURITY_HEADERS.items():  # /selftest is served as every page is
        assert pages.response.headers[name.lower()] == value
    failed = {c["id"]: c["error"] or c["detail"] for c in report["checks"] if c["status"] != "pass"}
    assert failed == {}
    assert [c["id"] for c in report["checks"]] == IDS
    assert rows(page) == [[i, "pass", "pass"] for i in IDS]  # a row per check, as it finished
    assert report["summary"]["passed"] == len(IDS) and report["summary"]["failed"] == 0
    assert page.locator("#summary").text_content().startswith(f"{len(IDS)} passed, 0 failed")
    assert report["backend"] == "gpu" and report["noWebGPU"] is None
    assert "subgroups" in report["features"]  # SwiftShader's: matmul_splitk_sg ran
    assert report["limits"]["maxComputeWorkgroupStorageSize"] >= 16384
    assert set(report["versions"]) == {"pyodide", "python", "numpy", "pybridge"}
    assert report["userAgent"] and report["date"] and report["adapter"]
    assert page.locator("#notice").is_hidden() and page.locator("#error").is_hidden()
    assert page.violations == [] and page.errors == []


def test_the_download_is_the_report(pages):
    page = pages.gpu
    report = finish(page)
    with page.expect_download() as download:
        page.click("#download")
    saved = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert download.value.suggested_filename.startswith("pybridge-selftest-")
    assert saved == report
    check = saved["checks"][IDS.index("layernorm 17x1000")]
    assert check["status"] == "pass" and check["error"] is None
    assert 0 <= check["maxError"] < 1e-4 and check["ms"] > 0 and check["tolerance"]
    assert set(check["timings"]) == {"kernel", "reference"}
    copies = saved["checks"][IDS.index("roundtrip float32(768, 1024)")]["detail"]
    assert copies == "upload staging 1 x 3145728 B, readback ring 1 x 3145728 B"


def test_the_cpu_backend_passes_every_check_and_says_so(pages):
    page = pages.cpu
    report = finish(page)
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert list(statuses) == IDS
    assert statuses.pop("subgroups probe") == "skip"  # numpy runs no WGSL
    assert set(statuses.values()) == {"pass"}, report["checks"]
    assert report["backend"] == "cpu" and "?gpu=none" in report["noWebGPU"]
    assert report["features"] == [] and report["adapter"]["vendor"] == "numpy"
    assert page.locator("#notice").is_visible()
    assert "CPU backend" in page.locator("#summary").text_content()
    assert page.errors == []


def test_a_failure_is_reported_as_one_and_the_other_checks_run(pages):
    page = pages.broken
    report = finish(page)
    got = {c["id"]: c for c in report["checks"]}
    assert list(got) == [i for i in IDS if "pool" in i or "MiniLM" in i]
    assert report["only"] == ["pool", "minilm"]
    f16, f32 = got["all-MiniLM-L6-v2 float16"], got["all-MiniLM-L6-v2 float32"]
    assert f16["status"] == "fail" and "lowest cosine -" in f16["detail"]
    assert f16["detail"].endswith("('A man is eating food.')")
    assert f16["maxError"] == pytest.approx(2, abs=1e-3)
    assert f32["status"] == "error" and "model-f32.safetensors" in f32["error"], f32
    assert [got[i]["status"] for i in got if "pool" in i] == ["pass", "pass"]
    assert rows(page) == [[i, c["status"], {"pass": "pass", "fail": "FAIL", "error": "ERROR"}[c["status"]]]
                          for i, c in got.items()]
    s = report["summary"]
    assert (s["total"], s["passed"], s["failed"], s["skipped"]) == (4, 2, 2, 0)
    assert page.evaluate("document.body.dataset.result") == "fail"
    assert page.locator("#summary.bad").text_content().startswith("2 passed, 2 failed of 4")
    assert np.isfinite(f16["ms"]) and page.errors == []
    # ?limits= cannot apply on the CPU backend, and the notice says so (found in review)
    assert "?limits= applies to a GPU only" in page.locator("#notice").text_content()
