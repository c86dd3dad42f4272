"use strict";
// Reference images in background/orchestrator.js (issue 8): `reference_image` checked and kept
// in IndexedDB, an assign's references handed to the page once per chat, missing ones failing
// the attempt before the page sees it, pruning once idle, and all of it across a service
// worker restart. One Slot with a fake chrome (a tab whose page loads answer ng.ping/ng.run),
// a fake hub connection and the real state store over in-memory storage.
// Run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const crypto = require("node:crypto");

const protocol = require(path.join(__dirname, "..", "lib", "protocol.js"));
const inflight = require(path.join(__dirname, "..", "lib", "inflight.js"));
const S = require(path.join(__dirname, "..", "background", "state_store.js"));
const O = require(path.join(__dirname, "..", "background", "orchestrator.js"));

const TAB = 52;
const CONV = "https://chatgpt.com/c/ch2-p14";
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

function image(name, mime = "image/png", n = 1000) {
  const bytes = crypto.randomBytes(n);
  const sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
  return { ref: { sha256, name, mime }, bytes, frame: { v: 1, type: "reference_image", sha256, name, mime, size: bytes.length, data: bytes.toString("base64") } };
}

let pageSeq = 0;

/** The tab: every load is a fresh page (new id) that reports ready, then answers messages. */
function fakeBrowser(h) {
  const newPage = (url) => ({ id: `page-${++pageSeq}`, url, task: null, runs: [] });
  h.page = newPage("https://chatgpt.com/");
  h.loads = [];
  const load = (url) => {
    h.page = null;
    h.loads.push(url);
    setTimeout(() => {
      h.page = newPage(url);
      h.orch.onContentMessage({ type: "ng.ready", url, health: "ok", page_id: h.page.id }, { tab: { id: TAB } });
    }, 10);
  };
  return {
    tabs: {
      async get(id) {
        if (id !== TAB) throw new Error(`No tab with id: ${id}`);
        return { id, status: h.page ? "complete" : "loading", discarded: false };
      },
      async sendMessage(id, msg) {
        const p = h.page;
        if (id !== TAB || !p) throw new Error("Could not establish connection. Receiving end does not exist.");
        if (msg.type === "ng.ping") return { ok: true, url: p.url, page_id: p.id, health: "ok", busy: !!p.task, task: p.task };
        if (msg.type === "ng.run") {
          if (p.task) return { accepted: false, reason: "busy" };
          p.runs.push(msg.task);
          h.runs.push({ page: p.id, url: p.url, ...msg.task });
          p.task = { task_id: msg.task.task_id, attempt: msg.task.attempt, stage: "starting" };
          return { accepted: true };
        }
        return { ok: true };
      },
      async update(id, props) {
        if (props.url) load(props.url);
        return { id };
      },
      async reload() {
        load(h.page ? h.page.url : "https://chatgpt.com/");
      },
    },
  };
}

/** `h.slot` is slot 1 on TAB with an open connection; `h.sent` what went to the hub. */
function setup(t, { store, chatMode = "per_task", record = {} } = {}) {
  const h = { sent: [], runs: [], logs: [] };
  h.chrome = fakeBrowser(h);
  h.store = store || S.createStateStore({ session: memoryArea(), local: memoryArea(), idb: S.memoryBackend() });
  class FakeConnection {
    constructor(opts) {
      this.opts = opts;
      this.isOpen = true;
      this.ws = {};
      h.connection = this;
    }
    connect() {}
    send(msg) {
      h.sent.push(msg);
      return true;
    }
    sendImage() {
      return true;
    }
    close() {}
  }
  const orch = new O.Orchestrator({
    chrome: h.chrome,
    store: h.store,
    lib: { protocol, inflight, HubConnection: FakeConnection },
    settings: { hubUrl: "ws://127.0.0.1:8765/", token: "t", tabs: 1, chatMode },
    installId: "x",
    instanceId: "i-1",
    hubConfig: null,
    log: (text) => h.logs.push(text),
  });
  orch.publish = () => {};
  const slot = new O.Slot(orch, 1, { ...inflight.emptySlot(1, "ext-x-1"), tabId: TAB, ...record });
  slot.health = "ok";
  slot.url = "https://chatgpt.com/";
  orch.slots.set(1, slot);
  orch.tabToSlot.set(TAB, slot);
  slot.connect(); // the real connect(), over the fake connection
  h.orch = orch;
  h.slot = slot;
  h.errors = () => h.sent.filter((m) => m.type === "task_error");
  h.progress = () => h.sent.filter((m) => m.type === "progress");
  t.after(() => clearTimeout(slot.rerunTimer));
  return h;
}

function assign(taskId, attempt = 1, extra = {}) {
  return { v: 1, type: "assign", task_id: String(taskId), attempt, prompt: `@Mara panel ${taskId}`, deadline: Date.now() / 1000 + 600, ...extra };
}

/** What the page does for an attempt: report progress up to submitted, then a refusal (no image bytes needed). */
async function pageSends(h, taskId, attempt = 1, url = CONV) {
  await h.slot.onPageProgress({ type: "ng.progress", task_id: String(taskId), attempt, stage: "typing" });
  await h.slot.onPageProgress({ type: "ng.progress", task_id: String(taskId), attempt, stage: "submitted", conversation_url: url, before_image_ids: [] });
  h.page.url = url;
  h.page.task = null;
  await h.slot.onPageDone({ type: "ng.done", task_id: String(taskId), attempt, outcome: "error", kind: "refused", message: "no" });
  await h.slot.onAck({ type: "ack", task_id: String(taskId), attempt });
}

test("a reference_image is checked and stored; the assign's references go to the page with the task", async (t) => {
  const h = setup(t);
  const mara = image("mara.png");
  assert.equal(await h.slot.onHubMessage(mara.frame), true);
  const stored = await h.store.getReference(mara.ref.sha256);
  assert.deepEqual(Buffer.from(stored.bytes), mara.bytes);
  assert.deepEqual([stored.name, stored.mime, stored.size], ["mara.png", "image/png", 1000]);
  assert.ok(h.slot.receivedRefs.has(mara.ref.sha256));

  await h.slot.onHubMessage(assign(1, 1, { references: [mara.ref] }));
  await sleep(100);
  assert.equal(h.runs.length, 1);
  assert.deepEqual(h.runs[0].references, [mara.ref]);
  assert.equal(h.runs[0].new_chat, true);
  assert.deepEqual(h.slot.record.task.attach, [mara.ref.sha256]);

  // The page attaches: the hub hears "typing" (nothing paid yet), with what is being done.
  await h.slot.onPageProgress({ type: "ng.progress", task_id: "1", attempt: 1, stage: "attaching", count: 1 });
  assert.equal(h.slot.record.task.stage, "attaching");
  const last = h.progress().at(-1);
  assert.deepEqual([last.stage, last.detail], ["typing", "attaching 1 reference image"]);

  // The page reads the bytes through ng.reference.
  const reply = await h.orch.onContentMessage({ type: "ng.reference", sha256: mara.ref.sha256 }, { tab: { id: TAB } });
  assert.deepEqual([reply.ok, reply.name, reply.mime, reply.size], [true, "mara.png", "image/png", 1000]);
  assert.deepEqual(Buffer.from(reply.base64, "base64"), mara.bytes);
  const unknown = await h.orch.onContentMessage({ type: "ng.reference", sha256: "c".repeat(64) }, { tab: { id: TAB } });
  assert.equal(unknown.ok, false);
  assert.deepEqual(await h.orch.onContentMessage({ type: "ng.reference", sha256: mara.ref.sha256 }, { tab: { id: 999 } }), { ignored: true });
});

test("the assign right behind its reference_image waits for the check and write", async (t) => {
  const h = setup(t);
  const big = image("sheet.webp", "image/webp", 3 * 1024 * 1024);
  // Not awaited: the hub's two frames arrive back to back.
  h.slot.onHubMessage(big.frame);
  h.slot.onHubMessage(assign(2, 1, { references: [big.ref] }));
  await sleep(300);
  assert.deepEqual(h.errors(), []);
  assert.equal(h.runs.length, 1);
  assert.deepEqual(h.runs[0].references, [big.ref]);
});

test("a reference whose bytes do not match is kept nowhere; the assign that lists it fails page_error without reaching the page", async (t) => {
  const h = setup(t);
  const mara = image("mara.png");
  const wrongSize = { ...mara.frame, size: 999 };
  assert.equal(await h.slot.onHubMessage(wrongSize), false);
  const other = image("tom.png");
  const wrongSha = { ...other.frame, sha256: mara.ref.sha256 };
  assert.equal(await h.slot.onHubMessage(wrongSha), false);
  assert.equal(await h.store.getReference(mara.ref.sha256), undefined);
  assert.ok(h.logs.some((l) => /ignored a reference image: .*1000 bytes decoded, size says 999/.test(l)), h.logs.join("\n"));
  assert.ok(h.logs.some((l) => /ignored a reference image: .*the bytes hash to/.test(l)), h.logs.join("\n"));

  const never = image("never-sent.png");
  await h.slot.onHubMessage(assign(3, 1, { references: [mara.ref, never.ref] }));
  await sleep(100);
  assert.equal(h.runs.length, 0, "the page never got the task");
  const [error] = h.errors();
  assert.equal(error.kind, "page_error");
  assert.match(error.message, /^missing reference images "mara.png" \(sha256 [0-9a-f]{12}…\), "never-sent.png" \(sha256 [0-9a-f]{12}…\): never received from the hub, or failed the size\/sha256 check; the prompt was not sent$/);
});

test("attach once per chat: the page's conversation gets each reference once; new_chat starts over", async (t) => {
  const h = setup(t);
  const mara = image("mara.png");
  const tom = image("tom.jpg", "image/jpeg");
  await h.slot.onHubMessage(mara.frame);
  await h.slot.onHubMessage(tom.frame);
  const meta = { sequence: "ch2/p14", job_id: "j" };

  await h.slot.onHubMessage(assign(1, 1, { metadata: meta, references: [mara.ref] }));
  await sleep(100);
  assert.deepEqual([h.runs[0].new_chat, h.runs[0].references], [true, [mara.ref]]);
  assert.deepEqual(h.loads, ["https://chatgpt.com/"], "a new chat");
  await pageSends(h, 1);
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"].attached, [mara.ref.sha256]);
  assert.equal(h.slot.record.conversations["seq:ch2/p14"].url, CONV);

  // Panel 2: the same conversation, nothing to attach (no navigation: the tab is there).
  await h.slot.onHubMessage(assign(2, 1, { metadata: meta, references: [mara.ref] }));
  await sleep(100);
  assert.equal(h.runs[1].new_chat, false);
  assert.equal(h.runs[1].references, undefined);
  assert.deepEqual(h.loads, ["https://chatgpt.com/"]);
  await pageSends(h, 2);

  // Panel 3 brings a second character: only the new one is attached.
  await h.slot.onHubMessage(assign(3, 1, { metadata: meta, references: [tom.ref, mara.ref] }));
  await sleep(100);
  assert.deepEqual([h.runs[2].new_chat, h.runs[2].references], [false, [tom.ref]]);
  await pageSends(h, 3);
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"].attached, [mara.ref.sha256, tom.ref.sha256]);

  // The hub says the conversation is long enough: a fresh chat with everything attached again.
  await h.slot.onHubMessage(assign(4, 1, { metadata: { ...meta, new_chat: true }, references: [mara.ref, tom.ref] }));
  await sleep(100);
  assert.deepEqual([h.runs[3].new_chat, h.runs[3].references], [true, [mara.ref, tom.ref]]);
  assert.deepEqual(h.loads, ["https://chatgpt.com/", "https://chatgpt.com/"]);
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"], { url: null, attached: [], at: h.slot.record.conversations["seq:ch2/p14"].at });
  await pageSends(h, 4, 1, `${CONV}-2`);
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"].url, `${CONV}-2`);
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"].attached, [mara.ref.sha256, tom.ref.sha256]);
  // Durable: the stored record says the same.
  assert.deepEqual((await h.store.loadSlot(1)).conversations, h.slot.record.conversations);
});

test("per_task without metadata.sequence: every attempt a new chat with every reference", async (t) => {
  const h = setup(t);
  const mara = image("mara.png");
  await h.slot.onHubMessage(mara.frame);
  for (const n of [1, 2]) {
    await h.slot.onHubMessage(assign(n, 1, { metadata: { job_id: "j", chapter: "1", page: 1 }, references: [mara.ref] }));
    await sleep(100);
    await pageSends(h, n, 1, `${CONV}-${n}`);
  }
  assert.deepEqual(h.runs.map((r) => [r.new_chat, r.references]), [[true, [mara.ref]], [true, [mara.ref]]]);
  assert.equal(h.slot.record.conversations, undefined, "nothing kept per key");
});

test("an attempt that failed after attaching, before sending: nothing counted as attached, the conversation is loaded again", async (t) => {
  const h = setup(t, { record: { conversations: { "seq:ch2/p14": { url: CONV, attached: [], at: 1 } } } });
  h.slot.url = CONV;
  h.page.url = CONV;
  const mara = image("mara.png");
  await h.slot.onHubMessage(mara.frame);
  const meta = { sequence: "ch2/p14" };
  await h.slot.onHubMessage(assign(5, 1, { metadata: meta, references: [mara.ref] }));
  await sleep(100);
  assert.deepEqual(h.loads, [], "already in the conversation");
  assert.deepEqual(h.runs[0].references, [mara.ref]);
  await h.slot.onPageProgress({ type: "ng.progress", task_id: "5", attempt: 1, stage: "attaching", count: 1 });
  h.page.task = null;
  await h.slot.onPageDone({ type: "ng.done", task_id: "5", attempt: 1, outcome: "error", kind: "page_error", message: "ChatGPT refused the reference image: File is too large; the prompt was not sent." });
  await h.slot.onAck({ type: "ack", task_id: "5", attempt: 1 });
  assert.deepEqual(h.slot.record.conversations["seq:ch2/p14"].attached, []);

  await h.slot.onHubMessage(assign(5, 2, { metadata: meta, references: [mara.ref] }));
  await sleep(100);
  assert.deepEqual(h.loads, [CONV], "reloaded: the failed attachment may still sit in the composer");
  assert.deepEqual(h.runs[1].references, [mara.ref], "attached again");
  assert.equal(h.runs[1].new_chat, false);
});

test("pruning once idle: a reference stays while this connection or a task may need it", async (t) => {
  const h = setup(t);
  const mara = image("mara.png");
  const tom = image("tom.png");
  const old = image("old.png");
  await h.store.putReference({ ...old.ref, size: 1000, bytes: old.bytes.buffer }); // from an earlier session
  await h.slot.onHubMessage(mara.frame);
  await h.slot.onHubMessage(tom.frame);
  // Another slot's stored record has a task listing tom (it runs after a restart).
  await h.store.saveSlot({ ...inflight.emptySlot(2, "ext-x-2"), task: inflight.taskFromAssign(assign(9, 1, { references: [tom.ref] }), 0) });

  await h.slot.onHubMessage(assign(1, 1, { references: [mara.ref] }));
  await sleep(100);
  await pageSends(h, 1); // ack → idle → prune
  await sleep(20);
  assert.deepEqual((await h.store.referenceKeys()).sort(), [mara.ref.sha256, tom.ref.sha256].sort(), "old went; mara was received on this connection");
  assert.ok(h.logs.some((l) => /forgot 1 reference image/.test(l)));

  // The connection drops: the hub will send mara again on the next one before it is needed.
  h.connection.opts.onState("closed", "closed 1006");
  assert.equal(h.slot.receivedRefs.size, 0);
  await h.orch.pruneReferences();
  assert.deepEqual(await h.store.referenceKeys(), [tom.ref.sha256], "tom stays for slot 2's task");
});

test("after a service worker restart the task's references are still there and handed to the page", async (t) => {
  const first = setup(t);
  const mara = image("mara.png");
  await first.slot.onHubMessage(mara.frame);
  // The record says the task was accepted, not yet handed over, when the worker stopped.
  await first.slot.update((r) => ({ ...r, task: inflight.taskFromAssign(assign(7, 1, { references: [mara.ref] }), Date.now()) }));

  const h = setup(t, { store: first.store, record: await first.store.loadSlot(1) });
  await h.orch.pruneReferences(); // the new worker's start-up pruning keeps it: a task lists it
  assert.equal(h.slot.receivedRefs.size, 0, "nothing received on the new connection");
  h.slot.runTask({});
  await sleep(100);
  assert.deepEqual(h.errors(), []);
  assert.deepEqual(h.runs[0].references, [mara.ref]);
  const reply = await h.orch.onContentMessage({ type: "ng.reference", sha256: mara.ref.sha256 }, { tab: { id: TAB } });
  assert.deepEqual(Buffer.from(reply.base64, "base64"), mara.bytes);
});

test("the memory governor's new_chat forgets the kept conversations", async (t) => {
  const h = setup(t, { record: { conversations: { "seq:a": { url: CONV, attached: ["a".repeat(64)], at: 1 } } } });
  await h.slot.onHubMessage({ v: 1, type: "cleanup", request_id: "mem-1", action: "new_chat" });
  const answer = h.sent.find((m) => m.type === "cleanup_done");
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.deepEqual(h.slot.record.conversations, {});
});
