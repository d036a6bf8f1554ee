/* The run page: load the timeline, follow the run's events, inspect spans and checkpoint state. */
"use strict";

(function (S) {
  const FIRST_SCREEN = 200;

  function fact(list, label, value, mono) {
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    if (mono) dd.className = "mono";
    row.append(dt, dd);
    list.append(row);
  }

  function section(body, title) {
    const box = document.createElement("section");
    const head = document.createElement("h3");
    head.className = "small-head";
    head.textContent = title;
    box.append(head);
    body.append(box);
    return box;
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /* "<strong>type</strong>: message", as the server's error include writes it. */
  function errorText(el, error) {
    el.append(element("strong", null, error.type || "Error"), ": " + (error.message || ""));
    return el;
  }

  /* An error with its causes and folded traceback: the markup of templates/console/runs/_error.html. */
  function errorSection(body, error) {
    if (!error) return;
    const box = element("div", "error-chain");
    section(body, "Error").append(box);
    box.append(errorText(element("p", "error-line"), error));
    if (error.where) box.append(element("p", "error-where mono", error.where));
    const causes = error.causes || [];
    if (causes.length) {
      const list = element("ol", "error-causes");
      causes.forEach(function (cause) {
        const item = element("li");
        item.append(element("span", "caused-by", "caused by"), " ", errorText(element("span", "cause-text"), cause));
        if (cause.where) item.append(element("span", "error-where mono", cause.where));
        list.append(item);
      });
      const more = error.causes_left_off;
      if (more) list.append(element("li", "causes-left-off muted", "and " + more + " more cause" + (more === 1 ? "" : "s") + ", in the traceback"));
      box.append(list);
    }
    if (error.traceback) {
      const details = element("details", "traceback");
      details.append(element("summary", null, "Traceback"), element("pre", null, error.traceback));
      box.append(details);
    }
  }

  class RunPage {
    constructor(root) {
      this.root = root;
      this.runStart = null;
      this.inspector = document.getElementById("inspector");
      this.split = document.getElementById("timeline-split");
      this.timeline = new S.Timeline(document.getElementById("timeline"), (span) => this.inspect(span));
      this.liveIndicator = document.getElementById("live-indicator");
      this.checkpoint = document.getElementById("checkpoint");
      this.logs = new S.RunLogs(this.timeline, (id) => this.reveal(id));
      document.getElementById("inspector-close").addEventListener("click", () => this.closeInspector());
      document.getElementById("inspector-zoom").addEventListener("click", () => {
        const span = this.timeline.byId.get(this.timeline.selected);
        if (span) this.timeline.zoomTo(span.start, span.end === null ? Date.now() - (this.timeline.clockSkew || 0) : span.end);
      });
      document.addEventListener("keydown", (event) => {
        if (event.key !== "Escape" || this.inspector.hidden || document.querySelector("details.pop[open]")) return;
        if (event.target.closest("input, textarea, select")) return;
        this.closeInspector();
      });
      document.getElementById("checkpoint-form").addEventListener("submit", (event) => {
        event.preventDefault();
        this.showCheckpoint(document.getElementById("checkpoint-position").value);
      });
      // The checkpoint panel starts folded (a long run has thousands of keys): its state loads when opened.
      this.checkpoint.addEventListener("toggle", () => { if (this.checkpoint.open) this.showCheckpoint(document.getElementById("checkpoint-position").value); });
      this.wireToolbar();
      document.addEventListener("stepwise:action", () => this.stream && this.stream.catchUp());
    }

    wireToolbar() {
      const search = document.getElementById("timeline-search");
      const kind = document.getElementById("timeline-kind");
      const status = document.getElementById("timeline-status");
      const collapse = document.getElementById("timeline-collapse");
      const reset = document.getElementById("timeline-zoom-reset");
      let typing = null;
      search.addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(() => this.timeline.setFilter({ text: search.value.trim() }), 120);
      });
      kind.addEventListener("change", () => this.timeline.setFilter({ kind: kind.value }));
      status.addEventListener("change", () => this.timeline.setFilter({ status: status.value }));
      collapse.addEventListener("click", () => {
        const collapsing = collapse.getAttribute("aria-pressed") !== "true";
        this.timeline.collapseAttempts(collapsing);
        collapse.setAttribute("aria-pressed", String(collapsing));
        collapse.textContent = collapsing ? "Expand attempts" : "Collapse attempts";
      });
      reset.addEventListener("click", () => this.timeline.resetZoom());
      document.addEventListener("stepwise:zoom", (event) => { reset.hidden = !event.detail.zoomed; });
    }

    closeInspector() {
      this.inspector.hidden = true;
      this.split.classList.remove("inspecting");
      document.getElementById("timeline").focus();
    }

    /* Show a span picked elsewhere (a log line): clear what hides it, select it, scroll to it. */
    reveal(id) {
      const span = this.timeline.byId.get(id);
      if (!span) return;
      this.timeline.collapsed.clear();
      this.timeline.setFilter({ text: "", kind: "", status: "" });
      ["timeline-search", "timeline-kind", "timeline-status"].forEach(function (name) { document.getElementById(name).value = ""; });
      this.timeline.buildRows();
      const index = this.timeline.rows.indexOf(span);
      this.timeline.scrollToRow(index);
      this.timeline.select(id);
      document.getElementById("timeline").scrollIntoView({ block: "nearest" });
    }

    async start() {
      const rendered = document.querySelector("#run-status .badge").dataset.status;
      // A long run: the first screen of rows comes first, the whole timeline right after.
      const quick = await S.getJSON(this.root.dataset.timelineUrl + "?first=" + FIRST_SCREEN);
      this.show(quick);
      if (quick.partial) await this.reload();
      // The run moved on between rendering the page and reading its timeline (a Queued page of a run
      // that started meanwhile): the events that said so are older than the timeline's seq, so show
      // the status the timeline read.
      if (rendered !== this.timeline.run.status) this.showStatus(this.timeline.run.status);
      this.showAttempts(this.timeline.run.attempts);
      if (this.timeline.run.is_finished) {
        if (rendered !== this.timeline.run.status) await this.refreshRendered();
        return this.setLive("done");
      }
      this.stream = new S.RunStream({
        wsPath: this.root.dataset.wsPath,
        eventsUrl: this.root.dataset.eventsUrl,
        after: this.lastSeq,
        onEvents: (events) => this.receive(events),
        onState: (state) => {
          this.setLive(state);
          // Connected (again): fetch whatever was stored while the socket was not listening.
          if (state === "live") this.stream.catchUp();
        },
      });
      this.stream.start();
    }

    async reload() {
      this.show(await S.getJSON(this.root.dataset.timelineUrl));
    }

    show(timeline) {
      this.lastSeq = timeline.last_seq;
      this.timeline.load(timeline);
      this.runStart = timeline.spans[0] && timeline.spans[0].start;
      this.logs.render();
    }

    setLive(state) {
      if (this.liveIndicator) {
        this.liveIndicator.dataset.state = state;
        this.liveIndicator.textContent = state === "done" ? "Finished" : state === "polling" ? "Live (polling)" : "Live";
      }
    }

    receive(events) {
      let finished = false;
      let versionWait = false;
      for (const event of events) {
        if (event.transient) { this.timeline.apply(event); continue; }
        if (event.seq <= this.lastSeq) continue;
        this.lastSeq = event.seq;
        this.timeline.apply(event);
        document.dispatchEvent(new CustomEvent("stepwise:run-event", { detail: event }));  // for cards of their own
        if (event.type === "metadata.updated") this.showMetadata(event);
        if (event.type === "step.completed" || event.type === "step.failed") this.checkpointSoon();
        if (event.type === "log") this.logs.renderSoon();
        if (event.type === "run.status") {
          this.showStatus(event.data.to);
          this.showAttempts(event.data.attempt);  // a claim names the attempt it starts
          if (S.isFinal(event.data.to)) finished = true;
          // A worker of the run's version took it: the notice that it waits for one goes.
          if (event.data.from === "QUEUED" && document.querySelector("#version-wait .callout")) versionWait = true;
        }
        if (event.type === "version.waiting") versionWait = true;
        // A wait began or ended: the "Waiting for" card (send the event, approve) follows.
        if (event.type.indexOf("wait.") === 0) versionWait = true;
      }
      if (finished) this.finish();
      else if (versionWait) this.refreshRendered();
    }

    /* The run changed its metadata: redraw the card with what it stored. */
    showMetadata(event) {
      const empty = Object.keys(event.data.metadata || {}).length === 0;
      const tree = document.getElementById("metadata-tree");
      document.getElementById("metadata-data").textContent = JSON.stringify(event.data.metadata);
      document.getElementById("metadata-empty").hidden = !empty;
      tree.hidden = empty;
      S.renderJson(tree, event.data.metadata);
      document.getElementById("metadata-updated").textContent = "updated " + new Date(event.at || Date.now()).toLocaleTimeString();
    }

    /* The Attempts fact follows the run without a reload (from the timeline read, then each claim). */
    showAttempts(count) {
      const fact = document.getElementById("fact-attempts");
      if (fact && count) fact.textContent = String(count);
    }

    showStatus(status) {
      const badge = document.querySelector("#run-status .badge");
      badge.className = "badge status-" + status.toLowerCase();
      badge.dataset.status = status;
      badge.textContent = status.charAt(0) + status.slice(1).toLowerCase().replace("_", " ");
    }

    /* The run ended: stop following, then refresh the parts of the page the server renders. */
    async finish() {
      this.stream.stop();
      await this.reload();
      await this.refreshRendered();
    }

    /* Replace the server-rendered parts that change when a run ends (result, actions, facts). */
    async refreshRendered() {
      const page = new DOMParser().parseFromString(await (await fetch(location.href, { credentials: "same-origin" })).text(), "text/html");
      for (const selector of ["#result-card", ".page-actions", "#fact-attempts", "#fact-duration", "#version-wait",
        "#waiting-for-slot", "#run-context"]) {
        const fresh = page.querySelector(selector);
        const current = document.querySelector(selector);
        if (fresh && current) current.replaceWith(document.adoptNode(fresh));
      }
      S.wireJsonEditors(document.getElementById("waiting-for-slot"));
      document.querySelectorAll("#waiting-for-slot form[data-action-form]").forEach(S.wireActionForm);
      document.querySelectorAll(".page-actions form[data-action-form]").forEach(S.wireActionForm);
      S.mountJsonTrees(document.getElementById("result-card"));
      this.showCheckpoint(document.getElementById("checkpoint-position").value);
    }

    /* A step was recorded: an open checkpoint panel showing the latest state follows it. */
    checkpointSoon() {
      if (!this.checkpoint.open || document.getElementById("checkpoint-position").value !== "") return;
      clearTimeout(this.checkpointTimer);
      this.checkpointTimer = setTimeout(() => this.showCheckpoint(""), 400);
    }

    async inspect(span) {
      this.inspector.hidden = false;
      this.split.classList.add("inspecting");
      if (span.kind === "attempt" && span.error && !("traceback" in span.error)) {
        // It failed while this page watched: its event named only the error; the timeline has it in full.
        await this.reload();
        span = this.timeline.byId.get(span.id) || span;
      }
      document.getElementById("inspector-title").textContent = S.spanLabel(span);
      const facts = document.getElementById("inspector-facts");
      const body = document.getElementById("inspector-body");
      facts.replaceChildren();
      body.replaceChildren();
      const end = span.end === null ? null : span.end;
      fact(facts, "Kind", span.kind);
      fact(facts, "Status", span.status);
      fact(facts, "Starts at", "+" + S.formatMs(span.start - this.runStart));
      fact(facts, "Duration", end === null ? "running" : S.formatMs(end - span.start));
      Object.entries(span.attributes || {}).forEach(function (pair) { fact(facts, pair[0], pair[1], true); });
      errorSection(body, span.error);
      if (span.logs && span.logs.length) {
        const box = section(body, "Logs");
        span.logs.forEach(function (log) {
          const line = document.createElement("pre");
          line.textContent = S.formatMs(log.at - span.start) + "  " + (log.level || "") + "  " + log.message;
          box.append(line);
        });
      }
      if (span.kind === "step" && span.end !== null && span.status !== "INTERRUPTED" && span.status !== "CANCELED") {
        await this.inspectStep(span, body);
      }
    }

    async inspectStep(span, body) {
      const position = span.attributes.position;
      const url = this.root.dataset.stepUrl.replace(/\/0\.json$/, "/" + position + ".json");
      const step = await S.getJSON(url);
      if (!step.recorded) return;
      if (step.error) {
        body.replaceChildren();
        errorSection(body, step.error);
      } else {
        const tree = document.createElement("div");
        tree.className = "json-tree";
        section(body, "Output").append(tree);
        S.renderJson(tree, step.output);
      }
      const link = document.createElement("button");
      link.type = "button";
      link.className = "btn btn-small";
      link.textContent = "Checkpoint state as of this step";
      link.addEventListener("click", () => {
        document.getElementById("checkpoint-position").value = position;
        this.checkpoint.open = true;
        this.showCheckpoint(position);
        document.getElementById("checkpoint").scrollIntoView({ behavior: "smooth", block: "center" });
      });
      section(body, "Checkpoint").append(link);
    }

    async showCheckpoint(position) {
      if (!this.checkpoint.open) return;
      const url = this.root.dataset.checkpointUrl + (position === "" ? "" : "?position=" + encodeURIComponent(position));
      const answer = await S.getJSON(url);
      const keys = Object.keys(answer.state).length;
      // Keys folded past the first level: a run of thousands of steps opens as one line per key.
      S.renderJson(document.getElementById("checkpoint-tree"), answer.state, { openDepth: 1 });
      document.getElementById("checkpoint-note").textContent = keys + " recorded step" + (keys === 1 ? "" : "s") +
        (position === "" ? ", latest" : " up to position " + position);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("run-page");
    if (root) {
      window.stepwiseRunPage = new RunPage(root);
      window.stepwiseRunPage.start();
    }
  });
})(window.Stepwise);
