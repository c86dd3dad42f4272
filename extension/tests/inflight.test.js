"use strict";
// Unit tests of lib/inflight.js: run with `node --test extension/tests/`.

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");

const I = require(path.join(__dirname, "..", "lib", "inflight.js"));

const ASSIGN = { v: 1, type: "assign", task_id: "17", attempt: 2, prompt: "a red fox", deadline: 1900000000, metadata: { job_id: "j1", chapter: 3, page: 4 } };

function taskAt(stage, extra = {}) {
  return { ...I.taskFromAssign(ASSIGN, 1000), stage, ...extra };
}

function record(extra = {}) {
  return { ...I.emptySlot(1, "ext-x-1"), ...extra };
}

test("emptySlot and attemptKey", () => {
  assert.deepEqual(I.emptySlot(3, "ext-x-3"), { slot: 3, workerId: "ext-x-3", tabId: null, tabOpenedAt: null, task: null, unacked: [], sequence: null, turns: { count: 0, url: null }, updatedAt: 0 });
  assert.equal(I.attemptKey("17", 2), "17#2");
});

test("taskFromAssign: starts accepted, in a new chat, nothing captured", () => {
  const t = I.taskFromAssign(ASSIGN, 1234);
  assert.equal(t.task_id, "17");
  assert.equal(t.attempt, 2);
  assert.equal(t.prompt, "a red fox");
  assert.equal(t.deadline, 1900000000);
  assert.deepEqual(t.metadata, { job_id: "j1", chapter: 3, page: 4 });
  assert.equal(t.stage, "accepted");
  assert.equal(t.assigned_at, 1234);
  assert.equal(t.new_chat, true);
  assert.equal(t.captured, false);
  assert.equal(t.cancelled, false);
  assert.equal(t.conversation_url, null);
  assert.deepEqual(I.taskFromAssign({ ...ASSIGN, metadata: undefined }, 0).metadata, {});
});

test("promptSent: from submitted on", () => {
  const sent = I.STAGE_ORDER.map((s) => [s, I.promptSent(taskAt(s))]);
  assert.deepEqual(sent, [
    ["accepted", false],
    ["navigating", false],
    ["running", false],
    ["attaching", false],
    ["typing", false],
    ["submitted", true],
    ["generating", true],
    ["downloading", true],
    ["captured", true],
  ]);
});

test("advance moves forward, never backward, and always merges fields", () => {
  const t = taskAt("generating");
  const late = I.advance(t, "typing", { conversation_url: "https://chatgpt.com/c/1" });
  assert.equal(late.stage, "generating");
  assert.equal(late.conversation_url, "https://chatgpt.com/c/1");
  assert.equal(I.advance(t, "generating").stage, "generating");
  assert.equal(I.advance(t, "downloading").stage, "downloading");
  assert.equal(I.advance(t, "captured", { captured: true }).captured, true);
  assert.equal(I.advance(t, "no-such-stage").stage, "generating");
  assert.equal(t.stage, "generating", "the input is not mutated");
  // every pair of stages
  for (const a of I.STAGE_ORDER) {
    for (const b of I.STAGE_ORDER) {
      const want = I.STAGE_ORDER.indexOf(b) > I.STAGE_ORDER.indexOf(a) ? b : a;
      assert.equal(I.advance(taskAt(a), b).stage, want, `${a} → ${b}`);
    }
  }
});

test("holding: unacked outcomes then the current task, deduplicated, string ids", () => {
  const r = record({
    task: taskAt("generating"),
    unacked: [
      { task_id: "9", attempt: 1, kind: "image", key: "9#1" },
      { task_id: 17, attempt: 2, kind: "error", key: "17#2" },
      { task_id: "9", attempt: 1, kind: "image", key: "9#1" },
    ],
  });
  assert.deepEqual(I.holding(r), [
    { task_id: "9", attempt: 1 },
    { task_id: "17", attempt: 2 },
  ]);
});

test("holding: a cancelled task is not held, its stored outcome is", () => {
  assert.deepEqual(I.holding(record({ task: taskAt("typing", { cancelled: true }) })), []);
  const r = record({ task: taskAt("captured", { cancelled: true }), unacked: [{ task_id: "17", attempt: 2, kind: "image", key: "k" }] });
  assert.deepEqual(I.holding(r), [{ task_id: "17", attempt: 2 }]);
});

test("holding: empty record, missing unacked, and the 64 cap", () => {
  assert.deepEqual(I.holding(record()), []);
  assert.deepEqual(I.holding({ task: taskAt("accepted") }), [{ task_id: "17", attempt: 2 }]);
  const unacked = Array.from({ length: 80 }, (_, i) => ({ task_id: String(i), attempt: 1, kind: "image", key: `${i}#1` }));
  const held = I.holding(record({ unacked, task: taskAt("accepted") }));
  assert.equal(held.length, 64);
});

test("sequenceKey: explicit sequence, job/chapter/page, none", () => {
  assert.equal(I.sequenceKey({ sequence: "abc", job_id: "j" }), "seq:abc");
  assert.equal(I.sequenceKey({ sequence: 0 }), "seq:0");
  assert.equal(I.sequenceKey({ job_id: "j1", chapter: 3, page: 4 }), "j1|3|4");
  assert.equal(I.sequenceKey({ job_id: "j1", chapter: 0 }), "j1|0|");
  assert.equal(I.sequenceKey({ job_id: "j1" }), "j1||");
  assert.equal(I.sequenceKey({ chapter: 1 }), null);
  assert.equal(I.sequenceKey({}), null);
  assert.equal(I.sequenceKey(null), null);
  assert.equal(I.sequenceKey(undefined), null);
  assert.notEqual(I.sequenceKey({ job_id: "j1", chapter: 1, page: 2 }), I.sequenceKey({ job_id: "j1", chapter: 1, page: 3 }));
});

test("chatPlan: per_task always starts a new chat", () => {
  const r = record({ sequence: { key: "j1|3|4", url: "https://chatgpt.com/c/seq" } });
  assert.deepEqual(I.chatPlan("per_task", r, taskAt("accepted")), { newChat: true, url: null });
  assert.deepEqual(I.chatPlan(undefined, r, taskAt("accepted")), { newChat: true, url: null });
});

test("chatPlan: per_sequence reuses the sequence's conversation only for the same key", () => {
  const r = record({ sequence: { key: "j1|3|4", url: "https://chatgpt.com/c/seq" } });
  assert.deepEqual(I.chatPlan("per_sequence", r, taskAt("accepted")), { newChat: false, url: "https://chatgpt.com/c/seq", key: "j1|3|4" });
  const other = taskAt("accepted", { metadata: { job_id: "j1", chapter: 3, page: 5 } });
  assert.deepEqual(I.chatPlan("per_sequence", r, other), { newChat: true, url: null, key: "j1|3|5" });
  // no conversation yet for this sequence
  assert.deepEqual(I.chatPlan("per_sequence", record({ sequence: { key: "j1|3|4", url: null } }), taskAt("accepted")), { newChat: true, url: null, key: "j1|3|4" });
  assert.deepEqual(I.chatPlan("per_sequence", record(), taskAt("accepted")), { newChat: true, url: null, key: "j1|3|4" });
  // a task with no sequence metadata never joins a conversation
  const loose = taskAt("accepted", { metadata: {} });
  assert.deepEqual(I.chatPlan("per_sequence", record({ sequence: { key: null, url: "https://chatgpt.com/c/x" } }), loose), { newChat: true, url: null, key: null });
});

test("recoveryPlan: no task, captured, cancelled", () => {
  assert.equal(I.recoveryPlan(null, null, true), "none");
  assert.equal(I.recoveryPlan(taskAt("captured", { captured: true }), null, false), "resend");
  assert.equal(I.recoveryPlan(taskAt("captured", { captured: true, cancelled: true }), null, true), "resend");
  assert.equal(I.recoveryPlan(taskAt("generating", { cancelled: true }), { task_id: "17", attempt: 2 }, true), "drop");
});

test("recoveryPlan: the page still works on it → wait", () => {
  const page = { task_id: "17", attempt: 2, stage: "generating" };
  for (const stage of ["running", "typing", "submitted", "generating", "downloading"]) {
    assert.equal(I.recoveryPlan(taskAt(stage), page, true), "wait", stage);
  }
  // a different attempt in the page is not ours
  assert.equal(I.recoveryPlan(taskAt("typing"), { task_id: "17", attempt: 1 }, true), "rerun");
  assert.equal(I.recoveryPlan(taskAt("typing"), { task_id: "18", attempt: 2 }, true), "rerun");
  // a dead tab cannot be working on it
  assert.equal(I.recoveryPlan(taskAt("typing"), page, false), "rerun_new_tab");
});

test("recoveryPlan: the prompt never left → rerun (in a new tab when the old one is gone)", () => {
  for (const stage of ["accepted", "navigating", "running", "typing"]) {
    assert.equal(I.recoveryPlan(taskAt(stage), null, true), "rerun", stage);
    assert.equal(I.recoveryPlan(taskAt(stage), null, false), "rerun_new_tab", stage);
  }
});

test("recoveryPlan: the prompt was sent → resume its conversation, never pay twice", () => {
  const url = "https://chatgpt.com/c/abc";
  for (const stage of ["submitted", "generating", "downloading"]) {
    assert.equal(I.recoveryPlan(taskAt(stage, { conversation_url: url }), null, true), "resume", stage);
    assert.equal(I.recoveryPlan(taskAt(stage, { conversation_url: url }), null, false), "resume", stage);
    assert.equal(I.recoveryPlan(taskAt(stage), null, true), "give_back", stage);
    assert.equal(I.recoveryPlan(taskAt(stage), null, false), "give_back", stage);
    assert.notEqual(I.recoveryPlan(taskAt(stage), null, true), "rerun");
  }
});

test("acknowledge drops the outcome and clears the matching task", () => {
  const r = record({
    task: taskAt("captured", { captured: true }),
    unacked: [
      { task_id: "9", attempt: 1, kind: "image", key: "9#1" },
      { task_id: "17", attempt: 2, kind: "image", key: "17#2" },
    ],
  });
  const after = I.acknowledge(r, 17, 2);
  assert.equal(after.task, null);
  assert.deepEqual(after.unacked, [{ task_id: "9", attempt: 1, kind: "image", key: "9#1" }]);
  assert.equal(r.unacked.length, 2, "the input is not mutated");
  assert.ok(r.task);

  const other = I.acknowledge(r, "9", 1);
  assert.equal(other.task, r.task, "a different attempt's ack keeps the task in hand");
  assert.deepEqual(other.unacked.map((u) => u.key), ["17#2"]);

  const wrongAttempt = I.acknowledge(r, "17", 1);
  assert.equal(wrongAttempt.task, r.task);
  assert.equal(wrongAttempt.unacked.length, 2);

  assert.deepEqual(I.acknowledge({ slot: 1, task: null }, "1", 1), { slot: 1, task: null, unacked: [] });
});

test("conversation turns: counted per send, 0 in a new chat, kept in the same conversation", () => {
  const C1 = "https://chatgpt.com/c/abc-1";
  let turns = I.freshTurns();
  assert.deepEqual(turns, { count: 0, url: null });
  // The first send in a new chat: the URL is often not known yet, then arrives.
  turns = I.turnsAfterSend(turns, null);
  assert.deepEqual(turns, { count: 1, url: null });
  turns = I.turnsWithUrl(turns, C1);
  assert.deepEqual(turns, { count: 1, url: C1 });
  assert.deepEqual(I.turnsWithUrl(turns, "https://chatgpt.com/c/other"), turns, "a known URL is kept");
  turns = I.turnsAfterSend(turns, C1);
  turns = I.turnsAfterSend(turns, `${C1}?model=x`);
  assert.deepEqual(turns, { count: 3, url: C1 });
  // Going back to the same conversation keeps the count; a new chat starts at 0.
  assert.deepEqual(I.turnsAfterNavigation(turns, { newChat: false, url: `${C1}/` }), turns);
  assert.deepEqual(I.turnsAfterNavigation(turns, { newChat: true, url: "https://chatgpt.com/" }), { count: 0, url: null });
  // Another conversation than the one counted is counted from now on.
  assert.deepEqual(I.turnsAfterNavigation(turns, { newChat: false, url: "https://chatgpt.com/c/zz" }), { count: 0, url: "https://chatgpt.com/c/zz" });
  assert.deepEqual(I.turnsAfterSend(turns, "https://chatgpt.com/c/zz"), { count: 1, url: "https://chatgpt.com/c/zz" });
  // Records from before the counter existed.
  assert.deepEqual(I.turnsAfterSend(undefined, null), { count: 1, url: null });
  assert.deepEqual(I.turnsAfterNavigation(undefined, { newChat: false, url: C1 }), { count: 0, url: C1 });
});

// ---- the hub's chat strategy (metadata.sequence / new_chat) and reference images -------------

const REF_A = { sha256: "a".repeat(64), name: "mara.png", mime: "image/png" };
const REF_B = { sha256: "b".repeat(64), name: "tom.jpg", mime: "image/jpeg" };
const CONV_URL = "https://chatgpt.com/c/ch2-p14";

function hostTask(metadata, references = []) {
  return taskAt("accepted", { metadata, references });
}

test("taskFromAssign keeps the references, without repeats", () => {
  const t = I.taskFromAssign({ ...ASSIGN, references: [REF_A, REF_B, { ...REF_A, name: "again.png" }] }, 0);
  assert.deepEqual(t.references, [REF_A, REF_B]);
  assert.deepEqual(I.taskFromAssign(ASSIGN, 0).references, []);
});

test("conversationKey: metadata.sequence whatever the mode, else the page in per_sequence", () => {
  assert.equal(I.conversationKey("per_task", { sequence: "ch2/p14", job_id: "j" }), "seq:ch2/p14");
  assert.equal(I.conversationKey("per_sequence", { sequence: "ch2" }), "seq:ch2");
  assert.equal(I.conversationKey("per_sequence", { job_id: "j1", chapter: 3, page: 4 }), "j1|3|4");
  assert.equal(I.conversationKey("per_task", { job_id: "j1", chapter: 3, page: 4 }), null);
  assert.equal(I.conversationKey("per_task", undefined), null);
});

test("chatPlan: metadata.sequence decides the conversation even in per_task mode", () => {
  const key = "seq:ch2/p14";
  const kept = record({ conversations: { [key]: { url: CONV_URL, attached: [], at: 1 } } });
  for (const mode of ["per_task", "per_sequence", undefined]) {
    assert.deepEqual(I.chatPlan(mode, kept, hostTask({ sequence: "ch2/p14" })), { newChat: false, url: CONV_URL, key }, String(mode));
    // no URL for the key in this tab: a new chat, recorded under the key
    assert.deepEqual(I.chatPlan(mode, record(), hostTask({ sequence: "ch2/p14" })), { newChat: true, url: null, key });
    assert.deepEqual(I.chatPlan(mode, kept, hostTask({ sequence: "ch2/p15" })), { newChat: true, url: null, key: "seq:ch2/p15" });
    const noUrl = record({ conversations: { [key]: { url: null, attached: [REF_A.sha256], at: 1 } } });
    assert.deepEqual(I.chatPlan(mode, noUrl, hostTask({ sequence: "ch2/p14" })), { newChat: true, url: null, key });
  }
});

test("chatPlan: new_chat true always starts a fresh chat (kept under the key when there is one)", () => {
  const key = "seq:ch2/p14";
  const kept = record({ conversations: { [key]: { url: CONV_URL, attached: [], at: 1 } } });
  assert.deepEqual(I.chatPlan("per_task", kept, hostTask({ sequence: "ch2/p14", new_chat: true })), { newChat: true, url: null, key });
  assert.deepEqual(I.chatPlan("per_sequence", kept, hostTask({ sequence: "ch2/p14", new_chat: true })), { newChat: true, url: null, key });
  assert.deepEqual(I.chatPlan("per_task", kept, hostTask({ new_chat: true })), { newChat: true, url: null, key: null });
  const page = record({ sequence: { key: "j1|3|4", url: "https://chatgpt.com/c/seq" } });
  assert.deepEqual(I.chatPlan("per_sequence", page, hostTask({ job_id: "j1", chapter: 3, page: 4, new_chat: true })), { newChat: true, url: null, key: "j1|3|4" });
  // new_chat false (or not a boolean true) changes nothing
  assert.deepEqual(I.chatPlan("per_task", kept, hostTask({ sequence: "ch2/p14", new_chat: false })), { newChat: false, url: CONV_URL, key });
  assert.deepEqual(I.chatPlan("per_task", kept, hostTask({ new_chat: "yes" })), { newChat: true, url: null });
});

test("chatPlan: an older record's single `sequence` is still honoured", () => {
  const old = record({ sequence: { key: "seq:ch1", url: CONV_URL } });
  assert.deepEqual(I.chatPlan("per_task", old, hostTask({ sequence: "ch1" })), { newChat: false, url: CONV_URL, key: "seq:ch1" });
  assert.deepEqual(I.conversationOf(old, "seq:ch1"), { url: CONV_URL, attached: [] });
  // the map wins over the legacy field once the key is kept there
  const both = { ...old, conversations: { "seq:ch1": { url: `${CONV_URL}-new`, attached: [], at: 1 } } };
  assert.equal(I.chatPlan("per_task", both, hostTask({ sequence: "ch1" })).url, `${CONV_URL}-new`);
});

test("references are attached once per chat: all in a new chat, only new ones when continuing", () => {
  const key = "seq:ch2/p14";
  let r = record();
  const first = I.chatPlan("per_task", r, hostTask({ sequence: "ch2/p14" }, [REF_A]));
  assert.equal(first.newChat, true);
  assert.deepEqual(I.referencesToAttach(first, r, [REF_A, REF_A]), [REF_A]);
  // runTask: the new chat starts; the page sends the prompt with REF_A; the URL comes later
  r = I.conversationStarted(r, key, 10);
  assert.deepEqual(r.conversations[key], { url: null, attached: [], at: 10 });
  r = I.referencesSent(r, key, [REF_A.sha256], null, 11);
  assert.deepEqual(r.conversations[key], { url: null, attached: [REF_A.sha256], at: 11 });
  r = I.conversationUrlKnown(r, key, CONV_URL, 12);
  assert.deepEqual(r.conversations[key], { url: CONV_URL, attached: [REF_A.sha256], at: 12 });

  // the next panel of the page continues it: REF_A is there already, REF_B is new
  const second = I.chatPlan("per_task", r, hostTask({ sequence: "ch2/p14" }, [REF_A, REF_B]));
  assert.deepEqual(second, { newChat: false, url: CONV_URL, key });
  assert.deepEqual(I.referencesToAttach(second, r, [REF_A, REF_B]), [REF_B]);
  r = I.referencesSent(r, key, [REF_B.sha256], CONV_URL, 13);
  assert.deepEqual(r.conversations[key].attached, [REF_A.sha256, REF_B.sha256]);
  const third = I.chatPlan("per_task", r, hostTask({ sequence: "ch2/p14" }, [REF_B, REF_A]));
  assert.deepEqual(I.referencesToAttach(third, r, [REF_B, REF_A]), []);

  // the hub starts a fresh chat (too long): everything is attached again, the record resets
  const fresh = I.chatPlan("per_task", r, hostTask({ sequence: "ch2/p14", new_chat: true }, [REF_A, REF_B]));
  assert.deepEqual(I.referencesToAttach(fresh, r, [REF_A, REF_B]), [REF_A, REF_B]);
  r = I.conversationStarted(r, key, 20);
  assert.deepEqual(r.conversations[key], { url: null, attached: [], at: 20 });
});

test("conversations: another key's conversation is untouched; at most MAX_CONVERSATIONS kept", () => {
  let r = I.referencesSent(record(), "seq:a", [REF_A.sha256], "https://chatgpt.com/c/a", 1);
  r = I.conversationStarted(r, "seq:b", 2);
  assert.deepEqual(r.conversations["seq:a"], { url: "https://chatgpt.com/c/a", attached: [REF_A.sha256], at: 1 });
  for (let i = 0; i < I.MAX_CONVERSATIONS + 5; i++) r = I.conversationUrlKnown(r, `seq:k${i}`, `https://chatgpt.com/c/${i}`, 100 + i);
  const keys = Object.keys(r.conversations);
  assert.equal(keys.length, I.MAX_CONVERSATIONS);
  assert.ok(keys.includes(`seq:k${I.MAX_CONVERSATIONS + 4}`), "the newest is kept");
  assert.ok(!keys.includes("seq:a"), "the least recently used went first");
  // a key's legacy `sequence` is superseded when the map records it
  const legacy = I.conversationUrlKnown(record({ sequence: { key: "seq:x", url: "https://chatgpt.com/c/x" } }), "seq:x", "https://chatgpt.com/c/y", 1);
  assert.equal(legacy.sequence, null);
  // no key (per_task without a sequence): nothing is kept
  const plain = record();
  assert.equal(I.conversationStarted(plain, null), plain);
  assert.equal(I.referencesSent(plain, null, [REF_A.sha256], CONV_URL), plain);
});

test("referencedShas: every reference a record's task lists", () => {
  const records = [
    record({ task: hostTask({}, [REF_A]) }),
    record({ task: null }),
    record({ task: { ...hostTask({}, [REF_B]), captured: true } }),
    record({ task: { task_id: "1", attempt: 1 } }), // written by an older version
  ];
  assert.deepEqual([...I.referencedShas(records)].sort(), [REF_A.sha256, REF_B.sha256]);
});
