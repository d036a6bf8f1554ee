/* The run waterfall: a span tree beside bars drawn to scale, rendered virtually.

Only the rows in view (and a few either side) exist in the DOM; each row element is kept while its
span stays in view and moved with a transform, so scrolling a 5,000-span run touches a few dozen
nodes. Rows can be filtered (text, kind, status), attempts collapsed, and the time axis zoomed. */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  const ROW = 28;
  const OVERSCAN = 8;
  const FINAL = ["COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "CRASHED", "EXPIRED"];
  const ATTEMPT_END = { COMPLETED: "COMPLETED", RETRYING: "FAILED", FAILED: "FAILED", CANCELED: "CANCELED",
    TIMED_OUT: "TIMED_OUT", CRASHED: "CRASHED", WAITING: "SUSPENDED", QUEUED: "CRASHED" };
  const FAILED = ["FAILED", "CRASHED", "TIMED_OUT", "INTERRUPTED"];
  const RUNNING = ["EXECUTING", "WAITING", "QUEUED", "RETRYING"];
  // The status filter's choices, each a set of span statuses.
  const STATUS_GROUPS = { failed: FAILED, running: RUNNING, completed: ["COMPLETED"], canceled: ["CANCELED", "EXPIRED"] };

  S.isFinal = function (status) { return FINAL.indexOf(status) >= 0; };

  S.formatMs = function (ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1) return ms.toFixed(2) + "ms";
    if (ms < 1000) return Math.round(ms) + "ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + "s";
    const m = Math.floor(ms / 60000);
    return m + "m " + String(Math.round((ms % 60000) / 1000)).padStart(2, "0") + "s";
  };

  /* An error and its causes on one line, as the CLI prints them. */
  S.errorChainText = function (error) {
    const parts = [error].concat(error.causes || []).map(function (e) { return (e.type || "Error") + ": " + (e.message || ""); });
    return parts.join("  <- caused by ") + (error.causes_left_off ? "  <- ... " + error.causes_left_off + " more" : "");
  };

  /* The name a row shows: a step's key (process-item#57), any other span's name. */
  S.spanLabel = function (span) {
    return span.kind === "step" && span.attributes && span.attributes.key ? span.attributes.key : span.name;
  };

  function barClass(span) {
    if (span.kind === "retry") return "bar-retry";
    if (span.kind === "queued") return "bar-queued";
    if (span.status === "INTERRUPTED") return "bar-interrupted";
    if (FAILED.indexOf(span.status) >= 0) return "bar-failed";
    if (span.status === "CANCELED" || span.status === "EXPIRED") return "bar-canceled";
    return "bar-" + span.kind;
  }

  function depthOf(span) {
    if (span.kind === "run") return 0;
    if (span.kind === "step") return 2;
    if (span.kind === "user") return 3;
    return 1;
  }

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  S.Timeline = class Timeline {
    constructor(root, onSelect) {
      this.root = root;
      this.axis = root.querySelector(".timeline-axis");
      this.viewport = root.querySelector(".timeline-viewport");
      this.spacer = root.querySelector(".timeline-spacer");
      this.countNote = document.getElementById("timeline-count");
      this.onSelect = onSelect;
      this.spans = [];
      this.byId = new Map();
      this.rowEls = new Map();
      this.rows = [];
      this.dirty = true;
      this.collapsed = new Set();
      this.filter = { text: "", kind: "", status: "" };
      this.zoom = null;
      this.selected = null;
      this.run = null;
      this.pending = false;
      this.track = 0;
      this.labelW = 280;
      this.viewport.addEventListener("scroll", () => this.schedule());
      // The inspector opening, a window resize, a font loading: any change of the viewport's size redraws.
      new ResizeObserver(() => { this.measure(); this.schedule(); }).observe(this.viewport);
      this.viewport.addEventListener("click", (event) => {
        const row = event.target.closest(".tl-row");
        if (!row) return;
        if (event.target.closest(".tl-toggle")) return this.toggle(row.dataset.spanId);
        this.select(row.dataset.spanId);
      });
      root.addEventListener("keydown", (event) => this.keydown(event));
      this.wireBrush();
      this.ticker = setInterval(() => { if (this.hasOpenSpans()) this.schedule(); }, 500);
    }

    measure() {
      this.labelW = parseInt(getComputedStyle(this.root).getPropertyValue("--label-w"), 10) || 280;
      this.track = Math.max(60, this.viewport.clientWidth - this.labelW);
    }

    /* Replace everything with the server's timeline (the authoritative picture). */
    load(timeline) {
      this.run = timeline.run;
      this.partial = Boolean(timeline.partial);
      this.spans = timeline.spans;
      this.spans.forEach(function (s) { s.logs = s.logs || []; s.attributes = s.attributes || {}; s.error = s.error || null; });
      this.byId = new Map(this.spans.map(function (s) { return [s.id, s]; }));
      this.clockSkew = Date.now() - timeline.now;
      this.rowEls.forEach(function (row) { row.remove(); });
      this.rowEls.clear();
      const empty = this.spacer.querySelector(".timeline-empty");
      if (empty) empty.remove();
      this.dirty = true;
      this.measure();
      this.schedule();
    }

    get runSpan() { return this.byId.get("run"); }

    hasOpenSpans() { return this.spans.some(function (s) { return s.end === null; }); }

    add(span) {
      if (this.byId.has(span.id)) return this.byId.get(span.id);
      span.logs = span.logs || [];
      span.attributes = span.attributes || {};
      this.spans.push(span);
      this.byId.set(span.id, span);
      this.dirty = true;
      return span;
    }

    openAttempt() {
      for (let i = this.spans.length - 1; i >= 0; i--) {
        const s = this.spans[i];
        if (s.kind === "attempt" && s.end === null) return s;
      }
      return null;
    }

    attemptCount() { return this.spans.filter(function (s) { return s.kind === "attempt"; }).length; }

    closeQueued(at) {
      this.spans.forEach(function (s) { if (s.kind === "queued" && s.end === null) { s.end = at; s.status = "COMPLETED"; } });
    }

    /* Fold one RunEvent message into the spans, as the server's timeline would show it. */
    apply(event) {
      const d = event.data || {};
      const at = Date.parse(event.at);
      const run = this.runSpan;
      this.dirty = true;
      if (event.type === "run.status") {
        this.run.status = d.to;
        if (run) run.status = d.to;
        if (d.from === "EXECUTING" || S.isFinal(d.to)) this.closeAttempt(at, ATTEMPT_END[d.to] || d.to, d.error);
        if (d.from === "QUEUED") this.closeQueued(at);
        if (d.to === "QUEUED") {
          const n = this.attemptCount() + 1;
          this.add({ id: "queued-" + n, parent: "run", kind: "queued", name: n === 1 ? "Queued" : "Queued for attempt " + n,
            status: "QUEUED", start: at, end: null, error: null, attributes: { attempt: n } });
        }
        if (d.to === "EXECUTING" && d.attempt) {
          this.add({ id: "attempt-" + d.attempt, parent: "run", kind: "attempt", name: "Attempt " + d.attempt,
            status: "EXECUTING", start: at, end: null, error: null, attributes: { attempt: d.attempt, worker: d.worker } });
        }
        if (d.to === "RETRYING" && d.retry_delay) {
          const n = d.attempt || 0;
          this.add({ id: "retry-" + n, parent: "run", kind: "retry", name: "Retry in " + Number(d.retry_delay).toFixed(1) + "s",
            status: "RETRYING", start: at, end: at + d.retry_delay * 1000, error: null, attributes: { retry_delay_s: d.retry_delay } });
        }
        if (S.isFinal(d.to) && run) { run.end = at; this.run.is_finished = true; this.closeQueued(at); }
      } else if (event.type === "step.started") {
        this.add({ id: "step-" + d.attempt + "-" + d.position, parent: "attempt-" + d.attempt, kind: "step", name: d.name,
          status: "EXECUTING", start: at, end: null, error: null, attributes: { key: d.key, position: d.position, attempt: d.attempt } });
      } else if (event.type === "step.completed" || event.type === "step.failed") {
        const span = this.add({ id: "step-" + d.attempt + "-" + d.position, parent: "attempt-" + d.attempt, kind: "step",
          name: d.key, status: "EXECUTING", start: at - (d.duration_ms || 0), end: null, error: null,
          attributes: { key: d.key, position: d.position, attempt: d.attempt } });
        span.end = at;
        span.status = event.type === "step.completed" ? "COMPLETED" : "FAILED";
        span.error = d.error || null;
      } else if (event.type === "wait.started") {
        const what = d.event ? "event " + d.event : String(d.kind || "").toLowerCase();
        this.add({ id: "wait-" + d.waitpoint, parent: "run", kind: "wait", name: "Wait: " + what, status: "WAITING",
          start: at, end: null, error: null, attributes: { waitpoint: d.waitpoint, kind: d.kind, key: d.key } });
      } else if (event.type === "wait.completed" || event.type === "wait.timed_out") {
        const wait = this.byId.get("wait-" + d.waitpoint);
        if (wait) {
          wait.end = at;
          wait.status = event.type === "wait.completed" ? "COMPLETED" : "TIMED_OUT";
        }
      } else if (event.type === "log") {
        const open = this.spans.filter(function (s) { return s.kind === "step" && s.end === null; }).pop();
        (open || run || {logs: []}).logs.push({ at: at, level: String(d.level || "info").toLowerCase(), message: d.message });
      } else if (event.type === "version.waiting") {
        if (run) run.logs.push({ at: at, level: "warning", message: "waiting for a worker of version " + d.version
          + ": no running worker holds it (fails after " + d.grace_seconds + "s)" });
      } else if (event.type === "spans.ended") {
        // Spans arrive with the timeline's next reload; nothing to draw live.
      } else if (run) {
        run.logs.push({ at: at, level: "info", message: event.type + " " + JSON.stringify(d) });
      }
      this.schedule();
    }

    closeAttempt(at, status, error) {
      const attempt = this.openAttempt();
      if (!attempt) return;
      attempt.end = at;
      attempt.status = status;
      attempt.error = error || attempt.error;
      this.spans.forEach(function (s) {
        if (s.parent === attempt.id && s.end === null) {
          s.end = at;
          s.status = status === "CANCELED" ? "CANCELED" : "INTERRUPTED";
          s.error = status === "CANCELED" ? null : error || null;
        }
      });
    }

    /* Filters and collapse ------------------------------------------------------------------ */

    setFilter(filter) {
      this.filter = Object.assign({}, this.filter, filter);
      this.dirty = true;
      this.viewport.scrollTop = 0;
      this.schedule();
    }

    filtering() { return Boolean(this.filter.text || this.filter.kind || this.filter.status); }

    matches(span) {
      const f = this.filter;
      if (f.kind && span.kind !== f.kind) return false;
      if (f.status && (STATUS_GROUPS[f.status] || [f.status]).indexOf(span.status) < 0) return false;
      if (f.text) {
        const needle = f.text.toLowerCase();
        const hay = (S.spanLabel(span) + " " + span.name).toLowerCase();
        if (hay.indexOf(needle) < 0) return false;
      }
      return true;
    }

    hasChildren(span) { return span.kind === "run" || span.kind === "attempt"; }

    toggle(id) {
      if (this.collapsed.has(id)) this.collapsed.delete(id); else this.collapsed.add(id);
      this.dirty = true;
      this.schedule();
    }

    /* Collapse every attempt (true) or expand everything (false). */
    collapseAttempts(collapse) {
      this.collapsed.clear();
      if (collapse) this.spans.forEach((s) => { if (s.kind === "attempt") this.collapsed.add(s.id); });
      this.dirty = true;
      this.schedule();
    }

    hiddenByCollapse(span) {
      let parent = span.parent;
      while (parent) {
        if (this.collapsed.has(parent)) return true;
        const up = this.byId.get(parent);
        parent = up ? up.parent : null;
      }
      return false;
    }

    /* The spans shown, in order: every one not under a collapsed span, or the filter's matches with their parents. */
    buildRows() {
      if (this.filtering()) {
        const keep = new Set();
        for (const span of this.spans) {
          if (!this.matches(span)) continue;
          let id = span.id;
          while (id && !keep.has(id)) {
            keep.add(id);
            const s = this.byId.get(id);
            id = s ? s.parent : null;
          }
        }
        this.rows = this.spans.filter(function (s) { return keep.has(s.id); });
      } else if (this.collapsed.size) {
        this.rows = this.spans.filter((s) => !this.hiddenByCollapse(s));
      } else {
        this.rows = this.spans.slice();
      }
      this.childCounts = new Map();
      for (const span of this.spans) {
        if (span.parent) this.childCounts.set(span.parent, (this.childCounts.get(span.parent) || 0) + 1);
      }
      this.dirty = false;
      this.spacer.style.height = this.rows.length * ROW + "px";
      if (this.countNote) {
        this.countNote.textContent = this.partial ? "loading every span…" : this.filtering()
          ? this.rows.filter((s) => this.matches(s)).length + " of " + this.spans.length + " spans" : this.spans.length + " spans";
      }
      this.root.setAttribute("aria-rowcount", String(this.rows.length));
    }

    /* Zoom ---------------------------------------------------------------------------------- */

    zoomTo(start, end) {
      if (!(end > start)) return;
      this.zoom = [start, end];
      this.root.classList.add("zoomed");
      document.dispatchEvent(new CustomEvent("stepwise:zoom", { detail: { zoomed: true } }));
      this.schedule();
    }

    resetZoom() {
      this.zoom = null;
      this.root.classList.remove("zoomed");
      document.dispatchEvent(new CustomEvent("stepwise:zoom", { detail: { zoomed: false } }));
      this.schedule();
    }

    /* Drag across the time axis to zoom to that range. */
    wireBrush() {
      const brush = el("div", "tl-brush");
      brush.hidden = true;
      this.axis.parentNode.append(brush);
      let from = null;
      const x = (event) => Math.min(this.track, Math.max(0, event.clientX - this.axis.getBoundingClientRect().left));
      this.axis.addEventListener("pointerdown", (event) => {
        from = x(event);
        this.axis.setPointerCapture(event.pointerId);
        brush.hidden = false;
        brush.style.left = this.labelW + from + "px";
        brush.style.width = "0px";
      });
      this.axis.addEventListener("pointermove", (event) => {
        if (from === null) return;
        const to = x(event);
        brush.style.left = this.labelW + Math.min(from, to) + "px";
        brush.style.width = Math.abs(to - from) + "px";
      });
      this.axis.addEventListener("pointerup", (event) => {
        if (from === null) return;
        const to = x(event);
        brush.hidden = true;
        const a = Math.min(from, to);
        const b = Math.max(from, to);
        from = null;
        if (b - a < 4) return;
        this.zoomTo(this.timeAt(a), this.timeAt(b));
      });
    }

    timeAt(px) { return this.view.t0 + px / this.view.scale; }

    /* Rendering ----------------------------------------------------------------------------- */

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }

    domain() {
      const now = Date.now() - (this.clockSkew || 0);
      let start = Infinity;
      let end = -Infinity;
      for (const s of this.spans) {
        if (s.start < start) start = s.start;
        const e = s.end === null ? now : s.end;
        if (e > end) end = e;
      }
      if (!isFinite(start)) return [0, 1, now];
      return [start, Math.max(end, start + 1), now];
    }

    render() {
      if (!this.run) return;
      if (!this.track) this.measure();
      if (this.dirty) this.buildRows();
      const [d0, d1, now] = this.domain();
      const [t0, t1] = this.zoom || [d0, d1];
      const scale = (this.track - 90) / (t1 - t0);
      this.view = { t0: t0, scale: scale, origin: d0 };
      this.renderAxis(t0, t1, scale, d0);
      const top = this.viewport.scrollTop;
      const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
      const last = Math.min(this.rows.length, Math.ceil((top + this.viewport.clientHeight) / ROW) + OVERSCAN);
      const keep = new Set();
      for (let i = first; i < last; i++) {
        const span = this.rows[i];
        keep.add(span.id);
        let row = this.rowEls.get(span.id);
        if (!row) {
          row = this.createRow(span);
          this.rowEls.set(span.id, row);
          this.spacer.append(row);
        }
        this.updateRow(row, span, i, t0, scale, now);
      }
      this.rowEls.forEach((row, id) => {
        if (!keep.has(id)) { row.remove(); this.rowEls.delete(id); }
      });
      // The moment the first row shows, for the browser's own timing (performance.getEntriesByName).
      if (!this.marked && this.rowEls.size) { this.marked = true; performance.mark("stepwise:timeline-first-row"); }
    }

    createRow(span) {
      const row = el("div", "tl-row tl-depth-" + depthOf(span));
      row.setAttribute("role", "treeitem");
      row.setAttribute("aria-level", String(depthOf(span) + 1));
      row.dataset.spanId = span.id;
      row.id = "tl-" + span.id;
      row.dataset.kind = span.kind;
      const label = el("div", "tl-label");
      if (this.hasChildren(span)) {
        const toggle = el("button", "tl-toggle");
        toggle.type = "button";
        toggle.tabIndex = -1;
        toggle.setAttribute("aria-hidden", "true");
        label.append(toggle);
      } else {
        label.append(el("span", "tl-toggle-space"));
      }
      const kind = el("span", "tl-kind");
      kind.textContent = span.kind;
      const name = el("span", "tl-name");
      label.append(kind, name);
      const track = el("div", "tl-track");
      const bar = el("div", "tl-bar");
      bar.append(el("span", "tl-duration"));
      track.append(bar);
      row.append(label, track);
      row.cache = {};
      return row;
    }

    updateRow(row, span, index, t0, scale, now) {
      const c = row.cache;
      const end = span.end === null ? now : span.end;
      if (c.index !== index) { row.style.transform = "translateY(" + index * ROW + "px)"; c.index = index; row.dataset.index = index; }
      const label = S.spanLabel(span);
      if (c.label !== label) {
        row.querySelector(".tl-name").textContent = label;
        row.setAttribute("aria-label", span.kind + " " + label + ", " + span.status.toLowerCase().replace("_", " "));
        c.label = label;
      }
      if (c.status !== span.status) { row.dataset.status = span.status; c.status = span.status; }
      const selected = this.selected === span.id;
      if (c.selected !== selected) { row.classList.toggle("selected", selected); row.setAttribute("aria-selected", String(selected)); c.selected = selected; }
      if (this.hasChildren(span)) {
        const open = !this.collapsed.has(span.id);
        if (c.open !== open) {
          row.setAttribute("aria-expanded", String(open));
          row.querySelector(".tl-toggle").textContent = open ? "▾" : "▸";
          c.open = open;
        }
        const hidden = open ? "" : (this.childCounts.get(span.id) || 0) + " hidden";
        if (c.hidden !== hidden) { row.querySelector(".tl-kind").textContent = span.kind + (hidden ? " · " + hidden : ""); c.hidden = hidden; }
      }
      const bar = row.firstChild.nextSibling.firstChild;
      const classes = "tl-bar " + barClass(span) + (span.end === null ? " bar-open" : "");
      if (c.classes !== classes) { bar.className = classes; c.classes = classes; }
      const left = Math.round((span.start - t0) * scale * 10) / 10;
      const width = Math.max(2, Math.round((end - span.start) * scale * 10) / 10);
      if (c.left !== left) { bar.style.left = left + "px"; c.left = left; }
      if (c.width !== width) { bar.style.width = width + "px"; c.width = width; }
      const text = S.formatMs(end - span.start);
      if (c.text !== text) { bar.firstChild.textContent = text; c.text = text; }
      const title = span.error ? S.errorChainText(span.error) : "";
      if (c.title !== title) { if (title) bar.title = title; else bar.removeAttribute("title"); c.title = title; }
      const logKey = span.logs.length + ":" + t0 + ":" + scale;
      if (c.logKey !== logKey) {
        row.querySelectorAll(".tl-log").forEach(function (m) { m.remove(); });
        const track = bar.parentNode;
        span.logs.slice(0, 200).forEach(function (log) {
          const mark = el("i", "tl-log");
          mark.style.left = ((log.at - t0) * scale).toFixed(1) + "px";
          mark.title = log.message;
          track.append(mark);
        });
        c.logKey = logKey;
      }
    }

    renderAxis(t0, t1, scale, origin) {
      const key = t0 + ":" + t1 + ":" + this.track;
      if (this.axisKey === key) return;
      this.axisKey = key;
      const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000];
      const step = steps.find(function (s) { return (s * scale) >= 80; }) || steps[steps.length - 1];
      const ticks = [];
      const firstTick = Math.ceil((t0 - origin) / step) * step;
      for (let t = firstTick; origin + t <= t1 && ticks.length < 60; t += step) {
        const tick = el("span", "tick");
        tick.style.left = ((origin + t - t0) * scale).toFixed(1) + "px";
        tick.textContent = S.formatMs(t);
        ticks.push(tick);
      }
      this.axis.replaceChildren.apply(this.axis, ticks);
    }

    /* Selection and keyboard ---------------------------------------------------------------- */

    select(id) {
      const span = this.byId.get(id);
      if (!span) return;
      this.selected = span.id;
      this.root.setAttribute("aria-activedescendant", "tl-" + span.id);
      this.schedule();
      this.onSelect(span);
    }

    scrollToRow(index) {
      const top = index * ROW;
      if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
      if (top + ROW > this.viewport.scrollTop + this.viewport.clientHeight) this.viewport.scrollTop = top + ROW - this.viewport.clientHeight;
    }

    keydown(event) {
      if (event.target.closest("input, select, textarea")) return;
      const current = this.rows.findIndex((s) => s.id === this.selected);
      const span = this.rows[current];
      let next = null;
      if (event.key === "ArrowDown") next = Math.min(this.rows.length - 1, current + 1);
      else if (event.key === "ArrowUp") next = Math.max(0, current - 1);
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = this.rows.length - 1;
      else if (event.key === "PageDown") next = Math.min(this.rows.length - 1, current + Math.floor(this.viewport.clientHeight / ROW));
      else if (event.key === "PageUp") next = Math.max(0, current - Math.floor(this.viewport.clientHeight / ROW));
      else if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && span && this.hasChildren(span)) {
        const collapsed = this.collapsed.has(span.id);
        if ((event.key === "ArrowLeft") !== collapsed) this.toggle(span.id);
        event.preventDefault();
        return;
      } else if (event.key === "Enter" && span) {
        this.select(span.id);
        event.preventDefault();
        return;
      } else return;
      event.preventDefault();
      if (next === null || next < 0 || !this.rows[next]) return;
      this.scrollToRow(next);
      this.select(this.rows[next].id);
    }
  };
})(window.Stepwise);
