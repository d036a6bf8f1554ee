/* Shared by every console page: CSRF-protected actions with toasts, copy buttons, JSON editors. */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  S.csrfToken = function () {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  };

  S.toast = function (message, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const el = document.createElement("div");
    el.className = "toast toast-" + (kind || "info");
    el.textContent = message;
    box.appendChild(el);
    S.dismissLater(el);
  };

  S.dismissLater = function (el) {
    setTimeout(function () {
      el.classList.add("leaving");
      setTimeout(function () { el.remove(); }, 400);
    }, 6000);
  };

  S.getJSON = async function (url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return response.json();
  };

  /* Tell whether an action's answer sends the browser to another page. An answer naming only the
     environment this page already shows (or the default one, on a page that names none) stays here. */
  S.leadsElsewhere = function (answer) {
    if (!(answer.ok && answer.redirect)) return false;
    const target = new URL(answer.redirect, location.href);
    const shown = new URLSearchParams(location.search).get("env");
    const named = target.searchParams.get("env");
    const sameEnvironment = named !== null && Array.from(target.searchParams.keys()).length === 1 &&
      (shown === null || shown === named);
    if (target.pathname === location.pathname && sameEnvironment) return false;
    return answer.redirect !== location.pathname;
  };

  /* Submit a form with fetch; the server answers {ok, message, redirect}. */
  S.submitAction = async function (form, submitter) {
    const body = new FormData(form);
    if (submitter && submitter.name) body.append(submitter.name, submitter.value);
    const buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": S.csrfToken() },
      });
      const answer = await response.json().catch(function () { return { ok: false, message: "The server answered " + response.status + "." }; });
      if (!S.leadsElsewhere(answer)) {
        S.toast(answer.message, answer.ok ? "success" : "error");
      }
      return answer;
    } catch (err) {
      S.toast("Could not reach the server: " + err.message, "error");
      return { ok: false };
    } finally {
      buttons.forEach(function (b) { b.disabled = false; });
    }
  };

  /* Go to an action's result, carrying its message over to show it on the next page. */
  S.navigate = function (answer) {
    sessionStorage.setItem("stepwise:toast", JSON.stringify({ message: answer.message, kind: "success" }));
    location.assign(answer.redirect);
  };

  function showCarriedToast() {
    const carried = sessionStorage.getItem("stepwise:toast");
    if (!carried) return;
    sessionStorage.removeItem("stepwise:toast");
    const toast = JSON.parse(carried);
    S.toast(toast.message, toast.kind);
  }

  /* A button with data-confirm asks first: the first press arms it (its label becomes the question),
     a second press within a few seconds does it; otherwise it goes back to how it was. */
  function armedOrArm(button) {
    if (!button || !button.dataset.confirm) return true;
    if (button.dataset.armed) return true;
    button.dataset.armed = "1";
    button.dataset.label = button.textContent;
    button.textContent = button.dataset.confirm;
    button.classList.add("btn-armed");
    button.setAttribute("aria-pressed", "true");
    S.toast(button.dataset.confirm + " Press again to confirm.", "info");
    setTimeout(function () {
      delete button.dataset.armed;
      button.textContent = button.dataset.label;
      button.classList.remove("btn-armed");
      button.removeAttribute("aria-pressed");
    }, 6000);
    return false;
  }

  /* Send a form with fetch, show its answer, and tell the page (which may follow the answer elsewhere). */
  S.wireActionForm = function (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (!armedOrArm(event.submitter)) return;
      const answer = await S.submitAction(form, event.submitter);
      if (S.leadsElsewhere(answer)) S.navigate(answer);
      if (answer.ok && form.matches("[data-decision]")) decided(form, event.submitter, answer);
      document.dispatchEvent(new CustomEvent("stepwise:action", { detail: Object.assign({ form: form }, answer) }));
    });
  };

  /* A waitpoint was decided (or its event sent): its buttons go, a line says what was done. */
  function decided(form, submitter, answer) {
    const item = form.closest(".decision");
    const verb = submitter && submitter.value === "reject" ? "Rejected" : submitter && submitter.value === "approve" ? "Approved" : "Event sent";
    const note = document.createElement("p");
    note.className = "decided-note " + (verb === "Rejected" ? "is-rejected" : "is-approved");
    note.setAttribute("role", "status");
    note.textContent = verb === "Event sent" ? answer.message : verb + " by you at " + new Date().toLocaleTimeString() + ". The run resumes.";
    form.replaceWith(note);
    if (item) item.classList.add("decided");
  }

  function wireActionForms() {
    document.querySelectorAll("form[data-action-form]").forEach(S.wireActionForm);
  }

  function wireCopyButtons() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", async function () {
        const source = document.getElementById(button.dataset.copy);
        const raw = source.textContent.trim();
        const text = button.dataset.copyFormat === "text" ? raw : JSON.stringify(JSON.parse(raw), null, 2);
        try {
          await navigator.clipboard.writeText(text);
          S.toast("Copied to the clipboard.", "success");
        } catch (err) {
          S.toast("The browser refused clipboard access.", "error");
        }
      });
    });
  }

  /* Validate a JSON textarea as the user types; block its form's submit while invalid.
     data-json-optional: empty is fine too. */
  S.wireJsonEditor = function (textarea) {
    if (textarea.dataset.wired) return;
    textarea.dataset.wired = "1";
    const note = document.getElementById(textarea.getAttribute("aria-describedby"));
    const submits = textarea.form ? textarea.form.querySelectorAll("button[type=submit]") : [];
    const optional = textarea.hasAttribute("data-json-optional");
    function check() {
      let message = "Valid JSON";
      let valid = true;
      if (optional && textarea.value.trim() === "") message = "";
      else try { JSON.parse(textarea.value); } catch (err) { valid = false; message = err.message; }
      textarea.classList.toggle("invalid", !valid);
      textarea.setAttribute("aria-invalid", String(!valid));
      if (note) { note.textContent = message; note.classList.toggle("invalid", !valid); }
      submits.forEach(function (submit) { submit.disabled = !valid; });
    }
    textarea.addEventListener("input", check);
    check();
  };

  S.wireJsonEditors = function (root) {
    if (root) root.querySelectorAll("textarea[data-json-editor]").forEach(S.wireJsonEditor);
  };

  /* Popovers (<details class="pop">): Cancel closes them, and so do Escape and a click elsewhere. */
  function wirePopovers() {
    document.addEventListener("click", function (event) {
      const button = event.target.closest("[data-close-pop]");
      if (!button) return;
      const pop = button.closest("details");
      pop.open = false;
      pop.querySelector("summary").focus();
    });
    // An opened confirmation takes the focus to its first button, so Enter confirms and Escape backs out.
    document.addEventListener("toggle", function (event) {
      const pop = event.target;
      if (!(pop instanceof HTMLDetailsElement) || !pop.matches(".pop") || !pop.open) return;
      const first = pop.querySelector(".pop-panel button, .pop-panel a[href], .pop-panel input:not([type=hidden])");
      if (first) first.focus();
    }, true);
    function closeAll(except) {
      document.querySelectorAll("details.pop[open]").forEach(function (pop) { if (pop !== except) pop.open = false; });
    }
    document.addEventListener("click", function (event) { closeAll(event.target.closest("details.pop")); });
    document.addEventListener("keydown", function (event) { if (event.key === "Escape") closeAll(null); });
  }

  /* "5 min ago" for every <time data-relative>, kept current; the exact moment stays in its title. */
  S.relativeTime = function (moment, now) {
    const seconds = Math.round((now - moment) / 1000);
    const future = seconds < 0;
    const s = Math.abs(seconds);
    let text;
    if (s < 45) text = future ? "in a few seconds" : "just now";
    else {
      const units = [[60, "s", 1], [3600, "min", 60], [86400, "h", 3600], [86400 * 30, "d", 86400], [Infinity, "mo", 86400 * 30]];
      const unit = units.find(function (u) { return s < u[0]; });
      const n = Math.round(s / unit[2]);
      text = future ? "in " + n + " " + unit[1] : n + " " + unit[1] + " ago";
    }
    return text;
  };

  S.refreshRelativeTimes = function (root) {
    const now = Date.now();
    (root || document).querySelectorAll("time[data-relative]").forEach(function (el) {
      const moment = Date.parse(el.getAttribute("datetime"));
      if (isNaN(moment)) return;
      if (!el.title) el.title = new Date(moment).toLocaleString();
      el.textContent = S.relativeTime(moment, now);
    });
  };

  /* Tabs (role=tablist): a click or the arrow keys show one panel and hide the others. */
  function wireTabs() {
    document.querySelectorAll("[role=tablist]").forEach(function (list) {
      const tabs = Array.from(list.querySelectorAll("[role=tab]"));
      function show(tab) {
        tabs.forEach(function (t) {
          const on = t === tab;
          t.setAttribute("aria-selected", String(on));
          t.tabIndex = on ? 0 : -1;
          document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
        });
      }
      tabs.forEach(function (tab, index) {
        tab.addEventListener("click", function () { show(tab); });
        tab.addEventListener("keydown", function (event) {
          const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
          if (!step) return;
          const next = tabs[(index + step + tabs.length) % tabs.length];
          show(next);
          next.focus();
          event.preventDefault();
        });
      });
    });
  }

  /* A page shown in answer to a POST (a one-time secret) swaps its URL so reloading does not post again. */
  function replaceUrl() {
    const holder = document.querySelector("[data-replace-url]");
    if (holder) history.replaceState(null, "", holder.dataset.replaceUrl);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#toasts .toast").forEach(S.dismissLater);
    replaceUrl();
    wirePopovers();
    showCarriedToast();
    wireActionForms();
    wireCopyButtons();
    S.wireJsonEditors(document);
    wireTabs();
    S.refreshRelativeTimes(document);
    setInterval(function () { S.refreshRelativeTimes(document); }, 30000);
  });
})(window.Stepwise);
