// The next five fire times of the schedule's cron expression, in its own timezone with
// UTC beside: as it is typed (before saving) and as it is saved.
(function () {
  "use strict";
  const box = document.getElementById("hodei-preview");
  const cron = document.getElementById("id_cron");
  const tz = document.getElementById("id_timezone");
  if (!box || !cron) return;
  let timer = null;
  async function refresh() {
    if (!cron.value.trim()) {
      box.textContent = "A one-off schedule fires once, at its schedule time.";
      return;
    }
    const params = new URLSearchParams({ cron: cron.value, timezone: tz ? tz.value : "UTC" });
    const response = await fetch(box.dataset.url + "?" + params, { credentials: "same-origin" });
    const body = await response.json();
    box.textContent = "";
    if (body.error) {
      box.textContent = body.error;
      return;
    }
    const table = document.createElement("table");
    table.className = "hodei-table hodei-upcoming";
    for (const t of body.upcoming) {
      const row = table.insertRow();
      row.insertCell().textContent = t.local;
      row.insertCell().textContent = t.utc;
      row.insertCell().textContent = t.relative;
    }
    box.appendChild(table);
  }
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }
  cron.addEventListener("input", schedule);
  if (tz) tz.addEventListener("input", schedule);
  refresh();
})();
