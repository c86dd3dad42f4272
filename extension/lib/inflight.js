// What a slot (one tab + one hub connection) has in flight, and the decisions that follow
// from it after the service worker or the tab restarted. Pure: the service worker stores
// these records (state_store.js) and acts on the plans returned here.
//
// Slot record (durable, written before each step):
//   { slot, workerId, tabId, tabOpenedAt, task, unacked, sequence, turns, updatedAt }
//   task: null | { task_id, attempt, prompt, metadata, deadline, stage, assigned_at,
//                  conversation_url, before_image_ids, new_chat, captured, cancelled }
//     stage: "accepted" → "navigating" → "running" (handed to the page) → "typing" →
//            "submitted" (the prompt is sent: quota is being spent) → "generating" →
//            "downloading" → "captured" (outcome stored, waiting for the hub's ack)
//   unacked: [{ task_id, attempt, kind: "image" | "error", key, error? }]  outcomes stored
//            and sent (or not yet sent) but not acknowledged by the hub
//   sequence: { key, url } the conversation of the current sequence (per_sequence mode)
//   turns: { count, url } prompts sent in the tab's current conversation (`status`'s
//          conversation_turns): 0 in a new chat; url once the conversation has one
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.NovelGenInflight = api;
})(globalThis, function () {
  "use strict";

  const STAGE_ORDER = ["accepted", "navigating", "running", "typing", "submitted", "generating", "downloading", "captured"];

  function emptySlot(slot, workerId) {
    return { slot, workerId, tabId: null, tabOpenedAt: null, task: null, unacked: [], sequence: null, turns: freshTurns(), updatedAt: 0 };
  }

  // -- conversation turns ----------------------------------------------------------------
  // A count per tab of the prompts sent in the conversation it shows, so the hub can send a
  // tab whose conversation grew long (a heavy page) to a new chat. Counted by the service
  // worker, not read from the page: the page only shows what it has rendered.

  function freshTurns() {
    return { count: 0, url: null };
  }

  function sameConversation(a, b) {
    if (!a || !b) return false;
    const strip = (u) => String(u).replace(/[?#].*$/, "").replace(/\/$/, "");
    return strip(a) === strip(b);
  }

  /** The tab goes to a new chat (0 turns) or to the conversation at `url` (its count is kept
   * when it is the one counted; another conversation is counted from 0 from now on). */
  function turnsAfterNavigation(turns, { newChat, url }) {
    const current = turns || freshTurns();
    if (newChat || !url) return freshTurns();
    if (sameConversation(current.url, url)) return current;
    return { count: 0, url };
  }

  /** A prompt was sent (`submitted`) in the conversation at `conversationUrl` (null: a new
   * chat whose URL is not known yet). */
  function turnsAfterSend(turns, conversationUrl) {
    const current = turns || freshTurns();
    if (conversationUrl && current.url && !sameConversation(current.url, conversationUrl)) return { count: 1, url: conversationUrl };
    return { count: current.count + 1, url: current.url || conversationUrl || null };
  }

  /** The conversation's URL became known (a new chat gets its /c/<id> after the first send). */
  function turnsWithUrl(turns, conversationUrl) {
    const current = turns || freshTurns();
    if (!conversationUrl || current.url) return current;
    return { ...current, url: conversationUrl };
  }

  function attemptKey(taskId, attempt) {
    return `${taskId}#${attempt}`;
  }

  function taskFromAssign(assign, now) {
    return {
      task_id: assign.task_id,
      attempt: assign.attempt,
      prompt: assign.prompt,
      metadata: assign.metadata || {},
      deadline: assign.deadline,
      stage: "accepted",
      assigned_at: now,
      conversation_url: null,
      before_image_ids: null,
      new_chat: true,
      captured: false,
      cancelled: false,
    };
  }

  /** Has the prompt (probably) reached ChatGPT? From then on a re-send would pay twice. */
  function promptSent(task) {
    return STAGE_ORDER.indexOf(task.stage) >= STAGE_ORDER.indexOf("submitted");
  }

  /** Move a task forward; never backward (messages from the page may arrive late). */
  function advance(task, stage, fields = {}) {
    const next = { ...task, ...fields };
    if (STAGE_ORDER.indexOf(stage) > STAGE_ORDER.indexOf(task.stage)) next.stage = stage;
    return next;
  }

  /** The attempts to list in `hello.holding` after a reconnect. */
  function holding(record) {
    const out = [];
    const seen = new Set();
    const add = (taskId, attempt) => {
      const key = attemptKey(taskId, attempt);
      if (!seen.has(key)) {
        seen.add(key);
        out.push({ task_id: String(taskId), attempt });
      }
    };
    for (const u of record.unacked || []) add(u.task_id, u.attempt);
    if (record.task && !record.task.cancelled) add(record.task.task_id, record.task.attempt);
    return out.slice(0, 64);
  }

  /**
   * The sequence a task belongs to in per_sequence mode: one ChatGPT conversation per page
   * of the script (job + chapter + page), so the model sees the page's earlier panels.
   */
  function sequenceKey(metadata) {
    const m = metadata || {};
    if (m.sequence != null) return `seq:${m.sequence}`;
    if (m.job_id == null) return null;
    return [m.job_id, m.chapter ?? "", m.page ?? ""].join("|");
  }

  /**
   * Where the tab must be before the page may type this task: a new chat (the site root) or
   * the sequence's conversation.
   */
  function chatPlan(mode, record, task) {
    if (mode !== "per_sequence") return { newChat: true, url: null };
    const key = sequenceKey(task.metadata);
    const seq = record.sequence;
    if (key && seq && seq.key === key && seq.url) return { newChat: false, url: seq.url, key };
    return { newChat: true, url: null, key };
  }

  /**
   * After a restart (of the service worker, or of the tab's page), what to do with a task
   * the record says is in flight, given what the page says it is doing:
   *   pageTask: { task_id, attempt, stage } | null  (null: the page knows nothing of it)
   *   tabAlive: whether the tab still exists
   * Plans: "wait" (the page works on it and will report), "resend" (the outcome is stored:
   * send it), "rerun" (the prompt never left: start over), "resume" (the prompt was sent:
   * watch its conversation for the image, do not pay again), "give_back" (nothing can be
   * saved: let the hub requeue it).
   */
  function recoveryPlan(task, pageTask, tabAlive) {
    if (!task) return "none";
    if (task.captured) return "resend";
    if (task.cancelled) return "drop";
    if (tabAlive && pageTask && pageTask.task_id === task.task_id && pageTask.attempt === task.attempt) return "wait";
    if (!promptSent(task)) return tabAlive ? "rerun" : "rerun_new_tab";
    if (task.conversation_url) return "resume";
    return "give_back";
  }

  /** Drop an acknowledged outcome; clear the task if it was the one in hand. */
  function acknowledge(record, taskId, attempt) {
    const unacked = (record.unacked || []).filter((u) => !(u.task_id === String(taskId) && u.attempt === attempt));
    let task = record.task;
    if (task && task.task_id === String(taskId) && task.attempt === attempt) task = null;
    return { ...record, unacked, task };
  }

  return {
    STAGE_ORDER,
    emptySlot,
    freshTurns,
    turnsAfterNavigation,
    turnsAfterSend,
    turnsWithUrl,
    attemptKey,
    taskFromAssign,
    promptSent,
    advance,
    holding,
    sequenceKey,
    chatPlan,
    recoveryPlan,
    acknowledge,
  };
});
