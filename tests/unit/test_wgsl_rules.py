"""What every kernel of wgsl/ (and every variant of pybridge/dispatch.py VARIANTS) must obey to
run on every WebGPU device, read from its WGSL text:

- it fits WebGPU's default limits (pybridge.device.DEFAULT_LIMITS): workgroup storage (each
  `var<workgroup>` rounded up to 16 bytes, as Tint's inspector counts it for Dawn's check),
  invocations per workgroup and workgroup size, storage buffers per stage. Every device gives
  at least these, so no kernel needs a raised limit and no profile needs another tiling;
- no `var<workgroup>` array is sized by an `override` constant (Safari fails silently);
- a kernel that uses f16 types starts with `enable f16;` (Safari rejects it otherwise; core
  `unpack2x16float` needs no directive).

Also the limits profiles of pybridge.device (set_limits_profile, required_limits).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pybridge import device
from pybridge.device import (DEFAULT_LIMITS, LIMITS_PROFILES, OPTIONAL_FEATURES, RAISED_LIMITS,
                             SAFARI_LIMITS, profile_features, required_limits, set_limits_profile)
from pybridge.dispatch import VARIANTS, matmul_plan, shader_source

WGSL = Path(__file__).resolve().parents[2] / "wgsl"
KERNELS = sorted([p.stem for p in WGSL.glob("*.wgsl")] + list(VARIANTS))


# --- reading WGSL ------------------------------------------------------------------------
def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def declarations(text: str) -> tuple[dict[str, str], set[str]]:
    """(const name -> its expression, override names) of a kernel's text."""
    code = strip_comments(text)
    consts = dict(re.findall(r"^\s*const\s+(\w+)\s*(?::\s*[\w<>]+\s*)?=\s*([^;]+);", code, re.M))
    overrides = set(re.findall(r"^\s*override\s+(\w+)", code, re.M))
    return consts, overrides


def evaluate(expr: str, consts: dict[str, str], overrides: set[str]) -> int:
    """An integer const-expression (+ - * / % and parentheses over literals and consts).
    Raises ValueError naming an override it depends on, or what it cannot evaluate."""
    out = []
    for token in re.findall(r"\d+[ui]?|\w+|[-+*/%()]|\S", expr):
        if re.fullmatch(r"\d+[ui]?", token):
            out.append(token.rstrip("ui"))
        elif token in overrides:
            raise ValueError(f"depends on override {token}")
        elif re.fullmatch(r"\w+", token):
            if token not in consts:
                raise ValueError(f"unknown name {token!r} in {expr!r}")
            out.append(str(evaluate(consts[token], consts, overrides)))
        elif token in "+-*%()":
            out.append(token)
        elif token == "/":
            out.append("//")
        else:
            raise ValueError(f"cannot evaluate {expr!r}")
    return int(eval(" ".join(out), {"__builtins__": {}}))  # digits and operators only


SCALARS = {"f32": 4, "i32": 4, "u32": 4, "f16": 2, "bool": 4}
SHORT_VECTORS = {"f": "f32", "i": "i32", "u": "u32", "h": "f16"}


def split_args(inner: str) -> list[str]:
    """`a, array<b, c>` -> ["a", "array<b, c>"]: commas at the top level only."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


def size_align(type_: str, consts: dict[str, str], overrides: set[str]) -> tuple[int, int]:
    """(size, alignment) in bytes of a WGSL type (WGSL's memory layout rules)."""
    type_ = type_.strip()
    if type_ in SCALARS:
        return SCALARS[type_], SCALARS[type_]
    m = re.fullmatch(r"vec([234])([fiuh])", type_)
    if m:
        type_ = f"vec{m[1]}<{SHORT_VECTORS[m[2]]}>"
    m = re.fullmatch(r"(vec[234]|atomic|array)<(.*)>", type_, re.S)
    if not m:
        raise ValueError(f"workgroup type {type_!r}: not one this test knows (add it)")
    args = split_args(m[2])
    elem, align = size_align(args[0], consts, overrides)
    if m[1] == "atomic":
        return elem, align
    if m[1].startswith("vec"):
        n = int(m[1][3])
        return n * elem, (4 if n == 3 else n) * elem  # vec3: the size of 3, aligned as 4
    if len(args) != 2:
        raise ValueError(f"workgroup array {type_!r} has no fixed size")
    try:
        count = evaluate(args[1], consts, overrides)
    except ValueError as e:
        raise OverrideSized(f"array {type_!r}: {e}") from None
    stride = -(-elem // align) * align
    return count * stride, align


class OverrideSized(ValueError):
    """A workgroup array whose size is not a const-expression (an override, or unknown)."""


def workgroup_vars(text: str) -> dict[str, str]:
    return dict(re.findall(r"var<workgroup>\s+(\w+)\s*:\s*([^;]+);", strip_comments(text)))


def workgroup_bytes(text: str) -> int:
    """Workgroup storage of a kernel: each variable's size rounded up to 16 bytes."""
    consts, overrides = declarations(text)
    return sum(-(-size_align(t, consts, overrides)[0] // 16) * 16
               for t in workgroup_vars(text).values())


def workgroup_size(text: str) -> tuple[int, int, int]:
    consts, overrides = declarations(text)
    found = re.findall(r"@workgroup_size\(([^)]*)\)", strip_comments(text))
    assert len(found) == 1, f"expected one @workgroup_size, found {found}"
    dims = [evaluate(a, consts, overrides) for a in split_args(found[0]) if a]
    return tuple(dims + [1] * (3 - len(dims)))  # type: ignore[return-value]


F16_USE = re.compile(r"\bf16\b|\bvec[234]h\b|\bmat[234]x[234]h\b|"
                     r"(?<![\w.])(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?h\b")


def uses_f16(text: str) -> bool:
    return F16_USE.search(strip_comments(text)) is not None


def enables(text: str) -> set[str]:
    """The extensions of the `enable` directives that start the text (before any declaration)."""
    names: set[str] = set()
    for line in strip_comments(text).splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"\s*enable\s+([\w\s,]+);\s*", line)
        if not m:
            break
        names |= {n.strip() for n in m[1].split(",") if n.strip()}
    return names


# --- every kernel -------------------------------------------------------------------------
@pytest.mark.parametrize("op", KERNELS)
def test_workgroup_storage_fits_the_default_limit(op):
    used = workgroup_bytes(shader_source(op))
    assert used <= DEFAULT_LIMITS["maxComputeWorkgroupStorageSize"], (
        f"{op} uses {used} bytes of workgroup memory: more than WebGPU's default "
        f"{DEFAULT_LIMITS['maxComputeWorkgroupStorageSize']} (give it a smaller tiling)")


@pytest.mark.parametrize("op", KERNELS)
def test_workgroup_size_fits_the_default_limits(op):
    x, y, z = workgroup_size(shader_source(op))
    assert x * y * z <= DEFAULT_LIMITS["maxComputeInvocationsPerWorkgroup"], (op, x, y, z)
    assert x <= DEFAULT_LIMITS["maxComputeWorkgroupSizeX"] and y <= 256 and z <= 64, (op, x, y, z)


@pytest.mark.parametrize("op", KERNELS)
def test_storage_buffers_fit_the_default_limit(op):
    n = len(re.findall(r"var<storage\b", strip_comments(shader_source(op))))
    assert 0 < n <= DEFAULT_LIMITS["maxStorageBuffersPerShaderStage"], (op, n)


@pytest.mark.parametrize("op", KERNELS)
def test_no_workgroup_array_is_sized_by_an_override(op):
    text = shader_source(op)
    consts, overrides = declarations(text)
    for name, type_ in workgroup_vars(text).items():
        size_align(type_, consts, overrides)  # raises OverrideSized


@pytest.mark.parametrize("op", KERNELS)
def test_f16_types_come_with_enable_f16(op):
    text = shader_source(op)
    if uses_f16(text):
        assert "f16" in enables(text), f"{op} uses f16 types without `enable f16;` first"


def test_attention_uses_exactly_the_default_workgroup_storage():
    # two 32 x 64 f32 tiles, nothing else (the i32 it also kept there made it 16,400 by
    # Tint's count: over the default, so it ran only where the device raised the limit)
    assert workgroup_bytes(shader_source("attention")) == 16384


@pytest.mark.parametrize("M", [1, 12, 32, 33, 128, 512, 513, 4096])
@pytest.mark.parametrize("K", [384, 1536, 17])
@pytest.mark.parametrize("cpu, subgroups", [(False, False), (False, True), (True, False)])
def test_matmul_plan_picks_kernels_that_fit_the_default_limits(M, K, cpu, subgroups):
    op, _, _ = matmul_plan(M, 1152, K, f16_weights=False, cpu_device=cpu, subgroups=subgroups)
    text = shader_source(op)
    assert workgroup_bytes(text) <= DEFAULT_LIMITS["maxComputeWorkgroupStorageSize"]
    x, y, z = workgroup_size(text)
    assert x * y * z <= DEFAULT_LIMITS["maxComputeInvocationsPerWorkgroup"]


# --- the rules catch what they are for ----------------------------------------------------
BAD_ATTENTION = """
override HEAD_DIM: u32 = 32u;
var<workgroup> k_tile: array<array<f32, 64>, 32>;
var<workgroup> v_tile: array<array<f32, 64>, 32>;
var<workgroup> length_shared: i32;
@compute @workgroup_size(64) fn main() {}
"""


def test_the_rules_count_and_catch_what_they_guard():
    assert workgroup_bytes(BAD_ATTENTION) == 16400  # the i32 takes 16 bytes: over 16,384
    consts, overrides = declarations(BAD_ATTENTION)
    assert overrides == {"HEAD_DIM"}
    for sized in ("array<f32, HEAD_DIM>", "array<vec4<f32>, HEAD_DIM * 2u>",
                  "array<array<f32, 4>, N>"):
        with pytest.raises(OverrideSized):
            size_align(sized, consts, overrides)
    consts = {"TILE": "64u", "Q": "TILE / 4u"}
    assert size_align("array<vec4<f32>, Q>", consts, set()) == (256, 16)
    assert workgroup_size("const W = 16u;\n@compute @workgroup_size(W, 256u / W) fn main() {}") \
        == (16, 16, 1)
    # f16 types without the directive; core unpack2x16float, names and comments are not f16
    assert uses_f16("fn f() { let x: f16 = 1.0h; }")
    assert uses_f16("var<workgroup> t: array<vec4h, 4>;") and uses_f16("let y = 0.5h;")
    assert not uses_f16("override B_F16: bool = false; // f16 weights\n"
                        "let w = unpack2x16float(b); let z = 1.0e3; let k = 0x1fh;")
    assert enables("// note\nenable f16;\nenable subgroups;\nfn main() {}") == {"f16", "subgroups"}
    assert enables("fn main() {}\nenable f16;") == set()


# --- the limits profiles ------------------------------------------------------------------
ADAPTER = {**DEFAULT_LIMITS, "maxBufferSize": 4 << 30, "maxStorageBufferBindingSize": 2 << 30,
           "maxComputeWorkgroupStorageSize": 65536, "maxComputeInvocationsPerWorkgroup": 256,
           "maxComputeWorkgroupSizeX": 256, "maxStorageBuffersPerShaderStage": 64,
           "minStorageBufferOffsetAlignment": 64, "maxUniformBufferBindingSize": 65536}


def test_profiles_request_the_adapters_safaris_or_the_default_limits():
    assert required_limits("adapter", ADAPTER.__getitem__) == {n: ADAPTER[n] for n in RAISED_LIMITS}
    assert required_limits("default", ADAPTER.__getitem__) == DEFAULT_LIMITS
    safari = required_limits("safari", ADAPTER.__getitem__)
    assert safari == {
        "maxBufferSize": 268_435_456, "maxStorageBufferBindingSize": 268_435_456,
        "maxUniformBufferBindingSize": 65536,  # the adapter's is less than Safari's
        "maxComputeWorkgroupStorageSize": 32768, "maxComputeInvocationsPerWorkgroup": 256,
        "maxComputeWorkgroupSizeX": 256, "maxStorageBuffersPerShaderStage": 44,
        "maxComputeWorkgroupsPerDimension": 65535,
        "minStorageBufferOffsetAlignment": 64,  # an alignment: the larger is the weaker
    }
    assert set(SAFARI_LIMITS) == set(DEFAULT_LIMITS)
    # Safari's are at least WebGPU's defaults (an alignment at most), as a device's must be
    for name, value in SAFARI_LIMITS.items():
        assert (value <= DEFAULT_LIMITS[name]) if name.startswith("min") else \
            (value >= DEFAULT_LIMITS[name]), name


def test_safaris_profile_has_no_subgroups():
    everything = list(OPTIONAL_FEATURES)
    assert profile_features("safari", everything) == ["shader-f16", "timestamp-query"]
    assert profile_features("adapter", everything) == everything
    assert profile_features("default", ["subgroups"]) == ["subgroups"]


def test_set_limits_profile_checks_the_name(monkeypatch):
    monkeypatch.setattr(device, "_profile", ["adapter"])
    assert device.limits_profile() == "adapter"
    for name in LIMITS_PROFILES:
        set_limits_profile(name)
        assert device.limits_profile() == name
    with pytest.raises(ValueError, match="one of adapter, safari, default; got 'iphone'"):
        set_limits_profile("iphone")
    with pytest.raises(ValueError, match="limits profile"):
        required_limits("iphone", ADAPTER.__getitem__)
