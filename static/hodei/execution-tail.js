// Tails a running execution on its admin page: appends new log chunks and updates the
// status, exit code and duration without a reload, until the execution is complete.
(function () {
  "use strict";
  const log = document.getElementById("hodei-log");
  if (!log) return;
  const url = log.dataset.tailUrl;
  let offset = parseInt(log.dataset.nextOffset || "0", 10);
  let complete = log.dataset.complete === "1";
  let lastStatus = null;

  function field(name) {
    return document.querySelector(".field-" + name + " .readonly");
  }

  function render(state) {
    const status = field("status_badge");
    if (status && state.status !== lastStatus) {
      const badge = status.querySelector(".hodei-badge");
      if (badge) {
        badge.textContent = state.status;
        if (state.colour) badge.style.background = state.colour;
      }
      lastStatus = state.status;
    }
    const exit = field("exit_code");
    if (exit) exit.textContent = state.exit_code === null ? "-" : String(state.exit_code);
    const duration = field("duration");
    if (duration) duration.textContent = state.duration;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    for (const chunk of state.chunks) {
      const span = document.createElement("span");
      span.className = chunk.stream;
      span.textContent = chunk.message;
      log.appendChild(span);
    }
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  async function poll() {
    try {
      const response = await fetch(url + "?offset=" + offset, { credentials: "same-origin" });
      if (response.ok) {
        const state = await response.json();
        render(state);
        offset = state.next_offset;
        if (state.complete) {
          complete = true;
          document.getElementById("hodei-log-state").textContent = "(complete)";
          // A finished execution cannot be cancelled any more.
          const cancel = document.getElementById("hodei-cancel");
          if (cancel) cancel.closest("li").remove();
          document.body.dataset.executionStatus = state.status;
          return;
        }
      }
    } catch (err) {
      // Network hiccup: try again on the next tick.
    }
    setTimeout(poll, 1000);
  }

  if (!complete) setTimeout(poll, 500);
})();
