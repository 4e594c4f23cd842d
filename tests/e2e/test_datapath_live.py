"""The data path, live: each demo search lists the worker's copies per direction, on the
zero-copy path or on the naive one (the switch under the results), with the same answer; the
page draws the path and keeps both numbers side by side."""

from __future__ import annotations

import numpy as np

from tests.reference import MODEL_DIR, need
from tests.unit.test_tokenizer import hf, model_files  # noqa: F401  (fixtures: HF tokenizers)


def searched(page, path: str | None = None) -> dict:
    page.evaluate("pybridge.lastSearch = null")
    if path:
        page.check(f"input[name=path][value={path}]")  # the switch searches again
    else:
        page.click("#search-button")
    page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=300_000)
    return page.evaluate("pybridge.lastSearch")


def total(copies: dict, direction: str, skip=("uniform",)) -> tuple[int, int]:
    rows = [v for k, v in copies.get(direction, {}).items() if k not in skip]
    return sum(r["copies"] for r in rows), sum(r["bytes"] for r in rows)


def test_the_switch_moves_the_same_bytes_with_more_copies(fresh_page, server, hf):  # noqa: F811
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    fresh_page.goto(server.url)
    fresh_page.wait_for_function("pybridge.lastSearch || pybridge.error", timeout=600_000)
    zero = searched(fresh_page)  # the shape's plan exists now: only the data moves
    texts = [fresh_page.input_value("#query")] + [
        s.strip() for s in fresh_page.input_value("#sentences").split("\n") if s.strip()]
    # what the bytes are, from HF tokenizers here: int32 ids (B x T, T the longest padded to
    # a multiple of 16) and int32 lengths; back, B float32 vectors of 384
    longest = max(len(e.ids) for e in hf.encode_batch(texts))
    B, T = len(texts), -(-longest // 16) * 16
    assert zero["path"] == "zero-copy"
    assert zero["copies"]["upload"]["view"] == {"copies": 2, "bytes": 4 * B * T + 4 * B}, zero["copies"]
    assert total(zero["copies"], "readback") == (1, B * 384 * 4)
    naive = searched(fresh_page, "naive")
    assert naive["path"] == "naive" and set(naive["copies"]["upload"]) == {"naive"}
    up, back = total(naive["copies"], "upload"), total(naive["copies"], "readback")
    assert up[0] > 2 and up[1] >= 2 * (4 * B * T + 4 * B)  # more copies of the same bytes
    assert back[0] > 1 and back[1] >= 2 * B * 384 * 4
    # the same answer on both paths, bit for bit
    assert [x["text"] for x in naive["ranked"]] == [x["text"] for x in zero["ranked"]]
    np.testing.assert_array_equal([x["score"] for x in naive["ranked"]],
                                  [x["score"] for x in zero["ranked"]])
    table = fresh_page.locator("#dp-table").inner_text()
    assert f"2 copies · {4 * B * T + 4 * B} B" in table, table
    assert f"{up[0]} copies" in table and fresh_page.evaluate("document.body.dataset.path") == "naive"
    assert fresh_page.locator("#dp-upload b").inner_text().startswith(f"{up[0]} copies")
    back_zero = searched(fresh_page, "zero-copy")  # switched back: the default paths again
    assert set(back_zero["copies"]["upload"]) == {"view"}
    assert fresh_page.evaluate("pybridge.run('import pybridge.backend as b; b._default_paths')") == {
        "upload": None, "readback": None}
    # side by side at the same moment, and with the worker's default switched to naive (as a
    # snippet may): each search on its own path, counting its own copies (found in review: a
    # naive search sent every other task down the naive path, and counted theirs)
    both = fresh_page.evaluate("""async () => {
        const texts = ["Boil water.", "Python is a language.", "The GPU multiplies."];
        const [a, b] = await Promise.all([pybridge.search("pasta", texts, "naive"),
                                          pybridge.search("pasta", texts, "zero-copy")]);
        await pybridge.run("import pybridge; pybridge.set_default_paths('naive', 'naive')");
        const c = await pybridge.search("pasta", texts, "zero-copy");
        await pybridge.run("import pybridge; pybridge.set_default_paths(None, None)");
        return [a, b, c].map((r) => [r.path, Object.keys(r.copies.upload).filter((p) => p !== "uniform"),
                                     Object.keys(r.copies.readback), r.ranked.map((x) => x.score)]);
    }""")
    assert [(p, up, back) for p, up, back, _ in both] == [
        ("naive", ["naive"], ["naive"]), ("zero-copy", ["view"], ["ring"]), ("zero-copy", ["view"], ["ring"])], both
    assert both[0][3] == both[1][3] == both[2][3]
    assert fresh_page.errors == []
