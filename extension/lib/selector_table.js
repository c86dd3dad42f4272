/*
 * NovelGen selector table: every element the ChatGPT driver needs, found through an ordered
 * list of selectors kept as data, so that the desktop hub can push a newer table when
 * chatgpt.com changes, without a new extension release.
 *
 * A table is {version: <int>, keys: {<key>: [selector, ...]}} where a selector is either
 *   - a CSS selector string, or
 *   - {css: "<CSS selector>", text: "<regular expression>"}: the elements matching `css` whose
 *     visible text (textContent, whitespace collapsed; else their aria-label) matches `text`
 *     (case-insensitive). Buttons such as "Image 1", "Skip" or "Try again" have no stable
 *     attributes, only their label.
 * The first selector of a key that matches anything wins; its index tells the desktop (through
 * selfTest) which fallback the page needed, an early warning that the site changed.
 *
 * DOM-agnostic: only `root.querySelectorAll`, `textContent` and `getAttribute` are used, so Node
 * tests run it on a tiny fake tree. Loaded by the service worker (importScripts), the content
 * script (manifest) and Node (require).
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenSelectorTable = api;
})(globalThis, function () {
  "use strict";

  /** Keys the driver relies on; a pushed table may override them and may add others. */
  const DEFAULT_TABLE = deepFreeze({
    version: 1,
    keys: {
      composer: [
        '#prompt-textarea[contenteditable="true"]',
        "div#prompt-textarea.ProseMirror",
        'div.ProseMirror[contenteditable="true"]',
        '[data-type="unified-composer"] [contenteditable="true"][role="textbox"]',
        "textarea#prompt-textarea",
      ],
      sendButton: [
        'button[data-testid="send-button"]',
        'button[aria-label="Send prompt"]',
        "#composer-submit-button",
      ],
      stopButton: [
        'button[data-testid="stop-button"]',
        'button[aria-label="Stop generating"]',
        'button[aria-label="Stop streaming"]',
      ],
      newChatLink: [
        'a[data-testid="create-new-chat-button"]',
        '[data-testid="create-new-chat-button"]',
        { css: "a", text: "^New chat$" },
      ],
      turn: [
        'article[data-testid^="conversation-turn"]',
        '[data-testid^="conversation-turn"]',
      ],
      // Turn-level markers first (one element per turn); the message-level attribute is the
      // fallback. The driver maps every match to its enclosing `turn` element.
      userTurn: [
        'article[data-turn="user"]',
        '[data-message-author-role="user"]',
      ],
      assistantTurn: [
        'article[data-turn="assistant"]',
        '[data-message-author-role="assistant"]',
      ],
      imageLoading: [
        '[data-testid="image-gen-loading-state"]',
        '[data-testid^="image-gen-loading-state"]',
        '[aria-label="Generating image..."]',
        '[aria-label^="Generating image"]',
      ],
      multigen: ['[data-testid="image-paragen-multigen"]'],
      // Searched inside the multigen block: the first candidate is the one we keep.
      multigenPick: [
        { css: "button", text: "^Image 1$" },
        { css: '[role="button"]', text: "^Image 1$" },
      ],
      generatedImage: [
        'img[alt^="Generated image"]',
        '[id^="image-"] img',
        'img[src*="/backend-api/estuary/content?id=file"]',
        'img[src*="files.oaiusercontent.com"]',
      ],
      loginButton: [
        'button[data-testid="login-button"]',
        'a[data-testid="login-button"]',
        { css: "button", text: "^Log in$" },
        { css: "a", text: "^Log in$" },
      ],
      loginMarker: [
        'form[action*="/auth/login"]',
        '[data-testid="login-form"]',
      ],
      cloudflare: [
        "#challenge-form",
        "#challenge-running",
        "#challenge-stage",
        "#cf-challenge-running",
        'iframe[src*="challenges.cloudflare.com"]',
        'script[src*="/cdn-cgi/challenge-platform/"]',
        '[name="cf-turnstile-response"]',
      ],
      compareDialog: [
        { css: '[role="dialog"]', text: "Compare responses|Which response do you prefer" },
        { css: '[data-testid="modal-compare-responses"]', text: "." },
      ],
      // Searched inside the compare dialog.
      dialogSkip: [
        { css: "button", text: "^Skip$" },
        'button[data-testid="close-button"]',
        'button[aria-label="Close"]',
        { css: "button", text: "^Close$" },
      ],
      // Searched inside a new assistant turn.
      tryAgain: [
        { css: "button", text: "^Try again$" },
        { css: '[role="button"]', text: "^Try again$" },
      ],
      main: ["main", '[role="main"]', "#main"],
      // Attachments (reference images). The hidden file input, searched in the composer's
      // form first, then in main.
      fileInput: [
        'form input[type="file"]',
        'input[type="file"][accept*="image"]',
        'input[type="file"]',
      ],
      // Searched in the composer's form: one preview per attached file (counted through the
      // first selector that matches), an indicator while an upload runs, and an error shown
      // for a refused upload (anywhere: the site may show it as a toast).
      attachmentPreview: [
        '[data-testid="file-thumbnail"]',
        '[data-testid="attachment-preview"]',
        'img[src^="blob:"]',
      ],
      attachmentUploading: [
        '[data-testid="file-thumbnail"] [role="progressbar"]',
        '[data-testid="file-thumbnail"][aria-busy="true"]',
        '[role="progressbar"]',
      ],
      attachmentError: [
        '[data-testid="attachment-error"]',
        { css: 'form [role="alert"]', text: "." },
        { css: '[role="alert"]', text: "upload|too large|file type|unsupported|not supported" },
      ],
    },
  });

  const SELECTOR_FIELDS = ["css", "text"];

  // The defaults are shared by every caller; freezing them keeps one caller's edit from
  // silently changing another's table (mergeTables returns copies).
  function deepFreeze(value) {
    if (value && typeof value === "object") {
      Object.values(value).forEach(deepFreeze);
      Object.freeze(value);
    }
    return value;
  }

  function isPlainObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function describe(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "an array";
    if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
    return `a ${typeof value}`;
  }

  /** Errors of one selector entry, as strings without the key/index prefix. */
  function selectorErrors(selector) {
    if (typeof selector === "string") {
      return selector.trim() ? [] : ["expected a non-empty CSS selector string"];
    }
    if (!isPlainObject(selector)) {
      return [`expected a CSS string or {css, text}, got ${describe(selector)}`];
    }
    const errors = [];
    for (const field of Object.keys(selector)) {
      if (!SELECTOR_FIELDS.includes(field)) errors.push(`unknown field "${field}" (expected css, text)`);
    }
    if (typeof selector.css !== "string" || !selector.css.trim()) {
      errors.push(`"css" must be a non-empty string, got ${describe(selector.css)}`);
    }
    if (selector.text !== undefined) {
      if (typeof selector.text !== "string" || !selector.text) {
        errors.push(`"text" must be a non-empty regular expression string, got ${describe(selector.text)}`);
      } else {
        try {
          new RegExp(selector.text, "i");
        } catch (error) {
          errors.push(`"text" is not a valid regular expression: ${error.message}`);
        }
      }
    }
    return errors;
  }

  /**
   * Checks a table (typically one pushed by the hub) before it is used.
   * Returns a list of errors, each {key, index, message} (key/index null when they do not
   * apply); empty when the table is usable. `toString` of each error reads well in a log.
   */
  function validateTable(table) {
    const errors = [];
    const add = (key, index, message) =>
      errors.push({
        key,
        index,
        message,
        toString() {
          const where = key === null ? "table" : index === null ? `keys.${key}` : `keys.${key}[${index}]`;
          return `${where}: ${message}`;
        },
      });
    if (!isPlainObject(table)) {
      add(null, null, `expected an object {version, keys}, got ${describe(table)}`);
      return errors;
    }
    if (!Number.isInteger(table.version) || table.version < 0) {
      add(null, null, `"version" must be a non-negative integer, got ${describe(table.version)}`);
    }
    if (!isPlainObject(table.keys)) {
      add(null, null, `"keys" must be an object of selector lists, got ${describe(table.keys)}`);
      return errors;
    }
    for (const [key, selectors] of Object.entries(table.keys)) {
      if (!Array.isArray(selectors)) {
        add(key, null, `expected an array of selectors, got ${describe(selectors)}`);
        continue;
      }
      if (selectors.length === 0) add(key, null, "expected at least one selector, got an empty list");
      selectors.forEach((selector, index) => {
        for (const message of selectorErrors(selector)) add(key, index, message);
      });
    }
    return errors;
  }

  function copyTable(table) {
    return JSON.parse(JSON.stringify({ version: table.version, keys: table.keys }));
  }

  /**
   * The table to use given the built-in defaults and a pushed table.
   * A pushed table replaces the default selector lists of the keys it names and keeps its
   * other keys (a newer driver may know keys this release does not). It is used only if its
   * version is higher than the defaults' (a table older than this release's is stale) and it
   * validates; otherwise a copy of the defaults is returned. The result's `version` is the
   * pushed one when it was used.
   */
  function mergeTables(defaults, pushed) {
    const merged = copyTable(defaults);
    if (!pushed || validateTable(pushed).length > 0) return merged;
    if (!(pushed.version > defaults.version)) return merged;
    const keys = JSON.parse(JSON.stringify(pushed.keys));
    return { version: pushed.version, keys: Object.assign(merged.keys, keys) };
  }

  function normalizedText(element) {
    return String(element.textContent || "").replace(/\s+/g, " ").trim();
  }

  // Compiled patterns are cached: tables are data and the same few regexps run many times a
  // second while the driver waits.
  const regexCache = new Map();
  function textPattern(source) {
    let pattern = regexCache.get(source);
    if (!pattern) {
      pattern = new RegExp(source, "i");
      regexCache.set(source, pattern);
    }
    return pattern;
  }

  /** Elements under `root` matched by one selector entry, in document order. */
  function matchSelector(root, selector) {
    const css = typeof selector === "string" ? selector : selector && selector.css;
    if (!root || typeof root.querySelectorAll !== "function" || typeof css !== "string") return [];
    let elements;
    try {
      elements = Array.from(root.querySelectorAll(css));
    } catch (error) {
      // A selector the browser cannot parse (e.g. a newer CSS feature) is a miss, not a crash:
      // the next fallback gets its chance.
      return [];
    }
    if (typeof selector === "string" || selector.text === undefined) return elements;
    let pattern;
    try {
      pattern = textPattern(selector.text);
    } catch (error) {
      return [];
    }
    return elements.filter((element) => {
      if (pattern.test(normalizedText(element))) return true;
      const label = typeof element.getAttribute === "function" ? element.getAttribute("aria-label") : null;
      return typeof label === "string" && pattern.test(label.trim());
    });
  }

  function selectorsOf(table, key) {
    const list = table && table.keys && table.keys[key];
    return Array.isArray(list) ? list : [];
  }

  /** The first element of the first selector of `key` that matches: {element, selector, index}. */
  function findFirst(root, table, key) {
    const selectors = selectorsOf(table, key);
    for (let index = 0; index < selectors.length; index++) {
      const elements = matchSelector(root, selectors[index]);
      if (elements.length > 0) return { element: elements[0], selector: selectors[index], index };
    }
    return null;
  }

  /**
   * Every element matched by any selector of `key`, without duplicates, each as
   * {element, selector, index} with the first selector that matched it. Ordered by selector
   * index, then document order.
   */
  function findAll(root, table, key) {
    const seen = new Set();
    const found = [];
    selectorsOf(table, key).forEach((selector, index) => {
      for (const element of matchSelector(root, selector)) {
        if (seen.has(element)) continue;
        seen.add(element);
        found.push({ element, selector, index });
      }
    });
    return found;
  }

  /**
   * For each key: which selector matched first (null if none), its index, and how many
   * elements it matched. Sent to the desktop so that a broken selector is visible at once.
   */
  function selfTest(root, table) {
    const results = {};
    for (const key of Object.keys((table && table.keys) || {})) {
      const first = findFirst(root, table, key);
      results[key] = first
        ? { matched: first.selector, index: first.index, count: matchSelector(root, first.selector).length }
        : { matched: null, index: -1, count: 0 };
    }
    return results;
  }

  return {
    DEFAULT_TABLE,
    validateTable,
    mergeTables,
    matchSelector,
    findFirst,
    findAll,
    selfTest,
  };
});
