"use strict";
// Unit tests of lib/settings.js: run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const S = require(path.join(__dirname, "..", "lib", "settings.js"));

const TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"; // the protocol doc's example

function valid(extra) {
  return Object.assign({}, S.DEFAULT_SETTINGS, { token: TOKEN }, extra);
}

function fields(result) {
  return result.errors.map((e) => e.field);
}

test("defaults match the brief and are frozen", () => {
  assert.deepEqual(
    { ...S.DEFAULT_SETTINGS },
    {
      hubUrl: "ws://127.0.0.1:8765/",
      token: "",
      accountId: "",
      tabs: 1,
      chatMode: "per_task",
      allowUnencrypted: false,
    },
  );
  assert.ok(Object.isFrozen(S.DEFAULT_SETTINGS));
  assert.equal(S.STORAGE_KEY, "settings");
});

test("defaults alone are invalid only for the missing token", () => {
  const r = S.validateSettings({});
  assert.equal(r.ok, false);
  assert.deepEqual(fields(r), ["token"]);
  assert.equal(r.settings.hubUrl, "ws://127.0.0.1:8765/");
});

test("a complete valid object passes and is normalised", () => {
  const r = S.validateSettings(valid({ hubUrl: " ws://127.0.0.1:8765 ", token: ` ${TOKEN}\n`, tabs: "4", extra: 1 }));
  assert.equal(r.ok, true, JSON.stringify(r.errors));
  assert.deepEqual(r.errors, []);
  assert.equal(r.settings.hubUrl, "ws://127.0.0.1:8765/");
  assert.equal(r.settings.token, TOKEN);
  assert.equal(r.settings.tabs, 4);
  assert.ok(!("extra" in r.settings), "unknown fields are dropped");
});

test("non-objects are treated as empty", () => {
  for (const bad of [null, undefined, 5, "x"]) {
    assert.deepEqual(fields(S.validateSettings(bad)), ["token"]);
  }
});

test("hub URL: ws and wss only", () => {
  for (const url of ["http://127.0.0.1:8765/", "https://example.com/", "ftp://x/", "127.0.0.1:8765", "", "   ", "ws://"]) {
    const r = S.validateSettings(valid({ hubUrl: url }));
    assert.deepEqual(fields(r), ["hubUrl"], url);
    assert.ok(r.errors[0].message.length > 10);
  }
  assert.equal(S.validateSettings(valid({ hubUrl: 42 })).errors[0].field, "hubUrl");
});

test("hub URL: ws:// to loopback is fine, to other hosts needs consent", () => {
  for (const url of ["ws://127.0.0.1:8765/", "ws://localhost:9000/", "ws://127.1.2.3/", "ws://[::1]:8765/", "ws://LOCALHOST./", "ws://app.localhost/"]) {
    assert.equal(S.validateSettings(valid({ hubUrl: url })).ok, true, url);
  }
  for (const url of ["ws://192.168.1.5:8765/", "ws://example.com/", "ws://128.0.0.1/", "ws://localhost.example.com/", "ws://[::2]/"]) {
    const r = S.validateSettings(valid({ hubUrl: url }));
    assert.deepEqual(fields(r), ["hubUrl"], url);
    assert.match(r.errors[0].message, /unencrypted/);
    assert.equal(S.validateSettings(valid({ hubUrl: url, allowUnencrypted: true })).ok, true, url);
  }
  assert.equal(S.validateSettings(valid({ hubUrl: "wss://hub.example.com:8765/" })).ok, true);
  // Consent must be a real boolean, not a truthy string from a hand-edited storage entry.
  assert.equal(S.validateSettings(valid({ hubUrl: "ws://10.0.0.2/", allowUnencrypted: "yes" })).ok, false);
});

test("hub URL: no credentials, no fragment", () => {
  assert.match(S.validateSettings(valid({ hubUrl: "ws://me:pw@127.0.0.1/" })).errors[0].message, /password/);
  assert.match(S.validateSettings(valid({ hubUrl: "ws://127.0.0.1/#x" })).errors[0].message, /#/);
});

test("checkHubUrl flags unencrypted remote URLs even when allowed", () => {
  const r = S.checkHubUrl("ws://10.0.0.2:8765/", true);
  assert.equal(r.ok, true);
  assert.equal(r.unencryptedRemote, true);
  assert.equal(S.checkHubUrl("wss://10.0.0.2/", false).unencryptedRemote, false);
});

test("isLoopbackHost", () => {
  assert.equal(S.isLoopbackHost("127.0.0.1"), true);
  assert.equal(S.isLoopbackHost("127.255.255.255"), true);
  assert.equal(S.isLoopbackHost("127.0.0.256"), false);
  assert.equal(S.isLoopbackHost("[::ffff:7f00:1]"), true);
  assert.equal(S.isLoopbackHost("0.0.0.0"), false);
  assert.equal(S.isLoopbackHost(""), false);
  assert.equal(S.isLoopbackHost(undefined), false);
});

test("token: 22–128 characters of A–Z a–z 0–9 _ -", () => {
  assert.equal(S.validateSettings(valid({ token: "a".repeat(22) })).ok, true);
  assert.equal(S.validateSettings(valid({ token: "A-_9".repeat(32) })).ok, true);
  const short = S.validateSettings(valid({ token: "a".repeat(21) }));
  assert.deepEqual(fields(short), ["token"]);
  assert.match(short.errors[0].message, /21/);
  assert.deepEqual(fields(S.validateSettings(valid({ token: "a".repeat(129) }))), ["token"]);
  const bad = S.validateSettings(valid({ token: "abc+def/ghi=jklmnopqrstuvwxyz" }));
  assert.deepEqual(fields(bad), ["token"]);
  assert.match(bad.errors[0].message, /\+/);
  assert.deepEqual(fields(S.validateSettings(valid({ token: 123 }))), ["token"]);
});

test("account id: empty or the protocol's ID rule", () => {
  for (const id of ["", "anna", "profile-anna", "a.b_c:d@e-f", "9", "x".repeat(128)]) {
    assert.equal(S.validateSettings(valid({ accountId: id })).ok, true, id);
  }
  for (const id of ["-anna", ".x", "an na", "ä", "x".repeat(129), "a/b"]) {
    assert.deepEqual(fields(S.validateSettings(valid({ accountId: id }))), ["accountId"], id);
  }
  assert.equal(S.validateSettings(valid({ accountId: "  anna " })).settings.accountId, "anna");
});

test("tabs: whole numbers 1–10", () => {
  for (const n of [1, 5, 10, "10", " 3 "]) {
    assert.equal(S.validateSettings(valid({ tabs: n })).ok, true, String(n));
  }
  for (const n of [0, 11, -1, 1.5, "1.5", "two", "", NaN, Infinity, true]) {
    assert.deepEqual(fields(S.validateSettings(valid({ tabs: n }))), ["tabs"], String(n));
  }
});

test("chat mode", () => {
  assert.equal(S.validateSettings(valid({ chatMode: "per_sequence" })).ok, true);
  const r = S.validateSettings(valid({ chatMode: "per_chat" }));
  assert.deepEqual(fields(r), ["chatMode"]);
  assert.equal(r.settings.chatMode, "per_task");
});

test("several errors are reported together, in form order", () => {
  const r = S.validateSettings({ hubUrl: "http://x/", token: "short", accountId: "-", tabs: 0, chatMode: "x" });
  assert.deepEqual(fields(r), ["hubUrl", "token", "accountId", "tabs", "chatMode"]);
});

test("parsePairingHash reads what `novelgen pair` prints", () => {
  assert.deepEqual(S.parsePairingHash(`#hub=ws://127.0.0.1:8765/&token=${TOKEN}`), {
    hubUrl: "ws://127.0.0.1:8765/",
    token: TOKEN,
  });
  // Percent-encoded and in the other order.
  assert.deepEqual(S.parsePairingHash(`token=${TOKEN}&hub=ws%3A%2F%2F127.0.0.1%3A9000%2F`), {
    hubUrl: "ws://127.0.0.1:9000/",
    token: TOKEN,
  });
  // A token alone (the hub URL stays as configured).
  assert.deepEqual(S.parsePairingHash(`#token=${TOKEN}`), { hubUrl: null, token: TOKEN });
  // Nothing to pair with.
  for (const h of ["", "#", "#section", "#foo=bar", null, undefined]) {
    assert.equal(S.parsePairingHash(h), null, String(h));
  }
  // A stray % does not throw; validation then reports the token.
  const odd = S.parsePairingHash("#token=abc%zz");
  assert.equal(odd.token, "abc%zz");
  assert.equal(S.validateSettings(valid({ token: odd.token })).ok, false);
  // '+' is not a space here.
  assert.equal(S.parsePairingHash("#token=a+b").token, "a+b");
});

test("a parsed pairing link validates", () => {
  const p = S.parsePairingHash(`#hub=ws://127.0.0.1:8765/&token=${TOKEN}`);
  assert.equal(S.validateSettings({ hubUrl: p.hubUrl, token: p.token }).ok, true);
});

test("maskToken hides the middle", () => {
  assert.equal(S.maskToken(TOKEN), "q3X9••••••••9bN2");
  assert.equal(S.maskToken("abc"), "•••");
  assert.equal(S.maskToken(""), "");
  assert.ok(!S.maskToken(TOKEN).includes(TOKEN.slice(4, 10)));
});

test("describeClose explains the protocol's close codes", () => {
  assert.match(S.describeClose(4001, true), /token/);
  assert.match(S.describeClose(1006, false), /novelgen serve/);
  assert.match(S.describeClose(4009, true), /version/);
  assert.match(S.describeClose(1234, true), /1234/);
});

test("the file also works as a browser global", () => {
  const fs = require("node:fs");
  const vm = require("node:vm");
  const sandbox = { URL };
  sandbox.globalThis = sandbox;
  vm.runInNewContext(fs.readFileSync(path.join(__dirname, "..", "lib", "settings.js"), "utf8"), sandbox);
  assert.equal(typeof sandbox.NovelGenSettings.validateSettings, "function");
  assert.equal(sandbox.NovelGenSettings.validateSettings({ token: TOKEN }).ok, true);
});
