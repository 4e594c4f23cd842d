// The page: checks WebGPU, starts the worker that owns Python and the GPU, shows progress,
// device facts and the kernel result. It never blocks: all work happens in worker.js.
//
// For tests and tools the page exposes `window.pybridge`:
//   state      "checking" | "booting" | "python-ready" | "ready" | "error"
//   device     "gpu" | "cpu": where the kernels run. Without WebGPU (or with ?gpu=none) the
//              page still boots and answers: every kernel runs on numpy in the worker
//              (pybridge.cpu), and `noWebGPU` says why
//   model      "off" | "loading" | "ready" | "error": the demo model, loaded once the backend
//              is chosen, beside the kernel self-check; a failed self-check ends it as "error"
//              (the URL parameter ?model=none skips it; ?dtype=float32 picks the weights;
//              ?limits=safari|default asks the device for Safari's or WebGPU's default limits)
//   run(code)  run Python in the worker (async); resolves with its last expression's value
//   call(module, name, args, kwargs)  call a Python function with values (async)
//   search(query, sentences, path)  rank sentences by similarity to the query (the demo);
//              path "zero-copy" | "naive" (the switch under the results), its copies listed
//   paths      the last search on each path: {"zero-copy": r, "naive": r} (the data path panel)
//   boot       how Python started: {how: "snapshot" | "made" | "normal", why (the reason a
//              start was not from a snapshot), bytes, stored (once a made snapshot is stored:
//              its size, or "failed: ..."), packages (numpy and pybridge: {how: "installed"
//              (as the last load installed them, with their bytecode), files, bytes | "none",
//              why}), packagesStored (where none were installed: the size of what this load
//              kept, or "failed: ...")};
//              ?snapshot=off starts without one
//   present    presenter mode (?present, web/present.js): {index, id, count, zoom}
//   spans      the boot's timeline: [{name, start, end}] in ms since navigation (bench boot)
//   corpus     the docstring corpus, once the model is ready: {how: "kept" (read from this
//              browser's storage) | "embedded" | "none" (not yet: the Embed button), why,
//              sentences, ms, perSecond} (?corpus=N opens N entries spread over it)
//   timeline   the GPU timeline's last answer: {available, steps: [[role, kernel, µs]], ...} | {available: false, why}
//   snippet    the editor's last run: {ok, value, stdout, error, ms, copies} (run_snippet)
//   race       the race against ONNX Runtime Web (web/race.js): {available: false, why} |
//              {available, running, laps: [{pybridgeMs, tokenizeMs, ortMs, least, worst,
//              maxDiff}], shape, dtype, agree, least, pybridgeMedianMs, ortMedianMs, vectors,
//              error}; config is config.json (its "race" names ONNX Runtime Web when set up)
//   corpusSearch  the last answer to the corpus's search-as-you-type: {query, ranked, ...};
//              corpusProgress the last progress of its embedding: {done, total, perSecond}
//   assets, stages, timings, gpu, result, error, modelInfo, lastSearch   what the page shows

import {
  chooseBackend, fmtBytes, fmtMs, pythonWorker, setState as setStatus, showPanel, whyNoGpu,
} from "./client.js";
import { createRace } from "./race.js";

const $ = (sel) => document.querySelector(sel);

const python = pythonWorker(() => app.state); // the worker: client.js
const { run, call } = python;
const app = {
  state: "checking",
  assets: {},
  stages: {},
  timings: {},
  gpu: null,
  device: "gpu",
  noWebGPU: null,
  result: null,
  error: null,
  sizes: {},
  model: "off",
  modelInfo: null,
  lastSearch: null,
  corpus: null,
  corpusSearch: null,
  boot: null,
  spans: [],
  run,
  call,
  search,
};
const params = new URLSearchParams(location.search);
window.pybridge = app;

const setState = (state, text) => setStatus(app, state, text);

// The boot's timeline (`app.spans`, for bench boot's waterfall): what ran from when to when,
// in ms since navigation; the worker's stages and overlapping work come by message.
function addSpan(name, start, end = performance.now()) {
  app.spans.push({ name, start, end });
}

function showError(title, message) {
  app.error = message;
  showPanel("error", title, message);
}

const assetRows = new Map();

function renderAsset(name) {
  const a = app.assets[name];
  let row = assetRows.get(name);
  if (!row) {
    row = document.createElement("li");
    assetRows.set(name, row);
    row.innerHTML = `<span class="name"></span><progress max="1"></progress><span class="size"></span>`;
    row.querySelector(".name").textContent = name;
    $("#assets").appendChild(row);
  }
  row.dataset.state = a.state;
  const total = app.sizes[name] || 0;
  const bar = row.querySelector("progress");
  if (a.state === "done") bar.value = 1;
  else if (total) bar.value = Math.min(1, a.loaded / total);
  else bar.removeAttribute("value");
  row.querySelector(".size").textContent =
    a.state === "failed" ? a.error : total ? fmtBytes(total) : a.loaded ? fmtBytes(a.loaded) : "";
}

const STAGE_LABELS = {
  config: "config",
  pyodide: "Pyodide runtime",
  packages: "numpy + pybridge",
  ready: "Python ready",
};

// How Python started (worker.js startPython), shown beside the runtime's stage.
const START_LABELS = {
  snapshot: "restored from a snapshot",
  made: "started; snapshot made for the next load",
  normal: "started without a snapshot",
};

function renderStages() {
  $("#stages").innerHTML = "";
  for (const [k, v] of Object.entries(app.stages)) {
    const li = document.createElement("li");
    li.innerHTML = "<span></span><span></span>";
    let how = null;
    if (k === "pyodide" && app.boot?.how) {
      how = START_LABELS[app.boot.how] + (app.boot.why ? `: ${app.boot.why}` : "");
    } else if (k === "packages" && app.boot?.packages) {
      const { packages } = app.boot;
      how = packages.how === "installed" ? `installed as on the last load: ${packages.files} files`
        : `unpacked and compiled: ${packages.why}`;
    }
    li.firstChild.textContent = (STAGE_LABELS[k] || k) + (how ? ` (${how})` : "");
    li.lastChild.textContent = fmtMs(v);
    $("#stages").appendChild(li);
  }
}

function renderGpu(gpu) {
  const info = gpu.adapter || {};
  const desc = [info.vendor, info.architecture, info.device, info.description]
    .filter(Boolean)
    .join(" · ");
  $("#gpu-adapter").textContent = desc || "(the browser does not describe the adapter)";
  $("#gpu-features").innerHTML = gpu.features.length
    ? gpu.features.map((f) => `<code>${f}</code>`).join(" ")
    : "<em>none of shader-f16, subgroups, timestamp-query</em>";
  $("#gpu-limits").innerHTML = Object.entries(gpu.limits)
    .map(([k, v]) => `<tr><td>${k}</td><td>${v >= 1 << 20 ? fmtBytes(v) : v}</td></tr>`)
    .join("");
  $("#gpu-panel").hidden = false;
}

function renderResult(r) {
  const fmt = (xs) => xs.map((v) => v.toFixed(4)).join(", ");
  $("#result-gpu").textContent = `[${fmt(r.head)}, …]`;
  $("#result-where").textContent = app.device === "cpu" ? "CPU (numpy)" : "GPU";
  $("#result-numpy").textContent = `[${fmt(r.expectedHead)}, …]`;
  $("#result-err").textContent = r.maxAbsError.toExponential(2);
  $("#result-verdict").textContent = r.ok ? "matches numpy" : "DIFFERS from numpy";
  $("#result-verdict").className = r.ok ? "ok" : "bad";
  $("#result-n").textContent = r.n.toLocaleString();
  $("#result-steps").innerHTML = Object.entries(r.timingsMs)
    .map(([k, v]) => `<li><span>${k}</span><span>${fmtMs(v)}</span></li>`)
    .join("");
  $("#result-panel").hidden = false;
}

function onWorkerMessage(ev) {
  const msg = ev.data;
  switch (msg.type) {
    case "config":
      app.config = msg.config;
      app.sizes = msg.config.sizes || {};
      $("#pyodide-version").textContent = msg.config.pyodideVersion;
      break;
    case "asset":
      app.assets[msg.name] = { ...app.assets[msg.name], ...msg };
      renderAsset(msg.name);
      break;
    case "stage":
      app.stages[msg.name] = msg.ms;
      if (msg.boot) app.boot = { ...app.boot, ...msg.boot }; // "stored" may have come first
      if (msg.packages) app.boot = { ...app.boot, packages: msg.packages };
      addSpan(`worker: ${msg.name}`, msg.start - performance.timeOrigin,
        msg.end - performance.timeOrigin);
      if (msg.python) {
        $("#versions").textContent =
          `Python ${msg.python} · numpy ${msg.numpy} · pybridge ${msg.pybridge}`;
      }
      renderStages();
      break;
    case "span": // worker.js: work that overlaps the stages
      addSpan(msg.name, msg.start - performance.timeOrigin, msg.end - performance.timeOrigin);
      break;
    case "snapshot-stored": // in the background, after a start that made one
      app.boot = { ...app.boot, stored: msg.error ? `failed: ${msg.error}` : msg.bytes };
      break;
    case "packages-stored": // after a boot that had none from the last load
      app.boot = { ...app.boot, packagesStored: msg.error ? `failed: ${msg.error}` : msg.bytes };
      break;
    case "ready":
      app.timings.pythonReady = performance.now(); // ms since navigation start
      app.workerResources = msg.resources;
      $("#editor-panel").hidden = false;
      setState("python-ready", "Python ready, running the kernel…");
      runDemo();
      break;
    case "error":
      setState("error", "Failed");
      showError(msg.asset ? `Could not load ${msg.asset}` : "Python failed to start", msg.message);
      break;
    case "model-progress": {
      const bar = $("#model-progress");
      bar.value = msg.total ? msg.done / msg.total : 0;
      $("#model-status").textContent =
        `Streaming weights to ${app.device === "cpu" ? "numpy" : "the GPU"}: ` +
        `${fmtBytes(msg.done)} of ${fmtBytes(msg.total)}`;
      break;
    }
    case "corpus-progress": {
      app.corpusProgress = msg;
      $("#corpus-progress").value = msg.done / msg.total;
      $("#corpus-status").textContent = `Embedding on ${WHERE[app.device]}: ${msg.done} of ` +
        `${msg.total} sentences, ${msg.perSecond.toFixed(1)} sentences/s`;
      break;
    }
    case "model-recovering":
      $("#search-timings").textContent = "The GPU was reset: loading the model again on a new device…";
      break;
  }
}

async function runDemo() {
  let t = performance.now();
  try {
    await gpuCheck; // the page's WebGPU check ran while Python started
    const problem = await chooseBackend(call, app.noWebGPU, params);
    if (problem && !app.noWebGPU) useCpu(problem); // the worker got no device after all
  } catch (err) {
    setState("error", "Failed");
    showError(err.title || "Python failed to start", err.message);
    return;
  }
  addSpan("backend chosen (device)", t);
  // the model loads while the kernel self-check runs: neither waits for the other
  if (params.get("model") !== "none") loadModel(params.get("dtype") || "float16");
  t = performance.now();
  try {
    const r = await call("pybridge.demo", "run_axpy");
    app.result = r;
    app.gpu = r.gpu;
    app.timings.kernelDone = performance.now();
    addSpan("kernel self-check", t);
    renderGpu(r.gpu);
    renderResult(r);
    setState("ready", r.ok ? "Ready" : "Ready (kernel result differs)");
  } catch (err) {
    setState("error", "Failed");
    showError(app.device === "cpu" ? "The kernel self-check failed" : "The GPU kernel failed",
      err.message);
    closeModel(); // the kernels are not to be trusted: no search on them
  }
}

// The model panel closed after a failed self-check (while or after the model loaded).
function closeModel() {
  if (app.model === "off") return;
  const loaded = app.model === "ready"; // else loadModel unloads it when its load returns
  app.model = "error";
  if (loaded) call("pybridge.demo", "unload_model").catch(() => {});
  $("#search-form").hidden = true;
  $("#corpus-panel").hidden = true; // the corpus and the timeline run on the same kernels
  $("#timeline-panel").hidden = true;
  race.hide();
  $("#model-loading").hidden = false;
  $("#model-status").textContent = "Search is not offered: the kernel self-check failed.";
}

// --- the demo: semantic search with all-MiniLM-L6-v2 ---------------------------------------
async function loadModel(dtype) {
  app.model = "loading";
  $("#model-panel").hidden = false;
  try {
    const asked = performance.now();
    const info = await call("pybridge.demo", "load_model", [], { dtype });
    if (app.model === "error") { // the self-check failed meanwhile: closeModel()
      await call("pybridge.demo", "unload_model").catch(() => {});
      return;
    }
    app.timings.modelReady = performance.now();
    // load_model's stages, from its start (the weights and the pipelines overlap)
    addSpan("model: weights on the GPU", asked, asked + info.loadMs);
    addSpan("model: pipelines compiled", asked, asked + info.compileMs);
    addSpan("model: first sentence", asked + info.readyMs, app.timings.modelReady);
    app.modelInfo = info;
    app.model = "ready";
    $("#model-loading").hidden = true;
    $("#search-form").hidden = false;
    $("#model-panel small").textContent =
      `all-MiniLM-L6-v2 (${info.dtype}) on ${WHERE[app.device]}, from Python · weights in ${fmtMs(info.loadMs)}, ` +
      `kernels compiled in ${fmtMs(info.compileMs)} (side by side), first sentence in ${fmtMs(info.warmupMs)}`;
    await doSearch();
    openCorpus(false); // its vectors if this browser kept them; else the Embed button
    $("#timeline-panel").hidden = false;
    race.offer();
  } catch (err) {
    app.model = "error";
    $("#model-status").textContent = "";
    showError("The model failed to load", err.message);
  }
}

function search(query, sentences, path = "zero-copy") {
  return call("pybridge.demo", "search", [query, sentences], { path });
}

// --- the data path, live: the copies of each search, zero-copy against naive ---------------
const currentPath = () => document.querySelector("input[name=path]:checked")?.value ?? "zero-copy";
// the data's copies in one direction: the kernels' parameters ("uniform", copied once when a
// shape's plan is built) are not the data's
const sumCopies = (byPath) => Object.entries(byPath || {}).filter(([path]) => path !== "uniform")
  .reduce((t, [, { copies, bytes }]) => ({ copies: t.copies + copies, bytes: t.bytes + bytes }),
    { copies: 0, bytes: 0 });
const nCopies = ({ copies, bytes }) => `${copies} ${copies === 1 ? "copy" : "copies"} · ${fmtBytes(bytes)}`;

function renderDatapath(r) {
  // side by side only for the same texts: an edit drops the other path's column
  const kept = Object.entries(app.paths || {}).filter(([, x]) => x.texts === r.texts);
  app.paths = { ...Object.fromEntries(kept), [r.path]: r };
  document.body.dataset.path = r.path;
  for (const dir of ["upload", "readback"]) {
    const edge = $(`#dp-${dir}`);
    edge.querySelector("b").textContent = nCopies(sumCopies(r.copies[dir]));
    edge.classList.remove("moved");
    void edge.offsetWidth; // restart the animation
    edge.classList.add("moved");
  }
  const cell = (path, f) => (app.paths[path] ? f(app.paths[path]) : "–");
  const rows = [
    ["upload", (x) => nCopies(sumCopies(x.copies.upload))],
    ["readback", (x) => nCopies(sumCopies(x.copies.readback))],
    ["search", (x) => fmtMs(x.totalMs)],
  ];
  $("#dp-table").innerHTML = "<tr><th></th><th>zero-copy</th><th>naive</th></tr>";
  for (const [name, f] of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<th></th><td></td><td></td>";
    tr.children[0].textContent = name;
    tr.children[1].textContent = cell("zero-copy", f);
    tr.children[2].textContent = cell("naive", f);
    $("#dp-table").appendChild(tr);
  }
  $("#datapath").hidden = false;
}

for (const radio of document.querySelectorAll("input[name=path]")) {
  radio.addEventListener("change", () => app.model === "ready" && doSearch());
}

let searching = false; // one demo search at a time (Search, Space in presenter mode, the switch)
async function doSearch(ev) {
  if (ev) ev.preventDefault();
  if (searching || raceHolds($("#search-timings"))) return;
  const query = $("#query").value.trim();
  const sentences = $("#sentences").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!query || !sentences.length) {
    $("#search-timings").textContent = "Type a query and at least one sentence.";
    return;
  }
  $("#search-button").disabled = true;
  searching = true;
  for (const radio of document.querySelectorAll("input[name=path]")) radio.disabled = true;
  const asked = performance.now();
  try {
    const r = await search(query, sentences, currentPath());
    renderDatapath({ ...r, texts: JSON.stringify([query, sentences]) });
    if (!app.timings.firstAnswer) {
      app.timings.firstAnswer = performance.now();
      addSpan("first search", asked);
    }
    app.lastSearch = r;
    renderRanked($("#ranked"), r.ranked);
    const t = r.timingsMs;
    $("#search-timings").textContent =
      `${sentences.length + 1} texts, ${r.tokens} tokens in ${fmtMs(r.totalMs)}: tokenize ` +
      `${fmtMs(t.tokenize)}, prepare ${fmtMs(t.prepare)}, submit ${fmtMs(t.submit)} ` +
      `(upload + forward pass, one call), GPU ${fmtMs(t.gpu)}, readback ${fmtMs(t.readback)}` +
      (r.recovered ? `. Recovered: ${r.recovered}.` : "");
  } catch (err) {
    showError("Search failed", err.message);
  } finally {
    $("#search-button").disabled = false;
    searching = false;
    for (const radio of document.querySelectorAll("input[name=path]")) radio.disabled = false;
  }
}

$("#search-form").addEventListener("submit", doSearch);

// --- the corpus: Python's docstrings, embedded once, kept, searched as you type -------------
const plural = (n, word) => `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;

let corpusOpening = null; // "embed" | "read" (its kept vectors, if any: no GPU work)
async function openCorpus(embed) {
  if (corpusOpening || (embed && raceHolds($("#corpus-status")))) return;
  corpusOpening = embed ? "embed" : "read";
  $("#corpus-panel").hidden = false;
  $("#corpus-embed").hidden = true;
  $("#corpus-progress").hidden = !embed;
  $("#corpus-progress").value = 0;
  const limit = params.has("corpus") ? Number(params.get("corpus")) : null;
  try {
    const r = await call("pybridge.demo", "open_corpus", [], { limit, embed });
    app.corpus = r;
    $("#corpus-progress").hidden = true;
    const n = plural(r.sentences, "docstring");
    if (r.how === "none") {
      $("#corpus-status").textContent = `${n} of Python's standard library. Embedded on ` +
        `${WHERE[app.device]} once, they are kept in this browser for the next visit.`;
      $("#corpus-embed").textContent = `Embed ${n}`;
      $("#corpus-embed").hidden = false;
      return;
    }
    $("#corpus-status").textContent = r.how === "kept"
      ? `${n}, read from this browser's storage in ${fmtMs(r.ms)}.`
      : `${n} embedded on ${WHERE[app.device]} in ${fmtMs(r.ms)} ` +
        `(${r.perSecond.toFixed(1)} sentences/s); ` +
        (r.why?.includes("not kept") ? r.why.slice(r.why.indexOf("not kept")) + "." : "kept in this browser.");
    $("#corpus-query").hidden = false;
    if ($("#corpus-query").value.trim()) corpusSearch();
  } catch (err) {
    $("#corpus-progress").hidden = true;
    $("#corpus-status").textContent = `The docstrings could not be ${embed ? "embedded" : "opened"}: ` +
      `${err.message.split("\n").filter(Boolean).at(-1)}`;
    if (app.corpus && app.corpus.how !== "none") {
      $("#corpus-query").hidden = false; // the corpus opened before still answers
    } else if (app.model === "ready") { // nothing open: offer it again
      $("#corpus-embed").textContent = "Try again";
      $("#corpus-embed").hidden = false;
    }
    showError("The corpus could not be opened", err.message);
  } finally {
    corpusOpening = null;
  }
}

$("#corpus-embed").addEventListener("click", () => openCorpus(true));

// Search as you type: one search at a time; the newest query typed meanwhile runs next (the
// ones between are skipped).
let corpusBusy = false;
async function corpusSearch() {
  if (corpusBusy) return; // the running one picks the newest query up when it ends
  if (raceHolds($("#corpus-timings"))) return;
  corpusBusy = true;
  try {
    let asked = null;
    while ($("#corpus-query").value.trim() && $("#corpus-query").value.trim() !== asked) {
      asked = $("#corpus-query").value.trim();
      const r = await call("pybridge.demo", "corpus_search", [asked], { k: 8 });
      app.corpusSearch = { query: asked, ...r };
      renderCorpusResults(r);
    }
  } catch (err) {
    $("#corpus-timings").textContent = `Search failed: ${err.message}`;
  } finally {
    corpusBusy = false;
  }
}

// A ranked list (the demo's search, the corpus's): score, a bar scaled to the best, the text
// and, where the item has one, the name it documents.
function renderRanked(list, ranked) {
  const top = Math.max(...ranked.map((x) => x.score), 1e-6);
  list.innerHTML = "";
  for (const { where, text, score } of ranked) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="score"></span><span class="bar"></span><span class="text"></span>`;
    li.querySelector(".score").textContent = score.toFixed(3);
    li.querySelector(".bar").style.width = `${Math.max(2, (score / top) * 100)}%`;
    li.querySelector(".text").textContent = text;
    if (where !== undefined) {
      const code = document.createElement("code");
      code.textContent = where;
      li.querySelector(".text").append(code);
    }
    list.appendChild(li);
  }
}

function renderCorpusResults(r) {
  renderRanked($("#corpus-results"), r.ranked);
  $("#corpus-timings").textContent = `${plural(r.sentences, "sentence")} ranked: the query ` +
    `embedded in ${fmtMs(r.embedMs)}, every row scored in ${fmtMs(r.rankMs)}.`;
}

$("#corpus-query").addEventListener("input", corpusSearch);

// --- the GPU timeline: every kernel of one forward pass (pybridge.demo.gpu_timeline) ---------
const ROLE_COLORS = { embed: "#9b8cff", qkv: "#6aa6ff", attention: "#f5b942", out: "#4fd1c5",
  layernorm: "#8b93a3", ffn1: "#3ecf8e", ffn2: "#2f9e6e", pool: "#ff8fa3" };

let timelineRunning = false;
async function runTimeline() {
  const button = $("#timeline-run");
  if (timelineRunning || raceHolds($("#timeline-status"))) return;
  timelineRunning = true;
  button.disabled = true;
  $("#timeline-status").textContent = "Timing…";
  try {
    const r = await call("pybridge.demo", "gpu_timeline", [demoTexts()]);
    app.timeline = r;
    if (!r.available) {
      $("#timeline-status").textContent = `Not available here: ${r.why}.`;
      $("#timeline").innerHTML = "";
      $("#timeline-legend").innerHTML = "";
      return;
    }
    renderTimeline(r);
  } catch (err) {
    $("#timeline-status").textContent = `Timing failed: ${err.message}`;
    $("#timeline").innerHTML = ""; // not the last drawing under this error
    $("#timeline-legend").innerHTML = "";
  } finally {
    timelineRunning = false;
    button.disabled = false;
  }
}

// One lane per layer (embed and pool on their own), each kernel a segment placed where it
// runs in the pass: the dispatches one after another, each as long as the GPU took for it.
function renderTimeline(r) {
  const sum = r.steps.reduce((t, [, , us]) => t + us, 0);
  const total = sum || 1; // every kernel read 0: no widths to share
  const lanes = [];
  let at = 0;
  r.steps.forEach(([role, kernel, us], i) => {
    const lane = i === 0 ? "embed" : i === r.steps.length - 1 ? "pool" : `layer ${Math.floor((i - 1) / 7)}`;
    if (!lanes.length || lanes.at(-1).name !== lane) lanes.push({ name: lane, segs: [] });
    lanes.at(-1).segs.push({ role, kernel, us, at });
    at += us;
  });
  const box = $("#timeline");
  box.innerHTML = "";
  for (const lane of lanes) {
    const row = document.createElement("div");
    row.className = "lane";
    row.innerHTML = "<span></span><div class=\"track\"></div>";
    row.firstChild.textContent = lane.name;
    for (const s of lane.segs) {
      const seg = document.createElement("div");
      seg.className = "seg";
      seg.style.left = `${(100 * s.at) / total}%`;
      seg.style.width = `${(100 * s.us) / total}%`;
      seg.style.background = ROLE_COLORS[s.role] || "var(--accent)";
      seg.title = `${lane.name} · ${s.role} (${s.kernel}): ${s.us.toFixed(1)} µs`;
      row.lastChild.appendChild(seg);
    }
    box.appendChild(row);
  }
  const byRole = {};
  for (const [role, , us] of r.steps) byRole[role] = (byRole[role] || 0) + us;
  $("#timeline-legend").innerHTML = "";
  for (const [role, us] of Object.entries(byRole).sort((a, b) => b[1] - a[1])) {
    const li = document.createElement("li");
    li.innerHTML = "<span><i></i></span><span></span>";
    li.querySelector("i").style.background = ROLE_COLORS[role] || "var(--accent)";
    li.firstChild.append(role);
    li.lastChild.textContent = `${fmtUs(us)} (${((100 * us) / total).toFixed(0)}%)`;
    $("#timeline-legend").appendChild(li);
  }
  const zeros = r.steps.filter(([, , us]) => us === 0).length;
  $("#timeline-status").textContent = `${r.steps.length} kernels, batch ${r.shape[0]} × ` +
    `${r.shape[1]} tokens: ${fmtUs(sum)} timed one by one, ${fmtUs(r.whole_us)} as one pass.` +
    (zeros ? ` ${zeros} of them read 0 µs: this browser rounds its GPU timestamps, so short ` +
      "kernels vanish and the bars are coarse." : "");
}

const fmtUs = (us) => (us >= 1000 ? fmtMs(us / 1000) : `${us.toFixed(0)} µs`);

$("#timeline-run").addEventListener("click", runTimeline);

// The demo's query and sentences as one list (the timeline's and the race's batch).
function demoTexts() {
  const query = $("#query").value.trim() || "How do I cook pasta?";
  return [query, ...$("#sentences").value.split("\n").map((x) => x.trim()).filter(Boolean)];
}

// --- the race: the same texts through pybridge and ONNX Runtime Web (web/race.js) ------------
// It times its laps: it starts only when none of the page's other GPU work runs, and while it
// runs none starts (each says so where its answer would show).
const otherGpuWork = () => [searching && "a search", corpusBusy && "a docstring search",
  corpusOpening === "embed" && "the docstrings' embedding", timelineRunning && "the timeline",
  snippetRunning && "the editor's code"].filter(Boolean);
function raceHolds(line) {
  if (!race.running()) return false;
  line.textContent = "The race is running on the GPU: this waits for it (or Stop it), then try again.";
  line.hidden = false;
  return true;
}
const race = createRace({ app, call, texts: demoTexts, busy: otherGpuWork });
app.runRace = (laps) => race.run(laps); // tests: a race of `laps` laps

// --- Python at the keyboard: the editor's code runs in the worker (pybridge.demo.run_snippet)
let snippetRunning = false;
async function runSnippet() {
  if (snippetRunning || raceHolds($("#editor-output"))) return;
  snippetRunning = true;
  $("#editor-run").disabled = true;
  const output = $("#editor-output");
  try {
    const r = await call("pybridge.demo", "run_snippet", [$("#editor").value]);
    app.snippet = r;
    const shown = [r.stdout, r.error ?? (r.value !== null ? r.value : "")].filter(Boolean).join("\n");
    output.textContent = `${shown || "(no output)"}\n— ${r.ok ? "ran" : "failed"} in ${fmtMs(r.ms)}`;
    output.classList.toggle("error", !r.ok);
    $("#editor-copies").innerHTML = "";
    for (const c of r.copies) {
      const li = document.createElement("li");
      li.innerHTML = "<span></span><span></span>";
      li.firstChild.textContent = `${c.direction} (${c.path})`;
      li.lastChild.textContent = `${c.copies} ${c.copies === 1 ? "copy" : "copies"}, ${fmtBytes(c.bytes)}`;
      $("#editor-copies").appendChild(li);
    }
    if (!r.copies.length) $("#editor-copies").innerHTML = "<li><span>copies</span><span>none</span></li>";
  } catch (err) { // the worker itself failed (the snippet's own errors are answers)
    app.snippet = { ok: false, error: err.message };
    output.textContent = err.message;
    output.classList.add("error");
  } finally {
    output.hidden = false;
    snippetRunning = false;
    $("#editor-run").disabled = false;
  }
}

$("#editor-run").addEventListener("click", runSnippet);
$("#editor").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    runSnippet();
  } else if (ev.key === "Tab" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
    ev.preventDefault(); // indent instead of leaving the field
    const el = ev.target;
    el.setRangeText("    ", el.selectionStart, el.selectionEnd, "end");
  }
});

const WHERE = { gpu: "your GPU", cpu: "the CPU (numpy, no WebGPU)" };

// The kernels run on numpy in the worker (pybridge.cpu): the page says why.
function useCpu(problem) {
  app.device = "cpu";
  app.noWebGPU = problem;
  document.body.dataset.device = "cpu";
  showPanel("notice", "No WebGPU here: running on the CPU instead",
    `${problem} Every kernel and the model run on numpy in this page instead: the same ` +
    "answers, more slowly." + (params.has("limits") ? " (?limits= applies to a GPU only.)" : ""));
  for (const el of document.querySelectorAll(".where")) el.textContent = WHERE.cpu;
}

// The worker starts first; the page checks WebGPU meanwhile (runDemo waits for the check
// before choosing where the kernels run).
let gpuCheck;

// Presenter mode (?present, web/present.js): Space runs the current panel's action.
const PRESENTER_ACTIONS = {
  "model-panel": () => app.model === "ready" && $("#search-form").requestSubmit(),
  "corpus-panel": () => (!$("#corpus-embed").hidden ? $("#corpus-embed").click()
    : !$("#corpus-query").hidden && $("#corpus-query").focus()),
  "timeline-panel": () => runTimeline(),
  "race-panel": () => race.run(),
  "editor-panel": () => runSnippet(),
  "result-panel": () => app.state === "ready" && rerunKernel(),
};

async function rerunKernel() {
  try {
    const r = await call("pybridge.demo", "run_axpy");
    app.result = r;
    renderResult(r);
  } catch (err) {
    showError("The GPU kernel failed", err.message);
  }
}

function main() {
  addSpan("page loaded", 0);
  if (params.has("present")) {
    import("./present.js").then(({ startPresenter }) => startPresenter(app, PRESENTER_ACTIONS));
  }
  setState("booting", "Loading Python…");
  const worker = python.start(
    params.get("snapshot") === "off" ? "./worker.js?snapshot=off" : "./worker.js", onWorkerMessage);
  worker.onerror = (ev) => {
    setState("error", "Failed");
    showError("Python's worker failed", ev.message || "worker.js could not be loaded");
  };
  const t = performance.now();
  gpuCheck = whyNoGpu(params).then((problem) => {
    addSpan("WebGPU check", t);
    if (problem) {
      useCpu(problem);
      if (app.state === "booting") setState("booting", "Loading Python (CPU mode)…");
    }
    return problem;
  });
}

main();
