"use strict";
// Unit tests of background/hub_connection.js with a fake WebSocket and node:test mock timers
// (setTimeout, setInterval and Date): run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const protocol = require(path.join(__dirname, "..", "lib", "protocol.js"));
const { HubConnection, WELCOME_TIMEOUT_MS } = require(path.join(__dirname, "..", "background", "hub_connection.js"));

const TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2";
const URL = "ws://127.0.0.1:8765/";
const T0 = 1_700_000_000_000;

class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closeCalls = [];
    this.binaryType = "blob";
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
    this.sent.push(data);
  }
  close(code, reason) {
    this.closeCalls.push({ code, reason });
    if (this.readyState < 2) this.readyState = 2;
  }
  // driven by the test
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  receive(data) {
    this.onmessage && this.onmessage({ data: typeof data === "string" || data instanceof ArrayBuffer ? data : JSON.stringify(data) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onerror && this.onerror({});
    this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
  }
  texts() {
    return this.sent.filter((d) => typeof d === "string").map((d) => JSON.parse(d));
  }
}
FakeWebSocket.instances = [];

function welcome(extra = {}) {
  return { v: 1, type: "welcome", version: 1, session_id: "sess-1", heartbeat_interval: 15, idle_timeout: 45, max_frame_bytes: 1 << 20, max_image_bytes: 1 << 25, ...extra };
}

function setup(t, extra = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: T0 });
  FakeWebSocket.instances = [];
  const ev = { states: [], welcomes: [], messages: [], logs: [], delays: [], hellos: 0 };
  let holding = [];
  const conn = new HubConnection({
    url: URL,
    WebSocketImpl: FakeWebSocket,
    protocol,
    backoff: {
      delayMs(n) {
        ev.delays.push(n);
        return 1000 * (n + 1);
      },
    },
    log: (text) => ev.logs.push(text),
    makeHello: () => {
      ev.hellos++;
      return protocol.hello({ token: TOKEN, workerId: "ext-x-1", accountId: "chrome-x", instanceId: "inst", holding });
    },
    onWelcome: (msg) => ev.welcomes.push(msg),
    onMessage: (msg) => ev.messages.push(msg),
    onState: (state, detail, code) => ev.states.push({ state, detail, code }),
    ...extra,
  });
  // Node 20's mock tick(ms) moves Date.now() to the end before running the timers due in
  // between, so a long tick would show every interval callback the same time: step instead.
  const tick = (ms) => {
    if (ms === 0) return t.mock.timers.tick(0);
    for (let left = ms; left > 0; left -= 100) t.mock.timers.tick(Math.min(100, left));
  };
  const last = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  const setHolding = (h) => (holding = h);
  return { conn, ev, tick, last, setHolding };
}

/** Connect, open, welcome: an open connection. */
function openConn(t, welcomeExtra, extra) {
  const s = setup(t, extra);
  s.conn.connect();
  s.last().open();
  s.last().receive(welcome(welcomeExtra));
  return s;
}

test("connect opens one WebSocket (arraybuffer) and sends hello from makeHello on open", (t) => {
  const { conn, ev, last } = setup(t);
  conn.connect();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(last().url, URL);
  assert.equal(last().binaryType, "arraybuffer");
  assert.equal(conn.state, "connecting");
  assert.equal(ev.hellos, 0, "hello is built at open, not before");
  conn.connect(); // a second connect while connecting is a no-op
  assert.equal(FakeWebSocket.instances.length, 1);
  last().open();
  assert.equal(ev.hellos, 1);
  const [hello] = last().texts();
  assert.equal(hello.type, "hello");
  assert.equal(hello.worker_id, "ext-x-1");
  assert.equal(conn.isOpen, false, "not open before welcome");
  assert.equal(conn.send(protocol.heartbeat(1)), false);
  assert.equal(last().sent.length, 1);
});

test("makeHello is called at each connect, so holding is current", (t) => {
  const { conn, ev, tick, last, setHolding } = setup(t);
  setHolding([{ task_id: "1", attempt: 1 }]);
  conn.connect();
  last().open();
  assert.deepEqual(last().texts()[0].holding, [{ task_id: "1", attempt: 1 }]);
  last().drop(1006);
  setHolding([{ task_id: "2", attempt: 3 }]);
  tick(1000);
  assert.equal(FakeWebSocket.instances.length, 2);
  last().open();
  assert.equal(ev.hellos, 2);
  assert.deepEqual(last().texts()[0].holding, [{ task_id: "2", attempt: 3 }]);
});

test("welcome: state open, onWelcome, failures reset, heartbeat = min(15 s, interval / 2)", (t) => {
  const { conn, ev } = openConn(t);
  assert.equal(conn.state, "open");
  assert.equal(conn.isOpen, true);
  assert.equal(ev.welcomes.length, 1);
  assert.equal(ev.welcomes[0].session_id, "sess-1");
  assert.deepEqual(ev.states.map((s) => s.state), ["connecting", "open"]);
  assert.equal(ev.states[1].detail, "sess-1");
  assert.equal(conn.heartbeatMs, 7500);
  assert.equal(conn.failures, 0);
  assert.equal(ev.messages.length, 0, "welcome is not passed to onMessage");

  for (const [interval, want] of [[19, 9500], [10, 5000], [40, 15000], [4, 2000], [undefined, 7500], ["x", 7500]]) {
    t.mock.timers.reset();
    const s = openConn(t, { heartbeat_interval: interval });
    assert.equal(s.conn.heartbeatMs, want, `interval ${interval}`);
    s.conn.close("shutdown");
  }
});

test("heartbeat: sent only when nothing was sent for heartbeatMs, seq increasing", (t) => {
  const { conn, last, tick } = openConn(t, { heartbeat_interval: 10 }); // 5 s
  const ws = last();
  assert.equal(ws.sent.length, 1); // hello at T0
  tick(4000);
  assert.equal(ws.sent.length, 1);
  tick(1000); // 5 s after the hello
  assert.equal(ws.sent.length, 2);
  const hb = ws.texts()[1];
  assert.equal(hb.type, "heartbeat");
  assert.equal(hb.seq, 1);
  assert.equal(hb.ts, (T0 + 5000) / 1000);

  tick(2000); // T0+7 s: something else goes out
  assert.equal(conn.send(protocol.progress({ task_id: "1", attempt: 1, stage: "typing" })), true);
  tick(4000); // T0+11 s: only 4 s since the progress
  assert.deepEqual(ws.texts().map((m) => m.type), ["hello", "heartbeat", "progress"]);
  tick(1000); // 5 s since the progress
  assert.deepEqual(ws.texts().map((m) => m.type), ["hello", "heartbeat", "progress", "heartbeat"]);
  assert.equal(ws.texts()[3].seq, 2);

  // a long quiet spell: one beat per interval, never a gap above the hub's limit
  tick(60000);
  const beats = ws.texts().filter((m) => m.type === "heartbeat");
  assert.equal(beats.length, 2 + 12);
  for (let i = 2; i < beats.length; i++) {
    const gap = beats[i].ts - beats[i - 1].ts;
    assert.ok(gap <= 6 && gap >= 5, `gap ${gap}`);
  }
});

test("heartbeat: the default 15 s interval beats every 7.5-8 s, well inside 20 s", (t) => {
  const { last, tick } = openConn(t);
  tick(60000);
  const beats = last().texts().filter((m) => m.type === "heartbeat");
  assert.ok(beats.length >= 7, `${beats.length} beats in 60 s`);
  let prev = T0 / 1000;
  for (const b of beats) {
    assert.ok(b.ts - prev <= 8, `gap ${b.ts - prev}`);
    prev = b.ts;
  }
});

test("sendImage also counts as traffic for the heartbeat", (t) => {
  const { conn, last, tick } = openConn(t, { heartbeat_interval: 10 });
  tick(4000);
  conn.sendImage(protocol.resultAnnouncement({ task_id: "1", attempt: 1, sha256: "a".repeat(64), size: 1, mime: "image/png" }), new Uint8Array([1]));
  tick(4000);
  assert.equal(last().texts().filter((m) => m.type === "heartbeat").length, 0);
  tick(1000);
  assert.equal(last().texts().filter((m) => m.type === "heartbeat").length, 1);
});

test("frames from the hub that fail protocol.parse are ignored (logged, not delivered)", (t) => {
  const { conn, ev, last } = openConn(t);
  const ws = last();
  const before = ev.logs.length;
  ws.receive("not json");
  ws.receive("[]");
  ws.receive({ v: 2, type: "assign" });
  ws.receive({ v: 1 });
  ws.receive({ v: 1, type: "assign", task_id: "x1", attempt: 1, prompt: "p", deadline: 1 });
  ws.receive({ v: 1, type: "assign", task_id: "1", attempt: 0, prompt: "p", deadline: 1 });
  assert.equal(ev.messages.length, 0);
  assert.equal(ev.logs.length - before, 6);
  assert.ok(ev.logs.slice(before).every((l) => l.startsWith("ignored a frame from the hub")));
  ws.receive(new ArrayBuffer(4)); // binary: the hub sends none
  ws.receive({ v: 1, type: "heartbeat", ts: 1 }); // answered by nothing
  assert.equal(ev.messages.length, 0);
  assert.equal(conn.state, "open");
  assert.equal(ws.closeCalls.length, 0);

  const assign = { v: 1, type: "assign", task_id: "7", attempt: 1, prompt: "a cat", deadline: 2e9 };
  ws.receive(assign);
  ws.receive({ v: 1, type: "ack", task_id: "7", attempt: 1 });
  assert.deepEqual(ev.messages.map((m) => m.type), ["assign", "ack"]);
  assert.deepEqual(ev.messages[0], assign);
});

test("reconnect after a close, with the backoff delay growing until a welcome resets it", (t) => {
  const { conn, ev, tick, last } = openConn(t);
  last().drop(1006);
  assert.equal(conn.state, "closed");
  assert.equal(conn.isOpen, false);
  assert.deepEqual(ev.states.at(-1), { state: "closed", detail: "closed 1006", code: 1006 });
  assert.deepEqual(conn.lastClose, { code: 1006, reason: "" });
  assert.deepEqual(ev.delays, [0]);
  tick(999);
  assert.equal(FakeWebSocket.instances.length, 1);
  tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(conn.state, "connecting");

  last().drop(1006); // fails again before any welcome
  assert.deepEqual(ev.delays, [0, 1]);
  tick(1999);
  assert.equal(FakeWebSocket.instances.length, 2);
  tick(1);
  assert.equal(FakeWebSocket.instances.length, 3);
  last().drop(1011, "hub error");
  assert.deepEqual(ev.delays, [0, 1, 2]);
  assert.equal(ev.states.at(-1).detail, "closed 1011 hub error");
  tick(3000);
  last().open();
  last().receive(welcome());
  assert.equal(conn.failures, 0);
  last().drop(1001);
  assert.deepEqual(ev.delays, [0, 1, 2, 0]);
  assert.equal(ev.welcomes.length, 2);
});

test("no heartbeat on a dropped socket; the old socket's late events are ignored", (t) => {
  const { conn, ev, tick, last } = openConn(t, { heartbeat_interval: 2 });
  const old = last();
  old.drop(1006);
  const sentBefore = old.sent.length;
  tick(1000); // reconnects
  const fresh = last();
  assert.notEqual(fresh, old);
  tick(30000);
  assert.equal(old.sent.length, sentBefore);
  old.readyState = 1;
  old.onmessage({ data: JSON.stringify({ v: 1, type: "assign", task_id: "1", attempt: 1, prompt: "p", deadline: 1 }) });
  old.onclose({ code: 1006, reason: "" });
  assert.equal(ev.messages.length, 0);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(conn.state, "connecting");
});

for (const code of [4001, 4009]) {
  test(`close code ${code} pushes the backoff to at least 8 failures`, (t) => {
    const { conn, ev, tick, last } = setup(t);
    conn.connect();
    last().open();
    last().drop(code, code === 4001 ? "unauthorized" : "bad version");
    assert.deepEqual(ev.delays, [8]);
    assert.equal(ev.states.at(-1).code, code);
    assert.equal(ev.states.at(-1).state, "closed");
    tick(8999);
    assert.equal(FakeWebSocket.instances.length, 1);
    tick(1);
    assert.equal(FakeWebSocket.instances.length, 2);
    last().open();
    last().drop(code);
    assert.deepEqual(ev.delays, [8, 9]);
  });
}

test("no welcome within 10 s: the socket is closed and a reconnect follows its close", (t) => {
  const { conn, ev, tick, last } = setup(t);
  conn.connect();
  const ws = last();
  ws.open();
  tick(WELCOME_TIMEOUT_MS - 1);
  assert.equal(ws.closeCalls.length, 0);
  tick(1);
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: undefined }]);
  assert.ok(ev.logs.some((l) => /no welcome/.test(l)));
  ws.drop(1000);
  tick(1000);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("a welcome in time cancels the welcome timeout", (t) => {
  const { last, tick } = openConn(t);
  tick(WELCOME_TIMEOUT_MS * 3);
  assert.equal(last().closeCalls.length, 0);
});

test("sendImage: the JSON announcement then the binary frame, back to back", (t) => {
  const { conn, last } = openConn(t);
  const ws = last();
  const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);
  const ann = protocol.resultAnnouncement({ task_id: "42", attempt: 2, sha256: "b".repeat(64), size: bytes.length, mime: "image/png" });
  const frame = protocol.imageFrame("42", 2, bytes);
  assert.equal(conn.sendImage(ann, frame), true);
  assert.equal(ws.sent.length, 3);
  assert.deepEqual(JSON.parse(ws.sent[1]), ann);
  assert.equal(ws.sent[2], frame);
  assert.ok(ws.sent[2] instanceof Uint8Array);
});

test("sendImage and send refuse when the connection is not open", (t) => {
  const { conn, last } = setup(t);
  assert.equal(conn.sendImage({}, new Uint8Array(1)), false);
  conn.connect();
  last().open();
  assert.equal(conn.sendImage({}, new Uint8Array(1)), false);
  assert.equal(conn.send({ v: 1, type: "status" }), false);
  assert.equal(last().sent.length, 1); // the hello only
  last().receive(welcome());
  last().readyState = 2; // closing, onclose not yet delivered
  assert.equal(conn.isOpen, false);
  assert.equal(conn.send({ v: 1, type: "status" }), false);
});

test("close(reason): bye, close 1000, state stopped, no reconnect, connect() is a no-op", (t) => {
  const { conn, ev, tick, last } = openConn(t);
  const ws = last();
  conn.close("user", "disconnect button");
  assert.deepEqual(ws.texts().at(-1), { v: 1, type: "bye", reason: "user", detail: "disconnect button" });
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: "user" }]);
  assert.equal(conn.state, "stopped");
  assert.equal(ev.states.at(-1).state, "stopped");
  ws.drop(1000, "user"); // the close handshake completes
  tick(120000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(ws.texts().filter((m) => m.type === "heartbeat").length, 0);
  conn.connect();
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("close while a reconnect is pending cancels it", (t) => {
  const { conn, tick, last } = openConn(t);
  last().drop(1006);
  conn.close("shutdown");
  tick(120000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(conn.state, "stopped");
});

test("close before the socket opened: no bye, the socket is closed", (t) => {
  const { conn, last } = setup(t);
  conn.connect();
  const ws = last();
  conn.close("shutdown");
  assert.equal(ws.sent.length, 0);
  assert.equal(ws.closeCalls.length, 1);
  assert.equal(conn.state, "stopped");
});

test("close(..., {reconnect: true}): bye, then a fresh connection with failures reset", (t) => {
  const { conn, ev, tick, last } = openConn(t);
  const ws = last();
  conn.failures = 5;
  conn.close("restart", "settings changed", { reconnect: true });
  assert.deepEqual(ws.texts().at(-1), { v: 1, type: "bye", reason: "restart", detail: "settings changed" });
  assert.deepEqual(ws.closeCalls, [{ code: 1000, reason: "restart" }]);
  assert.equal(conn.state, "closed");
  ws.drop(1000, "restart"); // ignored: the connection let go of this socket
  assert.deepEqual(ev.delays, [], "the reconnect is immediate, not a backoff delay");
  tick(0);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(conn.state, "connecting");
  last().open();
  assert.equal(last().texts()[0].type, "hello");
  last().receive(welcome({ session_id: "sess-2" }));
  assert.equal(conn.state, "open");
  assert.equal(ev.welcomes.length, 2);
});

test("a WebSocket constructor that throws: closed, then a retry with backoff", (t) => {
  let fail = true;
  class Throwing extends FakeWebSocket {
    constructor(url) {
      if (fail) throw new SyntaxError("invalid url");
      super(url);
    }
  }
  const { conn, ev, tick } = setup(t, { WebSocketImpl: Throwing });
  conn.connect();
  assert.equal(conn.state, "closed");
  assert.match(ev.states.at(-1).detail, /cannot open .*invalid url/);
  assert.deepEqual(ev.delays, [0]);
  fail = false;
  tick(1000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(conn.state, "connecting");
});

test("makeHello that throws: logged and the socket closed", (t) => {
  const { conn, ev, last } = setup(t, {
    makeHello: () => {
      throw new Error("no token");
    },
  });
  conn.connect();
  last().open();
  assert.equal(last().sent.length, 0);
  assert.deepEqual(last().closeCalls, [{ code: 1000, reason: undefined }]);
  assert.ok(ev.logs.some((l) => /hello: no token/.test(l)));
});
