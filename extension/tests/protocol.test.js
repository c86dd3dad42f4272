"use strict";
// Unit tests of lib/protocol.js: run with `node --test extension/tests/`.
// Two tests cross-check the JS builders against the hub's Python implementation
// (novelgen_desktop/protocol) when the project's venv exists.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const fs = require("node:fs");
const { spawnSync } = require("node:child_process");

const P = require(path.join(__dirname, "..", "lib", "protocol.js"));

const REPO = path.join(__dirname, "..", "..");
const PYTHON = path.join(REPO, ".venv", "bin", "python");
const TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2";
const SHA = "a".repeat(64);

function runPython(code, input) {
  const res = spawnSync(PYTHON, ["-c", code], { cwd: REPO, input, encoding: "utf8", timeout: 60000 });
  if (res.error) throw res.error;
  assert.equal(res.status, 0, `python failed:\n${res.stderr}`);
  return res.stdout;
}

const noPython = fs.existsSync(PYTHON) ? false : `no Python venv at ${PYTHON}`;

function hasLoneSurrogate(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

// ---- envelope and builders ------------------------------------------------------------------

test("hello: envelope, worker fields, holding as string ids, optionals omitted", () => {
  const msg = P.hello({
    token: TOKEN,
    workerId: "ext-abc-1",
    accountId: "chrome-abc",
    tabId: 1234,
    instanceId: "inst-1",
    holding: [{ task_id: 42, attempt: 2 }],
  });
  assert.equal(msg.v, 1);
  assert.equal(msg.type, "hello");
  assert.equal(msg.role, "worker");
  assert.deepEqual(msg.versions, [1]);
  assert.equal(msg.kind, "extension");
  assert.equal(msg.agent, P.AGENT);
  assert.equal(msg.tab_id, "1234");
  assert.deepEqual(msg.holding, [{ task_id: "42", attempt: 2 }]);
  assert.ok(msg.capabilities.includes("binary_frames"));

  const bare = P.hello({ token: TOKEN, workerId: "w", accountId: "a", tabId: null });
  assert.equal("tab_id" in bare, false);
  assert.equal("instance_id" in bare, false);
  assert.deepEqual(bare.holding, []);
});

test("hello: holding is capped at 64 entries", () => {
  const holding = Array.from({ length: 100 }, (_, i) => ({ task_id: String(i), attempt: 1 }));
  const msg = P.hello({ token: TOKEN, workerId: "w", accountId: "a", holding });
  assert.equal(msg.holding.length, 64);
  assert.deepEqual(msg.holding[63], { task_id: "63", attempt: 1 });
});

test("heartbeat: ts in epoch seconds and seq", () => {
  const before = Date.now() / 1000;
  const msg = P.heartbeat(7);
  assert.equal(msg.type, "heartbeat");
  assert.equal(msg.seq, 7);
  assert.ok(msg.ts >= before && msg.ts <= Date.now() / 1000 + 1);
});

test("bye: detail optional and clipped", () => {
  assert.deepEqual(P.bye("user"), { v: 1, type: "bye", reason: "user" });
  const long = P.bye("error", "x".repeat(5000));
  assert.equal(long.detail.length, 4096);
  assert.ok(long.detail.endsWith("…"));
});

test("clip: short text untouched, long text ends with an ellipsis at exactly max", () => {
  assert.equal(P.clip("abc"), "abc");
  assert.equal(P.clip(null), "");
  assert.equal(P.clip("abcdef", 4), "abc…");
  assert.equal(P.clip("abcd", 4), "abcd");
});

test(
  "clip never cuts a surrogate pair in half (the hub refuses lone surrogates)",
  () => {
    const text = "x".repeat(4094) + "\u{1F600}" + "tail";
    const out = P.clip(text);
    assert.ok(out.length <= 4096);
    assert.equal(hasLoneSurrogate(out), false, "clip left a lone surrogate");
  }
);

test("progress: stage checked, percent clamped, bad url dropped", () => {
  assert.throws(() => P.progress({ task_id: "1", attempt: 1, stage: "captured" }), /unknown stage/);
  const msg = P.progress({ task_id: "1", attempt: 1, stage: "generating", percent: 140, conversation_url: "javascript:x" });
  assert.equal(msg.percent, 100);
  assert.equal("conversation_url" in msg, false);
  const ok = P.progress({ task_id: "1", attempt: 1, stage: "submitted", conversation_url: "https://chatgpt.com/c/abc" });
  assert.equal(ok.conversation_url, "https://chatgpt.com/c/abc");
  assert.equal("percent" in ok, false);
  assert.equal(P.progress({ task_id: "1", attempt: 1, stage: "typing", percent: -5 }).percent, 0);
});

test("status: health checked, busy boolean, memory_bytes only a non-negative integer", () => {
  assert.throws(() => P.status({ health: "busy" }), /unknown tab health/);
  const msg = P.status({ health: "ok", busy: 1, memoryBytes: 1.5, url: "chrome://x" });
  assert.equal(msg.tab_health, "ok");
  assert.equal(msg.busy, true);
  assert.equal("memory_bytes" in msg, false);
  assert.equal("url" in msg, false);
  assert.equal(P.status({ health: "loading", memoryBytes: 10 }).memory_bytes, 10);
  assert.equal(P.status({ health: "loading" }).busy, false);
});

test("resultAnnouncement: binary encoding, mime fallback, dimension and elapsed bounds", () => {
  const msg = P.resultAnnouncement({
    task_id: "5",
    attempt: 1,
    sha256: SHA,
    size: 10,
    mime: "image/gif",
    width: 0,
    height: 70000,
    elapsed: 1e9,
    image_id: "i".repeat(300),
  });
  assert.equal(msg.type, "result");
  assert.equal(msg.encoding, "binary");
  assert.equal(msg.mime, "image/png");
  assert.equal("width" in msg, false);
  assert.equal("height" in msg, false);
  assert.equal(msg.elapsed, 604800);
  assert.equal(msg.image_id.length, 256);
  assert.equal("data" in msg, false);
  const ok = P.resultAnnouncement({ task_id: "5", attempt: 1, sha256: SHA, size: 10, mime: "image/webp", width: 1024, height: 1536, elapsed: 3.5 });
  assert.equal(ok.mime, "image/webp");
  assert.equal(ok.width, 1024);
  assert.equal(ok.elapsed, 3.5);
});

test("taskError: kinds, refused gets a text, retry_after only with rate_limited", () => {
  assert.throws(() => P.taskError({ task_id: "1", attempt: 1, kind: "worker_lost" }), /unknown kind/);
  assert.equal(P.taskError({ task_id: "1", attempt: 1, kind: "refused", message: "   " }).message, "ChatGPT refused the prompt");
  assert.equal(P.taskError({ task_id: "1", attempt: 1, kind: "refused", message: "no" }).message, "no");
  const rl = P.taskError({ task_id: "1", attempt: 1, kind: "rate_limited", retry_after: 1e9 });
  assert.equal(rl.retry_after, 604800);
  assert.equal(rl.message, "");
  assert.equal(P.taskError({ task_id: "1", attempt: 1, kind: "rate_limited", retry_after: -1 }).retry_after, undefined);
  assert.equal("retry_after" in P.taskError({ task_id: "1", attempt: 1, kind: "timeout", retry_after: 30 }), false);
});

test("safeId: cleans profile names, falls back when nothing is left", () => {
  assert.equal(P.safeId("My Profile/1", "fb"), "My-Profile-1");
  assert.equal(P.safeId("--abc", "fb"), "abc");
  assert.equal(P.safeId("", "fb"), "fb");
  assert.equal(P.safeId("***", "fb"), "fb");
  assert.equal(P.safeId("a".repeat(300), "fb").length, 128);
  assert.ok(P.ID_PATTERN.test(P.safeId("ünïcødé name", "fb")));
});

// ---- parse ---------------------------------------------------------------------------------

test("parse: accepts hub messages, rejects bad frames with a reason", () => {
  const welcome = P.parse(JSON.stringify({ v: 1, type: "welcome", session_id: "s1", heartbeat_interval: 15 }));
  assert.equal(welcome.type, "welcome");
  const assign = P.parse(JSON.stringify({ v: 1, type: "assign", task_id: "12", attempt: 1, prompt: "a cat", deadline: 1 }));
  assert.equal(assign.prompt, "a cat");
  assert.throws(() => P.parse("{nope"), /not JSON/);
  assert.throws(() => P.parse("[1]"), /not a JSON object/);
  assert.throws(() => P.parse("null"), /not a JSON object/);
  assert.throws(() => P.parse(JSON.stringify({ v: 2, type: "welcome" })), /protocol version 2/);
  assert.throws(() => P.parse(JSON.stringify({ v: 1 })), /no message type/);
  assert.throws(() => P.parse(JSON.stringify({ v: 1, type: "assign", task_id: "01", attempt: 1, prompt: "p" })), /bad task_id/);
  assert.throws(() => P.parse(JSON.stringify({ v: 1, type: "assign", task_id: "1", attempt: 0, prompt: "p" })), /bad attempt/);
  assert.throws(() => P.parse(JSON.stringify({ v: 1, type: "assign", task_id: "1", attempt: 1.5, prompt: "p" })), /bad attempt/);
  assert.throws(() => P.parse(JSON.stringify({ v: 1, type: "assign", task_id: "1", attempt: 1, prompt: "" })), /empty prompt/);
});

test("hello advertises the cleanup capability", () => {
  const msg = P.hello({ token: TOKEN, workerId: "w", accountId: "a" });
  assert.ok(msg.capabilities.includes("cleanup"));
  assert.deepEqual(P.CLEANUP_ACTIONS, ["reload_tab", "new_chat", "drop_images"]);
});

test("status: conversation_turns only a non-negative integer", () => {
  assert.equal(P.status({ health: "ok", conversationTurns: 7 }).conversation_turns, 7);
  assert.equal(P.status({ health: "ok", conversationTurns: 0 }).conversation_turns, 0);
  for (const bad of [-1, 1.5, "3", null, undefined, NaN]) {
    assert.equal("conversation_turns" in P.status({ health: "ok", conversationTurns: bad }), false, String(bad));
  }
  assert.equal(P.status({ health: "ok", conversationTurns: 5e9 }).conversation_turns, 1e9);
});

test("cleanupDone: re checked, ok boolean, byte figures rounded and bounded, optionals omitted", () => {
  const full = P.cleanupDone({ re: "mem-12", action: "reload_tab", ok: true, heapBefore: 612000000.4, heapAfter: 48000000, detail: "x".repeat(5000) });
  assert.equal(full.type, "cleanup_done");
  assert.equal(full.re, "mem-12");
  assert.equal(full.action, "reload_tab");
  assert.equal(full.ok, true);
  assert.equal(full.heap_before, 612000000);
  assert.equal(full.heap_after, 48000000);
  assert.equal(full.detail.length, 4096);
  assert.equal("freed_bytes" in full, false);
  const bare = P.cleanupDone({ re: "mem-1", action: "new_chat", ok: 0, heapBefore: -5, heapAfter: NaN });
  assert.deepEqual(Object.keys(bare).sort(), ["action", "ok", "re", "type", "v"]);
  assert.equal(bare.ok, false);
  assert.equal(P.cleanupDone({ re: "m", action: "drop_images", ok: true, freedBytes: 0 }).freed_bytes, 0);
  assert.equal(P.cleanupDone({ re: "m", action: "drop_images", ok: true, freedBytes: 2 ** 60 }).freed_bytes, 2 ** 48);
  assert.throws(() => P.cleanupDone({ re: "", action: "reload_tab", ok: true }), /bad re/);
  assert.throws(() => P.cleanupDone({ re: "-x", action: "reload_tab", ok: true }), /bad re/);
});

test("parse: cleanup needs a request_id and an action; an unknown action is let through", () => {
  const ok = P.parse(JSON.stringify({ v: 1, type: "cleanup", request_id: "mem-12", action: "reload_tab", reason: "memory pressure" }));
  assert.equal(ok.action, "reload_tab");
  assert.equal(ok.reason, "memory pressure");
  // A newer hub's action: parsed, so the slot can answer ok:false instead of leaving it unanswered.
  assert.equal(P.parse(JSON.stringify({ v: 1, type: "cleanup", request_id: "mem-13", action: "compact_heap" })).action, "compact_heap");
  // A reason that is not text is only for the log: dropped, the request stands.
  assert.equal("reason" in P.parse(JSON.stringify({ v: 1, type: "cleanup", request_id: "m", action: "new_chat", reason: 5 })), false);
  const bad = (fields) => JSON.stringify({ v: 1, type: "cleanup", ...fields });
  assert.throws(() => P.parse(bad({ action: "reload_tab" })), /cleanup: bad request_id/);
  assert.throws(() => P.parse(bad({ request_id: "", action: "reload_tab" })), /cleanup: bad request_id/);
  assert.throws(() => P.parse(bad({ request_id: "x".repeat(129), action: "reload_tab" })), /cleanup: bad request_id/);
  assert.throws(() => P.parse(bad({ request_id: "m" })), /cleanup: bad action/);
  assert.throws(() => P.parse(bad({ request_id: "m", action: 3 })), /cleanup: bad action/);
  assert.throws(() => P.parse(bad({ request_id: "m", action: "Reload Tab!" })), /cleanup: bad action/);
});

// ---- binary frame, base64, sha256, mime ----------------------------------------------------

test("imageFrame: NGI1 | attempt u32 BE | n | id | bytes", () => {
  const bytes = new Uint8Array([1, 2, 3, 255]);
  const f = P.imageFrame("123", 258, bytes);
  assert.ok(f instanceof Uint8Array);
  assert.deepEqual([...f], [0x4e, 0x47, 0x49, 0x31, 0, 0, 1, 2, 3, 0x31, 0x32, 0x33, 1, 2, 3, 255]);
  const big = P.imageFrame("9", 0xfffffffe, new Uint8Array(0));
  assert.deepEqual([...big.subarray(4, 8)], [0xff, 0xff, 0xff, 0xfe]);
  assert.equal(big.length, 10);
  assert.equal(P.imageFrame(0, 1, bytes)[8], 1);
  assert.throws(() => P.imageFrame("01", 1, bytes), /bad task id/);
  assert.throws(() => P.imageFrame("abc", 1, bytes), /bad task id/);
  assert.throws(() => P.imageFrame("1".repeat(17), 1, bytes), /bad task id/);
});

test("base64 round trip over all byte values and a buffer larger than one chunk", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.equal(P.bytesToBase64(all), Buffer.from(all).toString("base64"));
  assert.deepEqual(P.base64ToBytes(P.bytesToBase64(all)), all);
  const big = new Uint8Array(100000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const b64 = P.bytesToBase64(big);
  assert.equal(b64, Buffer.from(big).toString("base64"));
  assert.deepEqual(P.base64ToBytes(b64), big);
  assert.equal(P.bytesToBase64(new Uint8Array(0)), "");
});

test("sha256Hex matches known digests", async () => {
  assert.equal(await P.sha256Hex(new Uint8Array(0)), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(await P.sha256Hex(new TextEncoder().encode("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
});

test("sniffMime: png, jpeg, webp, unknown", () => {
  assert.equal(P.sniffMime(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "image/png");
  assert.equal(P.sniffMime(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])), "image/jpeg");
  const webp = new Uint8Array([...Buffer.from("RIFF"), 0, 0, 0, 0, ...Buffer.from("WEBP")]);
  assert.equal(P.sniffMime(webp), "image/webp");
  assert.equal(P.sniffMime(new Uint8Array([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0, 0])), null);
  assert.equal(P.sniffMime(new Uint8Array([0x89, 0x50])), null);
});

// ---- cross-checks with the hub's Python implementation -------------------------------------

test("NGI1 frame decodes with the hub's framing.py and matches its announcement", { skip: noPython }, async () => {
  const image = new Uint8Array(3000);
  for (let i = 0; i < image.length; i++) image[i] = (i * 7 + 3) & 0xff;
  image.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const cases = [
    { task_id: "1234567890123456", attempt: 3 },
    { task_id: "0", attempt: 1000 },
  ];
  const lines = [];
  for (const c of cases) {
    const frame = P.imageFrame(c.task_id, c.attempt, image);
    const ann = P.resultAnnouncement({
      task_id: c.task_id,
      attempt: c.attempt,
      sha256: await P.sha256Hex(image),
      size: image.length,
      mime: P.sniffMime(image),
    });
    lines.push(JSON.stringify({ frame: Buffer.from(frame).toString("hex"), announcement: JSON.stringify(ann) }));
  }
  const code = `
import sys, json, hashlib
from novelgen_desktop.protocol.framing import parse_image_frame, image_frame, ImageReceiver
from novelgen_desktop.protocol.messages import decode, Role
for line in sys.stdin:
    case = json.loads(line)
    frame = bytes.fromhex(case["frame"])
    task_id, attempt, image = parse_image_frame(frame)
    rx = ImageReceiver()
    assert rx.announce(decode(case["announcement"], sender=Role.WORKER)) is None
    result, verified = rx.binary_frame(frame)
    print(json.dumps({
        "task_id": task_id, "attempt": attempt,
        "sha256": hashlib.sha256(bytes(image)).hexdigest(),
        "verified": len(verified),
        "same_as_python": image_frame(task_id, attempt, bytes(image)) == frame,
    }))
`;
  const out = runPython(code, lines.join("\n") + "\n").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, cases.length);
  const sha = await P.sha256Hex(image);
  cases.forEach((c, i) => {
    assert.deepEqual(out[i], { task_id: c.task_id, attempt: c.attempt, sha256: sha, verified: image.length, same_as_python: true });
  });
});

test("messages built by protocol.js pass the hub's decode(sender=worker)", { skip: noPython }, () => {
  const messages = {
    hello: P.hello({
      token: TOKEN,
      workerId: "ext-0f3a-1",
      accountId: P.safeId("Work profile (2)", "chrome-0f3a"),
      tabId: 1587,
      instanceId: "0b6c1f3e-5b1a-4d8e-9c1e-7a0d2f3b4c5d",
      holding: [{ task_id: "17", attempt: 2 }, { task_id: 18, attempt: 1 }],
    }),
    hello_bare: P.hello({ token: TOKEN, workerId: "ext-0f3a-2", accountId: "chrome-0f3a" }),
    result: P.resultAnnouncement({
      task_id: "17",
      attempt: 2,
      sha256: SHA,
      size: 1234567,
      mime: "image/png",
      conversation_url: "https://chatgpt.com/c/67f0-aa",
      image_id: "file-abc123",
      width: 1024,
      height: 1536,
      elapsed: 42.25,
    }),
    rate_limited: P.taskError({ task_id: "17", attempt: 2, kind: "rate_limited", message: "You've hit the limit", retry_after: 3600 }),
    refused_empty: P.taskError({ task_id: "17", attempt: 2, kind: "refused", message: "" }),
    page_error: P.taskError({ task_id: "17", attempt: 2, kind: "page_error", message: "x".repeat(5000), conversation_url: "https://chatgpt.com/c/1" }),
    status: P.status({ health: "ok", busy: true, memoryBytes: 123456789, taskId: "17", url: "https://chatgpt.com/", detail: "fine" }),
    status_min: P.status({ health: "logged_out" }),
    status_turns: P.status({ health: "loading", busy: false, conversationTurns: 12 }),
    cleanup_done: P.cleanupDone({ re: "mem-12", action: "reload_tab", ok: true, heapBefore: 612000000, heapAfter: 48000000 }),
    cleanup_done_refused: P.cleanupDone({ re: "mem-13", action: "new_chat", ok: false, heapBefore: 1, detail: "busy with 17/2 (stage generating)" }),
    cleanup_done_images: P.cleanupDone({ re: "mem-14", action: "drop_images", ok: true, freedBytes: 123456, detail: "dropped 1 acknowledged image(s)" }),
    progress: P.progress({ task_id: "17", attempt: 2, stage: "generating", percent: 50, conversation_url: "https://chatgpt.com/c/1", detail: "drawing" }),
    progress_float: P.progress({ task_id: "17", attempt: 2, stage: "downloading", percent: 99.5 }),
    heartbeat: P.heartbeat(3),
    bye: P.bye("restart", "service worker restarting"),
    bye_bare: P.bye("tab_closed"),
    // negative control: the harness must actually refuse what the hub refuses
    control_refused_blank: { v: 1, type: "task_error", task_id: "1", attempt: 1, kind: "refused", message: "" },
  };
  const names = Object.keys(messages);
  const input = names.map((n) => JSON.stringify(JSON.stringify(messages[n]))).join("\n") + "\n";
  const code = `
import sys, json
from novelgen_desktop.protocol.messages import decode, Role
for line in sys.stdin:
    text = json.loads(line)
    try:
        msg = decode(text, sender=Role.WORKER)
        print(json.dumps({"ok": True, "type": msg.type}))
    except Exception as err:
        print(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}))
`;
  const out = runPython(code, input).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, names.length);
  names.forEach((name, i) => {
    if (name.startsWith("control_")) {
      assert.equal(out[i].ok, false, `${name}: the hub should refuse it`);
      return;
    }
    assert.deepEqual(out[i], { ok: true, type: messages[name].type }, `${name}: ${out[i].error || ""}`);
  });
});

test("every cleanup the hub can send parses here, its examples included", { skip: noPython }, () => {
  const code = `
import json
from novelgen_desktop.protocol.messages import Cleanup, CleanupAction, encode
from novelgen_desktop.protocol.examples import example_messages
out = [encode(Cleanup(request_id=f"mem-{i}", action=a, reason="memory pressure")) for i, a in enumerate(CleanupAction)]
out += [encode(m) for m in example_messages() if m.type == "cleanup"]
print(json.dumps(out))
`;
  const texts = JSON.parse(runPython(code, ""));
  assert.ok(texts.length > P.CLEANUP_ACTIONS.length, "examples.py has a cleanup example");
  const actions = texts.map((t) => P.parse(t).action);
  assert.deepEqual([...new Set(actions)].sort(), [...P.CLEANUP_ACTIONS].sort(), "the hub knows exactly the actions the extension does");
});

// ---- reference images (issue 8) ----------------------------------------------------------------

const REF_SHA = "b".repeat(64);

function referenceFrame(extra = {}) {
  return { v: 1, type: "reference_image", sha256: REF_SHA, name: "mara.png", mime: "image/png", size: 3, data: "AQID", ...extra };
}

test("hello advertises the references capability", () => {
  const msg = P.hello({ token: TOKEN, workerId: "w", accountId: "a" });
  assert.ok(msg.capabilities.includes("references"));
  assert.equal(P.MAX_REFERENCES, 8);
  assert.equal(P.MAX_REFERENCE_BYTES, 8 * 1024 * 1024);
});

test("parse: reference_image fields are checked as the hub defines them", () => {
  assert.equal(P.parse(JSON.stringify(referenceFrame())).name, "mara.png");
  for (const mime of ["image/png", "image/jpeg", "image/webp"]) assert.equal(P.parse(JSON.stringify(referenceFrame({ mime }))).mime, mime);
  assert.equal(P.parse(JSON.stringify(referenceFrame({ name: "é".repeat(255) }))).name.length, 255);
  assert.equal(P.parse(JSON.stringify(referenceFrame({ name: "😀".repeat(255) }))).type, "reference_image", "255 code points, 510 UTF-16 units");
  const bad = {
    sha256: [{ sha256: "B".repeat(64) }, { sha256: "b".repeat(63) }, { sha256: undefined }],
    name: [{ name: "" }, { name: "a/b.png" }, { name: "a\\b.png" }, { name: "a\nb" }, { name: "x".repeat(256) }, { name: 7 }],
    mime: [{ mime: "image/gif" }, { mime: undefined }],
    size: [{ size: 0 }, { size: 8 * 1024 * 1024 + 1 }, { size: 2.5 }, { size: "3" }],
    data: [{ data: "" }, { data: "AQI" }, { data: "AQ!D" }, { data: 12 }, { data: "A".repeat(4 * Math.ceil((8 * 1024 * 1024) / 3) + 4) }],
  };
  for (const [field, cases] of Object.entries(bad)) {
    for (const change of cases) {
      assert.throws(() => P.parse(JSON.stringify(referenceFrame(change))), new RegExp(`reference_image: .*${field === "data" ? "base64" : field}`), JSON.stringify(change).slice(0, 80));
    }
  }
});

test("parse: assign.references — at most 8 of {sha256, name, mime}; metadata an object", () => {
  const base = { v: 1, type: "assign", task_id: "12", attempt: 1, prompt: "@Mara at the lamp", deadline: 1 };
  const ref = { sha256: REF_SHA, name: "mara.png", mime: "image/png" };
  assert.deepEqual(P.parse(JSON.stringify({ ...base, references: [ref] })).references, [ref]);
  assert.equal(P.parse(JSON.stringify({ ...base, references: [] })).references.length, 0);
  assert.equal(P.parse(JSON.stringify({ ...base, references: Array(8).fill(ref) })).references.length, 8);
  assert.equal(P.parse(JSON.stringify({ ...base, metadata: { sequence: "ch2/p14", new_chat: true } })).metadata.sequence, "ch2/p14");
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: Array(9).fill(ref) })), /more than 8 references/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: ref })), /references is not an array/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: [{ ...ref, sha256: "x" }] })), /references\[0\]: bad sha256/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: [ref, { ...ref, name: "../x.png" }] })), /references\[1\]: bad name/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: [{ ...ref, mime: "image/bmp" }] })), /references\[0\]: bad mime/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, references: [null] })), /references\[0\]: not an object/);
  assert.throws(() => P.parse(JSON.stringify({ ...base, metadata: [1] })), /metadata is not an object/);
});

test("checkReference: the decoded bytes must have the announced size and sha256", async () => {
  const bytes = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  const sha256 = await P.sha256Hex(bytes);
  const msg = { sha256, size: bytes.length, data: Buffer.from(bytes).toString("base64") };
  const ok = await P.checkReference(msg);
  assert.equal(ok.ok, true);
  assert.deepEqual([...ok.bytes], [...bytes]);
  const short = await P.checkReference({ ...msg, size: bytes.length + 1 });
  assert.equal(short.ok, false);
  assert.match(short.error, /7 bytes decoded, size says 8/);
  const wrong = await P.checkReference({ ...msg, sha256: REF_SHA });
  assert.equal(wrong.ok, false);
  assert.match(wrong.error, new RegExp(`the bytes hash to ${sha256}`));
  const garbage = await P.checkReference({ ...msg, data: "@@@@" });
  assert.equal(garbage.ok, false);
  assert.match(garbage.error, /not base64/);
});

test("every reference_image and assign with references the hub encodes parses here", { skip: noPython }, () => {
  const code = `
import base64, hashlib, json
from novelgen_desktop.protocol.messages import Assign, ImageMime, ReferenceImage, ReferenceRef, encode
data = bytes(range(256)) * 3
sha = hashlib.sha256(data).hexdigest()
ref = ReferenceRef(sha256=sha, name="Mara – sheet.png", mime=ImageMime.PNG)
out = [
    encode(ReferenceImage(sha256=sha, name=ref.name, mime=ImageMime.PNG, size=len(data), data=base64.b64encode(data).decode())),
    encode(Assign(task_id="7", attempt=1, prompt="@Mara", deadline=2e9, metadata={"sequence": "ch2/p14", "new_chat": True}, references=(ref,))),
]
print(json.dumps(out))
`;
  const [image, assign] = JSON.parse(runPython(code, "")).map((text) => P.parse(text));
  assert.equal(image.type, "reference_image");
  assert.equal(image.size, 768);
  assert.equal(assign.references[0].sha256, image.sha256);
  assert.deepEqual(assign.metadata, { sequence: "ch2/p14", new_chat: true });
  return P.checkReference(image).then((check) => assert.equal(check.ok, true, check.error));
});
