"""The race's Python side natively (pybridge.demo.race_tokens and race_round, against HF
tokenizers and sentence-transformers), and its set-up's place in config.json (tools/race.py
writes race/race.json; tools/assets.write_config lists it)."""

from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest

import pybridge
from pybridge import demo
from pybridge.cpu import CpuBackend
from pybridge.checks.selftest import MIN_COSINE
from pybridge.minilm import MiniLM
from tests.reference import MODEL_DIR, cosine, need, st_embeddings
from tests.unit.test_tokenizer import hf, model_files  # noqa: F401  (fixtures: HF tokenizers)
from tools import assets

TEXTS = ["How do I cook pasta?", "Boil water, add salt, then cook the spaghetti.",
         "The GPU multiplies matrices very quickly.", "ok"]


async def test_both_sides_get_the_same_ids_and_pybridge_answers_like_sentence_transformers(
        backend, hf, tmp_path, monkeypatch):  # noqa: F811 (the hf fixture)
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    model = await MiniLM.load(MODEL_DIR, dtype="float32", backend=backend)
    monkeypatch.setattr(demo, "_model", model)
    try:
        tokens = demo.race_tokens(TEXTS)
        await demo.race_round(TEXTS)  # the warm-up the page runs: the shape's plan is built
        lap = await demo.race_round(TEXTS)
        # a naive default (the editor can set one) does not slow the race: its laps keep the
        # zero-copy path (found in review)
        pybridge.set_default_paths("naive", "naive")
        try:
            after_naive = await demo.race_round(TEXTS)
        finally:
            pybridge.set_default_paths(None, None)
    finally:
        model.free()
    assert after_naive["copies"] == lap["copies"]
    assert not any("naive" in paths for paths in lap["copies"].values()), lap["copies"]
    if not isinstance(backend, CpuBackend):  # a GPU: the ids up once, the vectors back once
        assert sum(c["copies"] for c in lap["copies"]["readback"].values()) == 1
    B, T = tokens["shape"]
    ids = np.array(tokens["ids"]).reshape(B, T)
    encoded = hf.encode_batch(TEXTS)
    assert B == len(TEXTS) and tokens["lengths"] == [len(e.ids) for e in encoded]
    for row, e in zip(ids, encoded):  # each row: HF's ids, then zeros (masked)
        assert row[:len(e.ids)].tolist() == e.ids and not row[len(e.ids):].any()
    longest = max(tokens["lengths"])
    assert T % model.pad_tokens_to == 0 and longest <= T < longest + model.pad_tokens_to
    assert tokens["dtype"] == "float32" and tokens["agreeAt"] == MIN_COSINE["float32"]
    vectors = np.array(lap["vectors"], np.float32).reshape(lap["shape"])
    assert vectors.shape == (B, 384)
    assert cosine(vectors, st_embeddings(tmp_path, TEXTS)).min() >= MIN_COSINE["float32"]
    assert lap["ms"] >= lap["tokenizeMs"] > 0


async def test_the_race_refuses_what_it_cannot_race(monkeypatch):
    monkeypatch.setattr(demo, "_model", None)
    with pytest.raises(RuntimeError, match="not loaded"):
        demo.race_tokens(["a"])
    monkeypatch.setattr(demo, "_model", object())  # checked before the model is used
    for bad in ([], "a sentence", ["a", 3], None):
        with pytest.raises(ValueError, match="non-empty list of strings"):
            demo.race_tokens(bad)
        with pytest.raises(ValueError, match="non-empty list of strings"):
            await demo.race_round(bad)
    with pytest.raises(ValueError, match=f"at most {demo.RACE_MAX_SENTENCES} sentences, got 257"):
        demo.race_tokens(["a"] * (demo.RACE_MAX_SENTENCES + 1))


def test_config_names_the_race_only_once_it_is_set_up(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "pyodide" / assets.PYODIDE_VERSION).mkdir(parents=True)
    (site / "pyodide" / assets.PYODIDE_VERSION / "pyodide.mjs").write_bytes(b"core")
    monkeypatch.setattr(assets, "SITE", site)
    assets.write_config()
    config = json.loads((site / "config.json").read_text())
    assert "race" not in config and not any(k.startswith("race/") for k in config["integrity"])

    race = site / "race"
    race.mkdir()
    files = {"race/ort.webgpu.min.mjs": b"export const x = 1;", "race/m.onnx": bytes(range(256))}
    for name, data in files.items():
        (site / name).write_bytes(data)
    about = {"ortVersion": "9.9.9", "module": "race/ort.webgpu.min.mjs", "model": "race/m.onnx",
             "modelBytes": 256, "dtype": "float32"}
    (race / "race.json").write_text(json.dumps(about))
    assets.write_config()
    config = json.loads((site / "config.json").read_text())
    assert config["race"] == about
    data = files["race/m.onnx"]  # the model is fetched with its sha256 as its integrity
    assert config["integrity"]["race/m.onnx"] == \
        "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()

    # a race.json whose files are gone (found in review: every set-up failed with a traceback)
    (site / "race/m.onnx").unlink()
    assets.write_config()
    config = json.loads((site / "config.json").read_text())
    assert "race" not in config and "race/m.onnx" not in config["integrity"]
