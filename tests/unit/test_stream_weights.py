"""web/bridge.js streamWeights under Node (as tools/gpu runs it), with a scripted fetch:
a dropped connection resumes with a Range request and If-Range, a body that ends early
resumes too, a server that ignores Range or whose file changed makes it start over once,
and what cannot be mended raises a DownloadError naming the file. The bytes that land in the
"mapped" buffers and the streamed SHA-256 are checked against the file and hashlib; so are the
per-block digests (WebCrypto, one block at a time) against hashlib over the same blocks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "unit" / "stream_weights_cases.mjs"
BLOCK = 65536  # stream_weights_cases.mjs's block size for the "blocks: ..." cases


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "weights.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)
    node = shutil.which("node")
    assert node, "Node is missing: python3 tools/dev.py setup installs it (Debian's npm)"
    proc = subprocess.run([node, str(CASES), str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return data, {r["case"]: r for r in map(json.loads, proc.stdout.splitlines())}


def landed(data: bytes, r: dict) -> bool:
    """The three "tensors" (file bytes 64.., in thirds) hold exactly the file's bytes."""
    got = b"".join(base64.b64decode(x) for x in r["data"])
    return got == data[64:]


@pytest.mark.parametrize("case, resumes, ranges", [
    ("clean", 0, [None]),
    ("drop once", 1, [None, "bytes=102400-"]),
    ("ends early", 1, [None, "bytes=53248-"]),
    ("drops thrice with progress", 3, [None, "bytes=40960-", "bytes=81920-", "bytes=122880-"]),
    # a whole file instead of the rest: read from its start (once)
    ("range ignored", 1, [None, "bytes=61440-"]),
    # not the rest of the same file: start over (once), from byte 0, without Range
    ("file changed", 1, [None, "bytes=61440-", None]),
    ("wrong offset", 1, [None, "bytes=61440-", None]),
    # found in review: no ETag nor Last-Modified, so nothing shows the rest is the same
    # version: start over rather than stitch
    ("no validator", 1, [None, "bytes=61440-", None]),
])
def test_the_file_lands_whole(results, case, resumes, ranges):
    data, rs = results
    r = rs[case]
    assert r["ok"], r
    assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["bytes"] == len(data)
    assert r["resumes"] == resumes
    assert [q["range"] for q in r["requests"]] == ranges
    if_range = None if case == "no validator" else '"v1"'  # the same version only
    assert all(q["ifRange"] == if_range for q in r["requests"] if q["range"])
    assert landed(data, r)


@pytest.mark.parametrize("case, message", [
    ("always drops", "the download of weights.safetensors stopped at 0.1 MB of 0.3 MB "
                     "(network error); 2 retries resuming from there failed"),
    ("missing", "HTTP 404"),
    ("missing, from the worker's fetch", "HTTP 404"),  # the page's path (found in review)
    ("too long", "more than the 300000 bytes its header promised"),
])
def test_what_cannot_be_mended_is_a_download_error_naming_the_file(results, case, message):
    r = results[1][case]
    assert not r["ok"] and r["name"] == "DownloadError"
    assert r["message"] == f"/models/x/weights.safetensors: {message}"
    if case != "always drops":
        assert len(r["requests"]) == 1  # no retry for what a retry cannot mend


@pytest.mark.parametrize("case, error", [
    ("progress raises", "Error: callback"),
    ("buffer detached", "TypeError: "),
])
def test_what_is_not_the_network_is_not_retried(results, case, error):
    # found in review: a progress callback that raised, or a mapped buffer gone (a lost
    # device), counted as a dropped connection: a Range request per chunk, then a
    # DownloadError hiding the real error
    r = results[1][case]
    assert not r["ok"] and f"{r['name']}: {r['message']}".startswith(error), r
    assert len(r["requests"]) == 1


def hashlib_blocks(data: bytes, size: int) -> list[str]:
    """The independent reference: hashlib over each `size` bytes of the file (the last shorter)."""
    return [hashlib.sha256(data[i:i + size]).hexdigest() for i in range(0, len(data), size)]


@pytest.mark.parametrize("case, resumes, ranges", [
    ("blocks: clean", 0, [None]),
    # the partial block (100000 - 65536 bytes of block 1) goes on from where it stopped
    ("blocks: drop once", 1, [None, "bytes=102400-"]),
    ("blocks: drop at a block's end", 1, [None, f"bytes={BLOCK}-"]),
    ("blocks: drops thrice with progress", 3,
     [None, "bytes=40960-", "bytes=81920-", "bytes=122880-"]),
    # read again from byte 0 after two whole blocks were digested: their digests, and the
    # partial third block, are dropped
    ("blocks: range ignored", 1, [None, "bytes=143360-"]),
    ("blocks: file changed", 1, [None, "bytes=143360-", None]),
    # not a secure context (a plain-http LAN page): each block through sha256.js instead
    ("blocks: no WebCrypto, drop once", 1, [None, "bytes=102400-"]),
])
def test_block_digests_equal_hashlib_over_the_same_blocks(results, case, resumes, ranges):
    data, rs = results
    r = rs[case]
    assert r["ok"], r
    assert r["blocks"] == hashlib_blocks(data, BLOCK) and len(r["blocks"]) == 5
    assert r["sha256"] is None  # the whole-file JS hash is not run beside the blocks
    assert r["blockHash"] == ("sha256.js" if "no WebCrypto" in case else "WebCrypto")
    assert r["resumes"] == resumes and r["bytes"] == len(data)
    assert [q["range"] for q in r["requests"]] == ranges
    assert landed(data, r)


def test_a_block_webcrypto_cannot_hash_is_a_named_download_error(results):
    # found in review: the raw OperationError reached Python as it was
    r = results[1]["blocks: WebCrypto fails"]
    assert not r["ok"] and r["name"] == "DownloadError", r
    assert "weights.safetensors" in r["message"] and "WebCrypto" in r["message"], r


def test_a_block_larger_than_the_file_is_the_whole_file(results):
    data, rs = results
    r = rs["blocks: one block larger than the file"]
    assert r["ok"] and r["blocks"] == [hashlib.sha256(data).hexdigest()], r


def test_a_corrupted_byte_in_a_later_block_is_refused_naming_its_range():
    # pybridge.weights' check of what streamWeights returns: one byte flipped in block 3 of 5
    # (not the first): the error names the file and that block's byte range
    from pybridge.errors import IntegrityError
    from pybridge.weights import check_blocks

    data = bytearray(os.urandom(300_000))
    blocks = {"bytes": BLOCK, "sha256": hashlib_blocks(bytes(data), BLOCK)}
    check_blocks("/m/w.safetensors", hashlib_blocks(bytes(data), BLOCK), blocks, len(data))
    data[3 * BLOCK + 1234] ^= 0x10
    with pytest.raises(IntegrityError) as e:
        check_blocks("/m/w.safetensors", hashlib_blocks(bytes(data), BLOCK), blocks, len(data))
    assert str(e.value).startswith(
        f"/m/w.safetensors: bytes {3 * BLOCK}-{4 * BLOCK - 1} of 300000 (block 3 of 5) have "
        f"sha256 {hashlib.sha256(data[3 * BLOCK:4 * BLOCK]).hexdigest()}")
    assert str(e.value).endswith("no tensor was kept")


@pytest.mark.parametrize("blocks, why", [
    ({"bytes": BLOCK, "sha256": ["0" * 64] * 4}, "lists 4 blocks of 65536 bytes; a file of "
                                                 "300000 bytes has 5"),
    ({"bytes": 0, "sha256": []}, "block size 0"),
    ({"sha256": ["0" * 64]}, "block size None"),
    ({"bytes": BLOCK, "sha256": ["xyz"] * 5}, "not a sha256 hex digest: 'xyz'"),
])
def test_a_block_list_that_cannot_be_this_file_is_refused_before_streaming(blocks, why):
    from pybridge.weights import check_block_list

    with pytest.raises(ValueError, match="^/m/w.safetensors: ") as e:
        check_block_list("/m/w.safetensors", blocks, 300_000)
    assert why in str(e.value)
