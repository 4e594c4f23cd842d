// Presenter mode (?present): the page's panels one at a time, scaled to fill the screen and
// readable from the back of a room, driven by the keyboard; nothing else changes (the panels,
// their state and the worker are the normal page's).
//
//   → ↓ PageDown   the next panel that is showing     ← ↑ PageUp   the one before
//   Home / End     the first / the last                Space        run the panel's action
//   Escape         leave a text field (keys type into one while it has the focus)
//
// A panel's action comes from the page (start's `actions`, by the panel's id): for instance
// search again, embed the corpus, run the kernel again. Panels the page has not shown yet
// (the model while it loads) are skipped, and the presenter stays where it is when they come.
// The panel is scaled (CSS zoom) to the largest size at which it fits the window (fit), down
// to MIN_ZOOM; only what does not fit even then scrolls. A focused button keeps Space and
// Enter (they click it). `window.pybridge.present` is {index, id, count, zoom} for
// tests.

const PANELS = ["boot-panel", "model-panel", "corpus-panel", "timeline-panel", "race-panel",
  "editor-panel", "result-panel", "gpu-panel"];
const MAX_ZOOM = 2.4;
const MIN_ZOOM = 0.6;

export function startPresenter(app, actions) {
  document.body.classList.add("present");
  const nav = document.createElement("div");
  nav.id = "present-nav";
  nav.setAttribute("aria-live", "polite");
  document.body.append(nav);
  let current = PANELS[0];
  const shown = () => PANELS.filter((id) => {
    const el = document.getElementById(id);
    return el && !el.hidden;
  });

  // The zoom at which the current panel and any notice or error panel above it fit the window.
  // While the same panel stays, the zoom only shrinks (results that come and go as the
  // presenter types do not make it jump); a new panel or a resize fits afresh. Where even
  // MIN_ZOOM does not fit, the page scrolls rather than cut the panel off.
  const zooms = new Map(); // panel id -> its zoom while it stays
  function fit() {
    const main = document.querySelector("main");
    main.style.zoom = 1;
    const top = main.getBoundingClientRect().top;
    const room = window.innerHeight - top - nav.offsetHeight - 24;
    const wide = (window.innerWidth - 40) / main.getBoundingClientRect().width;
    const tall = [...main.children].filter((el) => el.offsetParent !== null)
      .reduce((sum, el) => sum + el.offsetHeight + 16, 0);
    let zoom = Math.min(MAX_ZOOM, wide, room / Math.max(tall, 1));
    if (zooms.has(current)) zoom = Math.min(zoom, zooms.get(current));
    zoom = Math.max(MIN_ZOOM, zoom);
    zooms.set(current, zoom);
    main.style.zoom = zoom;
    document.body.classList.toggle("present-scroll", tall * zoom > room);
    return zoom;
  }

  function show(id) {
    if (id !== current) zooms.delete(id); // a panel shown again fits afresh
    current = id;
    for (const other of PANELS) document.getElementById(other)?.classList.toggle("current", other === id);
    const list = shown();
    const index = list.indexOf(id);
    const title = document.querySelector(`#${id} h2`)?.firstChild?.textContent?.trim() ?? id;
    nav.textContent = `${index + 1} / ${list.length} · ${title} · ← → panels · space ` +
      (actions[id] ? "runs" : "—");
    app.present = { index, id, count: list.length, zoom: fit() };
  }

  function move(step) {
    const list = shown();
    const at = Math.max(0, list.indexOf(current));
    show(list[Math.min(list.length - 1, Math.max(0, step === "first" ? 0 : step === "last"
      ? list.length - 1 : at + step))]);
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (ev.target.closest?.("input, textarea, select")) {
      if (ev.key === "Escape") {
        ev.preventDefault(); // a search field would clear itself: only leave it
        ev.target.blur();
      }
      return; // the field's own keys
    }
    if (ev.target.closest?.("button") && (ev.key === " " || ev.key === "Enter")) return; // clicks it
    const step = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, ArrowLeft: -1, ArrowUp: -1,
      PageUp: -1, Home: "first", End: "last" }[ev.key];
    if (step !== undefined) {
      ev.preventDefault();
      move(step);
    } else if (ev.key === " ") {
      ev.preventDefault();
      if (!ev.repeat) actions[current]?.(); // held down: once
    }
  });
  // panels appear and grow as the page boots: keep the current one fitted and counted (once
  // a frame at most)
  let queued = false;
  const refit = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      show(current);
    });
  };
  new MutationObserver(refit).observe(document.querySelector("main"),
    { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["hidden"] });
  window.addEventListener("resize", () => {
    zooms.clear();
    refit();
  });
  show(current);
}
