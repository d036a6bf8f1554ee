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

  function wireActionForms() {
    document.querySelectorAll("form[data-action-form]").forEach(function (form) {
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        const answer = await S.submitAction(form, event.submitter);
        if (S.leadsElsewhere(answer)) S.navigate(answer);
        document.dispatchEvent(new CustomEvent("stepwise:action", { detail: Object.assign({ form: form }, answer) }));
      });
    });
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

  /* Validate a JSON textarea as the user types; block its form's submit while invalid. */
  S.wireJsonEditor = function (textarea) {
    const note = document.getElementById(textarea.getAttribute("aria-describedby"));
    const submit = textarea.form && textarea.form.querySelector("button[type=submit]");
    function check() {
      let message = "Valid JSON";
      let valid = true;
      try { JSON.parse(textarea.value); } catch (err) { valid = false; message = err.message; }
      textarea.classList.toggle("invalid", !valid);
      textarea.setAttribute("aria-invalid", String(!valid));
      if (note) { note.textContent = message; note.classList.toggle("invalid", !valid); }
      if (submit) submit.disabled = !valid;
    }
    textarea.addEventListener("input", check);
    check();
  };

  /* Popovers (<details class="pop">): Cancel closes them, and so do Escape and a click elsewhere. */
  function wirePopovers() {
    document.querySelectorAll("[data-close-pop]").forEach(function (button) {
      button.addEventListener("click", function () { button.closest("details").open = false; });
    });
    function closeAll(except) {
      document.querySelectorAll("details.pop[open]").forEach(function (pop) { if (pop !== except) pop.open = false; });
    }
    document.addEventListener("click", function (event) { closeAll(event.target.closest("details.pop")); });
    document.addEventListener("keydown", function (event) { if (event.key === "Escape") closeAll(null); });
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
    document.querySelectorAll("textarea[data-json-editor]").forEach(S.wireJsonEditor);
  });
})(window.Stepwise);
