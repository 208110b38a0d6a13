// The execution page: renders its log (line numbers, timestamps, search) and, while the
// execution runs, keeps every part of the page that can change up to date without a
// reload: status, exit code, error, worker, times, duration, the Cancel and Retry
// buttons, and the log itself.
(function () {
  "use strict";
  const log = document.getElementById("hodei-log");
  if (!log) return;
  const url = log.dataset.tailUrl;
  let offset = parseInt(log.dataset.nextOffset || "0", 10);
  let complete = log.dataset.complete === "1";
  let lineNumber = 0;
  let partial = null; // the last line, while it has no newline yet
  const search = document.getElementById("hodei-log-search");

  function newLine(stream, at) {
    const line = document.createElement("div");
    line.className = "line " + stream;
    const number = document.createElement("span");
    number.className = "ln";
    number.textContent = String(++lineNumber);
    const time = document.createElement("span");
    time.className = "ts";
    time.textContent = at.substring(11, 23);
    time.title = at;
    const text = document.createElement("span");
    text.className = "text";
    line.append(number, time, text);
    log.appendChild(line);
    return line;
  }

  function append(chunk) {
    const parts = chunk.message.split("\n");
    parts.forEach(function (part, i) {
      const last = i === parts.length - 1;
      if (last && part === "") return; // the chunk ended with a newline
      let line = partial && partial.classList.contains(chunk.stream) ? partial : null;
      if (!line) line = newLine(chunk.stream, chunk.at);
      line.querySelector(".text").textContent += part;
      partial = last ? line : null;
      if (search.value) mark(line, search.value.toLowerCase());
    });
  }

  function mark(line, term) {
    const hit = line.querySelector(".text").textContent.toLowerCase().includes(term);
    line.classList.toggle("match", hit);
    line.classList.toggle("nomatch", !hit);
  }

  function filter() {
    const term = search.value.toLowerCase();
    let hits = 0;
    for (const line of log.querySelectorAll(".line")) {
      if (!term) {
        line.classList.remove("match", "nomatch");
        continue;
      }
      mark(line, term);
      if (line.classList.contains("match")) hits++;
    }
    document.getElementById("hodei-log-matches").textContent = term ? hits + " matching lines" : "";
  }

  function setField(name, html) {
    const cell = document.querySelector(".field-" + name + " .readonly");
    if (cell && cell.innerHTML !== html) cell.innerHTML = html;
  }

  function render(state) {
    setField("status_badge", state.status_html);
    setField("exit_code", state.exit_code === null ? "-" : String(state.exit_code));
    setField("duration", state.duration);
    setField("worker_link", state.worker_html);
    setField("started", state.started_html);
    setField("finished", state.finished_html);
    setField("cancel_requested", state.cancel_requested ? "True" : "False");
    const error = document.querySelector(".field-error .readonly");
    if (error && error.textContent !== state.error) error.textContent = state.error;
    const cancel = document.getElementById("hodei-cancel-item");
    if (cancel) cancel.hidden = !state.can_cancel;
    const retry = document.getElementById("hodei-retry-item");
    if (retry) retry.hidden = !state.can_retry;
    document.body.dataset.executionStatus = state.status;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    for (const chunk of state.chunks) append(chunk);
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
          return;
        }
      }
    } catch (err) {
      // A network hiccup: try again on the next tick.
    }
    setTimeout(poll, 1000);
  }

  for (const chunk of JSON.parse(document.getElementById("hodei-log-data").textContent)) {
    append(chunk);
  }
  document.getElementById("hodei-log-numbers").addEventListener("change", function (e) {
    log.classList.toggle("numbered", e.target.checked);
  });
  document.getElementById("hodei-log-times").addEventListener("change", function (e) {
    log.classList.toggle("timed", e.target.checked);
  });
  search.addEventListener("input", filter);
  document.body.dataset.executionStatus = document.body.dataset.executionStatus || "";
  if (!complete) setTimeout(poll, 500);
})();
