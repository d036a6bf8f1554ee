/* The queues page: running and queued counts, limits and paused states refresh every two seconds. */
"use strict";

(function (S) {
  const POLL_MS = 2000;

  class QueuesTable {
    constructor(card) {
      this.countsUrl = card.dataset.countsUrl;
      this.rows = document.getElementById("queue-rows");
      this.indicator = document.getElementById("live-indicator");
      this.changed = document.getElementById("queues-changed");
      this.refreshing = false;
    }

    start() {
      this.refresh();
      setInterval(() => this.refresh(), POLL_MS);
      // An action (limit, pause, resume) shows its effect at once, not at the next tick.
      document.addEventListener("stepwise:action", (event) => {
        const inputs = event.detail.form ? event.detail.form.querySelectorAll("input[name$=_limit]") : [];
        // Saved: the typed values are now the server's. Refused: show the server's values again.
        inputs.forEach((input) => {
          if (event.detail.ok) input.defaultValue = input.value;
          else input.value = input.defaultValue;
        });
        this.refresh();
      });
    }

    async refresh() {
      if (this.refreshing) return;
      this.refreshing = true;
      try {
        const answer = await S.getJSON(this.countsUrl);
        answer.queues.forEach((queue) => this.update(queue));
        const shown = this.rows.querySelectorAll("tr[data-queue]").length;
        this.changed.hidden = answer.queues.length <= shown;
        this.setState("live");
      } catch (err) {
        this.setState("connecting");
      } finally {
        this.refreshing = false;
      }
    }

    update(queue) {
      const row = this.rows.querySelector('tr[data-queue="' + CSS.escape(queue.name) + '"]');
      if (!row) return;
      row.dataset.paused = queue.paused ? "1" : "0";
      row.querySelector('[data-count="executing"]').textContent = queue.executing;
      row.querySelector('[data-count="queued"]').textContent = queue.queued;
      const meter = row.querySelector(".meter");
      const cap = queue.total_limit !== null ? queue.total_limit : queue.concurrency_limit;
      meter.hidden = cap === null;
      meter.max = cap || 1;
      meter.value = queue.executing;
      row.querySelector("[data-limit-label]").textContent = cap === null ? "" : "/ " + cap;
      ["concurrency_limit", "total_limit", "rate_limit"].forEach((name) => {
        const input = row.querySelector("input[name=" + name + "]");
        // Never overwrite what someone is typing (a value differing from the last one the server gave).
        if (input && input.value === input.defaultValue) {
          input.value = input.defaultValue = queue[name] === null ? "" : String(queue[name]);
        }
      });
    }

    setState(state) {
      this.indicator.dataset.state = state;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const card = document.getElementById("queues");
    if (card) new QueuesTable(card).start();
  });
})(window.Stepwise);
