"use strict";
// The hub's feature flags (`configure.flags`, issue 9) in background/orchestrator.js:
// multi_tab (the single-tab fallback), selector_updates (back to the built-in selector table),
// reference_images (prompts sent without their reference images); merged by name, unknown
// names ignored, kept in storage across a service worker restart. The whole orchestrator
// runs (start, slots, tabs) over a fake browser that opens tabs whose pages answer
// ng.ping/ng.run, a fake hub connection per slot, and the real state store in memory.
// Run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const crypto = require("node:crypto");

const protocol = require(path.join(__dirname, "..", "lib", "protocol.js"));
const inflight = require(path.join(__dirname, "..", "lib", "inflight.js"));
const selectorTable = require(path.join(__dirname, "..", "lib", "selector_table.js"));
const S = require(path.join(__dirname, "..", "background", "state_store.js"));
const O = require(path.join(__dirname, "..", "background", "orchestrator.js"));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const CONV = "https://chatgpt.com/c/conv-1";
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), crypto.randomBytes(200)]);

function memoryArea() {
  const data = new Map();
  const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
  return {
    data,
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

/** A browser profile that outlives service worker restarts: its tabs and its storage. */
function makeBrowser() {
  const local = memoryArea();
  return { tabs: new Map(), nextTabId: 100, pageSeq: 0, local, session: memoryArea(), idb: S.memoryBackend(), messages: [], runs: [] };
}

/** chrome.tabs/scripting over `browser`; every load is a fresh page that reports ready to `h.orch`. */
function fakeChrome(h, browser) {
  const newPage = (url) => ({ id: `page-${++browser.pageSeq}`, url, task: null });
  const load = (tab, url) => {
    tab.page = null;
    tab.url = url;
    setTimeout(() => {
      if (!browser.tabs.has(tab.id)) return;
      tab.page = newPage(url);
      h.orch.onContentMessage({ type: "ng.ready", url, health: "ok", page_id: tab.page.id }, { tab: { id: tab.id } });
    }, 5);
  };
  const tabOf = (id) => {
    const tab = browser.tabs.get(id);
    if (!tab) throw new Error(`No tab with id: ${id}`);
    return tab;
  };
  return {
    tabs: {
      async create({ url }) {
        const tab = { id: browser.nextTabId++, url, page: null };
        browser.tabs.set(tab.id, tab);
        load(tab, url);
        return { id: tab.id };
      },
      async get(id) {
        const tab = tabOf(id);
        return { id, status: tab.page ? "complete" : "loading", discarded: false };
      },
      async remove(id) {
        tabOf(id);
        browser.tabs.delete(id);
        setTimeout(() => h.orch.onTabRemoved(id), 0);
      },
      async update(id, props) {
        const tab = tabOf(id);
        if (props.url) load(tab, props.url);
        return { id };
      },
      async reload(id) {
        const tab = tabOf(id);
        load(tab, tab.url);
      },
      async query() {
        return [...browser.tabs.values()].map((t) => ({ id: t.id, url: t.url }));
      },
      async sendMessage(id, msg) {
        const tab = browser.tabs.get(id);
        const p = tab && tab.page;
        if (!p) throw new Error("Could not establish connection. Receiving end does not exist.");
        browser.messages.push({ tab: id, ...msg });
        if (msg.type === "ng.ping") return { ok: true, url: p.url, page_id: p.id, health: "ok", busy: !!p.task, task: p.task };
        if (msg.type === "ng.run") {
          if (p.task) return { accepted: false, reason: "busy" };
          browser.runs.push({ tab: id, ...msg.task });
          p.task = { task_id: msg.task.task_id, attempt: msg.task.attempt, stage: "starting" };
          return { accepted: true };
        }
        if (msg.type === "ng.cancel") p.task = null;
        return { ok: true };
      },
    },
    scripting: { executeScript: async () => [] },
  };
}

/**
 * One service worker life over `browser`: an Orchestrator with the real store (its storage is
 * the browser's), the fake hub connections (h.conns by worker id, each with what it was sent),
 * started as the service worker starts it (hubConfig read from storage).
 */
async function startWorker(t, browser, { tabs = 3 } = {}) {
  const h = { conns: new Map(), closed: [], logs: [] };
  h.chrome = fakeChrome(h, browser);
  h.store = S.createStateStore({ session: browser.session, local: browser.local, idb: browser.idb });
  class FakeConnection {
    constructor(opts) {
      this.opts = opts;
      this.isOpen = false;
      this.sent = [];
      this.images = [];
      this.ws = {};
    }
    connect() {
      this.hello = this.opts.makeHello();
      h.conns.set(this.hello.worker_id, this);
      this.isOpen = true;
      setTimeout(() => {
        if (!this.isOpen) return;
        this.opts.onState("open");
        this.opts.onWelcome();
      }, 0);
    }
    send(msg) {
      if (!this.isOpen) return false;
      this.sent.push(msg);
      return true;
    }
    sendImage(announcement, frame) {
      if (!this.isOpen) return false;
      this.sent.push(announcement);
      this.images.push(frame);
      return true;
    }
    close(reason, detail) {
      if (this.isOpen) h.closed.push({ worker: this.hello.worker_id, reason, detail });
      this.isOpen = false;
    }
  }
  const orch = new O.Orchestrator({
    chrome: h.chrome,
    store: h.store,
    lib: { protocol, inflight, HubConnection: FakeConnection, selectorTable },
    settings: { hubUrl: "ws://127.0.0.1:8765/", token: "t", tabs, chatMode: "per_task" },
    installId: "x",
    instanceId: `i-${Math.random()}`,
    hubConfig: (await h.store.getValue("hubConfig")) || null,
    log: (text) => h.logs.push(text),
    timings: { tabOpenGapMs: 0 },
  });
  orch.publish = () => {};
  h.orch = orch;
  t.after(() => {
    for (const slot of orch.slots.values()) {
      slot.retired = true;
      clearTimeout(slot.rerunTimer);
      clearTimeout(slot.statusTimer);
    }
  });
  await orch.start();
  await settle(h);
  return h;
}

/** Let tabs open and pages report (each open tab's page loaded, the slot chains idle). */
async function settle(h) {
  for (let i = 0; i < 100; i++) {
    await sleep(10);
    await h.orch.slotsChain;
    const slots = [...h.orch.slots.values()];
    if (slots.every((s) => s.tabId != null && !s.tabPromise && !s.running)) break;
  }
  await sleep(20);
}

const chatgptTabs = (browser) => [...browser.tabs.values()].filter((tab) => tab.url.startsWith("https://chatgpt.com/"));
const slotNumbers = (h) => [...h.orch.slots.keys()].sort();

/** The hub, through one slot's connection (each connection gets every configure). */
async function hubSends(h, msg, slot = 1) {
  return h.orch.slots.get(slot).onHubMessage({ v: 1, ...msg });
}

async function configure(h, fields) {
  // Every connected slot gets the configure, as the hub sends it to every browser worker.
  await Promise.all([...h.orch.slots.values()].map((slot) => slot.onHubMessage({ v: 1, type: "configure", ...fields })));
  await settle(h);
}

function assign(taskId, extra = {}) {
  return { v: 1, type: "assign", task_id: String(taskId), attempt: 1, prompt: `panel ${taskId}`, deadline: Date.now() / 1000 + 600, ...extra };
}

/** The page in slot `n`'s tab has sent the prompt (paid for) and reports it. */
async function pageSubmitted(h, n, taskId) {
  const slot = h.orch.slots.get(n);
  await h.orch.onContentMessage({ type: "ng.progress", task_id: String(taskId), attempt: 1, stage: "submitted", conversation_url: CONV, before_image_ids: [] }, { tab: { id: slot.tabId } });
}

/** The page in tab `tabId` hands over its image. */
async function pageImage(h, tabId, taskId, browser) {
  const tab = browser.tabs.get(tabId);
  if (tab && tab.page) tab.page.task = null;
  return h.orch.onContentMessage(
    { type: "ng.done", task_id: String(taskId), attempt: 1, outcome: "image", image: { base64: PNG.toString("base64"), mime: "image/png", width: 8, height: 8, image_id: `file_${taskId}` }, conversation_url: CONV, elapsed: 3 },
    { tab: { id: tabId } }
  );
}

test("multi_tab false: one ChatGPT tab whatever configure.tabs and the options say; true again: the configured tabs reopen", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 3 });
  await configure(h, { tabs: 3 });
  assert.deepEqual(slotNumbers(h), [1, 2, 3]);
  assert.equal(chatgptTabs(browser).length, 3);

  await configure(h, { tabs: 3, flags: { multi_tab: false } });
  assert.deepEqual(slotNumbers(h), [1]);
  assert.equal(chatgptTabs(browser).length, 1);
  assert.equal(chatgptTabs(browser)[0].id, h.orch.slots.get(1).tabId);
  // The closed slots said bye `user` (nothing held: the hub gives them up without a failure).
  assert.deepEqual(h.closed.map((c) => [c.worker, c.reason]).sort(), [["ext-x-2", "user"], ["ext-x-3", "user"]]);
  assert.match(h.closed[0].detail, /single-tab mode/);
  assert.equal(await h.store.loadSlot(2), null);
  assert.equal(h.orch.desiredTabs(), 1);

  // Still one tab when the hub asks for more tabs while the flag is off.
  await configure(h, { tabs: 5 });
  assert.deepEqual(slotNumbers(h), [1]);

  await configure(h, { flags: { multi_tab: true } });
  assert.deepEqual(slotNumbers(h), [1, 2, 3, 4, 5]);
  assert.equal(chatgptTabs(browser).length, 5);
  assert.ok([2, 3, 4, 5].every((n) => h.conns.get(`ext-x-${n}`).isOpen));
});

test("multi_tab false: a tab with an attempt in hand finishes it, delivers the image and closes only after the hub's ack; no new assign is invited meanwhile", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 3 });
  await hubSends(h, assign(7), 2);
  await settle(h);
  assert.equal(browser.runs.length, 1);
  const busyTab = h.orch.slots.get(2).tabId;
  const idleTab = h.orch.slots.get(3).tabId;
  await pageSubmitted(h, 2, 7); // the prompt is sent: paid for

  await configure(h, { flags: { multi_tab: false } });
  // Slot 3 (idle) is gone at once; slot 2 stays until its attempt is delivered.
  assert.deepEqual(slotNumbers(h), [1, 2]);
  assert.ok(browser.tabs.has(busyTab));
  assert.ok(!browser.tabs.has(idleTab));
  const conn2 = h.conns.get("ext-x-2");
  assert.ok(conn2.isOpen);
  assert.ok(!browser.messages.some((m) => m.tab === busyTab && m.type === "ng.cancel"), "the attempt was not cancelled");
  const lastStatus = conn2.sent.filter((m) => m.type === "status").at(-1);
  assert.equal(lastStatus.tab_health, "discarded", "the hub must not send this tab new work");
  assert.equal(lastStatus.busy, true);
  assert.match(lastStatus.detail, /closing this tab once its attempt is delivered: single-tab mode/);
  assert.match(h.orch.connectionStatus().slots.find((s) => s.slot === 2).detail, /closing this tab/);

  // A status later (the health check's pace) still says so.
  h.orch.slots.get(2).sendStatus(true);
  assert.equal(conn2.sent.filter((m) => m.type === "status").at(-1).tab_health, "discarded");

  // The image arrives: stored, sent; the tab stays until the hub acknowledges it.
  assert.deepEqual(await pageImage(h, busyTab, 7, browser), { stored: true });
  await settle(h);
  const result = conn2.sent.find((m) => m.type === "result");
  assert.ok(result, "the image was delivered");
  assert.equal(result.task_id, "7");
  assert.equal(conn2.images.length, 1);
  assert.ok(conn2.isOpen && browser.tabs.has(busyTab));
  assert.deepEqual(slotNumbers(h), [1, 2]);

  await hubSends(h, { type: "ack", task_id: "7", attempt: 1, outcome: "accepted" }, 2);
  await settle(h);
  assert.deepEqual(slotNumbers(h), [1]);
  assert.ok(!browser.tabs.has(busyTab));
  assert.equal(chatgptTabs(browser).length, 1);
  assert.ok(!conn2.isOpen);
  assert.deepEqual(h.closed.find((c) => c.worker === "ext-x-2").reason, "user");
  assert.equal(await h.store.loadSlot(2), null);
  // The ack was taken before the slot went: the image bytes are forgotten, nothing left behind.
  assert.equal(await h.store.getImage(inflight.attemptKey("7", 1)), undefined);
});

test("multi_tab true again while a tab is finishing: it stays open and takes work again", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 2 });
  await hubSends(h, assign(8), 2);
  await settle(h);
  await configure(h, { flags: { multi_tab: false } });
  assert.ok(h.orch.slots.get(2).draining);
  await configure(h, { flags: { multi_tab: true } });
  const slot2 = h.orch.slots.get(2);
  assert.equal(slot2.draining, null);
  assert.equal(h.conns.get("ext-x-2").sent.filter((m) => m.type === "status").at(-1).tab_health, "ok");
  await pageImage(h, slot2.tabId, 8, browser);
  await hubSends(h, { type: "ack", task_id: "8", attempt: 1, outcome: "accepted" }, 2);
  await settle(h);
  assert.deepEqual(slotNumbers(h), [1, 2]);
  assert.equal(chatgptTabs(browser).length, 2);
});

test("flags are kept with the hub config: a restarted service worker is still in single-tab mode, and a tab that was finishing still finishes and closes", async (t) => {
  const browser = makeBrowser();
  const first = await startWorker(t, browser, { tabs: 3 });
  await hubSends(first, assign(9), 3);
  await settle(first);
  const busyTab = first.orch.slots.get(3).tabId;
  await pageSubmitted(first, 3, 9);
  await configure(first, { tabs: 3, flags: { multi_tab: false, reference_images: false } });
  assert.deepEqual(slotNumbers(first), [1, 3]);
  assert.deepEqual((await first.store.getValue("hubConfig")).flags, { multi_tab: false, reference_images: false });
  // MV3 stops the worker: its connections drop, its tabs and storage stay.
  for (const slot of first.orch.slots.values()) slot.retired = true;
  for (const conn of first.conns.values()) conn.isOpen = false;

  const h = await startWorker(t, browser, { tabs: 3 });
  assert.deepEqual(h.orch.flags(), { multi_tab: false, selector_updates: true, reference_images: false });
  assert.equal(h.orch.desiredTabs(), 1);
  // Slot 3 came back only for its attempt (the page is still on it): it says it is going.
  assert.deepEqual(slotNumbers(h), [1, 3]);
  const conn3 = h.conns.get("ext-x-3");
  assert.equal(conn3.sent.filter((m) => m.type === "status").at(-1).tab_health, "discarded");
  assert.deepEqual(conn3.hello.holding, [{ task_id: "9", attempt: 1 }]);
  await pageImage(h, busyTab, 9, browser);
  await settle(h);
  assert.ok(conn3.sent.some((m) => m.type === "result" && m.task_id === "9"));
  await hubSends(h, { type: "ack", task_id: "9", attempt: 1, outcome: "accepted" }, 3);
  await settle(h);
  assert.deepEqual(slotNumbers(h), [1]);
  assert.equal(chatgptTabs(browser).length, 1);
  assert.ok(!browser.tabs.has(busyTab));
});

test("flags: unknown names and non-boolean values are ignored; an absent flags field, or a name left out, keeps what was in force; null gives the default back", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 2 });
  assert.deepEqual(h.orch.flags(), O.FLAG_DEFAULTS);

  await configure(h, { flags: { multi_tab: false, warp_drive: true, reference_images: "no" } });
  assert.deepEqual(h.orch.hubConfig.flags, { multi_tab: false });
  assert.deepEqual(h.orch.flags(), { multi_tab: false, selector_updates: true, reference_images: true });
  assert.ok(h.logs.some((l) => /ignored the hub's flag "warp_drive"/.test(l)));
  assert.ok(h.logs.some((l) => /ignored the hub's flag reference_images="no"/.test(l)));
  assert.deepEqual(slotNumbers(h), [1]);

  // A configure without flags (a new tab count, a chat mode) leaves them as they are.
  await configure(h, { tabs: 4, chat_mode: "per_sequence" });
  assert.equal(h.orch.flags().multi_tab, false);
  assert.deepEqual(slotNumbers(h), [1]);
  // Flags are merged by name: another flag alone does not turn multi_tab back on.
  await configure(h, { flags: { reference_images: false } });
  assert.deepEqual(h.orch.flags(), { multi_tab: false, selector_updates: true, reference_images: false });
  assert.deepEqual(slotNumbers(h), [1]);
  // null forgets the hub's value: the default (on) again.
  await configure(h, { flags: { multi_tab: null } });
  assert.deepEqual(h.orch.hubConfig.flags, { reference_images: false });
  assert.deepEqual(slotNumbers(h), [1, 2, 3, 4]);

  // The options page's status shows them.
  const status = h.orch.connectionStatus();
  assert.deepEqual(status.flags, { multi_tab: true, selector_updates: true, reference_images: false });
  assert.deepEqual(status.flags_from_hub, ["reference_images"]);
});

const TABLE_V5 = JSON.stringify({ version: 5, keys: { sendButton: ["button[data-testid=send-button-v5]"] } });
const TABLE_V6 = JSON.stringify({ version: 6, keys: { sendButton: ["button[data-testid=send-button-v6]"] } });

test("selector_updates false: the hub's table is dropped for the built-in one (pages told), later tables ignored; on again: the next table is accepted", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 2 });
  const tabIds = [...h.orch.slots.values()].map((s) => s.tabId).sort();
  await configure(h, { selector_table: TABLE_V5 });
  assert.equal((await h.store.getValue("selectorTable")).version, 5);
  // (Each slot's connection brings the same configure: the table is pushed again, harmlessly.)
  const pushed = new Set(browser.messages.filter((m) => m.type === "ng.setSelectors").map((m) => `${m.tab}:${m.table.version}`));
  assert.deepEqual([...pushed].sort(), tabIds.map((id) => `${id}:5`));
  browser.messages.length = 0;

  await configure(h, { selector_table: TABLE_V5, flags: { selector_updates: false } });
  assert.equal(await h.store.getValue("selectorTable"), undefined);
  assert.equal(browser.local.data.has("selectorTable"), false, "new pages read the built-in table");
  const resets = browser.messages.filter((m) => m.type === "ng.setSelectors");
  assert.deepEqual(resets.map((m) => [m.tab, m.table]).sort(), tabIds.map((id) => [id, null]));
  assert.equal(h.orch.hubConfig.selector_table, undefined);

  // While off: a newer table is not looked at.
  browser.messages.length = 0;
  await configure(h, { selector_table: TABLE_V6 });
  assert.equal(await h.store.getValue("selectorTable"), undefined);
  assert.equal(browser.messages.filter((m) => m.type === "ng.setSelectors").length, 0);
  assert.ok(h.logs.some((l) => /ignored the hub's selector table: the hub's selector_updates flag is off/.test(l)));

  // On again: the hub's next table is taken as usual (even one no newer than the dropped one).
  await configure(h, { selector_table: TABLE_V5, flags: { selector_updates: true } });
  assert.equal((await h.store.getValue("selectorTable")).version, 5);
  assert.deepEqual(new Set(browser.messages.filter((m) => m.type === "ng.setSelectors" && m.table && m.table.version === 5).map((m) => m.tab)), new Set(tabIds));
});

test("selector_updates false survives a restart: a table left in storage is dropped at start", async (t) => {
  const browser = makeBrowser();
  const first = await startWorker(t, browser, { tabs: 1 });
  await configure(first, { flags: { selector_updates: false } });
  for (const slot of first.orch.slots.values()) slot.retired = true;
  // A table written by hand (or by an older version) while the flag was off.
  await browser.local.set({ selectorTable: JSON.parse(TABLE_V6) });
  const h = await startWorker(t, browser, { tabs: 1 });
  assert.equal(h.orch.flag("selector_updates"), false);
  assert.equal(browser.local.data.has("selectorTable"), false);
});

test("reference_images false: the assign's references are not attached (nor required); on again they are", async (t) => {
  const browser = makeBrowser();
  const h = await startWorker(t, browser, { tabs: 1 });
  const ref = { sha256: "a".repeat(64), name: "mara.png", mime: "image/png" };
  await configure(h, { flags: { reference_images: false } });
  await hubSends(h, assign(11, { references: [ref] }));
  await settle(h);
  assert.equal(browser.runs.length, 1);
  assert.equal(browser.runs[0].references, undefined, "sent without references");
  assert.deepEqual(h.orch.slots.get(1).record.task.attach, []);
  const conn = h.conns.get("ext-x-1");
  assert.equal(conn.sent.filter((m) => m.type === "task_error").length, 0, "a never-received reference is not asked for");
  assert.ok(h.logs.some((l) => /sent without its 1 reference image\(s\)/.test(l)));
  await pageImage(h, h.orch.slots.get(1).tabId, 11, browser);
  await hubSends(h, { type: "ack", task_id: "11", attempt: 1, outcome: "accepted" });

  // On again: the same never-received reference now fails the attempt before the page sees it.
  await configure(h, { flags: { reference_images: true } });
  await hubSends(h, assign(12, { references: [ref] }));
  await settle(h);
  assert.equal(browser.runs.length, 1);
  const error = conn.sent.filter((m) => m.type === "task_error").at(-1);
  assert.equal(error.task_id, "12");
  assert.match(error.message, /missing reference image/);
});
