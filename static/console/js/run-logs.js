/* The run-wide log view: every span's log lines in time order, filtered by level and text. */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  const LEVELS = ["debug", "info", "warning", "error", "critical"];
  const MAX_LINES = 2000;

  function rank(level) {
    const index = LEVELS.indexOf(level === "warn" ? "warning" : level);
    return index < 0 ? 1 : index;
  }

  S.RunLogs = class RunLogs {
    constructor(timeline, onPick) {
      this.timeline = timeline;
      this.onPick = onPick;
      this.list = document.getElementById("log-lines");
      this.empty = document.getElementById("logs-empty");
      this.count = document.getElementById("logs-count");
      this.level = document.getElementById("logs-level");
      this.search = document.getElementById("logs-search");
      this.level.addEventListener("change", () => this.render());
      this.search.addEventListener("input", () => this.renderSoon());
      this.list.addEventListener("click", (event) => {
        const button = event.target.closest("[data-span-id]");
        if (button) this.onPick(button.dataset.spanId);
      });
    }

    lines() {
      const all = [];
      for (const span of this.timeline.spans) {
        for (const log of span.logs || []) all.push({ log: log, span: span });
      }
      all.sort(function (a, b) { return (a.log.at || 0) - (b.log.at || 0); });
      return all;
    }

    renderSoon() {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.render(), 150);
    }

    render() {
      const all = this.lines();
      const floor = this.level.value ? rank(this.level.value) : 0;
      const needle = this.search.value.trim().toLowerCase();
      const shown = all.filter(function (line) {
        return rank(line.log.level) >= floor && (!needle || String(line.log.message).toLowerCase().indexOf(needle) >= 0);
      });
      this.count.textContent = all.length ? String(all.length) : "";
      this.empty.hidden = all.length > 0;
      const origin = this.timeline.runSpan ? this.timeline.runSpan.start : 0;
      const items = shown.slice(-MAX_LINES).map(function (line) {
        const item = document.createElement("li");
        item.className = "log-line level-" + (line.log.level || "info");
        const at = document.createElement("span");
        at.className = "log-at mono";
        at.textContent = "+" + S.formatMs((line.log.at || origin) - origin);
        const level = document.createElement("span");
        level.className = "log-level";
        level.textContent = line.log.level || "info";
        const where = document.createElement("button");
        where.type = "button";
        where.className = "log-span link";
        where.dataset.spanId = line.span.id;
        where.textContent = S.spanLabel(line.span);
        where.title = "Show this span on the timeline";
        const message = document.createElement("span");
        message.className = "log-message mono";
        message.textContent = line.log.message;
        item.append(at, level, where, message);
        return item;
      });
      if (shown.length > MAX_LINES) {
        const more = document.createElement("li");
        more.className = "muted small";
        more.textContent = (shown.length - MAX_LINES) + " earlier lines left off: narrow by level or text, or export the run.";
        items.unshift(more);
      }
      if (all.length && !shown.length) {
        const none = document.createElement("li");
        none.className = "muted small";
        none.textContent = "No line matches.";
        items.push(none);
      }
      this.list.replaceChildren.apply(this.list, items);
    }
  };
})(window.Stepwise);
