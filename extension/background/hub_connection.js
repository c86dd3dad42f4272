// One WebSocket to the hub for one slot: hello/welcome, heartbeats, reconnect with backoff.
//
// The heartbeat is also the service worker's keep-alive: since Chrome 116 every WebSocket
// message sent or received resets the 30 s idle timer, and the hub requires a data message
// at least every heartbeat_interval (15 s, always < 20 s). A chrome.alarms wake-up (see
// service_worker.js) restarts everything if the worker was stopped anyway.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenHubConnection = api;
})(globalThis, function () {
  "use strict";

  const WELCOME_TIMEOUT_MS = 10000;
  const DEFAULT_HEARTBEAT_S = 15;

  /**
   * @param {object} opts
   *   url, makeHello(): hello message (called at each connect, so `holding` is current),
   *   onWelcome(welcome), onMessage(msg), onState(state, detail), WebSocketImpl, protocol,
   *   backoff, log
   */
  class HubConnection {
    constructor(opts) {
      this.opts = opts;
      this.ws = null;
      this.state = "idle"; // idle | connecting | open | closed | stopped
      this.failures = 0;
      this.lastSentAt = 0;
      this.seq = 0;
      this.heartbeatMs = DEFAULT_HEARTBEAT_S * 1000;
      this.retryTimer = null;
      this.beatTimer = null;
      this.welcomeTimer = null;
      this.stopped = false;
      this.lastClose = null;
    }

    get isOpen() {
      return this.state === "open" && this.ws && this.ws.readyState === 1;
    }

    connect() {
      if (this.stopped || this.state === "connecting" || this.state === "open") return;
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      const { url, WebSocketImpl, log } = this.opts;
      this._setState("connecting", url);
      let ws;
      try {
        ws = new WebSocketImpl(url);
      } catch (err) {
        this._setState("closed", `cannot open ${url}: ${err.message}`);
        this._scheduleReconnect();
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        try {
          this._sendNow(this.opts.makeHello());
        } catch (err) {
          log(`hello: ${err.message}`);
          ws.close(1000);
          return;
        }
        this.welcomeTimer = setTimeout(() => {
          if (this.ws === ws && this.state === "connecting") {
            log("no welcome from the hub within 10 s");
            ws.close(1000);
          }
        }, WELCOME_TIMEOUT_MS);
      };
      ws.onmessage = (event) => {
        if (this.ws !== ws) return;
        if (typeof event.data !== "string") return; // the hub sends no binary frames
        let msg;
        try {
          msg = this.opts.protocol.parse(event.data);
        } catch (err) {
          log(`ignored a frame from the hub: ${err.message}`);
          return;
        }
        if (msg.type === "welcome") {
          clearTimeout(this.welcomeTimer);
          this.failures = 0;
          const interval = Number(msg.heartbeat_interval) || DEFAULT_HEARTBEAT_S;
          // Half the interval, at most 15 s: well inside both the hub's idle timeout and the
          // service worker's 30 s idle limit, even when a timer fires late.
          this.heartbeatMs = Math.max(1000, Math.min(15000, (interval * 1000) / 2));
          this._setState("open", msg.session_id);
          this._startHeartbeat();
          this.opts.onWelcome(msg);
          return;
        }
        if (msg.type === "heartbeat") return;
        this.opts.onMessage(msg);
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        this._teardown();
        this.lastClose = { code: event.code, reason: event.reason };
        const detail = `closed ${event.code}${event.reason ? " " + event.reason : ""}`;
        // 4001 wrong token, 4009 no common version: retrying cannot help until the user acts.
        if (event.code === 4001 || event.code === 4009) {
          this.failures = Math.max(this.failures, 8);
          this._setState("closed", detail, event.code);
        } else {
          this._setState("closed", detail, event.code);
        }
        this._scheduleReconnect();
      };
      ws.onerror = () => {
        /* onclose follows with the code */
      };
    }

    send(message) {
      if (!this.isOpen) return false;
      this._sendNow(message);
      return true;
    }

    /** A result and its image frame, back to back: nothing may come between them. */
    sendImage(announcement, frameBytes) {
      if (!this.isOpen) return false;
      this.ws.send(JSON.stringify(announcement));
      this.ws.send(frameBytes);
      this.lastSentAt = Date.now();
      return true;
    }

    /** Close gracefully with a bye; no reconnect unless `reconnect`. */
    close(reason, detail, { reconnect = false } = {}) {
      const ws = this.ws;
      if (!reconnect) this.stopped = true;
      clearTimeout(this.retryTimer);
      if (ws && ws.readyState === 1) {
        try {
          ws.send(JSON.stringify(this.opts.protocol.bye(reason, detail)));
        } catch (_) {
          /* closing anyway */
        }
        ws.close(1000, reason);
      } else if (ws) {
        ws.close();
      }
      this._teardown();
      this.ws = null;
      this._setState(reconnect ? "closed" : "stopped", reason);
      if (reconnect) {
        this.failures = 0;
        this._scheduleReconnect(0);
      }
    }

    _sendNow(message) {
      this.ws.send(JSON.stringify(message));
      this.lastSentAt = Date.now();
    }

    _startHeartbeat() {
      clearInterval(this.beatTimer);
      // Checked every second against the wall clock; a service worker's timers are not
      // throttled like a background tab's, but a late tick must still not skip a beat.
      this.beatTimer = setInterval(() => {
        if (!this.isOpen) return;
        if (Date.now() - this.lastSentAt >= this.heartbeatMs) {
          this._sendNow(this.opts.protocol.heartbeat(++this.seq));
        }
      }, 1000);
    }

    _teardown() {
      clearInterval(this.beatTimer);
      clearTimeout(this.welcomeTimer);
      this.beatTimer = null;
      this.welcomeTimer = null;
    }

    _scheduleReconnect(forcedMs) {
      if (this.stopped) return;
      const delay = forcedMs != null ? forcedMs : this.opts.backoff.delayMs(this.failures++);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.state = "idle";
        this.connect();
      }, delay);
    }

    _setState(state, detail, code) {
      this.state = state;
      if (this.opts.onState) this.opts.onState(state, detail, code);
    }
  }

  return { HubConnection, WELCOME_TIMEOUT_MS };
});
