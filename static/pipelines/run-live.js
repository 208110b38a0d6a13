// A pipeline run's page: while the run is active, its graph, its jobs and their outputs,
// its status, times and buttons follow it without a reload. The server renders every
// fragment (state.json), as it rendered the first page, so nothing is drawn twice; the
// poller stops once the run has finished.
(function () {
  "use strict";
  const live = document.getElementById("hodei-run-live");
  if (!live) return;
  const url = live.dataset.stateUrl;
  const shown = {}; // fragment id -> the HTML last put there

  function replace(id, html) {
    const element = document.getElementById(id);
    if (!element || shown[id] === html) return;
    element.innerHTML = html;
    shown[id] = html;
  }

  function setField(name, html) {
    // A field shares its line with others (a fieldBox) or has one of its own.
    const cell =
      document.querySelector(".fieldBox.field-" + name + " .readonly") ||
      document.querySelector(".form-row.field-" + name + " .readonly");
    if (cell && cell.innerHTML !== html) cell.innerHTML = html;
  }

  function render(state) {
    replace("hodei-run-graph", state.graph_html);
    replace("hodei-run-jobs", state.jobs_html);
    replace("hodei-run-outputs", state.outputs_html);
    setField("status_badge", state.status_html);
    setField("when_started", state.started_html);
    setField("when_finished", state.finished_html);
    setField("duration", state.duration);
    const cancel = document.getElementById("hodei-cancel-item");
    if (cancel) cancel.hidden = !state.can_cancel;
    const retry = document.getElementById("hodei-retry-item");
    if (retry) retry.hidden = !state.can_retry;
    document.body.dataset.runStatus = state.status;
  }

  async function poll() {
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const state = await response.json();
        render(state);
        if (!state.active) {
          document.getElementById("hodei-run-live-state").textContent = "";
          return;
        }
      }
    } catch (err) {
      // A network hiccup: try again on the next tick.
    }
    // A page in a background tab asks less often.
    setTimeout(poll, document.hidden ? 5000 : 1000);
  }

  document.body.dataset.runStatus = live.dataset.status;
  if (live.dataset.active === "1") setTimeout(poll, 1000);
})();
