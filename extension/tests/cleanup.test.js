"use strict";
// The memory governor's `cleanup` in background/orchestrator.js: one Slot with a fake chrome
// (tabs whose pages answer ng.ping/ng.run and come back from a reload as new page loads), a
// fake hub connection and the real state store over in-memory storage. Run with
// `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const protocol = require(path.join(__dirname, "..", "lib", "protocol.js"));
const inflight = require(path.join(__dirname, "..", "lib", "inflight.js"));
const S = require(path.join(__dirname, "..", "background", "state_store.js"));
const O = require(path.join(__dirname, "..", "background", "orchestrator.js"));

const TAB = 41;
const MB = 1024 * 1024;
const CONV = "https://chatgpt.com/c/6741d0b5-aaaa";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function memoryArea() {
  const data = new Map();
  const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
  return {
    async get(key) {
      if (key === null) return Object.fromEntries([...data].map(([k, v]) => [k, clone(v)]));
      return data.has(key) ? { [key]: clone(data.get(key)) } : {};
    },
    async set(obj) {
      for (const [k, v] of Object.entries(obj)) data.set(k, clone(v));
    },
    async remove(key) {
      data.delete(key);
    },
  };
}

let pageSeq = 0;

/** One page load in the fake tab. */
class FakePage {
  constructor(url, { memory = 30 * MB, health = "ok" } = {}) {
    this.id = `page-${++pageSeq}`;
    this.url = url;
    this.memory = memory;
    this.health = health;
    this.task = null; // what the content script works on
    this.runs = [];
  }
  answer(msg) {
    if (msg.type === "ng.ping") {
      return { ok: true, url: this.url, page_id: this.id, health: this.health, busy: !!this.task, task: this.task, memory: this.memory };
    }
    if (msg.type === "ng.run") {
      if (this.task) return { accepted: false, reason: "busy" };
      this.runs.push(msg.task);
      this.task = { task_id: msg.task.task_id, attempt: msg.task.attempt, stage: "starting" };
      return { accepted: true };
    }
    if (msg.type === "ng.cancel") return { ok: true };
    return undefined;
  }
}

/**
 * The harness: `h.slot` is slot 1 on tab TAB; `h.sent` what it sent to the hub; `h.loads`
 * every reload/navigation. A new page load reports `loading` after `loadMs`, then `ok` after
 * `okMs` more (or never, with okMs null), like the real content script.
 */
function setup(t, opts = {}) {
  const h = {
    sent: [],
    loads: [],
    events: [], // loads and messages to the hub, in order
    logs: [],
    loadMs: opts.loadMs ?? 20,
    okMs: opts.okMs === undefined ? 40 : opts.okMs,
    nextMemory: opts.nextMemory ?? 40 * MB,
    page: new FakePage("https://chatgpt.com/", { memory: opts.memory ?? 300 * MB }),
    pages: [],
  };
  h.pages.push(h.page);
  const newLoad = (url) => {
    const old = h.page;
    h.page = null; // the old page is gone at once: pings fail until the new one runs
    h.loads.push(url);
    h.events.push(`load ${url}`);
    // A late report of the page that is going away (it was sent just before the unload).
    if (opts.staleReady && old) orch.onContentMessage({ type: "ng.ready", url: old.url, health: "ok", page_id: old.id }, { tab: { id: TAB } });
    const page = new FakePage(url, { memory: h.nextMemory, health: "loading" });
    const timers = [];
    timers.push(
      setTimeout(() => {
        h.page = page;
        h.pages.push(page);
        orch.onContentMessage({ type: "ng.ready", url, health: "loading", page_id: page.id }, { tab: { id: TAB } });
        if (h.okMs != null) {
          timers.push(
            setTimeout(() => {
              page.health = opts.finalHealth || "ok";
              orch.onContentMessage({ type: "ng.ready", url, health: page.health, page_id: page.id }, { tab: { id: TAB } });
            }, h.okMs)
          );
        }
      }, h.loadMs)
    );
    t.after(() => timers.forEach(clearTimeout));
  };
  const chrome = {
    tabs: {
      async get(id) {
        if (id !== TAB) throw new Error(`No tab with id: ${id}`);
        return { id, status: h.page ? "complete" : "loading", discarded: false };
      },
      async sendMessage(id, msg) {
        if (id !== TAB || !h.page) throw new Error("Could not establish connection. Receiving end does not exist.");
        return h.page.answer(msg);
      },
      async reload(id) {
        if (opts.reloadFails) throw new Error("No tab with id");
        newLoad(h.page ? h.page.url : "https://chatgpt.com/");
      },
      async update(id, props) {
        if (props.url) newLoad(props.url);
        return { id };
      },
    },
  };
  const store = S.createStateStore({ session: memoryArea(), local: memoryArea(), idb: S.memoryBackend() });
  const orch = new O.Orchestrator({
    chrome,
    store,
    lib: { protocol, inflight },
    settings: { hubUrl: "ws://127.0.0.1:8765/", token: "t", tabs: 1, chatMode: opts.chatMode || "per_task" },
    installId: "x",
    instanceId: "i-1",
    hubConfig: null,
    log: (text) => h.logs.push(text),
    timings: { cleanupReadyMs: opts.readyMs ?? 1500 },
  });
  orch.publish = () => {};
  const record = { ...inflight.emptySlot(1, "ext-x-1"), tabId: TAB, ...(opts.record || {}) };
  const slot = new O.Slot(orch, 1, record);
  slot.health = "ok";
  slot.memoryBytes = h.page.memory;
  slot.pageId = h.page.id;
  slot.conn = { isOpen: true, ws: { n: 1 }, send: (m) => (h.sent.push(m), h.events.push(`sent ${m.type}`), true), sendImage: () => true };
  orch.slots.set(1, slot);
  orch.tabToSlot.set(TAB, slot);
  h.orch = orch;
  h.store = store;
  h.slot = slot;
  h.answers = () => h.sent.filter((m) => m.type === "cleanup_done");
  h.statuses = () => h.sent.filter((m) => m.type === "status");
  return h;
}

const cleanup = (action, id = "mem-1") => ({ v: 1, type: "cleanup", request_id: id, action, reason: "test" });

function assign(taskId, attempt = 1, extra = {}) {
  return { v: 1, type: "assign", task_id: String(taskId), attempt, prompt: `prompt ${taskId}`, ...extra };
}

// ---- reload_tab ----------------------------------------------------------------------------

test("reload_tab in an idle tab: reloads, answers once the fresh page is healthy, then a fresh ok status", async (t) => {
  const h = setup(t);
  const oldPage = h.page;
  await h.slot.onHubMessage(cleanup("reload_tab"));
  assert.deepEqual(h.loads, ["https://chatgpt.com/"], "reloaded exactly once");
  const answers = h.answers();
  assert.equal(answers.length, 1);
  assert.deepEqual(answers[0], { v: 1, type: "cleanup_done", re: "mem-1", action: "reload_tab", ok: true, heap_before: 300 * MB, heap_after: 40 * MB });
  // The answer waited for the fresh page (a new page id) to report ok, not for its first
  // "loading" report.
  assert.notEqual(h.slot.pageId, oldPage.id);
  assert.equal(h.page.health, "ok");
  const i = h.sent.indexOf(answers[0]);
  const before = h.sent.slice(0, i).filter((m) => m.type === "status");
  assert.ok(before.some((m) => m.tab_health === "loading"), "the hub was told the tab is loading");
  const after = h.sent.slice(i + 1).filter((m) => m.type === "status");
  assert.ok(after.length >= 1 && after[0].tab_health === "ok" && after[0].memory_bytes === 40 * MB, JSON.stringify(after));
  assert.equal(h.slot.cleaning, null);
});

test("reload_tab: a late report from the page going away does not count as the fresh page", async (t) => {
  const h = setup(t, { staleReady: true, loadMs: 50 });
  const oldPage = h.page;
  await h.slot.onHubMessage(cleanup("reload_tab"));
  const [answer] = h.answers();
  assert.equal(answer.ok, true);
  assert.equal(answer.heap_after, 40 * MB, "measured in the fresh page");
  assert.notEqual(h.slot.pageId, oldPage.id);
  assert.ok(h.events.indexOf("sent cleanup_done") > h.events.indexOf("load https://chatgpt.com/"));
  assert.equal(h.pages.at(-1).health, "ok");
});

test("reload_tab refused while an attempt is in hand: ok false, nothing reloaded, the attempt goes on", async (t) => {
  const h = setup(t);
  await h.slot.onHubMessage(assign(17, 2));
  await sleep(150); // new chat navigation, then ng.run to the page
  assert.equal(h.page.runs.length, 1);
  const loadsBefore = h.loads.length;
  await h.slot.onHubMessage(cleanup("reload_tab", "mem-2"));
  const [answer] = h.answers();
  assert.equal(h.answers().length, 1);
  assert.equal(answer.ok, false);
  assert.equal(answer.re, "mem-2");
  assert.match(answer.detail, /busy with 17\/2/);
  assert.equal(h.loads.length, loadsBefore, "no reload");
  assert.equal(h.slot.record.task.task_id, "17");
  assert.equal(h.page.task.task_id, "17", "the page still works on it");
  // The attempt still completes and is sent.
  const image = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).toString("base64");
  const reply = await h.slot.onPageDone({ type: "ng.done", task_id: "17", attempt: 2, outcome: "image", image: { base64: image, mime: "image/png", width: 1, height: 1, image_id: "file_1" } });
  assert.deepEqual(reply, { stored: true });
  assert.equal(h.slot.record.unacked.length, 1);
});

test("reload_tab refused when the page works on a task the record does not know", async (t) => {
  const h = setup(t);
  h.page.task = { task_id: "9", attempt: 1, stage: "generating" };
  await h.slot.onHubMessage(cleanup("reload_tab"));
  const [answer] = h.answers();
  assert.equal(answer.ok, false);
  assert.match(answer.detail, /busy: the page works on 9\/1/);
  assert.deepEqual(h.loads, []);
  assert.equal(h.slot.cleaning, null);
});

test("a second cleanup while one runs is refused; each request gets exactly one answer", async (t) => {
  const h = setup(t);
  const first = h.slot.onHubMessage(cleanup("reload_tab", "mem-1"));
  const second = h.slot.onHubMessage(cleanup("new_chat", "mem-2"));
  await Promise.all([first, second]);
  const answers = h.answers();
  assert.deepEqual(answers.map((a) => [a.re, a.ok]).sort(), [["mem-1", true], ["mem-2", false]]);
  assert.match(answers.find((a) => a.re === "mem-2").detail, /another cleanup/);
  assert.equal(h.loads.length, 1);
});

test("an assignment arriving during the reload waits until the fresh page is healthy", async (t) => {
  const h = setup(t, { loadMs: 60, okMs: 60 });
  const reload = h.slot.onHubMessage(cleanup("reload_tab"));
  await sleep(20); // the reload is under way: the old page is gone
  assert.equal(h.page, null);
  const assigned = h.slot.onHubMessage(assign(21));
  await reload;
  assert.equal(h.answers()[0].ok, true);
  await assigned;
  await sleep(200); // then the task is handed over (a new chat for per_task mode)
  const runs = h.pages.flatMap((p) => p.runs.map((r) => ({ page: p.id, task: r.task_id })));
  assert.equal(runs.length, 1, JSON.stringify(runs));
  assert.equal(runs[0].task, "21");
  // Its new-chat navigation came after the reload was answered, not in the middle of it.
  const answered = h.events.indexOf("sent cleanup_done");
  assert.deepEqual(h.events.filter((e) => e.startsWith("load")), ["load https://chatgpt.com/", `load ${O.CHATGPT_URL}`]);
  assert.ok(h.events.lastIndexOf(`load ${O.CHATGPT_URL}`) > answered, h.events.join("\n"));
  // It ran on a page loaded after the reload, never on the one that was going away.
  assert.notEqual(runs[0].page, h.pages[0].id);
  assert.ok(!h.logs.some((l) => /running the task/.test(l)), h.logs.join("\n"));
});

test("reload_tab: a page that does not come back healthy in time is answered ok false, once", async (t) => {
  const h = setup(t, { okMs: null, readyMs: 300 });
  const started = Date.now();
  await h.slot.onHubMessage(cleanup("reload_tab"));
  const answers = h.answers();
  assert.equal(answers.length, 1);
  assert.equal(answers[0].ok, false);
  assert.equal(answers[0].heap_before, 300 * MB);
  assert.match(answers[0].detail, /did not come back healthy within 0.3 s \(loading\)/);
  assert.ok(Date.now() - started >= 290);
  assert.equal(h.slot.cleaning, null, "work is taken again afterwards");
});

test("reload_tab: a page that comes back logged out is answered at once, ok false", async (t) => {
  const h = setup(t, { finalHealth: "logged_out", readyMs: 5000 });
  const started = Date.now();
  await h.slot.onHubMessage(cleanup("reload_tab"));
  const [answer] = h.answers();
  assert.equal(answer.ok, false);
  assert.equal(answer.detail, "the page came back logged out");
  assert.ok(Date.now() - started < 2000, "no wait for the deadline");
});

test("reload_tab: a reload that fails at once is answered ok false", async (t) => {
  const h = setup(t, { reloadFails: true });
  await h.slot.onHubMessage(cleanup("reload_tab"));
  const [answer] = h.answers();
  assert.equal(answer.ok, false);
  assert.match(answer.detail, /reloading the tab failed/);
});

test("no answer on a connection that is not the one the request came on", async (t) => {
  const h = setup(t, { loadMs: 40 });
  const reload = h.slot.onHubMessage(cleanup("reload_tab"));
  await sleep(10);
  h.slot.conn.ws = { n: 2 }; // reconnected meanwhile: the hub answered the request itself
  await reload;
  assert.equal(h.answers().length, 0);
  assert.ok(h.logs.some((l) => /the connection it came on is gone/.test(l)));
});

test("an unknown cleanup action is answered ok false", async (t) => {
  const h = setup(t);
  await h.slot.onHubMessage(cleanup("compact_heap"));
  const [answer] = h.answers();
  assert.deepEqual(answer, { v: 1, type: "cleanup_done", re: "mem-1", action: "compact_heap", ok: false, detail: "unknown cleanup action compact_heap" });
  assert.deepEqual(h.loads, []);
});

test("the hub refusing a cleanup_done (error about `re`) does not take an outcome's place", async (t) => {
  const h = setup(t);
  h.slot.awaiting = ["17#1"];
  await h.slot.onHubError({ type: "error", code: "bad_field", message: "no reload_tab cleanup 'mem-1' is waiting for an answer", field: "re" });
  assert.deepEqual(h.slot.awaiting, ["17#1"]);
});

// ---- new_chat and conversation turns --------------------------------------------------------

test("conversation turns: counted per prompt sent, reported in status, 0 after new_chat", async (t) => {
  const h = setup(t, { chatMode: "per_sequence" });
  const meta = { job_id: "j", chapter: 1, page: 2 };
  // Three attempts of one sequence: one conversation.
  for (let n = 1; n <= 3; n++) {
    await h.slot.onHubMessage(assign(n, 1, { metadata: meta }));
    await sleep(150);
    assert.equal(h.page.task && h.page.task.task_id, String(n));
    await h.slot.onPageProgress({ type: "ng.progress", task_id: String(n), attempt: 1, stage: "typing" });
    await h.slot.onPageProgress({ type: "ng.progress", task_id: String(n), attempt: 1, stage: "submitted", conversation_url: CONV });
    await h.slot.onPageProgress({ type: "ng.progress", task_id: String(n), attempt: 1, stage: "submitted", conversation_url: CONV }); // repeated
    h.page.task = null;
    await h.slot.onPageDone({ type: "ng.done", task_id: String(n), attempt: 1, outcome: "error", kind: "refused", message: "no" });
    await h.slot.onAck({ type: "ack", task_id: String(n), attempt: 1 });
  }
  assert.deepEqual(h.slot.record.turns, { count: 3, url: CONV });
  h.slot.sendStatus(true);
  assert.equal(h.statuses().at(-1).conversation_turns, 3);
  assert.equal(h.slot.snapshot().conversation_turns, 3);

  h.page.url = CONV;
  await h.slot.onHubMessage(cleanup("new_chat", "mem-9"));
  const [answer] = h.answers();
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.equal(answer.action, "new_chat");
  assert.equal(answer.heap_after, 40 * MB);
  assert.equal(h.loads.at(-1), O.CHATGPT_URL, "navigated to a fresh chat");
  assert.deepEqual(h.slot.record.turns, { count: 0, url: null });
  assert.equal(h.slot.record.sequence, null, "the sequence continues in the new chat");
  const after = h.statuses().at(-1);
  assert.equal(after.conversation_turns, 0);
  assert.equal(after.tab_health, "ok");
  // The turn counter is durable.
  assert.deepEqual((await h.store.loadSlot(1)).turns, { count: 0, url: null });
});

test("per_task: every attempt starts a new chat, so the count is 1 after each send", async (t) => {
  const h = setup(t);
  for (const n of [1, 2]) {
    await h.slot.onHubMessage(assign(n));
    await sleep(150);
    assert.deepEqual(h.slot.record.turns, { count: 0, url: null }, "reset by the new chat");
    await h.slot.onPageProgress({ type: "ng.progress", task_id: String(n), attempt: 1, stage: "submitted" });
    await h.slot.onPageProgress({ type: "ng.progress", task_id: String(n), attempt: 1, stage: "generating", conversation_url: `${CONV}-${n}` });
    assert.deepEqual(h.slot.record.turns, { count: 1, url: `${CONV}-${n}` });
    h.page.task = null;
    await h.slot.onPageDone({ type: "ng.done", task_id: String(n), attempt: 1, outcome: "error", kind: "refused", message: "no" });
    await h.slot.onAck({ type: "ack", task_id: String(n), attempt: 1 });
  }
});

test("new_chat refused while busy keeps the conversation and its count", async (t) => {
  const h = setup(t, { record: { turns: { count: 4, url: CONV }, task: { ...inflight.taskFromAssign(assign(5), 0), stage: "generating" } } });
  await h.slot.onHubMessage(cleanup("new_chat"));
  const [answer] = h.answers();
  assert.equal(answer.ok, false);
  assert.match(answer.detail, /busy with 5\/1/);
  assert.deepEqual(h.loads, []);
  assert.deepEqual(h.slot.record.turns, { count: 4, url: CONV });
});

// ---- drop_images ----------------------------------------------------------------------------

test("drop_images forgets acknowledged image bytes only, and says how many bytes", async (t) => {
  const h = setup(t, { record: { unacked: [{ task_id: "3", attempt: 1, kind: "image", key: "3#1" }] } });
  await h.store.saveSlot(h.slot.record);
  await h.store.putImage("3#1", { bytes: new Uint8Array(5000).buffer, meta: { size: 5000 } }); // not acked
  await h.store.putImage("2#1", { bytes: new Uint8Array(7000).buffer, meta: { size: 7000 } }); // acked, left over
  await h.store.putImage("1#2", { bytes: new Uint8Array(1000).buffer, meta: { size: 1000 } }); // acked, left over
  h.slot.storingKeys.add("4#1"); // being written right now
  await h.store.putImage("4#1", { bytes: new Uint8Array(9000).buffer, meta: { size: 9000 } });
  // Another slot's stored record (not running in this generation) keeps its images too.
  await h.store.saveSlot({ ...inflight.emptySlot(2, "ext-x-2"), unacked: [{ task_id: "8", attempt: 1, kind: "image", key: "8#1" }] });
  await h.store.putImage("8#1", { bytes: new Uint8Array(300).buffer, meta: { size: 300 } });

  await h.slot.onHubMessage(cleanup("drop_images"));
  const [answer] = h.answers();
  assert.deepEqual(answer, { v: 1, type: "cleanup_done", re: "mem-1", action: "drop_images", ok: true, freed_bytes: 8000, detail: "dropped 2 acknowledged image(s)" });
  assert.ok(await h.store.getImage("3#1"));
  assert.ok(await h.store.getImage("4#1"));
  assert.ok(await h.store.getImage("8#1"));
  assert.equal(await h.store.getImage("2#1"), undefined);

  // Nothing left to drop: ok, 0 bytes.
  await h.slot.onHubMessage(cleanup("drop_images", "mem-2"));
  assert.equal(h.answers()[1].freed_bytes, 0);
  assert.equal(h.answers()[1].ok, true);
});

test("drop_images works while the tab is busy (nothing in hand is touched)", async (t) => {
  const h = setup(t, { record: { task: { ...inflight.taskFromAssign(assign(5), 0), stage: "generating" } } });
  await h.store.putImage("1#1", { bytes: new Uint8Array(10).buffer });
  await h.slot.onHubMessage(cleanup("drop_images"));
  assert.equal(h.answers()[0].ok, true);
  assert.equal(h.answers()[0].freed_bytes, 10);
  assert.equal(h.slot.record.task.task_id, "5");
});

test("an acknowledged image is deleted at once: drop_images then finds nothing", async (t) => {
  const h = setup(t);
  await h.slot.onHubMessage(assign(6));
  await sleep(150);
  const image = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 9, 9]).toString("base64");
  h.page.task = null;
  await h.slot.onPageDone({ type: "ng.done", task_id: "6", attempt: 1, outcome: "image", image: { base64: image, mime: "image/png", image_id: "file_6" } });
  assert.ok(await h.store.getImage("6#1"));
  await h.slot.onAck({ type: "ack", task_id: "6", attempt: 1 });
  await h.slot.onHubMessage(cleanup("drop_images"));
  assert.equal(h.answers()[0].freed_bytes, 0);
});
