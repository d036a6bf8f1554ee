/* The Test forms: the payload last triggered per task is offered again (kept in this browser), and a
   refused payload stays in the box with the server's reason under it. */
"use strict";

(function (S) {
  const KEY = "stepwise:last-payload:";

  function wire(form) {
    const task = form.dataset.taskId;
    const box = form.querySelector("textarea");
    const note = document.getElementById(box.getAttribute("aria-describedby"));
    const offer = form.querySelector(".last-payload");
    const last = localStorage.getItem(KEY + task);
    if (last !== null && last !== box.value) {
      offer.hidden = false;
      offer.title = last.length > 200 ? last.slice(0, 200) + "…" : last;
      offer.addEventListener("click", function () {
        box.value = last;
        box.dispatchEvent(new Event("input"));
        box.focus();
      });
    }
    let sent = null;
    form.addEventListener("submit", function () { sent = box.value; }, true);
    document.addEventListener("stepwise:action", function (event) {
      if (event.detail.form !== form) return;
      if (event.detail.ok) {
        localStorage.setItem(KEY + task, sent);
      } else if (note && event.detail.message) {
        note.textContent = event.detail.message;
        note.classList.add("invalid");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-test-form]").forEach(wire);
  });
})(window.Stepwise);
