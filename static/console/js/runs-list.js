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
      this.rows.prepend(template.content);
    }

    updateStatuses(statuses) {
      Object.entries(statuses).forEach(([id, state]) => {
        const row = this.rows.querySelector('tr[data-run-id="' + CSS.escape(id) + '"]');
        const badge = row && row.querySelector(".badge");
        if (!badge || badge.dataset.status === state.status) return;
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
      const update = () => {
        const checked = this.rows.querySelectorAll("input[name=run_ids]:checked").length;
        bar.hidden = checked === 0;
        count.textContent = checked + " selected";
      };
      all.addEventListener("change", () => {
        this.rows.querySelectorAll("input[name=run_ids]").forEach(function (box) { box.checked = all.checked; });
        update();
      });
      this.rows.addEventListener("change", update);
      this.form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const answer = await S.submitAction(this.form, event.submitter);
        if (answer.ok) {
          this.rows.querySelectorAll("input[name=run_ids]:checked").forEach(function (box) { box.checked = false; });
          all.checked = false;
          update();
          this.refresh();
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("bulk-form");
    if (form) new RunsList(form).start();
  });
})(window.Stepwise);
