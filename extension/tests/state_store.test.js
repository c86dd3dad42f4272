"use strict";
// Unit tests of background/state_store.js with fake chrome.storage areas and the in-memory
// IndexedDB stand-in: run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const S = require(path.join(__dirname, "..", "background", "state_store.js"));

function quotaError(message = "Quota exceeded") {
  const err = new Error(message);
  err.name = "QuotaExceededError";
  return err;
}

/** A fake chrome.storage area: get(key | null), set(obj), remove(key), all promises. */
function fakeArea(name = "area") {
  const data = new Map();
  const calls = { get: 0, set: 0, remove: 0 };
  const faults = { get: null, set: null, remove: null }; // fn(arg) → Error to throw, or null
  const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
  return {
    name,
    data,
    calls,
    faults,
    async get(key) {
      calls.get++;
      const err = faults.get && faults.get(key);
      if (err) throw err;
      if (key === null) return Object.fromEntries([...data].map(([k, v]) => [k, clone(v)]));
      return data.has(key) ? { [key]: clone(data.get(key)) } : {};
    },
    async set(obj) {
      calls.set++;
      const err = faults.set && faults.set(obj);
      if (err) throw err;
      for (const [k, v] of Object.entries(obj)) data.set(k, clone(v));
    },
    async remove(key) {
      calls.remove++;
      const err = faults.remove && faults.remove(key);
      if (err) throw err;
      data.delete(key);
    },
  };
}

/** memoryBackend with injectable faults per operation. */
function faultyBackend() {
  const inner = S.memoryBackend();
  const faults = { get: null, put: null, delete: null, keys: null };
  const wrap = (op) => async (...args) => {
    const err = faults[op] && faults[op](...args);
    if (err) throw err;
    return inner[op](...args);
  };
  return { stores: inner.stores, faults, get: wrap("get"), put: wrap("put"), delete: wrap("delete"), keys: wrap("keys") };
}

function setup(extra = {}) {
  const session = fakeArea("session");
  const local = fakeArea("local");
  const idb = faultyBackend();
  const quota = [];
  const logs = [];
  const store = S.createStateStore({
    session,
    local,
    idb,
    onQuota: (d) => quota.push(d),
    log: (t) => logs.push(t),
    ...extra,
  });
  return { store, session, local, idb, quota, logs };
}

function rec(slot, extra = {}) {
  return { slot, workerId: `ext-x-${slot}`, tabId: null, task: null, unacked: [], sequence: null, updatedAt: 0, ...extra };
}

test("isQuotaError recognises quota errors by name or message", () => {
  assert.equal(S.isQuotaError(quotaError()), true);
  const byName = new Error("no space");
  byName.name = "QuotaExceededError";
  assert.equal(S.isQuotaError(byName), true);
  assert.equal(S.isQuotaError(new Error("QUOTA_BYTES quota exceeded")), true);
  assert.equal(S.isQuotaError("Resource::kQuotaBytes quota exceeded"), true);
  assert.equal(S.isQuotaError(new Error("disk I/O error")), false);
  assert.equal(S.isQuotaError(null), false);
});

test("memoryBackend: get/put/delete/keys per store", async () => {
  const m = S.memoryBackend();
  await m.put("state", "a", { x: 1 });
  await m.put("images", "b", { y: 2 });
  assert.deepEqual(await m.get("state", "a"), { x: 1 });
  assert.equal(await m.get("state", "b"), undefined);
  assert.deepEqual(await m.keys("images"), ["b"]);
  await m.delete("images", "b");
  assert.deepEqual(await m.keys("images"), []);
});

test("saveSlot writes local, IndexedDB and session with a fresh updatedAt; loadSlot reads it back", async () => {
  const { store, session, local, idb } = setup();
  const before = Date.now();
  const saved = await store.saveSlot(rec(2, { tabId: 7, updatedAt: 1 }));
  assert.ok(saved.updatedAt >= before);
  assert.deepEqual(local.data.get("slot:2"), saved);
  assert.deepEqual(idb.stores.state.get("slot:2"), saved);
  assert.deepEqual(session.data.get("slot:2"), saved);
  assert.deepEqual(await store.loadSlot(2), saved);
  assert.equal(await store.loadSlot(3), null);
});

test("loadSlot: the newest of the durable copies wins (local vs IndexedDB)", async () => {
  const { store, local, idb } = setup();
  local.data.set("slot:1", rec(1, { tabId: 1, updatedAt: 100 }));
  await idb.put("state", "slot:1", rec(1, { tabId: 2, updatedAt: 200 }));
  assert.equal((await store.loadSlot(1)).tabId, 2);
  local.data.set("slot:1", rec(1, { tabId: 3, updatedAt: 300 }));
  assert.equal((await store.loadSlot(1)).tabId, 3);
});

test("loadSlot: without a session area, local and IndexedDB are both read", async () => {
  const local = fakeArea();
  const idb = S.memoryBackend();
  const store = S.createStateStore({ local, idb });
  await idb.put("state", "slot:1", rec(1, { tabId: 9, updatedAt: 50 }));
  local.data.set("slot:1", rec(1, { tabId: 8, updatedAt: 40 }));
  assert.equal((await store.loadSlot(1)).tabId, 9);
  const saved = await store.saveSlot(rec(1, { tabId: 10 }));
  assert.deepEqual(await store.loadSlot(1), saved);
});

test("loadSlot: a session copy newer than the durable ones wins", async () => {
  const { store, session, local, idb } = setup();
  session.data.set("slot:1", rec(1, { tabId: 5, updatedAt: 500 }));
  local.data.set("slot:1", rec(1, { tabId: 4, updatedAt: 400 }));
  await idb.put("state", "slot:1", rec(1, { tabId: 3, updatedAt: 300 }));
  assert.equal((await store.loadSlot(1)).tabId, 5);
});

test(
  "loadSlot: the newest copy wins even when the session copy is stale",
  async () => {
    const { store, session, local, idb } = setup();
    await store.saveSlot(rec(1, { task: { task_id: "17", attempt: 1, stage: "accepted" } }));
    // the next save: the durable copies succeed, the warm one fails (tryWrite swallows it)
    session.faults.set = () => new Error("session storage unavailable");
    await new Promise((r) => setTimeout(r, 5)); // a later updatedAt
    const newer = await store.saveSlot(rec(1, { task: { task_id: "17", attempt: 1, stage: "submitted" } }));
    assert.equal(local.data.get("slot:1").task.stage, "submitted");
    assert.equal(idb.stores.state.get("slot:1").task.stage, "submitted");
    assert.equal(session.data.get("slot:1").task.stage, "accepted");
    // a stale "accepted" would make recoveryPlan rerun a prompt that was already sent
    assert.deepEqual(await store.loadSlot(1), newer);
  }
);

test("loadSlot: a failing session read falls back to the durable copies", async () => {
  const { store, session, local, logs } = setup();
  local.data.set("slot:1", rec(1, { tabId: 11, updatedAt: 10 }));
  session.faults.get = () => new Error("session area gone");
  assert.equal((await store.loadSlot(1)).tabId, 11);
  assert.ok(logs.some((l) => /slot 1 from session: session area gone/.test(l)), logs.join("\n"));
});

test("loadSlot: a failing local read still finds the IndexedDB copy, and vice versa", async () => {
  const { store, local, idb } = setup();
  local.faults.get = () => new Error("local broken");
  await idb.put("state", "slot:1", rec(1, { tabId: 12, updatedAt: 10 }));
  assert.equal((await store.loadSlot(1)).tabId, 12);
  local.faults.get = null;
  local.data.set("slot:2", rec(2, { tabId: 13, updatedAt: 10 }));
  idb.faults.get = () => new Error("idb broken");
  assert.equal((await store.loadSlot(2)).tabId, 13);
  local.faults.get = () => new Error("local broken");
  assert.equal(await store.loadSlot(2), null);
});

test("a slot saved to local while IndexedDB fails is still saved and loaded", async () => {
  const { store, session, idb, logs } = setup({ session: undefined });
  assert.equal(session.calls.set, 0);
  idb.faults.put = () => new Error("UnknownError: IndexedDB is broken");
  idb.faults.get = () => new Error("UnknownError: IndexedDB is broken");
  const saved = await store.saveSlot(rec(4, { tabId: 44 }));
  assert.ok(logs.some((l) => /slot 4 \(IndexedDB\)/.test(l)), logs.join("\n"));
  assert.equal(idb.stores.state.size, 0);
  assert.deepEqual(await store.loadSlot(4), saved);
});

test("a slot saved to IndexedDB while storage.local fails is still saved and loaded", async () => {
  const { store, local, session } = setup();
  local.faults.set = () => new Error("local write failed");
  session.faults.get = () => new Error("cold start"); // force the durable path
  const saved = await store.saveSlot(rec(5, { tabId: 55 }));
  assert.equal(local.data.size, 0);
  assert.deepEqual(await store.loadSlot(5), saved);
});

test("saveSlot throws when neither durable copy could be written", async () => {
  const { store, local, idb } = setup();
  local.faults.set = () => new Error("local write failed");
  idb.faults.put = () => new Error("idb write failed");
  await assert.rejects(store.saveSlot(rec(6)), /could not save the state of slot 6 anywhere/);
});

test("quota on storage.local: unreferenced images are pruned, onQuota told, the write retried", async () => {
  const { store, local, idb, quota } = setup();
  await store.putImage("17#2", { bytes: new Uint8Array([1]) }); // still referenced
  await store.putImage("9#1", { bytes: new Uint8Array([2]) }); // acked long ago
  await store.putImage("8#1", { bytes: new Uint8Array([3]) }); // acked long ago
  store.setReferencedKeys(async () => new Set(["17#2"]));
  let failNext = true;
  local.faults.set = () => {
    if (!failNext) return null;
    failNext = false;
    return quotaError();
  };
  const saved = await store.saveSlot(rec(1, { unacked: [{ task_id: "17", attempt: 2, kind: "image", key: "17#2" }] }));
  assert.deepEqual([...idb.stores.images.keys()], ["17#2"]);
  assert.equal(quota.length, 1);
  assert.match(quota[0], /quota exceeded while saving slot 1 \(storage\.local\); pruned 2 old entries/);
  assert.deepEqual(local.data.get("slot:1"), saved);
  assert.equal(local.calls.set, 2);
});

test("quota: the onQuota text says 'entry' for one pruned image", async () => {
  const { store, local, quota } = setup();
  store.setReferencedKeys(async () => new Set());
  await store.putImage("1#1", { bytes: new Uint8Array([1]) });
  let fail = true;
  local.faults.set = () => (fail ? ((fail = false), quotaError()) : null);
  await store.saveSlot(rec(1));
  assert.match(quota[0], /pruned 1 old entry$/);
});

test("quota that persists after pruning: logged, the other durable copy carries the slot", async () => {
  const { store, local, quota, logs } = setup();
  local.faults.set = () => quotaError();
  const saved = await store.saveSlot(rec(1));
  assert.equal(quota.length, 1);
  assert.ok(logs.some((l) => /storage\.local\): still failing after pruning/.test(l)), logs.join("\n"));
  assert.equal(local.calls.set, 2, "retried exactly once");
  assert.deepEqual(await store.loadSlot(1), saved);
});

test("quota on an IndexedDB image write: prune, report, retry; a second failure throws", async () => {
  const { store, idb, quota } = setup();
  await store.putImage("old#1", { bytes: new Uint8Array([9]) });
  store.setReferencedKeys(async () => new Set());
  let fail = 1;
  idb.faults.put = (storeName) => (storeName === "images" && fail-- > 0 ? quotaError() : null);
  await store.putImage("17#1", { mime: "image/png", bytes: new Uint8Array([1, 2]) });
  assert.equal(quota.length, 1);
  assert.match(quota[0], /image 17#1; pruned 1 old entry/);
  const got = await store.getImage("17#1");
  assert.equal(got.mime, "image/png");
  assert.equal(typeof got.savedAt, "number");
  assert.equal(await store.getImage("old#1"), undefined);

  idb.faults.put = () => quotaError();
  await assert.rejects(store.putImage("18#1", { bytes: new Uint8Array([1]) }), /could not store image 18#1/);
  assert.equal(quota.length, 2);
});

test("a non-quota write error is not pruned for and not reported as quota", async () => {
  const { store, local, quota, logs } = setup();
  await store.putImage("1#1", { bytes: new Uint8Array([1]) });
  local.faults.set = () => new Error("disk I/O error");
  await store.saveSlot(rec(1));
  assert.equal(quota.length, 0);
  assert.equal(await store.getImage("1#1") !== undefined, true);
  assert.ok(logs.some((l) => /disk I\/O error/.test(l)));
  assert.equal(local.calls.set, 1, "not retried");
});

test("pruneImages keeps referenced keys and returns the count", async () => {
  const { store } = setup();
  for (const k of ["a", "b", "c"]) await store.putImage(k, { n: k });
  store.setReferencedKeys(async () => new Set(["b"]));
  assert.equal(await store.pruneImages(), 2);
  assert.deepEqual(await store.getImage("b"), { n: "b", savedAt: (await store.getImage("b")).savedAt });
  assert.equal(await store.pruneImages(), 0);
  await store.deleteImage("b");
  assert.equal(await store.getImage("b"), undefined);
});

test("loadAllSlots returns the records that exist, in slot order", async () => {
  const { store } = setup();
  await store.saveSlot(rec(3));
  await store.saveSlot(rec(1));
  await store.saveSlot(rec(12));
  assert.deepEqual((await store.loadAllSlots()).map((r) => r.slot), [1, 3]);
  assert.deepEqual((await store.loadAllSlots(12)).map((r) => r.slot), [1, 3, 12]);
});

test("removeSlot removes every copy, even when one area fails", async () => {
  const { store, session, local, idb } = setup();
  await store.saveSlot(rec(1));
  session.faults.remove = () => new Error("session gone");
  await store.removeSlot(1);
  assert.equal(local.data.has("slot:1"), false);
  assert.equal(idb.stores.state.has("slot:1"), false);
  session.faults.remove = null;
  await store.removeSlot(1);
  assert.equal(await store.loadSlot(1), null);
});

test("getValue/setValue/setWarm: warm copy first, durable fallback", async () => {
  const { store, session, local } = setup();
  await store.setValue("settings", { tabs: 2 });
  assert.deepEqual(local.data.get("settings"), { tabs: 2 });
  assert.deepEqual(session.data.get("settings"), { tabs: 2 });
  assert.deepEqual(await store.getValue("settings"), { tabs: 2 });

  await store.setValue("installId", "abc", { warm: false });
  assert.equal(session.data.has("installId"), false);
  assert.equal(await store.getValue("installId"), "abc");

  await store.setWarm("hot", 1);
  assert.equal(session.data.get("hot"), 1);
  assert.equal(local.data.has("hot"), false);
  assert.equal(await store.getValue("hot"), 1);

  session.faults.get = () => new Error("session broken");
  assert.deepEqual(await store.getValue("settings"), { tabs: 2 });
  session.faults.set = () => new Error("session broken");
  await store.setValue("x", 1); // a warm-copy failure is not fatal
  await store.setWarm("y", 1);
  assert.equal(local.data.get("x"), 1);
  assert.equal(await store.getValue("missing"), undefined);
});

test("setValue on quota prunes images and retries", async () => {
  const { store, local, quota } = setup();
  await store.putImage("1#1", { n: 1 });
  let fail = true;
  local.faults.set = () => (fail ? ((fail = false), quotaError()) : null);
  await store.setValue("hubConfig", { tabs: 3 });
  assert.equal(quota.length, 1);
  assert.deepEqual(local.data.get("hubConfig"), { tabs: 3 });
});

test("before the owner names the images it needs, a quota error prunes nothing", async () => {
  const { store, local, quota, idb } = setup();
  await store.putImage("7#1", { bytes: new Uint8Array([7]) });
  let fail = true;
  local.faults.set = () => (fail ? ((fail = false), quotaError()) : null);
  await store.saveSlot(rec(1));
  assert.match(quota[0], /pruned 0 old entries$/);
  assert.ok(await store.getImage("7#1"), "an image nobody vouched for is kept");
  void idb;
});

test("dropImages forgets every image not kept and says how many bytes went", async () => {
  const { store, idb } = setup();
  await store.putImage("17#2", { bytes: new Uint8Array(1000).buffer, meta: { size: 1000 } }); // not acked yet
  await store.putImage("9#1", { bytes: new Uint8Array(300).buffer, meta: { size: 300 } }); // acked
  await store.putImage("8#1", { meta: { size: 50 } }); // bytes unreadable: its meta size counts
  await store.putImage("7#1", { n: 7 }); // nothing to measure: counted, 0 bytes
  assert.deepEqual(await store.dropImages(new Set(["17#2"])), { count: 3, bytes: 350 });
  assert.deepEqual([...idb.stores.images.keys()], ["17#2"]);
  assert.deepEqual(await store.dropImages(new Set(["17#2"])), { count: 0, bytes: 0 });
  assert.deepEqual(await store.dropImages(new Set()), { count: 1, bytes: 1000 });
});

test("references: stored by sha256 beside the images, dropped unless kept (a Set or a function)", async () => {
  const { store, idb } = setup();
  const ref = (c) => ({ sha256: c.repeat(64), name: `${c}.png`, mime: "image/png", size: 3, bytes: new Uint8Array([1, 2, 3]).buffer });
  await store.putReference(ref("a"));
  await store.putReference(ref("b"));
  await store.putReference(ref("c"));
  await store.putImage("1#1", { bytes: new Uint8Array(1).buffer });
  assert.equal((await store.getReference("a".repeat(64))).name, "a.png");
  assert.ok((await store.getReference("a".repeat(64))).savedAt > 0);
  assert.deepEqual((await store.referenceKeys()).sort(), ["a", "b", "c"].map((c) => c.repeat(64)));
  assert.equal(await store.dropReferences(new Set(["a".repeat(64), "b".repeat(64)])), 1);
  assert.equal(await store.dropReferences((sha) => sha.startsWith("a")), 1);
  assert.deepEqual(await store.referenceKeys(), ["a".repeat(64)]);
  // images are another store: untouched, and dropImages leaves references alone
  assert.deepEqual([...idb.stores.images.keys()], ["1#1"]);
  await store.dropImages(new Set());
  assert.deepEqual(await store.referenceKeys(), ["a".repeat(64)]);
});

test("indexedDbBackend creates the references store when upgrading an older database", async () => {
  const created = [];
  const existing = new Set(["state", "images"]); // a version-1 database
  const fakeIndexedDb = {
    open(name, version) {
      const req = {};
      const db = { objectStoreNames: { contains: (n) => existing.has(n) }, createObjectStore: (n) => (created.push(n), existing.add(n)) };
      setTimeout(() => {
        assert.equal(name, "novelgen");
        assert.equal(version, 2);
        req.result = db;
        req.onupgradeneeded();
        req.onsuccess();
      }, 0);
      return req;
    },
  };
  const backend = S.indexedDbBackend(fakeIndexedDb);
  // Opening happens on first use; a transaction is not faked, so stop at the open.
  await backend.get("references", "x").catch(() => {});
  assert.deepEqual(created, ["references"]);
});
