/*
 * The options page: settings form, one-click pairing, live connection status, self-test.
 *
 * Storage (all chrome.storage):
 *   local.settings   {hubUrl, token, accountId, tabs, chatMode, allowUnencrypted}   (written here)
 *   session.connection, falling back to local.connection                            (read here)
 *       {state, hub, detail, since, slots: [{slot, worker_id, tab_id, health, busy, task_id}]}
 *   local.selfTest   {ts, url, results: {key: {matched, index, count}}}             (read here)
 * Messages to the service worker: {type: "ng.settingsChanged"}, {type: "ng.selfTestRequest"}.
 * Validation lives in ../lib/settings.js so the service worker applies the same rules.
 */
"use strict";

(function () {
  const S = globalThis.NovelGenSettings;
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["hubUrl", "token", "accountId", "tabs", "chatMode"];
  const TEST_TIMEOUT_MS = 6000;

  const STATE_LABELS = {
    connected: "Connected",
    connecting: "Connecting…",
    disconnected: "Disconnected",
    unpaired: "Not paired",
    error: "Error",
    unknown: "Unknown",
  };
  const STATE_SUMMARIES = {
    connected: "Connected to the NovelGen app.",
    connecting: "Trying to reach the NovelGen app…",
    disconnected: "Not connected. The app may be closed; the extension keeps retrying.",
    unpaired: "Not paired yet: enter the hub URL and token above, or open the link from `novelgen pair`.",
    error: "The extension hit a problem; see the detail below.",
    unknown: "The extension has not reported a status yet.",
  };

  const HEALTH_LABELS = {
    ok: "ok",
    loading: "loading",
    logged_out: "login required",
    unresponsive: "unresponsive",
  };

  /** Stored settings, as last loaded or saved (the form may differ until Save). */
  let stored = { ...S.DEFAULT_SETTINGS };
  /** The pairing offer from the URL fragment, until accepted or dismissed. */
  let pairing = null;
  let lastConnection = null;

  // --- small helpers ---------------------------------------------------------------------

  function announce(element, text, kind) {
    element.textContent = text;
    element.dataset.kind = kind || "info";
  }

  /** chrome.runtime.sendMessage that never rejects: nobody listening is a normal case. */
  async function sendToWorker(message) {
    try {
      return { ok: true, reply: await chrome.runtime.sendMessage(message) };
    } catch (err) {
      return { ok: false, error: String((err && err.message) || err) };
    }
  }

  function toMillis(ts) {
    if (typeof ts !== "number" || !Number.isFinite(ts)) return null;
    return ts < 1e12 ? ts * 1000 : ts; // accept epoch seconds (protocol style) or Date.now()
  }

  function formatWhen(ts) {
    const ms = toMillis(ts);
    if (ms === null) return "";
    const seconds = Math.round((Date.now() - ms) / 1000);
    let relative;
    if (seconds < 5) relative = "just now";
    else if (seconds < 60) relative = `${seconds} s ago`;
    else if (seconds < 3600) relative = `${Math.floor(seconds / 60)} min ago`;
    else if (seconds < 86400) relative = `${Math.floor(seconds / 3600)} h ago`;
    else relative = `${Math.floor(seconds / 86400)} d ago`;
    return `${relative} (${new Date(ms).toLocaleString()})`;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null || text === "" ? "—" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  // --- the form ----------------------------------------------------------------------------

  function fillForm(settings) {
    $("hubUrl").value = settings.hubUrl;
    $("token").value = settings.token;
    $("accountId").value = settings.accountId;
    $("tabs").value = String(settings.tabs);
    $("allowUnencrypted").checked = settings.allowUnencrypted === true;
    const radio = $(`chatMode-${settings.chatMode}`) || $("chatMode-per_task");
    radio.checked = true;
    updateUnencryptedField();
  }

  function readForm() {
    const mode = document.querySelector('input[name="chatMode"]:checked');
    return {
      hubUrl: $("hubUrl").value,
      token: $("token").value,
      accountId: $("accountId").value,
      tabs: $("tabs").value,
      chatMode: mode ? mode.value : "",
      allowUnencrypted: $("allowUnencrypted").checked,
    };
  }

  /** Show the consent checkbox only when it matters: ws:// to another computer. */
  function updateUnencryptedField() {
    const check = S.checkHubUrl($("hubUrl").value, true);
    const needed = check.ok && check.unencryptedRemote;
    $("allowUnencrypted-field").hidden = !needed && !$("allowUnencrypted").checked;
  }

  function clearErrors() {
    for (const field of FIELDS) {
      const message = $(`${field}-error`);
      message.hidden = true;
      message.textContent = "";
      for (const input of document.querySelectorAll(`[name="${field}"]`)) {
        input.removeAttribute("aria-invalid");
      }
    }
    $("error-summary").hidden = true;
    $("error-list").replaceChildren();
  }

  function focusTarget(field) {
    if (field === "chatMode") return document.querySelector('input[name="chatMode"]');
    return $(field);
  }

  /** Per-field messages (announced through aria-describedby) plus a linked summary. */
  function showErrors(errors) {
    clearErrors();
    if (errors.length === 0) return;
    const list = $("error-list");
    for (const { field, message } of errors) {
      const slot = $(`${field}-error`);
      if (slot) {
        slot.textContent = message;
        slot.hidden = false;
      }
      for (const input of document.querySelectorAll(`[name="${field}"]`)) {
        input.setAttribute("aria-invalid", "true");
      }
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `#${field}`;
      link.textContent = message;
      link.addEventListener("click", (event) => {
        event.preventDefault();
        const target = focusTarget(field);
        if (target) target.focus();
      });
      item.appendChild(link);
      list.appendChild(item);
    }
    const hubError = errors.find((e) => e.field === "hubUrl");
    if (hubError && /unencrypted/.test(hubError.message)) {
      $("allowUnencrypted-field").hidden = false;
    }
    $("error-summary").hidden = false;
    $("error-summary").focus();
  }

  async function loadSettings() {
    const data = await chrome.storage.local.get(S.STORAGE_KEY);
    const saved = data[S.STORAGE_KEY];
    // Keep even an invalid stored value visible so the user can fix it.
    stored = saved && typeof saved === "object" ? { ...S.DEFAULT_SETTINGS, ...saved } : { ...S.DEFAULT_SETTINGS };
    return stored;
  }

  async function save(values, statusElement) {
    const result = S.validateSettings(values);
    if (!result.ok) {
      showErrors(result.errors);
      announce(statusElement, `Not saved: ${result.errors.length} problem(s) to fix.`, "error");
      return false;
    }
    clearErrors();
    await chrome.storage.local.set({ [S.STORAGE_KEY]: result.settings });
    stored = result.settings;
    fillForm(stored);
    const sent = await sendToWorker({ type: "ng.settingsChanged" });
    announce(
      statusElement,
      sent.ok ? "Saved. The extension is reconnecting with the new settings." : "Saved.",
      "ok",
    );
    return true;
  }

  // --- one-click pairing -------------------------------------------------------------------

  function readPairingFromUrl() {
    const offer = S.parsePairingHash(location.hash);
    if (location.hash) {
      // The token must not linger in the history or in a bookmarked URL.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return offer;
  }

  function showPairing(offer) {
    pairing = {
      hubUrl: offer.hubUrl || stored.hubUrl,
      token: offer.token || stored.token,
    };
    $("pair-hub").textContent = pairing.hubUrl;
    $("pair-token").textContent = pairing.token ? S.maskToken(pairing.token) : "(none in the link)";
    const check = S.validateSettings({ ...stored, ...pairing });
    const problems = check.errors.filter((e) => e.field === "hubUrl" || e.field === "token");
    $("pair-problem").hidden = problems.length === 0;
    $("pair-problem").textContent = problems.map((e) => e.message).join(" ");
    $("pair-banner").hidden = false;
    fillForm({ ...stored, ...pairing });
    $("pair-accept").focus();
  }

  function hidePairing() {
    pairing = null;
    $("pair-banner").hidden = true;
  }

  // --- test connection ---------------------------------------------------------------------

  /**
   * Open a WebSocket to the hub with the form's URL and token and say hello as a *client*
   * (docs/protocol.md): a welcome proves the hub is reachable, accepts this extension's
   * origin and the token, without registering a worker or touching any job.
   */
  function testConnection(hubUrl, token) {
    return new Promise((resolve) => {
      let opened = false;
      let settled = false;
      let socket;
      const finish = (ok, message) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          if (socket && socket.readyState <= 1) socket.close(1000);
        } catch (_err) {
          /* already closing */
        }
        resolve({ ok, message });
      };
      const timer = setTimeout(
        () => finish(false, opened ? "The hub did not answer in time." : "No answer from the hub (timed out)."),
        TEST_TIMEOUT_MS,
      );
      try {
        socket = new WebSocket(hubUrl);
      } catch (err) {
        finish(false, `Cannot connect: ${err.message}`);
        return;
      }
      socket.onopen = () => {
        opened = true;
        const version = chrome.runtime.getManifest().version;
        socket.send(
          JSON.stringify({
            v: 1,
            type: "hello",
            token,
            role: "client",
            versions: [1],
            agent: `novelgen-extension-options/${version}`,
          }),
        );
      };
      socket.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (_err) {
          finish(false, "The server at this address does not speak the NovelGen protocol.");
          return;
        }
        if (message.type === "welcome") {
          try {
            socket.send(JSON.stringify({ v: message.version || 1, type: "bye", reason: "user" }));
          } catch (_err) {
            /* closing anyway */
          }
          const server = message.server ? ` (${message.server})` : "";
          finish(true, `Connection works: the hub${server} accepted the token.`);
        } else if (message.type === "error") {
          finish(false, `The hub answered with an error: ${message.message || message.code}.`);
        }
      };
      socket.onclose = (event) => finish(false, S.describeClose(event.code, opened));
      // onerror is always followed by onclose, which carries the code.
    });
  }

  // --- connection status -------------------------------------------------------------------

  async function readConnection() {
    let fromSession;
    try {
      fromSession = (await chrome.storage.session.get("connection")).connection;
    } catch (_err) {
      fromSession = undefined; // storage.session unavailable to this context
    }
    if (fromSession) return fromSession;
    return (await chrome.storage.local.get("connection")).connection || null;
  }

  /** "Feature flags: multi_tab off (set by the hub), …": the flags in force, from the service worker. */
  function describeFlags(connection) {
    const flags = connection && connection.flags && typeof connection.flags === "object" ? connection.flags : null;
    if (!flags) return "";
    const fromHub = new Set(Array.isArray(connection.flags_from_hub) ? connection.flags_from_hub : []);
    const parts = Object.entries(flags).map(
      ([name, value]) => `${name} ${value ? "on" : "off"}${fromHub.has(name) ? " (set by the hub)" : ""}`
    );
    return `Feature flags: ${parts.join(", ")}.`;
  }

  function renderConnection(connection) {
    lastConnection = connection;
    const state = connection && STATE_LABELS[connection.state] ? connection.state : "unknown";
    const badge = $("status-badge");
    badge.dataset.state = state;
    badge.textContent = STATE_LABELS[state];
    let summary = STATE_SUMMARIES[state];
    if (connection && connection.hub) summary += ` Hub: ${connection.hub}.`;
    if (connection && connection.since) summary += ` Since ${formatWhen(connection.since)}.`;
    $("status-summary").textContent = summary;

    const detail = $("status-detail");
    detail.hidden = !(connection && connection.detail);
    detail.textContent = connection && connection.detail ? String(connection.detail) : "";

    const flags = $("status-flags");
    const flagText = describeFlags(connection);
    flags.hidden = !flagText;
    flags.textContent = flagText;

    const slots = connection && Array.isArray(connection.slots) ? connection.slots : [];
    const body = $("slots-body");
    body.replaceChildren();
    for (const slot of slots) {
      const row = document.createElement("tr");
      cell(row, slot.slot);
      cell(row, slot.worker_id, "mono");
      cell(row, slot.tab_id, "mono");
      cell(row, slot.connection); // per-slot WebSocket state, when the service worker gives it
      const health = cell(row, HEALTH_LABELS[slot.health] || slot.health);
      health.dataset.health = slot.health || "";
      cell(row, slot.busy ? "yes" : "no");
      const task = slot.task_id ? `${slot.task_id}${slot.stage ? ` · ${slot.stage}` : ""}` : "";
      cell(row, task, "mono");
      body.appendChild(row);
    }
    $("slots-table").hidden = slots.length === 0;
    $("slots-empty").hidden = slots.length !== 0;
  }

  // --- self-test ---------------------------------------------------------------------------

  function renderSelfTest(selfTest) {
    const table = $("selftest-table");
    const meta = $("selftest-meta");
    const body = $("selftest-body");
    body.replaceChildren();
    if (!selfTest || typeof selfTest !== "object" || !selfTest.results) {
      table.hidden = true;
      meta.hidden = false;
      meta.textContent = "No self-test has run yet.";
      return;
    }
    const entries = Object.entries(selfTest.results);
    const found = entries.filter(([, r]) => r && r.matched).length;
    meta.hidden = false;
    meta.textContent =
      `Last run ${formatWhen(selfTest.ts) || "at an unknown time"}` +
      (selfTest.url ? ` on ${selfTest.url}` : "") +
      `: ${found} of ${entries.length} found.`;
    for (const [key, result] of entries.sort(([a], [b]) => a.localeCompare(b))) {
      const row = document.createElement("tr");
      const r = result || {};
      cell(row, key, "mono");
      const verdict = cell(row, r.matched ? "found" : "not found");
      verdict.dataset.result = r.matched ? "ok" : "missing";
      cell(row, r.matched, "mono");
      cell(row, Number.isInteger(r.index) && r.index >= 0 ? `#${r.index + 1}` : "");
      cell(row, r.count);
      body.appendChild(row);
    }
    table.hidden = entries.length === 0;
  }

  async function runSelfTest() {
    const status = $("selftest-status");
    announce(status, "Running…", "info");
    const sent = await sendToWorker({ type: "ng.selfTestRequest" });
    if (!sent.ok) {
      announce(status, `The extension's background did not answer: ${sent.error}`, "error");
      return;
    }
    const reply = sent.reply;
    if (reply && (reply.error || reply.ok === false)) {
      announce(status, `Self-test could not run: ${reply.error || reply.reason || "no ChatGPT tab open"}.`, "error");
      return;
    }
    if (reply && reply.results) renderSelfTest(reply);
    announce(status, "Self-test finished; results below.", "ok");
  }

  // --- wiring ------------------------------------------------------------------------------

  function wire() {
    $("settings-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      await save(readForm(), $("form-status"));
    });

    $("hubUrl").addEventListener("input", updateUnencryptedField);
    $("hubUrl").addEventListener("change", updateUnencryptedField);

    $("token-toggle").addEventListener("click", () => {
      const input = $("token");
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      $("token-toggle").textContent = show ? "Hide" : "Show";
      $("token-toggle").setAttribute("aria-pressed", String(show));
    });

    $("test-connection").addEventListener("click", async () => {
      const status = $("form-status");
      const result = S.validateSettings(readForm());
      const blocking = result.errors.filter((e) => e.field === "hubUrl" || e.field === "token");
      if (blocking.length) {
        showErrors(blocking);
        announce(status, "Fix the hub URL and token first.", "error");
        return;
      }
      const button = $("test-connection");
      button.disabled = true;
      announce(status, `Testing ${result.settings.hubUrl}…`, "info");
      try {
        const outcome = await testConnection(result.settings.hubUrl, result.settings.token);
        announce(status, outcome.message, outcome.ok ? "ok" : "error");
      } finally {
        button.disabled = false;
      }
    });

    $("pair-accept").addEventListener("click", async () => {
      if (!pairing) return;
      const ok = await save({ ...readForm(), ...pairing }, $("form-status"));
      if (ok) {
        hidePairing();
        $("hubUrl").focus();
      }
    });
    $("pair-dismiss").addEventListener("click", () => {
      hidePairing();
      fillForm(stored);
      clearErrors();
      announce($("form-status"), "Pairing link ignored; nothing was saved.", "info");
    });

    $("run-selftest").addEventListener("click", runSelfTest);

    chrome.storage.onChanged.addListener((changes, area) => {
      if (changes.connection && (area === "session" || area === "local")) {
        // storage.session wins; re-read so a local change does not hide a session value.
        readConnection().then(renderConnection);
      }
      if (area === "local" && changes.selfTest) renderSelfTest(changes.selfTest.newValue);
      if (area === "local" && changes[S.STORAGE_KEY] && !pairing) {
        const next = changes[S.STORAGE_KEY].newValue;
        if (next && JSON.stringify(next) !== JSON.stringify(stored)) {
          stored = { ...S.DEFAULT_SETTINGS, ...next };
          announce($("form-status"), "Settings were changed elsewhere; the form shows them now.", "info");
          fillForm(stored);
        }
      }
    });

    // Keep "… ago" fresh.
    setInterval(() => renderConnection(lastConnection), 30000);
  }

  async function main() {
    const manifest = chrome.runtime.getManifest();
    $("version").textContent = `${manifest.name} ${manifest.version}`;
    $("extension-id").textContent = chrome.runtime.id;
    const offer = readPairingFromUrl();
    wire();
    fillForm(await loadSettings());
    if (offer) showPairing(offer);
    renderConnection(await readConnection());
    renderSelfTest((await chrome.storage.local.get("selfTest")).selfTest);
  }

  main().catch((err) => {
    announce($("form-status"), `The settings page failed to load: ${err.message}`, "error");
  });
})();
