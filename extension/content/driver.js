/*
 * NovelGen ChatGPT driver: the content script on https://chatgpt.com/*.
 *
 * It attaches the prompt's reference images (if any), types the prompt, waits for the image it
 * produces and hands the bytes to the service worker (the message contract is in ../DESIGN.md). Loaded after lib/selector_table.js,
 * lib/page_messages.js and lib/protocol.js as a classic script; every element is found through the selector
 * table (data the hub can update), every wait compares Date.now() with an absolute deadline
 * (background tabs throttle timers) and is only woken by a MutationObserver and a short
 * interval.
 *
 * The pure parts (image ids, the completion decision, the typing strategy, health, attaching
 * files through an injected DOM) are exported for Node tests at the end; in Node the driver
 * does not start.
 */
(function () {
  "use strict";

  const isNode = typeof module === "object" && module.exports;
  const SelectorTable = isNode ? require("../lib/selector_table.js") : globalThis.NovelGenSelectorTable;
  const PageMessages = isNode ? require("../lib/page_messages.js") : globalThis.NovelGenPageMessages;
  const Protocol = isNode ? require("../lib/protocol.js") : globalThis.NovelGenProtocol;

  // ---- Timing (all in ms) -------------------------------------------------------------------

  const DEFAULT_RUN_MS = 6 * 60 * 1000;
  const COMPOSER_WAIT_MS = 90 * 1000;
  const SEND_BUTTON_WAIT_MS = 15 * 1000;
  const SUBMIT_CONFIRM_MS = 10 * 1000;
  const DIALOG_DISMISS_MS = 1500;
  /** A new image must stay loaded this long before it is taken (the page may still swap it). */
  const SETTLE_MS = 2000;
  /** Take a settled image even if a busy indicator never goes away (a stuck stop button). */
  const BUSY_GRACE_MS = 30 * 1000;
  /** A recognised message must stop changing this long while the page is still busy. */
  const MESSAGE_STABLE_MS = 3000;
  /** Waits before each in-turn "Try again" click. */
  const TRY_AGAIN_BACKOFF_MS = [3000, 10000];
  /** After a "Try again" click, messages are ignored this long (the old text is replaced). */
  const TRY_AGAIN_SETTLE_MS = 5000;
  const POLL_MS = 500;
  const MUTATION_CHECK_MIN_MS = 100;
  const HEALTH_POLL_MS = 2000;
  const DONE_REPEAT_MS = 2000;
  const DONE_REPEAT_FOR_MS = 10 * 60 * 1000;
  const MIN_IMAGE_WIDTH = 100;
  /** Reference images must show as uploaded within this (an 8 MiB upload on a slow line). */
  const ATTACH_WAIT_MS = 2 * 60 * 1000;
  /** ...and stay so this long (the upload indicator may appear a moment after the preview). */
  const ATTACH_SETTLE_MS = 750;
  /** Asking the service worker for a reference's bytes: tries (it may be starting up). */
  const REFERENCE_TRIES = 3;

  // ---- Pure helpers (exported for tests) ----------------------------------------------------

  /**
   * The stable `file_…` id of a generated image from its src, or null.
   *   https://chatgpt.com/backend-api/estuary/content?id=file_00000000abc&sig=…  → file_00000000abc
   *   https://files.oaiusercontent.com/file-AbC123?se=…&sig=…                     → file-AbC123
   *   https://sdmntpr….oaiusercontent.com/files/<uuid>/raw?se=…                   → <uuid>
   * The signature changes on reload; the id does not, so ids are what "new" is measured by.
   */
  function imageIdFromSrc(src, base) {
    if (typeof src !== "string" || !src) return null;
    let url;
    try {
      url = new URL(src, base || "https://chatgpt.com/");
    } catch (error) {
      return null;
    }
    const queryId = url.searchParams.get("id");
    if (queryId && /^file[-_][\w-]+$/.test(queryId)) return queryId;
    const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const fileSegment = segments.find((segment) => /^file[-_][\w-]+$/.test(segment));
    if (fileSegment) return fileSegment;
    if (/(^|\.)oaiusercontent\.com$/.test(url.hostname)) {
      const filesIndex = segments.indexOf("files");
      if (filesIndex >= 0 && segments[filesIndex + 1]) return segments[filesIndex + 1];
    }
    return null;
  }

  /** The conversation URL (origin + /c/<id>, also under /g/<gpt>/) or null on a new chat. */
  function conversationUrlFrom(href) {
    let url;
    try {
      url = new URL(href);
    } catch (error) {
      return null;
    }
    const match = /^(?:\/g\/[^/]+)?\/c\/[\w-]+/.exec(url.pathname);
    return match ? url.origin + match[0] : null;
  }

  /**
   * The completion decision, given a snapshot of the page's images.
   *   state: {beforeIds: Set, images: [{id, complete, naturalWidth}] in document order,
   *           preferredId (the first multigen candidate, if any), busy, now,
   *           candidate: {id, since} | null (the previous decision's candidate)}
   * Returns {action: "wait" | "settle" | "done", candidate}.
   * A candidate is a NEW id (not in beforeIds) whose img has fully loaded. It must remain the
   * choice for SETTLE_MS (checked again, not assumed) and the page must no longer be busy,
   * unless it stayed busy for BUSY_GRACE_MS after the image settled.
   */
  function decideCompletion(state, options) {
    const settleMs = (options && options.settleMs) ?? SETTLE_MS;
    const busyGraceMs = (options && options.busyGraceMs) ?? BUSY_GRACE_MS;
    const before = state.beforeIds instanceof Set ? state.beforeIds : new Set(state.beforeIds || []);
    const fresh = (state.images || []).filter(
      (image) => image.id && !before.has(image.id) && image.complete && image.naturalWidth > MIN_IMAGE_WIDTH,
    );
    if (fresh.length === 0) return { action: "wait", candidate: null };
    const chosen = (state.preferredId && fresh.find((image) => image.id === state.preferredId)) || fresh[0];
    const previous = state.candidate;
    if (!previous || previous.id !== chosen.id) {
      return { action: "settle", candidate: { id: chosen.id, since: state.now } };
    }
    const stableFor = state.now - previous.since;
    if (stableFor >= settleMs && (!state.busy || stableFor >= busyGraceMs)) {
      return { action: "done", candidate: previous };
    }
    return { action: "settle", candidate: previous };
  }

  /**
   * The ways to put text into the prompt box, best first. ProseMirror (contenteditable)
   * ignores direct DOM edits unless they come through the editing pipeline, so execCommand
   * comes first, then a synthetic paste (ProseMirror handles paste itself), then paragraphs
   * plus an `input` event. An old-style textarea needs React's native value setter.
   */
  function typingStrategies(box) {
    if (!box) return [];
    const tag = String(box.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "input") return ["valueSetter"];
    return ["execCommand", "paste", "paragraphs"];
  }

  /** Text compared the way the editor may reflow it (line breaks become paragraphs). */
  function comparableText(text) {
    return String(text || "").replace(/\s+/g, " ").trim();
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /** ProseMirror's own markup for plain text: one <p> per line, empty lines as <p><br></p>. */
  function paragraphsHtml(text) {
    return String(text)
      .split(/\r?\n/)
      .map((line) => (line ? `<p>${escapeHtml(line)}</p>` : "<p><br></p>"))
      .join("");
  }

  /** The tab's health from what the page shows; see DESIGN.md for the values. */
  function healthFrom(page) {
    if (page.cloudflare || /^just a moment/i.test(page.title || "")) return "unresponsive";
    if (/^\/auth\/login/.test(page.pathname || "") || page.loginButton) return "logged_out";
    // Until the app has rendered its prompt box the tab cannot take a task.
    return page.composer ? "ok" : "loading";
  }

  /**
   * A turn's text as classified: rendered text (innerText keeps the breaks between blocks,
   * where textContent would glue "failed" and "Try again" into "failedTry again") without the
   * screen-reader heading "ChatGPT said:".
   */
  function turnText(turn) {
    const rendered = typeof turn.innerText === "string" && turn.innerText.trim() ? turn.innerText : turn.textContent || "";
    return rendered.replace(/^\s*(?:ChatGPT|You) said:\s*/i, "");
  }

  /**
   * The first recognised message among the texts of the new assistant turns, as
   * PageMessages.classify returns it, or null.
   */
  function classifyTurnTexts(texts, now) {
    for (const text of texts) {
      const result = PageMessages.classify(text, now);
      if (result.kind !== "none") return result;
    }
    return null;
  }

  /** The absolute deadline of a run; a small number is taken as a duration, defensively. */
  function runDeadline(deadlineMs, now) {
    if (typeof deadlineMs !== "number" || !Number.isFinite(deadlineMs) || deadlineMs <= 0) return now + DEFAULT_RUN_MS;
    // Absolute Date.now() values are ~1.7e12; anything below 1e11 cannot be one.
    return deadlineMs < 1e11 ? now + deadlineMs : deadlineMs;
  }

  // Image bytes: the same sniffing and base64 as the service worker (lib/protocol.js), so
  // the page never hands over something the hub would refuse as invalid_image.
  const sniffImageMime = (bytes) => Protocol.sniffMime(bytes);
  const bytesToBase64 = (bytes) => Protocol.bytesToBase64(bytes);

  /** An error that ends a run with a given `ng.done` kind. */
  class RunError extends Error {
    constructor(kind, message, extra) {
      super(message);
      this.kind = kind;
      Object.assign(this, extra || {});
    }
  }

  class Cancelled extends Error {}

  /**
   * An image the user sent, not one ChatGPT drew: a reference image shown in a user turn (its
   * src is an estuary `file_…` URL like a generated image's) or an attachment preview in the
   * composer's form. Such an image is never taken as the result of a prompt.
   */
  function sentByUser(img, table) {
    if (!img || typeof img.closest !== "function") return false;
    for (const selector of (table.keys && table.keys.userTurn) || []) {
      if (typeof selector !== "string") continue;
      try {
        if (img.closest(selector)) return true;
      } catch (error) {
        /* a selector this browser cannot parse: the next one */
      }
    }
    const form = img.closest("form");
    return Boolean(form && SelectorTable.findFirst(form, table, "composer"));
  }

  function collapsedText(element) {
    const text = String((element && element.textContent) || "").replace(/\s+/g, " ").trim();
    if (text) return text;
    const label = element && typeof element.getAttribute === "function" ? element.getAttribute("aria-label") : null;
    return label ? String(label).trim() : "";
  }

  /**
   * Where the upload of reference images stands, from what the composer shows:
   *   {expected: previews wanted, previews: shown now, uploading: an upload indicator is
   *    shown, errors: texts of error messages that appeared since the files were set}
   * → {action: "error", message} | {action: "done"} | {action: "wait"}.
   */
  function attachDecision(state) {
    if (state.errors && state.errors.length) return { action: "error", message: state.errors[0] || "the upload failed" };
    if (state.previews >= state.expected && !state.uploading) return { action: "done" };
    return { action: "wait" };
  }

  /**
   * Attach reference images to the composer, before the prompt is typed: the hidden file
   * input gets the files through a DataTransfer and a bubbling `change`, as a user's pick
   * would; then wait until the page shows every file as uploaded (a preview per file, no
   * upload indicator) for ATTACH_SETTLE_MS. Throws a page_error RunError (the caller sends no
   * prompt) when there is no file input, a reference cannot be read, the page shows an
   * upload error, or the upload does not finish in time. Resolves with the number attached.
   *
   * env: {table, document, mainRoot(), requestReference(ref) → {ok, base64} | null,
   *       waitFor(check, deadline, run), progress(run, stage, extra), File, DataTransfer,
   *       Event, now()}
   */
  async function attachReferences(run, refs, box, env) {
    if (!refs || refs.length === 0) return 0;
    const first = (key, root) => {
      const found = root ? SelectorTable.findFirst(root, env.table, key) : null;
      return found ? found.element : null;
    };
    const all = (key, root) => (root ? SelectorTable.findAll(root, env.table, key).map((found) => found.element) : []);
    // One preview may match several fallbacks (a tile and its image): count through the
    // first selector that matches, as the self-test does.
    const count = (key, root) => {
      const found = SelectorTable.findFirst(root, env.table, key);
      return found ? SelectorTable.matchSelector(root, found.selector).length : 0;
    };
    const plural = refs.length === 1 ? "reference image" : `${refs.length} reference images`;
    const form = box && typeof box.closest === "function" ? box.closest("form") : null;
    const main = env.mainRoot();
    const input = first("fileInput", form) || first("fileInput", main);
    if (!input) {
      throw new RunError("page_error", `ChatGPT's file input was not found (selector key "fileInput"), so the ${plural} could not be attached; the prompt was not sent.`);
    }
    await env.progress(run, "attaching", { count: refs.length });
    const files = [];
    for (const ref of refs) {
      const reply = await env.requestReference(ref);
      if (!reply || !reply.ok || typeof reply.base64 !== "string") {
        const why = (reply && reply.error) || "the service worker did not answer";
        throw new RunError("page_error", `Reference image "${ref.name}" could not be read from the extension's storage (${why}); the prompt was not sent.`);
      }
      files.push(new env.File([Protocol.base64ToBytes(reply.base64)], ref.name, { type: ref.mime }));
    }
    if (run.cancelled) throw new Cancelled("cancelled");
    const scope = form || main;
    const errorsBefore = new Set(all("attachmentError", env.document));
    const expected = count("attachmentPreview", scope) + files.length;
    const transfer = new env.DataTransfer();
    for (const file of files) transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new env.Event("change", { bubbles: true }));

    let doneSince = null;
    let last = { previews: 0, uploading: false };
    const startedAt = env.now();
    const deadline = Math.min(run.deadline, startedAt + ATTACH_WAIT_MS);
    const result = await env.waitFor(() => {
      const errors = all("attachmentError", env.document).filter((element) => !errorsBefore.has(element)).map(collapsedText);
      last = { previews: count("attachmentPreview", scope), uploading: count("attachmentUploading", scope) > 0 };
      const decision = attachDecision({ expected, errors, ...last });
      if (decision.action === "error") return decision;
      if (decision.action === "wait") {
        doneSince = null;
        return null;
      }
      if (doneSince === null) doneSince = env.now();
      return env.now() - doneSince >= ATTACH_SETTLE_MS ? decision : null;
    }, deadline, run);
    if (result && result.action === "error") {
      throw new RunError("page_error", `ChatGPT refused the ${plural}: ${result.message}; the prompt was not sent.`);
    }
    if (!result) {
      const seen = last.uploading ? "still uploading" : `${last.previews} of ${expected} attachment preview(s) shown (selector key "attachmentPreview")`;
      const seconds = (env.now() - startedAt) / 1000;
      const waited = seconds < 10 ? seconds.toFixed(1) : Math.round(seconds);
      throw new RunError("page_error", `ChatGPT did not show the ${plural} as uploaded within ${waited} s (${seen}); the prompt was not sent.`);
    }
    return files.length;
  }

  const pure = {
    sentByUser,
    attachDecision,
    attachReferences,
    imageIdFromSrc,
    conversationUrlFrom,
    decideCompletion,
    typingStrategies,
    comparableText,
    paragraphsHtml,
    healthFrom,
    classifyTurnTexts,
    turnText,
    runDeadline,
    sniffImageMime,
    bytesToBase64,
    RunError,
    Cancelled,
    constants: { SETTLE_MS, BUSY_GRACE_MS, MIN_IMAGE_WIDTH, DEFAULT_RUN_MS, ATTACH_WAIT_MS, ATTACH_SETTLE_MS },
  };

  if (isNode) {
    module.exports = pure;
    return;
  }
  // Injected twice (manifest + chrome.scripting after an extension update)? One driver only.
  if (globalThis.__novelgenDriver) return;
  globalThis.__novelgenDriver = true;

  // ---- The driver in the page ---------------------------------------------------------------

  let table = SelectorTable.mergeTables(SelectorTable.DEFAULT_TABLE, null);
  let currentRun = null; // {task, stage, cancelled, conversationUrl, startedAt}
  let lastHealth = null;
  const finishedRuns = new Map(); // "task_id/attempt" → the ng.done message (for repeats)
  // This page load's id: the service worker tells a reloaded page from the one before it.
  const pageId = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);

  function log(...args) {
    console.debug("[NovelGen]", ...args);
  }

  function extensionAlive() {
    try {
      return Boolean(chrome.runtime && chrome.runtime.id);
    } catch (error) {
      return false;
    }
  }

  /** Sends to the service worker; resolves to its reply or null (no listener, SW restarting). */
  function send(message) {
    if (!extensionAlive()) return Promise.resolve(null);
    return new Promise((resolve) => {
      try {
        chrome.runtime.sendMessage(message, (reply) => {
          void chrome.runtime.lastError; // read, so Chrome does not log "unchecked"
          resolve(reply === undefined ? null : reply);
        });
      } catch (error) {
        resolve(null);
      }
    });
  }

  function find(key, root) {
    const found = SelectorTable.findFirst(root || document, table, key);
    return found ? found.element : null;
  }

  function findAllElements(key, root) {
    return SelectorTable.findAll(root || document, table, key).map((found) => found.element);
  }

  function mainRoot() {
    return find("main") || document;
  }

  function outsideSidebar(element) {
    return !(element.closest && element.closest("nav, aside"));
  }

  /** The `turn` elements (articles) of one author, in document order, inside main only. */
  function turnsOf(authorKey) {
    const root = mainRoot();
    const turnCss = (table.keys.turn || []).filter((selector) => typeof selector === "string").join(", ");
    const turns = [];
    for (const element of findAllElements(authorKey, root)) {
      let turn = element;
      if (turnCss && element.closest) {
        try {
          turn = element.closest(turnCss) || element;
        } catch (error) {
          turn = element;
        }
      }
      if (!turns.includes(turn) && outsideSidebar(turn)) turns.push(turn);
    }
    return turns.sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));
  }

  function isEnabled(button) {
    return Boolean(button) && !button.disabled && button.getAttribute("aria-disabled") !== "true";
  }

  function isBusy() {
    return Boolean(find("stopButton") || find("imageLoading", mainRoot()));
  }

  function pageState() {
    return {
      cloudflare: Boolean(find("cloudflare")),
      title: document.title,
      pathname: location.pathname,
      loginButton: Boolean(find("loginButton") || find("loginMarker")),
      composer: Boolean(find("composer")),
    };
  }

  function reportHealth(force) {
    const health = healthFrom(pageState());
    if (force || health !== lastHealth) {
      lastHealth = health;
      send({ type: "ng.ready", url: location.href, health, page_id: pageId });
    }
    return health;
  }

  /** Snapshot of generated images inside main: [{id, complete, naturalWidth, element}]. */
  function imageSnapshot(root) {
    return findAllElements("generatedImage", root || mainRoot())
      .filter((img) => String(img.tagName).toLowerCase() === "img" && outsideSidebar(img) && !sentByUser(img, table))
      .map((img) => ({
        id: imageIdFromSrc(img.currentSrc || img.src, location.href),
        complete: img.complete,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
        element: img,
      }))
      .filter((image) => image.id);
  }

  /**
   * Resolves with the first truthy value of `check()`, re-evaluated on DOM mutations and every
   * POLL_MS, until the absolute `deadline` (then resolves null). Rejects if the run is
   * cancelled or `check` throws (a RunError ends the run).
   */
  function waitFor(check, deadline, run) {
    return new Promise((resolve, reject) => {
      let finished = false;
      let lastMutationCheck = 0;
      const observer = new MutationObserver(() => {
        const now = Date.now();
        if (now - lastMutationCheck < MUTATION_CHECK_MIN_MS) return; // the interval catches up
        lastMutationCheck = now;
        evaluate();
      });
      const interval = setInterval(evaluate, POLL_MS);
      function finish(settle, value) {
        if (finished) return;
        finished = true;
        observer.disconnect();
        clearInterval(interval);
        settle(value);
      }
      function evaluate() {
        if (finished) return;
        if (run && run.cancelled) return finish(reject, new Cancelled("cancelled"));
        let value;
        try {
          value = check();
        } catch (error) {
          return finish(reject, error);
        }
        if (value) return finish(resolve, value);
        if (Date.now() >= deadline) finish(resolve, null);
      }
      observer.observe(document.documentElement, { childList: true, subtree: true, attributes: true, characterData: true });
      evaluate();
    });
  }

  function pause(ms, run) {
    const until = Date.now() + ms;
    return waitFor(() => Date.now() >= until, until + 1, run);
  }

  function progress(run, stage, extra) {
    run.stage = stage;
    return send(Object.assign({ type: "ng.progress", task_id: run.task.task_id, attempt: run.task.attempt, stage }, extra || {}));
  }

  /** Throws the RunError for a page that cannot be used (login, Cloudflare). */
  function checkBlockers() {
    const health = reportHealth(false);
    if (health === "unresponsive") {
      throw new RunError("page_error", "ChatGPT shows a Cloudflare challenge (\"Just a moment...\"); solve it in this tab, then the worker resumes.");
    }
    if (health === "logged_out") {
      throw new RunError("login_required", "ChatGPT asks to log in; log in in this browser profile.");
    }
  }

  function keyboard(target, key, extra) {
    const init = Object.assign({ key, code: key, bubbles: true, cancelable: true }, extra || {});
    target.dispatchEvent(new KeyboardEvent("keydown", init));
    target.dispatchEvent(new KeyboardEvent("keyup", init));
  }

  async function dismissCompareDialog(run) {
    const dialog = find("compareDialog");
    if (!dialog) return;
    log("dismissing a compare-responses dialog");
    keyboard(document.activeElement || document.body, "Escape", { keyCode: 27 });
    const gone = await waitFor(() => !find("compareDialog"), Date.now() + DIALOG_DISMISS_MS, run);
    if (gone) return;
    const skip = find("dialogSkip", find("compareDialog") || document);
    if (skip) skip.click();
    await waitFor(() => !find("compareDialog"), Date.now() + DIALOG_DISMISS_MS, run);
  }

  function boxText(box) {
    return "value" in box && typeof box.value === "string" && !box.isContentEditable ? box.value : box.innerText || box.textContent || "";
  }

  function selectContents(box) {
    box.focus();
    const selection = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents(box);
    selection.removeAllRanges();
    selection.addRange(range);
  }

  /** Runs one typing strategy; the caller verifies the result. */
  function applyStrategy(strategy, box, text) {
    switch (strategy) {
      case "valueSetter": {
        const proto = Object.getPrototypeOf(box);
        const setter = Object.getOwnPropertyDescriptor(proto, "value").set;
        box.focus();
        setter.call(box, text); // React tracks the native setter, not the property
        box.dispatchEvent(new Event("input", { bubbles: true }));
        break;
      }
      case "execCommand":
        selectContents(box);
        document.execCommand("insertText", false, text);
        break;
      case "paste": {
        selectContents(box);
        const data = new DataTransfer();
        data.setData("text/plain", text);
        box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        break;
      }
      case "paragraphs":
        box.focus();
        box.innerHTML = paragraphsHtml(text);
        box.dispatchEvent(new InputEvent("input", { bubbles: true, inputType: "insertText", data: text }));
        break;
      default:
        throw new Error(`unknown typing strategy ${strategy}`);
    }
  }

  async function typePrompt(run, box, text) {
    const wanted = comparableText(text);
    for (const strategy of typingStrategies(box)) {
      try {
        applyStrategy(strategy, box, text);
      } catch (error) {
        log(`typing with ${strategy} failed`, error);
        continue;
      }
      // The editor applies some inputs asynchronously; give it a moment before judging.
      const typed = await waitFor(() => comparableText(boxText(box)) === wanted, Date.now() + 1000, run);
      if (typed) return strategy;
      log(`typing with ${strategy} left ${JSON.stringify(boxText(box).slice(0, 80))}`);
    }
    throw new RunError("page_error", "Could not type the prompt into ChatGPT's prompt box (every typing method failed).");
  }

  /** Clicks send (or presses Enter) and waits for a sign that the prompt left the box. */
  async function submitPrompt(run, box, userTurnsBefore) {
    const sent = () =>
      isBusy() || turnsOf("userTurn").length > userTurnsBefore || comparableText(boxText(find("composer") || box)) === "";
    const button = await waitFor(() => {
      const candidate = find("sendButton");
      return isEnabled(candidate) ? candidate : null;
    }, Math.min(run.deadline, Date.now() + SEND_BUTTON_WAIT_MS), run);
    if (button) {
      button.click();
      if (await waitFor(sent, Math.min(run.deadline, Date.now() + SUBMIT_CONFIRM_MS), run)) return;
    }
    log("send button missing or ineffective; pressing Enter");
    const target = find("composer") || box;
    target.focus();
    keyboard(target, "Enter", { keyCode: 13, which: 13 });
    if (await waitFor(sent, Math.min(run.deadline, Date.now() + SUBMIT_CONFIRM_MS), run)) return;
    throw new RunError("page_error", "The prompt was typed but ChatGPT did not send it (send button and Enter had no effect).");
  }

  /** A reference's bytes from the service worker (which may be starting up: a few tries). */
  async function requestReference(ref) {
    let reply = null;
    for (let i = 0; i < REFERENCE_TRIES; i++) {
      reply = await send({ type: "ng.reference", sha256: ref.sha256 });
      if (reply) return reply;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    return reply;
  }

  function attachEnv() {
    return {
      table,
      document,
      mainRoot,
      requestReference,
      waitFor,
      progress,
      File,
      DataTransfer,
      Event,
      now: () => Date.now(),
    };
  }

  function noteConversationUrl(run) {
    const url = conversationUrlFrom(location.href);
    if (url && url !== run.conversationUrl) {
      run.conversationUrl = url;
      progress(run, run.stage === "submitted" ? "generating" : run.stage, { conversation_url: url });
    }
  }

  /**
   * Waits for the new image (or a message that ends the run) and returns the chosen image
   * entry {id, element, ...}. One check function drives a small state machine, re-run on
   * every DOM change and every POLL_MS.
   */
  async function awaitResult(run) {
    let candidate = null;
    let sawBusy = false;
    let pickedMultigen = false;
    let tryAgainClicks = 0;
    let retryAt = null;
    let message = null; // {result, text, since}
    let ignoreMessagesUntil = 0; // after a "Try again" click the old error text lingers a moment

    const check = () => {
      const now = Date.now();
      checkBlockers();
      noteConversationUrl(run);

      const busy = isBusy();
      if (busy && !sawBusy) {
        sawBusy = true;
        progress(run, "generating", run.conversationUrl ? { conversation_url: run.conversationUrl } : undefined);
      }

      const root = mainRoot();
      // Two candidates offered: keep the first. Clicking "Image 1" tells ChatGPT which one we
      // keep; its id stays the same, so the decision below simply prefers it.
      let preferredId = null;
      const multigen = find("multigen", root);
      if (multigen) {
        const candidates = imageSnapshot(multigen).filter((image) => !run.beforeIds.has(image.id));
        if (candidates.length > 0) preferredId = candidates[0].id;
        if (!pickedMultigen && candidates.length >= 2) {
          const pick = find("multigenPick", multigen);
          if (pick) {
            pickedMultigen = true;
            log("two candidates offered; picking Image 1");
            pick.click();
          }
        }
      }

      const images = imageSnapshot(root);
      const decision = decideCompletion({ beforeIds: run.beforeIds, images, preferredId, busy, now, candidate });
      candidate = decision.candidate;
      if (decision.action === "done") return images.find((image) => image.id === candidate.id);
      if (decision.action === "settle") return null; // an image is coming: do not read errors

      // Messages: only assistant turns that are new since the send, only inside main.
      if (now < ignoreMessagesUntil) return null;
      const newTurns = turnsOf("assistantTurn").slice(run.assistantTurnsBefore);
      const texts = newTurns.map(turnText);
      const result = classifyTurnTexts(texts, now);
      if (!result) {
        message = null;
        return null;
      }
      if (!message || message.text !== result.message) message = { result, text: result.message, since: now };
      // Streaming text may still be growing ("resets in 12 hours and 4…"): act on it once the
      // page is idle or the text has stopped changing.
      if (busy && now - message.since < MESSAGE_STABLE_MS) return null;

      if (result.kind === "rate_limited") {
        throw new RunError("rate_limited", result.message, { retryAfter: result.retryAfterSeconds });
      }
      if (result.kind === "refused") throw new RunError("refused", result.message);
      if (result.kind === "login") throw new RunError("login_required", result.message);
      // Transient: the in-turn "Try again" button, once or twice with backoff.
      const lastTurn = newTurns[newTurns.length - 1];
      const tryAgain = lastTurn ? find("tryAgain", lastTurn) : null;
      if (tryAgain && tryAgainClicks < TRY_AGAIN_BACKOFF_MS.length) {
        if (retryAt === null) retryAt = now + TRY_AGAIN_BACKOFF_MS[tryAgainClicks];
        if (now >= retryAt) {
          tryAgainClicks += 1;
          retryAt = null;
          message = null;
          ignoreMessagesUntil = now + TRY_AGAIN_SETTLE_MS;
          log(`transient error (${result.message}); clicking Try again (${tryAgainClicks})`);
          tryAgain.click();
        }
        return null;
      }
      throw new RunError("page_error", result.message);
    };

    const found = await waitFor(check, run.deadline, run);
    if (found) return found;
    throw new RunError(
      "timeout",
      `No new image before the deadline (${sawBusy ? "generation started" : "generation never started"}${candidate ? ", an image was still settling" : ""}).`,
    );
  }

  async function downloadImage(run, image) {
    await progress(run, "downloading", run.conversationUrl ? { conversation_url: run.conversationUrl } : undefined);
    // Re-read the element: React may have replaced it, and the signature in src may be newer.
    const current = imageSnapshot(mainRoot()).find((entry) => entry.id === image.id) || image;
    const src = current.element.currentSrc || current.element.src;
    let lastError = null;
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        const response = await fetch(src, { credentials: "include" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const bytes = new Uint8Array(await response.arrayBuffer());
        if (bytes.length === 0) throw new Error("empty body");
        const headerMime = (response.headers.get("content-type") || "").split(";")[0].trim();
        const mime = sniffImageMime(bytes);
        if (!mime) throw new Error(`not a PNG, JPEG or WebP image (Content-Type ${headerMime || "none"})`);
        return {
          base64: bytesToBase64(bytes),
          mime,
          width: current.element.naturalWidth,
          height: current.element.naturalHeight,
          image_id: image.id,
        };
      } catch (error) {
        lastError = error;
        log(`image download failed (attempt ${attempt})`, error);
        if (attempt < 2) await pause(1500, run);
      }
    }
    throw new RunError("network", `Could not download the generated image ${image.id}: ${lastError && lastError.message}`);
  }

  function runKey(task) {
    return `${task.task_id}/${task.attempt}`;
  }

  /** Sends ng.done every DONE_REPEAT_MS until the SW replies {stored: true} (or 10 minutes). */
  async function deliverDone(message) {
    const key = runKey(message);
    finishedRuns.set(key, message);
    const giveUpAt = Date.now() + DONE_REPEAT_FOR_MS;
    let nextAt = Date.now();
    while (Date.now() < giveUpAt && finishedRuns.get(key) === message) {
      if (Date.now() >= nextAt) {
        nextAt = Date.now() + DONE_REPEAT_MS;
        const reply = await send(message);
        if (reply && reply.stored) {
          // Keep a small marker (not the bytes) so a repeated ng.run is answered without work.
          finishedRuns.set(key, { stored: true });
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(50, Math.min(500, nextAt - Date.now()))));
    }
  }

  async function performRun(run) {
    const { task } = run;
    checkBlockers();
    if (task.resume) {
      // The prompt was sent before a restart: wait on this conversation for an image that was
      // not there then. The latest assistant turn is the one answering it; the conversation
      // must have rendered (its prompt box is there) before turns are counted.
      await waitFor(() => find("composer"), Math.min(run.deadline, Date.now() + COMPOSER_WAIT_MS), run);
      checkBlockers();
      run.conversationUrl = conversationUrlFrom(location.href) || task.resume.conversation_url || null;
      run.beforeIds = new Set(task.resume.before_image_ids || []);
      run.assistantTurnsBefore = Math.max(0, turnsOf("assistantTurn").length - 1);
      await progress(run, "generating", run.conversationUrl ? { conversation_url: run.conversationUrl } : undefined);
    } else {
      const box = await waitFor(() => find("composer"), Math.min(run.deadline, Date.now() + COMPOSER_WAIT_MS), run);
      checkBlockers();
      if (!box) throw new RunError("page_error", "ChatGPT's prompt box was not found (selector key \"composer\"); the page may have changed.");
      await dismissCompareDialog(run);
      run.beforeIds = new Set(imageSnapshot(document).map((image) => image.id));
      run.assistantTurnsBefore = turnsOf("assistantTurn").length;
      const userTurnsBefore = turnsOf("userTurn").length;
      if (task.references && task.references.length) {
        // Before a word is typed: a failure here ends the run without sending anything.
        await attachReferences(run, task.references, box, attachEnv());
        checkBlockers();
      }
      await progress(run, "typing");
      const composer = find("composer") || box;
      await typePrompt(run, composer, task.prompt);
      await submitPrompt(run, composer, userTurnsBefore);
      run.conversationUrl = conversationUrlFrom(location.href);
      const submitted = { before_image_ids: Array.from(run.beforeIds) };
      if (run.conversationUrl) submitted.conversation_url = run.conversationUrl;
      await progress(run, "submitted", submitted);
    }
    const image = await awaitResult(run);
    return downloadImage(run, image);
  }

  async function startRun(task) {
    const run = {
      task,
      stage: "starting",
      cancelled: false,
      conversationUrl: null,
      startedAt: Date.now(),
      deadline: runDeadline(task.deadline_ms, Date.now()),
      beforeIds: new Set(),
      assistantTurnsBefore: 0,
    };
    currentRun = run;
    let done;
    try {
      const image = await performRun(run);
      done = { outcome: "image", image };
    } catch (error) {
      if (error instanceof Cancelled || run.cancelled) {
        log(`task ${runKey(task)} cancelled`);
        if (currentRun === run) currentRun = null;
        return;
      }
      const kind = error instanceof RunError ? error.kind : "page_error";
      const text = error instanceof RunError ? error.message : `Driver error: ${error && error.message}`;
      if (!(error instanceof RunError)) console.error("[NovelGen]", error);
      done = { outcome: "error", kind, message: PageMessages.truncate(text) };
      if (kind === "rate_limited" && typeof error.retryAfter === "number") done.retry_after = error.retryAfter;
      if (kind === "login_required" || kind === "page_error") reportHealth(false);
    }
    if (currentRun === run) currentRun = null;
    const message = Object.assign({ type: "ng.done", task_id: task.task_id, attempt: task.attempt }, done, {
      elapsed: Math.round((Date.now() - run.startedAt) / 100) / 10,
    });
    if (run.conversationUrl || conversationUrlFrom(location.href)) {
      message.conversation_url = run.conversationUrl || conversationUrlFrom(location.href);
    }
    reportHealth(false);
    await deliverDone(message);
  }

  function parseTable(table) {
    if (typeof table === "string") return JSON.parse(table);
    return table;
  }

  /** Adopts a pushed table if valid and not older than the one in use; returns {ok, error?}. */
  function adoptTable(candidate, persist) {
    let parsed;
    try {
      parsed = parseTable(candidate);
    } catch (error) {
      return { ok: false, error: `not JSON: ${error.message}` };
    }
    const errors = SelectorTable.validateTable(parsed);
    if (errors.length > 0) return { ok: false, error: errors.map(String).join("; ") };
    if (parsed.version <= SelectorTable.DEFAULT_TABLE.version) {
      return { ok: false, error: `version ${parsed.version} is not newer than the built-in table (${SelectorTable.DEFAULT_TABLE.version})` };
    }
    if (parsed.version < table.version) {
      return { ok: false, error: `version ${parsed.version} is older than the table in use (${table.version})` };
    }
    table = SelectorTable.mergeTables(SelectorTable.DEFAULT_TABLE, parsed);
    if (persist) {
      try {
        chrome.storage.local.set({ selectorTable: parsed });
      } catch (error) {
        log("could not store the selector table", error);
      }
    }
    return { ok: true };
  }

  /** Forget any pushed table: the built-in one again (the service worker has removed the stored copy). */
  function useBuiltInTable() {
    table = SelectorTable.mergeTables(SelectorTable.DEFAULT_TABLE, null);
    try {
      chrome.storage.local.remove("selectorTable");
    } catch (error) {
      log("could not forget the stored selector table", error);
    }
    reportHealth(false);
    return { ok: true, version: table.version };
  }

  function loadStoredTable() {
    try {
      chrome.storage.local.get("selectorTable", (items) => {
        void chrome.runtime.lastError;
        if (items && items.selectorTable) {
          const result = adoptTable(items.selectorTable, false);
          if (!result.ok) log("stored selector table not used:", result.error);
          reportHealth(false);
        }
      });
    } catch (error) {
      log("could not read the stored selector table", error);
    }
  }

  function handleMessage(message, sendResponse) {
    switch (message && message.type) {
      case "ng.ping":
        sendResponse({
          ok: true,
          url: location.href,
          page_id: pageId,
          health: reportHealth(false),
          busy: Boolean(currentRun),
          task: currentRun ? { task_id: currentRun.task.task_id, attempt: currentRun.task.attempt, stage: currentRun.stage } : null,
          // The tab's JS heap (the page and this script share the renderer's isolate): the
          // service worker has no performance.memory, and the hub's status wants a figure.
          memory: performance.memory ? performance.memory.usedJSHeapSize : undefined,
        });
        return;
      case "ng.run": {
        const task = message.task || {};
        if (task.task_id === undefined || task.attempt === undefined || (!task.resume && typeof task.prompt !== "string")) {
          sendResponse({ accepted: false, reason: "task needs task_id, attempt and prompt" });
          return;
        }
        const key = runKey(task);
        if (currentRun) {
          if (runKey(currentRun.task) === key) sendResponse({ accepted: true, duplicate: true });
          else sendResponse({ accepted: false, reason: `busy with task ${runKey(currentRun.task)}` });
          return;
        }
        const finished = finishedRuns.get(key);
        if (finished) {
          // Already done (e.g. the SW restarted and asks again): repeat the result, no retyping.
          sendResponse({ accepted: true, duplicate: true });
          if (!finished.stored) send(finished);
          return;
        }
        sendResponse({ accepted: true });
        startRun(task);
        return;
      }
      case "ng.cancel":
        if (currentRun && String(currentRun.task.task_id) === String(message.task_id) &&
            (message.attempt === undefined || currentRun.task.attempt === message.attempt)) {
          currentRun.cancelled = true;
          currentRun = null;
        }
        sendResponse({ ok: true });
        return;
      case "ng.selfTest":
        sendResponse({ url: location.href, results: SelectorTable.selfTest(document, table) });
        return;
      case "ng.setSelectors":
        // table null: the hub's selector_updates flag went off; back to the built-in table.
        sendResponse(message.table == null ? useBuiltInTable() : adoptTable(message.table, true));
        return;
      default:
        // Not ours: no reply, so another listener may answer.
        return;
    }
  }

  chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
    handleMessage(message, sendResponse);
    return false; // every reply above is synchronous
  });

  // Health: on load and on every change (throttled by the DOM's own pace and a slow poll).
  loadStoredTable();
  reportHealth(true);
  let lastHealthCheck = 0;
  const healthObserver = new MutationObserver(() => {
    const now = Date.now();
    if (now - lastHealthCheck < 1000) return;
    lastHealthCheck = now;
    reportHealth(false);
  });
  healthObserver.observe(document.documentElement, { childList: true, subtree: true });
  const healthInterval = setInterval(() => {
    if (!extensionAlive()) {
      // The extension was reloaded: this copy is orphaned; stop watching the page.
      healthObserver.disconnect();
      clearInterval(healthInterval);
      return;
    }
    reportHealth(false);
  }, HEALTH_POLL_MS);
})();
