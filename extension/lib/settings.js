/*
 * NovelGen extension settings: defaults, validation and the pairing link.
 *
 * One pure file shared by the options page (<script>), the service worker (importScripts)
 * and Node's test runner (require), so the page can never save something the service
 * worker would then refuse. No chrome.* here.
 *
 * Stored in chrome.storage.local under "settings":
 *   {hubUrl, token, accountId, tabs, chatMode, allowUnencrypted}
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenSettings = api;
})(globalThis, function () {
  "use strict";

  /** Same rules as the hub (novelgen_desktop/protocol/messages.py TOKEN and ID). */
  const TOKEN_PATTERN = /^[A-Za-z0-9_-]{22,128}$/;
  const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
  const MIN_TABS = 1;
  const MAX_TABS = 10;
  const CHAT_MODES = Object.freeze(["per_task", "per_sequence"]);
  const STORAGE_KEY = "settings";

  const DEFAULT_SETTINGS = Object.freeze({
    hubUrl: "ws://127.0.0.1:8765/",
    token: "",
    accountId: "", // empty: the service worker uses chrome-<installId>
    tabs: 1,
    chatMode: "per_task",
    // ws:// to a host other than this computer sends the token in clear text: only with
    // the user's explicit consent (the checkbox on the options page).
    allowUnencrypted: false,
  });

  /**
   * True for names that can only mean this computer: a ws:// URL to them never leaves the
   * machine, so it needs no encryption. `host` is URL.hostname (IPv6 in brackets).
   */
  function isLoopbackHost(host) {
    const h = String(host || "").toLowerCase().replace(/\.$/, "");
    if (h === "localhost" || h.endsWith(".localhost")) return true;
    if (h === "[::1]") return true;
    if (/^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(h)) return true; // ::ffff:127.x.y.z
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
    return Boolean(m) && Number(m[1]) === 127 && m.slice(2).every((n) => Number(n) <= 255);
  }

  /**
   * Check a hub URL. Returns {ok, url, message, unencryptedRemote}: `url` is the normalised
   * form (what WebSocket will be given); `unencryptedRemote` says the URL is ws:// to
   * another machine (valid only with allowUnencrypted).
   */
  function checkHubUrl(text, allowUnencrypted) {
    const raw = typeof text === "string" ? text.trim() : "";
    const fail = (message) => ({ ok: false, url: raw, message, unencryptedRemote: false });
    if (!raw) return fail("Enter the hub URL that `novelgen pair` shows, e.g. ws://127.0.0.1:8765/.");
    let url;
    try {
      url = new URL(raw);
    } catch (_err) {
      return fail("Not a URL. Expected something like ws://127.0.0.1:8765/.");
    }
    if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      return fail(`The hub URL must start with ws:// or wss://, not ${url.protocol}//.`);
    }
    if (!url.hostname) return fail("The hub URL has no host.");
    if (url.username || url.password) {
      return fail("Remove the user name or password from the URL: the token is the credential.");
    }
    if (url.hash) return fail("Remove the #… part: a WebSocket URL cannot have one.");
    const unencryptedRemote = url.protocol === "ws:" && !isLoopbackHost(url.hostname);
    if (unencryptedRemote && !allowUnencrypted) {
      return {
        ok: false,
        url: url.href,
        unencryptedRemote,
        message:
          `ws:// to ${url.hostname} is unencrypted: anyone on the network can read the token. ` +
          "Use wss://, or tick “I know this connection is unencrypted”.",
      };
    }
    return { ok: true, url: url.href, message: "", unencryptedRemote };
  }

  function toInteger(value) {
    if (typeof value === "number") return Number.isInteger(value) ? value : NaN;
    if (typeof value === "string" && /^\s*\d{1,3}\s*$/.test(value)) return Number(value);
    return NaN;
  }

  /**
   * Validate and normalise settings (missing fields take their defaults; unknown fields are
   * dropped). Returns {ok, errors: [{field, message}], settings}; `settings` is the
   * normalised object even when not ok, so a form can be refilled from it.
   */
  function validateSettings(obj) {
    const input = obj && typeof obj === "object" ? obj : {};
    const pick = (key) => (input[key] === undefined || input[key] === null ? DEFAULT_SETTINGS[key] : input[key]);
    const errors = [];
    const settings = {};

    settings.allowUnencrypted = pick("allowUnencrypted") === true;

    const hub = checkHubUrl(typeof pick("hubUrl") === "string" ? pick("hubUrl") : "", settings.allowUnencrypted);
    settings.hubUrl = hub.url;
    if (!hub.ok) errors.push({ field: "hubUrl", message: hub.message });

    const token = typeof pick("token") === "string" ? pick("token").trim() : "";
    settings.token = token;
    if (!token) {
      errors.push({ field: "token", message: "Paste the pairing token that `novelgen pair` shows." });
    } else if (!TOKEN_PATTERN.test(token)) {
      const bad = token.replace(/[A-Za-z0-9_-]/g, "");
      errors.push({
        field: "token",
        message:
          bad.length > 0
            ? `The token may only contain A–Z a–z 0–9 _ - (found “${Array.from(new Set(bad)).join("")}”).`
            : `The token must be 22–128 characters long (this one has ${token.length}).`,
      });
    }

    const account = typeof pick("accountId") === "string" ? pick("accountId").trim() : "";
    settings.accountId = account;
    if (account && !ID_PATTERN.test(account)) {
      errors.push({
        field: "accountId",
        message:
          "Use up to 128 letters, digits and . _ : @ -, starting with a letter or digit " +
          "(or leave empty for automatic).",
      });
    }

    const tabs = toInteger(pick("tabs"));
    settings.tabs = Number.isNaN(tabs) ? DEFAULT_SETTINGS.tabs : tabs;
    if (Number.isNaN(tabs) || tabs < MIN_TABS || tabs > MAX_TABS) {
      errors.push({ field: "tabs", message: `Choose a whole number of tabs from ${MIN_TABS} to ${MAX_TABS}.` });
    }

    const mode = pick("chatMode");
    settings.chatMode = CHAT_MODES.includes(mode) ? mode : DEFAULT_SETTINGS.chatMode;
    if (!CHAT_MODES.includes(mode)) {
      errors.push({ field: "chatMode", message: `Chat mode must be one of: ${CHAT_MODES.join(", ")}.` });
    }

    return { ok: errors.length === 0, errors, settings };
  }

  function decodePart(text) {
    try {
      return decodeURIComponent(text);
    } catch (_err) {
      return text; // a stray % in a hand-edited link: keep it as typed, validation reports it
    }
  }

  /**
   * Read the one-click pairing link's fragment, `#hub=URL&token=TOKEN` (what `novelgen pair`
   * prints; the URL is not percent-encoded there, but an encoded one is accepted too).
   * Returns {hubUrl, token} (either may be null when absent) or null when the fragment
   * carries neither. `+` stays `+`: this is not form encoding.
   */
  function parsePairingHash(hash) {
    const text = String(hash || "").replace(/^#/, "");
    if (!text) return null;
    const out = { hubUrl: null, token: null };
    let found = false;
    for (const part of text.split("&")) {
      const eq = part.indexOf("=");
      if (eq < 0) continue;
      const key = decodePart(part.slice(0, eq));
      const value = decodePart(part.slice(eq + 1)).trim();
      if (key === "hub") {
        out.hubUrl = value;
        found = true;
      } else if (key === "token") {
        out.token = value;
        found = true;
      }
    }
    return found ? out : null;
  }

  /** Show the first and last characters only: enough to compare with `novelgen pair`. */
  function maskToken(token) {
    const t = String(token || "");
    if (t.length <= 8) return "•".repeat(t.length);
    return `${t.slice(0, 4)}${"•".repeat(8)}${t.slice(-4)}`;
  }

  /**
   * A human explanation of how a "Test connection" WebSocket ended, from the close code
   * (docs/protocol.md "Close codes"). `opened` says whether the upgrade succeeded: Chrome
   * reports a refused handshake (HTTP 403: origin not paired) and an unreachable hub the
   * same way, as 1006 before any open.
   */
  function describeClose(code, opened) {
    switch (code) {
      case 4001:
        return "The hub refused the token. Copy it again from `novelgen pair` (it changes with --regenerate).";
      case 4002:
        return "The hub timed out waiting for the greeting.";
      case 4009:
        return "The hub speaks a different protocol version: update the extension or the app.";
      case 4008:
        return "The hub closed the connection for a policy violation.";
      case 1001:
        return "The hub is shutting down.";
      case 1011:
        return "The hub failed (internal error); see its log.";
      default:
        if (!opened) {
          return (
            "Could not reach the hub. Is `novelgen serve` running at this address and port? " +
            "If it is, the hub may not accept this extension's id (see `novelgen pair`)."
          );
        }
        return `The connection closed (code ${code}).`;
    }
  }

  return Object.freeze({
    STORAGE_KEY,
    DEFAULT_SETTINGS,
    TOKEN_PATTERN,
    ID_PATTERN,
    MIN_TABS,
    MAX_TABS,
    CHAT_MODES,
    isLoopbackHost,
    checkHubUrl,
    validateSettings,
    parsePairingHash,
    maskToken,
    describeClose,
  });
});
