// The self-test page (/selftest): boots the demo's worker (worker.js), then asks Python
// (pybridge/checks/selftest.py) for one check at a time, so each row appears as its check
// finishes and a failing check stops nothing. Without WebGPU (or with ?gpu=none) the same
// checks run on the CPU backend (numpy), and the page says so. The report, the table's
// content with the device and versions, downloads as JSON. ?only=model,pool runs only the
// checks whose names contain one of those words (case-insensitive).
//
// For tests and tools the page exposes `window.pybridge`:
//   state    "checking" | "booting" | "running" | "done" | "error" (also body[data-state])
//   device   "gpu" | "cpu"; noWebGPU says why "cpu"
//   report   what the download button saves (filled in as checks finish)
//   run(code), call(module, name, args, kwargs)   as on the demo page (client.js)

import { chooseBackend, pythonWorker, setState as setStatus, showPanel, whyNoGpu } from "./client.js";

const $ = (sel) => document.querySelector(sel);
const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);
const fmtBytes = (n) =>
  n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MiB`
    : n >= 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${n}`;
const SELFTEST = "pybridge.checks.selftest";
// Python's None arrives as undefined, which JSON drops: the report keeps it, as null
const nulls = (value) => JSON.parse(JSON.stringify(value, (k, v) => (v === undefined ? null : v)));
const params = new URLSearchParams(location.search);
const only = (params.get("only") || "").toLowerCase().split(",").map((s) => s.trim()).filter(Boolean);

const python = pythonWorker(() => app.state);
const report = {
  report: "pybridge self-test",
  date: new Date().toISOString(),
  userAgent: navigator.userAgent,
  url: location.href,
  backend: "gpu", // "gpu" (WebGPU) or "cpu" (numpy: no WebGPU, or ?gpu=none)
  noWebGPU: null,
  only: only.length ? only : null, // ?only=: the checks whose names contain one of these
  adapter: null,
  features: null,
  limits: null,
  device: null, // pybridge's description of the device, whole
  versions: {},
  bootMs: {},
  summary: null,
  error: null,
  checks: [],
};
const app = { state: "checking", device: "gpu", noWebGPU: null, report, run: python.run, call: python.call };
window.pybridge = app;

const setState = (state, text) => setStatus(app, state, text);

function fail(title, message) {
  report.error = `${title}: ${message}`;
  showPanel("error", title, message);
  setState("error", "Failed");
  $("#download").disabled = false;
}

// --- the table -------------------------------------------------------------------------------
const LABEL = { pass: "pass", fail: "FAIL", error: "ERROR", skip: "skip" };
let lastGroup = null;

function addRow(r) {
  const body = $("#checks tbody");
  if (r.group !== lastGroup) {
    lastGroup = r.group;
    const head = document.createElement("tr");
    head.className = "group";
    head.innerHTML = `<th colspan="6"></th>`;
    head.firstChild.textContent = r.group;
    body.appendChild(head);
  }
  const tr = document.createElement("tr");
  tr.dataset.id = r.id;
  tr.dataset.status = r.status;
  tr.innerHTML = "<td class=result></td><td class=id></td><td class=num></td><td class=tol></td><td class=num></td><td class=detail></td>";
  const cells = tr.children;
  cells[0].textContent = LABEL[r.status] || r.status;
  cells[1].textContent = r.id;
  cells[1].title = r.what;
  cells[2].textContent = r.maxError == null ? "" : r.maxError.toExponential(1);
  cells[3].textContent = r.tolerance;
  cells[4].textContent = fmtMs(r.ms);
  cells[5].textContent = r.error || r.detail;
  body.appendChild(tr);
}

function summarize(total, ms) {
  const count = (...s) => report.checks.filter((r) => s.includes(r.status)).length;
  const s = { total, passed: count("pass"), failed: count("fail", "error"), skipped: count("skip"), ms };
  report.summary = s;
  $("#summary").textContent =
    `${s.passed} passed, ${s.failed} failed` + (s.skipped ? `, ${s.skipped} skipped` : "") +
    ` of ${total} checks in ${fmtMs(ms)}` + (report.backend === "cpu" ? " (CPU backend: numpy, no WebGPU)" : "") +
    (only.length ? ` (only those matching ${only.join(", ")})` : "");
  $("#summary").className = `summary ${s.failed ? "bad" : "ok"}`;
  return s;
}

function renderDevice(env) {
  const a = env.adapter || {};
  const desc = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(" · ");
  $("#backend").textContent = env.device === "cpu"
    ? "CPU backend: numpy in the page, no WebGPU"
    : `WebGPU${env.softwareDevice ? " on a software adapter (a CPU): times are not a GPU's" : ""}`;
  $("#adapter").textContent = desc || "(the browser does not describe the adapter)";
  $("#features").textContent = env.features.length ? env.features.join(", ") : "none";
  $("#limits").innerHTML = "";
  for (const [k, v] of Object.entries(env.limits)) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = k;
    tr.children[1].textContent = v >= 1 << 20 ? `${fmtBytes(v)} (${v})` : String(v);
    $("#limits").appendChild(tr);
  }
  $("#versions").textContent = Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(" · ");
  $("#agent").textContent = navigator.userAgent;
  $("#device-panel").hidden = false;
}

function download() {
  const stamp = report.date.replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  const blob = new Blob([JSON.stringify(report, null, 1)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `pybridge-selftest-${stamp}.json`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

// --- the run ---------------------------------------------------------------------------------
async function runChecks() {
  const t0 = performance.now();
  let checks;
  try {
    const problem = await chooseBackend(python.call, app.noWebGPU, params); // as the demo's
    if (problem && !app.noWebGPU) useCpu(problem); // the worker got no device after all
    const env = nulls(await python.call(SELFTEST, "environment"));
    Object.assign(report.versions, env.versions);
    Object.assign(report, { adapter: env.adapter, features: env.features, limits: env.limits, device: env.described });
    renderDevice(env);
    checks = await python.call(SELFTEST, "names");
    if (only.length) checks = checks.filter((c) => only.some((s) => c.id.toLowerCase().includes(s)));
    if (!checks.length) throw new Error(`no check's name contains ${only.join(" or ")} (?only=)`);
  } catch (err) {
    fail(err.title || "The self-test could not start", err.message);
    return;
  }
  $("#download").disabled = false;
  $("#progress").max = checks.length;
  setState("running", "Running the checks…");
  for (const [i, c] of checks.entries()) {
    if (python.stopped()) break; // the worker failed (its onerror says so): none can run
    $("#progress-text").textContent = `${i + 1} of ${checks.length}: ${c.id}`;
    let r;
    try {
      r = nulls(await python.call(SELFTEST, "run", [c.id]));
    } catch (err) { // the call itself failed (the worker died?): the row says so, the rest go on
      r = { ...c, status: "error", maxError: null, tolerance: "", ms: 0, timings: {}, detail: "", error: err.message };
    }
    report.checks.push(r);
    addRow(r);
    $("#progress").value = i + 1;
    summarize(checks.length, performance.now() - t0);
  }
  if (python.stopped()) return fail("Python's worker failed", python.stopped()); // not "done"
  const s = summarize(checks.length, performance.now() - t0);
  $("#progress-text").textContent = `${checks.length} checks`;
  document.body.dataset.result = s.failed ? "fail" : "pass";
  setState("done", s.failed ? `Done: ${s.failed} of ${s.total} checks failed` : "Done: every check passed");
}

function onWorkerMessage(ev) {
  const msg = ev.data;
  switch (msg.type) {
    case "config":
      report.versions.pyodide = msg.config.pyodideVersion;
      break;
    case "asset":
      if (app.state === "booting") $("#progress-text").textContent = `loading ${msg.name}…`;
      break;
    case "stage":
      report.bootMs[msg.name] = Math.round(msg.ms);
      break;
    case "ready":
      runChecks();
      break;
    case "error":
      fail(msg.asset ? `Could not load ${msg.asset}` : "Python failed to start", msg.message);
      break;
  }
}

// The checks run on the CPU backend (pybridge.cpu): the page says why.
function useCpu(problem) {
  app.device = report.backend = "cpu";
  app.noWebGPU = report.noWebGPU = problem;
  document.body.dataset.device = "cpu";
  showPanel("notice", "No WebGPU here: checking the CPU backend instead",
    `${problem} The checks run on pybridge's CPU backend (every kernel's numpy twin in this ` +
    "page) against the same references: this says the page works here, not that a GPU does." +
    (params.has("limits") ? " (?limits= applies to a GPU only.)" : ""));
}

async function main() {
  $("#download").addEventListener("click", download);
  const problem = await whyNoGpu(params);
  if (problem) useCpu(problem);
  setState("booting", problem ? "Loading Python (CPU backend)…" : "Loading Python…");
  const worker = python.start("./worker.js", onWorkerMessage);
  worker.onerror = (ev) => fail("Python's worker failed", ev.message || "worker.js could not be loaded");
}

main();
