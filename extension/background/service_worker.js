// NovelGen's service worker: the entry point.
//
// MV3 rules shape this file. The worker is stopped after 30 s without events and started
// again by the next event, so (1) every listener is registered synchronously at top level —
// a listener added later misses the event that woke the worker — and (2) each handler waits
// for one init promise (`ready`) that rebuilds the state from storage before acting.
/* global NovelGenProtocol, NovelGenBackoff, NovelGenInflight, NovelGenSelectorTable, NovelGenSettings,
   NovelGenStateStore, NovelGenHubConnection, NovelGenOrchestrator */
"use strict";

importScripts(
  "/lib/protocol.js",
  "/lib/backoff.js",
  "/lib/inflight.js",
  "/lib/selector_table.js",
  "/lib/settings.js",
  "/background/state_store.js",
  "/background/hub_connection.js",
  "/background/orchestrator.js"
);

const KEEPALIVE_ALARM = "novelgen-keepalive";
const KEEPALIVE_MINUTES = 0.5; // 30 s: the shortest period Chrome allows
const LOG_LIMIT = 200;
const instanceId =
  "i-" + Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
const recentLog = [];

function log(text) {
  const line = `${new Date().toISOString()} ${text}`;
  recentLog.push(line);
  if (recentLog.length > LOG_LIMIT) recentLog.shift();
  console.log(`[novelgen] ${text}`);
}

/** The alarm only if absent: creating it at every start would push the next wake-up away. */
async function ensureKeepaliveAlarm() {
  const existing = await chrome.alarms.get(KEEPALIVE_ALARM);
  if (!existing) await chrome.alarms.create(KEEPALIVE_ALARM, { periodInMinutes: KEEPALIVE_MINUTES });
}

/**
 * The stored settings, validated. A missing token only means "not paired yet"; any other
 * error (settings edited by hand, a hub URL that is no longer allowed) is reported as the
 * connection state instead of connecting somewhere the user did not choose.
 */
async function loadSettings(store) {
  const stored = await store.getValue(NovelGenSettings.STORAGE_KEY || "settings");
  const { settings, errors } = NovelGenSettings.validateSettings({ ...NovelGenSettings.DEFAULT_SETTINGS, ...(stored || {}) });
  const serious = errors.filter((e) => !(e.field === "token" && !settings.token));
  for (const e of serious) log(`settings: ${e.field}: ${e.message}`);
  return { ...settings, error: serious.length ? `settings: ${serious.map((e) => `${e.field}: ${e.message}`).join(" ")}` : null };
}

async function installId(store) {
  let id = await store.getValue("installId");
  if (!id) {
    id = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
    await store.setValue("installId", id);
  }
  return id;
}

async function init() {
  await ensureKeepaliveAlarm();
  let orchestrator = null;
  const store = NovelGenStateStore.createStateStore({
    session: chrome.storage.session,
    local: chrome.storage.local,
    idb: NovelGenStateStore.indexedDbBackend(indexedDB),
    log,
    onQuota: (detail) => {
      log(detail);
      // Tell the hub through every connected slot's status detail.
      if (orchestrator) for (const slot of orchestrator.slots.values()) {
        slot.healthDetail = detail;
        slot.sendStatus(true);
      }
    },
  });
  const settings = await loadSettings(store);
  orchestrator = new NovelGenOrchestrator.Orchestrator({
    chrome,
    store,
    lib: {
      protocol: NovelGenProtocol,
      inflight: NovelGenInflight,
      backoff: NovelGenBackoff,
      HubConnection: NovelGenHubConnection.HubConnection,
      selectorTable: NovelGenSelectorTable,
    },
    WebSocketImpl: WebSocket,
    settings,
    installId: await installId(store),
    instanceId,
    hubConfig: (await store.getValue("hubConfig")) || null,
    log,
  });
  // Images the slots still need; everything else in IndexedDB may go when space runs out
  // (null: not known now, so nothing goes).
  store.setReferencedKeys(() => orchestrator.referencedImageKeys().catch(() => null));
  log(`service worker ${instanceId} starting (${settings.token ? "paired" : "not paired"}, ${settings.hubUrl})`);
  await orchestrator.start();
  return orchestrator;
}

const ready = init().catch((err) => {
  log(`start-up failed: ${err && err.stack ? err.stack : err}`);
  throw err;
});

// Messages from content scripts (our tabs) and from the options page.
chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (!msg || typeof msg.type !== "string" || !msg.type.startsWith("ng.")) return false;
  ready
    .then(async (orch) => {
      switch (msg.type) {
        case "ng.settingsChanged":
          await orch.restart(await loadSettings(orch.store));
          return { ok: true };
        case "ng.selfTestRequest":
          return orch.selfTest();
        case "ng.status":
          return { ok: true, status: orch.connectionStatus(), log: recentLog.slice(-50) };
        default:
          return orch.onContentMessage(msg, sender);
      }
    })
    .then(
      (reply) => sendResponse(reply),
      (err) => sendResponse({ ok: false, error: String(err && err.message ? err.message : err) })
    );
  return true; // the answer comes asynchronously
});

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name !== KEEPALIVE_ALARM) return;
  // Waking up is the point: init (if the worker was stopped) reconnects everything.
  ready.then((orch) => orch.checkHealth()).catch((err) => log(`health check: ${err.message}`));
});

chrome.tabs.onRemoved.addListener((tabId) => {
  ready.then((orch) => orch.onTabRemoved(tabId)).catch((err) => log(`tab removed: ${err.message}`));
});

chrome.tabs.onUpdated.addListener((tabId, changeInfo) => {
  if (!("discarded" in changeInfo) && !("url" in changeInfo)) return;
  ready.then((orch) => orch.onTabUpdated(tabId, changeInfo)).catch((err) => log(`tab updated: ${err.message}`));
});

chrome.runtime.onInstalled.addListener((details) => {
  ready
    .then(async (orch) => {
      if (details.reason === "install" && !orch.paired()) await chrome.runtime.openOptionsPage();
    })
    .catch(() => {});
});

// The toolbar button opens the settings and status page (there is no popup).
chrome.action.onClicked.addListener(() => {
  chrome.runtime.openOptionsPage().catch(() => {});
});

chrome.runtime.onStartup.addListener(() => {
  ready.catch(() => {}); // the browser started: init runs; nothing else to do
});
