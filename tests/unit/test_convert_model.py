"""tools/convert_model.py's manifest: each weights file's per-block sha256 ("blocks", what the
browser checks with WebCrypto) equals hashlib's over the file; a build whose manifest has no
blocks (or blocks of another size) gets them on the next set-up without converting again,
and a set-up of a build that is up to date writes nothing."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.reference import MODEL_DIR, need
from tools import convert_model

WEIGHTS = ("model-f32.safetensors", "model-f16.safetensors")


def hashlib_blocks(data: bytes, size: int) -> list[str]:
    """The independent reference: hashlib over each `size` bytes (the last block shorter)."""
    return [hashlib.sha256(data[i:i + size]).hexdigest() for i in range(0, len(data), size)]


def test_the_built_manifest_lists_hashlibs_blocks_of_each_weights_file():
    need("the converted model", (MODEL_DIR / "manifest.json").exists())
    manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
    for name in WEIGHTS:
        entry = manifest["files"][name]
        data = (MODEL_DIR / name).read_bytes()
        assert entry["blocks"]["bytes"] == convert_model.HASH_BLOCK_BYTES == 4 << 20
        assert entry["blocks"]["sha256"] == hashlib_blocks(data, 4 << 20), name
        assert len(entry["blocks"]["sha256"]) > 1
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert "blocks" not in manifest["files"]["vocab.txt"]  # fetched whole, checked by config.json


@pytest.fixture
def build(tmp_path, monkeypatch):
    """A converted model in tmp_path as an older set-up left it: files and a manifest with
    the whole-file sha256 only. Converting again (fetching the source) fails the test."""
    out = tmp_path / "build" / "site" / "models" / "all-MiniLM-L6-v2"
    out.mkdir(parents=True)
    files = {}
    for name, size in (("model-f32.safetensors", 300_000), ("model-f16.safetensors", 150_000),
                       ("vocab.txt", 1000)):
        data = os.urandom(size)
        (out / name).write_bytes(data)
        files[name] = {"bytes": size, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"name": "all-MiniLM-L6-v2", "converter": convert_model.CONVERTER_VERSION,
                "source": {"package": convert_model.SOURCE_PACKAGE,
                           "sha256": convert_model.SOURCE_WHEEL_SHA256},
                "config": {"hidden_size": 384}, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    calls = {"config": 0}

    def converted_again():
        raise AssertionError("converted again")

    monkeypatch.setattr(convert_model, "ROOT", tmp_path)
    monkeypatch.setattr(convert_model, "OUT", out)
    monkeypatch.setattr(convert_model, "HASH_BLOCK_BYTES", 65536)
    monkeypatch.setattr(convert_model, "fetch_source", converted_again)
    monkeypatch.setattr(convert_model, "write_config",
                        lambda: calls.__setitem__("config", calls["config"] + 1))
    return out, manifest, calls


def test_a_manifest_without_blocks_gets_them_without_converting_again(build):
    out, before, calls = build
    assert convert_model.main([]) == 0
    after = json.loads((out / "manifest.json").read_text())
    for name in WEIGHTS:
        blocks = after["files"][name].pop("blocks")
        assert blocks == {"bytes": 65536,
                          "sha256": hashlib_blocks((out / name).read_bytes(), 65536)}, name
    assert after == before  # nothing else changed
    assert calls["config"] == 1  # config.json lists the manifest's new sha256


def test_a_set_up_of_an_up_to_date_build_writes_nothing(build):
    out, _, calls = build
    assert convert_model.main([]) == 0
    text, mtime = (out / "manifest.json").read_text(), (out / "manifest.json").stat().st_mtime_ns
    assert convert_model.main([]) == 0
    assert (out / "manifest.json").read_text() == text
    assert (out / "manifest.json").stat().st_mtime_ns == mtime


def test_blocks_of_another_size_are_listed_again(build, monkeypatch):
    out, _, _ = build
    assert convert_model.main([]) == 0
    monkeypatch.setattr(convert_model, "HASH_BLOCK_BYTES", 32768)
    assert convert_model.main([]) == 0
    after = json.loads((out / "manifest.json").read_text())
    data = (out / "model-f16.safetensors").read_bytes()
    assert after["files"]["model-f16.safetensors"]["blocks"] == {
        "bytes": 32768, "sha256": hashlib_blocks(data, 32768)}


def test_a_weights_file_that_no_longer_matches_its_sha256_is_converted_again(build):
    # blocks are only listed for the bytes the manifest's sha256 vouches for
    out, _, _ = build
    data = bytearray((out / "model-f16.safetensors").read_bytes())
    data[70_000] ^= 1
    (out / "model-f16.safetensors").write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="converted again"):
        convert_model.main([])
    assert "blocks" not in json.loads((out / "manifest.json").read_text())["files"][
        "model-f16.safetensors"]
