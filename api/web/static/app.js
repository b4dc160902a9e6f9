// PersGuard pages: confirmations before state-changing forms, and live job progress without reloading.
(function () {
  "use strict";

  var POLL_MS = 3000;

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  function fill(scope, field, text) {
    scope.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) {
      el.textContent = text;
    });
  }

  function update(row, job) {
    var before = {
      status: row.getAttribute("data-status"),
      phase: row.getAttribute("data-phase"),
      verified: row.getAttribute("data-verified")
    };
    row.setAttribute("data-status", job.status);
    row.querySelectorAll('[data-field="status"]').forEach(function (el) {
      el.textContent = job.status;
      el.setAttribute("data-value", job.status);
    });
    row.querySelectorAll('[data-field="bar"]').forEach(function (el) {
      el.value = job.progress;
      el.textContent = Math.round(job.progress * 100) + "%";
    });
    fill(row, "steps", job.step + "/" + job.total_steps);
    fill(row, "phase", job.phase || "\u2014");
    fill(row, "eta", job.eta);
    fill(row, "age", job.age);
    fill(row, "attempts", String(job.attempts));
    fill(row, "worker", job.worker);
    row.querySelectorAll("form[data-show-when]").forEach(function (form) {
      form.hidden = form.getAttribute("data-show-when").split(" ").indexOf(job.status) < 0;
    });
    if (row.hasAttribute("data-reload-on-change")) {
      var verified = job.verified ? "yes" : "no";
      if (before.status !== job.status || (before.phase || "") !== (job.phase || "") || before.verified !== verified) {
        window.location.reload();
        return;
      }
      refreshPlot(job);
    }
  }

  function refreshPlot(job) {
    var plot = document.getElementById("loss-plot");
    if (!plot || job.status !== "running") {
      return;
    }
    fetch(plot.getAttribute("data-loss-src"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) { plot.innerHTML = html; } })
      .catch(function () {});
  }

  function say(text) {
    document.querySelectorAll("[data-live-status]").forEach(function (el) { el.textContent = text; });
  }

  function poll() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("[data-job]"));
    if (!rows.length) {
      return;
    }
    var query = rows.map(function (row) { return "id=" + encodeURIComponent(row.getAttribute("data-job")); });
    fetch("/admin/jobs/live?" + query.join("&"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        if (!response.ok || !json) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (jobs) {
        say("");
        rows.forEach(function (row) {
          var job = jobs[row.getAttribute("data-job")];
          if (job) { update(row, job); }
        });
        window.setTimeout(poll, POLL_MS);
      })
      .catch(function () {
        say("Live updates paused (signed out, or the server is unreachable); reload the page.");
        window.setTimeout(poll, POLL_MS * 5);
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { window.setTimeout(poll, POLL_MS); });
  } else {
    window.setTimeout(poll, POLL_MS);
  }
})();
