/*
 * Stepwise realtime client: follow runs from any web page. No dependencies, no build step.
 *
 *   const sub = Stepwise.subscribeToRun({
 *     baseUrl: "https://stepwise.example.com",   // where the Stepwise API is served
 *     runId: "run_...",
 *     token: "pt_...",                           // a public token from auth.create_public_token(...)
 *     onUpdate: function (run) { ... },          // run.status, run.metadata, run.output, run.streams
 *     onChunk: function (stream, chunk, run) { ... },
 *     onEnd: function (run) { ... },
 *     onError: function (error) { ... },         // error.status: 401 bad or expired token, 403 out of scope
 *   });
 *   sub.stop();
 *
 *   Stepwise.subscribeToRunsWithTag({baseUrl, tag: "user-42", token, onUpdate: function (run) { ... }});
 *   Stepwise.subscribeToRuns({baseUrl, runIds: [...], token, onUpdate: function (run) { ... }});  // a batch
 *
 * The token goes in the Authorization header (never in the URL). A dropped connection is opened
 * again after the last event received (Last-Event-ID): every event arrives once and in order.
 */
(function (root) {
  "use strict";

  var RETRY_MS = 1000;
  var MAX_RETRY_MS = 15000;

  function StreamError(status, detail) {
    this.name = "StreamError";
    this.status = status;
    this.message = detail;
  }
  StreamError.prototype = Object.create(Error.prototype);

  /* Read one server-sent event stream with fetch (which, unlike EventSource, can send a header). */
  function readStream(url, token, lastEventId, signal, onEvent) {
    var headers = { Authorization: "Bearer " + token, Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    return fetch(url, { headers: headers, signal: signal, cache: "no-store", credentials: "omit" })
      .then(function (response) {
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            throw new StreamError(response.status, body.detail || response.statusText);
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (part) {
            if (part.done) return;
            buffer += decoder.decode(part.value, { stream: true });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            blocks.forEach(function (block) {
              var event = { type: "message", id: null, data: [] };
              block.split("\n").forEach(function (line) {
                if (line.charAt(0) === ":") return; // a heartbeat
                var colon = line.indexOf(":");
                var field = colon < 0 ? line : line.slice(0, colon);
                var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (field === "event") event.type = value;
                else if (field === "id") event.id = value;
                else if (field === "data") event.data.push(value);
              });
              if (event.data.length) onEvent(event.type, event.id, JSON.parse(event.data.join("\n")));
            });
            return pump();
          });
        }
        return pump();
      });
  }

  /* Keep a stream open until it ends, reopening it after the last event id on network errors. */
  function follow(url, options, onEvent) {
    var controller = new AbortController();
    var state = { lastEventId: options.after ? String(options.after) : "", ended: false, delay: RETRY_MS };
    function open() {
      if (state.ended) return;
      readStream(url, options.token, state.lastEventId, controller.signal, function (type, id, data) {
        state.delay = RETRY_MS;
        if (id) state.lastEventId = id;
        if (type === "end") state.ended = true;
        onEvent(type, data);
      }).then(function () {
        if (!state.ended) setTimeout(open, state.delay);
      }, function (error) {
        if (controller.signal.aborted) return;
        if (error instanceof StreamError && error.status < 500) {
          state.ended = true; // a refused token will not get better by retrying
          if (options.onError) options.onError(error);
          return;
        }
        if (options.onError) options.onError(error);
        state.delay = Math.min(state.delay * 2, MAX_RETRY_MS);
        setTimeout(open, state.delay);
      });
    }
    open();
    return { stop: function () { state.ended = true; controller.abort(); } };
  }

  function base(options) {
    return (options.baseUrl || "").replace(/\/+$/, "");
  }

  /* Apply one stream chunk: a chunk from a newer attempt of the same call starts that call's chunks over. */
  function addChunk(run, data) {
    var stream = run.streams[data.stream] || (run.streams[data.stream] = { chunks: [], completed: false });
    var attempts = run._attempts;
    if (attempts[data.key] !== undefined && attempts[data.key] < data.attempt) {
      stream.chunks = stream.chunks.filter(function (c) { return c.key !== data.key; });
    }
    attempts[data.key] = data.attempt;
    stream.chunks.push({ key: data.key, chunk: data.chunk });
    return stream;
  }

  function subscribeToRun(options) {
    var run = { id: options.runId, status: null, metadata: {}, output: null, streams: {}, _attempts: {} };
    var notify = options.onUpdate || function () {};
    var url = base(options) + "/api/runs/" + encodeURIComponent(options.runId) + "/events/stream";
    return follow(url, options, function (type, data) {
      if (type === "run") {
        Object.keys(data).forEach(function (k) { run[k] = data[k]; });
        return notify(run);
      }
      if (type === "end") {
        if (data.status) run.status = data.status;
        if (options.onEnd) options.onEnd(run);
        return;
      }
      var body = data.data || {};
      if (type === "run.status") {
        run.status = body.to;
        if (body.output !== undefined) run.output = body.output;
        if (body.error) run.error = body.error;
      } else if (type === "metadata.updated") {
        run.metadata = body.metadata || {};
      } else if (type === "stream.chunk") {
        addChunk(run, body);
        if (options.onChunk) options.onChunk(body.stream, body.chunk, run);
      } else if (type === "stream.completed") {
        (run.streams[body.stream] || (run.streams[body.stream] = { chunks: [] })).completed = true;
      } else {
        return;
      }
      notify(run);
    });
  }

  function subscribeToRunsWithTag(options) {
    var url = base(options) + "/api/runs/stream?tag=" + encodeURIComponent(options.tag);
    return follow(url, options, function (type, data) {
      if (type === "run" && options.onUpdate) options.onUpdate(data);
    });
  }

  /* A batch: the runs named by id, each sent again whenever it changes. */
  function subscribeToRuns(options) {
    var url = base(options) + "/api/runs/stream?runs=" + options.runIds.map(encodeURIComponent).join(",");
    return follow(url, options, function (type, data) {
      if (type === "run" && options.onUpdate) options.onUpdate(data);
    });
  }

  root.Stepwise = root.Stepwise || {};
  root.Stepwise.subscribeToRuns = subscribeToRuns;
  root.Stepwise.subscribeToRun = subscribeToRun;
  root.Stepwise.subscribeToRunsWithTag = subscribeToRunsWithTag;
  root.Stepwise.StreamError = StreamError;
})(typeof window !== "undefined" ? window : this);
