/* The runs list: new runs appear and statuses change live; checkboxes drive the bulk actions. */
"use strict";

(function (S) {
  const POLL_MS = 2000;

  class RunsList {
    constructor(form) {
      this.form = form;
      this.rows = document.getElementById("run-rows");
      this.indicator = document.getElementById("live-indicator");
      this.updatesUrl = form.dataset.updatesUrl;
      this.liveRows = form.dataset.live === "1";
      this.refreshing = false;
      this.wireSelection();
    }

    start() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      if (!("WebSocket" in window)) return this.poll();
      const socket = new WebSocket(scheme + location.host + this.form.dataset.wsPath);
      let opened = false;
      socket.onopen = () => { opened = true; this.setState("live"); };
      // Any event may change a visible row or add one: refresh from the server, at most a few times a second.
      socket.onmessage = () => this.refreshSoon();
      socket.onclose = () => { this.poll(); };
      this.socket = socket;
      setTimeout(() => { if (!opened) socket.close(); }, 3000);
    }

    setState(state) {
      if (!this.indicator) return;
      this.indicator.dataset.state = state;
      this.indicator.textContent = state === "polling" ? "Live (polling)" : "Live";
    }

    async poll() {
      if (this.polling) return;
      this.polling = true;
      this.setState("polling");
      for (;;) {
        await this.refresh();
        await new Promise(function (resolve) { setTimeout(resolve, POLL_MS); });
      }
    }

    refreshSoon() {
      clearTimeout(this.soon);
      this.soon = setTimeout(() => this.refresh(), 250);
    }

    async refresh() {
      if (this.refreshing) return;
      this.refreshing = true;
      try {
        const rows = Array.from(this.rows.querySelectorAll("tr[data-run-id]"));
        const newest = this.liveRows ? (rows.length ? rows[0].dataset.runId : "run_0") : "";
        const ids = rows.map(function (r) { return r.dataset.runId; }).join(",");
        const answer = await S.getJSON(this.updatesUrl + "&newest=" + encodeURIComponent(newest) + "&ids=" + encodeURIComponent(ids));
        this.addRows(answer.rows);
        this.updateStatuses(answer.statuses);
      } catch (err) {
        this.setState("connecting");
      } finally {
        this.refreshing = false;
      }
    }

    addRows(rows) {
      if (!rows.length) return;
      const empty = this.rows.querySelector(".empty-row");
      if (empty) empty.remove();
      const template = document.createElement("template");
      template.innerHTML = rows.map(function (r) { return r.html; }).join("");
      template.content.querySelectorAll("tr").forEach(function (tr) { tr.classList.add("is-new"); });
      S.refreshRelativeTimes(template.content);
      this.rows.prepend(template.content);
    }

    updateStatuses(statuses) {
      Object.entries(statuses).forEach(([id, state]) => {
        const row = this.rows.querySelector('tr[data-run-id="' + CSS.escape(id) + '"]');
        const badge = row && row.querySelector(".badge");
        if (!badge) return;
        row.querySelector(".col-attempts").textContent = state.attempts;
        if (badge.dataset.status === state.status) return;
        badge.className = "badge status-" + state.status.toLowerCase();
        badge.dataset.status = state.status;
        badge.textContent = state.label;
        row.querySelector(".col-duration").textContent = state.duration;
      });
    }

    wireSelection() {
      const all = document.getElementById("select-all");
      const bar = document.getElementById("bulk-bar");
      const count = document.getElementById("bulk-count");
      const cancelCount = document.getElementById("bulk-cancel-count");
      const update = () => {
        const checked = this.rows.querySelectorAll("input[name=run_ids]:checked").length;
        bar.hidden = checked === 0;
        count.textContent = checked + " selected";
        if (cancelCount) cancelCount.textContent = checked + " selected run" + (checked === 1 ? "" : "s");
      };
      all.addEventListener("change", () => {
        this.rows.querySelectorAll("input[name=run_ids]").forEach(function (box) { box.checked = all.checked; });
        update();
      });
      this.rows.addEventListener("change", update);
      this.form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const answer = await S.submitAction(this.form, event.submitter);
        const confirm = document.getElementById("bulk-cancel-confirm");
        if (confirm) confirm.open = false;
        if (answer.ok) {
          this.rows.querySelectorAll("input[name=run_ids]:checked").forEach(function (box) { box.checked = false; });
          all.checked = false;
          update();
          this.refresh();
        }
      });
    }
  }

  /* j/k or the arrow keys move through the runs, Enter opens the focused one, x selects it. */
  function wireKeys(rows) {
    function current() { return rows.querySelector("tr.focused"); }
    function focus(row) {
      if (!row) return;
      const before = current();
      if (before) { before.classList.remove("focused"); before.removeAttribute("aria-current"); }
      row.classList.add("focused");
      row.setAttribute("aria-current", "true");
      const link = row.querySelector("a");
      if (link) link.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.closest("input, select, textarea, [contenteditable], details.pop[open]")) return;
      const all = Array.from(rows.querySelectorAll("tr[data-run-id]"));
      if (!all.length) return;
      const at = all.indexOf(current());
      const down = event.key === "j" || event.key === "ArrowDown";
      const up = event.key === "k" || event.key === "ArrowUp";
      if (down || up) {
        event.preventDefault();
        focus(all[at < 0 ? 0 : Math.max(0, Math.min(all.length - 1, at + (down ? 1 : -1)))]);
      } else if (event.key === "Enter" && at >= 0 && event.target.tagName !== "BUTTON") {
        event.preventDefault();
        location.assign(all[at].dataset.href);
      } else if (event.key === "x" && at >= 0) {
        const box = all[at].querySelector("input[name=run_ids]");
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    rows.addEventListener("focusin", function (event) {
      const row = event.target.closest("tr[data-run-id]");
      if (row && row !== current()) {
        const before = current();
        if (before) { before.classList.remove("focused"); before.removeAttribute("aria-current"); }
        row.classList.add("focused");
      }
    });
  }

  /* Saved views: the list's query string under a name, kept in this browser. */
  const SAVED_KEY = "stepwise:saved-run-filters";

  function savedViews() {
    try { return JSON.parse(localStorage.getItem(SAVED_KEY) || "[]"); } catch (err) { return []; }
  }

  function renderSaved(list) {
    const views = savedViews();
    list.replaceChildren.apply(list, views.map(function (view, index) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = location.pathname + view.query;
      link.textContent = view.name;
      if (view.query === location.search) link.setAttribute("aria-current", "true");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "saved-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Forget the saved view " + view.name);
      remove.addEventListener("click", function () {
        const kept = savedViews();
        kept.splice(index, 1);
        localStorage.setItem(SAVED_KEY, JSON.stringify(kept));
        renderSaved(list);
      });
      item.append(link, remove);
      return item;
    }));
    document.getElementById("saved-filters-label").hidden = views.length === 0;
  }

  function wireSaved() {
    const list = document.getElementById("saved-list");
    const form = document.getElementById("save-filter-form");
    if (!list || !form) return;
    renderSaved(list);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const name = document.getElementById("save-filter-name").value.trim();
      if (!name) return;
      const views = savedViews().filter(function (v) { return v.name !== name; });
      views.push({ name: name, query: location.search });
      localStorage.setItem(SAVED_KEY, JSON.stringify(views));
      renderSaved(list);
      form.closest("details").open = false;
      S.toast("Saved this view as \u201c" + name + "\u201d.", "success");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("bulk-form");
    if (form) {
      new RunsList(form).start();
      wireKeys(document.getElementById("run-rows"));
      wireSaved();
    }
  });
})(window.Stepwise);
