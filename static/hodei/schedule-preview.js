// Shows the next five fire times of the cron expression being typed, before saving.
(function () {
  "use strict";
  const box = document.getElementById("hodei-preview");
  const cron = document.getElementById("id_cron");
  const tz = document.getElementById("id_timezone");
  if (!box || !cron) return;
  let timer = null;
  async function refresh() {
    if (!cron.value.trim()) return;
    const params = new URLSearchParams({ cron: cron.value, timezone: tz ? tz.value : "UTC" });
    const response = await fetch(box.dataset.url + "?" + params, { credentials: "same-origin" });
    const body = await response.json();
    box.textContent = "";
    if (body.error) {
      box.textContent = body.error;
      return;
    }
    for (const t of body.upcoming) {
      const line = document.createElement("div");
      line.textContent = t;
      box.appendChild(line);
    }
  }
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }
  cron.addEventListener("input", schedule);
  if (tz) tz.addEventListener("input", schedule);
  refresh();
})();
