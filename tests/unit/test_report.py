"""tools/report.py, without a browser: the report built from JSON in each benchmark's schema,
its numbers drawn at random (seeded), never written out here. Every number a plot draws is in
the table under it; each plot is an SVG whose bars measure the JSON's values; captions name
the machine, browser, adapter and date of their JSON; a missing GPU run is one line and no GPU
plot; a malformed JSON is named and the others still plot; nothing outside the page is
referenced. The schemas come from the benchmarks' own names (their SHAPES, the browser
backend's paths, bench_gpu's STAGES, bench_kernels' shapes), and the caption's fields from
the harness functions the browser benchmarks write them with."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pybridge.accounting import count_copies, record
from pybridge.browser import BrowserBackend
from tools import bench_boot, bench_compare, bench_gpu, bench_kernels, bench_model, harness, report

SPANS = ["page loaded", "WebGPU check", "worker: Python started", "worker: packages",
         "backend chosen (device)", "kernel self-check", "model: weights on the GPU",
         "first search"]
PEERS = ("node", "web")


def val(rng: random.Random, lo: float = 1e-3, hi: float = 1e4) -> float:
    """Log-uniform: values of every size a table must print without losing them."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def header(rng: random.Random) -> dict:
    """The fields every caption names, as a browser benchmark writes them (harness)."""
    n = rng.randrange(10_000)
    return {"date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "machine": f"x86_64 host{n} ({rng.choice([2, 8, 16])} cores)",
            "browser": f"Chromium {rng.randint(120, 199)}.0.{n}.1 headless, SwiftShader",
            "adapter": {"vendor": f"vendor{n}", "architecture": f"arch{n}", "device": "",
                        "description": f"desc {n}"}}


# --- each benchmark's JSON, and the numbers its plot must carry: {key cells: [numbers]} ------
def boot_json(rng):
    runs = 3
    raw = {}
    for load in bench_boot.LOADS:
        raw[load] = []
        for _ in range(runs):
            spans = []
            for name in SPANS:
                start = val(rng, 1, 20_000)
                spans.append({"name": name, "start": start, "end": start + val(rng, 1, 5_000)})
            raw[load].append({"spans": spans, "boot": {"how": "snapshot"}, "requests": 20,
                              "transferBytes": rng.randrange(10**8), "decodedBytes": 1,
                              "timings": {k: val(rng, 100, 30_000)
                                          for k in bench_boot.MILESTONES.values()}})
    loads = {load: {k: statistics.median(r["timings"][k] for r in rows)
                    for k in bench_boot.MILESTONES.values()} for load, rows in raw.items()}
    data = {**header(rng), "runs": runs, "model": "float16", "loads": loads, "raw": raw}
    expect = {}
    for load in ("first", "cached"):
        for name in SPANS:
            got = [next(s for s in r["spans"] if s["name"] == name) for r in raw[load]]
            expect[(load, name)] = [statistics.median(s["start"] for s in got),
                                    statistics.median(s["end"] for s in got)]
        for label, key in bench_boot.MILESTONES.items():
            expect[(load, f"milestone: {label}")] = [loads[load][key]]
    return data, expect


def datapath_json(rng):
    rows = []
    for size in sorted(rng.sample([1 << k for k in range(10, 27)], 5)):
        r = {"bytes": size, "reps": 5, "memcpy": val(rng), "raw_js_writebuffer": val(rng),
             "copy_staging": val(rng)}
        for path in BrowserBackend.upload_paths:
            r[f"issue_{path}"], r[f"upload_{path}"] = val(rng), val(rng)
        for path in BrowserBackend.readback_paths:
            r[f"readback_{path}"] = val(rng)
        rows.append(r)
    weights = {"bytes": 33555144, "stream_ms": val(rng, 10, 1e4), "stream_nohash_ms": 1.0,
               "fetch_arraybuffer_ms": val(rng, 10, 1e4), "wasm_heap_growth": 0,
               "stream_peak_chunk": 1 << 21}
    plotted = ["memcpy", "raw_js_writebuffer",
               *(f"upload_{p}" for p in BrowserBackend.upload_paths),
               *(f"readback_{p}" for p in BrowserBackend.readback_paths)]
    return ({**header(rng), "transfer": rows, "weights": weights},
            {(str(r["bytes"]),): [r[k] for k in plotted] for r in rows})


def model_json(rng):
    rows = []
    for batch, words in bench_model.SHAPES:
        for path in ("zero-copy", "naive"):
            t = {s: val(rng, 0.01, 5_000) for s in ("tokenize", "prepare", "submit", "gpu",
                                                    "readback", "python_other")}
            with count_copies() as counted:  # as bench_model_page.run counts them
                for direction in ("upload", "readback"):
                    record(direction, path, rng.randint(1, 9), rng.randrange(10**6))
            rows.append({"batch": batch, "tokens": words + 2, "path": path,
                         "total_ms": sum(t.values()), "timings_ms": t,
                         "copies": counted.as_dict()})
    return ({**header(rng), "dtype": "float16", "load_ms": 1.0, "rows": rows},
            {(f"{r['batch']}x{r['tokens']}", r["path"]): [
                r["total_ms"], *r["timings_ms"].values(),
                sum(c[r["path"]]["copies"] for c in r["copies"].values())] for r in rows})


def compare_json(rng):
    rows = []
    for batch, words in bench_compare.SHAPES:
        ours, ort = val(rng, 1, 1e5), val(rng, 1, 1e5)
        rows.append({"batch": batch, "tokens": words + 2, "pybridge_ms": ours, "ort_ms": ort,
                     "ort_over_pybridge": ort / ours, "cosine": rng.uniform(0.99, 1)})
    return ({**header(rng), "ort": "1.30.0", "ort_load_ms": 1.0, "rows": rows},
            {(f"{r['batch']}x{r['tokens']}",): [r["pybridge_ms"], r["ort_ms"],
                                                 r["ort_over_pybridge"], r["cosine"]]
             for r in rows})


def gpu_json(rng):
    """bench_gpu's gpu.json: its MiniLM rows, torch's rows and the peers' (tools/gpu)."""
    shapes = bench_gpu.parse_shapes(bench_gpu.SHAPES)
    minilm, torch_rows, peers = [], [], {"graphs": {"f32": {"rows": {p: {"rows": []}
                                                                     for p in PEERS}}}}
    for dtype in ("float32", "float16"):
        for b, t in shapes:
            med = {s: val(rng, 0.01, 100) for s in (*bench_gpu.STAGES, "other")}
            # each a median of its own: the total is not their sum (found in review)
            med["total"] = sum(med.values()) * rng.uniform(0.97, 1.03)
            minilm.append({"variant": "default", "dtype": dtype, "weights": "random",
                           "batch": b, "tokens": t, "median_ms": med, "min_total_ms": 1.0,
                           "finite": True})
            torch_rows.append({"dtype": dtype, "batch": b, "tokens": t,
                               "median_ms": val(rng, 0.1, 100)})
    for b, t in shapes:
        for p in PEERS:
            peers["graphs"]["f32"]["rows"][p]["rows"].append(
                {"batch": b, "tokens": t, "median_ms": val(rng, 0.1, 100)})
    data = {"date": "2026-11-27 10:00",
            "machine": f"gpu-host{rng.randrange(99)} (x86_64, 16 cores)",
            "browser": "none: the page's stack on Dawn (webgpu@0.6.2) under Node",
            "runtime": {"webgpu_package": "webgpu@0.6.2"},
            "adapter": {"info": {"vendor": "nvidia", "architecture": f"hopper{rng.randrange(9)}",
                                 "device": "", "description": "H200"},
                        "features": [], "limits": {}, "flags": []},
            "shapes": shapes, "minilm": minilm,
            "torch": {"torch": "2.13.0", "rows": torch_rows}, "peers": peers}
    torch_ms = {(r["dtype"], r["batch"], r["tokens"]): r["median_ms"] for r in torch_rows}
    peer_ms = {(p, r["batch"], r["tokens"]): r["median_ms"] for p in PEERS
               for r in peers["graphs"]["f32"]["rows"][p]["rows"]}
    # ONNX Runtime ran the float32 export: beside pybridge's float32 rows only (found in review)
    return data, {(r["dtype"], f"{r['batch']}x{r['tokens']}"): [
        *r["median_ms"].values(), torch_ms[(r["dtype"], r["batch"], r["tokens"])],
        *(peer_ms[(p, r["batch"], r["tokens"])] for p in PEERS if r["dtype"] == "float32")]
        for r in minilm}


def kernels_json(rng):
    """bench_kernels' JSON as bench gpu --kernels writes it (Dawn, no wgpu-py), one point
    that failed."""
    rows = []
    for label, M, N, K in bench_kernels.MODEL_SHAPES + bench_kernels.BIG:
        rows.append({"shape": label, "op": "matmul_sg", "M": M, "N": N, "K": K, "f16": False,
                     "grid": [1, 1, 1], "constants": {}, "wgpu": None,
                     "dawn": {"default": {"seconds": 1e-3, "gflops": val(rng, 1, 5e4),
                                          "rel_err": 0.0}},
                     "torch_gflops": val(rng, 1, 5e4)})
    rows[1]["dawn"]["default"] = {"error": "GPUValidationError: ..."}
    data = {"date": "2026-11-27", "device": "-", "machine": "gpu-host (x86_64, 16 cores)",
            "browser": "none: Dawn under Node (default)", "adapter": {},
            "dawn": {"default": {"adapter": "nvidia hopper", "status": "ok"}}, "rows": rows}
    return data, {(r["shape"], r["op"]): [x for x in (r["dawn"]["default"].get("gflops"),
                                                      r["torch_gflops"]) if x is not None]
                  for r in rows}


MAKERS = {"boot.json": boot_json, "datapath.json": datapath_json, "model.json": model_json,
          "compare.json": compare_json, "gpu.json": gpu_json, "gpu-kernels.json": kernels_json}
PLOT_OF = {"boot.json": "boot", "datapath.json": "datapath", "model.json": "model",
           "compare.json": "compare", "gpu.json": "gpu", "gpu-kernels.json": "kernels"}


def write_all(folder: Path, seed: int, files=MAKERS) -> dict[str, tuple[dict, dict]]:
    rng = random.Random(seed)
    made = {}
    for name in files:
        made[name] = MAKERS[name](rng)
        (folder / name).write_text(json.dumps(made[name][0]))
    return made


def build(tmp_path: Path) -> tuple[int, str, ET.Element]:
    out = tmp_path / "report.html"
    status = report.build(tmp_path, out, "reuse")
    text = out.read_text()
    return status, text, ET.fromstring(text.split("\n", 1)[1])  # less <!DOCTYPE html>


def sections(root: ET.Element) -> dict[str, ET.Element]:
    return {s.get("id")[len("plot-"):]: s for s in root.iter("section")}


def table(section: ET.Element) -> list[list[str]]:
    return [[td.text or "" for td in tr.iter("td")] for tr in section.find("table").iter("tr")
            if tr.find("td") is not None]


def close(cell: str, value: float) -> bool:
    try:
        return math.isclose(float(cell), value, rel_tol=6e-4)
    except ValueError:
        return False


@pytest.fixture(scope="module", params=[1, 2])
def full(request, tmp_path_factory):
    """Every benchmark's JSON (two seeds), and the report of them: (made, page text, root)."""
    folder = tmp_path_factory.mktemp(f"seed{request.param}")
    made = write_all(folder, request.param)
    status, text, root = build(folder)
    assert status == 0
    return made, text, root


def test_every_number_drawn_is_in_its_table(full):
    made, _, root = full
    found = sections(root)
    assert set(found) == set(PLOT_OF.values())
    for name, (_, expect) in made.items():
        rows = table(found[PLOT_OF[name]])
        assert len(rows) == len(expect), name
        for key, numbers in expect.items():
            row = next((r for r in rows if all(k in r for k in key)), None)
            assert row is not None, f"{name}: no row for {key}"
            for x in numbers:
                assert any(close(c, x) for c in row), f"{name} {key}: {x} not in {row}"


def test_each_plot_is_an_svg(full):
    for name, sec in sections(full[2]).items():
        figure = sec.find("figure")
        svg = figure.find("svg")
        assert svg is not None, name
        assert float(svg.get("width").rstrip("pt")) > 100
        assert len(list(svg.iter("path"))) > 10, name  # axes, ticks, bars or lines
        assert any(t.text for t in svg.iter("text")), name  # labels as text


def bar_heights(svg: ET.Element, prefix: str) -> dict[str, float]:
    """Height of each bar whose group id starts with `prefix`, in the SVG's units."""
    heights = {}
    for g in svg.iter("g"):
        if (g.get("id") or "").startswith(prefix):
            ys = [float(y) for y in re.findall(r"[-\d.]+ ([-\d.]+)", g.find("path").get("d"))]
            heights[g.get("id")] = max(ys) - min(ys)
    return heights


@pytest.mark.parametrize("file", ["model.json", "gpu.json"])
def test_bar_heights_are_the_json_values(full, file):
    """In each panel the stacked bars' parts are as tall as their values, one scale for all."""
    data = full[0][file][0]
    svg = sections(full[2])[PLOT_OF[file]].find("figure/svg")
    heights = bar_heights(svg, "model-" if file == "model.json" else "gpu-")
    if file == "model.json":
        panels = {f"{b}x{b_t}": {(f"model-{b}x{b_t}-{report.slug(r['path'])}-"
                                  f"{report.slug(s)}"): v
                                 for r in data["rows"] if (r["batch"], r["tokens"]) == (b, b_t)
                                 for s, v in r["timings_ms"].items()}
                  for b, b_t in {(r["batch"], r["tokens"]) for r in data["rows"]}}
    else:
        panels = {}
        for dtype in ("float32", "float16"):  # shapes by tokens, then batch
            rows = sorted((r for r in data["minilm"] if r["dtype"] == dtype),
                          key=lambda r: (r["tokens"], r["batch"]))
            panels[dtype] = {}
            for x, r in enumerate(rows):
                med = r["median_ms"]
                parts = {s: v for s, v in med.items() if s not in ("total", "other")}
                # "other" drawn as what the median total leaves: each bar ends at its total
                parts["other"] = med["total"] - sum(parts.values())
                panels[dtype].update({f"gpu-{dtype}-{x}-{report.slug(s)}": v
                                      for s, v in parts.items()})
    for panel, values in panels.items():
        scale = [heights[gid] / v for gid, v in values.items() if heights[gid] > 0.5]
        assert len(scale) >= 2, panel
        assert max(scale) == pytest.approx(min(scale), rel=2e-3), panel


def test_captions_name_machine_browser_adapter_date_and_source(full):
    made, _, root = full
    found = sections(root)
    for name, (data, _) in made.items():
        cap = {s.get("class"): s.find("b").text for s in found[PLOT_OF[name]].iter("span")}
        assert cap["machine"] == data["machine"]
        assert cap["browser"] == data["browser"]
        assert cap["date"] == data["date"]
        assert cap["source"].endswith(name)
        adapter = data["adapter"].get("info", data["adapter"]) or {"vendor": "nvidia hopper"}
        for field in ("vendor", "architecture", "description"):
            assert adapter.get(field, "") in cap["adapter"], (name, field)


def test_an_older_json_says_not_recorded(tmp_path):
    data, _ = model_json(random.Random(7))
    for field in ("machine", "adapter"):  # bench model wrote neither before the report
        del data[field]
    (tmp_path / "model.json").write_text(json.dumps(data))
    _, _, root = build(tmp_path)
    cap = {s.get("class"): s.find("b").text for s in sections(root)["model"].iter("span")}
    assert cap["machine"] == cap["adapter"] == report.NOT_RECORDED
    assert cap["browser"] == data["browser"]


def test_without_gpu_json_one_line_and_no_gpu_plot(tmp_path):
    write_all(tmp_path, 8, ["model.json", "datapath.json"])
    _, text, root = build(tmp_path)
    assert set(sections(root)) == {"model", "datapath"}
    line = next(li for li in root.iter("li") if li.get("id") == "no-gpu")
    assert "gpu.json" in line.text and "bench gpu" in line.text
    # --reuse ran nothing and lists the missing browser benchmarks with their commands
    missing = [li.find("code").text for li in root.iter("li") if li.get("class") == "missing"
               and li.get("id") != "no-gpu"]
    assert sorted(missing) == ["boot.json", "compare.json"]
    assert "bench boot --runs 1" in text and "bench compare --quick" in text


@pytest.mark.parametrize("bad, what", [
    ("{\"rows\": [1, 2", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"date": "2026-01-01", "rows": [{"batch": 1, "tokens": 12, "path": "naive"}]}),
     "'timings_ms'"),
])
def test_a_malformed_json_is_named_and_the_others_still_plot(tmp_path, capsys, bad, what):
    write_all(tmp_path, 9, ["datapath.json", "compare.json"])
    (tmp_path / "model.json").write_text(bad)
    status, _, root = build(tmp_path)
    assert status == 1
    assert set(sections(root)) == {"datapath", "compare"}
    error = next(li for li in root.iter("li") if li.get("class") == "error")
    said = "".join(error.itertext())
    assert "model.json" in said and what in said
    assert re.search(rf"\[report\] ERROR .*model\.json: .*{re.escape(what)}",
                     capsys.readouterr().out)


def test_the_page_references_nothing_outside_itself(full):
    _, text, root = full
    assert not re.search(r"https?:", text)
    for el in root.iter():
        for attr in ("src", "href"):
            ref = el.get(attr)
            assert ref is None or ref.startswith("#"), (el.tag, ref)
    assert not re.search(r"url\(\s*['\"]?(?!#)", text)  # only the page's own clip paths
    assert not re.search(r"<(script|link|img|iframe|object)\b", text)


def test_the_benchmarks_write_what_the_captions_read(tmp_path):
    """The browser benchmarks take machine and adapter from the harness (the adapter as the
    page reports it, `pybridge.gpu.adapter`); the report's caption names them."""
    seen = {"vendor": "google", "architecture": "swiftshader", "device": "",
            "description": "", "isFallbackAdapter": "True"}

    class Page:  # what page_adapter asks of a Playwright page
        def wait_for_function(self, expression):
            assert "pybridge.gpu" in expression

        def evaluate(self, expression):
            assert "pybridge.gpu.adapter" in expression
            return seen

    data, _ = compare_json(random.Random(11))
    data.update(machine=harness.machine(), adapter=harness.page_adapter(Page()))
    (tmp_path / "compare.json").write_text(json.dumps(data))
    _, _, root = build(tmp_path)
    cap = {s.get("class"): s.find("b").text for s in sections(root)["compare"].iter("span")}
    assert cap["machine"] == harness.machine()
    assert cap["adapter"] == "google · swiftshader · fallback adapter"


def test_png_copies_of_the_plots(tmp_path):
    write_all(tmp_path, 12, ["compare.json"])
    report.build(tmp_path, tmp_path / "r.html", "reuse", png=tmp_path / "png")
    assert (tmp_path / "png" / "report-compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode, present, ran", [
    ("default", ["model.json"], ["boot", "datapath", "compare"]),  # the missing ones
    ("run", ["model.json"], ["boot", "datapath", "model", "compare"]),  # all again
    ("reuse", [], []),  # nothing
])
def test_which_benchmarks_the_report_runs(tmp_path, monkeypatch, mode, present, ran):
    """Only browser benchmarks, in quick mode; never the GPU one (another machine's)."""
    write_all(tmp_path, 13, present)
    calls = []

    def fake_run(src, results):
        calls.append((src.bench, src.quick))
        (results / src.file).write_text(json.dumps(MAKERS[src.file](random.Random(14))[0]))
        return True

    monkeypatch.setattr(report, "run_bench", fake_run)
    assert report.build(tmp_path, tmp_path / "r.html", mode) == 0
    assert [name for name, _ in calls] == ran
    assert all(quick in (("--quick",), ("--runs", "1")) for _, quick in calls)


def test_dev_py_sets_up_the_references_only_where_compare_may_run(tmp_path, monkeypatch):
    from tools import dev

    monkeypatch.chdir(tmp_path)
    assert dev.report_runs_compare(["--results", "."])  # no compare.json: it runs
    assert not dev.report_runs_compare(["--reuse", "--results", "."])
    (tmp_path / "compare.json").write_text("{}")
    assert not dev.report_runs_compare(["--results", "."])
    assert dev.report_runs_compare(["--run", "--results", "."])
    # the option's other spelling names the same folder (found in review: it read the default)
    (tmp_path / "other").mkdir()
    assert dev.report_runs_compare(["--results=other"])
    assert not dev.report_runs_compare(["--results=."])


@pytest.mark.parametrize("file, adapter", [
    ("gpu.json", {"info": None}), ("compare.json", ["x"]), ("gpu-kernels.json", None)])
def test_an_adapter_of_another_shape_still_plots(tmp_path, file, adapter):
    """Found in review: an `adapter` the report could not read ended the whole report."""
    made = write_all(tmp_path, 11, [file])
    data = made[file][0]
    if file == "gpu-kernels.json":
        data["adapter"], data["dawn"] = {}, {"default": None}
    else:
        data["adapter"] = adapter
    (tmp_path / file).write_text(json.dumps(data))
    status, _, root = build(tmp_path)
    assert status == 0 and PLOT_OF[file] in sections(root)
    cap = {s.get("class"): s.find("b").text for s in sections(root)[PLOT_OF[file]].iter("span")}
    assert cap["adapter"].startswith("not readable") or cap["adapter"].startswith("not "), cap


def test_float32_onnx_runtime_is_drawn_beside_float32_only(full):
    """Found in review: the float16 panel showed ONNX Runtime's float32 export as its peer."""
    rows = table(sections(full[2])["gpu"])
    header = [th.text for th in sections(full[2])["gpu"].iter("th")]
    peers = [i for i, h in enumerate(header) if h.startswith("ort-")]
    assert len(peers) == len(PEERS)
    for row in rows:
        filled = [row[i] not in ("", "–", "-", None) for i in peers]
        assert all(filled) if row[0] == "float32" else not any(filled), row


def test_compare_bars_rank_as_their_times(full):
    """On its log axis each bar is as much taller as its time is longer: the bars' order by
    height is the times' order (found in review: the two series swapped still passed)."""
    data = full[0]["compare.json"][0]
    heights = bar_heights(sections(full[2])["compare"].find("figure/svg"), "compare-")
    ort = report.slug(f"ONNX Runtime Web {data.get('ort', '?')}")
    times = {f"compare-pybridge-{x}": r["pybridge_ms"] for x, r in enumerate(data["rows"])}
    times.update({f"compare-{ort}-{x}": r["ort_ms"] for x, r in enumerate(data["rows"])})
    assert set(times) <= set(heights)
    assert sorted(times, key=times.get) == sorted(times, key=heights.get)


def test_every_id_is_once_on_the_page_and_every_reference_finds_one(full):
    """Found in review: the inlined figures repeated matplotlib's figure_1, axes_1, ... ids."""
    _, text, root = full
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:5]
    refs = set(re.findall(r'href="#([^"]+)"', text)) | set(re.findall(r"url\(#([^)]+)\)", text))
    assert refs and refs <= set(ids), sorted(refs - set(ids))[:5]
