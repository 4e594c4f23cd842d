"""pybridge's pure-Python parts in plain CPython: kernel lookup, dispatch grids, the checks
made before a view is taken, and the clear error of browser-only calls."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import pybridge
from pybridge.dispatch import MAX_WORKGROUPS_PER_DIM, WORKGROUP, grid_1d, shader_source
from pybridge.view import as_viewable

ROOT = Path(__file__).resolve().parents[2]


def test_package_docstring_lists_modules_in_data_path_order():
    listed = re.findall(r"^    (\w+)\s{2,}", pybridge.__doc__, flags=re.M)
    assert listed == ["_env", "device", "view", "upload", "dispatch", "readback", "demo"]
    for name in listed:
        assert (ROOT / "pybridge" / f"{name}.py").is_file(), name


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


def test_as_viewable_accepts_contiguous_arrays_without_copy():
    a = np.zeros(8, dtype=np.float32)
    assert as_viewable(a) is a


@pytest.mark.parametrize(
    "value, error, match",
    [
        ([1.0, 2.0], TypeError, "expected a numpy.ndarray, got list"),
        (np.zeros((4, 4), np.float32)[:, 1], ValueError, "not C-contiguous"),
        (np.zeros(3, np.uint8), ValueError, "multiple of 4 bytes"),
    ],
)
def test_as_viewable_refuses_with_a_clear_message(value, error, match):
    with pytest.raises(error, match=match):
        as_viewable(value)


def test_browser_only_calls_say_so_in_cpython():
    from pybridge.view import view_info

    with pytest.raises(RuntimeError, match="needs Pyodide in a browser"):
        view_info(np.zeros(4, np.float32))
