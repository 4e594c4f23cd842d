// The race: the demo's query and sentences through pybridge (Python's worker) and through ONNX
// Runtime Web (a worker of its own, race-worker.js, started on the first race), both given the
// same token ids (pybridge.demo.race_tokens) and the same model, lap after lap, taking turns
// on the GPU. Each lap is drawn as it comes, and each lap's two answers are compared: every
// sentence's embeddings must agree. The race is absent, with a line saying why, where
// config.json names no race (`python3 tools/dev.py setup --race` sets it up) or where the
// page runs on the CPU.
//
// What each side's lap time covers: pybridge, the sentences in and their embeddings out, its
// tokenizer included (pybridge.demo.race_round, on the zero-copy path); ONNX Runtime Web, the
// token ids in and the embeddings out (it has no tokenizer of its own here). The laps are
// timed, so the race starts only when none of the page's other GPU work runs (`busy()` names
// it), and the page starts none while the race runs (`running()`). Stop ends a race at once;
// ONNX Runtime Web answering too late ends it too (its worker is dropped, the next race loads
// it anew).

import { within } from "./call.js";
import { fmtBytes, fmtMs, pythonWorker } from "./client.js";

export const LAPS = 10;
// How long ONNX Runtime Web may take: to load and run its first pass (its shaders compile
// then: minutes on a CPU's WebGPU), and then a lap, against that first pass.
const FIRST_DEADLINE_MS = 600_000;
const lapDeadline = (firstMs) => Math.max(60_000, 20 * firstMs);
export const SETUP_LINE = "The race against ONNX Runtime Web is not set up on this server: " +
  "`python3 tools/dev.py setup --race` sets it up (ONNX Runtime Web from npm and the model " +
  "exported to ONNX with torch; Linux x86_64), then reload this page.";

const $ = (sel) => document.querySelector(sel);
const fmtLap = (ms) => (ms < 10 ? `${ms.toFixed(1)} ms` : fmtMs(ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Per sentence, the cosine between the two answers; the least of them (and which sentence),
// and the largest difference of any one number.
export function agreement(a, b, rows) {
  const n = a.length / rows;
  let least = Infinity, worst = -1, maxDiff = 0;
  for (let r = 0; r < rows; r++) {
    let dot = 0, na = 0, nb = 0;
    for (let i = r * n; i < (r + 1) * n; i++) {
      dot += a[i] * b[i];
      na += a[i] * a[i];
      nb += b[i] * b[i];
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
    const cos = dot / Math.sqrt(na * nb);
    if (!(cos >= least)) { // NaN counts as the worst
      least = cos;
      worst = r;
    }
  }
  return { least, worst, maxDiff };
}

// app: the page's state (app.config, app.device, app.model; the race's own goes to app.race);
// call: Python's; texts(): the demo's query and sentences; busy(): what else runs on the GPU.
export function createRace({ app, call, texts, busy = () => [] }) {
  let ort = null; // ONNX Runtime Web's worker, once a race started it
  let loaded = null; // the promise of its load
  let running = false;
  let stop = null; // ends the running race: rejects what it waits for
  const status = (text, bad = false) => {
    $("#race-status").textContent = text;
    $("#race-status").classList.toggle("error", bad);
  };

  // Once the model is ready: the Race button, or the line saying why there is none.
  function offer() {
    $("#race-panel").hidden = false;
    const race = app.config?.race;
    const why = !race ? SETUP_LINE : app.device === "cpu"
      ? "The race needs WebGPU: ONNX Runtime Web's WebGPU provider and pybridge race on the GPU."
      : null;
    $("#race-run").hidden = Boolean(why);
    if (why) {
      app.race = { available: false, why };
      status(why);
      return;
    }
    app.race = { available: true, laps: [] };
    status(`pybridge against ONNX Runtime Web ${race.ortVersion} (WebGPU), ${LAPS} laps on the ` +
      "demo's texts. Its model is fetched on the first race " +
      `(${fmtBytes(race.modelBytes)}).`);
  }

  function hide() {
    $("#race-panel").hidden = true;
  }

  // A message to ONNX Runtime Web's worker, answered within `ms`; one that fails (a lost GPU,
  // a session that never answers) drops the worker.
  function ortSend(message, ms) {
    const worker = ort;
    return within(worker.send(message), ms, `it did not answer in ${Math.round(ms / 1000)} s`)
      .catch((err) => {
        if (ort === worker) dropOrt("ONNX Runtime Web failed");
        throw new Error(`ONNX Runtime Web: ${err.message}`);
      });
  }

  async function loadOrt(race) {
    if (!loaded) {
      ort = pythonWorker(() => "started on the first race", "ONNX Runtime Web's worker");
      ort.start("./race-worker.js", () => {});
      loaded = ortSend({ type: "load", module: race.module, model: race.model,
        integrity: app.config.integrity?.[race.model] }, FIRST_DEADLINE_MS);
    }
    return await loaded;
  }

  // The next race starts a new worker and loads ONNX Runtime Web again.
  function dropOrt(why) {
    ort?.stop(why);
    ort = null;
    loaded = null;
  }

  async function run(laps = LAPS) {
    const race = app.config?.race;
    if (running || !race || app.device === "cpu" || app.model !== "ready") return;
    const others = busy();
    if (others.length) { // its laps would wait behind them
      status(`Not now: ${others.join(", ")} still runs on the GPU. Race again once it ends.`);
      return;
    }
    running = true;
    const stopped = new Promise((_, reject) => { stop = () => reject(new Error("stopped")); });
    stopped.catch(() => {});
    const until = (promise) => Promise.race([promise, stopped]);
    $("#race-run").textContent = "Stop";
    const sentences = texts();
    const state = { available: true, running: true, laps: [], ortVersion: race.ortVersion };
    app.race = state;
    $("#race-chart").innerHTML = "";
    $("#race-summary").textContent = "";
    try {
      const tokens = await until(call("pybridge.demo", "race_tokens", [sentences]));
      const [B, T] = tokens.shape;
      Object.assign(state, { shape: tokens.shape, dtype: tokens.dtype, agreeAt: tokens.agreeAt });
      status(`Loading ONNX Runtime Web ${race.ortVersion} and its model ` +
        `(${fmtBytes(race.modelBytes)})…`);
      state.ortLoadMs = (await until(loadOrt(race))).ms;
      const pass = { type: "run", ids: tokens.ids, lengths: tokens.lengths, shape: tokens.shape };
      let deadline = FIRST_DEADLINE_MS;
      const one = { pybridge: () => until(call("pybridge.demo", "race_round", [sentences])),
        ort: () => until(ortSend(pass, deadline)) };
      status("Warming up: each side's first pass of this shape (compiling its shaders)…");
      await one.pybridge();
      deadline = lapDeadline((await one.ort()).ms);
      for (let i = 0; i < laps; i++) {
        status(`Lap ${i + 1} of ${laps}…`);
        const first = i % 2 ? "ort" : "pybridge"; // taking turns at going first on the GPU
        const a = await one[first]();
        const b = await one[first === "ort" ? "pybridge" : "ort"]();
        const [p, o] = first === "ort" ? [b, a] : [a, b];
        const agree = agreement(p.vectors, o.data, B);
        state.laps.push({ pybridgeMs: p.ms, tokenizeMs: p.tokenizeMs, ortMs: o.ms, ...agree });
        state.vectors = { pybridge: p.vectors, ort: Array.from(o.data) }; // the last lap's
        draw(state);
      }
      summarize(state, race, B, T);
    } catch (err) {
      state.error = err.message;
      if (err.message === "stopped") {
        dropOrt("stopped"); // whatever it was doing: the next race loads it anew
        status(`Stopped after ${state.laps.length} of ${laps} laps.`);
      } else {
        status(`The race stopped: ${err.message}`, true);
      }
    } finally {
      state.running = false;
      running = false;
      stop = null;
      $("#race-run").textContent = "Race";
    }
  }

  // Two bars a lap, pybridge's and ONNX Runtime Web's, as tall as their times.
  function draw(state) {
    const top = Math.max(...state.laps.flatMap((l) => [l.pybridgeMs, l.ortMs]));
    const chart = $("#race-chart");
    chart.innerHTML = "";
    state.laps.forEach((lap, i) => {
      const group = document.createElement("div");
      group.className = "lap";
      for (const [cls, ms, who] of [["p", lap.pybridgeMs, "pybridge"], ["o", lap.ortMs, "ONNX Runtime Web"]]) {
        const bar = document.createElement("i");
        bar.className = cls;
        bar.style.height = `${(100 * ms) / top}%`;
        bar.title = `lap ${i + 1}, ${who}: ${fmtLap(ms)}`;
        group.appendChild(bar);
      }
      chart.appendChild(group);
    });
    $("#race-legend").hidden = false;
  }

  function summarize(state, race, B, T) {
    const p = median(state.laps.map((l) => l.pybridgeMs));
    const o = median(state.laps.map((l) => l.ortMs));
    const tok = median(state.laps.map((l) => l.tokenizeMs));
    const least = Math.min(...state.laps.map((l) => l.least));
    const worstLap = state.laps.find((l) => !(l.least > least)) || state.laps[0];
    const maxDiff = Math.max(...state.laps.map((l) => l.maxDiff));
    Object.assign(state, { pybridgeMedianMs: p, ortMedianMs: o, least, maxDiff,
      agree: least >= state.agreeAt });
    const faster = p <= o ? `pybridge ${(o / p).toFixed(2)}× faster` : `ONNX Runtime Web ${(p / o).toFixed(2)}× faster`;
    const weights = state.dtype !== race.dtype
      ? ` (pybridge on ${state.dtype} weights, ONNX Runtime Web on ${race.dtype})` : "";
    status(`${B} texts of ${T} tokens (padded), ${state.laps.length} laps. Medians: pybridge ` +
      `${fmtLap(p)} (text in, its tokenizer's ${fmtLap(tok)} included), ONNX Runtime Web ` +
      `${race.ortVersion} ${fmtLap(o)} (token ids in): ${faster}${weights}.`);
    const floor6 = (x) => (Math.floor(x * 1e6) / 1e6).toFixed(6); // never claims more than it saw
    $("#race-summary").textContent = (state.agree
      ? `Same answers: every sentence's embeddings agree, cosine ≥ ${floor6(least)} ` +
        `(largest difference of one number ${maxDiff.toExponential(1)}).`
      : `Different answers: sentence ${worstLap.worst + 1} at cosine ${floor6(least)}, ` +
        `below ${state.agreeAt}.`) +
      (weights ? ` ?dtype=${race.dtype} gives pybridge the same weights as ONNX Runtime Web.` : "");
    $("#race-summary").classList.toggle("error", !state.agree);
  }

  $("#race-run").addEventListener("click", () => (running ? stop?.() : run()));
  return { offer, hide, run, running: () => running, stop: () => stop?.() };
}
