"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const Driver = require("../content/driver.js");

const { turnText, imageIdFromSrc, conversationUrlFrom, decideCompletion, typingStrategies, comparableText, paragraphsHtml, healthFrom, classifyTurnTexts, runDeadline, sniffImageMime, bytesToBase64 } = Driver;
const { SETTLE_MS, BUSY_GRACE_MS } = Driver.constants;

test("image ids: the estuary URL's id= parameter", () => {
  assert.equal(imageIdFromSrc("https://chatgpt.com/backend-api/estuary/content?id=file_00000000a1b2c3&ts=1&p=fs&sig=9f8e"), "file_00000000a1b2c3");
  assert.equal(imageIdFromSrc("/backend-api/estuary/content?id=file_abc123&sig=1", "https://chatgpt.com/c/x"), "file_abc123");
  assert.equal(imageIdFromSrc("https://chatgpt.com/backend-api/estuary/content?sig=1&id=file-AbC"), "file-AbC");
});

test("image ids: the signature does not change the id", () => {
  const a = imageIdFromSrc("https://chatgpt.com/backend-api/estuary/content?id=file_1&sig=aaa");
  const b = imageIdFromSrc("https://chatgpt.com/backend-api/estuary/content?id=file_1&sig=bbb&ts=2");
  assert.equal(a, b);
});

test("image ids: older files.oaiusercontent.com URLs", () => {
  assert.equal(imageIdFromSrc("https://files.oaiusercontent.com/file-AbC123xyz?se=2026-01-01&sp=r&sig=abc%3D"), "file-AbC123xyz");
  assert.equal(imageIdFromSrc("https://files.oaiusercontent.com/file_00000000deadbeef/raw?sig=1"), "file_00000000deadbeef");
  assert.equal(
    imageIdFromSrc("https://sdmntprwestus.oaiusercontent.com/files/00000000-1234-5678-9abc-def012345678/raw?se=1&sig=2"),
    "00000000-1234-5678-9abc-def012345678",
  );
});

test("image ids: anything else is not a generated image", () => {
  for (const src of [
    "",
    null,
    undefined,
    "https://chatgpt.com/backend-api/estuary/content?id=avatar_1",
    "https://cdn.auth0.com/avatars/ab.png",
    "https://chatgpt.com/cdn/assets/logo.svg",
    "data:image/png;base64,AAAA",
    "https://example.com/files/123/raw",
    "http://[bad",
  ]) {
    assert.equal(imageIdFromSrc(src), null, String(src));
  }
});

test("conversation URLs", () => {
  assert.equal(conversationUrlFrom("https://chatgpt.com/c/6741d0b5-1f2e-8000-a000-0123456789ab"), "https://chatgpt.com/c/6741d0b5-1f2e-8000-a000-0123456789ab");
  assert.equal(conversationUrlFrom("https://chatgpt.com/c/abc?model=gpt-4o#x"), "https://chatgpt.com/c/abc");
  assert.equal(conversationUrlFrom("https://chatgpt.com/g/g-2fkFE8rbu-dall-e/c/abc-1"), "https://chatgpt.com/g/g-2fkFE8rbu-dall-e/c/abc-1");
  assert.equal(conversationUrlFrom("https://chatgpt.com/"), null);
  assert.equal(conversationUrlFrom("https://chatgpt.com/auth/login"), null);
  assert.equal(conversationUrlFrom("not a url"), null);
});

function image(id, naturalWidth = 1024, complete = true) {
  return { id, complete, naturalWidth };
}

/** Feeds snapshots through decideCompletion as the driver does, returning every decision. */
function replay(beforeIds, steps) {
  let candidate = null;
  return steps.map(({ now, images, busy = false, preferredId = null }) => {
    const decision = decideCompletion({ beforeIds: new Set(beforeIds), images, busy, now, candidate, preferredId });
    candidate = decision.candidate;
    return decision;
  });
}

test("completion: an old image is never taken, however last it is", () => {
  const [decision] = replay(["file_old1", "file_old2"], [{ now: 0, images: [image("file_old1"), image("file_old2")] }]);
  assert.deepEqual(decision, { action: "wait", candidate: null });
});

test("completion: a new image must be loaded and larger than a thumbnail", () => {
  const decisions = replay([], [
    { now: 0, images: [image("file_new", 1024, false)] },
    { now: 100, images: [image("file_new", 0, true)] },
    { now: 200, images: [image("file_new", 64, true)] },
  ]);
  assert.deepEqual(decisions.map((d) => d.action), ["wait", "wait", "wait"]);
});

test("completion: a new loaded image settles, is checked again, then is done", () => {
  const decisions = replay(["file_old"], [
    { now: 1000, images: [image("file_old"), image("file_new")] },
    { now: 1000 + SETTLE_MS - 1, images: [image("file_old"), image("file_new")] },
    { now: 1000 + SETTLE_MS, images: [image("file_old"), image("file_new")] },
  ]);
  assert.deepEqual(decisions.map((d) => d.action), ["settle", "settle", "done"]);
  assert.deepEqual(decisions[2].candidate, { id: "file_new", since: 1000 });
});

test("completion: an image that disappears during the settle delay starts over", () => {
  const decisions = replay([], [
    { now: 0, images: [image("file_a")] },
    { now: 1500, images: [] },
    { now: 2500, images: [image("file_a")] },
    { now: 2500 + SETTLE_MS - 1, images: [image("file_a")] },
    { now: 2500 + SETTLE_MS, images: [image("file_a")] },
  ]);
  assert.deepEqual(decisions.map((d) => d.action), ["settle", "wait", "settle", "settle", "done"]);
  assert.equal(decisions[4].candidate.since, 2500);
});

test("completion: not done while the page is busy, unless busy far beyond the image", () => {
  const decisions = replay([], [
    { now: 0, images: [image("file_a")], busy: true },
    { now: SETTLE_MS + 10, images: [image("file_a")], busy: true },
    { now: SETTLE_MS + 20, images: [image("file_a")], busy: false },
  ]);
  assert.deepEqual(decisions.map((d) => d.action), ["settle", "settle", "done"]);
  const stuck = replay([], [
    { now: 0, images: [image("file_a")], busy: true },
    { now: BUSY_GRACE_MS - 1, images: [image("file_a")], busy: true },
    { now: BUSY_GRACE_MS, images: [image("file_a")], busy: true },
  ]);
  assert.deepEqual(stuck.map((d) => d.action), ["settle", "settle", "done"]);
});

test("completion: two candidates — the preferred (first multigen) one is taken", () => {
  const decisions = replay([], [
    // Image 2 loads first: it becomes the candidate until Image 1 loads.
    { now: 0, images: [image("file_one", 1024, false), image("file_two")], preferredId: "file_one" },
    { now: 500, images: [image("file_one"), image("file_two")], preferredId: "file_one" },
    { now: 500 + SETTLE_MS, images: [image("file_one"), image("file_two")], preferredId: "file_one" },
  ]);
  assert.deepEqual(decisions.map((d) => [d.action, d.candidate.id]), [["settle", "file_two"], ["settle", "file_one"], ["done", "file_one"]]);
});

test("completion: without a preference the first new image in page order wins", () => {
  const decisions = replay(["file_old"], [
    { now: 0, images: [image("file_old"), image("file_x"), image("file_y")] },
    { now: SETTLE_MS, images: [image("file_old"), image("file_x"), image("file_y")] },
  ]);
  assert.equal(decisions[1].action, "done");
  assert.equal(decisions[1].candidate.id, "file_x");
});

test("completion: beforeIds may be an array (from resume.before_image_ids)", () => {
  const decision = decideCompletion({ beforeIds: ["file_a"], images: [image("file_a")], busy: false, now: 0, candidate: null });
  assert.equal(decision.action, "wait");
});

test("completion: options override the delays", () => {
  const first = decideCompletion({ beforeIds: [], images: [image("f")], busy: false, now: 0, candidate: null }, { settleMs: 0 });
  const second = decideCompletion({ beforeIds: [], images: [image("f")], busy: false, now: 0, candidate: first.candidate }, { settleMs: 0 });
  assert.equal(second.action, "done");
});

test("typing strategy: ProseMirror first by execCommand, then paste, then paragraphs; textarea by value", () => {
  assert.deepEqual(typingStrategies({ tagName: "DIV", isContentEditable: true }), ["execCommand", "paste", "paragraphs"]);
  assert.deepEqual(typingStrategies({ tagName: "TEXTAREA" }), ["valueSetter"]);
  assert.deepEqual(typingStrategies(null), []);
});

test("typing verification ignores how the editor reflows whitespace", () => {
  assert.equal(comparableText("A lighthouse\n\nat dusk "), comparableText("A lighthouse at dusk"));
  assert.notEqual(comparableText("A lighthouse"), comparableText("A lighthouse at dusk"));
  assert.equal(comparableText(undefined), "");
});

test("paragraph markup escapes HTML and keeps empty lines", () => {
  assert.equal(paragraphsHtml("a <b> & \"c\"\n\nd's"), "<p>a &lt;b&gt; &amp; &quot;c&quot;</p><p><br></p><p>d&#39;s</p>");
});

test("health from the page", () => {
  const page = { cloudflare: false, title: "ChatGPT", pathname: "/", loginButton: false, composer: true };
  assert.equal(healthFrom(page), "ok");
  assert.equal(healthFrom({ ...page, composer: false }), "loading");
  assert.equal(healthFrom({ ...page, loginButton: true }), "logged_out");
  assert.equal(healthFrom({ ...page, pathname: "/auth/login", composer: false }), "logged_out");
  assert.equal(healthFrom({ ...page, cloudflare: true }), "unresponsive");
  assert.equal(healthFrom({ ...page, title: "Just a moment...", composer: false }), "unresponsive");
});

test("turn texts: the first recognised message", () => {
  assert.equal(classifyTurnTexts(["Here is your image.", "I can't help with that."], 0).kind, "refused");
  assert.equal(classifyTurnTexts(["Image generation failed", "Try again"], 0).kind, "transient");
  assert.equal(classifyTurnTexts(["Here is your image."], 0), null);
  assert.equal(classifyTurnTexts([], 0), null);
});

test("run deadline: absolute, defaulted, or a duration given by mistake", () => {
  const now = 1_800_000_000_000;
  assert.equal(runDeadline(now + 5000, now), now + 5000);
  assert.equal(runDeadline(undefined, now), now + Driver.constants.DEFAULT_RUN_MS);
  assert.equal(runDeadline(0, now), now + Driver.constants.DEFAULT_RUN_MS);
  assert.equal(runDeadline(NaN, now), now + Driver.constants.DEFAULT_RUN_MS);
  assert.equal(runDeadline(300000, now), now + 300000);
});

test("image bytes: MIME sniffing and base64", () => {
  assert.equal(sniffImageMime(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10])), "image/png");
  assert.equal(sniffImageMime(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0])), "image/jpeg");
  assert.equal(sniffImageMime(Uint8Array.from([...Buffer.from("RIFF"), 0, 0, 0, 0, ...Buffer.from("WEBP")])), "image/webp");
  assert.equal(sniffImageMime(Uint8Array.from(Buffer.from("GIF89a"))), null); // the hub takes no GIF
  assert.equal(sniffImageMime(Uint8Array.from(Buffer.from("<html>"))), null);
  const bytes = new Uint8Array(100000).map((_, i) => (i * 7) % 256);
  assert.equal(bytesToBase64(bytes), Buffer.from(bytes).toString("base64"));
});

test("turn text: rendered text without the screen-reader heading", () => {
  assert.equal(turnText({ innerText: "ChatGPT said:\nImage generation failed\nTry again", textContent: "x" }), "Image generation failed\nTry again");
  assert.equal(turnText({ innerText: "", textContent: "ChatGPT said:I can't help with that." }), "I can't help with that.");
  assert.equal(turnText({ textContent: "Here it is" }), "Here it is");
});

// ---- attaching reference images (fake DOM) -----------------------------------------------------

const { File } = require("node:buffer");
const { h, fakeDocument } = require("./helpers/fake_dom.js");
const SelectorTable = require("../lib/selector_table.js");
const { attachReferences, attachDecision, RunError, Cancelled } = Driver;

const REF_A = { sha256: "a".repeat(64), name: "mara.png", mime: "image/png" };
const REF_B = { sha256: "b".repeat(64), name: "tom.jpg", mime: "image/jpeg" };
const BYTES = { [REF_A.sha256]: [0x89, 0x50, 0x4e, 0x47, 1], [REF_B.sha256]: [0xff, 0xd8, 0xff, 2] };

/** DataTransfer as the driver uses it: items.add(file), then .files. */
class FakeDataTransfer {
  constructor() {
    const files = [];
    this.items = { add: (file) => files.push(file) };
    this.files = files;
  }
}

/**
 * A composer like ChatGPT's: a form with the prompt box and a hidden file input. On `change`
 * the "page" shows a chip per file with an upload indicator, removed after `uploadMs` (or an
 * error chip when `refuse` is set). `input: false` leaves the input out.
 */
function page({ input = true, uploadMs = 30, refuse = null, never = false, outsideForm = false } = {}) {
  const box = h("div", { id: "prompt-textarea", contenteditable: "true", class: "ProseMirror" });
  const chips = h("div", { class: "attachments" });
  const fileInput = input ? h("input", { type: "file", multiple: "", accept: "image/*" }) : null;
  const form = h("form", { "data-type": "unified-composer" }, chips, box, input && !outsideForm ? fileInput : []);
  const main = h("main", {}, input && outsideForm ? fileInput : [], h("div", { class: "thread" }), form);
  const toasts = h("div", { class: "toasts" });
  const doc = fakeDocument(h("nav", {}), main, toasts);
  const timers = [];
  const received = [];
  if (fileInput) {
    fileInput.addEventListener("change", () => {
      for (const file of fileInput.files) {
        received.push(file);
        const spinner = h("div", { role: "progressbar", "aria-label": "Uploading" });
        const chip = h("div", { "data-testid": "file-thumbnail", "data-state": "uploading" }, h("img", { src: "blob:https://chatgpt.com/x" }), file.name, spinner);
        chips.append(chip);
        if (never) continue;
        timers.push(
          setTimeout(() => {
            spinner.remove();
            if (refuse) chip.append(h("div", { "data-testid": "attachment-error", role: "alert" }, refuse));
          }, uploadMs)
        );
      }
    });
  }
  return { doc, main, form, box, fileInput, chips, toasts, received, cleanup: () => timers.forEach(clearTimeout) };
}

/** The driver's env over the fake page; records what the driver asked for and reported. */
function env(p, { replies = {}, now = Date.now } = {}) {
  const log = { requested: [], progress: [] };
  return {
    log,
    table: SelectorTable.mergeTables(SelectorTable.DEFAULT_TABLE, null),
    document: p.doc,
    mainRoot: () => p.main,
    requestReference: async (ref) => {
      log.requested.push(ref.sha256);
      if (ref.sha256 in replies) return replies[ref.sha256];
      return { ok: true, base64: Buffer.from(BYTES[ref.sha256]).toString("base64") };
    },
    waitFor: (check, deadline, run) =>
      new Promise((resolve, reject) => {
        const tick = () => {
          if (run && run.cancelled) return reject(new Cancelled("cancelled"));
          let value;
          try {
            value = check();
          } catch (error) {
            return reject(error);
          }
          if (value) return resolve(value);
          if (Date.now() >= deadline) return resolve(null);
          setTimeout(tick, 5);
        };
        tick();
      }),
    progress: async (run, stage, extra) => log.progress.push({ stage, ...extra }),
    File,
    DataTransfer: FakeDataTransfer,
    Event: class {
      constructor(type, init) {
        this.type = type;
        this.bubbles = !!(init && init.bubbles);
      }
    },
    now,
  };
}

const run = (ms = 10000) => ({ task: { task_id: "7", attempt: 1 }, cancelled: false, deadline: Date.now() + ms });

async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the attach to fail");
}

test("attachDecision: an error wins; done needs every preview and no upload running", () => {
  assert.deepEqual(attachDecision({ expected: 2, previews: 2, uploading: false, errors: [] }), { action: "done" });
  assert.deepEqual(attachDecision({ expected: 2, previews: 3, uploading: false, errors: [] }), { action: "done" });
  assert.deepEqual(attachDecision({ expected: 2, previews: 1, uploading: false, errors: [] }), { action: "wait" });
  assert.deepEqual(attachDecision({ expected: 2, previews: 2, uploading: true, errors: [] }), { action: "wait" });
  assert.deepEqual(attachDecision({ expected: 2, previews: 2, uploading: false, errors: ["File is too large"] }), { action: "error", message: "File is too large" });
  assert.deepEqual(attachDecision({ expected: 1, previews: 0, uploading: true, errors: [""] }), { action: "error", message: "the upload failed" });
});

test("attach: the files go into the composer's input through a DataTransfer and one bubbling change, then the upload is awaited", async (t) => {
  const p = page({ uploadMs: 60 });
  t.after(p.cleanup);
  let changes = 0;
  p.form.addEventListener("change", () => changes++); // bubbles to the form, as React listens at the root
  const e = env(p);
  const started = Date.now();
  const count = await attachReferences(run(), [REF_A, REF_B], p.box, e);
  assert.equal(count, 2);
  assert.equal(changes, 1);
  assert.deepEqual(p.received.map((f) => [f.name, f.type, f.size]), [["mara.png", "image/png", 5], ["tom.jpg", "image/jpeg", 4]]);
  assert.deepEqual([...new Uint8Array(await p.received[0].arrayBuffer())], BYTES[REF_A.sha256]);
  assert.deepEqual(e.log.requested, [REF_A.sha256, REF_B.sha256]);
  assert.deepEqual(e.log.progress, [{ stage: "attaching", count: 2 }]);
  // Not before the upload indicators were gone and the previews stayed for the settle time.
  assert.ok(Date.now() - started >= 60 + Driver.constants.ATTACH_SETTLE_MS - 20, `${Date.now() - started} ms`);
  assert.equal(p.doc.querySelectorAll('[role="progressbar"]').length, 0);
});

test("attach: no file input → page_error before anything is read or dispatched", async () => {
  const p = page({ input: false });
  const e = env(p);
  const error = await rejection(attachReferences(run(), [REF_A], p.box, e));
  assert.ok(error instanceof RunError);
  assert.equal(error.kind, "page_error");
  assert.match(error.message, /file input was not found \(selector key "fileInput"\).*the prompt was not sent/);
  assert.deepEqual(e.log.requested, []);
  assert.deepEqual(e.log.progress, []);
});

test("attach: an input outside the form is found in main; older previews and an old error toast are not counted", async (t) => {
  const p = page({ outsideForm: true, uploadMs: 10 });
  t.after(p.cleanup);
  p.chips.append(h("div", { "data-testid": "file-thumbnail" }, "left from before"));
  p.toasts.append(h("div", { role: "alert" }, "Unable to upload old.png"));
  const count = await attachReferences(run(), [REF_A], p.box, env(p));
  assert.equal(count, 1);
  assert.equal(p.received.length, 1);
});

test("attach: an upload the site refuses ends the run with its message, page_error", async (t) => {
  const p = page({ refuse: "File is too large. Maximum size is 512 KB." });
  t.after(p.cleanup);
  const error = await rejection(attachReferences(run(), [REF_A], p.box, env(p)));
  assert.equal(error.kind, "page_error");
  assert.equal(error.message, "ChatGPT refused the reference image: File is too large. Maximum size is 512 KB.; the prompt was not sent.");
});

test("attach: an upload that never finishes ends at the deadline, page_error", async (t) => {
  const p = page({ never: true });
  t.after(p.cleanup);
  const error = await rejection(attachReferences(run(300), [REF_A, REF_B], p.box, env(p)));
  assert.equal(error.kind, "page_error");
  assert.match(error.message, /did not show the 2 reference images as uploaded within 0\.[0-9] s \(still uploading\); the prompt was not sent/);
});

test("attach: a reference the service worker cannot give → page_error, nothing put in the composer", async () => {
  const p = page();
  const e = env(p, { replies: { [REF_B.sha256]: { ok: false, error: `reference image ${REF_B.sha256} is not stored` } } });
  const error = await rejection(attachReferences(run(), [REF_A, REF_B], p.box, e));
  assert.equal(error.kind, "page_error");
  assert.match(error.message, /Reference image "tom.jpg" could not be read .*is not stored\); the prompt was not sent/);
  assert.equal(p.received.length, 0);
  assert.equal((p.fileInput.dispatched || []).length, 0);
  const silent = await rejection(attachReferences(run(), [REF_A], p.box, env(p, { replies: { [REF_A.sha256]: null } })));
  assert.match(silent.message, /the service worker did not answer/);
});

test("attach: nothing to attach is a no-op; a cancelled run stops before the files are set", async () => {
  const p = page();
  const e = env(p);
  assert.equal(await attachReferences(run(), [], p.box, e), 0);
  assert.equal(await attachReferences(run(), undefined, p.box, e), 0);
  assert.deepEqual(e.log.progress, []);
  const cancelled = { ...run(), cancelled: true };
  const error = await rejection(attachReferences(cancelled, [REF_A], p.box, e));
  assert.ok(error instanceof Cancelled);
  assert.equal(p.received.length, 0);
});

test("images the user sent (in a user turn, or previews in the composer) are never results", () => {
  const table = SelectorTable.mergeTables(SelectorTable.DEFAULT_TABLE, null);
  const src = "https://chatgpt.com/backend-api/estuary/content?id=file-abc&sig=1";
  const inUserTurn = h("img", { alt: "Uploaded image: mara.png", src });
  const inUserMessage = h("img", { src });
  const preview = h("img", { src: "blob:https://chatgpt.com/1" });
  const generated = h("img", { alt: "Generated image: a lighthouse", src: src.replace("file-abc", "file_def") });
  const elsewhereInAForm = h("img", { src });
  fakeDocument(
    h("main", {},
      h("article", { "data-testid": "conversation-turn-1", "data-turn": "user" }, inUserTurn),
      h("div", { "data-message-author-role": "user" }, inUserMessage),
      h("article", { "data-testid": "conversation-turn-2", "data-turn": "assistant" }, h("div", { id: "image-def" }, generated)),
      h("form", {}, h("div", { id: "prompt-textarea", contenteditable: "true" }), h("div", { "data-testid": "file-thumbnail" }, preview)),
      h("form", { role: "search" }, elsewhereInAForm),
    ),
  );
  assert.equal(Driver.sentByUser(inUserTurn, table), true);
  assert.equal(Driver.sentByUser(inUserMessage, table), true);
  assert.equal(Driver.sentByUser(preview, table), true);
  assert.equal(Driver.sentByUser(generated, table), false);
  assert.equal(Driver.sentByUser(elsewhereInAForm, table), false, "a form without the prompt box is not the composer");
  assert.equal(Driver.sentByUser({}, table), false);
});
