/* The run page's streams card: chunks sent with ctx.stream / ctx.stream_append appear as the run sends them. */
"use strict";

(function () {
  const card = document.getElementById("streams-card");
  const list = document.getElementById("streams-list");
  if (!card || !list) return;
  const streams = {};
  const hidden = list.dataset.hidden !== undefined;
  const attempts = {};
  JSON.parse(document.getElementById("streams-data").textContent).forEach(function (s) {
    streams[s.name] = { chunks: s.chunks, completed: s.completed };
  });

  function text(chunk) {
    return typeof chunk === "string" ? chunk : JSON.stringify(chunk) + "\n";
  }

  function render(name) {
    const stream = streams[name];
    let box = list.querySelector('[data-stream="' + CSS.escape(name) + '"]');
    if (!box) {
      box = document.createElement("div");
      box.className = "stream";
      box.dataset.stream = name;
      const head = document.createElement("h3");
      head.className = "stream-name";
      const code = document.createElement("code");
      code.textContent = name;
      const count = document.createElement("span");
      count.className = "muted small";
      count.dataset.streamCount = "";
      head.append(code, " ", count);
      const pre = document.createElement("pre");
      pre.className = "stream-text";
      box.append(head, pre);
      list.append(box);
    }
    const n = stream.chunks.length;
    box.querySelector("[data-stream-count]").textContent =
      n + " chunk" + (n === 1 ? "" : "s") + (stream.completed ? " · complete" : "");
    const pre = box.querySelector(".stream-text");
    // Hidden from viewers in this environment: every chunk is the same placeholder, shown once.
    const shown = hidden ? stream.chunks.slice(0, 1) : stream.chunks;
    pre.textContent = shown.map(function (c) { return text(c.chunk); }).join("");
    pre.scrollTop = pre.scrollHeight;
    card.hidden = false;
  }

  document.addEventListener("stepwise:run-event", function (e) {
    const event = e.detail;
    const d = event.data || {};
    if (event.type === "run.status" && window.Stepwise.isFinal(d.to)) {
      card.querySelector(".head-note").textContent = "final";
      return;
    }
    if (event.type !== "stream.chunk" && event.type !== "stream.completed") return;
    const stream = streams[d.stream] || (streams[d.stream] = { chunks: [], completed: false });
    if (event.type === "stream.completed") {
      stream.completed = true;
    } else {
      // A newer attempt sends its call's stream again from the start: its chunks replace the old ones.
      if (attempts[d.key] !== undefined && attempts[d.key] < d.attempt) {
        stream.chunks = stream.chunks.filter(function (c) { return c.key !== d.key; });
      }
      attempts[d.key] = d.attempt;
      stream.chunks.push({ key: d.key, chunk: d.chunk });
    }
    render(d.stream);
  });
})();
