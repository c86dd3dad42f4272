"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const SelectorTable = require("../lib/selector_table.js");
const { h, fakeDocument } = require("./helpers/fake_dom.js");

const { DEFAULT_TABLE, validateTable, mergeTables, findFirst, findAll, selfTest, matchSelector } = SelectorTable;

const IMAGE_SRC = "https://chatgpt.com/backend-api/estuary/content?id=file_00000000aaaa&sig=abc";

/** A page shaped like chatgpt.com today: the first selector of every key matches. */
function currentPage() {
  const elements = {};
  const keep = (name, element) => (elements[name] = element);
  const root = fakeDocument(
    h("nav", {}, keep("newChatLink", h("a", { "data-testid": "create-new-chat-button", href: "/" }, "New chat"))),
    keep(
      "main",
      h(
        "main",
        {},
        keep(
          "userTurn",
          h("article", { "data-testid": "conversation-turn-1", "data-turn": "user" }, h("div", { "data-message-author-role": "user" }, "Draw a lighthouse")),
        ),
        keep(
          "assistantTurn",
          h(
            "article",
            { "data-testid": "conversation-turn-2", "data-turn": "assistant" },
            h("div", { "data-message-author-role": "assistant" }, "Here it is"),
            keep("imageLoading", h("div", { "data-testid": "image-gen-loading-state" }, "Creating image")),
            keep(
              "multigen",
              h(
                "div",
                { "data-testid": "image-paragen-multigen" },
                keep("multigenPick", h("button", {}, " Image 1 ")),
                h("button", {}, "Image 2"),
                h("div", { id: "image-aaaa" }, keep("generatedImage", h("img", { alt: "Generated image: lighthouse", src: IMAGE_SRC }))),
              ),
            ),
            keep("tryAgain", h("button", {}, "Try again")),
          ),
        ),
        h(
          "form",
          {},
          h(
            "div",
            { "data-type": "unified-composer" },
            keep("composer", h("div", { id: "prompt-textarea", class: "ProseMirror", contenteditable: "true", role: "textbox" })),
          ),
          keep("fileInput", h("input", { type: "file", accept: "image/*" })),
          keep(
            "attachmentPreview",
            h("div", { "data-testid": "file-thumbnail" }, h("img", { src: "blob:https://chatgpt.com/1" }), keep("attachmentUploading", h("div", { role: "progressbar" }))),
          ),
          keep("attachmentError", h("div", { "data-testid": "attachment-error", role: "alert" }, "File is too large")),
          keep("sendButton", h("button", { "data-testid": "send-button", "aria-label": "Send prompt" })),
          keep("stopButton", h("button", { "data-testid": "stop-button", "aria-label": "Stop generating" })),
        ),
      ),
    ),
    h("header", {}, keep("loginButton", h("button", { "data-testid": "login-button" }, "Log in"))),
    keep("loginMarker", h("form", { action: "https://chatgpt.com/auth/login?next=/" })),
    keep("cloudflare", h("form", { id: "challenge-form" })),
    keep(
      "compareDialog",
      h("div", { role: "dialog" }, h("h2", {}, "Which response do you prefer?"), keep("dialogSkip", h("button", {}, "Skip"))),
    ),
  );
  elements.turn = elements.userTurn;
  return { root, elements };
}

test("the default table validates and names every key the driver uses", () => {
  assert.deepEqual(validateTable(DEFAULT_TABLE), []);
  for (const key of [
    "composer", "sendButton", "stopButton", "newChatLink", "userTurn", "assistantTurn", "turn",
    "imageLoading", "multigen", "multigenPick", "generatedImage", "loginButton", "loginMarker",
    "cloudflare", "compareDialog", "dialogSkip", "tryAgain", "main", "fileInput",
    "attachmentPreview", "attachmentUploading", "attachmentError",
  ]) {
    assert.ok(Array.isArray(DEFAULT_TABLE.keys[key]) && DEFAULT_TABLE.keys[key].length > 0, key);
  }
  assert.deepEqual(DEFAULT_TABLE.keys.composer, [
    '#prompt-textarea[contenteditable="true"]',
    "div#prompt-textarea.ProseMirror",
    'div.ProseMirror[contenteditable="true"]',
    '[data-type="unified-composer"] [contenteditable="true"][role="textbox"]',
    "textarea#prompt-textarea",
  ]);
});

test("the default table is frozen (callers get copies)", () => {
  assert.throws(() => DEFAULT_TABLE.keys.composer.push("x"));
  const copy = mergeTables(DEFAULT_TABLE, null);
  copy.keys.composer.push("x");
  assert.equal(DEFAULT_TABLE.keys.composer.includes("x"), false);
});

test("every key finds its element through its first selector on the current page", () => {
  const { root, elements } = currentPage();
  for (const key of Object.keys(DEFAULT_TABLE.keys)) {
    const found = findFirst(root, DEFAULT_TABLE, key);
    assert.ok(found, `${key} not found`);
    assert.equal(found.element, elements[key], `${key} found the wrong element`);
    assert.equal(found.index, 0, `${key} needed fallback ${found.index}`);
    assert.deepEqual(found.selector, DEFAULT_TABLE.keys[key][0]);
  }
});

test("each fallback selector is reached when the earlier ones miss", () => {
  const cases = {
    composer: [
      [h("div", { class: "ProseMirror", id: "prompt-textarea" }), 1],
      [h("div", { class: "ProseMirror", contenteditable: "true" }), 2],
      [h("div", { "data-type": "unified-composer" }, h("div", { contenteditable: "true", role: "textbox" })), 3],
      [h("textarea", { id: "prompt-textarea" }), 4],
    ],
    sendButton: [
      [h("button", { "aria-label": "Send prompt" }), 1],
      [h("button", { id: "composer-submit-button" }), 2],
    ],
    stopButton: [[h("button", { "aria-label": "Stop generating" }), 1], [h("button", { "aria-label": "Stop streaming" }), 2]],
    newChatLink: [[h("button", { "data-testid": "create-new-chat-button" }), 1], [h("a", { href: "/" }, "New chat"), 2]],
    turn: [[h("div", { "data-testid": "conversation-turn-7" }), 1]],
    userTurn: [[h("div", { "data-message-author-role": "user" }), 1]],
    assistantTurn: [[h("div", { "data-message-author-role": "assistant" }), 1]],
    imageLoading: [
      [h("div", { "data-testid": "image-gen-loading-state-dots" }), 1],
      [h("div", { "aria-label": "Generating image..." }), 2],
      [h("div", { "aria-label": "Generating image" }), 3],
    ],
    // An icon button labelled only by aria-label matches the text entry itself.
    multigenPick: [[h("div", { role: "button" }, "Image 1"), 1], [h("button", { "aria-label": "Image 1" }), 0]],
    generatedImage: [
      [h("div", { id: "image-123" }, h("img", { alt: "", src: "x" })), 1],
      [h("img", { src: "/backend-api/estuary/content?id=file_1&sig=2" }), 2],
      [h("img", { src: "https://files.oaiusercontent.com/file-Ab12?sig=1" }), 3],
    ],
    loginButton: [
      [h("a", { "data-testid": "login-button" }), 1],
      [h("button", {}, "Log in"), 2],
      [h("a", { href: "/auth/login" }, "Log in"), 3],
    ],
    loginMarker: [[h("div", { "data-testid": "login-form" }), 1]],
    cloudflare: [
      [h("div", { id: "challenge-running" }), 1],
      [h("div", { id: "challenge-stage" }), 2],
      [h("div", { id: "cf-challenge-running" }), 3],
      [h("iframe", { src: "https://challenges.cloudflare.com/turnstile/v0" }), 4],
      [h("script", { src: "/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1" }), 5],
      [h("input", { name: "cf-turnstile-response" }), 6],
    ],
    compareDialog: [[h("div", { "data-testid": "modal-compare-responses" }, "Pick one"), 1]],
    dialogSkip: [
      [h("button", { "data-testid": "close-button" }), 1],
      [h("button", { "aria-label": "Close" }), 2],
      [h("button", {}, "Close"), 3],
    ],
    tryAgain: [[h("span", { role: "button" }, "Try again"), 1], [h("button", { "aria-label": "Try again" }), 0]],
    main: [[h("div", { role: "main" }), 1], [h("div", { id: "main" }), 2]],
    fileInput: [[h("input", { type: "file", accept: "image/png" }), 1], [h("input", { type: "file" }), 2]],
    attachmentPreview: [[h("div", { "data-testid": "attachment-preview" }), 1], [h("img", { src: "blob:https://chatgpt.com/2" }), 2]],
    attachmentUploading: [[h("div", { "data-testid": "file-thumbnail", "aria-busy": "true" }), 1], [h("span", { role: "progressbar" }), 2]],
    attachmentError: [
      [h("form", {}, h("div", { role: "alert" }, "Unable to upload ref.png")), 1],
      [h("div", { role: "alert" }, "The file is too large"), 2],
    ],
  };
  for (const [key, list] of Object.entries(cases)) {
    for (const [element, index] of list) {
      const root = fakeDocument(element);
      const found = findFirst(root, DEFAULT_TABLE, key);
      assert.ok(found, `${key}: fallback ${index} did not match`);
      assert.equal(found.index, index, `${key}: expected fallback ${index}, got ${found.index}`);
    }
  }
});

test("keys do not match look-alikes", () => {
  const root = fakeDocument(
    h("div", { id: "prompt-textarea", contenteditable: "false" }),
    h("button", { "data-testid": "send-button-disabled-looking" }),
    h("button", {}, "Image 10"),
    h("button", {}, "Try again later"),
    h("button", {}, "Log in with Google"),
    h("img", { alt: "User avatar", src: "https://cdn.example/avatar.png" }),
    h("div", { role: "dialog" }, "Settings"),
  );
  for (const key of ["composer", "sendButton", "multigenPick", "tryAgain", "loginButton", "generatedImage", "compareDialog"]) {
    assert.equal(findFirst(root, DEFAULT_TABLE, key), null, key);
  }
});

test("text selectors compare collapsed, trimmed text case-insensitively, or the aria-label", () => {
  const root = fakeDocument(
    h("button", {}, "\n   image ", h("span", {}, "1"), "  "),
    h("button", { "aria-label": "Skip" }, h("svg", {})),
  );
  assert.equal(matchSelector(root, { css: "button", text: "^Image 1$" }).length, 1);
  assert.equal(matchSelector(root, { css: "button", text: "^Skip$" }).length, 1);
  assert.equal(matchSelector(root, { css: "button" }).length, 2, "an entry without text is plain CSS");
});

test("text selectors are searched inside the given root only", () => {
  const multigen = h("div", { "data-testid": "image-paragen-multigen" }, h("button", {}, "Image 1"));
  const root = fakeDocument(h("button", {}, "Image 1"), multigen);
  const inside = findFirst(multigen, DEFAULT_TABLE, "multigenPick");
  assert.equal(inside.element.parentNode, multigen);
});

test("an unparsable CSS selector is a miss and the next one is tried", () => {
  const table = { version: 2, keys: { send: ["button:unknown-pseudo(", 'button[data-testid="send-button"]'] } };
  const root = fakeDocument(h("button", { "data-testid": "send-button" }));
  const found = findFirst(root, table, "send");
  assert.equal(found.index, 1);
});

test("findFirst on a missing key or a root without querySelectorAll returns null", () => {
  const { root } = currentPage();
  assert.equal(findFirst(root, DEFAULT_TABLE, "noSuchKey"), null);
  assert.equal(findFirst(null, DEFAULT_TABLE, "composer"), null);
  assert.equal(findFirst({}, DEFAULT_TABLE, "composer"), null);
});

test("findAll returns every match once, by selector order then document order", () => {
  const first = h("img", { alt: "Generated image 1", src: "a" });
  const second = h("div", { id: "image-2" }, h("img", { alt: "Generated image 2", src: "b" }));
  const third = h("div", { id: "image-3" }, h("img", { alt: "", src: "c" }));
  const root = fakeDocument(first, second, third);
  const found = findAll(root, DEFAULT_TABLE, "generatedImage");
  assert.deepEqual(found.map((entry) => entry.element.getAttribute("src")), ["a", "b", "c"]);
  assert.deepEqual(found.map((entry) => entry.index), [0, 0, 1]);
  assert.deepEqual(findAll(root, DEFAULT_TABLE, "noSuchKey"), []);
});

test("selfTest reports the matched selector, its index and count per key", () => {
  const root = fakeDocument(
    h("main", {}, h("textarea", { id: "prompt-textarea" }), h("img", { alt: "Generated image", src: "1" }), h("img", { alt: "Generated image", src: "2" })),
  );
  const results = selfTest(root, DEFAULT_TABLE);
  assert.deepEqual(Object.keys(results).sort(), Object.keys(DEFAULT_TABLE.keys).sort());
  assert.deepEqual(results.composer, { matched: "textarea#prompt-textarea", index: 4, count: 1 });
  assert.deepEqual(results.generatedImage, { matched: 'img[alt^="Generated image"]', index: 0, count: 2 });
  assert.deepEqual(results.main, { matched: "main", index: 0, count: 1 });
  assert.deepEqual(results.sendButton, { matched: null, index: -1, count: 0 });
  // The result is plain JSON (sent through chrome.runtime messaging).
  assert.deepEqual(JSON.parse(JSON.stringify(results)), results);
});

test("selfTest reports text selectors as objects", () => {
  const root = fakeDocument(h("button", {}, "Try again"));
  assert.deepEqual(selfTest(root, DEFAULT_TABLE).tryAgain, { matched: { css: "button", text: "^Try again$" }, index: 0, count: 1 });
});

test("validateTable: precise errors with key, index and what was expected", () => {
  const errorsOf = (table) => validateTable(table).map(String);
  assert.deepEqual(errorsOf(null), ["table: expected an object {version, keys}, got null"]);
  assert.deepEqual(errorsOf([]), ["table: expected an object {version, keys}, got an array"]);
  assert.deepEqual(errorsOf("{}"), ['table: expected an object {version, keys}, got the string "{}"']);
  assert.deepEqual(errorsOf({ version: "7", keys: {} }), ['table: "version" must be a non-negative integer, got the string "7"']);
  assert.deepEqual(errorsOf({ version: 1.5, keys: {} }), ['table: "version" must be a non-negative integer, got a number']);
  assert.deepEqual(errorsOf({ version: 2 }), ['table: "keys" must be an object of selector lists, got a undefined']);
  assert.deepEqual(errorsOf({ version: 2, keys: { composer: "#prompt-textarea" } }), [
    'keys.composer: expected an array of selectors, got the string "#prompt-textarea"',
  ]);
  assert.deepEqual(errorsOf({ version: 2, keys: { composer: [] } }), ["keys.composer: expected at least one selector, got an empty list"]);
  assert.deepEqual(errorsOf({ version: 2, keys: { sendButton: ["ok", "", 5, null, ["x"]] } }), [
    "keys.sendButton[1]: expected a non-empty CSS selector string",
    "keys.sendButton[2]: expected a CSS string or {css, text}, got a number",
    "keys.sendButton[3]: expected a CSS string or {css, text}, got null",
    "keys.sendButton[4]: expected a CSS string or {css, text}, got an array",
  ]);
  assert.deepEqual(errorsOf({ version: 2, keys: { tryAgain: [{ text: "^Try$" }, { css: "button", text: "(" }, { css: "b", txt: "x" }, { css: "b", text: "" }] } }), [
    'keys.tryAgain[0]: "css" must be a non-empty string, got a undefined',
    'keys.tryAgain[1]: "text" is not a valid regular expression: Invalid regular expression: /(/i: Unterminated group',
    'keys.tryAgain[2]: unknown field "txt" (expected css, text)',
    'keys.tryAgain[3]: "text" must be a non-empty regular expression string, got the string ""',
  ]);
  const [error] = validateTable({ version: 2, keys: { main: [7] } });
  assert.equal(error.key, "main");
  assert.equal(error.index, 0);
  assert.match(error.message, /expected a CSS string/);
});

test("validateTable accepts the protocol's example table", () => {
  const table = JSON.parse('{"version": 7, "keys": {"sendButton": ["button[data-testid=send-button]", "#composer-submit-button"]}}');
  assert.deepEqual(validateTable(table), []);
});

test("mergeTables: a newer pushed table overrides its keys, keeps the others and unknown keys", () => {
  const pushed = {
    version: DEFAULT_TABLE.version + 5,
    keys: { sendButton: ['button[data-testid="send-button-v2"]'], brandNewKey: [{ css: "button", text: "^New$" }] },
  };
  const merged = mergeTables(DEFAULT_TABLE, pushed);
  assert.equal(merged.version, pushed.version);
  assert.deepEqual(merged.keys.sendButton, ['button[data-testid="send-button-v2"]']);
  assert.deepEqual(merged.keys.brandNewKey, [{ css: "button", text: "^New$" }]);
  assert.deepEqual(merged.keys.composer, DEFAULT_TABLE.keys.composer);
  assert.deepEqual(validateTable(merged), []);
  // The merge copies: editing the result changes neither input.
  merged.keys.brandNewKey[0].css = "a";
  assert.equal(pushed.keys.brandNewKey[0].css, "button");
});

test("mergeTables: a pushed table that is not newer, or invalid, leaves the defaults", () => {
  for (const pushed of [
    { version: DEFAULT_TABLE.version, keys: { sendButton: ["x"] } },
    { version: DEFAULT_TABLE.version - 1, keys: { sendButton: ["x"] } },
    { version: DEFAULT_TABLE.version + 1, keys: { sendButton: [] } },
    { keys: { sendButton: ["x"] } },
    null,
    undefined,
  ]) {
    const merged = mergeTables(DEFAULT_TABLE, pushed);
    assert.equal(merged.version, DEFAULT_TABLE.version);
    assert.deepEqual(merged.keys, JSON.parse(JSON.stringify(DEFAULT_TABLE.keys)));
  }
});

test("a merged table is used like the default one", () => {
  const pushed = { version: 99, keys: { multigenPick: [{ css: "button", text: "^Option A$" }] } };
  const table = mergeTables(DEFAULT_TABLE, pushed);
  const root = fakeDocument(h("button", {}, "Image 1"), h("button", {}, "Option A"));
  assert.equal(findFirst(root, table, "multigenPick").element.textContent, "Option A");
});
