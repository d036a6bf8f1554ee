/* The example page: follow one run with a public token; a progress bar from metadata.progress, text from a stream. */
"use strict";

(function () {
  var form = document.getElementById("subscribe");
  var subscription = null;
  var HEADINGS = {
    QUEUED: "Your document is waiting for a worker", COMPLETED: "Your summary is ready",
    FAILED: "Summarising failed", CANCELED: "Summarising was canceled", TIMED_OUT: "Summarising took too long",
    CRASHED: "Summarising failed",
  };

  function show(run) {
    var progress = Math.max(0, Math.min(1, Number(run.metadata && run.metadata.progress) || 0));
    if (run.status === "COMPLETED") progress = 1;
    var percent = Math.round(progress * 100);
    var status = document.getElementById("status");
    status.textContent = run.status || "…";
    status.dataset.status = run.status || "";
    document.getElementById("stage").textContent = (run.metadata && run.metadata.stage) || "";
    document.getElementById("bar").style.width = percent + "%";
    document.querySelector(".progress").setAttribute("aria-valuenow", String(percent));
    document.getElementById("percent").textContent = percent + "%";
    var summary = run.streams && run.streams.summary;
    document.getElementById("summary").textContent = summary
      ? summary.chunks.map(function (c) { return c.chunk; }).join("") : "";
    document.getElementById("typing").hidden = !summary || summary.completed;
    document.getElementById("heading").textContent = HEADINGS[run.status] || "Your document is being summarised";
  }

  function fail(message) {
    var error = document.getElementById("error");
    error.textContent = message;
    error.hidden = false;
  }

  function start(runId, token) {
    if (subscription) subscription.stop();
    document.getElementById("run").hidden = false;
    document.getElementById("error").hidden = true;
    subscription = window.Stepwise.subscribeToRun({
      baseUrl: location.origin,
      runId: runId,
      token: token,
      onUpdate: show,
      onEnd: show,
      onError: function (error) { if (error.status) fail(error.message + " (HTTP " + error.status + ")"); },
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    start(form.elements.run.value.trim(), form.elements.token.value.trim());
  });

  // The fragment never reaches a server: the token stays out of access logs.
  var fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("run") && fragment.get("token")) {
    form.elements.run.value = fragment.get("run");
    form.elements.token.value = fragment.get("token");
    start(fragment.get("run"), fragment.get("token"));
  }
})();
