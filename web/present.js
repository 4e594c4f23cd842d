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
// The panel is scaled (CSS zoom) to the largest size at which it fits the window: no
// scrolling, whatever the screen. `window.pybridge.present` is {index, id, count, zoom} for
// tests.

const PANELS = ["boot-panel", "model-panel", "corpus-panel", "timeline-panel", "editor-panel",
  "result-panel", "gpu-panel"];
const MAX_ZOOM = 2.4;

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

  function fit() {
    const panel = document.getElementById(current);
    const main = document.querySelector("main");
    main.style.zoom = 1;
    const top = main.getBoundingClientRect().top;
    const room = window.innerHeight - top - nav.offsetHeight - 24;
    const wide = (window.innerWidth - 40) / main.getBoundingClientRect().width;
    const zoom = Math.max(0.5, Math.min(MAX_ZOOM, wide, room / Math.max(panel.offsetHeight, 1)));
    main.style.zoom = zoom;
    return zoom;
  }

  function show(id) {
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
    const typing = ev.target.closest?.("input, textarea, select, button");
    if (typing) {
      if (ev.key === "Escape") ev.target.blur();
      return; // the field's own keys (a button's space clicks it)
    }
    const step = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, ArrowLeft: -1, ArrowUp: -1,
      PageUp: -1, Home: "first", End: "last" }[ev.key];
    if (step !== undefined) {
      ev.preventDefault();
      move(step);
    } else if (ev.key === " ") {
      ev.preventDefault();
      actions[current]?.();
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
  window.addEventListener("resize", refit);
  show(current);
}
