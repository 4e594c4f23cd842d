"""pybridge's pure-Python parts in plain CPython: kernel lookup, dispatch grids, the checks
made before a view is taken, and the clear error of browser-only calls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pybridge
from pybridge.dispatch import MAX_WORKGROUPS_PER_DIM, WORKGROUP, grid_1d, shader_source
from pybridge.backend import prepare_upload

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_MODULES = ["_env", "dtypes", "accounting", "errors", "device", "backend", "view", "dispatch",
                    "browser", "native", "cpu", "weights", "_unicode_data", "tokenizer", "minilm",
                    "corpus", "demo", "checks"]


def test_package_docstring_lists_modules_in_data_path_order():
    listed = re.findall(r"^    (\w+)\s{2,}", pybridge.__doc__, flags=re.M)
    assert listed == EXPECTED_MODULES
    files = {p.stem for p in (ROOT / "pybridge").glob("*.py") if p.stem != "__init__"}
    files |= {p.parent.name for p in (ROOT / "pybridge").glob("*/__init__.py")}  # subpackages
    assert set(listed) == files  # every module listed, none missing


def test_every_kernel_file_is_found_and_has_its_header():
    for path in sorted((ROOT / "wgsl").glob("*.wgsl")):
        src = shader_source(path.stem)
        assert src == path.read_text()
        assert "numpy reference" in src and "bindings" in src and "@workgroup_size" in src


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no kernel named 'nope'"):
        shader_source("nope")


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, WORKGROUP * MAX_WORKGROUPS_PER_DIM,
                               WORKGROUP * MAX_WORKGROUPS_PER_DIM + 1, 50_000_000])
def test_grid_covers_n_within_limits(n):
    x, y, z = grid_1d(n)
    assert z == 1 and 1 <= x <= MAX_WORKGROUPS_PER_DIM and y <= MAX_WORKGROUPS_PER_DIM
    assert x * y * WORKGROUP >= n
    assert (x * (y - 1)) * WORKGROUP < max(n, 1)  # no whole row of workgroups wasted


def test_contiguous_arrays_are_taken_as_they_are():
    a = np.zeros(8, dtype=np.float32)
    arr, row = prepare_upload(a, copy=False)
    assert arr is a and row.name == "float32"


@pytest.mark.parametrize(
    "value, copy, error, match",
    [
        ([1.0, 2.0], True, TypeError, "takes a numpy.ndarray, got list"),
        (np.zeros(3, np.float64), True, TypeError, "unsupported dtype float64; accepted: float32, "
                                                   "float16, int32, uint32, uint8"),
        (np.zeros(3, ">f4"), True, TypeError, "big-endian"),
        (np.zeros((4, 4), np.float32)[:, 1], False, ValueError, "not C-contiguous and copy=False"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_message(value, copy, error, match):
    with pytest.raises(error, match=match):
        prepare_upload(value, copy=copy)


def test_browser_only_calls_say_so_in_cpython():
    from pybridge.view import view_info

    with pytest.raises(RuntimeError, match="needs Pyodide in a browser"):
        view_info(np.zeros(4, np.float32))


def test_dtype_table_is_consistent_with_numpy():
    from pybridge.dtypes import DTYPES, SAFETENSORS_DTYPES, lookup, padded

    for name, row in DTYPES.items():
        assert row.numpy == np.dtype(name) and row.itemsize == row.numpy.itemsize
        assert row.packed == (row.itemsize < 4) and row.align == 4
        assert lookup(name) is row and lookup(np.dtype(name)) is row
    assert set(SAFETENSORS_DTYPES.values()) == set(DTYPES)
    assert [padded(n) for n in (0, 1, 4, 5, 8)] == [4, 4, 4, 8, 8]


def test_count_copies_measures_only_its_block():
    from pybridge import accounting

    accounting.record("upload", "view", 1, 100)
    with pybridge.count_copies() as c:
        accounting.record("upload", "view", 1, 10)
        accounting.record("readback", "ring", 1, 20)
    accounting.record("upload", "view", 1, 1000)  # after the block: not counted
    assert c.copies("upload") == 1 and c.bytes("upload", "view") == 10
    assert c.as_dict() == {"readback": {"ring": {"copies": 1, "bytes": 20}},
                           "upload": {"view": {"copies": 1, "bytes": 10}}}
    assert pybridge.stats()["upload"]["view"]["bytes"] >= 1110


@pytest.mark.parametrize("env, args, rc, says", [
    ({}, [], 4, "the browser tests cannot run: Chromium not found at /nonexistent"),
    ({}, ["--skip-browser"], 0, " skipped"),
    ({"CI": "true"}, ["--skip-browser"], 4, "CI must run the browser tests"),
])
def test_a_missing_browser_fails_the_run_unless_the_skip_is_asked_for(env, args, rc, says):
    run_env = {k: v for k, v in os.environ.items() if k != "CI"}
    run_env.update(env, PYBRIDGE_CHROMIUM="/nonexistent")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/e2e/test_boot.py", *args], cwd=ROOT, env=run_env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == rc and says in p.stdout + p.stderr, p.stdout + p.stderr


def test_unload_model_frees_the_demo_model_once_and_searches_then_refuse():
    """The page unloads the demo model when the kernel self-check failed (found in review:
    the model stayed on the GPU and answered searches on kernels the page had just
    distrusted)."""
    import asyncio

    from pybridge import demo

    class Model:
        freed = 0

        def free(self):
            Model.freed += 1

    saved = demo._model
    try:
        demo._model = Model()
        demo.unload_model()
        demo.unload_model()  # nothing loaded: nothing to free
        assert Model.freed == 1 and demo._model is None
        with pytest.raises(RuntimeError, match="not loaded"):
            asyncio.run(demo.search("q", ["a"]))
    finally:
        demo._model = saved
