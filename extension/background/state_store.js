// Durable in-flight state of the extension.
//
// MV3 kills the service worker after 30 s without events, and the browser may be killed at
// any moment. Everything a slot holds is written BEFORE the step it describes:
//   - chrome.storage.local   the durable copy of each slot record (small JSON)
//   - IndexedDB "state"      a second durable copy (survives a storage.local quota error)
//   - IndexedDB "images"     image bytes until the hub acknowledges them
//   - IndexedDB "references" reference images from the hub (key: sha256), checked on receipt,
//                            kept while a connection that received them or a task that
//                            lists them may still need them
//   - chrome.storage.session a warm copy (memory, cleared when the browser quits), read first
// Reads fall back along session → local → IndexedDB. Quota errors prune what is no longer
// referenced (images of acknowledged attempts, stale slots) and are reported to the caller so
// the hub can be told.
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenStateStore = api;
})(globalThis, function () {
  "use strict";

  const SLOT_PREFIX = "slot:";
  const DB_NAME = "novelgen";
  const DB_VERSION = 2; // 2: the "references" store
  const STORES = ["state", "images", "references"];

  function isQuotaError(err) {
    const text = String((err && (err.name || "")) + " " + (err && err.message ? err.message : err));
    return /quota/i.test(text);
  }

  /** chrome.storage.* area as promises (MV3 returns promises; keep it explicit for fakes). */
  function area(storageArea) {
    return {
      async get(key) {
        const got = await storageArea.get(key);
        return got ? got[key] : undefined;
      },
      async set(key, value) {
        await storageArea.set({ [key]: value });
      },
      async remove(key) {
        await storageArea.remove(key);
      },
      async all() {
        return (await storageArea.get(null)) || {};
      },
    };
  }

  /** A tiny IndexedDB wrapper: object stores `state`, `images`, `references`, keyed by string. */
  function indexedDbBackend(indexedDB) {
    let dbPromise = null;
    function open() {
      if (!dbPromise) {
        dbPromise = new Promise((resolve, reject) => {
          const req = indexedDB.open(DB_NAME, DB_VERSION);
          req.onupgradeneeded = () => {
            const db = req.result;
            for (const name of STORES) if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
          };
          req.onsuccess = () => resolve(req.result);
          req.onerror = () => {
            dbPromise = null;
            reject(req.error);
          };
        });
      }
      return dbPromise;
    }
    function run(storeName, mode, action) {
      return open().then(
        (db) =>
          new Promise((resolve, reject) => {
            const tx = db.transaction(storeName, mode);
            const req = action(tx.objectStore(storeName));
            let result;
            if (req) req.onsuccess = () => (result = req.result);
            tx.oncomplete = () => resolve(result);
            tx.onerror = () => reject(tx.error || (req && req.error));
            tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
          })
      );
    }
    return {
      get: (store, key) => run(store, "readonly", (s) => s.get(key)),
      put: (store, key, value) => run(store, "readwrite", (s) => s.put(value, key)),
      delete: (store, key) => run(store, "readwrite", (s) => s.delete(key)),
      keys: (store) => run(store, "readonly", (s) => s.getAllKeys()),
    };
  }

  /** An in-memory stand-in with the same interface (tests; a browser without IndexedDB). */
  function memoryBackend() {
    const stores = Object.fromEntries(STORES.map((name) => [name, new Map()]));
    return {
      stores,
      get: async (store, key) => stores[store].get(key),
      put: async (store, key, value) => void stores[store].set(key, value),
      delete: async (store, key) => void stores[store].delete(key),
      keys: async (store) => [...stores[store].keys()],
    };
  }

  /**
   * @param {{session, local, idb, onQuota?: (detail: string) => void, log?}} deps
   *   session/local: chrome.storage areas (or fakes with get/set/remove); idb: a backend.
   */
  function createStateStore(deps) {
    const session = deps.session ? area(deps.session) : null;
    const local = area(deps.local);
    const idb = deps.idb;
    const onQuota = deps.onQuota || (() => {});
    const log = deps.log || (() => {});

    async function tryWrite(what, write, prune) {
      try {
        await write();
        return true;
      } catch (err) {
        if (!isQuotaError(err)) {
          log(`${what}: ${err && err.message ? err.message : err}`);
          return false;
        }
        const freed = prune ? await prune() : 0;
        onQuota(`storage quota exceeded while saving ${what}; pruned ${freed} old entr${freed === 1 ? "y" : "ies"}`);
        try {
          await write();
          return true;
        } catch (again) {
          log(`${what}: still failing after pruning: ${again && again.message ? again.message : again}`);
          return false;
        }
      }
    }

    /** Write a slot record durably (local + IndexedDB), then warm (session). */
    async function saveSlot(record) {
      const value = { ...record, updatedAt: Date.now() };
      const key = SLOT_PREFIX + value.slot;
      const okLocal = await tryWrite(`slot ${value.slot} (storage.local)`, () => local.set(key, value), pruneImages);
      const okIdb = await tryWrite(`slot ${value.slot} (IndexedDB)`, () => idb.put("state", key, value), pruneImages);
      if (session) await tryWrite(`slot ${value.slot} (storage.session)`, () => session.set(key, value), null);
      if (!okLocal && !okIdb) throw new Error(`could not save the state of slot ${value.slot} anywhere`);
      return value;
    }

    /** Newest of the copies found along session → local → IndexedDB. */
    async function loadSlot(slot) {
      const key = SLOT_PREFIX + slot;
      const found = [];
      for (const [name, read] of [
        ["session", () => (session ? session.get(key) : undefined)],
        ["local", () => local.get(key)],
        ["idb", () => idb.get("state", key)],
      ]) {
        try {
          const value = await read();
          if (value) found.push(value); // the newest copy wins: a failed write leaves one stale
        } catch (err) {
          log(`reading slot ${slot} from ${name}: ${err && err.message ? err.message : err}`);
        }
      }
      if (!found.length) return null;
      return found.reduce((a, b) => ((b.updatedAt || 0) > (a.updatedAt || 0) ? b : a));
    }

    async function loadAllSlots(maxSlots = 10) {
      const out = [];
      for (let n = 1; n <= maxSlots; n++) {
        const record = await loadSlot(n);
        if (record) out.push(record);
      }
      return out;
    }

    async function removeSlot(slot) {
      const key = SLOT_PREFIX + slot;
      if (session) await session.remove(key).catch(() => {});
      await local.remove(key).catch(() => {});
      await idb.delete("state", key).catch(() => {});
    }

    async function putImage(key, image) {
      const ok = await tryWrite(`image ${key}`, () => idb.put("images", key, { ...image, savedAt: Date.now() }), pruneImages);
      if (!ok) throw new Error(`could not store image ${key}`);
    }

    const getImage = (key) => idb.get("images", key);
    const deleteImage = (key) => idb.delete("images", key);

    /** Images that no slot record refers to any more (acked, or of slots since removed).
     * Until the owner says which images it still needs, nothing is pruned. */
    let referencedKeys = async () => null;
    function setReferencedKeys(fn) {
      referencedKeys = fn;
    }

    async function pruneImages() {
      const keep = await referencedKeys();
      if (!keep) return 0;
      return (await dropImages(keep)).count;
    }

    /** The size of a stored image record in bytes (its bytes, else what its meta says). */
    function imageSize(image) {
      if (!image) return 0;
      const bytes = image.bytes;
      if (bytes && typeof bytes.byteLength === "number") return bytes.byteLength;
      const size = image.meta && image.meta.size;
      return Number.isFinite(size) && size > 0 ? size : 0;
    }

    /**
     * Delete every stored image whose key is not in `keep` (the outcomes the hub has not
     * acknowledged yet); returns how many and how many bytes. The memory governor's
     * `drop_images`, and the quota pruning above.
     */
    async function dropImages(keep) {
      let count = 0;
      let bytes = 0;
      for (const key of await idb.keys("images")) {
        if (keep.has(key)) continue;
        const image = await idb.get("images", key).catch(() => null);
        await idb.delete("images", key);
        count++;
        bytes += imageSize(image);
      }
      return { count, bytes };
    }

    // -- reference images (content-addressed: the key is the sha256 of the bytes) ----------

    /** Store a checked reference image: {sha256, name, mime, size, bytes (ArrayBuffer)}. */
    async function putReference(ref) {
      const ok = await tryWrite(`reference ${ref.sha256.slice(0, 12)}`, () => idb.put("references", ref.sha256, { ...ref, savedAt: Date.now() }), pruneImages);
      if (!ok) throw new Error(`could not store reference image ${ref.sha256}`);
    }

    const getReference = (sha256) => idb.get("references", sha256);
    const referenceKeys = () => idb.keys("references");

    /**
     * Delete every stored reference not kept; `keep` is a Set of sha256s or a function asked
     * per key just before its deletion. Returns how many went.
     */
    async function dropReferences(keep) {
      const kept = typeof keep === "function" ? keep : (key) => keep.has(key);
      let count = 0;
      for (const key of await idb.keys("references")) {
        if (kept(key)) continue;
        await idb.delete("references", key);
        count++;
      }
      return count;
    }

    async function getValue(key) {
      try {
        if (session) {
          const warm = await session.get(key);
          if (warm !== undefined) return warm;
        }
      } catch (_) {
        /* fall through to the durable copy */
      }
      return local.get(key);
    }

    async function setValue(key, value, { warm = true } = {}) {
      await tryWrite(key, () => local.set(key, value), pruneImages);
      if (warm && session) await session.set(key, value).catch(() => {});
    }

    /** Forget a value everywhere getValue looks (storage.session and storage.local). */
    async function removeValue(key) {
      if (session) await session.remove(key).catch(() => {});
      await local.remove(key);
    }

    async function setWarm(key, value) {
      if (session) await session.set(key, value).catch(() => {});
    }

    return {
      saveSlot,
      loadSlot,
      loadAllSlots,
      removeSlot,
      putImage,
      getImage,
      deleteImage,
      pruneImages,
      dropImages,
      setReferencedKeys,
      putReference,
      getReference,
      referenceKeys,
      dropReferences,
      getValue,
      setValue,
      removeValue,
      setWarm,
    };
  }

  return { createStateStore, indexedDbBackend, memoryBackend, isQuotaError, SLOT_PREFIX };
});
