"""The GPU timeline: every kernel of one forward pass timed by the GPU's timestamps, drawn one
lane per layer; where the device cannot time them (the CPU backend), the page says why."""

from __future__ import annotations

from tests.reference import MODEL_DIR, need

# BERT's forward pass as MiniLM-L6 runs it: embeddings, 6 layers of attention and FFN, pooling
LAYER = ["qkv", "attention", "out", "layernorm", "ffn1", "ffn2", "layernorm"]
ROLES = ["embed", *LAYER * 6, "pool"]


def timed(page) -> dict:
    page.evaluate("pybridge.timeline = null")
    page.click("#timeline-run")
    page.wait_for_function("pybridge.timeline || pybridge.error", timeout=300_000)
    return page.evaluate("pybridge.timeline")


def test_every_kernel_of_a_forward_pass_is_timed_and_drawn(fresh_page, server):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    fresh_page.goto(server.url)
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    assert "timestamp-query" in fresh_page.evaluate("pybridge.gpu.features")  # SwiftShader has it
    r = timed(fresh_page)
    assert r["available"] is True, r
    assert [role for role, _, _ in r["steps"]] == ROLES
    assert r["shape"][0] == 8  # the query and the seven sentences, one batch
    assert all(us >= 0 for _, _, us in r["steps"]) and r["whole_us"] > 0
    total = sum(us for _, _, us in r["steps"])
    assert 0.2 < total / r["whole_us"] < 5  # timed alone against as one pass: the same work
    lanes = fresh_page.locator("#timeline .lane")
    assert lanes.count() == 8
    assert [lanes.nth(i).locator("span").inner_text() for i in (0, 1, 6, 7)] == [
        "embed", "layer 0", "layer 5", "pool"]
    assert fresh_page.locator("#timeline .lane").nth(1).locator(".seg").count() == 7
    legend = fresh_page.locator("#timeline-legend").inner_text()
    assert all(role in legend for role in set(ROLES))
    assert "44 kernels, batch 8" in fresh_page.locator("#timeline-status").inner_text()
    assert fresh_page.errors == []


def test_without_gpu_timestamps_the_page_says_why(fresh_page, server):
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    fresh_page.goto(server.url + "?gpu=none")
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    r = timed(fresh_page)
    assert r["available"] is False and "numpy" in r["why"]
    assert fresh_page.locator("#timeline-status").inner_text().startswith("Not available here:")
    assert fresh_page.locator("#timeline .lane").count() == 0
