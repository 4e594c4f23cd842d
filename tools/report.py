"""The benchmarks' report: one self-contained HTML page of plots (matplotlib), each with the
numbers it draws, from the benchmarks' JSON.

    python3 tools/dev.py report [--run | --reuse] [--out FILE] [--results DIR] [--png DIR]

By default each benchmark's JSON found in DIR (bench-results/) is reused, and the browser
benchmarks whose JSON is missing run first (`bench NAME` in quick mode; boot: one run).
--run runs every browser benchmark again; --reuse runs nothing and lists what is missing with
the command that makes it. The real-GPU benchmark runs on a GPU machine (tools/bench_gpu.py):
its plots appear when its JSON is in DIR, else one line says so. Writes FILE
(bench-results/report.html); --png DIR also writes each plot as DIR/report-NAME.png.

  plot      from              what it draws
  boot      boot.json         the boot's waterfall: the page's spans on the first and on a
                              cached load (median over runs), the milestones as lines
  datapath  datapath.json     upload and readback GB/s against size for every path, with the
                              in-browser memcpy as the ceiling
  model     model.json        MiniLM ms per shape, stacked by stage, zero-copy beside naive
  compare   compare.json      pybridge against ONNX Runtime Web, ms per shape
  gpu       gpu.json          MiniLM on a real GPU (the page's stack on Dawn): pybridge's
                              stages beside torch (and ONNX Runtime where the peers ran)
  kernels   gpu-kernels.json  matmul GFLOP/s of the kernel pybridge picks (Dawn, wgpu-py)
                              against torch on the same GPU

Each plot is inline SVG (its text as text: no font, image or script is fetched) with a
caption naming the machine, browser, adapter, date and source JSON ("not recorded" where an
older JSON lacks a field), and under it a table of the numbers it draws, in the JSON's units.
The page references nothing outside itself, so it opens offline from a file; it is
well-formed XML (the tests read it with ElementTree). A malformed JSON is named with what is
wrong, and the other plots are still drawn. Progress lines start with `[report]`. Exit status
1 when a JSON was malformed or a benchmark run failed.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no GUI toolkit
from matplotlib.figure import Figure  # noqa: E402

from tools.bench_boot import MILESTONES, median_spans  # noqa: E402
from tools.bench_datapath import human  # noqa: E402
from tools.bench_gpu import STAGES as GPU_STAGES  # noqa: E402
from tools.bench_gpu import peer_rows  # noqa: E402

RESULTS = ROOT / "bench-results"
NOT_RECORDED = "not recorded"
STYLE = {"svg.fonttype": "none", "font.size": 8.5, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "legend.fontsize": 7.5, "legend.frameon": False}
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
          "#8c8c8c", "#ccb974", "#64b5cd"]


def say(msg: str) -> None:
    print(f"[report] {msg}", flush=True)


class Malformed(Exception):
    """A benchmark's JSON that the report cannot read: the message says what is wrong."""


# --- what a plot is ---------------------------------------------------------------------------
@dataclass
class Plot:
    name: str  # the section's id (plot-NAME) and the PNG's name (report-NAME.png)
    title: str
    figure: Figure
    header: list[str]  # the table of the numbers drawn, in the JSON's units
    rows: list[list[Any]]
    note: str = ""


def num(v: Any) -> str:
    """A table cell: ints whole, floats to 4 significant digits without an exponent."""
    if v is None:
        return "-"
    if isinstance(v, (bool, str)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if not math.isfinite(v) or v == 0:
        return str(v) if v else "0"
    return f"{v:.{max(0, 3 - math.floor(math.log10(abs(v))))}f}"


def figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def stacked_bar(ax, x: float, values: dict[str, float], colors: dict[str, str], gid: str,
                width: float = 0.7, **kw) -> None:
    """One bar of `values` stacked in order; a negative part is drawn as 0 (the table keeps
    it). Each part's SVG group is `gid-PART` (the tests measure its height)."""
    bottom = 0.0
    for part, v in values.items():
        h = max(0.0, v)
        bar = ax.bar(x, h, width, bottom=bottom, color=colors[part], label=part, **kw)[0]
        bar.set_gid(f"{gid}-{slug(part)}")
        bottom += h


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def legend_once(fig: Figure, ax) -> None:
    """One legend for the figure, each label once, under the plots."""
    seen: dict[str, Any] = {}
    for handle, label in zip(*ax.get_legend_handles_labels()):
        seen.setdefault(label, handle)  # the first: unhatched where a later bar is hatched
    fig.legend(seen.values(), seen.keys(), loc="outside lower center", ncols=min(len(seen), 8))


# --- the plots, one function per benchmark's JSON ---------------------------------------------
def boot_plots(data: dict) -> list[Plot]:
    """bench_boot's waterfall (median_spans, as it prints it) for the first and a cached load."""
    raw, loads = data["raw"], data["loads"]
    names = [n for n in ("first", "cached") if raw.get(n)]
    if not names:
        raise Malformed("no runs of the first or the cached load under 'raw'")
    spans = {n: median_spans(raw[n]) for n in names}
    fig, axes = figure(9, 0.5 + 0.24 * sum(len(s) for s in spans.values()) + 0.6 * len(names),
                       len(names), 1, sharex=True,
                       height_ratios=[len(spans[n]) + 1 for n in names])
    header = ["load", "span or milestone", "start ms", "end ms"]
    rows: list[list[Any]] = []
    for ax, name in zip(axes[:, 0], names):
        for i, (span, start, end) in enumerate(spans[name]):
            bar = ax.barh(i, (end - start) / 1e3, left=start / 1e3, height=0.7,
                          color=COLORS[0] if span.startswith("worker") else COLORS[1])[0]
            bar.set_gid(f"boot-{slug(name)}-{i}")
            rows.append([name, span, start, end])
        for j, (label, key) in enumerate(MILESTONES.items()):
            at = loads.get(name, {}).get(key)
            if at is not None:
                ax.axvline(at / 1e3, color=COLORS[2 + j], linestyle="--", linewidth=1,
                           label=label)
                rows.append([name, f"milestone: {label}", at, at])
        ax.set_yticks(range(len(spans[name])), [s[0][:40] for s in spans[name]], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{name} load", loc="left", fontsize=9)
        ax.grid(axis="y", visible=False)
    axes[-1, 0].set_xlabel("s since navigation (median over the runs)")
    legend_once(fig, axes[0, 0])
    return [Plot("boot", f"Boot waterfall: the first and a cached load ({data.get('runs', '?')} "
                 f"run(s), model {data.get('model', '?')})", fig, header, rows,
                 "Blue: the worker's stages; orange: the page's steps and the work that overlaps "
                 "the stages. Dashed: the milestones.")]


def datapath_plots(data: dict) -> list[Plot]:
    """GB/s against size for every upload and readback path in the rows (upload_X, readback_X),
    the in-browser memcpy as the ceiling of both."""
    rows_in = data["transfer"]
    if not rows_in:
        raise Malformed("'transfer' has no rows")
    sizes = [int(r["bytes"]) for r in rows_in]
    directions = {"upload": [k for k in rows_in[0] if k.startswith("upload_")],
                  "readback": [k for k in rows_in[0] if k.startswith("readback_")]}
    refs = {"memcpy": "in-browser memcpy, wasm heap to JS (the ceiling)",
            "raw_js_writebuffer": "writeBuffer called from JS"}
    fig, axes = figure(9, 3.6, 1, 2, sharey=True)
    for ax, (direction, keys) in zip(axes[0], directions.items()):
        for i, key in enumerate(keys):
            ax.plot(sizes, [r[key] for r in rows_in], marker="o", color=COLORS[i],
                    label=key.replace("_", ": ", 1), gid=f"datapath-{slug(key)}")
        for ref, style in (("memcpy", "-"), ("raw_js_writebuffer", ":")):
            if ref == "memcpy" or direction == "upload":
                ax.plot(sizes, [r[ref] for r in rows_in], color="black", linestyle=style,
                        linewidth=1.2, label=refs[ref], gid=f"datapath-{direction}-{slug(ref)}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [human(s) for s in sizes])
        ax.minorticks_off()
        ax.set_title(direction, loc="left", fontsize=9)
        ax.set_xlabel("bytes per call")
        ax.legend(loc="lower right")
    axes[0, 0].set_ylabel("GB/s")
    keys = ["memcpy", "raw_js_writebuffer", *directions["upload"], *directions["readback"]]
    rows = [[human(r["bytes"]), r["bytes"], *(r[k] for k in keys)] for r in rows_in]
    w = data.get("weights") or {}
    note = (f"Weights ({w['bytes'] / 1e6:.0f} MB) streamed onto the GPU at "
            f"{w['bytes'] / w['stream_ms'] / 1e6:.3g} GB/s with sha256, a plain fetch into an "
            f"ArrayBuffer at {w['bytes'] / w['fetch_arraybuffer_ms'] / 1e6:.3g} GB/s."
            if {"bytes", "stream_ms", "fetch_arraybuffer_ms"} <= set(w) else "")
    return [Plot("datapath", "Data path: GB/s against size, every path, memcpy as the ceiling",
                 fig, ["size", "bytes", *(f"{k} GB/s" for k in keys)], rows, note)]


def shape_rows(rows: list[dict]) -> dict[tuple[int, int], list[dict]]:
    """Rows grouped by (batch, tokens), in the order they came."""
    by: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        by.setdefault((int(r["batch"]), int(r["tokens"])), []).append(r)
    return by


def stage_colors(stages: list[str]) -> dict[str, str]:
    return {s: COLORS[i % len(COLORS)] for i, s in enumerate(stages)}


def grid_of(n: int, cols: int = 3) -> tuple[int, int]:
    return -(-n // cols), min(n, cols)


def copies(row: dict) -> int | None:
    """The copies an embed made, both directions (bench_model's `copies`: direction -> path
    -> {copies, bytes}), or None where the row has no count."""
    if "copies" not in row:
        return None
    return sum(int(c["copies"]) for paths in row["copies"].values() for c in paths.values())


def model_plots(data: dict) -> list[Plot]:
    """One small plot per shape: the zero-copy and the naive embed, stacked by stage (ms), each
    bar labelled with its readback ms and its copies (the parts the path changes)."""
    by = shape_rows(data["rows"])
    if not by:
        raise Malformed("'rows' is empty")
    stages = list(dict.fromkeys(k for r in data["rows"] for k in r["timings_ms"]))
    colors = stage_colors(stages)
    nrows, ncols = grid_of(len(by))
    fig, axes = figure(9, 0.6 + 2.3 * nrows, nrows, ncols)
    rows: list[list[Any]] = []
    for ax, ((batch, tokens), got) in zip(axes.flat, by.items()):
        top = max(sum(max(0.0, v) for v in r["timings_ms"].values()) for r in got)
        for x, r in enumerate(got):
            stacked_bar(ax, x, {s: r["timings_ms"].get(s, 0.0) for s in stages}, colors,
                        f"model-{batch}x{tokens}-{slug(r['path'])}",
                        hatch="//" if r["path"] == "naive" else None, edgecolor="white")
            rb, n = r["timings_ms"].get("readback"), copies(r)
            label = "\n".join(x for x in (f"readback {rb:.3g} ms" if rb is not None else "",
                                           f"{n} copies" if n is not None else "") if x)
            ax.annotate(label, (x, sum(max(0.0, v) for v in r["timings_ms"].values())),
                        ha="center", va="bottom", fontsize=7)
            rows.append([f"{batch}x{tokens}", r["path"], r["total_ms"],
                         *(r["timings_ms"].get(s) for s in stages), n])
        ax.set_xticks(range(len(got)), [r["path"] for r in got])
        ax.set_title(f"batch {batch} x {tokens} tokens", loc="left", fontsize=9)
        ax.set_ylabel("ms")
        ax.set_ylim(0, top * 1.3 or 1)  # room for the labels
        ax.grid(axis="x", visible=False)
    for ax in axes.flat[len(by):]:
        ax.set_visible(False)
    legend_once(fig, axes.flat[0])
    return [Plot("model", f"all-MiniLM-L6-v2 ({data.get('dtype', '?')}): ms per shape by stage, "
                 "zero-copy beside naive (hatched)", fig,
                 ["shape", "path", "total ms", *(f"{s} ms" for s in stages), "copies"], rows,
                 "Uploads (token ids) happen inside submit; readback is the embeddings' copy back. "
                 "A negative 'python_other' (timer rounding) is drawn as 0.")]


def grouped_bars(ax, labels: list[str], series: dict[str, list[float | None]], gid: str) -> None:
    """Bars of each series side by side at each label (None: no bar)."""
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        for x, v in enumerate(values):
            if v is not None:
                bar = ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width,
                             color=COLORS[i % len(COLORS)], label=name)[0]
                bar.set_gid(f"{gid}-{slug(name)}-{x}")
    ax.set_xticks(range(len(labels)), labels)


def compare_plots(data: dict) -> list[Plot]:
    rows_in = data["rows"]
    if not rows_in:
        raise Malformed("'rows' is empty")
    labels = [f"{r['batch']}x{r['tokens']}" for r in rows_in]
    ort = f"ONNX Runtime Web {data.get('ort', '?')}"
    fig, axes = figure(9, 3.4)
    ax = axes[0, 0]
    grouped_bars(ax, labels, {"pybridge": [r["pybridge_ms"] for r in rows_in],
                              ort: [r["ort_ms"] for r in rows_in]}, "compare")
    for x, r in enumerate(rows_in):
        ax.annotate(f"ORT / pybridge {r['ort_over_pybridge']:.2f}", (x, max(r["pybridge_ms"],
                    r["ort_ms"])), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per batch (pybridge: text in; ORT: token ids in)")
    ax.set_xlabel("batch x tokens")
    ax.grid(axis="x", visible=False)
    legend_once(fig, ax)
    rows = [[lab, r["pybridge_ms"], r["ort_ms"], r["ort_over_pybridge"], r["cosine"]]
            for lab, r in zip(labels, rows_in)]
    return [Plot("compare", f"all-MiniLM-L6-v2 float32: pybridge against {ort} (WebGPU EP)",
                 fig, ["shape", "pybridge ms", "ORT Web ms", "ORT / pybridge", "cosine"], rows,
                 "Same browser, same token ids, same weights, one run; log scale.")]


def gpu_plots(data: dict) -> list[Plot]:
    """bench_gpu's MiniLM rows (the default variant), one plot per dtype: pybridge's stages
    stacked, torch's (and ONNX Runtime's) ms per batch beside."""
    minilm = [r for r in data["minilm"] if r.get("variant", "default") == "default"]
    if not minilm:
        raise Malformed("no MiniLM rows of the default variant under 'minilm'")
    dtypes = list(dict.fromkeys(r["dtype"] for r in minilm))
    torch = {(r["dtype"], r["batch"], r["tokens"]): r["median_ms"]
             for r in (data.get("torch") or {}).get("rows", [])}
    peers = peer_rows(data.get("peers") or {})
    # ONNX Runtime ran the float32 export (tools/race.py): its rows belong beside float32 only
    peer_dtype = "float16" if "f16" in str(((data.get("peers") or {}).get("meta") or {})
                                             .get("weights", "")) else "float32"
    stages = [s for s in GPU_STAGES if any(s in r["median_ms"] for r in minilm)]
    stages += sorted({k for r in minilm for k in r["median_ms"]} - {*stages, "other", "total"})
    stages.append("other")
    colors = stage_colors(stages)
    others = ["torch", *peers]
    fig, axes = figure(9, 3.6 * len(dtypes), len(dtypes), 1)
    rows: list[list[Any]] = []
    for ax, dtype in zip(axes[:, 0], dtypes):
        got = sorted((r for r in minilm if r["dtype"] == dtype),
                     key=lambda r: (r["tokens"], r["batch"]))
        width = 0.8 / (1 + len(others))
        for x, r in enumerate(got):
            shape = (r["batch"], r["tokens"])
            med = r["median_ms"]
            # each stage is a median of its own: "other" is drawn as what the median total
            # leaves, so the bar ends at the total the table gives
            drawn = {s: med.get(s, 0.0) for s in stages if s != "other"}
            drawn["other"] = max(0.0, med.get("total", sum(drawn.values())) - sum(drawn.values()))
            stacked_bar(ax, x - 0.4 + width / 2, drawn, colors, f"gpu-{dtype}-{x}", width=width)
            beside = [torch.get((dtype, *shape)),
                      *(peers[p].get(shape) if dtype == peer_dtype else None for p in peers)]
            for i, v in enumerate(beside):
                if v is not None:
                    ax.bar(x - 0.4 + width * (i + 1.5), v, width, color="#333333" if i == 0
                           else COLORS[(7 + i) % len(COLORS)], label=others[i])
            rows.append([dtype, f"{shape[0]}x{shape[1]}", *(med.get(s) for s in stages),
                         med.get("total"), *beside])
        ax.set_xticks(range(len(got)), [f"{r['batch']}x{r['tokens']}" for r in got])
        ax.set_title(f"{dtype} weights ({got[0].get('weights', '?')} values)", loc="left",
                     fontsize=9)
        ax.set_ylabel("ms per batch (median)")
        ax.grid(axis="x", visible=False)
    axes[-1, 0].set_xlabel("batch x tokens")
    legend_once(fig, axes[0, 0])
    return [Plot("gpu", "all-MiniLM-L6-v2 on a real GPU: pybridge's stages (the page's stack on "
                 "Dawn) beside torch" + (" and ONNX Runtime" if peers else ""), fig,
                 ["dtype", "shape", *(f"{s} ms" for s in stages), "total ms", "torch ms",
                  *(f"{p} ms" for p in peers)], rows,
                 "torch: eager CUDA from token ids (pybridge's total includes tokenizing); "
                 f"ONNX Runtime: the {peer_dtype} export, beside pybridge's {peer_dtype} only. "
                 "Each stage is its median over the runs; 'other' is drawn as what the median "
                 "total leaves, so each bar ends at its total.")]


def kernel_plots(data: dict) -> list[Plot]:
    """bench_kernels' rows: GFLOP/s of each kernel point on Dawn and wgpu-py, torch beside."""
    rows_in = data["rows"]
    if not rows_in:
        raise Malformed("'rows' is empty")
    dawn = list(dict.fromkeys(n for r in rows_in for n in (r.get("dawn") or {})))
    series_of: dict[str, Callable[[dict], float | None]] = {}
    if any(r.get("wgpu") for r in rows_in):
        series_of["wgpu-py"] = lambda r: (r.get("wgpu") or {}).get("gflops")
    for n in dawn:
        series_of[f"Dawn ({n})" if n != "default" else "Dawn"] = \
            lambda r, n=n: ((r.get("dawn") or {}).get(n) or {}).get("gflops")
    series_of["torch"] = lambda r: r.get("torch_gflops")
    labels = [f"{r['shape']} {r['op']} {'f16' if r.get('f16') else 'f32'}" for r in rows_in]
    fig, axes = figure(9, 1 + 0.32 * len(rows_in) * len(series_of) ** 0.5)
    ax = axes[0, 0]
    height = 0.8 / len(series_of)
    for i, (name, get) in enumerate(series_of.items()):
        for y, r in enumerate(rows_in):
            v = get(r)
            if v is not None:
                bar = ax.barh(y + (i - (len(series_of) - 1) / 2) * height, v, height,
                              color="#333333" if name == "torch" else COLORS[i], label=name)[0]
                bar.set_gid(f"kernels-{slug(name)}-{y}")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("GFLOP/s (log scale)")
    ax.grid(axis="y", visible=False)
    legend_once(fig, ax)
    table = []
    for r in rows_in:
        values = [get(r) for get in series_of.values()]
        ours = [v for v in values[:-1] if v is not None]
        table.append([r["shape"], r["op"], r["M"], r["N"], r["K"],
                      "f16" if r.get("f16") else "f32", *values,
                      max(ours) / values[-1] if ours and values[-1] else None])
    return [Plot("kernels", "matmul C = A @ B.T + bias: GFLOP/s of the kernel pybridge picks, "
                 "against torch on the same GPU", fig,
                 ["shape", "kernel", "M", "N", "K", "weights",
                  *(f"{s} GFLOP/s" for s in series_of), "best / torch"], table,
                 "torch: addmm, float32, TF32 off. A point that failed has no bar.")]


# --- where each plot comes from ---------------------------------------------------------------
def adapter_text(adapter: Any) -> str:
    """The adapter as the page's device panel names it (vendor · architecture · device ·
    description); bench gpu's JSON keeps those under 'info'."""
    if adapter is None:
        return NOT_RECORDED
    if isinstance(adapter, str):
        return adapter or "not described"
    if not isinstance(adapter, dict):
        return f"not readable ({type(adapter).__name__})"
    info = adapter.get("info", adapter)
    if not isinstance(info, dict):
        return f"not readable (info: {type(info).__name__})"
    parts = [str(info[k]) for k in ("vendor", "architecture", "device", "description")
             if info.get(k)]
    if str(info.get("isFallbackAdapter")).lower() == "true":
        parts.append("fallback adapter")
    return " · ".join(parts) or "not described by the browser"


def run_info(data: dict) -> dict[str, str]:
    """What each caption names: machine, browser, adapter, date."""
    adapter = data.get("adapter")
    if not adapter and data.get("dawn"):  # bench_kernels through Dawn alone (bench gpu --kernels)
        adapter = "; ".join(adapter_text(d.get("adapter") if isinstance(d, dict) else d)
                            for d in data["dawn"].values())
    return {"machine": str(data.get("machine") or NOT_RECORDED),
            "browser": str(data.get("browser") or NOT_RECORDED),
            "adapter": adapter_text(adapter), "date": str(data.get("date") or NOT_RECORDED)}


@dataclass(frozen=True)
class Source:
    file: str  # in the results folder
    bench: str  # python3 tools/dev.py bench NAME
    quick: tuple[str, ...] | None  # the report runs it with these; None: a GPU machine's
    draw: Callable[[dict], list[Plot]]


SOURCES = (
    Source("boot.json", "boot", ("--runs", "1"), boot_plots),
    Source("datapath.json", "datapath", ("--quick",), datapath_plots),
    Source("model.json", "model", ("--quick",), model_plots),
    Source("compare.json", "compare", ("--quick",), compare_plots),
    Source("gpu.json", "gpu", None, gpu_plots),
    Source("gpu-kernels.json", "gpu", None, kernel_plots),
)
GPU_HOWTO = ("made on a GPU machine: `python3 tools/dev.py bench gpu --pack .gpu/pack` here, "
             "`python3 tools/bench_gpu.py --run .gpu/pack --kernels` there, then copy its "
             "bench-results/gpu.json and gpu-kernels.json into the results folder")


def bench_command(src: Source, results: Path) -> str:
    out = "" if results == RESULTS else f" --out {results / src.file}"
    return f"python3 tools/dev.py bench {src.bench} {' '.join(src.quick or ())}".rstrip() + out


def run_bench(src: Source, results: Path) -> bool:
    cmd = [sys.executable, str(ROOT / "tools" / f"bench_{src.bench}.py"), *(src.quick or ()),
           "--out", str(results / src.file)]
    say(f"running {bench_command(src, results)} (its own output follows)")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    ok = proc.returncode == 0 and (results / src.file).exists()
    say(f"bench {src.bench}: {'done' if ok else f'FAILED (exit {proc.returncode})'} in "
        f"{time.perf_counter() - t0:.0f} s")
    return ok


def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise Malformed(f"not JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise Malformed(f"not text: {e}") from None
    if not isinstance(data, dict):
        raise Malformed(f"expected a JSON object, found {type(data).__name__}")
    return data


def draw(src: Source, data: dict) -> list[Plot]:
    """The source's plots, or Malformed saying what in its JSON the report could not read."""
    try:
        with matplotlib.rc_context(STYLE):
            return src.draw(data)
    except KeyError as e:
        raise Malformed(f"no key {e.args[0]!r} where the report reads one") from None
    except (TypeError, ValueError, IndexError, ZeroDivisionError, AttributeError) as e:
        raise Malformed(f"{type(e).__name__}: {e}") from None


# --- the page ---------------------------------------------------------------------------------
def svg(fig: Figure, salt: str) -> str:
    """The figure as SVG to inline in HTML: without the XML prolog, the metadata and the
    namespace declarations (URLs that no reader needs: HTML puts <svg> in its namespace)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # matplotlib numbers its elements per figure (figure_1, axes_1, ...): this plot's own
    # names, so no id repeats on the page (the ids anything refers to are salted already)
    text = re.sub(r'id="([A-Za-z][\w.]*_\d+)"', rf'id="mpl-{salt}-\1"', text)
    return text.replace("xlink:href=", "href=")  # SVG 2's href: no xlink namespace


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
h2 { font-size: 1.1rem; margin-top: 2.5rem; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #444; }
figcaption span { display: inline-block; margin-right: 1rem; }
figcaption b { font-weight: 600; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.6rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.1rem 0.5rem; text-align: right; }
th:first-child, td.text { text-align: left; }
.missing, .error { color: #8a4500; }
.error { color: #a00; }
code { font-size: 0.9em; }
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def section(plot: Plot, info: dict[str, str], source: str) -> str:
    caption = "".join(f'<span class="{k}">{k}: <b>{esc(v)}</b></span>'
                      for k, v in {**info, "source": source}.items())
    head = "".join(f"<th>{esc(h)}</th>" for h in plot.header)
    body = "".join("<tr>" + "".join(f'<td class="text">{esc(c)}</td>' if isinstance(c, str)
                                    else f"<td>{esc(num(c))}</td>" for c in row) + "</tr>"
                   for row in plot.rows)
    note = f'<p class="note">{esc(plot.note)}</p>' if plot.note else ""
    return (f'<section class="plot" id="plot-{plot.name}">\n<h2>{esc(plot.title)}</h2>\n'
            f"<figure>\n{svg(plot.figure, plot.name)}\n<figcaption>{caption}</figcaption>\n"
            f"</figure>\n{note}\n<table class=\"numbers\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>\n</section>\n")


def write_png(plot: Plot, info: dict[str, str], source: str, out: Path) -> None:
    """The plot alone, its title and caption drawn above it (no page around it to say them)."""
    caption = " · ".join(f"{k}: {v}" for k, v in {**info, "source": source}.items())
    lines = textwrap.wrap(caption, int(plot.figure.get_figwidth() * 15))  # 7.5 pt characters
    plot.figure.suptitle("\n".join([plot.title, *lines]), x=0.01, ha="left", fontsize=7.5,
                         color="#333333")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot.figure.savefig(out, dpi=150)
    say(f"wrote {shown(out)}")


def page(sections: list[str], lines: list[tuple[str, str]], results: Path) -> str:
    status = "".join(f"<li{cls}>{text}</li>" for cls, text in lines)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
            "<title>pybridge benchmarks</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>pybridge benchmarks</h1>\n"
            f"<p>Made {time.strftime('%Y-%m-%d %H:%M')} by <code>python3 tools/dev.py report"
            f"</code> from <code>{esc(shown(results))}</code>. Each plot's caption names where "
            "its numbers were measured; the table under it holds the numbers it draws.</p>\n"
            f'<ul class="status">{status}</ul>\n' + "".join(sections) + "</body>\n</html>\n")


def shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- the command ------------------------------------------------------------------------------
def build(results: Path, out: Path, mode: str = "default", png: Path | None = None) -> int:
    """Write the report; returns the exit status (1: a JSON malformed or a run failed)."""
    failed = False
    if mode != "reuse":
        for src in SOURCES:
            if src.quick is not None and (mode == "run" or not (results / src.file).exists()):
                failed |= not run_bench(src, results)
    sections: list[str] = []
    lines: list[tuple[str, str]] = []  # (class attribute, HTML) of the status list
    for src in SOURCES:
        path = results / src.file
        if not path.exists():
            if src.quick is not None:
                say(f"{src.file}: missing; make it with: {bench_command(src, results)}")
                command = esc(bench_command(src, results))
                lines.append((' class="missing"', (f"<code>{esc(src.file)}</code> missing: "
                                                    f"make it with <code>{command}</code>")))
            continue
        try:
            data = load(path)
            plots = draw(src, data)
        except Malformed as e:
            say(f"ERROR {shown(path)}: {e}")
            what = f"<code>{esc(shown(path))}</code> is malformed: {esc(e)}"
            lines.append((' class="error"', what))
            failed = True
            continue
        info = run_info(data)
        for plot in plots:
            sections.append(section(plot, info, shown(path)))
            if png:
                write_png(plot, info, shown(path), png / f"report-{plot.name}.png")
            say(f"plot {plot.name}: {len(plot.rows)} rows from {shown(path)} "
                f"({info['date']}, {info['browser']})")
        lines.append(("", f"<code>{esc(src.file)}</code>: " + ", ".join(
            f'<a href="#plot-{p.name}">{esc(p.name)}</a>' for p in plots)))
    gpu = [s.file for s in SOURCES if s.quick is None]
    absent = [f for f in gpu if not (results / f).exists()]
    if absent:
        text = (f"No real-GPU run here ({', '.join(absent)} absent): the GPU plots (MiniLM and "
                f"the matmul kernels against torch) appear when its JSON is present, "
                f"{GPU_HOWTO}." if len(absent) == len(gpu) else
                f"{', '.join(absent)} absent (a real-GPU run without its part): "
                f"its plot appears when it is present, {GPU_HOWTO}.")
        say(text)
        lines.append((' class="missing" id="no-gpu"', esc(text)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(sections, lines, results))
    errors = sum(cls == ' class="error"' for cls, _ in lines)
    say(f"wrote {shown(out)}: {len(sections)} plots, {errors} malformed JSON"
        + (", a benchmark run failed" if failed and not errors else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_const", dest="mode", const="run",
                      help="run every browser benchmark again (quick mode) first")
    mode.add_argument("--reuse", action="store_const", dest="mode", const="reuse",
                      help="run nothing: plot what exists, list what is missing")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the benchmarks' JSON folder")
    ap.add_argument("--out", type=Path, default=None, help="default: RESULTS/report.html")
    ap.add_argument("--png", type=Path, default=None, metavar="DIR",
                    help="also write each plot as DIR/report-NAME.png")
    args = ap.parse_args(argv)
    results = args.results.resolve()
    return build(results, (args.out or results / "report.html").resolve(),
                 args.mode or "default", args.png.resolve() if args.png else None)


if __name__ == "__main__":
    sys.exit(main())
