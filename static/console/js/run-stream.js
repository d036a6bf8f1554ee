/* Follow a run's events: the websocket first (resuming after the last seq), polling events.json when it is unavailable. */
"use strict";

window.Stepwise = window.Stepwise || {};

(function (S) {
  const POLL_MS = 1000;
  const MAX_SOCKET_FAILURES = 3;

  S.RunStream = class RunStream {
    constructor(options) {
      this.wsPath = options.wsPath;
      this.eventsUrl = options.eventsUrl;
      this.lastSeq = options.after || 0;
      this.onEvents = options.onEvents;
      this.onState = options.onState || function () {};
      this.failures = 0;
      this.stopped = false;
      this.catchingUp = null;
    }

    start() {
      if (!this.wsPath || !("WebSocket" in window)) return this.poll();
      this.connect();
    }

    stop() {
      this.stopped = true;
      if (this.socket) this.socket.close();
      clearTimeout(this.timer);
      this.onState("done");
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + this.wsPath + "?after=" + this.lastSeq);
      let opened = false;
      this.socket = socket;
      socket.onopen = () => { opened = true; this.failures = 0; this.onState("live"); };
      socket.onmessage = (message) => {
        const data = JSON.parse(message.data);
        this.receive(Array.isArray(data) ? data : [data]);
      };
      socket.onclose = () => {
        if (this.stopped) return;
        this.failures += opened ? 0 : 1;
        if (this.failures >= MAX_SOCKET_FAILURES || !opened) return this.poll();
        this.onState("connecting");
        this.timer = setTimeout(() => this.connect(), 500 * this.failures + 250);
      };
    }

    /* Deliver events in seq order, exactly once; a gap is filled from events.json first. */
    async receive(events, trusted) {
      // Live-only events (a step started) carry no seq: hand them over as they come.
      const transient = events.filter(function (e) { return e.transient; });
      if (transient.length) this.onEvents(transient);
      events = events.filter(function (e) { return !e.transient; });
      events.sort(function (a, b) { return a.seq - b.seq; });
      if (!trusted && events.length && events[0].seq > this.lastSeq + 1) await this.catchUp();
      const fresh = events.filter((e) => e.seq > this.lastSeq);
      if (!fresh.length) return;
      this.lastSeq = fresh[fresh.length - 1].seq;
      this.onEvents(fresh);
    }

    async catchUp() {
      if (!this.catchingUp) {
        this.catchingUp = S.getJSON(this.eventsUrl + "?after=" + this.lastSeq)
          .then((answer) => this.receive(answer.events, true))
          .finally(() => { this.catchingUp = null; });
      }
      return this.catchingUp;
    }

    async poll() {
      if (this.stopped) return;
      this.onState("polling");
      try {
        const answer = await S.getJSON(this.eventsUrl + "?after=" + this.lastSeq);
        await this.receive(answer.events, true);
      } catch (err) {
        this.onState("connecting");
      }
      if (!this.stopped) this.timer = setTimeout(() => this.poll(), POLL_MS);
    }
  };
})(window.Stepwise);
