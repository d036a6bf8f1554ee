/* The run waterfall: spans drawn to scale, rendered virtually (only visible rows exist in the DOM). */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  const ROW = 28;
  const OVERSCAN = 12;
  const FINAL = ["COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "CRASHED", "EXPIRED"];
  const ATTEMPT_END = { COMPLETED: "COMPLETED", RETRYING: "FAILED", FAILED: "FAILED", CANCELED: "CANCELED",
    TIMED_OUT: "TIMED_OUT", CRASHED: "CRASHED", WAITING: "SUSPENDED", QUEUED: "CRASHED" };
  const FAILED = ["FAILED", "CRASHED", "TIMED_OUT"];

  S.isFinal = function (status) { return FINAL.indexOf(status) >= 0; };

  S.formatMs = function (ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1) return ms.toFixed(2) + "ms";
    if (ms < 1000) return Math.round(ms) + "ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + "s";
    const m = Math.floor(ms / 60000);
    return m + "m " + String(Math.round((ms % 60000) / 1000)).padStart(2, "0") + "s";
  };

  // Positions travel in data attributes and are applied through the CSSOM: the Content-Security-Policy
  // refuses style="" attributes in markup.
  function place(root) {
    root.querySelectorAll("[data-left], [data-top], [data-width]").forEach(function (el) {
      if (el.dataset.left !== undefined) el.style.left = el.dataset.left + "px";
      if (el.dataset.top !== undefined) el.style.top = el.dataset.top + "px";
      if (el.dataset.width !== undefined) el.style.width = el.dataset.width + "px";
    });
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  /* An error and its causes on one line, as the CLI prints them. */
  S.errorChainText = function (error) {
    const parts = [error].concat(error.causes || []).map(function (e) { return (e.type || "Error") + ": " + (e.message || ""); });
    return parts.join("  <- caused by ") + (error.causes_left_off ? "  <- ... " + error.causes_left_off + " more" : "");
  };

  function barClass(span) {
    if (span.kind === "retry") return "bar-retry";
    if (span.status === "INTERRUPTED") return "bar-interrupted";
    if (FAILED.indexOf(span.status) >= 0) return "bar-failed";
    if (span.status === "CANCELED" || span.status === "EXPIRED") return "bar-canceled";
    return "bar-" + span.kind;
  }

  S.Timeline = class Timeline {
    constructor(root, onSelect) {
      this.root = root;
      this.axis = root.querySelector(".timeline-axis");
      this.viewport = root.querySelector(".timeline-viewport");
      this.spacer = root.querySelector(".timeline-spacer");
      this.onSelect = onSelect;
      this.spans = [];
      this.byId = new Map();
      this.selected = null;
      this.run = null;
      this.pending = false;
      this.viewport.addEventListener("scroll", () => this.schedule());
      window.addEventListener("resize", () => this.schedule());
      this.viewport.addEventListener("click", (event) => {
        const row = event.target.closest(".tl-row");
        if (row) this.select(Number(row.dataset.index));
      });
      root.addEventListener("keydown", (event) => this.keydown(event));
      this.ticker = setInterval(() => { if (this.hasOpenSpans()) this.schedule(); }, 500);
    }

    /* Replace everything with the server's timeline (the authoritative picture). */
    load(timeline) {
      this.run = timeline.run;
      this.spans = timeline.spans;
      this.byId = new Map(this.spans.map(function (s) { return [s.id, s]; }));
      this.clockSkew = Date.now() - timeline.now;
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
      return span;
    }

    openAttempt() {
      for (let i = this.spans.length - 1; i >= 0; i--) {
        const s = this.spans[i];
        if (s.kind === "attempt" && s.end === null) return s;
      }
      return null;
    }

    /* Fold one RunEvent message into the spans, as the server's timeline would show it. */
    apply(event) {
      const d = event.data || {};
      const at = Date.parse(event.at);
      const run = this.runSpan;
      if (event.type === "run.status") {
        this.run.status = d.to;
        if (run) run.status = d.to;
        if (d.from === "EXECUTING" || S.isFinal(d.to)) this.closeAttempt(at, ATTEMPT_END[d.to] || d.to, d.error);
        if (d.to === "EXECUTING" && d.attempt) {
          this.add({ id: "attempt-" + d.attempt, parent: "run", kind: "attempt", name: "Attempt " + d.attempt,
            status: "EXECUTING", start: at, end: null, error: null, attributes: { attempt: d.attempt, worker: d.worker } });
        }
        if (d.to === "RETRYING" && d.retry_delay) {
          const n = d.attempt || 0;
          this.add({ id: "retry-" + n, parent: "run", kind: "retry", name: "Retry in " + Number(d.retry_delay).toFixed(1) + "s",
            status: "RETRYING", start: at, end: at + d.retry_delay * 1000, error: null, attributes: { retry_delay_s: d.retry_delay } });
        }
        if (S.isFinal(d.to) && run) { run.end = at; this.run.is_finished = true; }
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
      const n = this.spans.length;
      this.spacer.style.height = n * ROW + "px";
      const track = this.viewport.clientWidth - this.labelWidth();
      const [t0, t1, now] = this.domain();
      const scale = (track - 90) / (t1 - t0);
      this.renderAxis(t0, t1, scale, track);
      const first = Math.max(0, Math.floor(this.viewport.scrollTop / ROW) - OVERSCAN);
      const last = Math.min(n, Math.ceil((this.viewport.scrollTop + this.viewport.clientHeight) / ROW) + OVERSCAN);
      const html = [];
      for (let i = first; i < last; i++) html.push(this.rowHtml(this.spans[i], i, t0, scale, now));
      this.spacer.innerHTML = html.join("");
      place(this.spacer);
    }

    labelWidth() {
      return parseInt(getComputedStyle(this.root).getPropertyValue("--label-w"), 10) || 280;
    }

    rowHtml(span, index, t0, scale, now) {
      const end = span.end === null ? now : span.end;
      const left = (span.start - t0) * scale;
      const width = Math.max(2, (end - span.start) * scale);
      const depth = span.kind === "run" ? 0 : ["attempt", "retry", "wait"].indexOf(span.kind) >= 0 ? 1 : span.kind === "user" ? 3 : 2;
      const classes = "tl-bar " + barClass(span) + (span.end === null ? " bar-open" : "");
      const logs = (span.logs || []).map(function (log) {
        return '<i class="tl-log" data-left="' + ((log.at - t0) * scale).toFixed(1) + '" title="' + escapeHtml(log.message) + '"></i>';
      }).join("");
      return '<div class="tl-row tl-depth-' + depth + (this.selected === span.id ? " selected" : "") + '" data-index="' + index +
        '" data-span-id="' + escapeHtml(span.id) + '" data-status="' + span.status + '" data-top="' + index * ROW + '">' +
        '<div class="tl-label"><span class="tl-kind">' + span.kind + '</span><span class="tl-name">' + escapeHtml(span.name) + "</span></div>" +
        '<div class="tl-track"><div class="' + classes + '" data-left="' + left.toFixed(1) + '" data-width="' + width.toFixed(1) + '"' +
        (span.error ? ' title="' + escapeHtml(S.errorChainText(span.error)) + '"' : "") + ">" +
        "<span>" + S.formatMs(end - span.start) + "</span></div>" + logs + "</div></div>";
    }

    renderAxis(t0, t1, scale, track) {
      const span = t1 - t0;
      const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000, 3600000];
      const step = steps.find(function (s) { return (s * scale) >= 80; }) || steps[steps.length - 1];
      const ticks = [];
      for (let t = 0; t <= span && ticks.length < 60; t += step) {
        ticks.push('<span class="tick" data-left="' + (t * scale).toFixed(1) + '">' + S.formatMs(t) + "</span>");
      }
      this.axis.innerHTML = ticks.join("");
      place(this.axis);
      this.axis.style.width = track + "px";
    }

    select(index) {
      const span = this.spans[index];
      if (!span) return;
      this.selected = span.id;
      this.render();
      this.onSelect(span);
    }

    keydown(event) {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
      event.preventDefault();
      const current = this.spans.findIndex((s) => s.id === this.selected);
      const next = Math.min(this.spans.length - 1, Math.max(0, current + (event.key === "ArrowDown" ? 1 : -1)));
      const top = next * ROW;
      if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
      if (top + ROW > this.viewport.scrollTop + this.viewport.clientHeight) this.viewport.scrollTop = top + ROW - this.viewport.clientHeight;
      this.select(next);
    }
  };
})(window.Stepwise);
